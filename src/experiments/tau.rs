//! ResNet against tau-ResNet by depth, with and without BN (the tau-ResNet
//! code base's CIFAR-10 experiments).

use super::cifar::{grid, Recipe};
use super::{DataChoice, Needs, Plan, Preset, Scale};
use crate::train::TrainConfig;

pub const PRESETS: &[Preset] = &[Preset {
    name: "tau",
    description: "ResNet vs tau-ResNet by depth, with BN and without (Fixup-style scalars), on the tau-ResNet recipe",
    expected: "Without BN the plain ResNet diverges or stalls as depth grows while tau-ResNet trains stably; with BN, τ lowers the test error of deep nets (paper: 6.61 → 5.83 at depth 110, 6.93 → 5.01 at 1202).",
    ci_minutes: 2.0,
    plan: Plan::Runs(Needs::Cifar10, runs),
}];

fn runs(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let depths: &[usize] = match scale {
        Scale::Ci => &[20, 56],
        Scale::Paper => &[20, 32, 56, 110, 1202],
    };
    grid(scale, data, &["resnet", "tau-resnet", "resnet-nobn", "tau-resnet-nobn"], depths, Recipe::Tau)
}
