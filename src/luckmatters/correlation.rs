//! The recovery metric: how well each teacher node is matched by its
//! best-correlated student node.

use serde::{Deserialize, Serialize};

/// Centred Pearson correlations between the columns of `a` (n×p) and of `b`
/// (n×q), both row-major, as a p×q row-major matrix. A constant column (a dead
/// ReLU) correlates 0 with everything rather than NaN.
pub fn pearson(a: &[f64], p: usize, b: &[f64], q: usize) -> Vec<f64> {
    assert!(p > 0 && q > 0 && a.len().is_multiple_of(p) && b.len() == a.len() / p * q, "pearson: inconsistent shapes");
    let n = a.len() / p;
    let (ca, sa) = centre(a, n, p);
    let (cb, sb) = centre(b, n, q);
    let mut out = vec![0.0; p * q];
    for r in 0..n {
        let (ra, rb) = (&ca[r * p..(r + 1) * p], &cb[r * q..(r + 1) * q]);
        for (i, &x) in ra.iter().enumerate() {
            for (o, &y) in out[i * q..(i + 1) * q].iter_mut().zip(rb) {
                *o += x * y;
            }
        }
    }
    for i in 0..p {
        for j in 0..q {
            let denom = sa[i] * sb[j];
            out[i * q + j] = if denom > 0.0 { out[i * q + j] / denom } else { 0.0 };
        }
    }
    out
}

/// Columns minus their means, and the columns' root sums of squares after centring.
fn centre(x: &[f64], n: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; cols];
    for row in x.chunks_exact(cols) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let centred: Vec<f64> = x.iter().enumerate().map(|(i, v)| v - mean[i % cols]).collect();
    let mut ss = vec![0.0; cols];
    for row in centred.chunks_exact(cols) {
        for (s, v) in ss.iter_mut().zip(row) {
            *s += v * v;
        }
    }
    (centred, ss.into_iter().map(f64::sqrt).collect())
}

/// For every teacher node (row of the p×q matrix `corr`), its best correlation
/// over the q student nodes, and which student node achieves it.
pub fn best_match(corr: &[f64], q: usize) -> Vec<(f64, usize)> {
    corr.chunks_exact(q)
        .map(|row| row.iter().enumerate().fold((f64::NEG_INFINITY, 0), |best, (j, &c)| if c > best.0 { (c, j) } else { best }))
        .collect()
}

/// Min, mean and max over teacher nodes of their best correlations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrStats {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl CorrStats {
    pub fn of(best: &[f64]) -> Self {
        let min = best.iter().copied().fold(f64::INFINITY, f64::min);
        let max = best.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        CorrStats { min, mean: best.iter().sum::<f64>() / best.len() as f64, max }
    }
}

/// [`CorrStats`] of the teacher↔student matching of one layer, given both
/// activation matrices (n×p teacher, n×q student, row-major).
pub fn layer_stats(teacher: &[f64], p: usize, student: &[f64], q: usize) -> CorrStats {
    let best: Vec<f64> = best_match(&pearson(teacher, p, student, q), q).into_iter().map(|(c, _)| c).collect();
    CorrStats::of(&best)
}
