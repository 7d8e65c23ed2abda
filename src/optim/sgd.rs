//! Stochastic gradient descent with momentum, Nesterov and L2 weight decay.
//! Full-batch gradient descent is this with the whole training set as the batch.

use super::{Optimizer, OptimizerState};
use crate::autograd::Gradients;
use crate::backend::{Backend, SgdHyper};
use crate::error::{Error, Result};
use crate::param::{ParamId, ParamStore};
use std::collections::HashMap;

pub struct Sgd<B: Backend> {
    backend: B,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    velocity: HashMap<ParamId, B::Buf>,
}

impl<B: Backend> Sgd<B> {
    pub fn new(backend: &B, momentum: f64, weight_decay: f64, nesterov: bool) -> Self {
        Sgd { backend: backend.clone(), momentum, weight_decay, nesterov, velocity: HashMap::new() }
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self, store: &mut ParamStore<B>, grads: &Gradients<B>, lr: f64) -> Result<()> {
        let h = SgdHyper { lr, momentum: self.momentum, weight_decay: self.weight_decay, nesterov: self.nesterov };
        for id in store.ids() {
            let (Some(g), p) = (grads.param(id), store.param_mut(id)) else {
                continue;
            };
            if p.frozen {
                continue;
            }
            let v = match self.velocity.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(self.backend.zeros(g.numel())?),
            };
            let g = super::update_grad(&self.backend, p, g)?;
            self.backend.sgd_step(p.value.buf_mut(), &g, v, &SgdHyper { lr: lr * p.lr_scale, ..h })?;
        }
        Ok(())
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }

    fn state(&self) -> OptimizerState<&B::Buf> {
        OptimizerState { slots: self.velocity.iter().map(|(&id, v)| (id, vec![v])).collect(), step: None }
    }

    fn set_state(&mut self, state: OptimizerState<B::Buf>) -> Result<()> {
        self.velocity.clear();
        for (id, bufs) in state.slots {
            let [v]: [B::Buf; 1] = bufs
                .try_into()
                .map_err(|b: Vec<_>| Error::shape("sgd state", format!("parameter {} has {} buffers, expected 1", id.0, b.len())))?;
            self.velocity.insert(id, v);
        }
        Ok(())
    }
}
