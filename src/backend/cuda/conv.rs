//! Conv-layer ops of the CUDA backend that the Backend trait does not have
//! yet (conv nets arrive with a later issue): the patch Gram Σx of a conv
//! layer's input read straight from its NCHW activation, and im2col/col2im.
//! Their CPU twin is the explicit-patch reference in tests/emulated/reference.rs.

use super::launch::{self, conv_out};
use super::{Cuda, CudaBuf};
use crate::error::{Error, Result};
use cudarc::driver::PushKernelArg;

/// A kh×kw window with stride and zero padding over an N×C×H×W activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Window {
    fn out(&self, op: &'static str) -> Result<(usize, usize)> {
        conv_out(self.h, self.w, self.kh, self.kw, self.stride, self.pad).ok_or_else(|| Error::shape(op, format!("{self:?} has no output")))
    }
    /// Patch rows (image, oy, ox) and columns (channel, ky, kx).
    pub fn patch_shape(&self) -> Option<(usize, usize)> {
        let (oh, ow) = conv_out(self.h, self.w, self.kh, self.kw, self.stride, self.pad)?;
        Some((self.n * oh * ow, self.c * self.kh * self.kw))
    }
}

impl Cuda {
    /// `acc[K×K] += alpha·PᵀP` (lower triangle) for the patch matrix P of `x`
    /// under window `g`, K = C·kh·kw, without materialising P. A 1×1 window
    /// is Σ∇h of an NCHW output gradient.
    pub fn gram_lower_patches(&self, acc: &mut CudaBuf, x: &CudaBuf, g: Window, alpha: f64) -> Result<()> {
        let (oh, ow) = g.out("gram_lower_patches")?;
        let (rows, cols) = (g.n * oh * ow, g.c * g.kh * g.kw);
        if x.slice().len() != g.n * g.c * g.h * g.w || acc.slice().len() != cols * cols {
            return Err(Error::shape(
                "gram_lower_patches",
                format!("{g:?}: input of {}, accumulator of {}", x.slice().len(), acc.slice().len()),
            ));
        }
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let geometry = launch::gram(rows, cols, self.info().multiprocessors);
        let alpha = alpha as f32;
        let Window { n, c, h, w, kh, kw, stride, pad } = g;
        let acc = self.make_mut(acc)?;
        launch!(self, "gram_lower_patches", geometry, [acc, x.slice(), &n, &c, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &alpha])
    }

    /// The patch matrix of `x`: rows (image, oy, ox), columns (channel, ky, kx).
    pub fn im2col(&self, x: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let (oh, ow) = g.out("im2col")?;
        if x.slice().len() != g.n * g.c * g.h * g.w {
            return Err(Error::shape("im2col", format!("{g:?} does not fit a buffer of {}", x.slice().len())));
        }
        let total = g.n * oh * ow * g.c * g.kh * g.kw;
        let mut cols = self.alloc::<f32>(total)?;
        if total > 0 {
            let Window { n, c, h, w, kh, kw, stride, pad } = g;
            launch!(self, "im2col", launch::elementwise(total), [x.slice(), &n, &c, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &mut cols])?;
        }
        Ok(Cuda::wrap(cols))
    }

    /// The adjoint of [`Cuda::im2col`]: patch gradients summed back into an NCHW buffer.
    pub fn col2im(&self, cols: &CudaBuf, g: Window) -> Result<CudaBuf> {
        let (oh, ow) = g.out("col2im")?;
        if cols.slice().len() != g.n * oh * ow * g.c * g.kh * g.kw {
            return Err(Error::shape("col2im", format!("{g:?} does not fit a buffer of {}", cols.slice().len())));
        }
        let total = g.n * g.c * g.h * g.w;
        let mut x = self.alloc::<f32>(total)?;
        if total > 0 {
            let Window { n, c, h, w, kh, kw, stride, pad } = g;
            launch!(self, "col2im", launch::elementwise(total), [cols.slice(), &n, &c, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &mut x])?;
        }
        Ok(Cuda::wrap(x))
    }
}
