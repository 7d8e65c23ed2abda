//! LuckMatters' two teacher–student scripts as presets.

use super::{Plan, Preset, Scale};
use crate::error::Result;
use crate::luckmatters::{matrix, recon};
use std::path::Path;

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "luckmatters-recon",
        description: "teacher 20-10-15-20-25-100 ReLU MLP on N(0, 10²) inputs, wide student by SGD: teacher–student node correlations per layer",
        expected: "The student's lowest layer recovers the teacher's nodes: best correlation ≈ 0.999 within a few epochs; ≈ 0.95 at the second layer.",
        ci_minutes: 0.5,
        plan: Plan::Script(recon_script),
    },
    Preset {
        name: "luckmatters-matrix",
        description: "10-20-30 ReLU weight matrices, closed-form projected GD from the teacher plus noise, node_multi 2: W_row_norm",
        expected: "Teacher-aligned rows keep norms ≈ 1.1–1.5 while the other rows' norms fall to ≈ 1e-4.",
        ci_minutes: 0.2,
        plan: Plan::Script(matrix_script),
    },
];

fn recon_script(scale: Scale, out: &Path) -> Result<String> {
    let cfg = match scale {
        Scale::Ci => recon::ReconConfig::ci(),
        Scale::Paper => recon::ReconConfig::default(),
    };
    Ok(recon::run(&cfg, out)?.summary())
}

fn matrix_script(scale: Scale, out: &Path) -> Result<String> {
    let cfg = match scale {
        Scale::Ci => matrix::MatrixConfig::ci(),
        Scale::Paper => matrix::MatrixConfig::default(),
    };
    Ok(matrix::run(&cfg, out)?.summary())
}
