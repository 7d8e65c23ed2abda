//! Symmetric eigenvalues on the CPU, in f64: faer's Householder
//! tridiagonalisation, then the root-free QL iteration of
//! [`super::tridiagonal`]; every solve of a step on its own task.

use super::tridiagonal;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::tridiag;
use rayon::prelude::*;

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
    let mut m = faer::Mat::<f64>::from_fn(n, n, |i, j| at(i, j) / scale);
    // Sequential inside: the caller already runs one solve per core.
    let par = faer::Par::Seq;
    let scratch = tridiag::tridiag_in_place_scratch::<f64>(n, par, Default::default());
    // One row of reflector factors: the blocked ones faer would build from
    // them serve only eigenvectors.
    let mut factors = faer::Mat::<f64>::zeros(1, n.saturating_sub(1));
    tridiag::tridiag_in_place(m.as_mut(), factors.as_mut(), par, MemStack::new(&mut MemBuffer::new(scratch)), Default::default());
    let mut values: Vec<f64> = (0..n).map(|i| m[(i, i)]).collect();
    let off: Vec<f64> = (1..n).map(|i| m[(i, i - 1)]).collect();
    tridiagonal::eigenvalues(&mut values, &off).map_err(|_| Error::Backend(format!("eigvalsh of a {n}×{n} matrix did not converge")))?;
    values.sort_by(|a, b| b.total_cmp(a));
    Ok(values.into_iter().map(|v| v * scale).collect())
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
