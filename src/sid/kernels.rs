//! Numeric kernels of the residual k-means trainer (`train.rs`): dot products and squared
//! distances written so that LLVM auto-vectorizes them (8 independent f32 accumulators), the
//! nearest-centroid search (`||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2` over centroids transposed
//! into panels of 16, so one pass over `x` scores 16 centroids), a scoped-thread helper whose results never depend on the thread count, D²
//! sampling, the farthest-point choice for empty clusters, and the balanced (capacity-limited)
//! re-assignment of the last level.
//!
//! Mismatched lengths are cut to the shorter slice and NaN scores never win a comparison, so
//! no finite or non-finite value makes these functions panic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Candidate codes kept per point when balancing (more are computed only when needed).
const BALANCE_TOP: usize = 16;

/// Lanes per accumulator block.
const LANES: usize = 8;

/// Reduces 8 lane accumulators plus a scalar tail in a fixed order.
#[inline(always)]
fn reduce(acc: &[f32; LANES], tail: f32) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product of `a` and `b` (over the shorter length).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    let mut tail = 0f32;
    for (&p, &q) in ra.iter().zip(rb) {
        tail += p * q;
    }
    reduce(&acc, tail)
}

/// Squared Euclidean distance `||a - b||^2`, computed directly (over the shorter length).
#[inline]
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            let d = p - q;
            *s += d * d;
        }
    }
    let mut tail = 0f32;
    for (&p, &q) in ra.iter().zip(rb) {
        let d = p - q;
        tail += d * d;
    }
    reduce(&acc, tail)
}

/// Rows per panel of [`Prepared`]: the search computes this many dot products per pass over
/// `x`, in `PANEL` independent accumulators (4 SSE registers: enough to hide add latency).
const PANEL: usize = 16;

/// Centroids laid out for [`nearest_where`]: their squared norms, and the rows transposed into
/// panels of [`PANEL`] rows (`panel[j * PANEL + m]` is component `j` of row `m` of the panel;
/// the last panel is zero-padded). Each dot product is a plain sequential sum over the
/// components, so a row's score never depends on its panel or on the other rows.
pub struct Prepared {
    dim: usize,
    k: usize,
    norms: Vec<f32>,
    panels: Vec<f32>,
}

impl Prepared {
    /// Prepares the `rows.len() / dim` rows of `dim` floats in `rows`.
    pub fn new(rows: &[f32], dim: usize) -> Prepared {
        let dim = dim.max(1);
        let k = rows.len() / dim;
        let mut norms = vec![0f32; k];
        row_norms(rows, dim, &mut norms);
        let mut panels = vec![0f32; k.div_ceil(PANEL) * PANEL * dim];
        for (c, row) in rows.chunks_exact(dim).enumerate() {
            let base = (c / PANEL) * PANEL * dim + c % PANEL;
            for (j, &v) in row.iter().enumerate() {
                panels[base + j * PANEL] = v;
            }
        }
        Prepared {
            dim,
            k,
            norms,
            panels,
        }
    }
}

/// Squared norm of each of the `norms.len()` rows of `dim` floats in `rows` (via [`dot`]).
pub fn row_norms(rows: &[f32], dim: usize, norms: &mut [f32]) {
    for (n, r) in norms.iter_mut().zip(rows.chunks_exact(dim.max(1))) {
        *n = dot(r, r);
    }
}

