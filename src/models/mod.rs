//! Model architectures and the registry the command line names them by.

mod mlp;

pub use mlp::{Mlp, MlpConfig};

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::ParamStore;

/// A network: parameters in a store, a forward pass recorded on a tape.
pub trait Model<B: Backend> {
    /// A one-line description, e.g. `mlp 20×256 bn`.
    fn describe(&self) -> String;
    fn store(&self) -> &ParamStore<B>;
    fn store_mut(&mut self) -> &mut ParamStore<B>;
    /// Logits for a batch `x` (`[N, ...]`); `train` selects batch statistics
    /// in BN layers and updates their running averages.
    fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Var>;
}

/// One line per model the command line accepts: name and its options.
pub const MODELS: &[(&str, &str)] = &[(
    "mlp",
    "multilayer perceptron: --depth linear layers (≥ 2) of --width units, ReLU; --bn puts batch norm between each hidden linear and its ReLU; --init lecun|he|xavier",
)];

/// Rejects a model name the registry does not know, listing the ones it does.
pub fn check_name(name: &str) -> Result<()> {
    if MODELS.iter().any(|(n, _)| *n == name) {
        Ok(())
    } else {
        let known: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
        Err(Error::arg("--model", format!("unknown model '{name}'; known models: {}", known.join(", "))))
    }
}
