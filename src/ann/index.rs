//! One in-memory ANN index: the hnsw_rs graph plus the map from its internal point ids to items.
//!
//! hnsw_rs can neither delete nor update a point. Here a point id (hnsw_rs's `DataId`) is an
//! *internal* id handed out in insertion order; `items[internal]` is the item it stands for, or
//! 0 for a tombstone (item ids start at 1). Deleting an item tombstones its point; changing its
//! vector tombstones the old point and inserts a new one under a new internal id. Searches skip
//! tombstones through hnsw_rs's `search_filter`, and every answer is checked against the map once
//! more, so a tombstoned or half-inserted point is never returned (invariant 6).
//!
//! Concurrency: hnsw_rs inserts and searches through `&self` (its own locks). The map is behind
//! a `RwLock`; a new point's slot is reserved as a tombstone *before* the point enters the graph
//! and named only after, so a concurrent search that meets it skips it.

use std::collections::HashMap;

use hnsw_rs::prelude::{FilterT, Hnsw};
use parking_lot::RwLock;

use super::distance::{normalize, CosineDot};
use super::params::AnnParams;

/// The graph type of every index. `'static`: points own their data (no mmap), and a reloaded
/// graph's borrow of its loader is discharged in `dump.rs`.
pub(crate) type Graph = Hnsw<'static, f32, CosineDot>;

/// hnsw_rs's cap on the number of layers.
const MAX_LAYERS: usize = 16;
/// Points inserted per parallel batch while building (progress is reported between batches).
const BUILD_BATCH: usize = 4096;

/// At most this many extra neighbours are asked of the unfiltered search tried first, to make
/// room for tombstones and excluded items.
const UNFILTERED_EXTRA_MAX: usize = 64;

/// Internal ids → items, and the bookkeeping around tombstones.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    /// `items[internal]`: the item id, or 0 for a tombstone.
    pub items: Vec<u64>,
    /// Item id → the internal id of its live point.
    pub by_item: HashMap<u64, usize>,
    /// Tombstones in `items`.
    pub dead: usize,
    /// The catalog version this index reflects (invariant 6: at most the catalog's).
    pub catalog_version: u64,
}

impl IdMap {
    pub(crate) fn from_items(mut items: Vec<u64>, catalog_version: u64) -> Self {
        let mut by_item = HashMap::with_capacity(items.len());
        let mut dead = 0;
        for internal in 0..items.len() {
            let item = items[internal];
            if item == 0 {
                dead += 1;
            } else if let Some(old) = by_item.insert(item, internal) {
                // Two points for one item cannot be written by us; keep the newest.
                items[old] = 0;
                dead += 1;
            }
        }
        IdMap {
            items,
            by_item,
            dead,
            catalog_version,
        }
    }

    fn live(&self, internal: usize) -> Option<u64> {
        self.items.get(internal).copied().filter(|&i| i != 0)
    }
}

/// One ANN index over one named item vector.
pub(crate) struct AnnIndex {
    pub vector: String,
    pub dim: usize,
    /// M and ef_construction the graph was built with (hnsw_rs reports M as a u8).
    pub max_nb_connection: usize,
    pub ef_construction: usize,
    graph: Graph,
    map: RwLock<IdMap>,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.map.read();
        f.debug_struct("AnnIndex")
            .field("vector", &self.vector)
            .field("points", &map.items.len())
            .field("dead", &map.dead)
            .finish_non_exhaustive()
    }
}

/// One search hit: the item and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hit {
    pub item: u64,
    pub similarity: f32,
}

pub(crate) fn new_graph(params: &AnnParams, capacity: usize) -> Graph {
    // `params` was validated: max_nb_connection <= 256, so hnsw_rs does not exit.
    Hnsw::new(
        params.max_nb_connection,
        capacity.max(1),
        MAX_LAYERS,
        params.ef_construction,
        CosineDot,
    )
}

impl AnnIndex {
    /// Builds an index over `points` (item id, vector), normalising each vector. `progress` is
    /// called with (inserted, total) between batches.
    pub(crate) fn build(
        vector: &str,
        dim: usize,
        params: &AnnParams,
        mut points: Vec<(u64, Vec<f32>)>,
        catalog_version: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Self {
        let graph = new_graph(params, points.len());
        for (_, v) in points.iter_mut() {
            normalize(v);
        }
        let total = points.len() as u64;
        progress(0, total);
        let mut done = 0usize;
        for chunk in points.chunks(BUILD_BATCH) {
            let batch: Vec<(&[f32], usize)> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (v.as_slice(), done + i))
                .collect();
            graph.parallel_insert_slice(&batch);
            done += chunk.len();
            progress(done as u64, total);
        }
        let items = points.iter().map(|(id, _)| *id).collect();
        AnnIndex::from_parts(
            vector,
            dim,
            (params.max_nb_connection, params.ef_construction),
            graph,
            IdMap::from_items(items, catalog_version),
        )
    }

