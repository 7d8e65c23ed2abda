//! The last linear layer of deep CIFAR ResNets (Fig. 6–9): how its input's
//! second moment and its weight-gradient grow with depth, and how a BN before
//! it (ResNetLastBN, or PreResNet's final BN) keeps it conditioned.

use super::cifar::{grid, Recipe};
use super::{DataChoice, Needs, Plan, Preset, Scale};
use crate::train::TrainConfig;

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

fn fig6(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    grid(scale, data, &["resnet"], depths(scale), Recipe::Lca)
}

fn fig7(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    grid(scale, data, &["resnet", "resnet-lastbn"], &[deepest(scale)], Recipe::Lca)
}

fn fig8(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    grid(scale, data, &["resnet", "resnet-lastbn"], depths(scale), Recipe::Lca)
}

fn fig9(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    grid(scale, data, &["resnet", "preresnet", "preresnet-v1"], &[deepest(scale)], Recipe::Lca)
}
