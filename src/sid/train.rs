//! Residual (cascaded) k-means tokenization: the "semantic ID" codebooks of "Semantic
//! Convergence" (Li et al., AAAI 2025). Level 0 clusters the vectors, level `l` clusters the
//! residuals left by levels `< l`, and a vector's semantic ID is its tuple of codes, one per
//! level. Training is deterministic for a given input and seed, whatever the thread count:
//! k-means++ seeding (ChaCha8, one stream per level), Lloyd iterations whose assignment step is
//! independent per point and whose centroid sums run per cluster in ascending point order.
//! Optionally the last level is balanced inside each group of points sharing the earlier codes,
//! so that full tuples are (nearly) unique.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::kernels::{
    balance_last, nearest, nearest_where, par_records, sample, sq_dist, update_centroids, Prepared,
};

/// Most levels a quantizer may have.
const LEVELS_MAX: usize = 8;
/// Most codes per level: codes are `u16`.
const CODES_MAX: usize = 1 << 16;

/// Codebooks of a residual quantizer: `levels` levels of `codes` centroids of `dim` floats,
/// row-major: centroid (l, c) starts at ((l * codes) + c) * dim.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebooks {
    /// Number of levels (codes per vector).
    pub levels: usize,
    /// Centroids per level.
    pub codes: usize,
    /// Floats per centroid (the vectors' dimension).
    pub dim: usize,
    /// `levels * codes * dim` floats.
    pub centroids: Vec<f32>,
}

/// Parameters of [`train`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainParams {
    /// Number of levels (codes per vector), 1..=8. Default 4.
    pub levels: usize,
    /// Centroids per level, 2..=65536. Default 256.
    pub codes: usize,
    /// Lloyd iterations per level (fewer when assignments stop changing). Default 20.
    pub iterations: usize,
    /// Seed of the k-means++ initialisation. Default 42.
    pub seed: u64,
    /// Re-assign the last level so that codes are spread evenly inside each group of vectors
    /// that share the earlier codes. Default false.
    pub balance_last_level: bool,
    /// Worker threads (0 is taken as 1); never changes the result. Default: the available
    /// parallelism.
    pub threads: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            levels: 4,
            codes: 256,
            iterations: 20,
            seed: 42,
            balance_last_level: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Where training is: reported once after each level's k-means++ initialisation
/// (`iteration == 0`) and once after each Lloyd iteration (`1..=iterations`).
#[derive(Clone, Copy, Debug)]
pub struct TrainProgress {
    /// Level being trained, `0..levels`.
    pub level: usize,
    /// Number of levels.
    pub levels: usize,
    /// 0 after the k-means++ initialisation, then the Lloyd iteration just done.
    pub iteration: usize,
    /// Most Lloyd iterations per level.
    pub iterations: usize,
}

/// Why training, assignment or reconstruction was refused. Field names: `n` vectors of `dim`
/// floats in `len` floats of data; `row`/`col` of a bad value; `expected`/`actual` lengths.
#[allow(missing_docs)] // the fields are named after what they hold; see the variant docs
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    /// `n` is 0.
    #[error("no training vectors (n is 0): pass at least one vector")]
    EmptyData,
    /// `dim` is 0.
    #[error("dim is 0: vectors must have at least one component")]
    ZeroDim,
    /// `data.len() != n * dim`.
    #[error("data has {len} floats but n * dim = {n} * {dim}: pass exactly n rows of dim floats")]
    LengthMismatch { n: usize, dim: usize, len: usize },
    /// `levels` is 0 or more than 8.
    #[error("levels is {0}: it must be between 1 and 8")]
    BadLevels(usize),
    /// `codes` is below 2 or above 65536.
    #[error("codes is {0}: it must be between 2 and 65536 (codes must fit in u16)")]
    BadCodes(usize),
    /// `iterations` is 0.
    #[error("iterations is 0: use at least 1 Lloyd iteration")]
    ZeroIterations,
    /// A NaN or infinite value: the first one's row (vector index) and column.
    #[error(
        "vector {row} has a non-finite value (NaN or infinity) at column {col}: fix or drop it"
    )]
    NonFinite { row: usize, col: usize },
    /// `levels * codes * dim` floats cannot be allocated.
    #[error("codebooks of {levels} levels x {codes} codes x {dim} floats do not fit in memory")]
    TooLarge {
        levels: usize,
        codes: usize,
        dim: usize,
    },
    /// The fields of a [`Codebooks`] disagree (`len` is `centroids.len()`).
    #[error(
        "codebooks are inconsistent: {levels} levels x {codes} codes x {dim} floats do not match \
         {len} centroid floats (codes must be 1..=65536, dim at least 1)"
    )]
    BadCodebooks {
        levels: usize,
        codes: usize,
        dim: usize,
        len: usize,
    },
    /// A vector (or output buffer) length is not the codebooks' `dim`.
    #[error("vector has {actual} floats but the codebooks have dim {expected}")]
    DimMismatch { expected: usize, actual: usize },
    /// A codes slice length is not the codebooks' `levels`.
    #[error("codes slice has {actual} entries but the codebooks have {expected} levels")]
    LevelsMismatch { expected: usize, actual: usize },
    /// A code is not below the codebooks' `codes`.
    #[error("code {code} at level {level} is out of range: the codebooks have {codes} codes")]
    CodeOutOfRange {
        level: usize,
        code: u16,
        codes: usize,
    },
}

