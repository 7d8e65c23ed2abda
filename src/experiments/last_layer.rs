//! The last linear layer of deep CIFAR ResNets (Fig. 6–9): how its input's
//! second moment and its weight-gradient grow with depth, and how a BN before
//! it (ResNetLastBN, or PreResNet's final BN) keeps it conditioned.

use super::cifar::{grid, Recipe};
use super::claims::{at_paper_scale, show, Claim, Evidence, Verdict};
use super::measures::{analysed, below_over_training, last_lambda_x, layers_at, losses_rise, missing};
use super::{DataChoice, Experiment, Needs, Plan, Scale};
use crate::report::read::Run;
use crate::train::TrainConfig;

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "fig6",
        description: "CIFAR-10 ResNet by depth: the last linear layer's λmax(Σx), λmax of its weight-gradient second moment, ‖W‖ and the training loss (Fig. 6)",
        expected: "The deeper the ResNet, the larger λmax(Σx) of the last linear layer's input and the λmax of its weight-gradient second moment: the last layer is ill-conditioned, more so with depth.",
        ci_minutes: 1.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig6, claims: DEPTH_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "fig7",
        description: "ResNet vs ResNetLastBN at the largest depth: the last linear layer's conditioning and the training loss (Fig. 7)",
        expected: "ResNetLastBN's BN normalises the last layer's input: its λmax(Σx) and weight-gradient λmax start far below ResNet's and stay moderate, while ResNet's large last-layer gradient inflates ‖W‖ (weight domination); its training loss falls faster.",
        ci_minutes: 2.0,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig7, claims: LASTBN_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "fig8",
        description: "Training loss of ResNet and ResNetLastBN by depth (Fig. 8)",
        expected: "Without the last BN, deeper ResNets do not train better (ResNet-1202 worse than 110); with it, training loss improves with depth.",
        ci_minutes: 3.0,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig8, claims: LOSS_BY_DEPTH_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "fig9",
        description: "ResNet, PreResNet and PreResNetv1 at the largest depth: the last linear layer (Fig. 9)",
        expected: "PreResNet's final BN+ReLU before pooling keeps the last layer conditioned like ResNetLastBN; PreResNetv1, without it, shows ResNet's large λmax(Σx).",
        ci_minutes: 3.0,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: fig9, claims: PRERESNET_CLAIMS, best_of_rates: false },
    },
];

const DEPTH_CLAIMS: &[Claim] = &[Claim {
    text: "without a BN before it, the last linear layer's λmax(Σx) grows with depth, at most analyses through training",
    check: |ev| grows_with_depth(ev, "resnet"),
}];

const LASTBN_CLAIMS: &[Claim] = &[
    Claim {
        text: "ResNetLastBN's last-layer λmax(Σx) below ResNet's at the largest depth, at most analyses through training",
        check: |ev| deepest_below(ev, "resnet-lastbn", "resnet"),
    },
    Claim {
        text: "ResNetLastBN's training loss falls faster: its final training loss below ResNet's at the largest depth",
        check: |ev| match (deepest_run(ev, "resnet-lastbn"), deepest_run(ev, "resnet")) {
            (Some(a), Some(b)) => losses_rise(ev, &[a.name.as_str(), b.name.as_str()]),
            _ => missing("resnet-lastbn and resnet"),
        },
    },
];

const LOSS_BY_DEPTH_CLAIMS: &[Claim] = &[
    Claim {
        text: "with the last BN, training loss improves with depth: the deepest ResNetLastBN's final loss below the shallowest's",
        check: |ev| at_paper_scale(ev, || deepest_vs_shallowest(ev, "resnet-lastbn", true)),
    },
    Claim {
        text: "without it, deeper ResNets do not train better: the deepest ResNet's final loss above the shallowest's",
        check: |ev| at_paper_scale(ev, || deepest_vs_shallowest(ev, "resnet", false)),
    },
];

const PRERESNET_CLAIMS: &[Claim] = &[
    Claim {
        text: "PreResNet's final BN keeps the last layer's λmax(Σx) below PreResNetv1's, at most analyses through training",
        check: |ev| deepest_below(ev, "preresnet", "preresnet-v1"),
    },
    Claim {
        text: "PreResNetv1, without that BN, shows ResNet's large last-layer λmax(Σx): not below ResNet's at most analyses",
        check: |ev| match deepest_below(ev, "preresnet-v1", "resnet") {
            Verdict::Agrees(n) => Verdict::Disagrees(n),
            Verdict::Disagrees(n) => Verdict::Agrees(n),
            v => v,
        },
    },
];

/// The runs of `model` by depth (named `model-DEPTH`), shallowest first.
fn by_depth<'a>(ev: &Evidence<'a>, model: &str) -> Vec<(usize, &'a Run)> {
    let mut runs: Vec<(usize, &Run)> =
        ev.runs.iter().filter_map(|r| Some((r.name.strip_prefix(model)?.strip_prefix('-')?.parse().ok()?, r))).collect();
    runs.sort_by_key(|(d, _)| *d);
    runs
}

fn deepest_run<'a>(ev: &Evidence<'a>, model: &str) -> Option<&'a Run> {
    by_depth(ev, model).last().map(|(_, r)| *r)
}

fn deepest_below(ev: &Evidence, low: &str, high: &str) -> Verdict {
    match (deepest_run(ev, low), deepest_run(ev, high)) {
        (Some(l), Some(h)) => below_over_training(ev, &l.name, &h.name, "the last layer's λmax(Σx)", last_lambda_x),
        _ => missing(&format!("{low} and {high}")),
    }
}

/// The last layer's λmax(Σx) rising with depth at more than half of the
/// analyses every depth has.
fn grows_with_depth(ev: &Evidence, model: &str) -> Verdict {
    let runs = by_depth(ev, model);
    if runs.len() < 2 {
        return missing(&format!("{model} at two depths or more"));
    }
    let mut rows = Vec::new();
    for it in analysed(runs[0].1) {
        let values: Option<Vec<f64>> = runs.iter().map(|(_, r)| last_lambda_x(&layers_at(r, it))).collect();
        if let Some(v) = values {
            rows.push((it, v));
        }
    }
    if rows.is_empty() {
        return Verdict::NotMeasurable(format!("the {model} runs share no analysis of the last layer"));
    }
    let grows = rows.iter().filter(|(_, v)| v.windows(2).all(|w| w[0] < w[1])).count();
    let depths = runs.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>().join("/");
    let listed = rows
        .iter()
        .map(|(it, v)| format!("{it}: {}", v.iter().map(|x| show(Some(*x))).collect::<Vec<_>>().join(" / ")))
        .collect::<Vec<_>>()
        .join("; ");
    Verdict::of(2 * grows > rows.len(), format!("depth {depths}: rising at {grows} of {} analyses (iteration: {listed})", rows.len()))
}

/// The deepest run's final loss against the shallowest's: below when `improves`, else above.
fn deepest_vs_shallowest(ev: &Evidence, model: &str, improves: bool) -> Verdict {
    let runs = by_depth(ev, model);
    let (Some((_, shallow)), Some((_, deep))) = (runs.first(), runs.last()) else { return missing(model) };
    if runs.len() < 2 {
        return missing(&format!("{model} at two depths or more"));
    }
    if improves {
        losses_rise(ev, &[&deep.name, &shallow.name])
    } else {
        losses_rise(ev, &[&shallow.name, &deep.name])
    }
}

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
