//! Optimisers and learning-rate schedules.

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::Schedule;
pub use sgd::Sgd;

use crate::autograd::Gradients;
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::ParamStore;

/// Updates every unfrozen parameter that received a gradient.
pub trait Optimizer<B: Backend> {
    fn step(&mut self, store: &mut ParamStore<B>, grads: &Gradients<B>, lr: f64) -> Result<()>;
}