impl Codebooks {
    /// Checks that the fields agree (they are public, and may come from a file).
    fn check(&self) -> Result<(), TrainError> {
        let expected = self
            .levels
            .checked_mul(self.codes)
            .and_then(|v| v.checked_mul(self.dim));
        if self.codes == 0
            || self.codes > CODES_MAX
            || self.dim == 0
            || expected != Some(self.centroids.len())
        {
            return Err(TrainError::BadCodebooks {
                levels: self.levels,
                codes: self.codes,
                dim: self.dim,
                len: self.centroids.len(),
            });
        }
        Ok(())
    }

    /// The `codes * dim` centroid floats of level `l` (call after [`Codebooks::check`]).
    fn level(&self, l: usize) -> &[f32] {
        let size = self.codes * self.dim;
        &self.centroids[l * size..(l + 1) * size]
    }
}

/// `r -= c`, element-wise (the one residual update used by training and assignment).
fn subtract(r: &mut [f32], c: &[f32]) {
    for (a, &b) in r.iter_mut().zip(c) {
        *a -= b;
    }
}

fn validate(data: &[f32], n: usize, dim: usize, p: &TrainParams) -> Result<(), TrainError> {
    if n == 0 {
        return Err(TrainError::EmptyData);
    }
    if dim == 0 {
        return Err(TrainError::ZeroDim);
    }
    if p.levels == 0 || p.levels > LEVELS_MAX {
        return Err(TrainError::BadLevels(p.levels));
    }
    if p.codes < 2 || p.codes > CODES_MAX {
        return Err(TrainError::BadCodes(p.codes));
    }
    if p.iterations == 0 {
        return Err(TrainError::ZeroIterations);
    }
    if n.checked_mul(dim) != Some(data.len()) {
        return Err(TrainError::LengthMismatch {
            n,
            dim,
            len: data.len(),
        });
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::NonFinite {
            row: i / dim,
            col: i % dim,
        });
    }
    Ok(())
}

/// `levels * codes * dim`, or [`TrainError::TooLarge`] when that many floats cannot be
/// addressed (more than `isize::MAX` bytes).
fn codebook_len(levels: usize, codes: usize, dim: usize) -> Result<usize, TrainError> {
    let floats = codes.checked_mul(dim).and_then(|v| v.checked_mul(levels));
    let max = isize::MAX.unsigned_abs() / std::mem::size_of::<f32>();
    floats
        .filter(|&f| f <= max)
        .ok_or(TrainError::TooLarge { levels, codes, dim })
}

/// Trains codebooks on `n` vectors of `dim` floats (row-major in `data`) and returns them with
/// each vector's codes (`n * levels`, row-major).
pub fn train(
    data: &[f32],
    n: usize,
    dim: usize,
    params: &TrainParams,
    progress: &(dyn Fn(TrainProgress) + Sync),
) -> Result<(Codebooks, Vec<u16>), TrainError> {
    validate(data, n, dim, params)?;
    let (levels, k) = (params.levels, params.codes);
    let total = codebook_len(levels, k, dim)?;
    let threads = params.threads.max(1);
    let mut centroids = Vec::new();
    let too_large = TrainError::TooLarge {
        levels,
        codes: k,
        dim,
    };
    centroids.try_reserve_exact(total).map_err(|_| too_large)?;
    let mut codes = vec![0u16; n * levels];
    let mut residual = data.to_vec();
    for level in 0..levels {
        let lv = Level {
            x: &residual,
            n,
            dim,
            k,
            level,
            threads,
            params,
            progress,
        };
        let (cents, labels) = train_level(&lv);
        for (row, &code) in codes.chunks_exact_mut(levels).zip(&labels) {
            row[level] = code;
        }
        if level + 1 < levels {
            par_records(threads, &mut residual, dim, |i, r| {
                let c = usize::from(labels[i]);
                subtract(r, &cents[c * dim..(c + 1) * dim]);
                0
            });
        } else if params.balance_last_level {
            balance_last(&residual, dim, &cents, &mut codes, levels, k, threads);
        }
        centroids.extend_from_slice(&cents);
    }
    Ok((
        Codebooks {
            levels,
            codes: k,
            dim,
            centroids,
        },
        codes,
    ))
}

