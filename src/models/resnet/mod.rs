//! The ResNet family of the paper and of tau-ResNet: CIFAR nets of depth
//! 6n+2 (three stages of 16/32/64 channels) and ImageNet nets of depth
//! 18/34 (basic blocks) and 50/101/152 (bottlenecks), in every variant of
//! [`Variant`]. Parameter names follow torchvision (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`), so PyTorch state dicts
//! of the same architecture load by name.

mod block;
mod variant;

pub use variant::{Variant, VARIANTS};

use super::Model;
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Conv2d, ConvSpec, Draws, Init, Linear, Scalar, Weights};
use crate::param::ParamStore;
use crate::tensor::Tensor;
use block::{Block, BlockSpec, Tau};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// 32×32 inputs, 3×3 stem, stages of 16/32/64 channels, depth 6n+2.
    Cifar,
    /// 7×7/2 stem and 3×3/2 max-pool, stages of 64–512 channels, depth 18/34/50/101/152.
    Imagenet,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ShortcutKind {
    /// Strided subsample and zero channels, no parameters (CIFAR default).
    #[default]
    A,
    /// Strided 1×1 conv + BN (ImageNet always).
    B,
}

/// γ of the BN before the last linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LastBnGamma {
    /// γ = 1, the paper's intent.
    #[default]
    One,
    /// γ ~ U(0, 1), what the old Torch7 code left it at.
    Uniform,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub variant: Variant,
    pub family: Family,
    pub depth: usize,
    pub classes: usize,
    pub in_channels: usize,
    pub shortcut: ShortcutKind,
    /// τ of the tau variants; `None` for the default (1/√blocks on CIFAR, 2/√(largest stage) on ImageNet).
    pub tau: Option<f64>,
    pub lastbn_gamma: LastBnGamma,
    /// Dropout after the last BN (the ImageNet table's 0.3); 0 for none.
    pub dropout: f64,
    pub bn_momentum: f64,
}

impl ResNetConfig {
    /// `variant` at `depth` for RGB images, with the published defaults:
    /// type-A shortcuts, the default τ, last-BN γ = 1, no dropout.
    pub fn new(variant: Variant, family: Family, depth: usize, classes: usize) -> Self {
        ResNetConfig {
            variant,
            family,
            depth,
            classes,
            in_channels: 3,
            shortcut: ShortcutKind::A,
            tau: None,
            lastbn_gamma: LastBnGamma::One,
            dropout: 0.0,
            bn_momentum: 0.1,
        }
    }

    /// Blocks per stage, and whether they are bottlenecks.
    pub fn stages(&self) -> Result<(Vec<usize>, bool)> {
        match self.family {
            Family::Cifar if self.depth >= 8 && (self.depth - 2).is_multiple_of(6) => Ok((vec![(self.depth - 2) / 6; 3], false)),
            Family::Cifar => Err(Error::arg(
                "--depth",
                format!("{} is not 6n+2 (n ≥ 1); CIFAR ResNets have depth 20, 32, 44, 56, 110, 230, 1202, 2402, …", self.depth),
            )),
            Family::Imagenet => match self.depth {
                18 => Ok((vec![2, 2, 2, 2], false)),
                34 => Ok((vec![3, 4, 6, 3], false)),
                50 => Ok((vec![3, 4, 6, 3], true)),
                101 => Ok((vec![3, 4, 23, 3], true)),
                152 => Ok((vec![3, 8, 36, 3], true)),
                d => Err(Error::arg("--depth", format!("{d} is not an ImageNet ResNet depth; expected 18, 34, 50, 101 or 152"))),
            },
        }
    }

    /// τ as configured, or the tau-ResNet default for this depth.
    pub fn tau_value(&self) -> Result<f64> {
        let (stages, _) = self.stages()?;
        Ok(self.tau.unwrap_or(match self.family {
            Family::Cifar => 1.0 / (stages.iter().sum::<usize>() as f64).sqrt(),
            Family::Imagenet => 2.0 / (*stages.iter().max().unwrap_or(&1) as f64).sqrt(),
        }))
    }

