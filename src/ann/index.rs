//! One in-memory ANN index: the HNSW graph plus the map from its node ids to items.
//!
//! The graph can neither delete nor update a point. Here a node id is an *internal* id handed out
//! in insertion order; `items[internal]` is the item it stands for, or 0 for a tombstone (item
//! ids start at 1). Deleting an item tombstones its point; changing its vector tombstones the old
//! point and inserts a new one under a new internal id. Searches skip tombstones and excluded
//! items through the graph's filter (they are still walked through, not returned), so a
//! tombstoned or half-inserted point is never returned (invariant 6).
//!
//! Concurrency: the graph inserts and searches through `&self` (see `graph.rs`). The map is
//! behind a `RwLock`; a new point's slot is reserved as a tombstone *before* the point enters
//! the graph and named only after, so a concurrent search that meets it skips it.

use std::collections::HashMap;

use parking_lot::RwLock;

use super::distance::normalize;
use super::graph::Graph;
use super::params::AnnParams;

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
    /// M and ef_construction the graph was built with.
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

impl AnnIndex {
    /// Builds an index over `items[i]` with vector `vectors[i·dim..(i+1)·dim]` (normalised here,
    /// in place). `progress` is called with (inserted, total) between batches.
    pub(crate) fn build_flat(
        vector: &str,
        dim: usize,
        params: &AnnParams,
        items: Vec<u64>,
        mut vectors: Vec<f32>,
        catalog_version: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Self {
        vectors.truncate(items.len() * dim);
        let mut items = items;
        items.shrink_to_fit();
        for v in vectors.chunks_mut(dim.max(1)) {
            normalize(v);
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut graph = Graph::build(
            dim,
            params.max_nb_connection,
            params.ef_construction,
            vectors,
            threads,
            progress,
        );
        let old_of_new = graph.reorder();
        let items: Vec<u64> = old_of_new.iter().map(|&old| items[old as usize]).collect();
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

    /// Heap bytes held: the graph's arrays plus the id map (its hash table estimated from its
    /// capacity: a key, a value and a control byte per bucket).
    pub(crate) fn heap_bytes(&self) -> usize {
        let m = self.map.read();
        self.graph.heap_bytes() + m.items.capacity() * 8 + m.by_item.capacity() * (8 + 8 + 1)
    }

    /// Inserts (or replaces) the vector of `item`. Only one thread may write at a time (the
    /// `Db` writer lock); searches may run concurrently.
    pub(crate) fn upsert(&self, item: u64, vector: &[f32]) {
        let mut v = vector.to_vec();
        v.resize(self.dim, 0.0);
        normalize(&mut v);
        let internal = {
            let mut m = self.map.write();
            m.items.push(0);
            m.dead += 1;
            m.items.len() - 1
        };
        let node = self.graph.insert(&v) as usize;
        debug_assert_eq!(node, internal, "graph and id map out of step");
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
    /// items it may reject; with 0 and no tombstones the graph is searched unfiltered, as
    /// hnswlib does without deletions, and hits are still checked after).
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef_search: usize,
        exclude: &dyn Fn(u64) -> bool,
        excluded: usize,
    ) -> Vec<Hit> {
        let map = self.map.read();
        let keep = |internal: usize| map.live(internal).filter(|&item| !exclude(item));
        let accept = |node: u32| keep(node as usize).is_some();
        let filter: Option<&dyn Fn(u32) -> bool> = if map.dead == 0 && excluded == 0 {
            None
        } else {
            Some(&accept)
        };
        self.graph
            .search(query, k, ef_search.max(k), filter)
            .into_iter()
            .filter_map(|(node, dist)| {
                keep(node as usize).map(|item| Hit {
                    item,
                    similarity: (1.0 - dist).min(1.0),
                })
            })
            .collect()
    }
}
