//! Batch norm on the CUDA backend: channel.rs's per-channel sums, the
//! coefficient kernels of kernels/batch_norm.cu, then channel.rs's affine
//! map; the CPU twin is src/backend/cpu/batch_norm.rs.

use super::backend::{check_channels, same_len};
use super::{launch, Cuda, CudaBuf};
use crate::backend::{BatchStats, ChannelShape};
use crate::error::Result;
use cudarc::driver::PushKernelArg;

impl Cuda {
    /// The trait's `batch_norm_train`.
    pub(super) fn bn_train(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(CudaBuf, BatchStats<CudaBuf>)> {
        check_channels("batch_norm", x, s, &[gamma, beta])?;
        let (sum, sum_sq) = self.channel_dots(x, None, s)?;
        let c = s.channels;
        let m = s.per_channel() as f64;
        let [mut mean, mut var, mut inv_std, mut scale, mut shift] =
            [self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?];
        if c > 0 {
            launch!(
                self,
                "batch_norm_train_coeffs",
                launch::elementwise(c),
                [&sum, &sum_sq, gamma.slice(), beta.slice(), &c, &m, &eps, &mut mean, &mut var, &mut inv_std, &mut scale, &mut shift]
            )?;
        }
        let y = self.channel_affine(x, Some(&scale), &shift, None, s)?;
        Ok((y, BatchStats { mean: Self::wrap(mean), var: Self::wrap(var), inv_std: Self::wrap(inv_std) }))
    }

    /// The trait's `batch_norm_eval`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bn_eval(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        mean: &CudaBuf,
        var: &CudaBuf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<CudaBuf> {
        check_channels("batch_norm_eval", x, s, &[gamma, beta, mean, var])?;
        let c = s.channels;
        let (mut scale, mut shift) = (self.alloc::<f32>(c)?, self.alloc::<f32>(c)?);
        if c > 0 {
            launch!(
                self,
                "batch_norm_eval_coeffs",
                launch::elementwise(c),
                [gamma.slice(), beta.slice(), mean.slice(), var.slice(), &c, &eps, &mut scale, &mut shift]
            )?;
        }
        self.channel_affine(x, Some(&scale), &shift, None, s)
    }

    /// The trait's `batch_norm_backward`.
    pub(super) fn bn_backward(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        mean: &CudaBuf,
        inv_std: &CudaBuf,
        s: ChannelShape,
    ) -> Result<(CudaBuf, CudaBuf, CudaBuf)> {
        check_channels("batch_norm_backward", x, s, &[gamma, mean, inv_std])?;
        same_len("batch_norm_backward", dy, x)?;
        let (sum_dy, sum_dy_x) = self.channel_dots(dy, Some(x), s)?;
        let c = s.channels;
        let m = s.per_channel() as f64;
        let [mut dgamma, mut dbeta, mut dy_scale, mut x_scale, mut shift] =
            [self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?, self.alloc::<f32>(c)?];
        if c > 0 {
            launch!(
                self,
                "batch_norm_backward_coeffs",
                launch::elementwise(c),
                [
                    &sum_dy,
                    &sum_dy_x,
                    gamma.slice(),
                    mean.slice(),
                    inv_std.slice(),
                    &c,
                    &m,
                    &mut dgamma,
                    &mut dbeta,
                    &mut dy_scale,
                    &mut x_scale,
                    &mut shift
                ]
            )?;
        }
        let dx = self.channel_affine(dy, Some(&dy_scale), &shift, Some((x, &x_scale)), s)?;
        Ok((dx, Self::wrap(dgamma), Self::wrap(dbeta)))
    }
}