    fn shortcut_b(&self) -> bool {
        self.family == Family::Imagenet || self.shortcut == ShortcutKind::B
    }
}

/// Makes layers in forward order, numbering each conv and linear layer
/// (what `--freeze` and the analysis count); a BN takes its conv's number.
pub(super) struct Builder<'a, B: Backend> {
    store: ParamStore<B>,
    backend: &'a B,
    draws: Draws,
    layer: usize,
    config: &'a ResNetConfig,
}

impl<B: Backend> Builder<'_, B> {
    fn conv(&mut self, name: &str, spec: ConvSpec) -> Result<Conv2d> {
        self.layer += 1;
        Conv2d::new(&mut self.store, self.backend, name, spec, Init::HeFanOut, self.layer, &mut self.draws)
    }

    /// A BN of the current layer, or (`ahead` = 1) of the conv it precedes.
    fn bn(&mut self, name: &str, channels: usize, ahead: usize) -> Result<BatchNorm> {
        BatchNorm::new(&mut self.store, self.backend, name, channels, self.layer + ahead, self.config.bn_momentum)
    }

    fn scalar(&mut self, name: &str, value: f64) -> Result<Scalar> {
        let s = Scalar::new(&mut self.store, self.backend, name, value, self.layer + 1)?;
        // tau-ResNet trains its scalars at a tenth of the learning rate.
        self.store.param_mut(s.id).lr_scale = 0.1;
        Ok(s)
    }
}

struct Stem {
    conv: Conv2d,
    /// Post-activation nets normalise and rectify the stem; pre-activation
    /// CIFAR nets leave that to the first block.
    bn_relu: Option<Option<BatchNorm>>,
    max_pool: bool,
}

struct Head {
    final_bn: Option<BatchNorm>,
    last_bn: Option<BatchNorm>,
    fc: Linear,
}

pub struct ResNet<B: Backend> {
    config: ResNetConfig,
    stem: Stem,
    blocks: Vec<Block>,
    head: Head,
    tau: Option<f64>,
    shared_tau: Option<Scalar>,
    /// Training forwards so far: the dropout mask's stream.
    forwards: u64,
    seed: u64,
    store: ParamStore<B>,
}

