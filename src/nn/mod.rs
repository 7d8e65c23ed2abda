//! Layers, their parameters and initialisers.

mod batch_norm;
mod init;
mod linear;
mod param;

pub use batch_norm::BatchNorm;
pub use init::Init;
pub use linear::Linear;
pub use param::{BufferId, Param, ParamId, ParamStore};
