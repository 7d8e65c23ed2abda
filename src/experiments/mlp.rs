//! The paper's MLP experiments (MNIST; synthetic stand-in when it is absent).

use super::{frozen_name, mlp_config, DataChoice, Needs, Plan, Preset, Scale};
use crate::nn::Init;
use crate::train::{OptimizerKind, TrainConfig};
use std::path::PathBuf;

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "fig3",
        description: "20×256 MLP, Plain vs BN × LeCun vs He init, full-batch gradient descent: λmax of Σx and Σ∇h per layer (Fig. 3)",
        expected: "Plain with LeCun init: λmax(Σx) shrinks exponentially from the bottom layer up and λmax(Σ∇h) from the top layer down; He init keeps both of similar size across layers; BN preserves them across layers under either init and trains faster.",
        ci_minutes: 1.5,
        plan: Plan::Runs(Needs::Mnist, fig3),
    },
    Preset {
        name: "figA5",
        description: "20×256 MLP, Plain vs BN × LeCun vs He init, SGD batch 1024: λmax of Σx and Σ∇h per layer (Fig. A5)",
        expected: "As with full-batch GD (Fig. 3): Plain with LeCun init loses the input's magnitude going up and the gradient's going down, He init keeps them across layers, BN keeps them under either init.",
        ci_minutes: 1.5,
        plan: Plan::Runs(Needs::Mnist, sgd_1024),
    },
    Preset {
        name: "figA6",
        description: "The runs of figA5 (SGD batch 1024), read for κ_p of Σx and Σ∇h per layer (Fig. A6)",
        expected: "BN has smaller κ_p of Σx and Σ∇h than Plain under both inits, as with full-batch GD (Fig. 5).",
        ci_minutes: 1.5,
        plan: Plan::Runs(Needs::Mnist, sgd_1024),
    },
    Preset {
        name: "figA7",
        description: "20×256 MLP, Plain vs BN, LeCun init, Adam batch 1024: λmax and κ_p of Σx and Σ∇h, training loss (Fig. A7)",
        expected: "Adam lets Plain adjust the magnitude of its layer inputs and output-gradients better than SGD does, but BN still trains more stably and keeps κ_p of Σx and Σ∇h lower than Plain.",
        ci_minutes: 1.0,
        plan: Plan::Runs(Needs::Mnist, fig_a7),
    },
    Preset {
        name: "fig5",
        description: "20×256 MLP, Plain vs BN, LeCun init, full-batch gradient descent: κ_p per layer (Fig. 5)",
        expected: "BN improves the layer-wise conditioning: κ_p of Σx and Σ∇h smaller with BN than without, for every p.",
        ci_minutes: 1.5,
        plan: Plan::Runs(Needs::Mnist, fig5),
    },
    Preset {
        name: "fig4",
        description: "5×256 BN MLP with layers frozen to simulate weight domination (Fig. 4)",
        expected: "Blocking the updates of a layer (simulated weight domination) slows training: the loss of the frozen-layer nets stays above the baseline's, more so with more frozen layers.",
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, fig4),
    },
    Preset {
        name: "figA11",
        description: "100-layer BN MLP, first 7 iterations: λmax of the sub-FIMs per layer (Fig. A11)",
        expected: "At initialisation the weight-gradient explodes towards the lower layers (λmax of the sub-FIM grows exponentially with depth from the top); after one step the lower layers' weights grow and they enter weight domination (alerts), with small gradients from then on.",
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, fig_a11),
    },
    Preset {
        name: "figA13",
        description: "20×256 MLP, Plain vs BN: dying and full ReLU neurons per layer over training (Fig. A13)",
        expected: "Without BN, deep layers accumulate dead neurons (zero for every example) as training proceeds; BN keeps almost every unit alive and few units are full.",
        ci_minutes: 1.0,
        plan: Plan::Runs(Needs::Mnist, fig_a13),
    },
];

/// Iterations and training-set size per scale.
fn budget(scale: Scale, ci_iterations: usize, paper_epochs: usize, cfg: &mut TrainConfig) {
    match scale {
        Scale::Ci => {
            cfg.iterations = Some(ci_iterations);
            cfg.epochs = None;
            cfg.limit_train = Some(8192);
        }
        Scale::Paper => {
            cfg.iterations = None;
            cfg.epochs = Some(paper_epochs);
        }
    }
}

