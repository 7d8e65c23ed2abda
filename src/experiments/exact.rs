//! The exact-curvature figures: the full FIM / M and their per-layer blocks
//! from per-example gradients at initialisation, against the Kronecker form.

use super::{mlp_config, DataChoice, Needs, Plan, Preset, Scale};
use crate::nn::Init;
use crate::train::{Dtype, TrainConfig};
use std::path::PathBuf;

const FULL_VS_SUB: &str = "Plain: λmax of the full FIM orders of magnitude below BN's (paper: ~1e-5 vs ~1; vanishing gradients); BN better conditioned (smaller κ); the sub-FIMs (per-layer blocks) show the same ordering as the full matrix.";

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "fig1",
        description: "8×24 MLP on 12×12 MNIST at initialisation, Plain vs BN: λmax and κ_p of the full FIM and the sub-FIMs (Fig. 1)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, mlp_8x24),
    },
    Preset {
        name: "fig2",
        description: "8×24 MLP, Plain vs BN: each exact sub-FIM against its Kronecker approximation Σx ⊗ Σ∇h (Fig. 2)",
        expected: "The Kronecker form tracks the exact sub-FIMs: λmax close (same order of magnitude, same Plain/BN ordering), κ_p following the exact ones.",
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, mlp_8x24),
    },
    Preset {
        name: "figA1",
        description: "8×24 MLP, Plain vs BN: the full FIM and every layer's sub-FIM (Fig. A1)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, mlp_8x24),
    },
    Preset {
        name: "figA2",
        description: "8×24 MLP, Plain vs BN: the second moment of sample gradients M and its sub-blocks (Fig. A2)",
        expected: "M behaves as the FIM: Plain's λmax far below BN's, BN better conditioned, in the full matrix and in every sub-block.",
        ci_minutes: 0.5,
        plan: Plan::Runs(Needs::Mnist, mlp_8x24),
    },
    Preset {
        name: "figA3",
        description: "4×24 MLP, Plain vs BN: full FIM and sub-FIMs at initialisation (Fig. A3)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.3,
        plan: Plan::Runs(Needs::Mnist, mlp_4x24),
    },
    Preset {
        name: "figA4",
        description: "4×36 MLP, Plain vs BN: full FIM and sub-FIMs at initialisation (Fig. A4)",
        expected: FULL_VS_SUB,
        ci_minutes: 0.3,
        plan: Plan::Runs(Needs::Mnist, mlp_4x36),
    },
];

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
/// (in f64) and layer-wise at the random initialisation.
fn at_initialisation(scale: Scale, data: &DataChoice, depth: usize, width: usize) -> Vec<(String, TrainConfig)> {
    let examples = if scale == Scale::Ci { 512 } else { 1024 };
    [false, true]
        .into_iter()
        .map(|bn| {
            let mut c = mlp_config(data, PathBuf::new());
            (c.depth, c.width, c.bn, c.init, c.dtype) = (depth, width, bn, Init::Lecun, Dtype::F64);
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
