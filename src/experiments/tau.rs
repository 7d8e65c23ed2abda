//! ResNet against tau-ResNet by depth, with and without BN (the tau-ResNet
//! code base's CIFAR-10 experiments).

use super::cifar::{grid, Recipe};
use super::claims::{at_paper_scale, show, Claim, Evidence, Verdict};
use super::measures::{final_loss, missing, run, test_error};
use super::{DataChoice, Experiment, Needs, Plan, Scale};
use crate::train::TrainConfig;

pub const EXPERIMENTS: &[Experiment] = &[Experiment {
    name: "tau",
    description: "ResNet vs tau-ResNet by depth, with BN and without (Fixup-style scalars), on the tau-ResNet recipe",
    expected: "Without BN the plain ResNet diverges or stalls as depth grows while tau-ResNet trains stably; with BN, τ lowers the test error of deep nets (paper: 6.61 → 5.83 at depth 110, 6.93 → 5.01 at 1202).",
    ci_minutes: 2.0,
    plan: Plan::Runs { needs: Needs::Cifar10, runs, claims: CLAIMS, best_of_rates: false },
}];

const CLAIMS: &[Claim] = &[
    Claim {
        text: "without BN, tau-ResNet trains at the largest depth where the plain ResNet diverges or stalls: its final loss below the plain one's",
        check: nobn_trains,
    },
    Claim {
        text: "with BN, τ lowers the test error at the largest depth",
        check: |ev| at_paper_scale(ev, || with_bn_lower(ev)),
    },
];

fn deepest(scale: Scale) -> usize {
    match scale {
        Scale::Ci => 56,
        Scale::Paper => 1202,
    }
}

/// A diverged run has no final loss: it counts as above any that has one.
fn nobn_trains(ev: &Evidence) -> Verdict {
    let d = deepest(ev.scale);
    let (tau, plain) = (format!("tau-resnet-nobn-{d}"), format!("resnet-nobn-{d}"));
    let (Some(t), Some(p)) = (run(ev, &tau), run(ev, &plain)) else { return missing(&tau) };
    let loss = |r| final_loss(r).map_or("diverged".to_string(), |l| show(Some(l)));
    let holds = match (final_loss(t), final_loss(p)) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        _ => false,
    };
    Verdict::of(holds, format!("final training loss: {tau} {}, {plain} {}", loss(t), loss(p)))
}

fn with_bn_lower(ev: &Evidence) -> Verdict {
    let d = deepest(ev.scale);
    let (tau, plain) = (format!("tau-resnet-{d}"), format!("resnet-{d}"));
    match (run(ev, &tau).and_then(test_error), run(ev, &plain).and_then(test_error)) {
        (Some(a), Some(b)) => Verdict::of(a < b, format!("test error {tau} {:.2}% vs {plain} {:.2}%", 100.0 * a, 100.0 * b)),
        _ => missing(&tau),
    }
}

fn runs(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let depths: &[usize] = match scale {
        Scale::Ci => &[20, 56],
        Scale::Paper => &[20, 32, 56, 110, 1202],
    };
    grid(scale, data, &["resnet", "tau-resnet", "resnet-nobn", "tau-resnet-nobn"], depths, Recipe::Tau)
}
