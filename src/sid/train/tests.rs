//! Tests of the residual k-means trainer.

use std::collections::HashMap;
use std::sync::Mutex;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Standard normal samples (Box-Muller), deterministic for `seed`.
fn gaussian(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let v: f64 = rng.gen();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn params(levels: usize, codes: usize, iterations: usize, seed: u64) -> TrainParams {
    TrainParams {
        levels,
        codes,
        iterations,
        seed,
        balance_last_level: false,
        threads: 1,
    }
}

fn run(data: &[f32], n: usize, dim: usize, p: &TrainParams) -> (Codebooks, Vec<u16>) {
    train(data, n, dim, p, &|_| {}).unwrap()
}

/// How many points hold each distinct full tuple.
fn tuple_counts(codes: &[u16], levels: usize) -> Vec<usize> {
    let mut count: HashMap<&[u16], usize> = HashMap::new();
    for t in codes.chunks_exact(levels) {
        *count.entry(t).or_default() += 1;
    }
    count.into_values().collect()
}

/// Number of points whose full tuple is shared with another point.
fn collisions(codes: &[u16], levels: usize) -> usize {
    tuple_counts(codes, levels)
        .into_iter()
        .filter(|&c| c > 1)
        .sum()
}

fn mean_error(data: &[f32], dim: usize, cb: &Codebooks, codes: &[u16]) -> f64 {
    let mut out = vec![0f32; dim];
    let mut total = 0f64;
    let rows = data.chunks_exact(dim);
    let n = rows.len();
    for (x, c) in rows.zip(codes.chunks_exact(cb.levels)) {
        reconstruct(cb, c, &mut out).unwrap();
        total += f64::from(sq_dist(x, &out));
    }
    total / n as f64
}

#[test]
fn defaults() {
    let p = TrainParams::default();
    assert_eq!((p.levels, p.codes, p.iterations, p.seed), (4, 256, 20, 42));
    assert!(!p.balance_last_level);
    assert!(p.threads >= 1);
}

#[test]
fn same_seed_is_deterministic_other_seeds_differ() {
    let (n, dim) = (500, 8);
    let x = gaussian(n * dim, 1);
    let p = params(3, 16, 10, 7);
    assert_eq!(run(&x, n, dim, &p), run(&x, n, dim, &p));
    // Another seed: other codebooks.
    assert_ne!(
        run(&x, n, dim, &p).0,
        run(&x, n, dim, &params(3, 16, 10, 8)).0
    );
}

#[test]
fn thread_count_does_not_change_the_result() {
    // Large enough that every thread gets rows (the helper keeps >= 32 records per thread).
    let (n, dim) = (3000, 12);
    let x = gaussian(n * dim, 2);
    for balance in [false, true] {
        let mut p = params(2, 32, 8, 3);
        p.balance_last_level = balance;
        let one = run(&x, n, dim, &p);
        for threads in [2, 3, 4, 7] {
            p.threads = threads;
            let other = run(&x, n, dim, &p);
            let bits =
                |cb: &Codebooks| cb.centroids.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one.0), bits(&other.0), "threads {threads}");
            assert_eq!(one.1, other.1, "threads {threads}");
        }
    }
}

#[test]
fn separated_blobs_are_recovered_at_level_0() {
    let (blobs, per, dim) = (8, 60, 16);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let centres: Vec<f32> = (0..blobs * dim)
        .map(|_| rng.gen_range(-50.0..50.0))
        .collect();
    let noise = gaussian(blobs * per * dim, 5);
    let x: Vec<f32> = (0..blobs * per * dim)
        .map(|i| centres[(i / dim / per) * dim + i % dim] + 0.1 * noise[i])
        .collect();
    for seed in 0..5 {
        let (_, codes) = run(&x, blobs * per, dim, &params(2, 8, 10, seed));
        let level0: Vec<u16> = codes.chunks_exact(2).map(|t| t[0]).collect();
        let mut seen: Vec<u16> = Vec::new();
        for blob in level0.chunks_exact(per) {
            assert!(
                blob.iter().all(|&c| c == blob[0]),
                "seed {seed}: blob split"
            );
            seen.push(blob[0]);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), blobs, "seed {seed}: blobs merged");
    }
}

#[test]
fn error_decreases_with_levels() {
    let (n, dim) = (2000, 16);
    let x = gaussian(n * dim, 6);
    let errors: Vec<f64> = [1, 2, 4]
        .iter()
        .map(|&levels| {
            let (cb, codes) = run(&x, n, dim, &params(levels, 16, 10, 9));
            mean_error(&x, dim, &cb, &codes)
        })
        .collect();
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
}

