//! Pooling over NCHW activations: max, average, and the global average that
//! ends every ResNet.

use super::tape::{Tape, Var};
use crate::backend::{Backend, Gemm, Window};
use crate::error::Result;
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// `k×k` max pooling; padding never wins.
    pub fn max_pool2d(&mut self, x: Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let g = Window::square(self.shape(x), k, stride, pad)?;
        let (oh, ow) = g.out("max_pool2d")?;
        let be = self.backend().clone();
        let xv = self.value(x).clone();
        let y = Tensor::new(&be, &[g.n, g.c, oh, ow], be.max_pool2d(xv.buf(), g)?)?;
        let yv = y.clone();
        Ok(self.push(
            y,
            vec![x],
            Box::new(move |be, dy| Ok(vec![Some(Tensor::new(be, xv.shape(), be.max_pool2d_backward(dy.buf(), xv.buf(), yv.buf(), g)?)?)])),
        ))
    }

    /// `k×k` average pooling, padding counted as zeros. `k = 1` with stride
    /// `s` is the strided subsample of the type-A shortcut.
    pub fn avg_pool2d(&mut self, x: Var, k: usize, stride: usize, pad: usize) -> Result<Var> {
        let g = Window::square(self.shape(x), k, stride, pad)?;
        let (oh, ow) = g.out("avg_pool2d")?;
        let be = self.backend().clone();
        let x_shape = self.shape(x).to_vec();
        let y = Tensor::new(&be, &[g.n, g.c, oh, ow], be.avg_pool2d(self.value(x).buf(), g)?)?;
        Ok(self.push(y, vec![x], Box::new(move |be, dy| Ok(vec![Some(Tensor::new(be, &x_shape, be.avg_pool2d_backward(dy.buf(), g)?)?)]))))
    }

    /// `[N, C, H, W]` → `[N, C]`, the mean of each plane: a product with a
    /// vector of `1/(H·W)`, and back as an outer product.
    pub fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        let s = self.value(x).channel_shape()?;
        let (rows, area) = (s.outer * s.channels, s.inner);
        let be = self.backend().clone();
        let weights = be.full(area, 1.0 / area.max(1) as f64)?;
        let y = be.matmul(self.value(x).buf(), &weights, Gemm::new(rows, 1, area, false, false))?;
        let y = Tensor::new(&be, &[s.outer, s.channels], y)?;
        let x_shape = self.shape(x).to_vec();
        Ok(self.push(
            y,
            vec![x],
            Box::new(move |be, dy| {
                Ok(vec![Some(Tensor::new(be, &x_shape, be.matmul(dy.buf(), &weights, Gemm::new(rows, area, 1, false, false))?)?)])
            }),
        ))
    }
}
