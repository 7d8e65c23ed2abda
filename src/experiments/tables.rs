//! The paper's test-error tables: every variant at every depth over seeds,
//! reported by `kappa report` as mean ± std next to the published numbers.

use super::cifar::{cifar_run, Recipe};
use super::claims::{at_paper_scale, Claim, Evidence, Verdict};
use super::imagenet::imagenet_run;
use super::measures::test_error;
use super::{DataChoice, Experiment, Needs, Plan, Scale};
use crate::train::TrainConfig;

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "table1",
        description: "CIFAR-10 test error of ResNet, PreResNet, PreResNetv1 and ResNetLastBN at depths 56/110/230/1202, 5 seeds (Table 1)",
        expected: "ResNetLastBN has the lowest error at every depth and keeps improving with depth (5.68% at 1202), while ResNet gets worse past 110 (9.42% at 1202). The CI scale (depth 56, 2 seeds, 30 steps) only exercises the pipeline and the table; the errors need the full 160 epochs.",
        ci_minutes: 3.0,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: table1, claims: LASTBN_LOWEST, best_of_rates: false },
    },
    Experiment {
        name: "table2",
        description: "CIFAR-100 test error of ResNet, PreResNet, PreResNetv1 and ResNetLastBN at depths 56/110/230/1202, 5 seeds (Table 2)",
        expected: "As on CIFAR-10: ResNetLastBN best at every depth (25.51% at 1202), ResNet worse past 110. The CI scale only exercises the pipeline and the table.",
        ci_minutes: 3.0,
        plan: Plan::Runs { needs: Needs::Cifar100, runs: table2, claims: LASTBN_LOWEST, best_of_rates: false },
    },
    Experiment {
        name: "tableA1",
        description: "ImageNet top-1 error of ResNet and ResNetLastBN, 18 and 50 layers: standard, weight decay 2e-4, dropout 0.3 after the last BN (Table A1)",
        expected: "ResNetLastBN slightly better under the standard setting (29.38 vs 29.78 at 18 layers) and more so with stronger regularisation (wd 2e-4: 28.96 vs 30.07). The CI scale (ResNet-18, 20 steps) only exercises the pipeline.",
        ci_minutes: 4.0,
        plan: Plan::Runs { needs: Needs::Imagenet, runs: table_a1, claims: IMAGENET_LASTBN, best_of_rates: false },
    },
    Experiment {
        name: "tableA2",
        description: "CIFAR-10 test error of VGG and ResNet without BN, with and without one BN before the last linear layer, depths 20/44/56/110 (Table A2)",
        expected: "The BN before the last linear layer helps at every depth: VGG 89.93% → 23.40% at depth 56, BN-free ResNet 9.48% → 8.61%. The CI scale (depth 20, 2 seeds, 30 steps) only exercises the pipeline and the table.",
        ci_minutes: 1.5,
        plan: Plan::Runs { needs: Needs::Cifar10, runs: table_a2, claims: ONE_BN_HELPS, best_of_rates: false },
    },
];

const LASTBN_LOWEST: &[Claim] = &[Claim {
    text: "ResNetLastBN has the lowest mean test error of the four variants at every depth",
    check: |ev| at_paper_scale(ev, || lower_in_every_cell(ev, "resnet-lastbn", &["resnet", "preresnet", "preresnet-v1"])),
}];

const IMAGENET_LASTBN: &[Claim] = &[Claim {
    text: "ResNetLastBN's top-1 test error below ResNet's at 18 and 50 layers, under every setting",
    check: |ev| at_paper_scale(ev, || lower_in_every_cell(ev, "resnet-lastbn", &["resnet"])),
}];

const ONE_BN_HELPS: &[Claim] = &[
    Claim {
        text: "one BN before the last linear layer lowers the BN-free VGG's mean test error at every depth",
        check: |ev| at_paper_scale(ev, || lower_in_every_cell(ev, "vgg-nobn-lastbn", &["vgg-nobn"])),
    },
    Claim {
        text: "one BN before the last linear layer lowers the BN-free ResNet's mean test error at every depth",
        check: |ev| at_paper_scale(ev, || lower_in_every_cell(ev, "resnet-nobn-lastbn", &["resnet-nobn"])),
    },
];

/// A run's table cell: its name without the seed (`-sN`).
fn cell(name: &str) -> &str {
    match name.rsplit_once("-s") {
        Some((cell, seed)) if seed.parse::<u64>().is_ok() => cell,
        _ => name,
    }
}

/// The mean final test error over the seeds of `cell`; `None` when a seed has none.
fn mean_error(ev: &Evidence, cell_name: &str) -> Option<f64> {
    let errors: Option<Vec<f64>> = ev.runs.iter().filter(|r| cell(&r.name) == cell_name).map(test_error).collect();
    errors.filter(|e| !e.is_empty()).map(|e| e.iter().sum::<f64>() / e.len() as f64)
}

/// `better`'s mean test error below each of `others'` in every cell they
/// share (the rest of the name: depth and setting).
fn lower_in_every_cell(ev: &Evidence, better: &str, others: &[&str]) -> Verdict {
    let mut cells: Vec<&str> = ev.runs.iter().filter_map(|r| cell(&r.name).strip_prefix(better)?.strip_prefix('-')).collect();
    cells.dedup();
    let mut compared = Vec::new();
    for rest in cells {
        let Some(mine) = mean_error(ev, &format!("{better}-{rest}")) else { continue };
        for other in others {
            if let Some(theirs) = mean_error(ev, &format!("{other}-{rest}")) {
                compared.push((format!("{rest}: {:.2}% vs {other} {:.2}%", 100.0 * mine, 100.0 * theirs), mine < theirs));
            }
        }
    }
    if compared.is_empty() {
        return Verdict::NotMeasurable(format!("no cell has both {better} and {} with a test error", others.join(", ")));
    }
    let lower = compared.iter().filter(|(_, l)| *l).count();
    let listed = compared.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("; ");
    Verdict::of(lower == compared.len(), format!("{better} lower in {lower} of {} comparisons ({listed})", compared.len()))
}