/// Nearest prepared row to `x` among the rows `ok` accepts, by the score `||c||^2 - 2 x.c`
/// (ties: lowest index). `None` when no row is accepted, or `x.len()` is not the rows' dim.
/// The score of a row never depends on which other rows are accepted.
#[inline]
pub fn nearest_where(x: &[f32], pre: &Prepared, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if x.len() != pre.dim {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for (p, panel) in pre.panels.chunks_exact(PANEL * pre.dim).enumerate() {
        let mut acc = [0f32; PANEL];
        for (&v, col) in x.iter().zip(panel.chunks_exact(PANEL)) {
            for (s, &q) in acc.iter_mut().zip(col) {
                *s += v * q;
            }
        }
        for (m, &dot) in acc.iter().enumerate() {
            let c = p * PANEL + m;
            if c >= pre.k || !ok(c) {
                continue;
            }
            let score = pre.norms[c] - 2.0 * dot;
            // Later rows must be strictly better, so ties keep the lowest index; a NaN score
            // (only from overflowing inputs) loses to any number.
            let better = match best {
                None => true,
                Some((_, b)) => score < b || (b.is_nan() && !score.is_nan()),
            };
            if better {
                best = Some((c, score));
            }
        }
    }
    best.map(|(c, _)| c)
}

/// Nearest prepared row to `x` (see [`nearest_where`]); 0 when there is none.
#[inline]
pub fn nearest(x: &[f32], pre: &Prepared) -> usize {
    nearest_where(x, pre, |_| true).unwrap_or(0)
}

/// Runs `f(index, record)` on every `unit`-sized record of `data` (`data.len() / unit` records;
/// a trailing partial record is skipped), on up to `threads` scoped threads that each take one
/// contiguous range of records, and returns the sum of what `f` returned. Each call of `f` sees
/// only its own record, so the result does not depend on `threads`.
pub fn par_records<T, F>(threads: usize, data: &mut [T], unit: usize, f: F) -> usize
where
    T: Send,
    F: Fn(usize, &mut [T]) -> usize + Sync,
{
    let unit = unit.max(1);
    let records = data.len() / unit;
    let data = &mut data[..records * unit];
    // At least 32 records per thread: below that a spawn costs more than it saves.
    let threads = threads.clamp(1, (records / 32).max(1));
    if threads == 1 {
        return data
            .chunks_exact_mut(unit)
            .enumerate()
            .map(|(i, r)| f(i, r))
            .sum();
    }
    let per = records.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks_mut(per * unit)
            .enumerate()
            .map(|(t, part)| {
                s.spawn(move || {
                    part.chunks_exact_mut(unit)
                        .enumerate()
                        .map(|(i, r)| f(t * per + i, r))
                        .sum::<usize>()
                })
            })
            .collect();
        let mut total = 0usize;
        for h in handles {
            match h.join() {
                Ok(v) => total += v,
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        total
    })
}

/// Lloyd update of the `k = cents.len() / dim` centroids from the rows of `x` (`dim` floats
/// each) and their codes in `asg` (code, squared distance to its centroid): each centroid
/// becomes the mean of its rows, summed in f64 in ascending row order (parallel over clusters,
/// so the result does not depend on `threads`). Each empty cluster takes one row, the farthest
/// from its centroid first (ties: lowest index). Codes `>= k` are ignored.
pub fn update_centroids(
    x: &[f32],
    dim: usize,
    threads: usize,
    asg: &[(u16, f32)],
    cents: &mut [f32],
) {
    let dim = dim.max(1);
    let (n, k) = (asg.len().min(x.len() / dim), cents.len() / dim);
    let (asg, row) = (&asg[..n], |i: usize| &x[i * dim..(i + 1) * dim]);
    // Counting sort of the rows by code: members of cluster c are order[start[c]..start[c+1]].
    let mut start = vec![0usize; k + 1];
    for &(c, _) in asg {
        if let Some(s) = start.get_mut(usize::from(c) + 1) {
            *s += 1;
        }
    }
    for c in 0..k {
        start[c + 1] += start[c];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; start[k]];
    for (i, &(c, _)) in asg.iter().enumerate() {
        if let Some(slot) = fill.get_mut(usize::from(c)).filter(|_| usize::from(c) < k) {
            order[*slot] = i;
            *slot += 1;
        }
    }
    par_records(threads, cents, dim, |c, out| {
        let members = &order[start[c]..start[c + 1]];
        if members.is_empty() {
            return 0;
        }
        let mut acc = vec![0f64; dim];
        for &i in members {
            for (a, &v) in acc.iter_mut().zip(row(i)) {
                *a += f64::from(v);
            }
        }
        let count = members.len() as f64;
        for (r, a) in out.iter_mut().zip(&acc) {
            *r = (a / count) as f32;
        }
        0
    });
    let empty: Vec<usize> = (0..k).filter(|&c| start[c] == start[c + 1]).collect();
    if empty.is_empty() || n == 0 {
        return;
    }
    let far = farthest(asg, empty.len().min(n));
    for (j, &c) in empty.iter().enumerate() {
        if let Some(&p) = far.get(j % far.len().max(1)) {
            cents[c * dim..(c + 1) * dim].copy_from_slice(row(p));
        }
    }
}

/// The `m` (1..=n) rows farthest from their centroids, farthest first (ties: lowest index).
pub fn farthest(asg: &[(u16, f32)], m: usize) -> Vec<usize> {
    let cmp = |a: &usize, b: &usize| asg[*b].1.total_cmp(&asg[*a].1).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..asg.len()).collect();
    if m < idx.len() {
        idx.select_nth_unstable_by(m, cmp);
        idx.truncate(m);
    }
    idx.sort_unstable_by(cmp);
    idx
}

