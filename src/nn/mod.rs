//! Layers and their initialisers; the parameters they register live in [`crate::param`].

mod batch_norm;
mod conv2d;
mod init;
mod linear;
mod scalar;

pub use batch_norm::BatchNorm;
pub use conv2d::{Conv2d, ConvSpec};
pub use init::{Draws, Init, Weights};
pub use linear::Linear;
pub use scalar::Scalar;

/// The options a layer's size comes from, named when it would not fit in memory.
const MODEL_SIZES: &str = "--width, --base-width, --crop-resize or the model";