/// One level's k-means problem: `n` rows of `dim` floats in `x`, `k` clusters.
struct Level<'a> {
    x: &'a [f32],
    n: usize,
    dim: usize,
    k: usize,
    level: usize,
    threads: usize,
    params: &'a TrainParams,
    progress: &'a (dyn Fn(TrainProgress) + Sync),
}

impl Level<'_> {
    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    fn report(&self, iteration: usize) {
        (self.progress)(TrainProgress {
            level: self.level,
            levels: self.params.levels,
            iteration,
            iterations: self.params.iterations,
        });
    }
}

/// k-means++ then Lloyd on one level; returns the `k * dim` centroids and each row's code under
/// exactly those centroids (what [`assign`] computes).
fn train_level(lv: &Level) -> (Vec<f32>, Vec<u16>) {
    let mut rng = ChaCha8Rng::seed_from_u64(lv.params.seed);
    rng.set_stream(lv.level as u64);
    let mut cents = kmeans_pp(lv, &mut rng);
    lv.report(0);
    // Each row's code and squared distance to its centroid.
    let mut asg = vec![(0u16, 0f32); lv.n];
    assign_rows(lv, &cents, &mut asg);
    for iteration in 1..=lv.params.iterations {
        update_centroids(lv.x, lv.dim, lv.threads, &asg, &mut cents);
        let changed = assign_rows(lv, &cents, &mut asg);
        lv.report(iteration);
        if changed == 0 {
            break;
        }
    }
    (cents, asg.into_iter().map(|(c, _)| c).collect())
}

/// Assigns every row to its nearest centroid; returns how many codes changed.
fn assign_rows(lv: &Level, cents: &[f32], asg: &mut [(u16, f32)]) -> usize {
    let dim = lv.dim;
    let pre = Prepared::new(cents, dim);
    par_records(lv.threads, asg, 1, |i, rec| {
        let x = lv.row(i);
        let c = nearest(x, &pre);
        let dist = sq_dist(x, &cents[c * dim..(c + 1) * dim]);
        let code = c as u16; // c < k <= 65536
        let changed = usize::from(rec[0].0 != code);
        rec[0] = (code, dist);
        changed
    })
}

/// k-means++ (D² sampling). When every remaining weight is 0 (fewer distinct rows than
/// codes), takes the lowest-index row not chosen yet, or cycles through the rows.
fn kmeans_pp(lv: &Level, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let (n, k, dim) = (lv.n, lv.k, lv.dim);
    let mut cents = vec![0f32; k * dim];
    let mut chosen = vec![false; n];
    let mut d2 = vec![0f32; n];
    for c in 0..k {
        let pick = if c == 0 {
            Some(rng.gen_range(0..n))
        } else {
            sample(&d2, rng)
        };
        let pick = pick
            .or_else(|| chosen.iter().position(|&b| !b))
            .unwrap_or(c % n);
        chosen[pick] = true;
        let new = lv.row(pick);
        cents[c * dim..(c + 1) * dim].copy_from_slice(new);
        if c + 1 < k {
            par_records(lv.threads, &mut d2, 1, |i, d| {
                let dist = sq_dist(lv.row(i), new);
                d[0] = if c == 0 { dist } else { d[0].min(dist) };
                0
            });
        }
    }
    cents
}

/// Greedy residual assignment of one vector: at each level the nearest centroid to the current
/// residual (ties: lowest code). `out.len() == codebooks.levels`, `x.len() == codebooks.dim`
/// (return an error, don't panic, if not). A NaN or infinite `x[col]` is refused as
/// `NonFinite { row: 0, col }`; inconsistent codebooks as `BadCodebooks`.
#[cfg(test)] // the database assigns through `PreparedCodebooks`
pub fn assign(codebooks: &Codebooks, x: &[f32], out: &mut [u16]) -> Result<(), TrainError> {
    let pre = PreparedCodebooks::new(codebooks)?;
    assign_impl(&pre, x, out, None)
}

/// Codebooks with the search layout of every level built once, for assigning many vectors
/// (the database keeps one per sid table, so a new item does not pay for the layout).
pub struct PreparedCodebooks {
    codebooks: Codebooks,
    levels: Vec<Prepared>,
}

