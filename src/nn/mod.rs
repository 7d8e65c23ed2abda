//! Layers, their parameters and initialisers.

mod batch_norm;
mod conv2d;
mod init;
mod linear;
mod param;
mod scalar;

pub use batch_norm::BatchNorm;
pub use conv2d::{Conv2d, ConvSpec};
pub use init::Init;
pub use linear::Linear;
pub use param::{BufferId, Param, ParamId, ParamStore};
pub use scalar::Scalar;
