//! Behavioural item vectors sketched from interactions.
//!
//! Each user gets a deterministic pseudo-random Gaussian vector `g(user)` (seeded by the user's
//! key and the seed); an item's vector is the sum of `g(user) / sqrt(|history(user)|)` over the
//! users who interacted with it, L2-normalised. Dot products of these vectors estimate the
//! (normalised) number of users two items share: a random-projection sketch of the item-user
//! matrix, which is what collaborative embeddings capture. Items nobody interacted with get
//! `g(item key)`, so every live item has a vector.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A deterministic standard-normal vector for `key` (Box-Muller over ChaCha8).
pub(crate) fn gaussian(key: &str, seed: u64, dim: usize) -> Vec<f32> {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut s = [0u8; 32];
    s.copy_from_slice(&digest);
    let mut rng = ChaCha8Rng::from_seed(s);
    (0..dim)
        .map(|_| {
            let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = rng.gen();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// Adds `scale * g` into `acc`.
pub(crate) fn add_scaled(acc: &mut [f32], g: &[f32], scale: f32) {
    acc.iter_mut().zip(g).for_each(|(a, v)| *a += scale * v);
}

/// Normalises in place; returns false for a zero vector.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_is_deterministic_and_roughly_standard() {
        assert_eq!(gaussian("u1", 7, 16), gaussian("u1", 7, 16));
        assert_ne!(gaussian("u1", 7, 16), gaussian("u2", 7, 16));
        assert_ne!(gaussian("u1", 7, 16), gaussian("u1", 8, 16));
        let g = gaussian("x", 1, 20_000);
        let mean = g.iter().sum::<f32>() / g.len() as f32;
        let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / g.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn shared_users_make_similar_items() {
        let dim = 64;
        let users: Vec<Vec<f32>> = (0..40)
            .map(|u| gaussian(&format!("u{u}"), 3, dim))
            .collect();
        let item = |range: std::ops::Range<usize>| {
            let mut v = vec![0.0; dim];
            range.for_each(|u| add_scaled(&mut v, &users[u], 1.0));
            assert!(normalize(&mut v));
            v
        };
        let (a, b, c) = (item(0..20), item(2..22), item(20..40));
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &b) > 0.6, "{}", dot(&a, &b));
        assert!(dot(&a, &c).abs() < 0.4, "{}", dot(&a, &c));
    }
}