#[test]
fn balancing_reduces_collisions_and_respects_capacity() {
    let (dim, levels, k) = (8, 2, 16);
    // n = 200 < 16^2 tuples: collisions are avoidable. n = 1000 > 256: they are not, but
    // balancing still spreads the points over more tuples.
    for n in [200, 1000] {
        let x = gaussian(n * dim, 7);
        let mut p = params(levels, k, 10, 11);
        let (cb_plain, plain) = run(&x, n, dim, &p);
        p.balance_last_level = true;
        let (cb_bal, bal) = run(&x, n, dim, &p);
        assert_eq!(cb_plain, cb_bal, "balancing must not change the codebooks");
        let (c_plain, c_bal) = (collisions(&plain, levels), collisions(&bal, levels));
        assert!(c_plain > 0, "n {n}: no collisions to remove");
        if n == 200 {
            assert!(c_bal < c_plain, "n {n}: plain {c_plain}, balanced {c_bal}");
        }
        let max_share = |c: &[u16]| tuple_counts(c, levels).into_iter().max();
        assert!(max_share(&bal) < max_share(&plain), "n {n}");
        let mut groups: HashMap<u16, Vec<u16>> = HashMap::new();
        for (a, b) in plain.chunks_exact(levels).zip(bal.chunks_exact(levels)) {
            assert_eq!(a[0], b[0], "balancing only changes the last level");
            groups.entry(b[0]).or_default().push(b[1]);
        }
        for last in groups.values() {
            let cap = last.len().div_ceil(k);
            let mut count = vec![0usize; k];
            for &c in last {
                count[usize::from(c)] += 1;
            }
            assert!(
                count.iter().all(|&c| c <= cap),
                "capacity {cap} exceeded: {count:?}"
            );
        }
    }
}

#[test]
fn balancing_one_level_makes_small_sets_unique() {
    let (n, dim) = (30, 3);
    let x = gaussian(n * dim, 8);
    let mut p = params(1, 32, 5, 1);
    p.balance_last_level = true;
    let (_, codes) = run(&x, n, dim, &p);
    assert_eq!(collisions(&codes, 1), 0);
}

