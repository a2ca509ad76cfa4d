//! Catalog writes and reads: put, insert, get, delete items.

use std::collections::HashMap;
use std::sync::Arc;

use super::catalog_log::{Applied, Change};
use super::sid_assign::{assign_if_needed, drop_codes, Pending};
use super::validate::{validate_batch_len, validate_items, validate_key};
use super::Db;
use crate::derived::Effects;
use crate::store::records::{self, ItemRecord};
use crate::store::{keys, TreeId, Tx, TxResult};
use crate::{Error, Item, Result};

/// The trees a catalog write touches.
const CATALOG_TREES: &[TreeId] = &[
    TreeId::Meta,
    TreeId::Items,
    TreeId::ItemKeys,
    TreeId::Vectors,
    TreeId::Sids,
    TreeId::SidItems,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum PutMode {
    Replace,
    InsertOnly,
}

impl Db {
    /// Puts a batch of items atomically: all are stored or, on any error, none.
    ///
    /// Policy for an existing key: **replace**. The item keeps its internal id and creation
    /// version; text, attributes and vectors are replaced (vectors not given are removed). A
    /// deleted item is revived under its old id. Returns the items' internal ids, in order.
    pub fn put_items(&self, items: &[Item]) -> Result<Vec<u64>> {
        self.put_routed(items, false)
    }

    /// Like [`Db::put_items`], but a key that names a live item fails the whole batch with
    /// [`Error::ItemExists`].
    pub fn insert_items(&self, items: &[Item]) -> Result<Vec<u64>> {
        self.put_routed(items, true)
    }

    /// On a cluster node, through the catalog log (every node applies it); else here.
    fn put_routed(&self, items: &[Item], insert_only: bool) -> Result<Vec<u64>> {
        if self.inner.cluster.is_none() {
            return self.put_logged(items, insert_only, None);
        }
        validate_items(items, &self.inner.config.limits)?;
        match self.through_log(Change::PutItems {
            items: items.to_vec(),
            insert_only,
        })? {
            Applied::Ids(ids) => Ok(ids),
            _ => Err(unexpected()),
        }
    }

    /// Puts the items in this node's store; `log`: the catalog log entry being applied,
    /// recorded in the same transaction.
    pub(super) fn put_logged(
        &self,
        items: &[Item],
        insert_only: bool,
        log: Option<&str>,
    ) -> Result<Vec<u64>> {
        validate_items(items, &self.inner.config.limits)?;
        let mode = if insert_only {
            PutMode::InsertOnly
        } else {
            PutMode::Replace
        };
        self.write(CATALOG_TREES, |tx, derived| {
            mark_logged(tx, log)?;
            let mut counts = tx.counts()?;
            counts.catalog_version += 1;
            let version = counts.catalog_version;
            let mut effects = Effects::default();
            let mut batch_dims: HashMap<&str, usize> = HashMap::new();
            let mut pending = Pending::new();
            let sid_vector = derived.sid.as_ref().and_then(|t| t.vector.clone());
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                for (name, values) in &item.vectors {
                    check_dim(tx, &mut batch_dims, &mut effects, item, name, values.len())?;
                }
                let (id, created_version) = match tx.item_id(&item.key)? {
                    Some(id) => {
                        let old = tx.item(id)?.ok_or_else(|| {
                            Error::corruption(
                                "item_keys",
                                item.key.as_bytes(),
                                "points to a missing item",
                            )
                        })?;
                        if old.live && mode == PutMode::InsertOnly {
                            return Err(Error::ItemExists {
                                key: item.key.clone(),
                            }
                            .into());
                        }
                        for name in &old.vector_names {
                            if !item.vectors.contains_key(name) {
                                tx.remove(TreeId::Vectors, &keys::vector(id, name))?;
                                effects.vectors.push((id, name.clone(), None));
                            }
                        }
                        if !old.live {
                            counts.live_items += 1;
                            counts.deleted_items -= 1;
                            effects.items.push((id, Arc::from(item.key.as_str()), true));
                        }
                        (id, old.created_version)
                    }
                    None => {
                        let id = counts.next_item_id;
                        counts.next_item_id += 1;
                        counts.live_items += 1;
                        tx.insert(
                            TreeId::ItemKeys,
                            item.key.as_bytes(),
                            keys::item_id(id).to_vec(),
                        )?;
                        effects.items.push((id, Arc::from(item.key.as_str()), true));
                        (id, version)
                    }
                };
                for (name, values) in &item.vectors {
                    set_vector(tx, &mut effects, id, name, values)?;
                }
                let record = ItemRecord {
                    key: item.key.clone(),
                    title: item.title.clone(),
                    description: item.description.clone(),
                    attributes: item
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    vector_names: item.vectors.keys().cloned().collect(),
                    created_version,
                    updated_version: version,
                    live: true,
                };
                tx.insert(TreeId::Items, &keys::item_id(id), record.encode())?;
                let vector = sid_vector.as_ref().and_then(|name| item.vectors.get(name));
                assign_if_needed(
                    tx,
                    derived,
                    &mut pending,
                    &mut effects,
                    id,
                    vector.map(Vec::as_slice),
                )?;
                ids.push(id);
            }
            tx.set_counts(&counts)?;
            effects.catalog_version = Some(counts.catalog_version);
            Ok((ids, effects))
        })
    }

    /// Deletes a batch of items atomically. Every key must name a live item
    /// ([`Error::UnknownItem`] / [`Error::DeletedItem`] otherwise, and nothing is deleted).
    ///
    /// A deleted item leaves the catalog, the popularity list and (in later layers) every index;
    /// its text and vectors are dropped. Histories keep their entries, which report the item as
    /// not live. Returns the number of items deleted.
    pub fn delete_items(&self, keys_to_delete: &[&str]) -> Result<usize> {
        if self.inner.cluster.is_none() {
            return self.delete_logged(keys_to_delete, None);
        }
        self.validate_deletes(keys_to_delete)?;
        match self.through_log(Change::DeleteItems {
            keys: keys_to_delete.iter().map(|k| k.to_string()).collect(),
        })? {
            Applied::Count(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    fn validate_deletes(&self, keys_to_delete: &[&str]) -> Result<()> {
        let limits = &self.inner.config.limits;
        validate_batch_len(keys_to_delete.len(), limits)?;
        let mut seen = std::collections::HashSet::new();
        for key in keys_to_delete {
            validate_key("item", key, limits)?;
            if !seen.insert(*key) {
                return Err(Error::DuplicateInBatch {
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Deletes the items in this node's store (`log` as in [`Db::put_logged`]).
    pub(super) fn delete_logged(
        &self,
        keys_to_delete: &[&str],
        log: Option<&str>,
    ) -> Result<usize> {
        self.validate_deletes(keys_to_delete)?;
        self.write(CATALOG_TREES, |tx, _| {
            mark_logged(tx, log)?;
            let mut counts = tx.counts()?;
            counts.catalog_version += 1;
            let mut effects = Effects::default();
            for key in keys_to_delete {
                let Some(id) = tx.item_id(key)? else {
                    return Err(Error::UnknownItem {
                        key: key.to_string(),
                    }
                    .into());
                };
                let old = tx.item(id)?.ok_or_else(|| {
                    Error::corruption("item_keys", key.as_bytes(), "points to a missing item")
                })?;
                if !old.live {
                    return Err(Error::DeletedItem {
                        key: key.to_string(),
                    }
                    .into());
                }
                for name in &old.vector_names {
                    tx.remove(TreeId::Vectors, &keys::vector(id, name))?;
                    effects.vectors.push((id, name.clone(), None));
                }
                drop_codes(tx, &mut effects, id)?;
                let tombstone = ItemRecord {
                    key: old.key,
                    title: String::new(),
                    description: String::new(),
                    attributes: Vec::new(),
                    vector_names: Vec::new(),
                    created_version: old.created_version,
                    updated_version: counts.catalog_version,
                    live: false,
                };
                tx.insert(TreeId::Items, &keys::item_id(id), tombstone.encode())?;
                counts.live_items -= 1;
                counts.deleted_items += 1;
                effects.items.push((id, Arc::from(*key), false));
            }
            tx.set_counts(&counts)?;
            effects.catalog_version = Some(counts.catalog_version);
            Ok((keys_to_delete.len(), effects))
        })
    }

    /// Sets vector `name` on existing live items, leaving their other fields alone; one atomic
    /// batch. Items without codes that now hold the tokenization's vector get codes.
    pub fn put_vectors(&self, name: &str, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        if self.inner.cluster.is_none() {
            return self.put_vectors_logged(name, vectors, None);
        }
        self.validate_vectors(name, vectors)?;
        match self.through_log(Change::PutVectors {
            name: name.to_string(),
            vectors: vectors.to_vec(),
        })? {
            Applied::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn validate_vectors(&self, name: &str, vectors: &[(String, Vec<f32>)]) -> Result<()> {
        let limits = &self.inner.config.limits;
        validate_batch_len(vectors.len(), limits)?;
        let mut seen = std::collections::HashSet::new();
        for (key, values) in vectors {
            let probe = Item::new(key.clone()).vector(name, values.clone());
            validate_items(std::slice::from_ref(&probe), limits)?;
            if !seen.insert(key.as_str()) {
                return Err(Error::DuplicateInBatch { key: key.clone() });
            }
        }
        Ok(())
    }

    /// Sets the vectors in this node's store (`log` as in [`Db::put_logged`]).
    pub(super) fn put_vectors_logged(
        &self,
        name: &str,
        vectors: &[(String, Vec<f32>)],
        log: Option<&str>,
    ) -> Result<()> {
        self.validate_vectors(name, vectors)?;
        self.write(CATALOG_TREES, |tx, derived| {
            mark_logged(tx, log)?;
            let mut counts = tx.counts()?;
            counts.catalog_version += 1;
            let mut effects = Effects::default();
            let mut batch_dims: HashMap<&str, usize> = HashMap::new();
            let mut pending = Pending::new();
            let tokenized = derived.sid.as_ref().and_then(|t| t.vector.as_deref()) == Some(name);
            for (key, values) in vectors {
                let Some(id) = tx.item_id(key)? else {
                    return Err(Error::UnknownItem { key: key.clone() }.into());
                };
                let mut rec = tx.item(id)?.ok_or_else(|| {
                    Error::corruption("item_keys", key.as_bytes(), "points to a missing item")
                })?;
                if !rec.live {
                    return Err(Error::DeletedItem { key: key.clone() }.into());
                }
                let probe = Item::new(key.clone());
                check_dim(
                    tx,
                    &mut batch_dims,
                    &mut effects,
                    &probe,
                    name,
                    values.len(),
                )?;
                set_vector(tx, &mut effects, id, name, values)?;
                if let Err(pos) = rec.vector_names.binary_search_by(|n| n.as_str().cmp(name)) {
                    rec.vector_names.insert(pos, name.to_string());
                }
                rec.updated_version = counts.catalog_version;
                tx.insert(TreeId::Items, &keys::item_id(id), rec.encode())?;
                if tokenized {
                    assign_if_needed(tx, derived, &mut pending, &mut effects, id, Some(values))?;
                }
            }
            tx.set_counts(&counts)?;
            effects.catalog_version = Some(counts.catalog_version);
            Ok(((), effects))
        })
    }

    /// The live item stored under `key`, with its vectors; `None` if absent or deleted.
    pub fn get_item(&self, key: &str) -> Result<Option<Item>> {
        validate_key("item", key, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        let store = &self.inner.store;
        let Some(ptr) = store.get(TreeId::ItemKeys, key.as_bytes())? else {
            return Ok(None);
        };
        let id = records::decode_item_pointer(key.as_bytes(), &ptr)?;
        let rkey = keys::item_id(id);
        // Optimistic snapshot without a sled transaction (which would take sled's process-wide
        // lock): read the record, then its vectors, then confirm the record did not change in
        // between. Every write to an item rewrites its record with a new `updated_version`.
        loop {
            let Some(bytes) = store.get(TreeId::Items, &rkey)? else {
                return Err(Error::corruption(
                    "item_keys",
                    key.as_bytes(),
                    "points to a missing item",
                ));
            };
            let rec = ItemRecord::decode(&rkey, &bytes)?;
            if !rec.live {
                return Ok(None);
            }
            let mut vectors = std::collections::BTreeMap::new();
            let mut torn = false;
            for name in &rec.vector_names {
                let vkey = keys::vector(id, name);
                let dim = self.inner.derived.read().dims.get(name).copied();
                match (store.get(TreeId::Vectors, &vkey)?, dim) {
                    (Some(v), Some(dim)) => {
                        vectors.insert(name.clone(), records::decode_vector(&vkey, &v, dim)?);
                    }
                    _ => {
                        torn = true;
                        break;
                    }
                }
            }
            let unchanged = store
                .get(TreeId::Items, &rkey)?
                .is_some_and(|again| again == bytes);
            if !unchanged {
                continue;
            }
            if torn {
                return Err(Error::corruption(
                    "vectors",
                    &rkey,
                    "the item lists a vector that is missing",
                ));
            }
            return Ok(Some(Item {
                key: rec.key,
                title: rec.title,
                description: rec.description,
                attributes: rec.attributes.into_iter().collect(),
                vectors,
            }));
        }
    }

    /// Looks up several items at once; `None` where absent or deleted.
    pub fn get_items(&self, keys: &[&str]) -> Result<Vec<Option<Item>>> {
        keys.iter().map(|k| self.get_item(k)).collect()
    }

    /// The internal id of a live item.
    pub fn item_id(&self, key: &str) -> Result<Option<u64>> {
        validate_key("item", key, &self.inner.config.limits)?;
        self.inner.poison.check()?;
        let Some(bytes) = self.inner.store.get(TreeId::ItemKeys, key.as_bytes())? else {
            return Ok(None);
        };
        let id = records::decode_item_pointer(key.as_bytes(), &bytes)?;
        let live = self.inner.derived.read().catalog.get(id).map(|m| m.live);
        Ok(if live == Some(true) { Some(id) } else { None })
    }
}

/// Stores vector `name` of item `id`; when its bytes change, the ANN layer hears of it.
fn set_vector(
    tx: &Tx<'_>,
    effects: &mut Effects,
    id: u64,
    name: &str,
    values: &[f32],
) -> TxResult<()> {
    let key = keys::vector(id, name);
    let bytes = records::encode_vector(values);
    if tx.get(TreeId::Vectors, &key)?.as_deref() != Some(bytes.as_slice()) {
        effects
            .vectors
            .push((id, name.to_string(), Some(values.to_vec())));
    }
    tx.insert(TreeId::Vectors, &key, bytes)
}

/// Checks (and, for a new name, fixes) the dimension of vector `name`.
fn check_dim<'a>(
    tx: &Tx<'_>,
    batch_dims: &mut HashMap<&'a str, usize>,
    effects: &mut Effects,
    item: &Item,
    name: &'a str,
    got: usize,
) -> TxResult<()> {
    let expected = match batch_dims.get(name) {
        Some(d) => Some(*d),
        None => tx.dim(name)?,
    };
    match expected {
        Some(expected) if expected != got => Err(Error::VectorDimension {
            item: item.key.clone(),
            name: name.to_string(),
            expected,
            got,
        }
        .into()),
        Some(_) => Ok(()),
        None => {
            batch_dims.insert(name, got);
            tx.insert(TreeId::Meta, &keys::dim(name), records::encode_dim(got))?;
            effects.new_dims.push((name.to_string(), got));
            Ok(())
        }
    }
}

/// Records catalog log entry `log` as applied, in the change's own transaction.
fn mark_logged(tx: &Tx<'_>, log: Option<&str>) -> TxResult<()> {
    if let Some(id) = log {
        tx.insert(TreeId::Meta, keys::META_CATALOG_LOG, id.as_bytes().to_vec())?;
    }
    Ok(())
}

/// A log entry's outcome of another kind than its change (never happens: one decoder).
pub(super) fn unexpected() -> Error {
    Error::Cluster("the catalog log returned the outcome of another kind of change".into())
}
