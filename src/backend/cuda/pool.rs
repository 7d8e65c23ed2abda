//! Pooling (kernels/pool.cu) on the CUDA backend, checked as the CPU twin in
//! src/backend/cpu/pool.rs checks.

use super::{launch, Cuda, CudaBuf};
use crate::backend::Window;
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
}
