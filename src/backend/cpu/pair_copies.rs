//! The column copies that [`super::direct`]'s `pairs` kernel reads: each
//! padded input plane once per column tap `kx` and, at stride 2, per row
//! parity. Row `i` of copy `(kx, p)` holds padded columns `kx, kx + S, …,
//! kx + 7·S` of padded row `S·i + p`, so that for every tap the inputs of
//! two adjacent output rows are 16 adjacent values.
//!
//! On rows exactly `8·S` wide (the ResNets' 8-wide outputs) f32 takes
//! [`plane_s1`] and [`plane_s2`], whose AVX-512 permutes build all three
//! copies from one load. Row by row, each column tested against the row's
//! ends and the stride-2 copy `kx = 0` gathered one value at a time, the
//! copies took a fifth of the stride-2 32→64 forward on 16×16 and 7% of
//! the 64c8 one (`perf`); with the permutes, 11% and 6%, mostly waiting on
//! `x` itself (a software prefetch of the next image was slower). Batch
//! 128, best of 300 calls, three alternated pairs (2026-12-07, Intel host):
//! stride-2 1.063–1.067 against 1.128–1.133 ms, 64c8 1.909–1.919 against
//! 1.945–1.964 ms. 64c8 in unaligned pairs of rows (every store across two
//! cache lines) had been 2% slower than before. Moves only: the bits do
//! not change. Other widths, and f64, keep [`columns`], the reference the
//! tests hold the permutes to.

#![cfg(target_arch = "x86_64")]

use super::lanes::{as_elements, as_elements_mut, Element};
use crate::backend::Window;
use std::arch::x86_64::*;

/// The copies of each plane of `x` (planes `g.h × g.w`) into `pad`, `copy`
/// values a copy and `3·S` copies a plane. Writes the same cells for every
/// image, so a zeroed `pad` keeps its zero border from image to image.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn pair_copies<E: Element, const S: usize>(x: &[E], g: &Window, pad: &mut [E], copy: usize) {
    if g.w == 8 * S {
        if let (Some(x), Some(pad)) = (as_elements::<f32, E>(x), as_elements_mut::<f32, E>(pad)) {
            for (src, dst) in x.chunks_exact(g.h * g.w).zip(pad.chunks_exact_mut(3 * S * copy)) {
                // SAFETY: the caller's CPU has AVX-512F.
                unsafe {
                    match S {
                        1 => plane_s1(src, dst, copy),
                        _ => plane_s2(src, dst, copy),
                    }
                }
            }
            return;
        }
    }
    by_columns::<E, S>(x, g, pad, copy);
}

/// [`pair_copies`] row by row, each row's columns by [`columns`]: inlined
/// into it for the widths the permutes do not take, and the tests' reference.
#[inline(always)]
fn by_columns<E: Element, const S: usize>(x: &[E], g: &Window, pad: &mut [E], copy: usize) {
    for (src, dst) in x.chunks_exact(g.h * g.w).zip(pad.chunks_exact_mut(3 * S * copy)) {
        for (r, s) in src.chunks_exact(g.w).enumerate() {
            // Input row r is padded row r + 1: row (r + 1) / S of the copies of parity (r + 1) % S.
            let (i, parity) = ((r + 1) / S, (r + 1) % S);
            for kx in 0..3 {
                columns::<E, S>(&mut dst[(kx * S + parity) * copy + i * 8..][..8], s, kx);
            }
        }
    }
}

/// Row `d` of copy `kx`: padded columns `kx + S·j`, input columns `kx + S·j − 1` of `s`.
#[inline(always)]
fn columns<E: Element, const S: usize>(d: &mut [E], s: &[E], kx: usize) {
    for (j, d) in d.iter_mut().enumerate() {
        *d = (kx + S * j).checked_sub(1).and_then(|col| s.get(col)).copied().unwrap_or(E::ZERO);
    }
}

