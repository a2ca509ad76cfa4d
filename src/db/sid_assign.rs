//! Code assignment on the catalog write path: new and revived items get codes from the current
//! codebooks in the same transaction as the item; deleted items lose theirs.

use std::collections::{HashMap, HashSet};

use crate::derived::{Derived, Effects};
use crate::sid::train;
use crate::store::{keys, records, TreeId, Tx, TxResult};
use crate::Error;

/// Last-level codes assigned earlier in the same transaction, per prefix (not yet in the trie).
pub(super) type Pending = HashMap<Vec<u16>, HashSet<u16>>;

/// Adds `id` to the item list of `codes` in `sid_items`.
pub(super) fn add_to_tuple(tx: &Tx<'_>, codes: &[u16], id: u64) -> TxResult<()> {
    let key = keys::tuple(codes);
    let mut ids = match tx.get(TreeId::SidItems, &key)? {
        Some(v) => records::decode_sid_items(&key, &v)?,
        None => Vec::new(),
    };
    if let Err(pos) = ids.binary_search(&id) {
        ids.insert(pos, id);
    }
    tx.insert(TreeId::SidItems, &key, records::encode_sid_items(&ids))
}

/// Removes `id` from the item list of `codes`; drops the tuple when no item is left.
fn remove_from_tuple(tx: &Tx<'_>, codes: &[u16], id: u64) -> TxResult<()> {
    let key = keys::tuple(codes);
    let Some(v) = tx.get(TreeId::SidItems, &key)? else {
        return Err(Error::corruption(
            "sid_items",
            &key,
            format!("item {id} has these codes but the tuple is missing"),
        )
        .into());
    };
    let mut ids = records::decode_sid_items(&key, &v)?;
    ids.retain(|x| *x != id);
    if ids.is_empty() {
        tx.remove(TreeId::SidItems, &key)
    } else {
        tx.insert(TreeId::SidItems, &key, records::encode_sid_items(&ids))
    }
}

/// The codes stored for item `id`, if any.
pub(super) fn codes_of(tx: &Tx<'_>, id: u64) -> TxResult<Option<Vec<u16>>> {
    let key = keys::item_id(id);
    match tx.get(TreeId::Sids, &key)? {
        Some(v) => Ok(Some(records::decode_sid(&key, &v)?.1)),
        None => Ok(None),
    }
}

/// Gives item `id` codes when a table with codebooks exists, the item holds the table's vector
/// (`vector`) and has no codes yet. Items that already have codes keep them (invariant 7).
pub(super) fn assign_if_needed(
    tx: &Tx<'_>,
    derived: &Derived,
    pending: &mut Pending,
    effects: &mut Effects,
    id: u64,
    vector: Option<&[f32]>,
) -> TxResult<()> {
    let (Some(table), Some(x)) = (derived.sid.as_deref(), vector) else {
        return Ok(());
    };
    let Some(search) = derived.sid_search.as_deref() else {
        return Ok(());
    };
    if codes_of(tx, id)?.is_some() {
        return Ok(());
    }
    let input = table.encode_input(x);
    let mut codes = vec![0u16; table.levels];
    let invalid = |e: train::TrainError| Error::InvalidTokenization(e.to_string());
    search.assign(&input, &mut codes).map_err(invalid)?;
    let (prefix, last) = codes.split_at(table.levels - 1);
    let prefix = prefix.to_vec();
    if table.balance_last_level {
        // Avoid a tuple that already names an item, when the prefix has a free last code.
        let mut taken: HashSet<u16> = derived.trie.allowed_next(&prefix).iter().copied().collect();
        if let Some(codes_here) = pending.get(&prefix) {
            taken.extend(codes_here);
        }
        if taken.contains(&last[0]) {
            search
                .assign_with(&input, &mut codes, &|c| !taken.contains(&c))
                .map_err(invalid)?;
        }
    }
    tx.insert(
        TreeId::Sids,
        &keys::item_id(id),
        records::encode_sid(table.version, &codes),
    )?;
    add_to_tuple(tx, &codes, id)?;
    if let Some(last) = codes.last() {
        pending.entry(prefix).or_default().insert(*last);
    }
    effects.trie_insert.push((codes, id));
    Ok(())
}

/// Removes the codes of a deleted item.
pub(super) fn drop_codes(tx: &Tx<'_>, effects: &mut Effects, id: u64) -> TxResult<()> {
    if let Some(codes) = codes_of(tx, id)? {
        tx.remove(TreeId::Sids, &keys::item_id(id))?;
        remove_from_tuple(tx, &codes, id)?;
        effects.trie_remove.push((codes, id));
    }
    Ok(())
}