impl<B: Backend> ResNet<B> {
    /// The net with its weights drawn from `seed`, or zero (see [`Weights`]);
    /// `seed` also seeds its dropout masks.
    pub fn new(backend: &B, config: ResNetConfig, seed: u64, weights: Weights) -> Result<Self> {
        let (stages, bottleneck) = config.stages()?;
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::arg("--dropout", format!("{} is not in [0, 1)", config.dropout)));
        }
        let v = config.variant;
        let tau_value = config.tau_value()?;
        let mut b = Builder { store: ParamStore::default(), backend, draws: Draws::new(seed, weights), layer: 0, config: &config };
        let (stem_width, widths): (usize, Vec<usize>) = match config.family {
            Family::Cifar => (16, vec![16, 32, 64]),
            Family::Imagenet => (64, vec![64, 128, 256, 512]),
        };
        let stem_spec = match config.family {
            Family::Cifar => ConvSpec { c_in: config.in_channels, c_out: stem_width, k: 3, stride: 1, pad: 1 },
            Family::Imagenet => ConvSpec { c_in: config.in_channels, c_out: stem_width, k: 7, stride: 2, pad: 3 },
        };
        let conv = b.conv("conv1", stem_spec)?;
        let bn_relu = (config.family == Family::Imagenet || !v.pre_activation())
            .then(|| v.block_bn().then(|| b.bn("bn1", stem_width, 0)).transpose())
            .transpose()?;
        let stem = Stem { conv, bn_relu, max_pool: config.family == Family::Imagenet };
        let shared_tau = v.fixup().then(|| b.scalar("tau", tau_value)).transpose()?;
        if let Some(t) = &shared_tau {
            // One τ serves every block: its gradient is the sum of theirs, so average it.
            b.store.param_mut(t.id).grad_scale = 1.0 / stages.iter().sum::<usize>() as f64;
        }

        let mut blocks = Vec::new();
        let mut c_in = stem_width;
        for (s, (&count, &planes)) in stages.iter().zip(&widths).enumerate() {
            for i in 0..count {
                let spec = BlockSpec {
                    name: &format!("layer{}.{i}", s + 1),
                    c_in,
                    planes,
                    stride: if i == 0 && s > 0 { 2 } else { 1 },
                    bottleneck,
                    first_of_stage: i == 0,
                };
                blocks.push(Block::new(&mut b, &spec)?);
                c_in = Block::out_channels(&spec);
            }
        }
        let final_bn = v.final_bn().then(|| b.bn("final_bn", c_in, 0)).transpose()?;
        let last_bn = v.last_bn().then(|| b.bn("last_bn", c_in, 0)).transpose()?;
        if let (Some(bn), LastBnGamma::Uniform) = (&last_bn, config.lastbn_gamma) {
            let gamma = b.draws.uniform(c_in, 0.0, 1.0);
            b.store.param_mut(bn.gamma).value = Tensor::from_f64s(backend, &[c_in], gamma)?;
        }
        b.layer += 1;
        let fc = Linear::new(&mut b.store, backend, "fc", c_in, config.classes, true, Init::UniformFanIn, b.layer, &mut b.draws)?;
        let store = b.store;
        let tau = (v == Variant::TauResnet).then_some(tau_value);
        Ok(ResNet { config, stem, blocks, head: Head { final_bn, last_bn, fc }, tau, shared_tau, forwards: 0, seed, store })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }
}

impl<B: Backend> Model<B> for ResNet<B> {
    fn describe(&self) -> String {
        let c = &self.config;
        let family = match c.family {
            Family::Cifar => "cifar",
            Family::Imagenet => "imagenet",
        };
        format!("{}-{} ({family}, {} parameters)", c.variant.name(), c.depth, self.store.count())
    }

    fn store(&self) -> &ParamStore<B> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.store
    }

    fn forwards(&self) -> u64 {
        self.forwards
    }

    fn set_forwards(&mut self, forwards: u64) {
        self.forwards = forwards;
    }

    fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Var> {
        let shape = tape.shape(x).to_vec();
        if shape.len() != 4 || shape[1] != self.config.in_channels {
            return Err(Error::shape("resnet", format!("input {shape:?}; expected [N, {}, H, W]", self.config.in_channels)));
        }
        let store = &mut self.store;
        let mut h = self.stem.conv.forward(tape, store, x)?;
        match &self.stem.bn_relu {
            Some(Some(bn)) => h = bn.forward_relu(tape, store, h, train)?,
            Some(None) => {
                let a = tape.relu(h)?;
                tape.release(h);
                h = a;
            }
            None => {}
        }
        if self.stem.max_pool {
            h = tape.max_pool2d(h, 3, 2, 1)?;
        }
        let tau = match (&self.shared_tau, self.tau) {
            (Some(s), _) => Tau::Learned(s),
            (None, Some(t)) => Tau::Fixed(t),
            (None, None) => Tau::One,
        };
        for block in &self.blocks {
            h = block.forward(tape, store, h, train, tau)?;
        }
        if let Some(bn) = &self.head.final_bn {
            h = bn.forward_relu(tape, store, h, train)?;
        }
        h = tape.global_avg_pool(h)?;
        if let Some(bn) = &self.head.last_bn {
            h = bn.forward(tape, store, h, train)?;
        }
        if train && self.config.dropout > 0.0 {
            self.forwards += 1;
            h = tape.dropout(h, self.config.dropout, self.seed, self.forwards)?;
        }
        self.head.fc.forward(tape, store, h)
    }
}
