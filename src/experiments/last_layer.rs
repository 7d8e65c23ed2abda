//! The last linear layer of deep CIFAR ResNets (Fig. 6–9): how its input's
//! second moment and its weight-gradient grow with depth, and how a BN before
//! it (ResNetLastBN, or PreResNet's final BN) keeps it conditioned.

use super::{DataChoice, Needs, Plan, Preset, Scale};
use crate::analysis::{AnalysisConfig, ConvStat};
use crate::data::Padding;
use crate::optim::Schedule;
use crate::train::{Pipeline, TrainConfig};

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "fig6",
        description: "CIFAR-10 ResNet by depth: the last linear layer's λmax(Σx), λmax of its weight-gradient second moment, ‖W‖ and the training loss (Fig. 6)",
        expected: "The deeper the ResNet, the larger λmax(Σx) of the last linear layer's input and the λmax of its weight-gradient second moment: the last layer is ill-conditioned, more so with depth.",
        ci_minutes: 1.5,
        plan: Plan::Runs(Needs::Cifar10, fig6),
    },
    Preset {
        name: "fig7",
        description: "ResNet vs ResNetLastBN at the largest depth: the last linear layer's conditioning and the training loss (Fig. 7)",
        expected: "ResNetLastBN's BN normalises the last layer's input: its λmax(Σx) and weight-gradient λmax start far below ResNet's and stay moderate, while ResNet's large last-layer gradient inflates ‖W‖ (weight domination); its training loss falls faster.",
        ci_minutes: 2.0,
        plan: Plan::Runs(Needs::Cifar10, fig7),
    },
    Preset {
        name: "fig8",
        description: "Training loss of ResNet and ResNetLastBN by depth (Fig. 8)",
        expected: "Without the last BN, deeper ResNets do not train better (ResNet-1202 worse than 110); with it, training loss improves with depth.",
        ci_minutes: 3.0,
        plan: Plan::Runs(Needs::Cifar10, fig8),
    },
    Preset {
        name: "fig9",
        description: "ResNet, PreResNet and PreResNetv1 at the largest depth: the last linear layer (Fig. 9)",
        expected: "PreResNet's final BN+ReLU before pooling keeps the last layer conditioned like ResNetLastBN; PreResNetv1, without it, shows ResNet's large λmax(Σx).",
        ci_minutes: 3.0,
        plan: Plan::Runs(Needs::Cifar10, fig9),
    },
];

/// Depths per scale: a short ladder in minutes, or the paper's.
fn depths(scale: Scale) -> &'static [usize] {
    match scale {
        Scale::Ci => &[20, 56, 110],
        Scale::Paper => &[56, 110, 230, 1202],
    }
}

fn deepest(scale: Scale) -> usize {
    depths(scale).iter().copied().max().unwrap_or(110)
}

/// `model` at `depth` on the paper's CIFAR recipe (lca-cifar), or at the CI
/// scale a few dozen steps analysed every ten.
fn config(scale: Scale, data: &DataChoice, model: &str, depth: usize) -> TrainConfig {
    let pipeline = Pipeline { augment: true, padding: Padding::Reflect, drop_last: true, ..Pipeline::default() };
    let base = TrainConfig {
        model: model.into(),
        depth,
        data: data.name.clone(),
        data_dir: data.dir.clone(),
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
        seed: 1,
        pipeline,
        preset: Some("lca-cifar".into()),
        ..TrainConfig::default()
    };
    match scale {
        // Channel-only Σx keeps the analysis of ~100 conv layers cheap; the
        // last linear layer's statistics are the same either way.
        Scale::Ci => TrainConfig {
            epochs: None,
            iterations: Some(30),
            batch_size: 32,
            limit_train: Some(2048),
            log_every: 2,
            analysis: AnalysisConfig { every: 10, conv_stat: ConvStat::Channel, ..AnalysisConfig::default() },
            ..base
        },
        Scale::Paper => TrainConfig {
            epochs: Some(160),
            schedule: Schedule::Multistep { milestones: vec![80, 120], gamma: 0.1 },
            analysis: AnalysisConfig { every: 500, ..AnalysisConfig::default() },
            ..base
        },
    }
}

fn runs(scale: Scale, data: &DataChoice, models: &[&str], depths: &[usize]) -> Vec<(String, TrainConfig)> {
    models.iter().flat_map(|&m| depths.iter().map(move |&d| (format!("{m}-{d}"), config(scale, data, m, d)))).collect()
}

fn fig6(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    runs(scale, data, &["resnet"], depths(scale))
}

fn fig7(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    runs(scale, data, &["resnet", "resnet-lastbn"], &[deepest(scale)])
}

fn fig8(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    runs(scale, data, &["resnet", "resnet-lastbn"], depths(scale))
}

fn fig9(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    runs(scale, data, &["resnet", "preresnet", "preresnet-v1"], &[deepest(scale)])
}
