//! The reference model: what a client can observe of a convergedb database, computed the
//! simplest possible way (maps and vectors, no sled, no incremental rankings), deterministic.
//!
//! In scope (compared by [`super::ops`] after every step):
//! - the catalog: key → id (dense, handed out in order, never reused), live or tombstoned,
//!   title, description, attributes, vectors; replace keeps the id, insert refuses a live key,
//!   delete tombstones, a put revives;
//! - vector dimensions fixed by the first vector of a name;
//! - histories: per user version, recorded count, entries sorted by timestamp (ties in arrival
//!   order), at most `history_limit` kept (oldest dropped); interned kinds in first-use order;
//! - popularity: retained entries per item (on a cluster node: entries it recorded);
//!   `recommend` = live items by (count desc, id asc)
//!   minus the user's history items;
//! - semantic IDs: which items hold codes (not the code values, which come from k-means), the
//!   table version, its levels and vector;
//! - the `stats()` counters and the error class of every rejected call (the order of the
//!   checks included: validation of the whole input first, then the store checks in input
//!   order).
//!
//! Out of scope: code values and collisions (the harness checks instead that `items_for_sid` and
//! `allowed_next` are consistent with the codes `sid()` returns), imports, `sid_stats`,
//! `disk_bytes`, concurrency.

use std::collections::{BTreeMap, HashMap};

use crate::{History, HistoryEntry, Interaction, Item, Recommendation, ScoredItem, Source};

/// The error class of a rejected call: the name of the `Error` variant.
pub type Kind = &'static str;

/// The class of `e`, as the model names it.
pub fn kind_of(e: &crate::Error) -> Kind {
    use crate::Error as E;
    match e {
        E::EmptyKey { .. } => "EmptyKey",
        E::TooLong { .. } => "TooLong",
        E::VectorDimension { .. } => "VectorDimension",
        E::InvalidVector { .. } => "InvalidVector",
        E::UnknownItem { .. } => "UnknownItem",
        E::DeletedItem { .. } => "DeletedItem",
        E::UnknownUser { .. } => "UnknownUser",
        E::ItemExists { .. } => "ItemExists",
        E::DuplicateInBatch { .. } => "DuplicateInBatch",
        E::BatchTooLarge { .. } => "BatchTooLarge",
        E::InvalidK { .. } => "InvalidK",
        E::InvalidArgument(_) => "InvalidArgument",
        E::InvalidTokenization(_) => "InvalidTokenization",
        E::NoModel => "NoModel",
        E::ForeignTokenization { .. } => "ForeignTokenization",
        _ => "Other",
    }
}

/// The limits the model enforces (a subset of `Config`'s, set the same way on the `Db`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// `Config::max_key_bytes`.
    pub max_key_bytes: usize,
    /// `Config::max_batch`.
    pub max_batch: usize,
    /// `Config::max_k`.
    pub max_k: usize,
    /// `Config::history_limit`.
    pub history_limit: usize,
}

/// One catalog entry of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelItem {
    /// The internal id.
    pub id: u64,
    /// False for a tombstone.
    pub live: bool,
    /// The item as last put (fields cleared on delete).
    pub item: Item,
    /// Whether the item holds semantic-ID codes.
    pub has_codes: bool,
}

/// One retained history entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// Internal item id.
    pub item_id: u64,
    /// Caller's timestamp.
    pub timestamp: i64,
    /// Kind code (0 = none; `kinds[code - 1]`).
    pub kind: u32,
    /// Weight.
    pub weight: f32,
}

/// One user's history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelHistory {
    /// Bumped once per batch that touches the user.
    pub version: u64,
    /// Interactions ever recorded.
    pub recorded: u64,
    /// Retained entries, sorted by timestamp.
    pub entries: Vec<ModelEntry>,
}

/// The current tokenization, as far as the model follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSid {
    /// Table version.
    pub version: u64,
    /// The tokenized vector name.
    pub vector: String,
    /// Code levels.
    pub levels: usize,
}

