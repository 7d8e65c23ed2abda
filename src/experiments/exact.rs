//! The exact-curvature figures: the full FIM / M and their per-layer blocks
//! from per-example gradients at initialisation, against the Kronecker form.

use super::claims::{show, Claim, Evidence, Verdict};
use super::measures::{missing, run};
use super::{mlp_config, DataChoice, Experiment, Needs, Plan, Scale};
use crate::lenient::known;
use crate::nn::Init;
use crate::train::{Dtype, TrainConfig};
use std::path::PathBuf;

const FULL_VS_SUB: &str = "Plain, at the paper's random init (Torch7's U(±1/√fan_in) weights, zero biases: a sixth of the second moment kept per ReLU layer): λmax of the full FIM orders of magnitude below BN's (paper: ~1e-5 vs ~1; vanishing gradients); BN better conditioned (smaller κ); the sub-FIMs (per-layer blocks) show the same ordering as the full matrix.";

pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "fig1",
        description: "8×24 MLP on 12×12 MNIST at initialisation, Plain vs BN: λmax and κ_p of the full FIM and the sub-FIMs (Fig. 1)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.5,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_8x24, claims: FIM_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "fig2",
        description: "8×24 MLP, Plain vs BN: each exact sub-FIM against its Kronecker approximation Σx ⊗ Σ∇h (Fig. 2)",
        expected: "The Kronecker form tracks the exact sub-FIMs: λmax close (same order of magnitude, same Plain/BN ordering), κ_p following the exact ones.",
        ci_minutes: 0.5,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_8x24, claims: KRONECKER_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA1",
        description: "8×24 MLP, Plain vs BN: the full FIM and every layer's sub-FIM (Fig. A1)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.5,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_8x24, claims: FIM_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA2",
        description: "8×24 MLP, Plain vs BN: the second moment of sample gradients M and its sub-blocks (Fig. A2)",
        expected: "M behaves as the FIM: Plain's λmax far below BN's, BN better conditioned, in the full matrix and in every sub-block.",
        ci_minutes: 0.5,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_8x24, claims: M_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA3",
        description: "4×24 MLP, Plain vs BN: full FIM and sub-FIMs at initialisation (Fig. A3)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.3,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_4x24, claims: FIM_CLAIMS, best_of_rates: false },
    },
    Experiment {
        name: "figA4",
        description: "4×36 MLP, Plain vs BN: full FIM and sub-FIMs at initialisation (Fig. A4)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.3,
        plan: Plan::Runs { needs: Needs::Mnist, runs: mlp_4x36, claims: FIM_CLAIMS, best_of_rates: false },
    },
];

const FIM_CLAIMS: &[Claim] = &[
    Claim {
        text: "Plain's full-FIM λmax at least 100× below BN's at initialisation (paper: ~1e-5 vs ~1)",
        check: |ev| full_far_below(ev, "fim"),
    },
    Claim { text: "the sub-FIMs show the same ordering: Plain's λmax below BN's in most layers", check: |ev| blocks_below(ev, "fim") },
];

const M_CLAIMS: &[Claim] = &[
    Claim { text: "Plain's full-M λmax at least 100× below BN's at initialisation", check: |ev| full_far_below(ev, "m") },
    Claim {
        text: "every sub-block of M shows the same ordering: Plain's λmax below BN's in most layers",
        check: |ev| blocks_below(ev, "m"),
    },
];

const KRONECKER_CLAIMS: &[Claim] = &[
    Claim {
        text: "the Kronecker form Σx ⊗ Σ∇h tracks the exact sub-FIM: λmax within a factor 10 in most layers, Plain and BN alike",
        check: kronecker_tracks,
    },
    Claim { text: "the Kronecker sub-FIMs keep the exact ones' ordering: Plain's λmax below BN's in most layers", check: kronecker_below },
];

/// λmax of `matrix`'s `block` at the first exact analysis: the exact one, or its Kronecker form.
fn exact_lambda(ev: &Evidence, name: &str, matrix: &str, block: &str, kronecker: bool) -> Option<f64> {
    let r = run(ev, name)?;
    let first = r.exact.iter().map(|e| e.iteration).min()?;
    let e = r.exact.iter().find(|e| e.iteration == first && e.matrix == matrix && e.block == block)?;
    if kronecker {
        known(e.kronecker.as_ref()?.lambda_max)
    } else {
        known(e.exact.lambda_max)
    }
}

