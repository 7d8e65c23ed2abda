//! Optimisers and learning-rate schedules.

mod adam;
mod schedule;
mod sgd;
mod state;

pub use adam::Adam;
pub use schedule::Schedule;
pub use sgd::Sgd;
pub use state::OptimizerState;

use crate::autograd::Gradients;
use crate::backend::Backend;
use crate::error::Result;
use crate::param::ParamStore;

/// Updates every unfrozen parameter that received a gradient.
pub trait Optimizer<B: Backend> {
    fn step(&mut self, store: &mut ParamStore<B>, grads: &Gradients<B>, lr: f64) -> Result<()>;
    /// The per-parameter state buffers, by PyTorch's names for them.
    fn slot_names(&self) -> &'static [&'static str];
    fn state(&self) -> OptimizerState<&B::Buf>;
    /// Replaces the state; every parameter's buffers must follow [`Optimizer::slot_names`].
    fn set_state(&mut self, state: OptimizerState<B::Buf>) -> Result<()>;
}

/// The gradient a parameter's update uses: `g` times the parameter's `grad_scale`.
fn update_grad<'a, B: Backend>(
    backend: &B,
    p: &crate::param::Param<B>,
    g: &'a crate::tensor::Tensor<B>,
) -> Result<std::borrow::Cow<'a, B::Buf>> {
    if p.grad_scale == 1.0 {
        Ok(std::borrow::Cow::Borrowed(g.buf()))
    } else {
        Ok(std::borrow::Cow::Owned(backend.scale(g.buf(), p.grad_scale)?))
    }
}
