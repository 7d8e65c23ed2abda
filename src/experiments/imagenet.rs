//! The ImageNet ResNets: the paper's recipe, the layer-wise analysis of
//! ResNet-18 (Fig. A10) and the error curves of ResNet against ResNetLastBN
//! (Fig. A14). On the CPU the stand-in's 32×32 images go through these nets
//! at about 20 images a second, so the CI scale takes a handful of steps.

use super::cifar::sgd_base;
use super::claims::{at_paper_scale, show, Claim, Evidence, Verdict};
use super::measures::{final_loss, missing, run, test_error};
use super::{DataChoice, Experiment, Needs, Plan, Scale};
use crate::analysis::ConvStat;
use crate::models::Family;
use crate::optim::Schedule;
use crate::train::{Pipeline, TrainConfig};

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "figA10",
        description: "ResNet-18 on ImageNet: κ_p of Σx and Σ∇h per layer over training, and the training loss (Fig. A10)",
        expected: "The same observations as for the MLP: with BN throughout, the layers' κ_p of Σx and Σ∇h stay moderate while the training loss falls. The CI scale (20 steps of batch 32 on 32×32 images, channel statistics) only exercises the pipeline and the first steps.",
        ci_minutes: 1.5,
        plan: Plan::Runs { needs: Needs::Imagenet, runs: fig_a10, claims: A10_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA14",
        description: "Top-1 training and test error over epochs of ResNet vs ResNetLastBN at 18 and 50 layers on ImageNet (Fig. A14)",
        expected: "ResNetLastBN's top-1 training and test errors below ResNet's through training, at 18 and at 50 layers (Table A1: 29.38 vs 29.78 at 18 layers, 23.76 vs 23.97 at 50). The CI scale (3 epochs of 256 32×32 images, batch 32, no analysis) only draws the curves; the errors need the full 100 epochs.",
        ci_minutes: 5.0,
        plan: Plan::Runs { needs: Needs::Imagenet, runs: fig_a14, claims: A14_CLAIMS, best_of_rates: false },
    },
];

// A few dozen steps of the ImageNet recipe (lr 0.1 from the start) say nothing about its training loss.
const A10_CLAIMS: &[Claim] =
    &[Claim { text: "the training loss falls: the last logged below the first", check: |ev| at_paper_scale(ev, || loss_falls(ev)) }];

const A14_CLAIMS: &[Claim] = &[
    Claim {
        text: "ResNetLastBN's final top-1 test error below ResNet's at 18 and at 50 layers",
        check: |ev| at_paper_scale(ev, || lastbn_lower(ev, "test", test_error)),
    },
    Claim {
        text: "ResNetLastBN's final top-1 training error below ResNet's at 18 and at 50 layers",
        check: |ev| at_paper_scale(ev, || lastbn_lower(ev, "training", train_error)),
    },
];

/// The paper's ImageNet recipe (lca-imagenet): batch 256, Nesterov, 100
/// epochs with ×0.1 at 30, 60 and 90.
pub fn imagenet_run(scale: Scale, data: &DataChoice, model: &str, depth: usize) -> TrainConfig {
    let mut c = TrainConfig {
        batch_size: 256,
        epochs: Some(100),
        schedule: Schedule::Multistep { milestones: vec![30, 60, 90], gamma: 0.1 },
        pipeline: Pipeline { augment: true, ..Pipeline::default() },
        preset: Some("lca-imagenet".into()),
        ..sgd_base(data, model, depth)
    };
    // The stand-in's 32×32 images go through the ImageNet layout all the same.
    c.arch.family = Some(Family::Imagenet);
    // The tables are about test error; channel statistics keep the analysis of
    // 512-channel convs (4,608-wide patches) cheap.
    (c.analysis.every, c.analysis.conv_stat) = (5000, ConvStat::Channel);
    if scale == Scale::Ci {
        (c.epochs, c.iterations, c.batch_size, c.log_every) = (None, Some(20), 32, 2);
        (c.limit_train, c.limit_test, c.analysis.every) = (Some(2048), Some(512), 10);
    }
    c
}

