//! The HNSW graph in flat arrays: vectors contiguous, links as fixed `u32` slots per node and
//! layer, levels one byte per node.
//!
//! ```text
//! vectors  f32 × n·dim                 node i at [i·dim, (i+1)·dim), L2-normalised
//! levels   u8 × n                      the top layer of each node (0..=MAX_LEVEL)
//! links0   u32 × n·(1 + m0)            layer 0 of node i: [count][m0 slots]
//! upper_at u32 × n                     start of node i's blocks in `upper` (NO_UPPER if level 0)
//! upper    u32 × Σ level·(1 + m)       layer l ≥ 1 of node i at upper_at[i] + (l-1)·(1 + m)
//! ```
//!
//! Concurrency without `unsafe`: link slots are `AtomicU32` (plain loads and stores on x86 and
//! ARM). Many threads may search while one thread at a time inserts (the `Db` writer lock) or
//! while the builder's threads insert; each node's list is changed only under its own lock, and
//! only one such lock is held at a time (no deadlock). A search that reads a list while it
//! changes sees old or new ids, all of them nodes of that layer: the count is stored with
//! `Release` after the slots and loaded with `Acquire`. Appending a node takes the write lock of
//! the arrays for the time of a push; everything else, searches included, runs under the read
//! lock, so a search never sees the arrays move.
//!
//! Invariants (checked by `Layers::validate` on every reload): every id in a list is below `n`;
//! a layer-`l` list names only nodes whose level is at least `l`; counts are at most the slots;
//! the entry point is a node of the top level.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::distance::dot;

/// Highest layer a node can reach (hnswlib caps nothing, hnsw_rs at 16; 16 is enough for
/// M ≥ 2 and 2^32 points).
pub(crate) const MAX_LEVEL: usize = 16;
/// `upper_at` of a node that lives on layer 0 only.
pub(crate) const NO_UPPER: u32 = u32::MAX;
/// `Graph::entry` of an empty graph.
const NO_ENTRY: u64 = u64::MAX;
/// Seed of the level draw (each node's level is a hash of its id: no RNG state to share).
const LEVEL_SEED: u64 = 0x005E_ED0F_C04E_46E5;

/// The arrays of a graph (see the module comment for the layout).
#[derive(Default)]
pub(crate) struct Layers {
    pub(super) dim: usize,
    /// Slots per node on layers ≥ 1.
    pub(super) m: usize,
    /// Slots per node on layer 0 (2·M).
    pub(super) m0: usize,
    pub(super) vectors: Vec<f32>,
    pub(super) levels: Vec<u8>,
    pub(super) links0: Vec<AtomicU32>,
    pub(super) upper_at: Vec<u32>,
    pub(super) upper: Vec<AtomicU32>,
    /// One lock per node, taken by whoever changes one of its lists.
    pub(super) locks: Vec<Mutex<()>>,
}

impl Layers {
    pub(super) fn new(dim: usize, m: usize) -> Self {
        Layers {
            dim,
            m,
            m0: 2 * m,
            ..Layers::default()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.levels.len()
    }

    pub(super) fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Cosine distance of `query` (normalised) to `node`.
    #[inline]
    pub(super) fn dist(&self, query: &[f32], node: u32) -> f32 {
        1.0 - dot(query, self.vector(node))
    }

    /// Slots of `node` on `layer`: `[count, id, id, ...]`; empty if the node is not on it.
    #[inline]
    pub(super) fn slots(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let start = node as usize * (1 + self.m0);
            return &self.links0[start..start + 1 + self.m0];
        }
        let i = node as usize;
        let at = self.upper_at[i];
        if at == NO_UPPER || layer > usize::from(self.levels[i]) {
            return &[];
        }
        let start = at as usize + (layer - 1) * (1 + self.m);
        &self.upper[start..start + 1 + self.m]
    }

