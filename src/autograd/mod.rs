//! Reverse-mode automatic differentiation on a tape.
//!
//! Every op is a method on [`Tape`] in the file of its family, with its
//! forward computation and its backward rule side by side: the forward pushes
//! a node holding a closure that maps the output gradient to its inputs'.

mod activation;
mod batch_norm;
mod conv;
mod dropout;
mod elementwise;
mod linear;
mod loss;
mod pool;
mod reshape;
mod scalar;
mod shortcut;
mod tape;

pub use batch_norm::BatchNormOut;
pub use tape::{Gradients, Probe, Tape, Var};
