//! Symmetric eigenvalues on the CPU: the blocked Householder
//! tridiagonalisation of [`super::tridiagonalise`], in the precision the
//! matrix was accumulated in, then the root-free QL iteration of
//! [`super::tridiagonal`] in f64; a step's solves side by side, equal-sized
//! ones up to four to a task.
//!
//! Why an f32 matrix is reduced in f32: the reduction is the solve's bulk
//! (a memory-bound symv per column, a GEMM per panel), and f32 halves its
//! traffic and doubles its lanes. The error stays far below what the matrix
//! already carries. Householder tridiagonalisation is backward stable: the
//! tridiagonal it returns is exactly similar to A + E with ‖E‖₂ ≤ c·n·ε₃₂·‖A‖₂,
//! so by Weyl's theorem every eigenvalue moves by at most that, and
//! `Spectrum` already calls eigenvalues below max(dim, √samples)·ε₃₂·λmax
//! rounding, the f32 accumulation's own error. Measured (tests/eigen.rs,
//! f32 path against the f64 path on the same f32 matrix; Grams of 1024
//! Gaussian, ReLU'd and column-decayed rows over ten decades, and of n/4
//! ReLU'd rows, n = 10, 256, 576, 784): the largest move is 0.2–2.8
//! ε₃₂·λmax at n = 10 and 0.06–2.5 ε₃₂·λmax from n = 256 to 784 (c far
//! below 1: at most 0.008 of n·ε₃₂·λmax there), which is at most 0.12 of
//! the tolerance at n = 10 and 0.008 from n = 256 on; every rank agrees.
//! f64 matrices keep the f64 reduction, result for result.

use super::lanes::Element;
use super::{tridiagonal, tridiagonalise};
use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// A matrix on its way to its eigenvalues: known already (empty, zero or
/// not finite), or its tridiagonal form and the scale it was divided by.
enum Solve {
    Done(Vec<f64>),
    Tridiagonal { d: Vec<f64>, e: Vec<f64>, scale: f64 },
}

/// Checks, scales and reduces one matrix held as a row-major lower triangle.
fn prepare<T: Scalar>(lower: &[T], n: usize) -> Result<Solve> {
    if lower.len() != n * n {
        return Err(Error::shape("eigvalsh", format!("{} elements for a {n}×{n} matrix", lower.len())));
    }
    Ok(match T::EPSILON > f64::EPSILON {
        true => reduce::<f32, T>(lower, n),
        false => reduce::<f64, T>(lower, n),
    })
}

/// Descending eigenvalues from the QL iteration's outcome.
fn finish(mut values: Vec<f64>, scale: f64, converged: std::result::Result<(), tridiagonal::NoConvergence>) -> Result<Vec<f64>> {
    let n = values.len();
    converged.map_err(|_| Error::Backend(format!("eigvalsh of a {n}×{n} matrix did not converge")))?;
    values.sort_by(|a, b| b.total_cmp(a));
    Ok(values.into_iter().map(|v| v * scale).collect())
}

/// Descending eigenvalues of up to [`tridiagonal::LANES`] matrices, their QL
/// iterations side by side ([`tridiagonal::eigenvalues_lanes`]): each result
/// is the one it would be alone, bit for bit.
fn solve<T: Scalar>(mats: &[(&Vec<T>, usize)]) -> Vec<Result<Vec<f64>>> {
    let mut prepared: Vec<Result<Solve>> = mats.iter().map(|&(m, n)| prepare(m, n)).collect();
    let mut problems = Vec::new();
    for p in prepared.iter_mut() {
        if let Ok(Solve::Tridiagonal { d, e, .. }) = p {
            problems.push((&mut d[..], &e[..]));
        }
    }
    let mut converged = tridiagonal::eigenvalues_lanes(problems).into_iter();
    prepared
        .into_iter()
        .map(|p| match p? {
            Solve::Done(values) => Ok(values),
            Solve::Tridiagonal { d, scale, .. } => finish(d, scale, converged.next().expect("one outcome per tridiagonal")),
        })
        .collect()
}

