//! `check()`: verifies the invariants that exist so far against a full scan of the store.
//!
//! Checked (numbering of `docs/design.md`, "Invariants"):
//! - F1 every record decodes; the schema header is valid;
//! - F2 `items` and `item_keys` are exact inverses; ids are exactly `1..next_item_id`;
//! - F3 every vector belongs to a live item that lists it, with its name's stored dimension,
//!   and every vector a live item lists exists;
//! - F4 histories are sorted by timestamp, name existing items and known kind codes;
//! - F5 `popular` equals the per-item count of retained history entries (local tier only:
//!   with a cluster, it counts the interactions recorded through this node);
//! - F6 `meta["counts"]` equals the totals recomputed from the scan;
//! - F7 the in-memory derived state equals a fresh rebuild from the store;
//! - I1 every `sids` entry names a live item and `sid_items` is exactly its inverse;
//! - I2 the in-memory trie equals the tuples of `sid_items`;
//! - I7 every item's codes carry the current sid-table version and fit its shape;
//! - F8 with codebooks, every live item holding the tokenized vector has codes;
//! - I6 every ANN index maps exactly the live items holding its vector; its catalog version is
//!   at most the catalog's (`ann_check.rs`);
//! - R1, I3, I4, R2 the cached lists and the refresh queue (`refresh_check.rs`);
//! - C1-C3 with a cluster tier, its users' histories and lists (`cluster_check.rs`);
//! - V1-V4 finite weights, vectors and cached scores; no history item in a current cached list
//!   (`check_values.rs`).

use std::collections::{BTreeMap, HashMap};

use super::Db;
use crate::derived::Derived;
use crate::store::records::{self, HistoryView, ItemRecord, StoredHistory};
use crate::store::{keys, TreeId};
use crate::Result;

