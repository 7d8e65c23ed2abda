//! Checkpoints and weights in the safetensors format.
//!
//! A checkpoint holds every parameter and buffer under its PyTorch name (with
//! an i64 `num_batches_tracked` per BN layer, so `load_state_dict(strict=True)`
//! accepts it), the optimiser state under `optimizer.`, and in `__metadata__`
//! the format version, the model, dtype, seed and where the run stood.

mod convert;
mod file;
mod model;
mod optimizer;
mod run_state;
mod training;

pub use crate::files::tmp_path;
pub use convert::Stored;
pub use file::{Entry, Floats, HostTensor, MappedFile, TensorFile, Values};
pub use model::{load_model, load_weights, model_tensors, Precision};
pub use optimizer::load_optimizer;
pub use run_state::{RunState, Window};
pub use training::{checkpoint_path, non_finite_state, resume, save, Saved, CHECKPOINT_FILE, SETTINGS};
