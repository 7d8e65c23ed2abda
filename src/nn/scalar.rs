//! A learnable scalar: τ of the tau-ResNets, the Fixup biases.

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::{ParamId, ParamStore};
use crate::tensor::Tensor;

pub struct Scalar {
    pub id: ParamId,
}

impl Scalar {
    pub fn new<B: Backend>(store: &mut ParamStore<B>, backend: &B, name: &str, value: f64, layer: usize) -> Result<Self> {
        Ok(Scalar { id: store.add(name, Tensor::full(backend, &[1], value)?, layer) })
    }

    /// `value·x`.
    pub fn scale<B: Backend>(&self, tape: &mut Tape<B>, store: &ParamStore<B>, x: Var) -> Result<Var> {
        let s = tape.param(store, self.id);
        tape.scale_by(x, s)
    }

    /// `x + value`.
    pub fn shift<B: Backend>(&self, tape: &mut Tape<B>, store: &ParamStore<B>, x: Var) -> Result<Var> {
        let b = tape.param(store, self.id);
        tape.add_scalar(x, b)
    }
}
