//! Second moments and their spectra on the CPU: a lower-triangular Gram
//! update in GEMM blocks, and symmetric eigenvalues through faer in f64.

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd;
use rayon::prelude::*;

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

/// Descending eigenvalues of one matrix held as a row-major lower triangle.
fn eigvalsh_one<T: Scalar>(lower: &[T], n: usize) -> Result<Vec<f64>> {
    if lower.len() != n * n {
        return Err(Error::shape("eigvalsh", format!("{} elements for a {n}×{n} matrix", lower.len())));
    }
    let at = |i: usize, j: usize| if j <= i { lower[i * n + j].to_f64() } else { lower[j * n + i].to_f64() };
    if lower.chunks(n).enumerate().any(|(i, row)| row[..=i].iter().any(|v| !v.to_f64().is_finite())) {
        return Ok(vec![f64::NAN; n]);
    }
    // Scale so the entries are O(1): the solver then never sees 1e-30-sized
    // (or 1e30-sized) numbers, whatever the layer's gradient magnitude.
    let scale = lower.chunks(n).enumerate().flat_map(|(i, row)| &row[..=i]).fold(0.0, |m: f64, v| m.max(v.to_f64().abs()));
    if scale == 0.0 {
        return Ok(vec![0.0; n]);
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| at(i, j) / scale);
    // Sequential inside: the caller already runs one solve per core.
    let par = faer::Par::Seq;
    let scratch = evd::self_adjoint_evd_scratch::<f64>(n, evd::ComputeEigenvectors::No, par, Default::default());
    let mut values = faer::diag::Diag::<f64>::zeros(n);
    evd::self_adjoint_evd(m.as_ref(), values.as_mut(), None, par, MemStack::new(&mut MemBuffer::new(scratch)), Default::default())
        .map_err(|e| Error::Backend(format!("eigvalsh of a {n}×{n} matrix did not converge: {e:?}")))?;
    Ok(values.column_vector().iter().rev().map(|v| v * scale).collect())
}

/// All matrices at once, one per task; each solve runs sequentially inside.
pub fn eigvalsh<T: Scalar>(mats: &[(&Vec<T>, usize)]) -> Result<Vec<Vec<f64>>> {
    // Largest first, so the long solve does not start last.
    let mut order: Vec<usize> = (0..mats.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(mats[i].1));
    let solved: Vec<(usize, Result<Vec<f64>>)> =
        order.par_iter().with_max_len(1).map(|&i| (i, eigvalsh_one(mats[i].0, mats[i].1))).collect();
    let mut out = vec![Vec::new(); mats.len()];
    for (i, r) in solved {
        out[i] = r?;
    }
    Ok(out)
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

pub fn sample_labels<T: Scalar>(logits: &[T], classes: usize, seed: u64, stream: u64) -> Result<Vec<u32>> {
    if classes == 0 || logits.len() % classes != 0 {
        return Err(Error::shape("sample_labels", format!("{} logits for {classes} classes", logits.len())));
    }
    Ok(logits
        .chunks(classes)
        .enumerate()
        .map(|(row, z)| {
            let max = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
            let weights: Vec<f64> = z.iter().map(|v| (v.to_f64() - max).exp()).collect();
            let target = crate::rng::unit_f64(crate::rng::hash3(seed, stream, row as u64)) * weights.iter().sum::<f64>();
            let mut cumulative = 0.0;
            // Rounding can leave `target` just above the last partial sum: take the last class then.
            weights
                .iter()
                .position(|w| {
                    cumulative += w;
                    cumulative > target
                })
                .unwrap_or(classes - 1) as u32
        })
        .collect())
}