/// ResNet-18, analysed over patches (the paper's Σx) at the paper scale.
fn fig_a10(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let mut c = imagenet_run(scale, data, "resnet", 18);
    if scale == Scale::Paper {
        c.analysis.conv_stat = ConvStat::Patch;
    }
    vec![("resnet-18".into(), c)]
}

/// ResNet and ResNetLastBN at 18 and 50 layers, evaluated every epoch; at
/// the CI scale three short epochs make the curves, without analysis.
fn fig_a14(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let mut runs = Vec::new();
    for model in ["resnet", "resnet-lastbn"] {
        for depth in [18, 50] {
            let mut c = imagenet_run(scale, data, model, depth);
            if scale == Scale::Ci {
                (c.iterations, c.epochs, c.limit_train, c.limit_test) = (None, Some(3), Some(256), Some(256));
                (c.log_every, c.analysis.every) = (4, 0);
            }
            runs.push((format!("{model}-{depth}"), c));
        }
    }
    runs
}

fn loss_falls(ev: &Evidence) -> Verdict {
    let Some(r) = run(ev, "resnet-18") else { return missing("resnet-18") };
    let first = r.train.iter().find_map(|t| t.loss);
    match (first, final_loss(r)) {
        (Some(first), Some(last)) => {
            Verdict::of(last < first, format!("training loss {} at the first record, {} at the last", show(Some(first)), show(Some(last))))
        }
        _ => Verdict::NotMeasurable(format!("{} has no finite training loss to compare (diverged?)", r.name)),
    }
}

/// The top-1 training error of the last epoch: the mean over its training records.
fn train_error(r: &crate::report::read::Run) -> Option<f64> {
    let last = r.train.iter().filter_map(|t| t.epoch).max()?;
    let errors: Vec<f64> = r.train.iter().filter(|t| t.epoch == Some(last)).filter_map(|t| t.accuracy).map(|a| 1.0 - a).collect();
    (!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64)
}

fn lastbn_lower(ev: &Evidence, what: &str, error: fn(&crate::report::read::Run) -> Option<f64>) -> Verdict {
    let mut compared = Vec::new();
    for depth in [18, 50] {
        let (lastbn, plain) = (format!("resnet-lastbn-{depth}"), format!("resnet-{depth}"));
        let (Some(a), Some(b)) = (run(ev, &lastbn).and_then(error), run(ev, &plain).and_then(error)) else { return missing(&lastbn) };
        compared.push((format!("{depth} layers: {:.2}% vs {:.2}%", 100.0 * a, 100.0 * b), a < b));
    }
    let listed = compared.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("; ");
    Verdict::of(compared.iter().all(|(_, l)| *l), format!("top-1 {what} error, ResNetLastBN vs ResNet: {listed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fig_a14_compares_both_models_at_both_depths_over_several_epochs() {
        let data = DataChoice { name: "imagenet".into(), dir: None };
        for scale in [Scale::Ci, Scale::Paper] {
            let runs = fig_a14(scale, &data);
            let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["resnet-18", "resnet-50", "resnet-lastbn-18", "resnet-lastbn-50"]);
            for (name, c) in &runs {
                c.validate().unwrap();
                // A curve needs two evaluated epochs at least, each of a few logged steps.
                assert!(c.epochs.is_some_and(|e| e >= 3) && c.iterations.is_none(), "{name}: {:?}", c.epochs);
                let steps = c.limit_train.map_or(usize::MAX, |n| n / c.batch_size);
                assert!(steps >= 2 * c.log_every, "{name}: {steps} steps an epoch, logged every {}", c.log_every);
            }
        }
        // At the CI scale the errors are not the paper's: the claims say so.
        let ev = Evidence { scale: Scale::Ci, runs: &[] };
        assert!(A14_CLAIMS.iter().chain(A10_CLAIMS).all(|c| (c.check)(&ev).word() == "not measurable at this scale"));
    }
}