/// Stride 1, rows of 8: input row `r` is row `r + 1` of each copy, so a
/// copy is the plane with a zero row above and below (`kx = 1`), or that
/// moved one column right (`kx = 0`) or left (`kx = 2`), the column that
/// enters from the padding zero. Two copy rows a vector, from the top, so
/// that the stores do not straddle cache lines.
#[target_feature(enable = "avx512f")]
unsafe fn plane_s1(src: &[f32], dst: &mut [f32], copy: usize) {
    // Lane l takes lane l − 1 (right) or l + 1 (left) of the same row; the masks zero the padding's lanes.
    let right = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 8, 8, 9, 10, 11, 12, 13, 14);
    let left = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7, 9, 10, 11, 12, 13, 14, 15, 15);
    let h = src.len() / 8;
    // Copy rows 0..h + 2: the plane and its zero rows.
    for t in 0..(h + 2).div_ceil(2) {
        // Copy rows 2t and 2t + 1 hold input rows 2t − 1 and 2t where those exist.
        let first: __mmask16 = if t > 0 && 2 * t - 1 < h { 0x00FF } else { 0 };
        let second: __mmask16 = if 2 * t < h { 0xFF00 } else { 0 };
        // The last vector of an odd count of rows has one.
        let lanes = if 2 * t + 1 < h + 2 { 16 } else { 8 };
        let rows: __mmask16 = if lanes == 16 { 0xFFFF } else { 0x00FF };
        let from = src.as_ptr().wrapping_add(16 * t).wrapping_sub(8);
        let mut to = |kx: usize| dst[kx * copy + 16 * t..][..lanes].as_mut_ptr();
        let (d0, d1, d2) = (to(0), to(1), to(2));
        // SAFETY: the load takes only lanes of input rows inside `src`; each
        // store only the lanes of `rows`, inside its bounds-checked destination.
        unsafe {
            let v = _mm512_maskz_loadu_ps(first | second, from);
            _mm512_mask_storeu_ps(d1, rows, v);
            _mm512_mask_storeu_ps(d0, rows, _mm512_maskz_permutexvar_ps(0xFEFE, right, v));
            _mm512_mask_storeu_ps(d2, rows, _mm512_maskz_permutexvar_ps(0x7F7F, left, v));
        }
    }
}

/// Stride 2, rows of 16: input row `r` is row `(r + 1) / 2` of the copies
/// of parity `(r + 1) % 2`. Copy `kx = 1` takes the row's even columns,
/// `kx = 2` its odd ones, and `kx = 0` a zero (the padding) and the odd
/// columns but the last: one permute splits the row into its two halves,
/// a masked one gives the third.
#[target_feature(enable = "avx512f")]
unsafe fn plane_s2(src: &[f32], dst: &mut [f32], copy: usize) {
    let split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    let shifted = _mm512_setr_epi32(0, 1, 3, 5, 7, 9, 11, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    for (r, row) in src.chunks_exact(16).enumerate() {
        let (i, parity) = (r.div_ceil(2), (r + 1) % 2);
        let mut at = |kx: usize| dst[(2 * kx + parity) * copy + 8 * i..][..8].as_mut_ptr();
        let (d0, d1, d2) = (at(0), at(1), at(2));
        // SAFETY: `row` holds 16 values and each destination 8 (bounds-checked above).
        unsafe {
            let v = _mm512_loadu_ps(row.as_ptr());
            let halves = _mm512_permutexvar_ps(split, v);
            _mm256_storeu_ps(d1, _mm512_castps512_ps256(halves));
            _mm256_storeu_ps(d2, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(halves), 1)));
            _mm256_storeu_ps(d0, _mm512_castps512_ps256(_mm512_maskz_permutexvar_ps(0xFFFE, shifted, v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::lanes;
    use crate::rng::Rng;

    /// The permutes write what [`columns`] writes, cell for cell, on odd
    /// and even heights, and a second image over the first leaves the
    /// copies as a fresh pad would: the same cells are written.
    fn permutes_match_columns<const S: usize>(heights: &[usize]) {
        let mut r = Rng::new(7, S as u64);
        for &h in heights {
            let g = Window { n: 1, c: 3, h, w: 8 * S, kh: 3, kw: 3, stride: S, pad: 1 };
            let copy = (h.div_ceil(S) + 3) * 8;
            let len = g.c * 3 * S * copy;
            let images: Vec<Vec<f32>> = (0..2).map(|_| (0..g.c * h * g.w).map(|_| r.normal() as f32).collect()).collect();
            let mut want = vec![0.0; len];
            by_columns::<f32, S>(&images[1], &g, &mut want, copy);
            let mut got = vec![0.0; len];
            for x in &images {
                // SAFETY: the caller checked for AVX-512F.
                unsafe { pair_copies::<f32, S>(x, &g, &mut got, copy) };
            }
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "stride {S}, height {h}");
        }
    }

    #[test]
    fn permuted_copies_match_the_column_by_column_ones() {
        if lanes::avx512() {
            permutes_match_columns::<1>(&[1, 2, 7, 8]);
            permutes_match_columns::<2>(&[1, 2, 15, 16]);
        }
    }
}
