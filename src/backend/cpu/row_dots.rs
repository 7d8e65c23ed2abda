//! `C[m×n] += A[m×k]·B[n×k]ᵀ` where the rows of A and of B are contiguous in
//! `k`: every output is the dot product of two rows. The Winograd filter
//! gradient's 16 GEMMs per batch of tiles have this shape and are small (16
//! to 64 square, `k` = 256 tiles); a packing GEMM spends as long on them
//! repacking rows that are already contiguous and reducing in narrow
//! register blocks as on the multiply-adds.
//!
//! A block of 4 rows of A × 2 rows of B keeps its 8 dot products in
//! registers, [`LANES`] lanes each: 6 row loads per 8 vector multiply-adds,
//! and 8 independent chains to cover the multiply-add latency. The lanes
//! stay apart in the accumulator across calls and are added once, by
//! [`lane_sums`], after the last: reducing them at every call of `k` = 256
//! cost a third as much as the multiply-adds.
//!
//! Every output sums in one order, whatever the block, the thread count or
//! the copy of the kernel: lane `l` accumulates, call after call, the
//! products at `k ≡ l (mod 8)` in increasing `k` with fused multiply-adds
//! (a call's last `k mod 8` into lanes `0..`), and [`lane_sums`] adds the
//! lanes left to right.

use super::lanes;
use crate::scalar::Scalar;

/// Partial sums per output: one AVX2 register of f32.
pub(super) const LANES: usize = 8;
const L: usize = LANES;
/// Rows of A per block.
const R: usize = 4;
/// Rows of B per block.
const S: usize = 2;

/// Adds `a·bᵀ` into the lanes `c` (`LANES` per output) for `a` of `m` rows
/// and `b` of `n` rows, `k` elements each; outputs are `m × n`, row-major.
/// The caller checks the lengths. Only where the CPU has AVX2 and FMA: the
/// portable copy calls a software `fma` per multiply-add elsewhere, so
/// callers keep a GEMM there.
pub(super) fn add_row_dots<T: Scalar>(a: &[T], b: &[T], c: &mut [T], (m, n, k): (usize, usize, usize)) {
    dots(a, b, c, (m, n, k), lanes::avx2_fma())
}

/// Each output's lanes added left to right.
pub(super) fn lane_sums<T: Scalar>(c: &[T]) -> Vec<T> {
    c.chunks_exact(L).map(|l| l[1..].iter().fold(l[0], |sum, &v| sum + v)).collect()
}

