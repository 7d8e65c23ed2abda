//! Model architectures and the registry the command line names them by.

mod mlp;
mod resnet;
pub mod vgg16;

pub use mlp::{Mlp, MlpConfig};
pub use resnet::{Family, LastBnGamma, ResNet, ResNetConfig, ShortcutKind, Variant, VARIANTS};
pub use vgg16::Vgg16;

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::param::ParamStore;

/// A network: parameters in a store, a forward pass recorded on a tape.
pub trait Model<B: Backend> {
    /// A one-line description, e.g. `mlp 20×256 bn`.
    fn describe(&self) -> String;
    fn store(&self) -> &ParamStore<B>;
    fn store_mut(&mut self) -> &mut ParamStore<B>;
    /// Logits for a batch `x` (`[N, ...]`); `train` selects batch statistics
    /// in BN layers and updates their running averages.
    fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Var>;
    /// Training forwards so far, which key the dropout masks (checkpointed,
    /// so a resumed run draws the same masks); models without dropout keep none.
    fn forwards(&self) -> u64 {
        0
    }
    fn set_forwards(&mut self, _forwards: u64) {}
}

/// The MLP's name and options; the ResNet family's names are in [`VARIANTS`].
pub const MLP: (&str, &str) = (
    "mlp",
    "multilayer perceptron: --depth linear layers (≥ 2) of --width units, ReLU; --bn puts batch norm between each hidden linear and its ReLU; --init he|lecun|xavier|he-fan-out|uniform-fan-in",
);
pub const VGG16: (&str, &str) =
    ("vgg16", "VGG-16 with batch norm for 32×32 images: 13 convs in 5 max-pooled stages, two 512-unit BN layers, the classifier; --base-width (default 64) scales every layer; its depth is fixed, so it takes no --depth");

/// Every model the command line accepts: name and a one-line description.
pub fn models() -> Vec<(&'static str, String)> {
    let conv = VARIANTS
        .iter()
        .map(|(_, name, about)| (*name, format!("{about}; --depth 6n+2 on CIFAR-shaped data, 18/34/50/101/152 with --family imagenet")));
    [MLP, VGG16].into_iter().map(|(name, about)| (name, about.to_string())).chain(conv).collect()
}

pub fn check_name(name: &str) -> Result<()> {
    if name == MLP.0 || name == VGG16.0 || Variant::from_name(name).is_some() {
        Ok(())
    } else {
        let known: Vec<&str> = models().iter().map(|(n, _)| *n).collect();
        Err(Error::arg("--model", format!("unknown model '{name}'; known models: {}", known.join(", "))))
    }
}