/// The reference model of one database.
#[derive(Clone, Debug)]
pub struct Model {
    /// Limits in force.
    pub limits: Limits,
    /// Every key ever put, live or tombstoned.
    pub items: BTreeMap<String, ModelItem>,
    /// Key of item id `i` at slot `i - 1`.
    pub keys_by_id: Vec<String>,
    /// Bumped by every catalog write.
    pub catalog_version: u64,
    /// Vector name → dimension.
    pub dims: BTreeMap<String, usize>,
    /// Interned kinds.
    pub kinds: Vec<String>,
    /// User → history.
    pub histories: BTreeMap<String, ModelHistory>,
    /// Retained entries per item id.
    pub popular: HashMap<u64, u64>,
    /// Interactions ever recorded.
    pub recorded: u64,
    /// The current tokenization.
    pub sid: Option<ModelSid>,
    /// Cached lists and the refresh queue (`refresh_model.rs`).
    pub refresh: super::refresh_model::RefreshModel,
    /// The per-user tier is a Redis Cluster (`Config::cluster`): a history change always
    /// leaves a pending refresh marker, and popularity counts what this node recorded.
    pub cluster: bool,
}

/// Input checks shared by the model's write calls (the library's `validate.rs`, restated).
fn check_key(key: &str, limits: &Limits) -> Result<(), Kind> {
    if key.is_empty() {
        return Err("EmptyKey");
    }
    if key.len() > limits.max_key_bytes {
        return Err("TooLong");
    }
    Ok(())
}

const MAX_TEXT_BYTES: usize = 64 * 1024;
const MAX_VECTOR_DIM: usize = 16 * 1024;

fn check_items(items: &[Item], limits: &Limits) -> Result<(), Kind> {
    if items.len() > limits.max_batch {
        return Err("BatchTooLarge");
    }
    let mut seen = std::collections::HashSet::new();
    for item in items {
        check_key(&item.key, limits)?;
        if !seen.insert(item.key.as_str()) {
            return Err("DuplicateInBatch");
        }
        if item.title.len() > MAX_TEXT_BYTES || item.description.len() > MAX_TEXT_BYTES {
            return Err("TooLong");
        }
        let attr_bytes: usize = item.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        if item.attributes.len() > 256 || attr_bytes > MAX_TEXT_BYTES {
            return Err("TooLong");
        }
        for (name, values) in &item.vectors {
            if name.is_empty() || name.len() > 128 {
                return Err("InvalidArgument");
            }
            if values.is_empty()
                || values.len() > MAX_VECTOR_DIM
                || values.iter().any(|v| !v.is_finite())
            {
                return Err("InvalidVector");
            }
        }
    }
    Ok(())
}

impl Model {
    /// An empty database with these limits.
    pub fn new(limits: Limits) -> Model {
        Model {
            limits,
            items: BTreeMap::new(),
            keys_by_id: Vec::new(),
            catalog_version: 0,
            dims: BTreeMap::new(),
            kinds: Vec::new(),
            histories: BTreeMap::new(),
            popular: HashMap::new(),
            recorded: 0,
            sid: None,
            refresh: Default::default(),
            cluster: false,
        }
    }

