//! Derived in-memory state, rebuilt from the store on open and updated on the commit path.
//!
//! - `catalog.rs`: item id -> (key, live), so reads can name items without touching sled;
//! - `popularity.rs`: the popularity ranking of live items, maintained incrementally;
//! - the current sid table (codebooks) and the trie of live semantic IDs (`crate::sid`).
//!
//! Invariant: after every committed write, this state equals what [`Derived::load`] would build
//! from the store (checked by `Db::check`). Writers are serialised by the `Db`'s writer lock and
//! apply their [`Effects`] before releasing it, so the order of application is the commit order.

mod catalog;
mod popularity;

pub(crate) use catalog::Catalog;
pub(crate) use popularity::Popularity;

use std::collections::HashMap;
use std::sync::Arc;

use crate::sid::train::PreparedCodebooks;
use crate::sid::{SidTable, Trie};
use crate::store::keys;
use crate::store::records::{self, ItemRecord};
use crate::store::{Store, TreeId};
use crate::{Error, Result};

/// Everything derived, guarded by one lock in `Db`.
#[derive(Debug, PartialEq)]
pub(crate) struct Derived {
    pub catalog: Catalog,
    pub popularity: Popularity,
    /// Fixed dimension per vector name.
    pub dims: HashMap<String, usize>,
    /// Interned interaction kinds; kind code `i + 1` is `kinds[i]`.
    pub kinds: Vec<String>,
    /// The current tokenization, if any.
    pub sid: Option<Arc<SidTable>>,
    /// Its codebooks laid out for assignment (a pure function of `sid`).
    pub sid_search: Option<Arc<PreparedCodebooks>>,
    /// The code tuples of live items (invariant 2: equals `sid_items`). Shared copy-on-write:
    /// generation holds a snapshot while writers go on.
    pub trie: Arc<Trie>,
    /// The id of the model whose lists are current (`meta["model"]`: the last one attached).
    /// `None` until a model is first attached; while `None` nothing is queued for refresh.
    pub model_id: Option<Arc<str>>,
}

/// What one committed write changes in the derived state.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// (id, key, live) of every item created or whose live flag changed.
    pub items: Vec<(u64, Arc<str>, bool)>,
    /// New retained-interaction counts per item.
    pub counts: Vec<(u64, u64)>,
    pub new_dims: Vec<(String, usize)>,
    pub kinds: Option<Vec<String>>,
    /// A new tokenization, its prepared codebooks and its complete trie (replaces all three).
    pub new_sid: Option<(Arc<SidTable>, Option<Arc<PreparedCodebooks>>, Trie)>,
    /// (tuple, item) pairs added to / removed from the trie.
    pub trie_insert: Vec<(Vec<u16>, u64)>,
    pub trie_remove: Vec<(Vec<u16>, u64)>,
    /// (item, vector name, new value or `None` when removed) of every vector whose bytes
    /// changed: the ANN layer's input, taken out before `apply`.
    pub vectors: Vec<(u64, String, Option<Vec<f32>>)>,
    /// The catalog version after the write, for writes that bump it.
    pub catalog_version: Option<u64>,
    /// A new current model id (attach).
    pub model_id: Option<Arc<str>>,
    /// Users queued durably by this write: (user, enqueue sequence).
    pub queued: Vec<(Arc<str>, u64)>,
}

impl Default for Derived {
    fn default() -> Self {
        Derived {
            catalog: Catalog::default(),
            popularity: Popularity::default(),
            dims: HashMap::new(),
            kinds: Vec::new(),
            sid: None,
            model_id: None,
            sid_search: None,
            trie: Arc::new(Trie::new(0)),
        }
    }
}

/// The search layout of a table's codebooks (`None` without codebooks).
pub(crate) fn prepare(table: &SidTable) -> Result<Option<Arc<PreparedCodebooks>>> {
    table
        .codebooks
        .as_ref()
        .map(|cb| PreparedCodebooks::new(cb).map(Arc::new))
        .transpose()
        .map_err(|e| Error::InvalidTokenization(e.to_string()))
}

