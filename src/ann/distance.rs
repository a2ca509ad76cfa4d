//! The distance of every index: cosine distance on L2-normalised vectors, `1 - a·b` (rounding
//! can make it slightly negative for identical vectors; similarities are clamped at 1 where
//! they are reported).
//!
//! The dot product is the hot loop of every search and build. The portable version sums in
//! eight independent lanes, which LLVM turns into SSE2 on x86-64. On CPUs with AVX-512F, or
//! AVX2 and FMA (checked at run time; the check is a cached load), explicit intrinsics run
//! instead: like hnswlib built with `-march=native`. (Auto-vectorising the same loop under
//! `#[target_feature]` proved fragile: depending on codegen units it came out 128 bits wide.)
//! `prefetch` asks the CPU to start loading what a search will read next (as hnswlib does: the
//! search is bound by memory latency).
//!
//! This module is the crate's one leaf with `unsafe` outside `src/ffi/`: calls of the
//! `#[target_feature]` functions after detection, unaligned SIMD loads within bounds, and the
//! prefetch hint, each with its proof.

/// `a·b`.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") {
            // SAFETY: calling a `#[target_feature]` function requires the CPU to support its
            // features, here AVX-512F: detected just above.
            return unsafe { dot_avx512(a, b) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Hints the CPU to load the memory of `v` into its caches (every 64-byte line). No effect on
/// results.
#[inline]
pub(crate) fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = v.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(v)).step_by(64) {
            // SAFETY: a prefetch is a hint: it never faults, reads nothing into the program and
            // writes nothing; the addresses lie inside a live slice anyway. SSE, which the
            // intrinsic needs, is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// `a·b` for AVX-512: two 512-bit registers of partial sums, fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{__m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
    use std::arch::x86_64::{_mm512_reduce_add_ps, _mm512_setzero_ps};
    let n = a.len().min(b.len());
    // SAFETY (both loads): callers pass `i` with `i + 16 <= n`, and `n` is at most the length
    // of either slice, so 16 floats are readable from `a[i]` and `b[i]`; `loadu` has no
    // alignment requirement.
    let load = |i: usize| -> (__m512, __m512) {
        debug_assert!(i + 16 <= n);
        unsafe {
            (
                _mm512_loadu_ps(a.as_ptr().add(i)),
                _mm512_loadu_ps(b.as_ptr().add(i)),
            )
        }
    };
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= n {
        let (x, y) = load(i);
        s0 = _mm512_fmadd_ps(x, y, s0);
        let (x, y) = load(i + 16);
        s1 = _mm512_fmadd_ps(x, y, s1);
        i += 32;
    }
    if i + 16 <= n {
        let (x, y) = load(i);
        s0 = _mm512_fmadd_ps(x, y, s0);
        i += 16;
    }
    let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) + tail
}

/// `a·b` for AVX2: two 256-bit registers of partial sums, fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{__m256, _mm256_add_ps, _mm256_castps256_ps128};
    use std::arch::x86_64::{_mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps};
    use std::arch::x86_64::{_mm256_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32};
    use std::arch::x86_64::{_mm_movehl_ps, _mm_shuffle_ps};
    let n = a.len().min(b.len());
    // SAFETY (both loads): callers pass `i` with `i + 8 <= n`, and `n` is at most the length of
    // either slice, so 8 floats are readable from `a[i]` and `b[i]`; `loadu` has no alignment
    // requirement.
    let load = |i: usize| -> (__m256, __m256) {
        debug_assert!(i + 8 <= n);
        unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        }
    };
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        let (x, y) = load(i);
        s0 = _mm256_fmadd_ps(x, y, s0);
        let (x, y) = load(i + 8);
        s1 = _mm256_fmadd_ps(x, y, s1);
        i += 16;
    }
    if i + 8 <= n {
        let (x, y) = load(i);
        s0 = _mm256_fmadd_ps(x, y, s0);
        i += 8;
    }
    let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
    let s = _mm256_add_ps(s0, s1);
    let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s) + tail
}

/// `a·b`, portable: eight independent partial sums, which LLVM keeps in SIMD registers (SSE2
/// on x86-64).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail: f32 = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; 8];
    for (x, y) in a.zip(b) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length; false (and `v` unchanged) for a zero vector.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let mut norm = dot(v, v).sqrt();
    if norm.is_infinite() {
        // Components near f32::MAX: scale down first so the squares do not overflow.
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        v.iter_mut().for_each(|x| *x /= max);
        norm = dot(v, v).sqrt();
    }
    if !(norm > 0.0 && norm.is_finite()) {
        return false;
    }
    for x in v.iter_mut() {
        *x /= norm;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_unit_vectors_have_distance_zero() {
        let mut v: Vec<f32> = (0..37).map(|i| (i as f32).sin()).collect();
        assert!(normalize(&mut v));
        let d = 1.0 - dot(&v, &v);
        assert!(d.abs() < 1e-5, "{d}");
        let naive: f32 = v.iter().map(|x| x * x).sum();
        assert!((dot(&v, &v) - naive).abs() < 1e-5);
        assert!((dot_portable(&v, &v) - naive).abs() < 1e-5);
        let mut zero = vec![0.0; 4];
        assert!(!normalize(&mut zero));
        let mut huge = vec![f32::MAX, -f32::MAX, 0.0];
        assert!(normalize(&mut huge));
        assert!((dot(&huge, &huge) - 1.0).abs() < 1e-5, "{huge:?}");
    }
}
