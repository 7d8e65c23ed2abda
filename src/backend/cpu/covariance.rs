//! CPU twin of kernels/covariance.cu: second moments as lower-triangular
//! Gram updates in GEMM blocks (of a dense matrix, or of the patches of an
//! NCHW activation), and the positive-entry counts per column.

use super::conv::unfold_plane;
use super::gram;
use super::parallel::SharedPtr;
use crate::backend::{GramJob, Window};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Patch-matrix values the Σx accumulation unfolds at once (32 MiB in f32).
/// The unfold (then with a zero-fill first) was about a tenth of the patch Σx
/// plus eigenvalues (perf); 4 MiB chunks, cache-sized for the products, were no
/// faster on the 8192×576 bench (58–62 ms against 62 ms).
const PATCH_BUDGET: usize = 1 << 23;

/// Width of the column blocks of a Gram of transposed X. Block `j` (columns
/// `j..j+64`) is one product over all rows of X, from its diagonal down to
/// row `d`: the crate packs each operand once per block instead of twice per
/// 64×64 block pair (45 products for d = 576, now 9), for the same flops
/// (each diagonal block is computed whole, as before). Criterion on 2 busy
/// cores, pairs → column blocks: 8192×576 patch matrix 54–84 → 33–59 ms;
/// widths 32, 96, 128 and 192 were no faster overall.
const GRAM_BLOCK: usize = 64;

pub fn gram_lower<T: Scalar>(acc: &mut [T], x: &[T], rows: usize, cols: usize, alpha: f64) -> Result<()> {
    gram_lower_many(vec![GramJob { acc, x, rows, cols, alpha }])
}

/// [`gram_lower`] of every job, the jobs' bands spread over the cores together.
pub fn gram_lower_many<T: Scalar>(mut jobs: Vec<GramJob<'_, [T]>>) -> Result<()> {
    if let Some(GramJob { acc, rows, cols, .. }) = jobs.iter().find(|j| j.acc.len() != j.cols * j.cols || j.x.len() != j.rows * j.cols) {
        return Err(Error::shape("gram_lower", format!("{rows}×{cols} input, accumulator of {}", acc.len())));
    }
    gram::gram_lower_many(&mut jobs);
    Ok(())
}

/// [`gram_lower`] of an X stored transposed, its element `(p, i)` at
/// `p + i·ld` (a `cols × ld` row-major buffer), through the `gemm` crate:
/// packing that layout for [`super::gram`]'s kernel cost more than the
/// kernel saved (8192×576, best of 15: 54 against 43 ms). The caller checks
/// that `acc` holds `cols²` elements and `x` every addressed one.
pub(super) fn gram_lower_transposed<T: Scalar>(acc: &mut [T], x: &[T], (rows, cols): (usize, usize), ld: usize, alpha: f64) {
    let dst = SharedPtr(acc.as_mut_ptr());
    let dst = &dst;
    // One block per task, each product on its own thread: the summation order
    // depends on the shape alone, never on the thread count. Block b spans
    // rows 64·b.., so the list runs longest first.
    super::parallel::longest_first(cols.div_ceil(GRAM_BLOCK), |b| {
        let j = b * GRAM_BLOCK;
        let span = j..(j + GRAM_BLOCK).min(cols);
        // SAFETY: `acc` holds cols² elements and rows j.., columns `span` are this task's alone.
        unsafe { super::gemm::gram_block(dst.0, x, (rows, cols), (1, ld), j..cols, span, alpha) }
    });
}