/// The per-layer blocks of `matrix` in the Plain run.
fn layer_blocks(ev: &Evidence, matrix: &str) -> Vec<String> {
    run(ev, "plain")
        .map_or(vec![], |r| r.exact.iter().filter(|e| e.matrix == matrix && e.block != "full").map(|e| e.block.clone()).collect())
}

fn full_far_below(ev: &Evidence, matrix: &str) -> Verdict {
    match (exact_lambda(ev, "plain", matrix, "full", false), exact_lambda(ev, "bn", matrix, "full", false)) {
        (Some(p), Some(b)) => Verdict::of(
            p * 100.0 <= b,
            format!("full {matrix} λmax: plain {} vs bn {} (ratio {:.1e})", show(Some(p)), show(Some(b)), b / p),
        ),
        _ => missing(&format!("plain and bn with an exact full {matrix}")),
    }
}

/// Plain's λmax below BN's in more than half of the per-layer blocks.
fn most_blocks(ev: &Evidence, matrix: &str, kronecker: bool) -> Verdict {
    let pairs: Vec<(String, f64, f64)> = layer_blocks(ev, matrix)
        .into_iter()
        .filter_map(|b| Some((exact_lambda(ev, "plain", matrix, &b, kronecker)?, exact_lambda(ev, "bn", matrix, &b, kronecker)?, b)))
        .map(|(p, bn, b)| (b, p, bn))
        .collect();
    if pairs.is_empty() {
        return missing(&format!("plain and bn with per-layer {matrix} blocks"));
    }
    let below = pairs.iter().filter(|(_, p, b)| p < b).count();
    let listed = pairs.iter().map(|(blk, p, b)| format!("{blk}: {} vs {}", show(Some(*p)), show(Some(*b)))).collect::<Vec<_>>().join(", ");
    Verdict::of(2 * below > pairs.len(), format!("plain below bn in {below} of {} blocks ({listed})", pairs.len()))
}

fn blocks_below(ev: &Evidence, matrix: &str) -> Verdict {
    most_blocks(ev, matrix, false)
}

fn kronecker_below(ev: &Evidence) -> Verdict {
    most_blocks(ev, "fim", true)
}

fn kronecker_tracks(ev: &Evidence) -> Verdict {
    let mut close = 0;
    let mut ratios = Vec::new();
    for name in ["plain", "bn"] {
        for b in layer_blocks(ev, "fim") {
            let (Some(e), Some(k)) = (exact_lambda(ev, name, "fim", &b, false), exact_lambda(ev, name, "fim", &b, true)) else { continue };
            close += usize::from((k / e).abs().log10().abs() <= 1.0);
            ratios.push(format!("{name} {b}: {:.2}", k / e));
        }
    }
    if ratios.is_empty() {
        return missing("plain and bn with exact and Kronecker sub-FIMs");
    }
    Verdict::of(
        2 * close > ratios.len(),
        format!("Kronecker/exact λmax within 10× in {close} of {} blocks ({})", ratios.len(), ratios.join(", ")),
    )
}

fn mlp_8x24(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    at_initialisation(scale, data, 8, 24)
}

fn mlp_4x24(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    at_initialisation(scale, data, 4, 24)
}

fn mlp_4x36(scale: Scale, data: &DataChoice) -> Vec<(String, TrainConfig)> {
    at_initialisation(scale, data, 4, 36)
}

/// Plain and BN nets of `depth` × `width` on 12×12 inputs, analysed exactly
/// (in f64) and layer-wise at the paper's random initialisation (Torch7's
/// U(±1/√fan_in), see `Init::UniformFanIn`).
fn at_initialisation(scale: Scale, data: &DataChoice, depth: usize, width: usize) -> Vec<(String, TrainConfig)> {
    let examples = if scale == Scale::Ci { 512 } else { 1024 };
    [false, true]
        .into_iter()
        .map(|bn| {
            let mut c = mlp_config(data, PathBuf::new());
            (c.depth, c.width, c.bn, c.init, c.dtype) = (depth, width, bn, Init::UniformFanIn, Dtype::F64);
            c.crop_resize = Some((20, 12));
            (c.iterations, c.epochs) = (Some(0), None);
            c.limit_train = (scale == Scale::Ci).then_some(4096);
            c.batch_size = examples;
            c.analysis.every = 0;
            (c.analysis.at, c.analysis.exact_at, c.analysis.exact_examples) = (vec![0], vec![0], examples);
            (if bn { "bn" } else { "plain" }.to_string(), c)
        })
        .collect()
}