fn base(data: &DataChoice) -> TrainConfig {
    mlp_config(data, PathBuf::new())
}

/// Plain vs BN × LeCun vs He, named e.g. `plain-lecun`, each from `run`.
fn init_grid(data: &DataChoice, run: impl Fn(&mut TrainConfig)) -> Vec<(String, TrainConfig)> {
    let mut runs = Vec::new();
    for bn in [false, true] {
        for init in [Init::Lecun, Init::He] {
            let mut c = base(data);
            (c.bn, c.init) = (bn, init);
            run(&mut c);
            runs.push((format!("{}-{init:?}", if bn { "bn" } else { "plain" }).to_lowercase(), c));
        }
    }
    runs
}

/// Full-batch GD: the paper's best of {0.05, 0.1, 0.5, 1} is 1 with BN and 0.5 without.
fn full_batch(scale: Scale, c: &mut TrainConfig) {
    c.optimizer = OptimizerKind::Gd;
    c.lr = if c.bn { 1.0 } else { 0.5 };
    (c.iterations, c.epochs) = (Some(if scale == Scale::Ci { 30 } else { 2000 }), None);
    c.limit_train = (scale == Scale::Ci).then_some(2048);
    c.analysis.every = if scale == Scale::Ci { 10 } else { 200 };
}

fn fig3(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    init_grid(data, |c| full_batch(scale, c))
}

fn sgd_1024(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    init_grid(data, |c| {
        budget(scale, 60, 50, c);
        c.analysis.every = if scale == Scale::Ci { 20 } else { 500 };
        c.analysis.batches = 2;
    })
}

fn fig_a7(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    // The paper reports the best of three learning rates; the CI scale runs the largest.
    let lrs: &[f64] = if scale == Scale::Ci { &[1e-3] } else { &[1e-3, 5e-4, 1e-4] };
    let mut runs = Vec::new();
    for bn in [false, true] {
        for &lr in lrs {
            let mut c = base(data);
            (c.bn, c.optimizer, c.lr) = (bn, OptimizerKind::Adam, lr);
            budget(scale, 60, 50, &mut c);
            c.analysis.every = if scale == Scale::Ci { 20 } else { 500 };
            runs.push((format!("{}-adam-{lr}", if bn { "bn" } else { "plain" }), c));
        }
    }
    runs
}

fn fig5(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    [false, true]
        .into_iter()
        .map(|bn| {
            let mut c = base(data);
            c.bn = bn;
            full_batch(scale, &mut c);
            (if bn { "bn-gd" } else { "plain-gd" }.to_string(), c)
        })
        .collect()
}

fn fig4(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    [vec![], vec![2], vec![2, 4]]
        .into_iter()
        .map(|freeze| {
            let mut c = base(data);
            (c.depth, c.bn, c.init, c.lr) = (5, true, Init::He, 0.1);
            budget(scale, 80, 30, &mut c);
            c.batch_size = 256;
            c.analysis.every = if scale == Scale::Ci { 40 } else { 1000 };
            c.freeze = freeze;
            (frozen_name(&c.freeze), c)
        })
        .collect()
}

fn fig_a11(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let mut c = base(data);
    (c.depth, c.bn, c.init) = (100, true, Init::He);
    (c.iterations, c.epochs) = (Some(7), None);
    c.limit_train = (scale == Scale::Ci).then_some(4096);
    c.batch_size = if scale == Scale::Ci { 256 } else { 1024 };
    c.analysis.every = 1;
    c.log_every = 1;
    vec![("bn-100".into(), c)]
}

fn fig_a13(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    [false, true]
        .into_iter()
        .map(|bn| {
            let mut c = base(data);
            (c.bn, c.init, c.lr, c.momentum) = (bn, Init::He, 0.1, 0.9);
            c.batch_size = 256;
            budget(scale, 120, 30, &mut c);
            c.analysis.every = if scale == Scale::Ci { 30 } else { 500 };
            (if bn { "bn" } else { "plain" }.to_string(), c)
        })
        .collect()
}
