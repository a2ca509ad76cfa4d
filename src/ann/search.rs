//! Searching the graph: hnswlib's loop over flat arrays. Greedy descent on the upper layers, then
//! a best-first search on layer 0 with a candidate min-heap, a result max-heap of at most `ef`
//! accepted points and a generation-stamped visited list, all reused per thread (no allocation
//! per query once a thread's scratch has grown to the graph).
//!
//! Filtering (tombstones, excluded items) follows hnswlib's `searchBaseLayerST`: a rejected point
//! is still expanded (it may lead to accepted ones) but never enters the results, and the search
//! stops only once it holds `ef` accepted points and no candidate is nearer than the worst of
//! them. So a filter never makes the answer shorter than it can be.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::distance::prefetch;
use super::graph::{Graph, Layers};

/// A point and its distance to the query, ordered by distance (then id, for a total order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Scored {
    pub dist: f32,
    pub node: u32,
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.node.cmp(&other.node))
    }
}

/// Vectors prefetched ahead of the one being scored.
const AHEAD: usize = 4;

/// Per-thread working memory of a search.
#[derive(Default)]
pub(super) struct Scratch {
    visited: Vec<u16>,
    stamp: u16,
    candidates: BinaryHeap<Reverse<Scored>>,
    /// Unvisited neighbours of the point being expanded, and their distances.
    fresh: Vec<Scored>,
    /// The best points found, worst on top.
    pub top: BinaryHeap<Scored>,
}

impl Scratch {
    fn begin(&mut self, points: usize) {
        if self.visited.len() < points {
            self.visited.resize(points, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
        self.candidates.clear();
        self.top.clear();
    }

    /// Marks `node` visited; false if it already was.
    #[inline]
    fn visit(&mut self, node: u32) -> bool {
        let seen = &mut self.visited[node as usize];
        let first = *seen != self.stamp;
        *seen = self.stamp;
        first
    }

    /// The results, nearest first.
    pub(super) fn sorted_top(&mut self) -> Vec<Scored> {
        let mut out: Vec<Scored> = self.top.drain().collect();
        out.sort_unstable();
        out
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if it is in use: `f` never searches, but a
/// nested use would stay correct).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Follows nearer neighbours on `layer` from `(node, dist)` until none is nearer.
pub(super) fn greedy(layers: &Layers, query: &[f32], mut at: Scored, layer: usize) -> Scored {
    loop {
        let mut moved = false;
        for n in layers.neighbours(at.node, layer) {
            let dist = layers.dist(query, n);
            if dist < at.dist {
                at = Scored { dist, node: n };
                moved = true;
            }
        }
        if !moved {
            return at;
        }
    }
}

/// Best-first search of `layer` from `start`; leaves the (at most `ef`) nearest accepted points
/// in `scratch.top`. `accept`: `None` accepts every point (construction).
pub(super) fn search_layer(
    layers: &Layers,
    query: &[f32],
    start: Scored,
    ef: usize,
    layer: usize,
    accept: Option<&dyn Fn(u32) -> bool>,
    scratch: &mut Scratch,
) {
    scratch.begin(layers.len());
    let ef = ef.max(1);
    let ok = |n: u32| accept.is_none_or(|f| f(n));
    scratch.visit(start.node);
    scratch.candidates.push(Reverse(start));
    if ok(start.node) {
        scratch.top.push(start);
    }
    let mut bound = if scratch.top.is_empty() {
        f32::INFINITY
    } else {
        start.dist
    };
    while let Some(Reverse(c)) = scratch.candidates.pop() {
        if c.dist > bound && (scratch.top.len() >= ef || accept.is_none()) {
            break;
        }
        // The next candidate is likely expanded next: start loading its list.
        if let Some(Reverse(next)) = scratch.candidates.peek() {
            prefetch(layers.slots(next.node, layer));
        }
        // The unvisited neighbours are scored with their vectors prefetched `AHEAD` at a time
        // (prefetching all at once fills the CPU's miss buffers and stalls), then the heaps are
        // updated.
        let mut fresh = std::mem::take(&mut scratch.fresh);
        fresh.clear();
        for n in layers.neighbours(c.node, layer) {
            if scratch.visit(n) {
                if fresh.len() < AHEAD {
                    prefetch(layers.vector(n));
                }
                fresh.push(Scored { dist: 0.0, node: n });
            }
        }
        for j in 0..fresh.len() {
            if let Some(later) = fresh.get(j + AHEAD) {
                prefetch(layers.vector(later.node));
            }
            fresh[j].dist = layers.dist(query, fresh[j].node);
        }
        for &s in &fresh {
            if scratch.top.len() < ef || s.dist < bound {
                scratch.candidates.push(Reverse(s));
                if ok(s.node) {
                    scratch.top.push(s);
                    if scratch.top.len() > ef {
                        scratch.top.pop();
                    }
                    bound = scratch.top.peek().map_or(f32::INFINITY, |w| w.dist);
                }
            }
        }
        scratch.fresh = fresh;
    }
}

impl Graph {
    /// The (at most) `k` accepted points nearest to `query` (normalised), nearest first
    /// (`accept`: `None` accepts every point).
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        let layers = self.layers.read();
        let Some((entry, top_level)) = self.entry() else {
            return Vec::new();
        };
        if entry as usize >= layers.len() || query.len() != layers.dim {
            return Vec::new();
        }
        let mut at = Scored {
            dist: layers.dist(query, entry),
            node: entry,
        };
        for layer in (1..=top_level).rev() {
            at = greedy(&layers, query, at, layer);
        }
        let run = |scratch: &mut Scratch| {
            search_layer(&layers, query, at, ef.max(k), 0, accept, scratch);
            let mut out = scratch.sorted_top();
            out.truncate(k);
            out.into_iter().map(|s| (s.node, s.dist)).collect()
        };
        with_scratch(run)
    }
}