    /// The neighbours of `node` on `layer` (a snapshot: see the module comment).
    #[inline]
    pub(super) fn neighbours(&self, node: u32, layer: usize) -> impl Iterator<Item = u32> + '_ {
        let slots = self.slots(node, layer);
        let count = slots
            .first()
            .map_or(0, |c| c.load(Ordering::Acquire) as usize)
            .min(slots.len().saturating_sub(1));
        slots[1..=count].iter().map(|s| s.load(Ordering::Relaxed))
    }

    /// Replaces the list of `node` on `layer` (the caller holds the node's lock).
    pub(super) fn set_neighbours(&self, node: u32, layer: usize, ids: &[u32]) {
        let slots = self.slots(node, layer);
        let n = ids.len().min(slots.len().saturating_sub(1));
        for (slot, id) in slots[1..=n].iter().zip(ids) {
            slot.store(*id, Ordering::Relaxed);
        }
        if let Some(count) = slots.first() {
            count.store(n as u32, Ordering::Release);
        }
    }

    /// Appends a node with its (normalised) vector and level; its lists are empty.
    pub(super) fn push(&mut self, vector: &[f32], level: usize) {
        debug_assert_eq!(vector.len(), self.dim);
        self.vectors.extend_from_slice(vector);
        self.push_links(level);
    }

    /// Appends the lists of a node whose vector is already in `vectors`. A node whose upper
    /// blocks would not fit u32 offsets stays on layer 0 (a graph of billions of links).
    pub(super) fn push_links(&mut self, level: usize) {
        let at = u32::try_from(self.upper.len())
            .ok()
            .filter(|&at| at != NO_UPPER && level > 0);
        let level = if at.is_some() { level } else { 0 };
        self.levels.push(level as u8);
        self.links0
            .extend((0..1 + self.m0).map(|_| AtomicU32::new(0)));
        self.upper_at.push(at.unwrap_or(NO_UPPER));
        self.upper
            .extend((0..level * (1 + self.m)).map(|_| AtomicU32::new(0)));
        self.locks.push(Mutex::new(()));
    }

    /// Bytes held by the arrays (capacity, not length).
    pub(super) fn heap_bytes(&self) -> usize {
        self.vectors.capacity() * 4
            + self.levels.capacity()
            + self.links0.capacity() * 4
            + self.upper_at.capacity() * 4
            + self.upper.capacity() * 4
            + self.locks.capacity() * std::mem::size_of::<Mutex<()>>()
    }
}

/// One HNSW graph.
pub(crate) struct Graph {
    pub(super) layers: RwLock<Layers>,
    /// `(level << 32) | node` of the entry point, or `NO_ENTRY`.
    entry: AtomicU64,
    pub(super) ef_construction: usize,
}

impl Graph {
    pub(super) fn from_layers(layers: Layers, entry: Option<(u32, usize)>, ef_c: usize) -> Self {
        Graph {
            layers: RwLock::new(layers),
            entry: AtomicU64::new(entry.map_or(NO_ENTRY, |(n, l)| pack(n, l))),
            ef_construction: ef_c,
        }
    }

    /// Points in the graph.
    pub(crate) fn len(&self) -> usize {
        self.layers.read().len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.layers.read().heap_bytes()
    }

    /// The entry point and its level.
    pub(super) fn entry(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(Ordering::Acquire);
        (e != NO_ENTRY).then_some((e as u32, (e >> 32) as usize))
    }

    /// Makes `node` the entry point if the graph is empty or `level` is above the entry's.
    pub(super) fn promote(&self, node: u32, level: usize) {
        let mut current = self.entry.load(Ordering::Acquire);
        while current == NO_ENTRY || ((current >> 32) as usize) < level {
            match self.entry.compare_exchange(
                current,
                pack(node, level),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}

fn pack(node: u32, level: usize) -> u64 {
    ((level as u64) << 32) | u64::from(node)
}

/// The level of node `node` in a graph with `m` links per layer: hnswlib's exponential law
/// `⌊-ln(u) / ln(m)⌋`, with `u` a hash of the node id.
pub(super) fn draw_level(node: u64, m: usize) -> usize {
    let mut z = node
        .wrapping_add(LEVEL_SEED)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
    let level = -u.ln() / (m.max(2) as f64).ln();
    (level as usize).min(MAX_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_exponential_law() {
        let n = 100_000u64;
        let above0 = (0..n).filter(|&i| draw_level(i, 16) > 0).count() as f64 / n as f64;
        assert!((above0 - 1.0 / 16.0).abs() < 0.005, "{above0}");
        assert!((0..n).all(|i| draw_level(i, 2) <= MAX_LEVEL));
    }

    #[test]
    fn a_node_has_slots_only_on_its_layers() {
        let mut l = Layers::new(2, 4);
        l.push(&[1.0, 0.0], 0);
        l.push(&[0.0, 1.0], 2);
        assert_eq!(l.slots(0, 0).len(), 9);
        assert!(l.slots(0, 1).is_empty());
        assert_eq!(l.slots(1, 2).len(), 5);
        assert!(l.slots(1, 3).is_empty());
        l.set_neighbours(1, 2, &[0, 0, 0, 0, 0, 0]);
        assert_eq!(l.neighbours(1, 2).count(), 4);
        l.set_neighbours(0, 0, &[1]);
        assert_eq!(l.neighbours(0, 0).collect::<Vec<_>>(), vec![1]);
    }
}