fn seeds(scale: Scale) -> std::ops::RangeInclusive<u64> {
    match scale {
        Scale::Ci => 1..=2,
        Scale::Paper => 1..=5,
    }
}

/// Every model at every depth and seed, named `model-depth-sSEED`.
fn over_seeds(scale: Scale, models: &[&str], depths: &[usize], run: impl Fn(&str, usize) -> TrainConfig) -> Vec<(String, TrainConfig)> {
    let mut runs = Vec::new();
    for &m in models {
        for &d in depths {
            for seed in seeds(scale) {
                runs.push((format!("{m}-{d}-s{seed}"), TrainConfig { seed, ..run(m, d) }));
            }
        }
    }
    runs
}

const TABLE1_MODELS: [&str; 4] = ["resnet", "preresnet", "preresnet-v1", "resnet-lastbn"];

fn table1_depths(scale: Scale) -> &'static [usize] {
    match scale {
        Scale::Ci => &[56],
        Scale::Paper => &[56, 110, 230, 1202],
    }
}

fn table1(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    over_seeds(scale, &TABLE1_MODELS, table1_depths(scale), |m, d| cifar_run(scale, data, m, d, Recipe::Lca))
}

fn table2(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    table1(scale, data)
}

fn table_a2(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let depths: &[usize] = match scale {
        Scale::Ci => &[20],
        Scale::Paper => &[20, 44, 56, 110],
    };
    // The setup of Fig. A8/A9: no weight decay, and lr 0.01 since the BN-free nets do not converge at 0.1.
    over_seeds(scale, &["vgg-nobn", "vgg-nobn-lastbn", "resnet-nobn", "resnet-nobn-lastbn"], depths, |m, d| TrainConfig {
        lr: 0.01,
        weight_decay: 0.0,
        ..cifar_run(scale, data, m, d, Recipe::Lca)
    })
}

fn table_a1(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    let depths: &[usize] = match scale {
        Scale::Ci => &[18],
        Scale::Paper => &[18, 50],
    };
    let mut runs = Vec::new();
    for model in ["resnet", "resnet-lastbn"] {
        for &depth in depths {
            for (setting, wd, dropout) in [("standard", 1e-4, 0.0), ("wd2e-4", 2e-4, 0.0), ("dropout0.3", 1e-4, 0.3)] {
                let mut c = imagenet_run(scale, data, model, depth);
                (c.weight_decay, c.arch.dropout) = (wd, dropout);
                runs.push((format!("{model}-{depth}-{setting}"), c));
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::published::{test_error, Setting};

    fn real(name: &str) -> DataChoice {
        DataChoice { name: name.into(), dir: None }
    }

    /// The published cell the report compares a run with, if any.
    fn published(c: &TrainConfig) -> Option<f64> {
        test_error(&Setting::of(&serde_json::to_value(c).unwrap())?).map(|p| p.error)
    }

    #[test]
    fn every_paper_scale_run_has_its_published_cell_and_covers_the_table() {
        for (preset, data, cells) in
            [("table1", "cifar10", 16), ("table2", "cifar100", 16), ("tableA1", "imagenet", 12), ("tableA2", "cifar10", 16)]
        {
            let Plan::Runs { runs, .. } = super::super::find(preset).unwrap().plan else { panic!("{preset} trains runs") };
            let runs = runs(Scale::Paper, &real(data));
            let mut cells_seen: Vec<String> = Vec::new();
            for (name, c) in &runs {
                c.validate().unwrap();
                assert!(published(c).is_some(), "{preset}/{name} has no published value");
                let cell = format!("{} {} {} {}", c.model, c.depth, c.weight_decay, c.arch.dropout);
                if !cells_seen.contains(&cell) {
                    cells_seen.push(cell);
                }
            }
            assert_eq!(cells_seen.len(), cells, "{preset} covers every cell of its table");
            let seeds = if preset == "tableA1" { 1 } else { 5 };
            assert_eq!(runs.len(), cells * seeds, "{preset}");
        }
    }

    #[test]
    fn ci_scale_runs_are_short_and_seeded_apart() {
        let Plan::Runs { runs, .. } = super::super::find("table1").unwrap().plan else { panic!() };
        let runs = runs(Scale::Ci, &real("cifar10"));
        assert!(runs.iter().all(|(_, c)| c.iterations == Some(30) && c.epochs.is_none() && c.limit_test.is_some()));
        let seeds: Vec<u64> = runs.iter().filter(|(n, _)| n.starts_with("resnet-56-")).map(|(_, c)| c.seed).collect();
        assert_eq!(seeds, [1, 2]);
        // Runs of one cell differ in seed alone, so the report averages them.
        let (a, b) = (&runs[0].1, &runs[1].1);
        let json = |c: &TrainConfig| serde_json::to_value(TrainConfig { seed: 0, ..c.clone() }).unwrap();
        assert_eq!(json(a), json(b));
    }
}