/// [`add_row_dots`] in the AVX2 copy when `vector`, else the portable one.
fn dots<T: Scalar>(a: &[T], b: &[T], c: &mut [T], dims: (usize, usize, usize), vector: bool) {
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` is only set where the CPU has AVX2 and FMA.
        return unsafe { dots_avx2(a, b, c, dims) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    all_blocks(a, b, c, dims)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<T: Scalar>(a: &[T], b: &[T], c: &mut [T], dims: (usize, usize, usize)) {
    all_blocks(a, b, c, dims)
}

/// Whole `R × S` blocks, then the last rows and columns in blocks of one.
#[inline(always)]
fn all_blocks<T: Scalar>(a: &[T], b: &[T], c: &mut [T], (m, n, k): (usize, usize, usize)) {
    let (rows, cols) = (m / R * R, n / S * S);
    for i in (0..rows).step_by(R) {
        for j in (0..cols).step_by(S) {
            block::<T, R, S>(a, b, c, (i, j), (n, k));
        }
        for j in cols..n {
            block::<T, R, 1>(a, b, c, (i, j), (n, k));
        }
    }
    for i in rows..m {
        for j in 0..n {
            block::<T, 1, 1>(a, b, c, (i, j), (n, k));
        }
    }
}

/// The lanes of the `BR × BS` outputs from row `i` of A and row `j` of B on.
#[inline(always)]
fn block<T: Scalar, const BR: usize, const BS: usize>(a: &[T], b: &[T], c: &mut [T], (i, j): (usize, usize), (n, k): (usize, usize)) {
    let a: [&[T]; BR] = std::array::from_fn(|r| &a[(i + r) * k..][..k]);
    let b: [&[T]; BS] = std::array::from_fn(|s| &b[(j + s) * k..][..k]);
    let at = |r: usize, s: usize| ((i + r) * n + j + s) * L;
    // Filled by loops, rows read in place: as `array::from_fn` copies these
    // became an out-of-line SSE copy, 3.8% of a ResNet-20 step (perf).
    let mut acc = [[[T::ZERO; L]; BS]; BR];
    for (r, acc) in acc.iter_mut().enumerate() {
        for (s, lanes) in acc.iter_mut().enumerate() {
            lanes.copy_from_slice(&c[at(r, s)..][..L]);
        }
    }
    let full = k / L * L;
    for p in (0..full).step_by(L) {
        for (acc, a) in acc.iter_mut().zip(&a) {
            let av: &[T; L] = a[p..p + L].try_into().unwrap();
            for (acc, b) in acc.iter_mut().zip(&b) {
                let bv: &[T; L] = b[p..p + L].try_into().unwrap();
                for ((s, &x), &y) in acc.iter_mut().zip(av).zip(bv) {
                    *s = x.mul_add(y, *s);
                }
            }
        }
    }
    for (l, p) in (full..k).enumerate() {
        for (acc, a) in acc.iter_mut().zip(&a) {
            for (acc, b) in acc.iter_mut().zip(&b) {
                acc[l] = a[p].mul_add(b[p], acc[l]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (s, lanes) in acc.iter().enumerate() {
            c[at(r, s)..][..L].copy_from_slice(lanes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// One output's lanes after the calls `(a, b)`, by the documented order, scalar by scalar.
    fn chained(calls: &[(&[f32], &[f32])]) -> [f32; L] {
        let mut lanes = [0.0f32; L];
        for (a, b) in calls {
            for (p, (&x, &y)) in a.iter().zip(*b).enumerate() {
                let l = if p < a.len() / L * L { p % L } else { p - a.len() / L * L };
                lanes[l] = x.mul_add(y, lanes[l]);
            }
        }
        lanes
    }

    /// Exactly the documented order, for both copies, whatever the block:
    /// whole blocks, a last row and column outside them, `k` tails, and two
    /// calls into the same lanes.
    #[test]
    fn every_output_sums_in_the_documented_order() {
        let mut r = Rng::new(41, 0);
        for (m, n, k) in [(16, 16, 256), (6, 5, 19), (1, 3, 7), (5, 1, 8), (9, 7, 33)] {
            let mut rand = |len: usize| (0..len).map(|_| r.normal() as f32).collect::<Vec<f32>>();
            let (a, b, a2, b2) = (rand(m * k), rand(n * k), rand(m * (k + 3)), rand(n * (k + 3)));
            let want: Vec<u32> = (0..m * n)
                .flat_map(|o| {
                    let (i, j) = (o / n, o % n);
                    let row = |v: &[f32], r: usize, k: usize| v[r * k..][..k].to_vec();
                    let (x, y, x2, y2) = (row(&a, i, k), row(&b, j, k), row(&a2, i, k + 3), row(&b2, j, k + 3));
                    chained(&[(&x, &y), (&x2, &y2)])
                })
                .map(f32::to_bits)
                .collect();
            for vector in [false, lanes::avx2_fma()] {
                let mut c = vec![0.0f32; m * n * L];
                dots(&a, &b, &mut c, (m, n, k), vector);
                dots(&a2, &b2, &mut c, (m, n, k + 3), vector);
                assert_eq!(c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{m}×{n}×{k}, vector {vector}");
            }
        }
    }

    #[test]
    fn matches_the_f64_product() {
        let mut r = Rng::new(42, 0);
        let (m, n, k) = (7, 6, 45);
        let a: Vec<f64> = (0..m * k).map(|_| r.normal()).collect();
        let b: Vec<f64> = (0..n * k).map(|_| r.normal()).collect();
        let mut c = vec![0.0; m * n * L];
        add_row_dots(&a, &b, &mut c, (m, n, k));
        for (o, &got) in lane_sums(&c).iter().enumerate() {
            let want = (0..k).map(|p| a[o / n * k + p] * b[o % n * k + p]).sum::<f64>();
            assert!((got - want).abs() < 1e-13 * k as f64, "output {o}: {got} vs {want}");
        }
    }
}
