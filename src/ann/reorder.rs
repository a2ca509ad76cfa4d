//! Renumbering a freshly built graph in breadth-first order of layer 0, so that neighbours sit
//! near each other in memory: a search then touches fewer pages and cache lines (the
//! "graph reordering" of Coleman et al., 2022; BFS is the simplest of their orders).

use std::collections::VecDeque;

use super::graph::{Graph, Layers};

impl Graph {
    /// Renumbers the nodes (breadth-first from the entry point on layer 0; nodes it does not
    /// reach follow in their old order) and returns `old_of_new`: the old id of each new id.
    /// Only for a graph no one else uses yet (a build, before it is shared).
    pub(crate) fn reorder(&mut self) -> Vec<u32> {
        let Some((entry, level)) = self.entry() else {
            return Vec::new();
        };
        let layers = self.layers.get_mut();
        let n = layers.len();
        let mut old_of_new: Vec<u32> = Vec::with_capacity(n);
        let mut new_of_old = vec![u32::MAX; n];
        let mut queue = VecDeque::new();
        for start in std::iter::once(entry).chain(0..n as u32) {
            if new_of_old[start as usize] != u32::MAX {
                continue;
            }
            new_of_old[start as usize] = old_of_new.len() as u32;
            old_of_new.push(start);
            queue.push_back(start);
            while let Some(node) = queue.pop_front() {
                for next in layers.neighbours(node, 0) {
                    if new_of_old[next as usize] == u32::MAX {
                        new_of_old[next as usize] = old_of_new.len() as u32;
                        old_of_new.push(next);
                        queue.push_back(next);
                    }
                }
            }
        }
        let layers = permuted(layers, &old_of_new, &new_of_old);
        let entry = new_of_old[entry as usize];
        *self = Graph::from_layers(layers, Some((entry, level)), self.ef_construction);
        old_of_new
    }
}

/// `layers` with node `old` moved to `new_of_old[old]` and every link renamed.
fn permuted(layers: &Layers, old_of_new: &[u32], new_of_old: &[u32]) -> Layers {
    let mut out = Layers::new(layers.dim, layers.m);
    let n = old_of_new.len();
    out.vectors.reserve_exact(n * layers.dim);
    out.levels.reserve_exact(n);
    out.links0.reserve_exact(n * (1 + out.m0));
    out.upper_at.reserve_exact(n);
    out.locks.reserve_exact(n);
    for &old in old_of_new {
        let level = usize::from(layers.levels[old as usize]);
        out.vectors.extend_from_slice(layers.vector(old));
        out.push_links(level);
    }
    out.upper.shrink_to_fit();
    let mut ids = Vec::with_capacity(out.m0);
    for (new, &old) in old_of_new.iter().enumerate() {
        for layer in 0..=usize::from(out.levels[new]) {
            ids.clear();
            ids.extend(
                layers
                    .neighbours(old, layer)
                    .map(|id| new_of_old[id as usize]),
            );
            out.set_neighbours(new as u32, layer, &ids);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::ann::distance::normalize;
    use crate::ann::graph::Graph;

    #[test]
    fn a_reordered_graph_answers_the_same_under_new_ids() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let dim = 12;
        let mut data: Vec<f32> = (0..1_500 * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        data.chunks_mut(dim).for_each(|v| {
            normalize(v);
        });
        let mut g = Graph::build(dim, 6, 40, data.clone(), 2, &mut |_, _| {});
        let queries: Vec<f32> = data[..20 * dim].iter().map(|x| x * 0.9 + 0.01).collect();
        let before: Vec<_> = queries
            .chunks(dim)
            .map(|q| g.search(q, 10, 20, None))
            .collect();
        let old_of_new = g.reorder();
        let mut seen = old_of_new.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..1_500).collect::<Vec<u32>>(), "a permutation");
        for (q, was) in queries.chunks(dim).zip(&before) {
            let now: Vec<(u32, f32)> = g
                .search(q, 10, 20, None)
                .into_iter()
                .map(|(new, d)| (old_of_new[new as usize], d))
                .collect();
            assert_eq!(&now, was);
        }
        let layers = g.layers.read();
        for (new, &old) in old_of_new.iter().enumerate() {
            assert_eq!(
                layers.vector(new as u32),
                &data[old as usize * dim..][..dim]
            );
        }
    }
}