/// `acc += alpha·Σ_patches p pᵀ` (lower triangle) over every patch of `x`.
/// Stride-1 windows sum each tap offset's products once
/// ([`super::patch_gram`]); the others unfold the images a bounded chunk at
/// a time into a `c·kh·kw × rows` matrix whose transpose the Gram kernel
/// reads in place.
pub fn gram_lower_patches<T: Scalar>(acc: &mut [T], x: &[T], g: Window, alpha: f64) -> Result<()> {
    let out = g.out("gram_lower_patches")?;
    let (area, k, taps) = (out.0 * out.1, g.patch_len(), g.kh * g.kw);
    if x.len() != g.n * g.image_len() || acc.len() != k * k {
        return Err(Error::shape("gram_lower_patches", format!("{g:?}: input of {}, accumulator of {}", x.len(), acc.len())));
    }
    if g.n == 0 || area == 0 || k == 0 {
        return Ok(());
    }
    if g.stride == 1 && taps > 1 {
        return super::patch_gram::gram_lower_shifted(acc, x, g, alpha);
    }
    let chunk = (PATCH_BUDGET / (k * area)).clamp(1, g.n);
    let mut cols: Vec<T> = Vec::with_capacity(k * chunk * area);
    for first in (0..g.n).step_by(chunk) {
        let images = chunk.min(g.n - first);
        let ld = images * area;
        cols.clear();
        // Channel c owns patch rows c·taps.. of every image: disjoint, so
        // parallel; written straight into the buffer's spare capacity.
        cols.spare_capacity_mut()[..k * ld].par_chunks_mut(taps * ld).enumerate().for_each(|(c, rows)| {
            for t in 0..images {
                let image = &x[(first + t) * g.image_len()..][..g.image_len()];
                let plane = &image[c * g.h * g.w..(c + 1) * g.h * g.w];
                unfold_plane(plane, &g, out, &mut rows[t * area..], ld);
            }
        });
        // SAFETY: the images' `unfold_plane`s wrote every element of their channel's rows.
        unsafe { cols.set_len(k * ld) };
        gram_lower_transposed(acc, &cols, (ld, k), ld, alpha);
    }
    Ok(())
}