/// Draws an index with probability proportional to its weight; `None` when the weights do not
/// sum to a positive finite number.
pub fn sample(weights: &[f32], rng: &mut ChaCha8Rng) -> Option<usize> {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let r = rng.gen::<f64>() * total;
    let mut acc = 0f64;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += f64::from(w);
            last = Some(i);
            if acc > r {
                return Some(i);
            }
        }
    }
    last
}

/// An integer key that orders like `f32::total_cmp` (the standard bit trick).
fn total_key(d: f32) -> i32 {
    let bits = d.to_bits() as i32;
    bits ^ ((((bits >> 31) as u32) >> 1) as i32)
}

/// A (distance key, point, code, rank in the point's list) entry of the balancing order.
type Pair = (i32, usize, u16, usize);

/// The `out.len()` nearest codes of `x` by exact squared distance, ascending (ties: lower code).
fn ranked_codes(x: &[f32], cents: &[f32], out: &mut [(f32, u16)]) {
    let dim = x.len();
    let mut all: Vec<(f32, u16)> = cents
        .chunks_exact(dim.max(1))
        .enumerate()
        .map(|(c, row)| (sq_dist(x, row), c as u16))
        .collect();
    let cmp = |a: &(f32, u16), b: &(f32, u16)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    let m = out.len().min(all.len());
    if m < all.len() {
        all.select_nth_unstable_by(m, cmp);
        all.truncate(m);
    }
    all.sort_unstable_by(cmp);
    out[..m].copy_from_slice(&all);
}

