//! CPU twin of kernels/covariance.cu: second moments as lower-triangular
//! Gram updates in GEMM blocks (of a dense matrix, or of the patches of an
//! NCHW activation), and the positive-entry counts per column.

use super::conv::unfold_plane;
use crate::backend::Window;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Patch-matrix values the Σx accumulation unfolds at once (32 MiB in f32).
const PATCH_BUDGET: usize = 1 << 23;

/// Column blocks of the Gram matrix: small enough that the lower-triangle
/// blocks give both cores work, large enough for efficient micro-kernels.
const GRAM_BLOCK: usize = 64;

/// A raw pointer the blocks share; each block writes a disjoint region.
struct SharedPtr<T>(*mut T);
unsafe impl<T> Sync for SharedPtr<T> {}

pub fn gram_lower<T: Scalar>(acc: &mut [T], x: &[T], rows: usize, cols: usize, alpha: f64) -> Result<()> {
    if acc.len() != cols * cols || x.len() != rows * cols {
        return Err(Error::shape("gram_lower", format!("{rows}×{cols} input, accumulator of {}", acc.len())));
    }
    gram_lower_strided(acc, x, (rows, cols), (cols, 1), alpha);
    Ok(())
}

/// [`gram_lower`] of an X whose element `(p, i)` sits at `p·rs + i·cs`
/// (`(1, ld)` reads a `cols × ld` row-major buffer as its transpose).
/// The caller checks that `acc` holds `cols²` elements and `x` every addressed one.
pub(super) fn gram_lower_strided<T: Scalar>(acc: &mut [T], x: &[T], (rows, cols): (usize, usize), strides: (usize, usize), alpha: f64) {
    let blocks = cols.div_ceil(GRAM_BLOCK);
    let pairs: Vec<(usize, usize)> = (0..blocks).flat_map(|i| (0..=i).map(move |j| (i, j))).collect();
    let span = |b: usize| b * GRAM_BLOCK..((b + 1) * GRAM_BLOCK).min(cols);
    let dst = SharedPtr(acc.as_mut_ptr());
    let dst = &dst;
    pairs.par_iter().for_each(|&(i, j)| {
        // SAFETY: `acc` holds cols² elements and block (i, j) is written by this task alone.
        unsafe { super::gemm::gram_block(dst.0, x, (rows, cols), strides, span(i), span(j), alpha) }
    });
}

/// `acc += alpha·Σ_patches p pᵀ` (lower triangle) over every patch of `x`:
/// images are unfolded a bounded chunk at a time into a `c·kh·kw × rows`
/// matrix whose transpose the Gram kernel reads in place.
pub fn gram_lower_patches<T: Scalar>(acc: &mut [T], x: &[T], g: Window, alpha: f64) -> Result<()> {
    let out = g.out("gram_lower_patches")?;
    let (area, k, taps) = (out.0 * out.1, g.patch_len(), g.kh * g.kw);
    if x.len() != g.n * g.image_len() || acc.len() != k * k {
        return Err(Error::shape("gram_lower_patches", format!("{g:?}: input of {}, accumulator of {}", x.len(), acc.len())));
    }
    if g.n == 0 || area == 0 || k == 0 {
        return Ok(());
    }
    let chunk = (PATCH_BUDGET / (k * area)).clamp(1, g.n);
    let mut cols = Vec::new();
    for first in (0..g.n).step_by(chunk) {
        let images = chunk.min(g.n - first);
        let ld = images * area;
        cols.resize(k * ld, T::ZERO);
        // Channel c owns patch rows c·taps.. of every image: disjoint, so parallel.
        cols.par_chunks_mut(taps * ld).enumerate().for_each(|(c, rows)| {
            for t in 0..images {
                let image = &x[(first + t) * g.image_len()..][..g.image_len()];
                let plane = &image[c * g.h * g.w..(c + 1) * g.h * g.w];
                unfold_plane(plane, &g, out, &mut rows[t * area..], ld);
            }
        });
        gram_lower_strided(acc, &cols, (ld, k), (1, ld), alpha);
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
