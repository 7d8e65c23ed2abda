//! The base of the CIFAR ResNet experiments: one model on a published recipe at
//! the paper's scale, or a few dozen analysed steps at the CI scale.

use super::{DataChoice, Scale};
use crate::analysis::{AnalysisConfig, ConvStat};
use crate::data::Padding;
use crate::optim::Schedule;
use crate::train::{Pipeline, TrainConfig};

/// The CIFAR recipes the experiments follow (see `kappa train --preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// The layer-wise conditioning paper's scripts (lca-cifar).
    Lca,
    /// The tau-ResNet scripts (tau-cifar).
    Tau,
}

/// What every ResNet recipe shares: SGD at lr 0.1, momentum 0.9 (Nesterov),
/// weight decay 1e-4, seed 1.
pub fn sgd_base(data: &DataChoice, model: &str, depth: usize) -> TrainConfig {
    TrainConfig {
        model: model.into(),
        depth,
        data: data.name.clone(),
        data_dir: data.dir.clone(),
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
        seed: 1,
        ..TrainConfig::default()
    }
}

pub fn cifar_run(scale: Scale, data: &DataChoice, model: &str, depth: usize, recipe: Recipe) -> TrainConfig {
    let (preset, nesterov, epochs, milestones, padding, drop_last, normalize) = match recipe {
        Recipe::Lca => ("lca-cifar", true, 160, vec![80, 120], Padding::Reflect, true, "auto"),
        Recipe::Tau => ("tau-cifar", false, 200, vec![100, 150], Padding::Zero, false, "tau-resnet"),
    };
    // The stand-in is not CIFAR: its pixels keep their [0, 1] scale.
    let normalize = if data.name == "cifar10" { normalize } else { "auto" };
    let base = TrainConfig {
        nesterov,
        pipeline: Pipeline { augment: true, padding, drop_last, normalize: normalize.into(), ..Pipeline::default() },
        preset: Some(preset.into()),
        ..sgd_base(data, model, depth)
    };
    match scale {
        // Channel-only Σx keeps the analysis of ~100 conv layers cheap; the
        // last linear layer's statistics are the same either way.
        Scale::Ci => TrainConfig {
            epochs: None,
            iterations: Some(30),
            batch_size: 32,
            limit_train: Some(2048),
            limit_test: Some(1000),
            log_every: 2,
            analysis: AnalysisConfig { every: 10, conv_stat: ConvStat::Channel, ..AnalysisConfig::default() },
            ..base
        },
        Scale::Paper => TrainConfig {
            epochs: Some(epochs),
            schedule: Schedule::Multistep { milestones, gamma: 0.1 },
            analysis: AnalysisConfig { every: 500, ..AnalysisConfig::default() },
            ..base
        },
    }
}

/// Every model at every depth, named `model-depth`.
pub fn grid(scale: Scale, data: &DataChoice, models: &[&str], depths: &[usize], recipe: Recipe) -> Vec<(String, TrainConfig)> {
    models.iter().flat_map(|&m| depths.iter().map(move |&d| (format!("{m}-{d}"), cifar_run(scale, data, m, d, recipe)))).collect()
}
