//! A learnable scalar applied to a whole tensor: τ scaling a residual branch,
//! the Fixup biases. Both ride on existing kernels (a 1-column product and a
//! one-channel bias), so they never leave the device.

use super::tape::{Tape, Var};
use crate::backend::{Backend, ChannelShape, Gemm};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    fn check_scalar(&self, op: &'static str, s: Var) -> Result<()> {
        match self.value(s).numel() {
            1 => Ok(()),
            _ => Err(Error::shape(op, format!("the scalar has shape {:?}", self.shape(s)))),
        }
    }

    /// `s·x` for a one-element `s`.
    pub fn scale_by(&mut self, x: Var, s: Var) -> Result<Var> {
        self.check_scalar("scale_by", s)?;
        let be = self.backend().clone();
        let (xv, sv) = (self.value(x).clone(), self.value(s).clone());
        let n = xv.numel();
        let y = Tensor::new(&be, xv.shape(), be.matmul(xv.buf(), sv.buf(), Gemm::new(n, 1, 1, false, false))?)?;
        let (need_x, need_s) = (self.requires_grad(x), self.requires_grad(s));
        Ok(self.push(
            y,
            vec![x, s],
            Box::new(move |be, dy| {
                // dx = s·dy, ds = ⟨x, dy⟩
                let dx = need_x
                    .then(|| Tensor::new(be, xv.shape(), be.matmul(dy.buf(), sv.buf(), Gemm::new(n, 1, 1, false, false))?))
                    .transpose()?;
                let ds = need_s
                    .then(|| Tensor::new(be, sv.shape(), be.matmul(xv.buf(), dy.buf(), Gemm::new(1, 1, n, true, false))?))
                    .transpose()?;
                Ok(vec![dx, ds])
            }),
        ))
    }

    /// `x + b` for a one-element `b`.
    pub fn add_scalar(&mut self, x: Var, b: Var) -> Result<Var> {
        self.check_scalar("add_scalar", b)?;
        let be = self.backend().clone();
        let xv = self.value(x);
        let s = ChannelShape { outer: 1, channels: 1, inner: xv.numel() };
        let y = Tensor::new(&be, xv.shape(), be.add_channel_bias(xv.buf(), self.value(b).buf(), s)?)?;
        let b_shape = self.shape(b).to_vec();
        Ok(self.push(
            y,
            vec![x, b],
            Box::new(move |be, dy| Ok(vec![Some(dy.clone()), Some(Tensor::new(be, &b_shape, be.channel_sum(dy.buf(), s)?)?)])),
        ))
    }
}