/// Builds the trie from `sid_items` (the stored truth of invariant 2).
pub(crate) fn load_trie(store: &Store, levels: usize) -> Result<Trie> {
    let mut trie = Trie::new(levels);
    for entry in store.tree(TreeId::SidItems).iter() {
        let (k, v) = entry?;
        let codes = keys::parse_tuple(&k)?;
        if codes.len() != levels {
            return Err(Error::corruption(
                "sid_items",
                &k,
                format!("{} codes, the table has {levels} levels", codes.len()),
            ));
        }
        for id in records::decode_sid_items(&k, &v)? {
            trie.insert(&codes, id);
        }
    }
    Ok(trie)
}

impl Derived {
    /// Builds the derived state from the store: one scan of `items`, `popular` and `meta`.
    pub(crate) fn load(store: &Store) -> Result<Self> {
        let mut d = Derived::default();
        for entry in store.tree(TreeId::Items).iter() {
            let (k, v) = entry?;
            let id = keys::parse_item_id("items", &k)?;
            // Ids are handed out densely and never removed: anything else is damage, and
            // refusing it here keeps the id-indexed tables bounded by the record count.
            if id != d.catalog.len() + 1 {
                return Err(Error::corruption(
                    "items",
                    &k,
                    format!(
                        "item ids are not dense: expected id {}",
                        d.catalog.len() + 1
                    ),
                ));
            }
            let rec = ItemRecord::decode(&k, &v)?;
            d.catalog.insert(id, Arc::from(rec.key.as_str()), rec.live);
        }
        for entry in store.tree(TreeId::Popular).iter() {
            let (k, v) = entry?;
            let id = keys::parse_item_id("popular", &k)?;
            if d.catalog.get(id).is_none() {
                return Err(Error::corruption(
                    "popular",
                    &k,
                    format!("count for unknown item id {id}"),
                ));
            }
            let count = records::decode_popular(&k, &v)?;
            d.popularity.set_count(id, count);
        }
        for (id, meta) in d.catalog.iter() {
            d.popularity.set_live(id, meta.live);
        }
        for entry in store.tree(TreeId::Meta).scan_prefix(keys::META_DIM_PREFIX) {
            let (k, v) = entry?;
            let name = keys::parse_text("meta", &k[keys::META_DIM_PREFIX.len()..])?;
            d.dims.insert(name, records::decode_dim(&k, &v)?);
        }
        if let Some(v) = store.get(TreeId::Meta, keys::META_KINDS)? {
            d.kinds = records::decode_kinds(&v)?;
        }
        if let Some(v) = store.get(TreeId::Meta, keys::META_MODEL)? {
            d.model_id = Some(Arc::from(records::decode_model_id(&v)?.as_str()));
        }
        if let Some(v) = store.get(TreeId::Meta, keys::META_SID_TABLE)? {
            let table = SidTable::decode(&v)?;
            d.trie = Arc::new(load_trie(store, table.levels)?);
            d.set_sid(Arc::new(table))?;
        }
        Ok(d)
    }

    pub(crate) fn apply(&mut self, effects: Effects) {
        for (id, key, live) in effects.items {
            self.catalog.insert(id, key, live);
            self.popularity.set_live(id, live);
        }
        for (id, count) in effects.counts {
            self.popularity.set_count(id, count);
        }
        self.dims.extend(effects.new_dims);
        if let Some(kinds) = effects.kinds {
            self.kinds = kinds;
        }
        if let Some((table, search, trie)) = effects.new_sid {
            self.sid = Some(table);
            self.sid_search = search;
            self.trie = Arc::new(trie);
        }
        if let Some(id) = effects.model_id {
            self.model_id = Some(id);
        }
        for (codes, item) in effects.trie_remove {
            Arc::make_mut(&mut self.trie).remove(&codes, item);
        }
        for (codes, item) in effects.trie_insert {
            Arc::make_mut(&mut self.trie).insert(&codes, item);
        }
    }

    /// Installs `table` and its prepared codebooks.
    pub(crate) fn set_sid(&mut self, table: Arc<SidTable>) -> Result<()> {
        self.sid_search = prepare(&table)?;
        self.sid = Some(table);
        Ok(())
    }

    /// The current tokenization (sid-table) version, if any.
    pub(crate) fn sid_version(&self) -> Option<u64> {
        self.sid.as_ref().map(|t| t.version)
    }

    pub(crate) fn kind_name(&self, code: u32) -> Option<String> {
        code.checked_sub(1)
            .and_then(|i| self.kinds.get(i as usize))
            .cloned()
    }
}