/// Balanced re-assignment of the last level (`TrainParams::balance_last_level`): `codes` holds
/// `levels` codes per point and `resid` each point's last-level residual; inside each group of
/// points sharing the first `levels - 1` codes, capacity per code is ceil(group / k) (`k` rows
/// of `dim` floats in `cents`); (point, code) pairs are taken greedily by ascending squared
/// distance (ties: lower point, then lower code), each point once. Inconsistent sizes: no-op.
pub fn balance_last(
    resid: &[f32],
    dim: usize,
    cents: &[f32],
    codes: &mut [u16],
    levels: usize,
    k: usize,
    threads: usize,
) {
    if levels == 0 || dim == 0 || k == 0 || cents.len() < k * dim {
        return;
    }
    let n = codes.len() / levels;
    if resid.len() < n * dim {
        return;
    }
    let prefix = |codes: &[u16], p: usize| -> Vec<u16> {
        codes[p * levels..p * levels + levels - 1].to_vec()
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_cached_key(|&p| (prefix(codes, p), p));
    let top = k.min(BALANCE_TOP);
    let mut ranked = vec![(0f32, 0u16); n * top];
    par_records(threads, &mut ranked, top, |p, out| {
        ranked_codes(&resid[p * dim..(p + 1) * dim], cents, out);
        0
    });
    let mut used = vec![0usize; k];
    let mut startg = 0;
    while startg < n {
        let key = prefix(codes, order[startg]);
        let len = order[startg..]
            .iter()
            .position(|&p| prefix(codes, p) != key)
            .unwrap_or(n - startg);
        let group = &order[startg..startg + len];
        startg += len;
        let cap = len.div_ceil(k);
        let mut full: HashMap<usize, Vec<(f32, u16)>> = HashMap::new();
        let mut heap: BinaryHeap<Reverse<Pair>> = group
            .iter()
            .map(|&p| {
                let (dist, code) = ranked[p * top];
                Reverse((total_key(dist), p, code, 0))
            })
            .collect();
        while let Some(Reverse((_, p, code, rank))) = heap.pop() {
            let slot = &mut used[usize::from(code)];
            if *slot < cap {
                *slot += 1;
                codes[p * levels + levels - 1] = code;
                continue;
            }
            let rank = rank + 1;
            let next = if rank < top {
                Some(ranked[p * top + rank])
            } else {
                let list = full.entry(p).or_insert_with(|| {
                    let mut all = vec![(0f32, 0u16); k];
                    ranked_codes(&resid[p * dim..(p + 1) * dim], cents, &mut all);
                    all
                });
                list.get(rank).copied()
            };
            // `None` cannot happen (k * cap >= group size); the point keeps its nearest code.
            if let Some((dist, code)) = next {
                heap.push(Reverse((total_key(dist), p, code, rank)));
            }
        }
        for &p in group {
            if let Some(u) = used.get_mut(usize::from(codes[p * levels + levels - 1])) {
                *u = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    #[test]
    fn dot_and_dist_match_naive() {
        for len in [0usize, 1, 7, 8, 9, 17, 64, 100] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!((f64::from(dot(&a, &b)) - naive_dot(&a, &b)).abs() < 1e-4);
            let d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            assert!((f64::from(sq_dist(&a, &b)) - naive_dot(&d, &d)).abs() < 1e-4);
        }
    }

    #[test]
    fn nearest_ties_and_filter() {
        // Rows: 0: (1,0), 1: (1,0) (duplicate), 2: (0,1), 3: (5,5), 4: (-1,0)
        let cents = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0, -1.0, 0.0];
        let pre = Prepared::new(&cents, 2);
        assert_eq!(nearest(&[0.9, 0.1], &pre), 0);
        assert_eq!(nearest_where(&[0.9, 0.1], &pre, |c| c != 0), Some(1));
        assert_eq!(nearest_where(&[0.9, 0.1], &pre, |c| c > 1), Some(2));
        assert_eq!(nearest_where(&[0.9, 0.1], &pre, |_| false), None);
        assert_eq!(nearest(&[-3.0, 0.0], &pre), 4);
        assert_eq!(nearest(&[1.0], &Prepared::new(&[], 1)), 0);
        assert_eq!(nearest(&[1.0], &pre), 0); // wrong dim
    }

    #[test]
    fn total_key_orders_like_total_cmp() {
        let v = [
            f32::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-40,
            1.0,
            3e38,
            f32::INFINITY,
            f32::NAN,
        ];
        for a in v {
            for b in v {
                assert_eq!(total_key(a).cmp(&total_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
    }

    #[test]
    fn update_means_and_reseeds_empty_clusters() {
        // 4 rows of dim 1; codes 0,0,1,0 with distances 1,5,5,2; k = 4: clusters 2, 3 empty.
        let x = [1.0, 3.0, 10.0, 5.0];
        let asg = [(0u16, 1.0), (0, 5.0), (1, 5.0), (0, 2.0)];
        for threads in [1, 3] {
            let mut cents = [0f32; 4];
            update_centroids(&x, 1, threads, &asg, &mut cents);
            // Farthest first, ties to the lowest index: rows 1 then 2.
            assert_eq!(cents, [3.0, 10.0, 3.0, 10.0]);
        }
        // More empty clusters than rows: the rows are reused in the same order.
        let mut cents = [0f32; 6];
        update_centroids(&x[..1], 1, 1, &asg[..1], &mut cents);
        assert_eq!(cents, [1.0; 6]);
    }

    #[test]
    fn par_records_is_thread_independent() {
        for threads in 1..5 {
            let mut v = vec![0u32; 1000];
            let s = par_records(threads, &mut v, 3, |i, r| {
                for x in r.iter_mut() {
                    *x = i as u32;
                }
                i % 2
            });
            assert_eq!(s, (0..333).filter(|i| i % 2 == 1).count());
            assert_eq!(v[999], 0);
            assert_eq!(v[998], 332);
        }
    }
}