pub fn count_positive<T: Scalar>(x: &[T], rows: usize, cols: usize) -> Result<Vec<u32>> {
    if x.len() != rows * cols {
        return Err(Error::shape("count_positive", format!("{} elements for {rows}×{cols}", x.len())));
    }
    if cols == 0 {
        return Ok(Vec::new());
    }
    let rows_per_task = (super::parallel::CHUNK / cols).max(1);
    let parts: Vec<Vec<u32>> = x
        .par_chunks(rows_per_task * cols)
        .map(|block| {
            let mut counts = vec![0u32; cols];
            for row in block.chunks_exact(cols) {
                counts.iter_mut().zip(row).for_each(|(c, &v)| *c += (v > T::ZERO) as u32);
            }
            counts
        })
        .collect();
    Ok(parts.into_iter().fold(vec![0u32; cols], |mut acc, p| {
        acc.iter_mut().zip(p).for_each(|(a, p)| *a += p);
        acc
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `acc + alpha·XᵀX` in f64, X element `(p, i)` at `p·rs + i·cs`.
    fn reference(acc: &[f64], x: &[f64], (rows, cols): (usize, usize), (rs, cs): (usize, usize), alpha: f64) -> Vec<f64> {
        let mut want = acc.to_vec();
        for i in 0..cols {
            for j in 0..cols {
                want[i * cols + j] += alpha * (0..rows).map(|p| x[p * rs + i * cs] * x[p * rs + j * cs]).sum::<f64>();
            }
        }
        want
    }

    fn assert_lower<T: Scalar>(got: &[T], want: &[f64], cols: usize, tol: f64, what: &str) {
        for i in 0..cols {
            for j in 0..=i {
                let (g, w) = (got[i * cols + j].to_f64(), want[i * cols + j]);
                assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what} ({i},{j}): {g} vs {w}");
            }
        }
    }

    // Column counts around the 64-wide blocks, row counts off any chunk size.
    const SHAPES: [(usize, usize); 6] = [(1, 1), (7, 5), (130, 64), (300, 65), (517, 129), (1031, 200)];

    #[test]
    fn gram_lower_matches_the_f64_reference_at_odd_sizes() {
        let mut r = Rng::new(11, 0);
        for (rows, cols) in SHAPES {
            let x: Vec<f64> = (0..rows * cols).map(|_| r.normal()).collect();
            let acc0: Vec<f64> = (0..cols * cols).map(|_| r.normal()).collect();
            let want = reference(&acc0, &x, (rows, cols), (cols, 1), 0.3);
            let mut got = acc0.clone();
            gram_lower(&mut got, &x, rows, cols, 0.3).unwrap();
            assert_lower(&got, &want, cols, 1e-12, &format!("f64 {rows}×{cols}"));
            let upper =
                |m: &[f64]| (0..cols).flat_map(|i| (i + 1..cols).map(move |j| i * cols + j)).map(|k| m[k].to_bits()).collect::<Vec<_>>();
            assert_eq!(upper(&got), upper(&acc0), "f64 {rows}×{cols}: the upper triangle is left alone");
            // The same problem in f32, against the reference of its (exact) f64 widening.
            let narrow = |v: &[f64]| -> Vec<f32> { v.iter().map(|&v| v as f32).collect() };
            let widen = |v: &[f32]| -> Vec<f64> { v.iter().map(|&v| v as f64).collect() };
            let (xf, mut gotf) = (narrow(&x), narrow(&acc0));
            let wantf = reference(&widen(&gotf), &widen(&xf), (rows, cols), (cols, 1), 0.3);
            gram_lower(&mut gotf, &xf, rows, cols, 0.3).unwrap();
            // Sums of `rows` products: f32 rounding grows at most like rows·ε.
            assert_lower(&gotf, &wantf, cols, 1e-7 * rows as f64 + 1e-6, &format!("f32 {rows}×{cols}"));
        }
    }

    #[test]
    fn gram_lower_transposed_reads_the_padded_layout() {
        let mut r = Rng::new(12, 0);
        for (rows, cols) in SHAPES {
            // X stored as its transpose, `cols` rows of `ld > rows` elements.
            let ld = rows + 3;
            let x: Vec<f64> = (0..cols * ld).map(|_| r.normal()).collect();
            let want = reference(&vec![0.0; cols * cols], &x, (rows, cols), (1, ld), 2.0);
            let mut got = vec![0.0; cols * cols];
            gram_lower_transposed(&mut got, &x, (rows, cols), ld, 2.0);
            assert_lower(&got, &want, cols, 1e-12, &format!("strided {rows}×{cols}"));
        }
    }

    #[test]
    fn gram_is_bit_identical_for_every_thread_count() {
        let mut r = Rng::new(13, 0);
        let (rows, cols) = (1031, 200);
        let x: Vec<f32> = (0..rows * cols).map(|_| r.normal() as f32).collect();
        let g = Window { n: 5, c: 9, h: 11, w: 10, kh: 3, kw: 3, stride: 1, pad: 1 };
        let img: Vec<f32> = (0..g.n * g.image_len()).map(|_| r.normal() as f32).collect();
        let k = g.patch_len();
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| {
                let mut dense = vec![0.0f32; cols * cols];
                gram_lower(&mut dense, &x, rows, cols, 0.5).unwrap();
                let mut patches = vec![0.0f32; k * k];
                gram_lower_patches(&mut patches, &img, g, 0.5).unwrap();
                (dense, patches)
            })
        };
        let one = run(1);
        for t in [2, 3] {
            let other = run(t);
            assert!(one.0.iter().zip(&other.0).all(|(a, b)| a.to_bits() == b.to_bits()), "dense Gram, {t} threads");
            assert!(one.1.iter().zip(&other.1).all(|(a, b)| a.to_bits() == b.to_bits()), "patch Gram, {t} threads");
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut acc = vec![0.0f32; 9];
        assert!(gram_lower(&mut acc, &[0.0; 5], 2, 3, 1.0).is_err());
        assert!(gram_lower(&mut [0.0f32; 8], &[0.0; 6], 2, 3, 1.0).is_err());
        let g = Window { n: 2, c: 1, h: 4, w: 4, kh: 3, kw: 3, stride: 1, pad: 0 };
        assert!(gram_lower_patches(&mut acc, &[0.0; 31], g, 1.0).is_err());
    }
}