/// `lower` in column-major order in `E` (the precision it was accumulated
/// in, so exactly), scaled and reduced to tridiagonal form in `E`, widened
/// to f64 for the QL iteration.
fn reduce<E: Element, T: Scalar>(lower: &[T], n: usize) -> Solve {
    let (mut a, largest) = transpose::<E, T>(lower, n);
    let Some(scale) = largest else {
        return Solve::Done(vec![f64::NAN; n]);
    };
    if scale == 0.0 {
        return Solve::Done(vec![0.0; n]);
    }
    // Scale so the entries are O(1): the solver then never sees 1e-30-sized
    // (or 1e30-sized) numbers, whatever the layer's gradient magnitude.
    for j in 0..n {
        a[j * n + j..(j + 1) * n].iter_mut().for_each(|v: &mut E| *v = E::from_f64(v.to_f64() / scale));
    }
    let (d, e) = tridiagonalise::tridiagonalise(&mut a, n);
    let widen = |v: Vec<E>| v.into_iter().map(E::to_f64).collect();
    Solve::Tridiagonal { d: widen(d), e: widen(e), scale }
}

/// Tiles of the transpose: 16 rows of f32 are one cache line each.
const TILE: usize = 16;

/// The row-major lower triangle `lower` as column-major (its transpose;
/// the upper triangle zero) and the largest magnitude among its entries,
/// `None` if one is not finite: one pass over a matrix that is usually
/// no longer in cache.
///
/// Why in tiles: a column of the result is a row of `lower`, so an
/// untiled copy writes one element per cache line, n apart, and at
/// n = 256 those lines share a few L1 sets. A tile reads 16 short rows
/// and writes 16 short columns, a line each.
fn transpose<E: Element, T: Scalar>(lower: &[T], n: usize) -> (Vec<E>, Option<f64>) {
    let mut a = vec![E::ZERO; n * n];
    let (mut largest, mut finite) = (0.0f64, true);
    for i0 in (0..n).step_by(TILE) {
        let rows = i0..(i0 + TILE).min(n);
        for j0 in (0..=i0).step_by(TILE) {
            for j in j0..(j0 + TILE).min(n) {
                let column = &mut a[j * n..(j + 1) * n];
                for i in rows.start.max(j)..rows.end {
                    let v = lower[i * n + j].to_f64();
                    let m = v.abs();
                    finite &= m <= f64::MAX;
                    largest = if m > largest { m } else { largest };
                    column[i] = E::from_f64(v);
                }
            }
        }
    }
    (a, finite.then_some(largest))
}

/// All matrices at once: equal-sized ones up to [`tridiagonal::LANES`] to a
/// task (see [`solve`]), each task on one thread, the tasks longest first
/// ([`super::parallel::longest_first`]).
pub fn eigvalsh<T: Scalar>(mats: &[(&Vec<T>, usize)]) -> Result<Vec<Vec<f64>>> {
    // Largest first, so the long solve does not start last. The grouping
    // depends on the sizes alone, and a group's results on neither.
    let mut order: Vec<usize> = (0..mats.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(mats[i].1));
    let mut tasks: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match tasks.last_mut() {
            Some(last) if last.len() < tridiagonal::LANES && mats[last[0]].1 == mats[i].1 => last.push(i),
            _ => tasks.push(vec![i]),
        }
    }
    let solved = super::parallel::longest_first(tasks.len(), |t| solve(&tasks[t].iter().map(|&i| mats[i]).collect::<Vec<_>>()));
    let mut out = vec![Vec::new(); mats.len()];
    for (task, results) in tasks.iter().zip(solved) {
        for (&i, r) in task.iter().zip(results) {
            out[i] = r?;
        }
    }
    Ok(out)
}