impl std::fmt::Debug for PreparedCodebooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCodebooks")
            .field("levels", &self.codebooks.levels)
            .field("codes", &self.codebooks.codes)
            .field("dim", &self.codebooks.dim)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PreparedCodebooks {
    fn eq(&self, other: &Self) -> bool {
        // The layout is a pure function of the codebooks.
        self.codebooks == other.codebooks
    }
}

impl PreparedCodebooks {
    /// Checks `codebooks` and builds the layout of every level.
    pub fn new(codebooks: &Codebooks) -> Result<PreparedCodebooks, TrainError> {
        codebooks.check()?;
        let levels = (0..codebooks.levels)
            .map(|l| Prepared::new(codebooks.level(l), codebooks.dim))
            .collect();
        Ok(PreparedCodebooks {
            codebooks: codebooks.clone(),
            levels,
        })
    }

    /// [`assign`] with the prepared layout.
    pub fn assign(&self, x: &[f32], out: &mut [u16]) -> Result<(), TrainError> {
        assign_impl(self, x, out, None)
    }

    /// [`assign_with`] with the prepared layout.
    pub fn assign_with(
        &self,
        x: &[f32],
        out: &mut [u16],
        last_ok: &dyn Fn(u16) -> bool,
    ) -> Result<(), TrainError> {
        assign_impl(self, x, out, Some(last_ok))
    }
}

/// Like `assign`, but at the LAST level picks the nearest code c for which `last_ok(c)` is true
/// (used to avoid creating a tuple that already names another item); if no code is ok, the
/// nearest code. Same errors as `assign`.
#[cfg(test)] // the database assigns through `PreparedCodebooks`
pub fn assign_with(
    codebooks: &Codebooks,
    x: &[f32],
    out: &mut [u16],
    last_ok: &dyn Fn(u16) -> bool,
) -> Result<(), TrainError> {
    let pre = PreparedCodebooks::new(codebooks)?;
    assign_impl(&pre, x, out, Some(last_ok))
}

fn assign_impl(
    prepared: &PreparedCodebooks,
    x: &[f32],
    out: &mut [u16],
    last_ok: Option<&dyn Fn(u16) -> bool>,
) -> Result<(), TrainError> {
    let cb = &prepared.codebooks;
    if x.len() != cb.dim {
        return Err(TrainError::DimMismatch {
            expected: cb.dim,
            actual: x.len(),
        });
    }
    if out.len() != cb.levels {
        return Err(TrainError::LevelsMismatch {
            expected: cb.levels,
            actual: out.len(),
        });
    }
    if let Some(col) = x.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::NonFinite { row: 0, col });
    }
    let dim = cb.dim;
    let mut r = x.to_vec();
    for (l, slot) in out.iter_mut().enumerate() {
        let cents = cb.level(l);
        let Some(pre) = prepared.levels.get(l) else {
            return Err(TrainError::LevelsMismatch {
                expected: prepared.levels.len(),
                actual: cb.levels,
            });
        };
        let last = l + 1 == cb.levels;
        let c = match last_ok {
            Some(ok) if last => {
                nearest_where(&r, pre, |c| ok(c as u16)).unwrap_or_else(|| nearest(&r, pre))
            }
            _ => nearest(&r, pre),
        };
        *slot = c as u16; // c < codes <= 65536
        if !last {
            subtract(&mut r, &cents[c * dim..(c + 1) * dim]);
        }
    }
    Ok(())
}

/// Sum of the chosen centroids: the quantized vector (`out.len() == dim`).
pub fn reconstruct(
    codebooks: &Codebooks,
    codes: &[u16],
    out: &mut [f32],
) -> Result<(), TrainError> {
    let cb = codebooks;
    cb.check()?;
    if codes.len() != cb.levels {
        return Err(TrainError::LevelsMismatch {
            expected: cb.levels,
            actual: codes.len(),
        });
    }
    if out.len() != cb.dim {
        return Err(TrainError::DimMismatch {
            expected: cb.dim,
            actual: out.len(),
        });
    }
    if let Some((level, &code)) = codes
        .iter()
        .enumerate()
        .find(|(_, &c)| usize::from(c) >= cb.codes)
    {
        return Err(TrainError::CodeOutOfRange {
            level,
            code,
            codes: cb.codes,
        });
    }
    out.fill(0.0);
    for (l, &code) in codes.iter().enumerate() {
        let c = usize::from(code);
        for (o, &v) in out
            .iter_mut()
            .zip(&cb.level(l)[c * cb.dim..(c + 1) * cb.dim])
        {
            *o += v;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
