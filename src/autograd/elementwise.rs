//! Element-wise arithmetic: add, sub, mul, scale, and the per-channel bias add.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    pub(super) fn same_shape(&self, op: &'static str, a: Var, b: Var) -> Result<Vec<usize>> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb {
            return Err(Error::shape(op, format!("{sa:?} and {sb:?}")));
        }
        Ok(sa.to_vec())
    }

    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let shape = self.same_shape("add", a, b)?;
        let be = self.backend().clone();
        let out = Tensor::new(&be, &shape, be.add(self.value(a).buf(), self.value(b).buf())?)?;
        Ok(self.push(out, vec![a, b], Box::new(|_, g| Ok(vec![Some(g.clone()), Some(g.clone())]))))
    }

    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        let shape = self.same_shape("sub", a, b)?;
        let be = self.backend().clone();
        let out = Tensor::new(&be, &shape, be.sub(self.value(a).buf(), self.value(b).buf())?)?;
        Ok(self.push(
            out,
            vec![a, b],
            Box::new(|be, g| Ok(vec![Some(g.clone()), Some(Tensor::new(be, g.shape(), be.scale(g.buf(), -1.0)?)?)])),
        ))
    }

    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        let shape = self.same_shape("mul", a, b)?;
        let be = self.backend().clone();
        let (av, bv) = (self.value(a).clone(), self.value(b).clone());
        let out = Tensor::new(&be, &shape, be.mul(av.buf(), bv.buf())?)?;
        Ok(self.push(
            out,
            vec![a, b],
            Box::new(move |be, g| {
                let da = Tensor::new(be, g.shape(), be.mul(g.buf(), bv.buf())?)?;
                let db = Tensor::new(be, g.shape(), be.mul(g.buf(), av.buf())?)?;
                Ok(vec![Some(da), Some(db)])
            }),
        ))
    }

    pub fn scale(&mut self, a: Var, s: f64) -> Result<Var> {
        let be = self.backend().clone();
        let av = self.value(a);
        let out = Tensor::new(&be, av.shape(), be.scale(av.buf(), s)?)?;
        Ok(self.push(out, vec![a], Box::new(move |be, g| Ok(vec![Some(Tensor::new(be, g.shape(), be.scale(g.buf(), s)?)?)]))))
    }

    /// `x + b[c]` for `x` of shape `[N, C, ...]` and `b` of length C.
    pub fn bias_add(&mut self, x: Var, b: Var) -> Result<Var> {
        let be = self.backend().clone();
        let xv = self.value(x);
        let s = xv.channel_shape()?;
        if self.value(b).numel() != s.channels {
            return Err(Error::shape("bias_add", format!("bias {:?} for input {:?}", self.shape(b), xv.shape())));
        }
        let b_shape = self.shape(b).to_vec();
        let out = Tensor::new(&be, xv.shape(), be.add_channel_bias(xv.buf(), self.value(b).buf(), s)?)?;
        Ok(self.push(
            out,
            vec![x, b],
            Box::new(move |be, g| Ok(vec![Some(g.clone()), Some(Tensor::new(be, &b_shape, be.channel_sum(g.buf(), s)?)?)])),
        ))
    }
}
