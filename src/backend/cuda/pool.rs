//! Pooling (kernels/pool.cu) and whole-channel copies (`copy_channels` in
//! kernels/channel.cu) on the CUDA backend, checked as the CPU twins in
//! src/backend/cpu/pool.rs and channel.rs check.

use super::{launch, Cuda, CudaBuf};
use crate::backend::{ChannelShape, Window};
use crate::error::{Error, Result};
use cudarc::driver::PushKernelArg;

use crate::backend::checks::pool as check;

/// `1/(kh·kw)` rounded to f32 from f64, as the CPU rounds it.
fn inverse_area(g: &Window) -> f32 {
    (1.0 / (g.kh * g.kw) as f64) as f32
}

impl Cuda {
    pub(super) fn max_pool(&self, x: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let (oh, ow) = g.out("max_pool2d")?;
        let len = g.n * g.c * oh * ow;
        check("max_pool2d", &g, x.slice().len(), len)?;
        let mut y = self.alloc::<f32>(len)?;
        if len > 0 {
            let (planes, Window { h, w, kh, kw, stride, pad, .. }) = (g.n * g.c, g);
            launch!(self, "max_pool2d", launch::elementwise(len), [x.slice(), &planes, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &mut y])?;
        }
        Ok(Self::wrap(y))
    }

    pub(super) fn max_pool_backward(&self, dy: &CudaBuf, x: &CudaBuf, y: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let (oh, ow) = check("max_pool2d_backward", &g, x.slice().len(), dy.slice().len())?;
        if y.slice().len() != dy.slice().len() {
            return Err(Error::shape("max_pool2d_backward", format!("output {} and its gradient {}", y.slice().len(), dy.slice().len())));
        }
        let len = x.slice().len();
        let mut dx = self.alloc::<f32>(len)?;
        if len > 0 {
            let (planes, Window { h, w, kh, kw, stride, pad, .. }) = (g.n * g.c, g);
            launch!(
                self,
                "max_pool2d_backward",
                launch::elementwise(len),
                [dy.slice(), x.slice(), y.slice(), &planes, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &mut dx]
            )?;
        }
        Ok(Self::wrap(dx))
    }

    pub(super) fn avg_pool(&self, x: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let (oh, ow) = g.out("avg_pool2d")?;
        let len = g.n * g.c * oh * ow;
        check("avg_pool2d", &g, x.slice().len(), len)?;
        let mut y = self.alloc::<f32>(len)?;
        if len > 0 {
            let (planes, inv, Window { h, w, kh, kw, stride, pad, .. }) = (g.n * g.c, inverse_area(&g), g);
            launch!(
                self,
                "avg_pool2d",
                launch::elementwise(len),
                [x.slice(), &planes, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &inv, &mut y]
            )?;
        }
        Ok(Self::wrap(y))
    }

    pub(super) fn avg_pool_backward(&self, dy: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let len = g.n * g.image_len();
        let (oh, ow) = check("avg_pool2d_backward", &g, len, dy.slice().len())?;
        let mut dx = self.alloc::<f32>(len)?;
        if len > 0 {
            let (planes, inv, Window { h, w, kh, kw, stride, pad, .. }) = (g.n * g.c, inverse_area(&g), g);
            launch!(
                self,
                "avg_pool2d_backward",
                launch::elementwise(len),
                [dy.slice(), &planes, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &inv, &mut dx]
            )?;
        }
        Ok(Self::wrap(dx))
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
