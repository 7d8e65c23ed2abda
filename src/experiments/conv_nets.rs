//! Layer-wise conditioning of CIFAR conv nets (Fig. A8, A9): the VGG-style
//! net and ResNet-20, with BN and without; the gradient explosion of a deep
//! BN net without shortcuts (Fig. A11 b); and weight domination simulated in
//! VGG-16 by blocking the updates of chosen layers (Fig. A12).

use super::cifar::{cifar_run, Recipe};
use super::claims::Claim;
use super::measures::{better_conditioned, explodes_downwards, losses_rise, ratio_collapses};
use super::{frozen_name, DataChoice, Experiment, Needs, Plan, Scale};
use crate::analysis::ConvStat;
use crate::train::TrainConfig;

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "figA8",
        description: "VGG-style net (ResNet-20 without shortcuts) on CIFAR-10, BN vs no BN, no weight decay: κ_p of Σx and Σ∇h per layer, training loss (Fig. A8)",
        expected: "As for the MLP: with BN, κ_p of the layer inputs and output-gradients is smaller than without, and the BN net trains faster; without BN the net needs lr 0.01 (it does not converge at 0.1).",
        ci_minutes: 1.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig_a8, claims: VGG_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA9",
        description: "ResNet-20 on CIFAR-10, BN vs no BN, no weight decay: κ_p of Σx and Σ∇h per layer, training loss (Fig. A9)",
        expected: "As for the MLP and the VGG-style net: BN lowers κ_p of Σx and Σ∇h and speeds up training; the BN-free ResNet needs lr 0.01.",
        ci_minutes: 1.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig_a9, claims: RESNET_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA11b",
        description: "110-layer VGG-style net with BN on CIFAR-10, first iterations: λmax of the sub-FIMs and the gradient/weight ratio per layer (Fig. A11 b)",
        expected: "At initialisation the sub-FIM's λmax explodes towards the lower layers; after one step the lower layers' weights have grown so much that σmax(∂L/∂W)/σmax(W) collapses there (weight domination), and stays small.",
        ci_minutes: 0.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig_a11b, claims: EXPLOSION_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA12",
        description: "VGG-16 with BN on CIFAR-10 (a quarter of the width at the CI scale), weight domination simulated by freezing the first three convs, and convs 7–9 too (Fig. A12)",
        expected: "Nets with layers in weight domination (frozen) still reduce the loss, but their training loss, training error and test error stay above the unfrozen net's.",
        ci_minutes: 2.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig_a12, claims: FROZEN_CLAIMS, best_of_rates: false },
    },
];

const VGG_CLAIMS: &[Claim] = &[
    Claim {
        text: "at lr 0.01, κ50 of Σ∇h and of Σx with BN below the BN-free net's at most analyses through training",
        check: |ev| better_conditioned(ev, "vgg-20-lr0.01", "vgg-nobn-20-lr0.01"),
    },
    Claim {
        text: "the BN net trains faster: at lr 0.01 its final training loss below the BN-free net's",
        check: |ev| losses_rise(ev, &["vgg-20-lr0.01", "vgg-nobn-20-lr0.01"]),
    },
];

const RESNET_CLAIMS: &[Claim] = &[
    Claim {
        text: "at lr 0.01, κ50 of Σ∇h and of Σx with BN below the BN-free ResNet's at most analyses through training",
        check: |ev| better_conditioned(ev, "resnet-20-lr0.01", "resnet-nobn-20-lr0.01"),
    },
    Claim {
        text: "the BN ResNet trains faster: at lr 0.01 its final training loss below the BN-free ResNet's",
        check: |ev| losses_rise(ev, &["resnet-20-lr0.01", "resnet-nobn-20-lr0.01"]),
    },
];

const EXPLOSION_CLAIMS: &[Claim] = &[
    Claim {
        text: "at initialisation the sub-FIM's λmax explodes towards the lower layers: the first conv's at least 100× the top conv's",
        check: |ev| explodes_downwards(ev, "vgg-110"),
    },
    Claim {
        text: "after one step the lowest conv is in weight domination: its σmax(∂L/∂W)/σmax(W) falls at least 10×",
        check: |ev| ratio_collapses(ev, "vgg-110"),
    },
];

const FROZEN_CLAIMS: &[Claim] = &[Claim {
    text: "the nets with frozen (dominated) layers end with a training loss above the unfrozen net's, more so with more frozen",
    check: |ev| losses_rise(ev, &["none", "freeze-1-2-3", "freeze-1-2-3-7-8-9"]),
}];

/// The He et al. setup without weight decay, at `lr`; the CI scale analyses
/// every conv over patches, as the paper does.
fn run(scale: Scale, data: &DataChoice, model: &str, depth: usize, lr: f64) -> TrainConfig {
    let mut c = cifar_run(scale, data, model, depth, Recipe::Lca);
    (c.lr, c.weight_decay) = (lr, 0.0);
    if scale == Scale::Ci {
        c.iterations = Some(60);
        (c.analysis.every, c.analysis.conv_stat) = (20, ConvStat::Patch);
    }
    c
}

/// `bn` at lr 0.1 and 0.01, `nobn` at 0.01 only.
fn bn_vs_none(scale: Scale, data: &DataChoice, bn: &str, nobn: &str) -> Vec<(String, TrainConfig)> {
    [(bn, 0.1), (bn, 0.01), (nobn, 0.01)].into_iter().map(|(m, lr)| (format!("{m}-20-lr{lr}"), run(scale, data, m, 20, lr))).collect()
}

fn fig_a8(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    bn_vs_none(scale, data, "vgg", "vgg-nobn")
}

fn fig_a9(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    bn_vs_none(scale, data, "resnet", "resnet-nobn")
}

fn fig_a11b(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let mut c = cifar_run(scale, data, "vgg", 110, Recipe::Lca);
    (c.epochs, c.iterations, c.log_every, c.analysis.every) = (None, Some(7), 1, 1);
    if scale == Scale::Ci {
        // Four analyses of 110 layers, over channels (the CI default) at batch 64.
        (c.iterations, c.batch_size, c.limit_train) = (Some(3), 64, Some(512));
    }
    vec![("vgg-110".into(), c)]
}

fn fig_a12(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    [vec![], vec![1, 2, 3], vec![1, 2, 3, 7, 8, 9]]
        .into_iter()
        .map(|freeze| {
            let mut c = cifar_run(scale, data, crate::models::VGG16.0, 16, Recipe::Lca);
            // 512-channel patches would make 4,608-wide Σx; channels keep the analysis affordable.
            c.analysis.conv_stat = ConvStat::Channel;
            if scale == Scale::Ci {
                // A quarter of the width: a sixteenth of the work, the same sixteen layers.
                c.arch.base_width = Some(16);
                (c.iterations, c.lr, c.log_every, c.analysis.every) = (Some(150), 0.05, 5, 50);
            }
            c.freeze = freeze;
            (frozen_name(&c.freeze), c)
        })
        .collect()
}