    fn check_dim<'a>(
        &self,
        batch: &mut BTreeMap<&'a str, usize>,
        name: &'a str,
        got: usize,
    ) -> Result<(), Kind> {
        match batch.get(name).or_else(|| self.dims.get(name)) {
            Some(d) if *d != got => Err("VectorDimension"),
            Some(_) => Ok(()),
            None => {
                batch.insert(name, got);
                Ok(())
            }
        }
    }

    /// `put_items` (`insert_only = false`) or `insert_items` (`true`).
    pub fn put(&mut self, items: &[Item], insert_only: bool) -> Result<Vec<u64>, Kind> {
        check_items(items, &self.limits)?;
        // The store checks, in input order, before anything changes.
        let mut batch_dims = BTreeMap::new();
        for item in items {
            for (name, values) in &item.vectors {
                self.check_dim(&mut batch_dims, name, values.len())?;
            }
            if insert_only && self.items.get(&item.key).is_some_and(|m| m.live) {
                return Err("ItemExists");
            }
        }
        for (name, dim) in batch_dims {
            self.dims.insert(name.to_string(), dim);
        }
        self.catalog_version += 1;
        let sid_vector = self.sid.as_ref().map(|s| s.vector.clone());
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let next_id = self.keys_by_id.len() as u64 + 1;
            let entry = self
                .items
                .entry(item.key.clone())
                .or_insert_with(|| ModelItem {
                    id: next_id,
                    live: true,
                    item: Item::new(item.key.clone()),
                    has_codes: false,
                });
            if entry.id == next_id {
                self.keys_by_id.push(item.key.clone());
            }
            entry.live = true;
            entry.item = item.clone();
            if let Some(v) = &sid_vector {
                if item.vectors.contains_key(v) {
                    entry.has_codes = true;
                }
            }
            ids.push(entry.id);
        }
        Ok(ids)
    }

    /// `delete_items`.
    pub fn delete(&mut self, keys: &[&str]) -> Result<usize, Kind> {
        if keys.len() > self.limits.max_batch {
            return Err("BatchTooLarge");
        }
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            check_key(key, &self.limits)?;
            if !seen.insert(*key) {
                return Err("DuplicateInBatch");
            }
        }
        for key in keys {
            match self.items.get(*key) {
                None => return Err("UnknownItem"),
                Some(m) if !m.live => return Err("DeletedItem"),
                Some(_) => {}
            }
        }
        self.catalog_version += 1;
        if !keys.is_empty() {
            self.refresh.sweep_pending = true;
        }
        for key in keys {
            if let Some(m) = self.items.get_mut(*key) {
                m.live = false;
                m.has_codes = false;
                m.item = Item::new(*key);
            }
        }
        Ok(keys.len())
    }

    /// `put_vectors`.
    pub fn put_vectors(&mut self, name: &str, vectors: &[(String, Vec<f32>)]) -> Result<(), Kind> {
        if vectors.len() > self.limits.max_batch {
            return Err("BatchTooLarge");
        }
        let mut seen = std::collections::HashSet::new();
        for (key, values) in vectors {
            let probe = Item::new(key.clone()).vector(name, values.clone());
            check_items(std::slice::from_ref(&probe), &self.limits)?;
            if !seen.insert(key.as_str()) {
                return Err("DuplicateInBatch");
            }
        }
        let mut batch_dims = BTreeMap::new();
        for (key, values) in vectors {
            match self.items.get(key) {
                None => return Err("UnknownItem"),
                Some(m) if !m.live => return Err("DeletedItem"),
                Some(_) => {}
            }
            self.check_dim(&mut batch_dims, name, values.len())?;
        }
        for (n, dim) in batch_dims {
            self.dims.insert(n.to_string(), dim);
        }
        self.catalog_version += 1;
        let tokenized = self.sid.as_ref().is_some_and(|s| s.vector == name);
        for (key, values) in vectors {
            if let Some(m) = self.items.get_mut(key) {
                m.item.vectors.insert(name.to_string(), values.clone());
                if tokenized {
                    m.has_codes = true;
                }
            }
        }
        Ok(())
    }

    /// `record_interactions`.
    pub fn record(&mut self, events: &[Interaction]) -> Result<(), Kind> {
        if events.len() > self.limits.max_batch {
            return Err("BatchTooLarge");
        }
        for e in events {
            check_key(&e.user, &self.limits)?;
            check_key(&e.item, &self.limits)?;
            if !e.weight.is_finite() {
                return Err("InvalidArgument");
            }
            if let Some(kind) = &e.kind {
                if kind.is_empty() || kind.len() > 64 {
                    return Err("InvalidArgument");
                }
            }
        }
        // Users in first-seen order, events in arrival order within a user.
        let mut order: Vec<&str> = Vec::new();
        for e in events {
            if !order.contains(&e.user.as_str()) {
                order.push(&e.user);
            }
        }
        let mut kinds = self.kinds.clone();
        let mut staged: Vec<(&str, Vec<ModelEntry>)> = Vec::new();
        for user in &order {
            let mut added = Vec::new();
            for e in events.iter().filter(|e| e.user == *user) {
                let id = match self.items.get(&e.item) {
                    None => return Err("UnknownItem"),
                    Some(m) if !m.live => return Err("DeletedItem"),
                    Some(m) => m.id,
                };
                let kind = match &e.kind {
                    None => 0,
                    Some(k) => match kinds.iter().position(|x| x == k) {
                        Some(p) => p as u32 + 1,
                        None => {
                            kinds.push(k.clone());
                            kinds.len() as u32
                        }
                    },
                };
                added.push(ModelEntry {
                    item_id: id,
                    timestamp: e.timestamp,
                    kind,
                    weight: e.weight,
                });
            }
            staged.push((user, added));
        }
        self.kinds = kinds;
        for (user, added) in staged {
            self.refresh.on_history_change(user, self.cluster);
            let h = self.histories.entry(user.to_string()).or_default();
            h.version += 1;
            h.recorded += added.len() as u64;
            self.recorded += added.len() as u64;
            for e in added {
                *self.popular.entry(e.item_id).or_default() += 1;
                // After every entry with a timestamp <= its own: sorted, ties in arrival order.
                let pos = h.entries.partition_point(|x| x.timestamp <= e.timestamp);
                h.entries.insert(pos, e);
            }
            let evict = h.entries.len().saturating_sub(self.limits.history_limit);
            for old in h.entries.drain(..evict) {
                // A cluster node counts what it recorded: the cluster trims without telling it.
                if let Some(c) = self.popular.get_mut(&old.item_id).filter(|_| !self.cluster) {
                    *c -= 1;
                }
            }
        }
        Ok(())
    }

    /// `tokenize` with `levels` × `codes` on vector `vector`: which outcome, and on success the
    /// new table (every live item holding the vector gets codes, every other item none).
    pub fn tokenize(&mut self, vector: &str, levels: usize, codes: usize) -> Result<(), Kind> {
        if levels == 0 || levels > crate::MAX_LEVELS || !(2..=crate::MAX_CODES).contains(&codes) {
            return Err("InvalidTokenization");
        }
        if !self.dims.contains_key(vector) {
            return Err("InvalidTokenization");
        }
        if !self
            .items
            .values()
            .any(|m| m.live && m.item.vectors.contains_key(vector))
        {
            return Err("InvalidTokenization");
        }
        let version = self.sid.as_ref().map_or(0, |s| s.version) + 1;
        self.sid = Some(ModelSid {
            version,
            vector: vector.to_string(),
            levels,
        });
        self.refresh.sweep_pending = true;
        for m in self.items.values_mut() {
            m.has_codes = m.live && m.item.vectors.contains_key(vector);
        }
        Ok(())
    }

    /// `get_item`.
    pub fn get_item(&self, key: &str) -> Result<Option<Item>, Kind> {
        check_key(key, &self.limits)?;
        Ok(self
            .items
            .get(key)
            .filter(|m| m.live)
            .map(|m| m.item.clone()))
    }

    /// `item_id`.
    pub fn item_id(&self, key: &str) -> Result<Option<u64>, Kind> {
        check_key(key, &self.limits)?;
        Ok(self.items.get(key).filter(|m| m.live).map(|m| m.id))
    }

    /// `history`.
    pub fn history(&self, user: &str) -> Result<History, Kind> {
        check_key(user, &self.limits)?;
        let h = self.histories.get(user).ok_or("UnknownUser")?;
        Ok(History {
            user: user.to_string(),
            version: h.version,
            recorded: h.recorded,
            entries: h
                .entries
                .iter()
                .map(|e| {
                    let key = &self.keys_by_id[e.item_id as usize - 1];
                    HistoryEntry {
                        item: key.clone(),
                        item_id: e.item_id,
                        live: self.items[key].live,
                        timestamp: e.timestamp,
                        kind: (e.kind > 0).then(|| self.kinds[e.kind as usize - 1].clone()),
                        weight: e.weight,
                    }
                })
                .collect(),
        })
    }

    /// `recommend`: the cached list (current or stale), else popularity minus the user's
    /// history.
    pub fn recommend(&self, user: &str, k: usize) -> Result<Recommendation, Kind> {
        if k == 0 || k > self.limits.max_k {
            return Err("InvalidK");
        }
        check_key(user, &self.limits)?;
        if let Some(answer) = self.recommend_cached(user, k) {
            return Ok(answer);
        }
        let history = self.histories.get(user);
        if history.is_some_and(|h| !h.entries.is_empty()) {
            self.refresh.queue_from_read(user);
        }
        let seen = |id: u64| history.is_some_and(|h| h.entries.iter().any(|e| e.item_id == id));
        let mut ranked: Vec<(u64, u64, &str)> = self
            .items
            .iter()
            .filter(|(_, m)| m.live && !seen(m.id))
            .map(|(k, m)| {
                (
                    self.popular.get(&m.id).copied().unwrap_or(0),
                    m.id,
                    k.as_str(),
                )
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(Recommendation {
            user: user.to_string(),
            source: Source::Popularity,
            history_version: history.map_or(0, |h| h.version),
            stale: false,
            stamps: None,
            items: ranked
                .into_iter()
                .take(k)
                .map(|(count, id, key)| ScoredItem {
                    key: key.to_string(),
                    item_id: id,
                    score: count as f64,
                })
                .collect(),
        })
    }

    /// Live items.
    pub fn live_items(&self) -> u64 {
        self.items.values().filter(|m| m.live).count() as u64
    }

    /// Retained history entries over all users.
    pub fn interactions(&self) -> u64 {
        self.histories
            .values()
            .map(|h| h.entries.len() as u64)
            .sum()
    }
}
