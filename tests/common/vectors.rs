//! Vectors for the ANN tests: a seeded Gaussian mixture, and exact (brute-force) neighbours.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` vectors of dimension `dim` around `clusters` random centres (seeded).
pub fn mixture(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.gen_range(0..clusters)];
            c.iter().map(|x| x + rng.gen_range(-0.5..0.5)).collect()
        })
        .collect()
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Indices of the `k` vectors most cosine-similar to `query`, best first.
pub fn exact_top_k(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (cosine(v, query), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// |found ∩ exact| / |exact|.
pub fn recall(found: &[usize], exact: &[usize]) -> f64 {
    let hits = exact.iter().filter(|e| found.contains(e)).count();
    hits as f64 / exact.len().max(1) as f64
}
