//! Batch normalisation layer: affine γ, β and running statistics.

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::{BufferId, ParamId, ParamStore};
use crate::tensor::Tensor;

/// What a batch norm's output goes through in the same op.
#[derive(Clone, Copy)]
enum After {
    Nothing,
    Relu,
    /// `relu(y + z)`.
    AddRelu(Var),
}

pub struct BatchNorm {
    pub name: String,
    pub gamma: ParamId,
    pub beta: ParamId,
    pub running_mean: BufferId,
    pub running_var: BufferId,
    /// Weight of the new batch in the running averages (PyTorch's and Torch7's 0.1).
    pub momentum: f64,
    pub eps: f64,
}

impl BatchNorm {
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        backend: &B,
        name: &str,
        channels: usize,
        layer: usize,
        momentum: f64,
    ) -> Result<Self> {
        let gamma = store.add(format!("{name}.weight"), Tensor::full(backend, &[channels], 1.0)?, layer);
        let beta = store.add(format!("{name}.bias"), Tensor::zeros(backend, &[channels])?, layer);
        let running_mean = store.add_buffer(format!("{name}.running_mean"), Tensor::zeros(backend, &[channels])?);
        let running_var = store.add_buffer(format!("{name}.running_var"), Tensor::full(backend, &[channels], 1.0)?);
        Ok(BatchNorm { name: name.to_string(), gamma, beta, running_mean, running_var, momentum, eps: 1e-5 })
    }

    /// Training mode normalises with batch statistics and updates the running
    /// averages (variance unbiased, as PyTorch does); eval mode uses the averages.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool) -> Result<Var> {
        self.forward_then(tape, store, x, train, After::Nothing)
    }

    /// `relu` of [`BatchNorm::forward`], in one op where training: the
    /// normalised values are never stored.
    pub fn forward_relu<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool) -> Result<Var> {
        self.forward_then(tape, store, x, train, After::Relu)
    }

    /// `relu(forward(x) + z)`, in one op where training: neither the
    /// normalised values nor the sum are stored.
    pub fn forward_add_relu<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, z: Var, train: bool) -> Result<Var> {
        self.forward_then(tape, store, x, train, After::AddRelu(z))
    }

    fn forward_then<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool, after: After) -> Result<Var> {
        let (g, b) = (tape.param(store, self.gamma), tape.param(store, self.beta));
        if !train {
            let (mean, var) = (store.buffer(self.running_mean).clone(), store.buffer(self.running_var).clone());
            let y = tape.batch_norm_eval(x, g, b, &mean, &var, self.eps)?;
            let a = match after {
                After::Nothing => return Ok(y),
                After::Relu => tape.relu(y)?,
                After::AddRelu(z) => tape.add_relu(y, z)?,
            };
            tape.release(y);
            return Ok(a);
        }
        let out = match after {
            After::Nothing => tape.batch_norm_train(x, g, b, self.eps)?,
            After::Relu => tape.batch_norm_train_relu(x, g, b, self.eps)?,
            After::AddRelu(z) => tape.batch_norm_train_add_relu(x, g, b, z, self.eps)?,
        };
        let n = tape.value(x).channel_shape()?.per_channel() as f64;
        let be = tape.backend().clone();
        let m = self.momentum;
        let rm = store.buffer_mut(self.running_mean).buf_mut();
        *rm = be.scale(rm, 1.0 - m)?;
        be.axpy(rm, m, &out.stats.mean)?;
        let rv = store.buffer_mut(self.running_var).buf_mut();
        *rv = be.scale(rv, 1.0 - m)?;
        be.axpy(rv, m * n / (n - 1.0).max(1.0), &out.stats.var)?;
        Ok(out.y)
    }
}
