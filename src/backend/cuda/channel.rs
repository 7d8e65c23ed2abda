//! Per-channel ops on the CUDA backend (kernels/channel.cu; CPU twin
//! src/backend/cpu/channel.rs): the per-channel f64 sums and the affine map
//! that bias add, bias gradient and batch norm (batch_norm.rs) are made of,
//! and whole-channel copies for padding and narrowing.

use super::mem::Mem;
use super::{launch, Cuda, CudaBuf, NULL};
use crate::backend::ChannelShape;
use crate::error::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

impl Cuda {
    /// Per channel, f64 `(Σ a, Σ a·b)` (b = a when None), left on the device.
    pub(super) fn channel_dots(&self, a: &CudaBuf, b: Option<&CudaBuf>, s: ChannelShape) -> Result<(Mem<f64>, Mem<f64>)> {
        let (mut sa, mut sab) = (self.alloc_zeros::<f64>(s.channels)?, self.alloc_zeros::<f64>(s.channels)?);
        if s.len() == 0 {
            return Ok((sa, sab));
        }
        let (outer, channels, inner) = (s.outer, s.channels, s.inner);
        match b {
            Some(b) if inner == 1 => launch!(
                self,
                "channel_dots_rows",
                launch::columns(outer, channels),
                [a.slice(), b.slice(), &outer, &channels, &mut sa, &mut sab]
            )?,
            None if inner == 1 => launch!(
                self,
                "channel_dots_rows",
                launch::columns(outer, channels),
                [a.slice(), &NULL, &outer, &channels, &mut sa, &mut sab]
            )?,
            Some(b) => launch!(
                self,
                "channel_dots_planes",
                launch::planes(s.per_channel(), channels),
                [a.slice(), b.slice(), &outer, &channels, &inner, &mut sa, &mut sab]
            )?,
            None => launch!(
                self,
                "channel_dots_planes",
                launch::planes(s.per_channel(), channels),
                [a.slice(), &NULL, &outer, &channels, &inner, &mut sa, &mut sab]
            )?,
        }
        Ok((sa, sab))
    }

    /// `scale[c]·x + shift[c]` (+ `zscale[c]·z`); a missing scale means 1.
    pub(super) fn channel_affine(
        &self,
        x: &CudaBuf,
        scale: Option<&CudaSlice<f32>>,
        shift: &CudaSlice<f32>,
        z: Option<(&CudaBuf, &CudaSlice<f32>)>,
        s: ChannelShape,
    ) -> Result<CudaBuf> {
        let (n, channels, inner) = (s.len(), s.channels, s.inner);
        let mut out = self.alloc::<f32>(n)?;
        if n == 0 {
            return Ok(Self::wrap(out));
        }
        let g = launch::elementwise(n);
        match (scale, z) {
            (None, None) => launch!(self, "channel_affine", g, [x.slice(), &NULL, shift, &NULL, &NULL, &mut out, &n, &channels, &inner])?,
            (Some(a), None) => launch!(self, "channel_affine", g, [x.slice(), a, shift, &NULL, &NULL, &mut out, &n, &channels, &inner])?,
            (Some(a), Some((z, zs))) => {
                launch!(self, "channel_affine", g, [x.slice(), a, shift, z.slice(), zs, &mut out, &n, &channels, &inner])?
            }
            (None, Some((z, zs))) => {
                launch!(self, "channel_affine", g, [x.slice(), &NULL, shift, z.slice(), zs, &mut out, &n, &channels, &inner])?
            }
        }
        Ok(Self::wrap(out))
    }

    /// `[outer, C, inner]` → `[outer, out_channels, inner]`, output channel c
    /// reading input channel `c − before + start` where it exists, else 0.
    /// The caller has checked `x` against `s`.
    pub(super) fn copy_channels(&self, x: &CudaBuf, s: ChannelShape, out_channels: usize, before: usize, start: usize) -> Result<CudaBuf> {
        let len = s.outer * out_channels * s.inner;
        let mut y = self.alloc::<f32>(len)?;
        if len > 0 {
            let ChannelShape { outer, channels, inner } = s;
            launch!(
                self,
                "copy_channels",
                launch::elementwise(len),
                [x.slice(), &outer, &channels, &inner, &out_channels, &before, &start, &mut y]
            )?;
        }
        Ok(Self::wrap(y))
    }
}
