//! CPU twin of kernels/batch_norm.cu (launched by src/backend/cuda/batch_norm.rs):
//! batch norm as channel.rs's per-channel f64 sums, per-channel coefficients
//! in f64, then channel.rs's per-channel affine map in `T`.

use super::super::{BatchStats, ChannelShape};
use super::channel::{cast, channel_affine, channel_dots};
use crate::scalar::Scalar;

pub fn batch_norm_train<T: Scalar>(x: &[T], gamma: &[T], beta: &[T], s: ChannelShape, eps: f64) -> (Vec<T>, BatchStats<Vec<T>>) {
    let m = s.per_channel() as f64;
    let (sum, sum_sq) = channel_dots(x, None, s);
    let mean: Vec<f64> = sum.iter().map(|v| v / m).collect();
    // E[x²] − μ² from f64 sums: exact enough unless |μ|/σ exceeds ~1e6.
    let var: Vec<f64> = sum_sq.iter().zip(&mean).map(|(q, mu)| (q / m - mu * mu).max(0.0)).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f64> = (0..s.channels).map(|c| gamma[c].to_f64() * inv_std[c]).collect();
    let shift: Vec<f64> = (0..s.channels).map(|c| beta[c].to_f64() - mean[c] * scale[c]).collect();
    let y = channel_affine(x, &cast(&scale), &cast(&shift), None, s);
    (y, BatchStats { mean: cast(&mean), var: cast(&var), inv_std: cast(&inv_std) })
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval<T: Scalar>(x: &[T], gamma: &[T], beta: &[T], mean: &[T], var: &[T], s: ChannelShape, eps: f64) -> Vec<T> {
    let scale: Vec<f64> = (0..s.channels).map(|c| gamma[c].to_f64() / (var[c].to_f64() + eps).sqrt()).collect();
    let shift: Vec<f64> = (0..s.channels).map(|c| beta[c].to_f64() - mean[c].to_f64() * scale[c]).collect();
    channel_affine(x, &cast(&scale), &cast(&shift), None, s)
}

/// With x̂ = (x − μ)·σ⁻¹ and M elements per channel: dβ = Σdy,
/// dγ = σ⁻¹(Σdy·x − μΣdy), and dx = γσ⁻¹/M·(M·dy − dβ − x̂·dγ), which is
/// affine per channel in (dy, x).
pub fn batch_norm_backward<T: Scalar>(
    dy: &[T],
    x: &[T],
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
    s: ChannelShape,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let m = s.per_channel() as f64;
    let (dbeta, sum_dy_x) = channel_dots(dy, Some(x), s);
    let (mu, is) = (|c: usize| mean[c].to_f64(), |c: usize| inv_std[c].to_f64());
    let dgamma: Vec<f64> = (0..s.channels).map(|c| is(c) * (sum_dy_x[c] - mu(c) * dbeta[c])).collect();
    let k: Vec<f64> = (0..s.channels).map(|c| gamma[c].to_f64() * is(c) / m).collect();
    let dy_scale: Vec<f64> = k.iter().map(|k| k * m).collect();
    let x_scale: Vec<f64> = (0..s.channels).map(|c| -k[c] * dgamma[c] * is(c)).collect();
    let shift: Vec<f64> = (0..s.channels).map(|c| k[c] * (dgamma[c] * is(c) * mu(c) - dbeta[c])).collect();
    let dx = channel_affine(dy, &cast(&dy_scale), &cast(&shift), Some((x, &cast(&x_scale))), s);
    (dx, cast(&dgamma), cast(&dbeta))
}
