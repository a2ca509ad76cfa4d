//! Building the graph: hnswlib's insertion (`addPoint`). A new node descends greedily to its
//! level, then on each of its layers searches `ef_construction` candidates, keeps M of them by
//! the neighbour-selection heuristic and links both ways; a neighbour whose list overflows is
//! pruned by the same heuristic (hnsw_rs only drops the farthest there, which is why its graphs
//! needed about twice the ef_search for the same recall).
//!
//! A build inserts from several threads (std scoped threads over an atomic cursor); the node
//! locks and the rules of `graph.rs` keep that sound. Later inserts come one at a time.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::graph::{draw_level, Graph, Layers};
use super::search::{greedy, search_layer, with_scratch, Scored, Scratch};

/// Nodes per build batch: progress is reported between batches.
const BUILD_BATCH: usize = 4096;

impl Graph {
    /// Builds a graph over `vectors` (`n·dim` values, each vector already normalised) with `m`
    /// links per node (2·m on layer 0), on up to `threads` threads. `progress(done, total)` is
    /// called between batches.
    pub(crate) fn build(
        dim: usize,
        m: usize,
        ef_construction: usize,
        vectors: Vec<f32>,
        threads: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Self {
        let dim = dim.max(1);
        let n = vectors.len() / dim;
        let mut layers = Layers::new(dim, m);
        layers.vectors = vectors;
        layers.vectors.truncate(n * dim);
        layers.vectors.shrink_to_fit();
        layers.levels.reserve_exact(n);
        layers.links0.reserve_exact(n * (1 + layers.m0));
        layers.upper_at.reserve_exact(n);
        layers.locks.reserve_exact(n);
        for node in 0..n {
            layers.push_links(draw_level(node as u64, m));
        }
        layers.upper.shrink_to_fit();
        let graph = Graph::from_layers(layers, None, ef_construction);
        let total = n as u64;
        progress(0, total);
        if n == 0 {
            return graph;
        }
        {
            let layers = graph.layers.read();
            let threads = threads.clamp(1, 64);
            let mut scratches: Vec<Scratch> = (0..threads).map(|_| Scratch::default()).collect();
            graph.link(&layers, 0, &mut scratches[0]);
            let mut done = 1;
            while done < n {
                let end = (done + BUILD_BATCH).min(n);
                let cursor = AtomicUsize::new(done);
                std::thread::scope(|s| {
                    for scratch in scratches.iter_mut() {
                        let (graph, layers, cursor) = (&graph, &*layers, &cursor);
                        s.spawn(move || loop {
                            let node = cursor.fetch_add(1, Ordering::Relaxed);
                            if node >= end {
                                break;
                            }
                            graph.link(layers, node as u32, scratch);
                        });
                    }
                });
                done = end;
                progress(done as u64, total);
            }
        }
        graph
    }

    /// Appends a point (normalised) and links it; returns its node id. One inserter at a time;
    /// searches may run meanwhile.
    pub(crate) fn insert(&self, vector: &[f32]) -> u32 {
        let node = {
            let mut layers = self.layers.write();
            let node = layers.len();
            let level = draw_level(node as u64, layers.m);
            layers.push(vector, level);
            node as u32
        };
        let layers = self.layers.read();
        with_scratch(|scratch| self.link(&layers, node, scratch));
        node
    }

    /// Links `node` (already in `layers`) into the graph.
    fn link(&self, layers: &Layers, node: u32, scratch: &mut Scratch) {
        let level = usize::from(layers.levels[node as usize]);
        let Some((entry, top_level)) = self.entry() else {
            self.promote(node, level);
            return;
        };
        let query = layers.vector(node);
        let mut at = Scored {
            dist: layers.dist(query, entry),
            node: entry,
        };
        for layer in (level + 1..=top_level).rev() {
            at = greedy(layers, query, at, layer);
        }
        let mut chosen = Vec::with_capacity(layers.m0 + 1);
        let mut pool = Vec::with_capacity(self.ef_construction + 1);
        for layer in (0..=level.min(top_level)).rev() {
            search_layer(
                layers,
                query,
                at,
                self.ef_construction,
                layer,
                None,
                scratch,
            );
            pool.clear();
            pool.extend(scratch.sorted_top().into_iter().filter(|s| s.node != node));
            if let Some(nearest) = pool.first() {
                at = *nearest;
            }
            select(layers, &pool, layers.m, &mut chosen);
            let ids: Vec<u32> = chosen.iter().map(|s| s.node).collect();
            connect(layers, node, layer, &ids);
            for &other in &ids {
                connect(layers, other, layer, &[node]);
            }
        }
        self.promote(node, level);
    }
}

/// Adds `new` to the list of `node` on `layer`, pruning by the heuristic when it overflows.
fn connect(layers: &Layers, node: u32, layer: usize, new: &[u32]) {
    let cap = if layer == 0 { layers.m0 } else { layers.m };
    let _guard = layers.locks[node as usize].lock();
    let mut ids: Vec<u32> = layers.neighbours(node, layer).collect();
    for &id in new {
        if id != node && !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > cap {
        let base = layers.vector(node);
        let mut pool: Vec<Scored> = ids
            .iter()
            .map(|&id| Scored {
                dist: layers.dist(base, id),
                node: id,
            })
            .collect();
        pool.sort_unstable();
        let mut chosen = Vec::with_capacity(cap);
        select(layers, &pool, cap, &mut chosen);
        ids.clear();
        ids.extend(chosen.iter().map(|s| s.node));
    }
    layers.set_neighbours(node, layer, &ids);
}

/// hnswlib's `getNeighborsByHeuristic2`: from `pool` (nearest first), keep a point only if it is
/// nearer to the base than to every point kept so far, up to `max`.
fn select(layers: &Layers, pool: &[Scored], max: usize, out: &mut Vec<Scored>) {
    out.clear();
    for c in pool {
        if out.len() >= max {
            break;
        }
        let v = layers.vector(c.node);
        if out.iter().all(|kept| layers.dist(v, kept.node) >= c.dist) {
            out.push(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::distance::normalize;

    fn points(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        out.chunks_mut(dim).for_each(|v| {
            normalize(v);
        });
        out
    }

    fn exact(data: &[f32], q: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = data
            .chunks(q.len())
            .enumerate()
            .map(|(i, v)| (1.0 - crate::ann::distance::dot(q, v), i as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn parallel_build_and_inserts_find_true_neighbours() {
        let (n, dim) = (3_000, 24);
        let data = points(n, dim, 1);
        let g = Graph::build(
            dim,
            12,
            100,
            data[..2_000 * dim].to_vec(),
            2,
            &mut |_, _| {},
        );
        for v in data[2_000 * dim..].chunks(dim) {
            g.insert(v);
        }
        assert_eq!(g.len(), n);
        let queries = points(100, dim, 2);
        let mut hits = 0;
        for q in queries.chunks(dim) {
            let found: Vec<u32> = g.search(q, 10, 64, None).iter().map(|h| h.0).collect();
            let truth = exact(&data, q, 10);
            hits += found.iter().filter(|f| truth.contains(f)).count();
        }
        assert!(hits >= 950, "recall {hits} / 1000");
        // Every list holds valid ids of its layer, within capacity.
        let layers = g.layers.read();
        for node in 0..n as u32 {
            for layer in 0..=usize::from(layers.levels[node as usize]) {
                for id in layers.neighbours(node, layer) {
                    assert!((id as usize) < n && id != node);
                    assert!(usize::from(layers.levels[id as usize]) >= layer);
                }
            }
        }
    }

    #[test]
    fn a_filter_skips_points_but_not_their_neighbours() {
        let dim = 8;
        let data = points(500, dim, 3);
        let g = Graph::build(dim, 8, 50, data.clone(), 1, &mut |_, _| {});
        let q = &data[..dim];
        let found = g.search(q, 10, 10, Some(&|n| n % 2 == 1));
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|(n, _)| n % 2 == 1));
        let truth: Vec<u32> = exact(&data, q, 40)
            .into_iter()
            .filter(|n| n % 2 == 1)
            .take(10)
            .collect();
        let hits = found.iter().filter(|(n, _)| truth.contains(n)).count();
        assert!(hits >= 8, "{hits}");
        assert!(g.search(q, 10, 10, Some(&|_| false)).is_empty());
        let empty = Graph::build(dim, 8, 50, Vec::new(), 1, &mut |_, _| {});
        assert!(empty.search(q, 10, 10, None).is_empty());
    }
}
