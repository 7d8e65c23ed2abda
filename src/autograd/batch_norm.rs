//! Batch normalisation over the channel axis of `[N, C, ...]`: training mode
//! (batch statistics, differentiated through) and eval mode (fixed statistics).

use super::tape::{Tape, Var};
use crate::backend::{Backend, BatchStats};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A training-mode batch norm's output and the batch statistics it used.
pub struct BatchNormOut<B: Backend> {
    pub y: Var,
    pub stats: BatchStats<B::Buf>,
}

impl<B: Backend> Tape<B> {
    fn check_affine(&self, x: Var, gamma: Var, beta: Var) -> Result<()> {
        let c = self.value(x).channel_shape()?.channels;
        if self.value(gamma).numel() != c || self.value(beta).numel() != c {
            return Err(Error::shape(
                "batch_norm",
                format!("γ {:?}, β {:?} for input {:?}", self.shape(gamma), self.shape(beta), self.shape(x)),
            ));
        }
        Ok(())
    }

    pub fn batch_norm_train(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Result<BatchNormOut<B>> {
        self.check_affine(x, gamma, beta)?;
        let be = self.backend().clone();
        let (xv, gv) = (self.value(x).clone(), self.value(gamma).clone());
        let s = xv.channel_shape()?;
        let (y, stats) = be.batch_norm_train(xv.buf(), gv.buf(), self.value(beta).buf(), s, eps)?;
        let y = Tensor::new(&be, xv.shape(), y)?;
        let (mean, inv_std) = (stats.mean.clone(), stats.inv_std.clone());
        let c_shape = gv.shape().to_vec();
        let y = self.push(
            y,
            vec![x, gamma, beta],
            Box::new(move |be, g| {
                let (dx, dg, db) = be.batch_norm_backward(g.buf(), xv.buf(), gv.buf(), &mean, &inv_std, s)?;
                Ok(vec![Some(Tensor::new(be, xv.shape(), dx)?), Some(Tensor::new(be, &c_shape, dg)?), Some(Tensor::new(be, &c_shape, db)?)])
            }),
        );
        Ok(BatchNormOut { y, stats })
    }

    pub fn batch_norm_eval(&mut self, x: Var, gamma: Var, beta: Var, mean: &Tensor<B>, var: &Tensor<B>, eps: f64) -> Result<Var> {
        self.check_affine(x, gamma, beta)?;
        let be = self.backend().clone();
        let (xv, gv) = (self.value(x).clone(), self.value(gamma).clone());
        let s = xv.channel_shape()?;
        let y = be.batch_norm_eval(xv.buf(), gv.buf(), self.value(beta).buf(), mean.buf(), var.buf(), s, eps)?;
        let y = Tensor::new(&be, xv.shape(), y)?;
        let (mean, var) = (mean.clone(), var.clone());
        Ok(self.push(
            y,
            vec![x, gamma, beta],
            Box::new(move |be, g| {
                // The eval map is affine per channel, so the map itself (with μ=0,
                // β=0) gives dx = γ·g/√(v+ε), and with γ=1 it gives x̂ for dγ.
                let c = s.channels;
                let (zeros, ones) = (be.zeros(c)?, be.full(c, 1.0)?);
                let dx = be.batch_norm_eval(g.buf(), gv.buf(), &zeros, &zeros, var.buf(), s, eps)?;
                let xhat = be.batch_norm_eval(xv.buf(), &ones, &zeros, mean.buf(), var.buf(), s, eps)?;
                let dg = be.channel_sum(&be.mul(g.buf(), &xhat)?, s)?;
                let db = be.channel_sum(g.buf(), s)?;
                let cs = gv.shape();
                Ok(vec![Some(Tensor::new(be, xv.shape(), dx)?), Some(Tensor::new(be, cs, dg)?), Some(Tensor::new(be, cs, db)?)])
            }),
        ))
    }
}
