//! Symmetric eigenvalues on the CPU, in f64: the blocked Householder
//! tridiagonalisation of [`super::tridiagonalise`], then the root-free QL
//! iteration of [`super::tridiagonal`]; every solve of a step on its own task.

use super::{tridiagonal, tridiagonalise};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Descending eigenvalues of one matrix held as a row-major lower triangle.
fn eigvalsh_one<T: Scalar>(lower: &[T], n: usize) -> Result<Vec<f64>> {
    if lower.len() != n * n {
        return Err(Error::shape("eigvalsh", format!("{} elements for a {n}×{n} matrix", lower.len())));
    }
    if lower.chunks(n).enumerate().any(|(i, row)| row[..=i].iter().any(|v| !v.to_f64().is_finite())) {
        return Ok(vec![f64::NAN; n]);
    }
    // Scale so the entries are O(1): the solver then never sees 1e-30-sized
    // (or 1e30-sized) numbers, whatever the layer's gradient magnitude.
    let scale = lower.chunks(n).enumerate().flat_map(|(i, row)| &row[..=i]).fold(0.0, |m: f64, v| m.max(v.to_f64().abs()));
    if scale == 0.0 {
        return Ok(vec![0.0; n]);
    }
    // The lower triangle in column-major order: row-major's, transposed.
    let mut a = vec![0.0; n * n];
    for (i, row) in lower.chunks(n).enumerate() {
        for (j, v) in row[..=i].iter().enumerate() {
            a[j * n + i] = v.to_f64() / scale;
        }
    }
    let (mut values, off) = tridiagonalise::tridiagonalise(&mut a, n);
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
