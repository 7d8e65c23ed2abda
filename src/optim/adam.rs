//! Adam (Kingma & Ba) with bias correction and L2 weight decay.

use super::{Optimizer, OptimizerState};
use crate::autograd::Gradients;
use crate::backend::{AdamHyper, Backend};
use crate::error::{Error, Result};
use crate::param::{ParamId, ParamStore};
use std::collections::HashMap;

pub struct Adam<B: Backend> {
    backend: B,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    step: u64,
    moments: HashMap<ParamId, (B::Buf, B::Buf)>,
}

impl<B: Backend> Adam<B> {
    pub fn new(backend: &B, weight_decay: f64) -> Self {
        Adam { backend: backend.clone(), beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, step: 0, moments: HashMap::new() }
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self, store: &mut ParamStore<B>, grads: &Gradients<B>, lr: f64) -> Result<()> {
        self.step += 1;
        let h = AdamHyper { lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay, step: self.step };
        for id in store.ids() {
            let (Some(g), p) = (grads.param(id), store.param_mut(id)) else {
                continue;
            };
            if p.frozen {
                continue;
            }
            let (m, v) = match self.moments.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert((self.backend.zeros(g.numel())?, self.backend.zeros(g.numel())?)),
            };
            let g = super::update_grad(&self.backend, p, g)?;
            self.backend.adam_step(p.value.buf_mut(), &g, m, v, &AdamHyper { lr: lr * p.lr_scale, ..h })?;
        }
        Ok(())
    }

    fn slot_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }

    fn state(&self) -> OptimizerState<&B::Buf> {
        let slots = self.moments.iter().map(|(&id, (m, v))| (id, vec![m, v])).collect();
        OptimizerState { slots, step: Some(self.step) }
    }

    fn set_state(&mut self, state: OptimizerState<B::Buf>) -> Result<()> {
        self.step = state.step.ok_or_else(|| Error::shape("adam state", "no step count (the bias correction needs it)"))?;
        self.moments.clear();
        for (id, bufs) in state.slots {
            let [m, v]: [B::Buf; 2] = bufs
                .try_into()
                .map_err(|b: Vec<_>| Error::shape("adam state", format!("parameter {} has {} buffers, expected 2", id.0, b.len())))?;
            self.moments.insert(id, (m, v));
        }
        Ok(())
    }
}
