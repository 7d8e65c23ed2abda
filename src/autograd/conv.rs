//! 2-D convolution (cross-correlation, no bias) over NCHW activations.

use super::tape::{Tape, Var};
use crate::backend::{Backend, Window};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// The window a `w[c_out, c, kh, kw]` filter bank sweeps over `x[n, c, h, w]`.
    pub fn conv_window(&self, x: Var, w: Var, stride: usize, pad: usize) -> Result<(Window, usize)> {
        let (xs, ws) = (self.shape(x), self.shape(w));
        match (xs, ws) {
            (&[n, c, h, wd], &[c_out, c2, kh, kw]) if c == c2 => {
                let g = Window { n, c, h, w: wd, kh, kw, stride, pad };
                g.out("conv2d")?;
                Ok((g, c_out))
            }
            _ => Err(Error::shape("conv2d", format!("input {xs:?} and filter {ws:?}: expected [N, C, H, W] and [C_out, C, kh, kw]"))),
        }
    }

    /// `y[n, c_out, oh, ow]` = `x` cross-correlated with `w`, zero padding `pad`.
    pub fn conv2d(&mut self, x: Var, w: Var, stride: usize, pad: usize) -> Result<Var> {
        let (g, c_out) = self.conv_window(x, w, stride, pad)?;
        let (oh, ow) = g.out("conv2d")?;
        let be = self.backend().clone();
        let (xv, wv) = (self.value(x).clone(), self.value(w).clone());
        let y = Tensor::new(&be, &[g.n, c_out, oh, ow], be.conv2d(xv.buf(), wv.buf(), g, c_out)?)?;
        let (need_x, need_w) = (self.requires_grad(x), self.requires_grad(w));
        Ok(self.push(
            y,
            vec![x, w],
            Box::new(move |be, dy| {
                let dx = need_x.then(|| Tensor::new(be, xv.shape(), be.conv2d_backward_data(dy.buf(), wv.buf(), g, c_out)?)).transpose()?;
                let dw =
                    need_w.then(|| Tensor::new(be, wv.shape(), be.conv2d_backward_filter(dy.buf(), xv.buf(), g, c_out)?)).transpose()?;
                Ok(vec![dx, dw])
            }),
        ))
    }
}
