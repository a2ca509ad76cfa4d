//! The ANN fallback: one HNSW index per indexed item vector, for users without a cached list and
//! for queries by vector.
//!
//! - `params.rs`: M, ef_construction, ef_search, the tombstone rebuild threshold, routing knobs;
//! - `distance.rs`: cosine distance on normalised vectors;
//! - `graph.rs`: the graph in flat arrays (vectors, `u32` link slots, levels) and its
//!   concurrency rules;
//! - `insert.rs`: building and inserting (hnswlib's algorithm, parallel build);
//! - `reorder.rs`: renumbering a built graph breadth-first, for memory locality;
//! - `search.rs`: the query loop (reusable per-thread visited list and heaps, filters);
//! - `index.rs`: the graph plus the internal-id → item map with tombstones (deletes and
//!   updates, which HNSW lacks);
//! - `codec.rs`: the graph's bytes on disk, checked on decode;
//! - `dump.rs`: generation-named dump files with checksums, and their verified reload.
//!
//! The index is derived state: it can always be rebuilt from the `vectors` tree, and it records
//! the catalog version it reflects. Invariant 6 (owned here and by `Db::check`): a search returns
//! only live items, and the recorded version is at most the catalog version.

pub(crate) mod codec;
mod distance;
pub(crate) mod dump;
mod graph;
mod index;
mod insert;
mod params;
mod reorder;
mod search;

pub(crate) use distance::normalize;
pub(crate) use index::{AnnIndex, Hit};
pub use params::AnnParams;

use std::sync::Arc;

/// How an index came to be in memory, for `stats()`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnnOrigin {
    /// Built by `build_ann` (or for a maintained vector).
    Built,
    /// Loaded from its dump on open.
    Loaded,
    /// Rebuilt from the store: too many tombstones, or its dump could not be used (see
    /// `AnnInfo::rebuild_reason`).
    Rebuilt,
}

/// One index as `stats()` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AnnInfo {
    /// The indexed vector name.
    pub vector: String,
    /// Its dimension.
    pub dim: usize,
    /// Points in the graph, tombstones included.
    pub points: u64,
    /// Items searchable (points minus tombstones).
    pub live: u64,
    /// Points of deleted or updated items, skipped by searches until the next rebuild.
    pub tombstones: u64,
    /// The catalog version the index reflects (at most the database's).
    pub catalog_version: u64,
    /// M the graph was built with (a dump keeps its own, whatever the configuration says now).
    pub max_nb_connection: usize,
    /// ef_construction the graph was built with.
    pub ef_construction: usize,
    /// The dump generation on disk.
    pub generation: u64,
    /// Heap bytes the index holds (vectors, links, id map), for memory accounting.
    pub memory_bytes: u64,
    /// How the index came to be in memory.
    pub origin: AnnOrigin,
    /// Why the last load or rebuild happened, when it was not asked for.
    pub rebuild_reason: Option<String>,
}

/// An index in memory with its provenance.
#[derive(Clone, Debug)]
pub(crate) struct AnnSlot {
    pub index: Arc<AnnIndex>,
    pub generation: u64,
    pub origin: AnnOrigin,
    pub reason: Option<String>,
}

impl AnnSlot {
    pub(crate) fn info(&self) -> AnnInfo {
        let (points, dead, catalog_version) = self.index.counts();
        AnnInfo {
            vector: self.index.vector.clone(),
            dim: self.index.dim,
            points: points as u64,
            live: (points - dead) as u64,
            tombstones: dead as u64,
            catalog_version,
            max_nb_connection: self.index.max_nb_connection,
            ef_construction: self.index.ef_construction,
            generation: self.generation,
            memory_bytes: self.index.heap_bytes() as u64,
            origin: self.origin.clone(),
            rebuild_reason: self.reason.clone(),
        }
    }
}
