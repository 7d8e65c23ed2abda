//! CPU twin of kernels/batch_norm.cu (launched by src/backend/cuda/batch_norm.rs):
//! batch norm as channel.rs's per-channel f64 sums, per-channel coefficients
//! in f64, then channel.rs's per-channel affine map in `T`.

use super::super::{BatchStats, ChannelShape};
use super::channel::{cast, channel_affine, channel_affine_relu, channel_dots};
use crate::scalar::Scalar;

pub fn batch_norm_train<T: Scalar>(x: &[T], gamma: &[T], beta: &[T], s: ChannelShape, eps: f64) -> (Vec<T>, BatchStats<Vec<T>>) {
    let (scale, shift, stats) = coefficients(x, gamma, beta, s, eps);
    (channel_affine(x, &scale, &shift, None, s), stats)
}

/// `relu(batch_norm_train(x) + z)`, or without `z` `relu(batch_norm_train(x))`,
/// in one pass. `z`'s coefficient is one, so the sum rounds as a separate add.
pub fn batch_norm_train_relu<T: Scalar>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    z: Option<&[T]>,
    s: ChannelShape,
    eps: f64,
) -> (Vec<T>, BatchStats<Vec<T>>) {
    let (scale, shift, stats) = coefficients(x, gamma, beta, s, eps);
    (channel_affine_relu(x, &scale, &shift, z, s), stats)
}

/// The batch statistics and the per-channel `scale`, `shift` that normalise `x`.
fn coefficients<T: Scalar>(x: &[T], gamma: &[T], beta: &[T], s: ChannelShape, eps: f64) -> (Vec<T>, Vec<T>, BatchStats<Vec<T>>) {
    let m = s.per_channel() as f64;
    let (sum, sum_sq) = channel_dots(x, None, s);
    let mean: Vec<f64> = sum.iter().map(|v| v / m).collect();
    // E[x²] − μ² from f64 sums: exact enough unless |μ|/σ exceeds ~1e6.
    let var: Vec<f64> = sum_sq.iter().zip(&mean).map(|(q, mu)| (q / m - mu * mu).max(0.0)).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f64> = (0..s.channels).map(|c| gamma[c].to_f64() * inv_std[c]).collect();
    let shift: Vec<f64> = (0..s.channels).map(|c| beta[c].to_f64() - mean[c] * scale[c]).collect();
    (cast(&scale), cast(&shift), BatchStats { mean: cast(&mean), var: cast(&var), inv_std: cast(&inv_std) })
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

#[cfg(test)]
mod tests {
    use super::super::Cpu;
    use crate::backend::{Backend, ChannelShape};
    use crate::rng::Rng;

    /// The fused ops store the bits of their parts run one after the other:
    /// a batch norm then a ReLU, a sum then a ReLU, a batch norm then a sum
    /// then a ReLU. NCHW and N×C, large enough to run in parallel.
    #[test]
    fn fused_relus_round_as_their_parts() {
        let be = Cpu::<f32>::new();
        let mut r = Rng::new(51, 0);
        for s in [ChannelShape { outer: 5, channels: 3, inner: 7001 }, ChannelShape { outer: 6000, channels: 7, inner: 1 }] {
            let mut rand = |len: usize, shift: f64| (0..len).map(|_| (r.normal() + shift) as f32).collect::<Vec<f32>>();
            let (x, z, gamma, beta) = (rand(s.len(), 0.3), rand(s.len(), 0.0), rand(s.channels, 1.0), rand(s.channels, 0.0));
            let (fused, stats) = be.batch_norm_train_relu(&x, &gamma, &beta, None, s, 1e-5).unwrap();
            let (y, parts) = be.batch_norm_train(&x, &gamma, &beta, s, 1e-5).unwrap();
            assert!(fused == be.relu(&y).unwrap() && stats.mean == parts.mean && stats.inv_std == parts.inv_std, "{s:?}");
            assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0), "{s:?}: both sides of the kink");
            assert!(be.add_relu(&x, &z).unwrap() == be.relu(&be.add(&x, &z).unwrap()).unwrap(), "{s:?}");
            let (fused, stats) = be.batch_norm_train_relu(&x, &gamma, &beta, Some(&z), s, 1e-5).unwrap();
            assert!(fused == be.add_relu(&y, &z).unwrap() && stats.var == parts.var, "{s:?}");
        }
    }
}