    pub(crate) fn from_parts(
        vector: &str,
        dim: usize,
        (max_nb_connection, ef_construction): (usize, usize),
        graph: Graph,
        map: IdMap,
    ) -> Self {
        AnnIndex {
            vector: vector.to_string(),
            dim,
            max_nb_connection,
            ef_construction,
            graph,
            map: RwLock::new(map),
        }
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs `f` on the id map (read-locked).
    pub(crate) fn with_map<R>(&self, f: impl FnOnce(&IdMap) -> R) -> R {
        f(&self.map.read())
    }

    /// (points, tombstones, catalog version).
    pub(crate) fn counts(&self) -> (usize, usize, u64) {
        let m = self.map.read();
        (m.items.len(), m.dead, m.catalog_version)
    }

    /// Inserts (or replaces) the vector of `item`. Only one thread may write at a time (the
    /// `Db` writer lock); searches may run concurrently.
    pub(crate) fn upsert(&self, item: u64, vector: &[f32]) {
        let mut v = vector.to_vec();
        normalize(&mut v);
        let internal = {
            let mut m = self.map.write();
            m.items.push(0);
            m.dead += 1;
            m.items.len() - 1
        };
        self.graph.insert_slice((&v, internal));
        let mut m = self.map.write();
        m.items[internal] = item;
        m.dead -= 1;
        if let Some(old) = m.by_item.insert(item, internal) {
            m.items[old] = 0;
            m.dead += 1;
        }
    }

    /// Tombstones the point of `item`, if it has one.
    pub(crate) fn remove(&self, item: u64) {
        let mut m = self.map.write();
        if let Some(old) = m.by_item.remove(&item) {
            m.items[old] = 0;
            m.dead += 1;
        }
    }

    pub(crate) fn set_catalog_version(&self, version: u64) {
        let mut m = self.map.write();
        m.catalog_version = m.catalog_version.max(version);
    }

    /// True when tombstones exceed `ratio` of the points.
    pub(crate) fn needs_rebuild(&self, ratio: f64) -> bool {
        let m = self.map.read();
        !m.items.is_empty() && m.dead as f64 > ratio * m.items.len() as f64
    }

    /// The `k` live items nearest to `query` (already normalised) by cosine similarity, best
    /// first, skipping tombstones and items for which `exclude` is true (`excluded`: how many
    /// items it may reject, a hint).
    ///
    /// hnsw_rs's filtered search gives up its early exit and explores much more of the graph, so
    /// an unfiltered search for `k` plus (up to 64) room for rejects is tried first and filtered
    /// afterwards; only if that leaves fewer than `k` does the filtered search run.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef_search: usize,
        exclude: &dyn Fn(u64) -> bool,
        excluded: usize,
    ) -> Vec<Hit> {
        let map = self.map.read();
        let ef = ef_search.max(k);
        let keep = |internal: usize| map.live(internal).filter(|&item| !exclude(item));
        let collect = |found: Vec<hnsw_rs::prelude::Neighbour>| -> Vec<Hit> {
            found
                .into_iter()
                .filter_map(|n| {
                    keep(n.d_id).map(|item| Hit {
                        item,
                        similarity: 1.0 - n.distance,
                    })
                })
                .take(k)
                .collect()
        };
        let wanted = k.min(map.by_item.len().saturating_sub(excluded));
        // If at least k of the k_wide nearest points survive the filter, they are the k nearest
        // survivors: any nearer survivor would be among the k_wide nearest.
        let k_wide = k + (excluded + map.dead).min(UNFILTERED_EXTRA_MAX);
        let hits = collect(self.graph.search(query, k_wide, ef.max(k_wide)));
        if hits.len() >= wanted {
            return hits;
        }
        let filter = |id: &usize| keep(*id).is_some();
        let filter: &dyn FilterT = &filter;
        collect(self.graph.search_filter(query, k, ef, Some(filter)))
    }
}