#[test]
fn assign_reproduces_training_codes() {
    let (n, dim, levels) = (600, 10, 3);
    let x = gaussian(n * dim, 9);
    let (cb, codes) = run(&x, n, dim, &params(levels, 16, 6, 5));
    let mut out = vec![0u16; levels];
    for (row, want) in x.chunks_exact(dim).zip(codes.chunks_exact(levels)) {
        assign(&cb, row, &mut out).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn assign_with_skips_forbidden_last_codes() {
    let (n, dim, levels, k) = (300, 4, 2, 8);
    let x = gaussian(n * dim, 10);
    let (cb, codes) = run(&x, n, dim, &params(levels, k, 6, 5));
    let mut out = vec![0u16; levels];
    for (i, row) in x.chunks_exact(dim).enumerate().take(50) {
        let want = &codes[i * levels..(i + 1) * levels];
        let forbidden = want[levels - 1];
        assign_with(&cb, row, &mut out, &|c| c != forbidden).unwrap();
        assert_eq!(out[0], want[0]);
        assert_ne!(out[1], forbidden);
        // The chosen code is the nearest allowed one for the level-1 residual.
        let c0 = usize::from(out[0]) * dim;
        let r: Vec<f32> = row
            .iter()
            .zip(&cb.centroids[c0..c0 + dim])
            .map(|(a, b)| a - b)
            .collect();
        let d = |c: usize| -> f32 {
            let s = (k + c) * dim;
            sq_dist(&r, &cb.centroids[s..s + dim])
        };
        let chosen = d(usize::from(out[1]));
        for c in (0..k).filter(|&c| c != usize::from(forbidden)) {
            assert!(chosen <= d(c) + 1e-4, "code {c} is nearer");
        }
        // Nothing allowed: the nearest code.
        assign_with(&cb, row, &mut out, &|_| false).unwrap();
        assert_eq!(out, want);
        assign_with(&cb, row, &mut out, &|_| true).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn fewer_points_than_codes() {
    let x = [0.0, 1.0, 2.0, 3.0, -1.0, 5.0];
    let (cb, codes) = run(&x, 3, 2, &params(2, 16, 5, 1));
    assert_eq!(cb.centroids.len(), 2 * 16 * 2);
    assert!(codes.iter().all(|&c| c < 16));
    // Fewer distinct points than codes: all weights become 0 during k-means++.
    let same = vec![1.5f32; 100 * 4];
    let mut p = params(3, 32, 4, 2);
    p.balance_last_level = true;
    let (cb, codes) = run(&same, 100, 4, &p);
    assert!(codes.iter().all(|&c| c < 32));
    assert!(cb.centroids.iter().all(|v| v.is_finite()));
    // One point.
    let (_, codes) = run(&[3.0], 1, 1, &params(1, 2, 1, 0));
    assert_eq!(codes, vec![0]);
}

#[test]
fn progress_is_reported_per_iteration() {
    let (n, dim) = (200, 4);
    let x = gaussian(n * dim, 12);
    let seen = Mutex::new(Vec::new());
    let p = params(3, 8, 4, 1);
    train(&x, n, dim, &p, &|pr| {
        seen.lock().unwrap().push((pr.level, pr.iteration))
    })
    .unwrap();
    let seen = seen.into_inner().unwrap();
    for level in 0..3 {
        let its: Vec<usize> = seen.iter().filter(|s| s.0 == level).map(|s| s.1).collect();
        assert!(!its.is_empty() && its.len() <= 5);
        assert_eq!(its, (0..its.len()).collect::<Vec<_>>());
    }
}

#[test]
fn every_error_is_reported() {
    use TrainError::*;
    let p = params(2, 4, 2, 0);
    let t = |d: &[f32], n, dim, p: &TrainParams| train(d, n, dim, p, &|_| {}).map(|_| ());
    let with = |f: &dyn Fn(&mut TrainParams)| {
        let mut q = p.clone();
        f(&mut q);
        q
    };
    assert_eq!(t(&[], 0, 2, &p), Err(EmptyData));
    assert_eq!(t(&[1.0], 1, 0, &p), Err(ZeroDim));
    assert_eq!(
        t(&[1.0; 3], 2, 2, &p),
        Err(LengthMismatch {
            n: 2,
            dim: 2,
            len: 3
        })
    );
    let overflow = LengthMismatch {
        n: usize::MAX,
        dim: 2,
        len: 4,
    };
    assert_eq!(t(&[1.0; 4], usize::MAX, 2, &p), Err(overflow));
    for levels in [0, 9] {
        let q = with(&|q| q.levels = levels);
        assert_eq!(t(&[1.0; 4], 2, 2, &q), Err(BadLevels(levels)));
    }
    for codes in [0, 1, 65537] {
        let q = with(&|q| q.codes = codes);
        assert_eq!(t(&[1.0; 4], 2, 2, &q), Err(BadCodes(codes)));
    }
    let q = with(&|q| q.iterations = 0);
    assert_eq!(t(&[1.0; 4], 2, 2, &q), Err(ZeroIterations));
    let nan = [1.0, 2.0, f32::NAN, 3.0];
    assert_eq!(t(&nan, 2, 2, &p), Err(NonFinite { row: 1, col: 0 }));
    let inf = [1.0, f32::INFINITY, 0.0, 3.0];
    assert_eq!(t(&inf, 2, 2, &p), Err(NonFinite { row: 0, col: 1 }));
    // Unreachable through `train` on 64-bit (the data would not fit in memory): the guard.
    let dim = usize::MAX / 4;
    assert_eq!(
        codebook_len(8, 65536, dim),
        Err(TooLarge {
            levels: 8,
            codes: 65536,
            dim
        })
    );
    let dim = usize::MAX / 8; // no usize overflow, but more than isize::MAX bytes
    assert_eq!(
        codebook_len(1, 2, dim),
        Err(TooLarge {
            levels: 1,
            codes: 2,
            dim
        })
    );
    assert_eq!(codebook_len(4, 256, 64), Ok(4 * 256 * 64));

    let (cb, _) = run(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 3, 2, &p);
    let mut out = [0u16; 2];
    let dim3 = || DimMismatch {
        expected: 2,
        actual: 3,
    };
    assert_eq!(assign(&cb, &[1.0; 3], &mut out), Err(dim3()));
    assert_eq!(
        assign_with(&cb, &[1.0; 3], &mut out, &|_| true),
        Err(dim3())
    );
    let lv3 = || LevelsMismatch {
        expected: 2,
        actual: 3,
    };
    assert_eq!(assign(&cb, &[1.0; 2], &mut [0u16; 3]), Err(lv3()));
    assert_eq!(
        assign_with(&cb, &[1.0; 2], &mut [0u16; 3], &|_| true),
        Err(lv3())
    );
    assert_eq!(reconstruct(&cb, &[0, 0, 0], &mut [0.0; 2]), Err(lv3()));
    let nan = NonFinite { row: 0, col: 1 };
    assert_eq!(assign(&cb, &[1.0, f32::NAN], &mut out), Err(nan));
    let dim1 = DimMismatch {
        expected: 2,
        actual: 1,
    };
    assert_eq!(reconstruct(&cb, &[0, 0], &mut [0.0; 1]), Err(dim1));
    let range = CodeOutOfRange {
        level: 1,
        code: 4,
        codes: 4,
    };
    assert_eq!(reconstruct(&cb, &[0, 4], &mut [0.0; 2]), Err(range));
    let mut bad = cb.clone();
    bad.centroids.pop();
    let e = || BadCodebooks {
        levels: 2,
        codes: 4,
        dim: 2,
        len: 15,
    };
    assert_eq!(assign(&bad, &[1.0; 2], &mut out), Err(e()));
    assert_eq!(reconstruct(&bad, &[0, 0], &mut [0.0; 2]), Err(e()));
    let zero = Codebooks {
        levels: 1,
        codes: 0,
        dim: 2,
        centroids: vec![],
    };
    assert!(matches!(
        assign(&zero, &[1.0; 2], &mut [0]),
        Err(BadCodebooks { .. })
    ));
    let zero_dim = Codebooks {
        levels: 1,
        codes: 2,
        dim: 0,
        centroids: vec![],
    };
    assert!(matches!(
        assign(&zero_dim, &[], &mut [0]),
        Err(BadCodebooks { .. })
    ));
    assert!(BadCodes(1).to_string().contains("codes must fit in u16"));
    assert!(NonFinite { row: 7, col: 3 }
        .to_string()
        .contains("vector 7"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn train_never_panics(
        n in 1usize..50,
        dim in 1usize..8,
        levels in 1usize..4,
        codes in 2usize..20,
        iterations in 1usize..3,
        balance in any::<bool>(),
        seed in any::<u64>(),
        small in any::<bool>(),
        huge in any::<bool>(),
        values in prop::collection::vec(-1e3f32..1e3, 400),
    ) {
        // `small`: many duplicate points (values in {0, 1, 2}); `huge`: values up to 3e38.
        let data: Vec<f32> = (0..n * dim)
            .map(|i| if small { values[i].rem_euclid(3.0).floor() } else { values[i] })
            .map(|v| if huge { v * 3e35 } else { v })
            .collect();
        let p = TrainParams { levels, codes, iterations, seed, balance_last_level: balance, threads: 2 };
        let (cb, out) = train(&data, n, dim, &p, &|_| {}).unwrap();
        prop_assert_eq!(out.len(), n * levels);
        prop_assert!(out.iter().all(|&c| usize::from(c) < codes));
        prop_assert_eq!(cb.centroids.len(), levels * codes * dim);
        // Values near f32::MAX overflow the squared distances: no panic, but no quality either.
        prop_assert!(huge || cb.centroids.iter().all(|v| v.is_finite()));
        let mut tuple = vec![0u16; levels];
        prop_assert!(assign(&cb, &data[..dim], &mut tuple).is_ok());
        let mut back = vec![0f32; dim];
        prop_assert!(reconstruct(&cb, &tuple, &mut back).is_ok());
    }
}

/// The balancing rule written the slow, obvious way: sort all (distance, point, code) pairs of
/// a group and take them greedily.
fn balance_naive(resid: &[f32], dim: usize, cents: &[f32], codes: &mut [u16], levels: usize) {
    let k = cents.len() / dim;
    let n = codes.len() / levels;
    let mut groups: HashMap<Vec<u16>, Vec<usize>> = HashMap::new();
    for p in 0..n {
        groups
            .entry(codes[p * levels..p * levels + levels - 1].to_vec())
            .or_default()
            .push(p);
    }
    for members in groups.values() {
        let cap = members.len().div_ceil(k);
        let mut pairs = Vec::new();
        for &p in members {
            for c in 0..k {
                let d = sq_dist(
                    &resid[p * dim..(p + 1) * dim],
                    &cents[c * dim..(c + 1) * dim],
                );
                pairs.push((d, p, c));
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut used = vec![0usize; k];
        let mut done = vec![false; n];
        for (_, p, c) in pairs {
            if !done[p] && used[c] < cap {
                done[p] = true;
                used[c] += 1;
                codes[p * levels + levels - 1] = c as u16;
            }
        }
    }
}

#[test]
fn balancing_matches_the_naive_greedy() {
    // k = 40 > the 16 candidates kept per point, and crowded points, so lists get refilled.
    for (n, k, levels, crowd) in [(200, 40, 1, 0.05f32), (300, 40, 2, 0.3), (57, 5, 2, 1.0)] {
        let dim = 3;
        let resid: Vec<f32> = gaussian(n * dim, n as u64)
            .iter()
            .map(|v| v * crowd)
            .collect();
        let cents = gaussian(k * dim, 99);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut fast: Vec<u16> = (0..n * levels).map(|_| rng.gen_range(0..3)).collect();
        let mut slow = fast.clone();
        balance_last(&resid, dim, &cents, &mut fast, levels, k, 2);
        balance_naive(&resid, dim, &cents, &mut slow, levels);
        assert_eq!(fast, slow, "n {n} k {k} levels {levels}");
    }
}
