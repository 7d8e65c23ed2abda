//! CPU twin of kernels/softmax.cu: row-wise softmax cross-entropy, numerically
//! stable (max-shifted), and labels sampled from the softmax.

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Softmax probabilities and the summed negative log-likelihood.
pub fn softmax_xent<T: Scalar>(logits: &[T], labels: &[u32], classes: usize) -> (Vec<T>, f64) {
    let mut probs = vec![T::ZERO; logits.len()];
    let nll: Vec<f64> = probs
        .par_chunks_mut(classes)
        .zip(logits.par_chunks(classes))
        .zip(labels.par_iter())
        .map(|((p, z), &y)| {
            let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
            let mut total = 0.0;
            for (p, &v) in p.iter_mut().zip(z) {
                let e = (v.to_f64() - max).exp();
                *p = T::from_f64(e);
                total += e;
            }
            for p in p.iter_mut() {
                *p = T::from_f64(p.to_f64() / total);
            }
            max + total.ln() - z[y as usize].to_f64()
        })
        .collect();
    (probs, nll.iter().sum())
}

pub fn softmax_xent_backward<T: Scalar>(probs: &[T], labels: &[u32], classes: usize, scale: f64) -> Vec<T> {
    let s = T::from_f64(scale);
    let mut grad: Vec<T> = probs.iter().map(|&p| p * s).collect();
    for (row, &y) in labels.iter().enumerate() {
        grad[row * classes + y as usize] -= s;
    }
    grad
}

pub fn sample_labels<T: Scalar>(logits: &[T], classes: usize, seed: u64, stream: u64) -> Result<Vec<u32>> {
    if classes == 0 || !logits.len().is_multiple_of(classes) {
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