/// What `check()` found. `problems` is empty for a consistent database.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// Item records scanned (live and deleted).
    pub items: u64,
    /// Histories scanned.
    pub users: u64,
    /// History entries scanned.
    pub interactions: u64,
    /// One line per violated invariant, naming the tree and key.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when no invariant is violated.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Db {
    /// Scans the whole store and verifies every invariant. Blocks writers while it runs (readers
    /// are not blocked). Storage errors are returned as `Err`; violations go into the report.
    pub fn check(&self) -> Result<CheckReport> {
        self.inner.poison.check()?;
        let _writer = self.inner.writer.lock();
        let store = &self.inner.store;
        let mut report = CheckReport::default();
        let mut problem = |p: String| report_problem(&mut report.problems, p);

        let counts = match self.counts() {
            Ok(c) => Some(c),
            Err(e) => {
                problem(format!("F1 {e}"));
                None
            }
        };

        // Items and their keys.
        let mut items: BTreeMap<u64, ItemRecord> = BTreeMap::new();
        for entry in store.tree(TreeId::Items).iter() {
            let (k, v) = entry?;
            match keys::parse_item_id("items", &k)
                .and_then(|id| Ok((id, ItemRecord::decode(&k, &v)?)))
            {
                Ok((id, rec)) => {
                    items.insert(id, rec);
                }
                Err(e) => problem(format!("F1 {e}")),
            }
        }
        let mut key_count = 0u64;
        for entry in store.tree(TreeId::ItemKeys).iter() {
            let (k, v) = entry?;
            key_count += 1;
            match records::decode_item_pointer(&k, &v) {
                Ok(id) => match items.get(&id) {
                    Some(rec) if rec.key.as_bytes() == &k[..] => {}
                    Some(rec) => problem(format!(
                        "F2 item_keys {} points to item {id} whose key is {:?}",
                        crate::error::printable_key(&k),
                        rec.key
                    )),
                    None => problem(format!(
                        "F2 item_keys {} points to missing item {id}",
                        crate::error::printable_key(&k)
                    )),
                },
                Err(e) => problem(format!("F1 {e}")),
            }
        }
        if key_count != items.len() as u64 {
            problem(format!(
                "F2 {} item_keys entries for {} item records",
                key_count,
                items.len()
            ));
        }
        if let Some((pos, id)) = items
            .keys()
            .enumerate()
            .find(|(pos, id)| **id != *pos as u64 + 1)
        {
            problem(format!(
                "F2 item ids are not dense: id {id} at position {}",
                pos + 1
            ));
        }
        if let Some(c) = &counts {
            if c.next_item_id != items.len() as u64 + 1 {
                problem(format!(
                    "F2 next_item_id is {} but {} item records exist",
                    c.next_item_id,
                    items.len()
                ));
            }
        }

        // Vectors.
        let mut dims: HashMap<String, usize> = HashMap::new();
        for entry in store.tree(TreeId::Meta).scan_prefix(keys::META_DIM_PREFIX) {
            let (k, v) = entry?;
            match records::decode_dim(&k, &v) {
                Ok(d) => {
                    dims.insert(
                        String::from_utf8_lossy(&k[keys::META_DIM_PREFIX.len()..]).into_owned(),
                        d,
                    );
                }
                Err(e) => problem(format!("F1 {e}")),
            }
        }
        let mut vectors_seen = 0usize;
        for entry in store.tree(TreeId::Vectors).iter() {
            let (k, v) = entry?;
            vectors_seen += 1;
            let (id, name) = match keys::parse_vector(&k) {
                Ok(x) => x,
                Err(e) => {
                    problem(format!("F1 {e}"));
                    continue;
                }
            };
            match items.get(&id) {
                Some(rec) if rec.live && rec.vector_names.contains(&name) => {}
                _ => problem(format!(
                    "F3 vector {name:?} of item {id} has no live item listing it"
                )),
            }
            match dims.get(&name) {
                Some(d) => {
                    if let Err(e) = records::decode_vector(&k, &v, *d) {
                        problem(format!("F3 {e}"));
                    }
                }
                None => problem(format!("F3 vector {name:?} has no stored dimension")),
            }
        }
        let listed: usize = items
            .values()
            .filter(|r| r.live)
            .map(|r| r.vector_names.len())
            .sum();
        if listed != vectors_seen {
            problem(format!(
                "F3 live items list {listed} vectors, the vectors tree holds {vectors_seen}"
            ));
        }

        // Histories.
        let kinds = match store.get(TreeId::Meta, keys::META_KINDS)? {
            Some(v) => records::decode_kinds(&v).unwrap_or_else(|e| {
                problem(format!("F1 {e}"));
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut expected_pop: HashMap<u64, u64> = HashMap::new();
        let mut recorded = 0u64;
        // Chunk ranges the heads claim, to find chunks no head owns.
        let mut owned: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
        for entry in store.tree(TreeId::Histories).iter() {
            let (k, v) = entry?;
            report.users += 1;
            if let Ok(view) = HistoryView::parse(&k, &v) {
                let first = view.first_chunk();
                owned.insert(k.to_vec(), (first, first + view.chunks() as u64));
            }
            let stored = match StoredHistory::from_head(store, &k, v) {
                Ok(r) => r,
                Err(e) => {
                    problem(format!("F1 {e}"));
                    continue;
                }
            };
            let user = crate::error::printable_key(&k);
            if let Some((stored_ts, last_ts)) = stored.frozen_ts() {
                if stored_ts != last_ts {
                    problem(format!(
                        "F4 history head of user {user} names {stored_ts} as its newest frozen \
                         timestamp, its newest chunk ends at {last_ts}"
                    ));
                }
            }
            let rec = stored.record();
            recorded += rec.recorded;
            report.interactions += rec.entries.len() as u64;
            if rec
                .entries
                .windows(2)
                .any(|w| w[0].timestamp > w[1].timestamp)
            {
                problem(format!(
                    "F4 history of user {user} is not sorted by timestamp"
                ));
            }
            if (rec.entries.len() as u64) > rec.recorded {
                problem(format!(
                    "F4 history of user {user} retains more entries than were recorded"
                ));
            }
            for e in &rec.entries {
                if !items.contains_key(&e.item_id) {
                    problem(format!(
                        "F4 history of user {user} names missing item {}",
                        e.item_id
                    ));
                }
                if e.kind as usize > kinds.len() {
                    problem(format!(
                        "F4 history of user {user} uses unknown kind code {}",
                        e.kind
                    ));
                }
                *expected_pop.entry(e.item_id).or_default() += 1;
            }
        }

        for entry in store.tree(TreeId::HistoryChunks).iter() {
            let (k, _) = entry?;
            match crate::store::parse_chunk_key(&k) {
                Ok((user, no)) => {
                    let inside = owned
                        .get(user)
                        .is_some_and(|&(first, end)| (first..end).contains(&no));
                    if !inside {
                        problem(format!(
                            "F4 history chunk {no} of user {} belongs to no history head",
                            crate::error::printable_key(user)
                        ));
                    }
                }
                Err(e) => problem(format!("F1 {e}")),
            }
        }

        // Popularity.
        let mut stored_pop: HashMap<u64, u64> = HashMap::new();
        for entry in store.tree(TreeId::Popular).iter() {
            let (k, v) = entry?;
            match keys::parse_item_id("popular", &k)
                .and_then(|id| Ok((id, records::decode_popular(&k, &v)?)))
            {
                Ok((id, c)) => {
                    stored_pop.insert(id, c);
                }
                Err(e) => problem(format!("F1 {e}")),
            }
        }
        // With a cluster tier the node's popularity counts what it recorded, not its (empty)
        // local histories.
        if stored_pop != expected_pop && self.cluster().is_none() {
            let mut ids: Vec<u64> = stored_pop
                .keys()
                .chain(expected_pop.keys())
                .copied()
                .collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                let (s, e) = (stored_pop.get(&id), expected_pop.get(&id));
                if s != e {
                    problem(format!("F5 popular[{id}] = {s:?}, histories count {e:?}"));
                }
            }
        }

        // Counters.
        if let Some(c) = &counts {
            let live = items.values().filter(|r| r.live).count() as u64;
            let expect = [
                ("live_items", c.live_items, live),
                ("deleted_items", c.deleted_items, items.len() as u64 - live),
                ("users", c.users, report.users),
                ("interactions", c.interactions, report.interactions),
                ("recorded", c.recorded, recorded),
            ];
            for (name, stored, actual) in expect {
                if stored != actual {
                    problem(format!(
                        "F6 counts.{name} = {stored}, the scan finds {actual}"
                    ));
                }
            }
        }

        // Semantic IDs.
        check_sids(store, &items, &dims, &mut problem)?;

        // Derived state.
        match Derived::load(store) {
            Ok(fresh) => {
                let current = self.inner.derived.read();
                if current.trie != fresh.trie {
                    problem("I2 the in-memory trie differs from the tuples in sid_items".into());
                }
                if current.catalog != fresh.catalog
                    || current.popularity != fresh.popularity
                    || current.dims != fresh.dims
                    || current.kinds != fresh.kinds
                    || current.sid != fresh.sid
                {
                    problem("F7 the in-memory catalog, popularity or sid table differs from a rebuild from the store".into());
                }
            }
            Err(e) => problem(format!("F7 cannot rebuild derived state: {e}")),
        }
        let catalog_version = counts.as_ref().map(|c| c.catalog_version);
        self.check_ann(&items, catalog_version, &mut problem);
        self.check_refresh(&items, &mut problem)?;
        self.check_values(&dims, &mut problem)?;
        let cluster = match self.cluster() {
            Some(tier) => Some(self.check_cluster(tier, &items, &mut problem)?),
            None => None,
        };
        if let Some((users, entries)) = cluster {
            report.users = users;
            report.interactions = entries;
        }
        report.items = items.len() as u64;
        Ok(report)
    }
}

/// I1 (sids name live items; sid_items is exactly their inverse), I7 (every code is stamped
/// with the current table version, within its shape) and F8 (with codebooks, every live item
/// holding the tokenized vector has codes).
fn check_sids(
    store: &crate::store::Store,
    items: &BTreeMap<u64, ItemRecord>,
    dims: &HashMap<String, usize>,
    problem: &mut impl FnMut(String),
) -> Result<()> {
    let table = match store.get(TreeId::Meta, keys::META_SID_TABLE)? {
        Some(v) => match crate::sid::SidTable::decode(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                problem(format!("F1 {e}"));
                return Ok(());
            }
        },
        None => None,
    };
    let mut by_item: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for entry in store.tree(TreeId::Sids).iter() {
        let (k, v) = entry?;
        let parsed =
            keys::parse_item_id("sids", &k).and_then(|id| Ok((id, records::decode_sid(&k, &v)?)));
        let (id, (version, codes)) = match parsed {
            Ok(x) => x,
            Err(e) => {
                problem(format!("F1 {e}"));
                continue;
            }
        };
        match items.get(&id) {
            Some(rec) if rec.live => {}
            _ => problem(format!("I1 sids names item {id}, which is not a live item")),
        }
        match &table {
            None => problem(format!(
                "I7 item {id} has codes but the database has no sid table"
            )),
            Some(t) => {
                if version != t.version {
                    problem(format!(
                        "I7 item {id} has codes of table version {version}, the current version is {}",
                        t.version
                    ));
                }
                if codes.len() != t.levels || codes.iter().any(|c| usize::from(*c) >= t.codes) {
                    problem(format!(
                        "I7 item {id} has codes {codes:?} outside the table's {} x {}",
                        t.levels, t.codes
                    ));
                }
            }
        }
        by_item.insert(id, codes);
    }
    let mut inverse: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for entry in store.tree(TreeId::SidItems).iter() {
        let (k, v) = entry?;
        let parsed =
            keys::parse_tuple(&k).and_then(|codes| Ok((codes, records::decode_sid_items(&k, &v)?)));
        let (codes, ids) = match parsed {
            Ok(x) => x,
            Err(e) => {
                problem(format!("F1 {e}"));
                continue;
            }
        };
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            problem(format!(
                "I1 sid_items {codes:?} lists ids out of order or twice"
            ));
        }
        for id in ids {
            if inverse.insert(id, codes.clone()).is_some() {
                problem(format!(
                    "I1 item {id} appears under two tuples in sid_items"
                ));
            }
        }
    }
    if inverse != by_item {
        let ids: std::collections::BTreeSet<u64> =
            inverse.keys().chain(by_item.keys()).copied().collect();
        for id in ids {
            if inverse.get(&id) != by_item.get(&id) {
                problem(format!(
                    "I1 item {id}: sids says {:?}, sid_items says {:?}",
                    by_item.get(&id),
                    inverse.get(&id)
                ));
            }
        }
    }
    if let Some(t) = table.as_ref().filter(|t| t.codebooks.is_some()) {
        if let (Some(name), Some(dim)) = (&t.vector, t.input_dim()) {
            if dims.get(name).is_some_and(|d| *d != dim) {
                problem(format!("I7 the sid table reads {name:?} with dimension {dim}, the database stores another"));
            }
            for (id, rec) in items {
                if rec.live && rec.vector_names.contains(name) && !by_item.contains_key(id) {
                    problem(format!(
                        "F8 live item {id} holds vector {name:?} but has no codes"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn report_problem(problems: &mut Vec<String>, p: String) {
    // Bound the report: a badly damaged database must not produce an unbounded list.
    const MAX_PROBLEMS: usize = 1000;
    if problems.len() < MAX_PROBLEMS {
        problems.push(p);
    } else if problems.len() == MAX_PROBLEMS {
        problems.push("... more problems omitted".into());
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Item, TokenizeOptions};

    /// Invariant 2 is about memory, so it can only be broken from inside: an extra pair in
    /// the in-memory trie must be reported as I2 (and nothing else).
    #[test]
    fn a_trie_that_drifts_from_sid_items_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = Config::new(dir.path()).open().unwrap();
        let items: Vec<Item> = (0..40)
            .map(|i| Item::new(format!("i{i}")).vector("v", vec![i as f32, (i % 7) as f32]))
            .collect();
        db.put_items(&items).unwrap();
        let mut opts = TokenizeOptions::new("v");
        opts.levels = 2;
        opts.codes = 4;
        db.tokenize(&opts, None).unwrap();
        assert!(db.check().unwrap().is_clean());
        std::sync::Arc::make_mut(&mut db.inner.derived.write().trie).insert(&[3, 3], 999);
        let report = db.check().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].starts_with("I2 "),
            "{:?}",
            report.problems
        );
    }
}
