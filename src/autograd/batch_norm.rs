//! Batch normalisation over the channel axis of `[N, C, ...]`: training mode
//! (batch statistics, differentiated through) and eval mode (fixed statistics).

use super::tape::{Tape, Var};
use crate::backend::{Backend, BatchStats};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a training-mode batch norm's output goes through in the same op.
#[derive(Clone, Copy)]
enum Then {
    Nothing,
    Relu,
    /// `relu(y + z)`.
    AddRelu(Var),
}

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
        self.batch_norm_train_then(x, gamma, beta, eps, Then::Nothing)
    }

    /// `relu` of [`Tape::batch_norm_train`]'s output, the normalised values
    /// never stored: backward masks the gradient by the output's sign first.
    pub fn batch_norm_train_relu(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Result<BatchNormOut<B>> {
        self.batch_norm_train_then(x, gamma, beta, eps, Then::Relu)
    }

    /// `relu(batch_norm_train(x) + z)`: a post-activation residual block's
    /// last batch norm, sum and ReLU, neither the normalised values nor the
    /// sum stored. `z` gets the masked gradient, as from an add.
    pub fn batch_norm_train_add_relu(&mut self, x: Var, gamma: Var, beta: Var, z: Var, eps: f64) -> Result<BatchNormOut<B>> {
        self.same_shape("batch_norm_train_add_relu", x, z)?;
        self.batch_norm_train_then(x, gamma, beta, eps, Then::AddRelu(z))
    }

    fn batch_norm_train_then(&mut self, x: Var, gamma: Var, beta: Var, eps: f64, then: Then) -> Result<BatchNormOut<B>> {
        self.check_affine(x, gamma, beta)?;
        let be = self.backend().clone();
        let (xv, gv) = (self.value(x).clone(), self.value(gamma).clone());
        let s = xv.channel_shape()?;
        let (beta_v, gamma_v) = (self.value(beta).buf(), gv.buf());
        let (y, stats) = match then {
            Then::Nothing => be.batch_norm_train(xv.buf(), gamma_v, beta_v, s, eps)?,
            Then::Relu => be.batch_norm_train_relu(xv.buf(), gamma_v, beta_v, None, s, eps)?,
            Then::AddRelu(z) => be.batch_norm_train_relu(xv.buf(), gamma_v, beta_v, Some(self.value(z).buf()), s, eps)?,
        };
        let y = Tensor::new(&be, xv.shape(), y)?;
        let relu_out = (!matches!(then, Then::Nothing)).then(|| y.clone());
        let (mean, inv_std) = (stats.mean.clone(), stats.inv_std.clone());
        let c_shape = gv.shape().to_vec();
        let mut parents = vec![x, gamma, beta];
        parents.extend(match then {
            Then::AddRelu(z) => Some(z),
            _ => None,
        });
        let y = self.push(
            y,
            parents,
            Box::new(move |be, g| {
                let masked = match relu_out {
                    Some(y) => Tensor::new(be, g.shape(), be.relu_backward(g.buf(), y.buf())?)?,
                    None => g.clone(),
                };
                let (dx, dg, db) = be.batch_norm_backward(masked.buf(), xv.buf(), gv.buf(), &mean, &inv_std, s)?;
                let mut grads = vec![
                    Some(Tensor::new(be, xv.shape(), dx)?),
                    Some(Tensor::new(be, &c_shape, dg)?),
                    Some(Tensor::new(be, &c_shape, db)?),
                ];
                if matches!(then, Then::AddRelu(_)) {
                    grads.push(Some(masked));
                }
                Ok(grads)
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
