//! The distance of every index: cosine distance on L2-normalised vectors, `1 - a·b` (rounding
//! can make it slightly negative for identical vectors; similarities are clamped at 1 where
//! they are reported).
//!
//! The dot product sums in independent lanes, which LLVM turns into SIMD on stable Rust. The
//! portable build only assumes SSE2; on x86-64 CPUs with AVX2 and FMA (checked at run time, the
//! check is a cached load) the same loop is compiled a second time for them. `prefetch` asks
//! the CPU to start loading a vector a searcher will score next (hnswlib does the same; the
//! search is bound by memory latency). These are the ANN layer's only two `unsafe` blocks, each
//! with its proof; this module is the crate's one leaf with `unsafe` outside `src/ffi/`.

/// `a·b`.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("fma") {
            // SAFETY: `dot_avx512` is safe code whose only requirement, as a
            // `#[target_feature]` function, is that the CPU supports AVX-512F and FMA: detected
            // just above.
            return unsafe { dot_avx512(a, b) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_in_lanes::<8, false>(a, b)
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

/// [`dot_in_lanes`] for AVX-512: 32 partial sums (two 512-bit registers), fused.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_in_lanes::<32, true>(a, b)
}

/// [`dot_in_lanes`] for AVX2: 16 partial sums (two 256-bit registers), fused.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_in_lanes::<16, true>(a, b)
}

/// `a·b` in `L` independent partial sums (which LLVM keeps in SIMD registers), with fused
/// multiply-adds if `FUSED` (only where the CPU has them: in software they are slow).
#[inline(always)]
fn dot_in_lanes<const L: usize, const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(L), b[..n].chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; L];
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane = if FUSED {
                x.mul_add(*y, *lane)
            } else {
                *lane + x * y
            };
        }
    }
    sum_lanes(&lanes) + tail
}

/// The sum of `lanes`, pairwise (a short dependency chain). Not inlined: inlined, LLVM shapes
/// the main loop of `dot_in_lanes` after this reduction and narrows its registers.
#[inline(never)]
fn sum_lanes<const L: usize>(lanes: &[f32; L]) -> f32 {
    let mut acc = [0.0f32; 8];
    for chunk in lanes.chunks(8) {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
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
        assert!((dot_in_lanes::<8, false>(&v, &v) - naive).abs() < 1e-5);
        assert!((dot_in_lanes::<16, false>(&v, &v) - naive).abs() < 1e-5);
        let mut zero = vec![0.0; 4];
        assert!(!normalize(&mut zero));
        let mut huge = vec![f32::MAX, -f32::MAX, 0.0];
        assert!(normalize(&mut huge));
        assert!((dot(&huge, &huge) - 1.0).abs() < 1e-5, "{huge:?}");
    }
}
