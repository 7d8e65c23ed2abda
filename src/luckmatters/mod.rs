//! "Luck Matters" (Tian et al.): a student ReLU net, wider than its teacher,
//! trained to imitate it on Gaussian inputs. Whether, and how fast, each
//! teacher node is matched by some student node (measured by activation
//! correlation) shows which layers the dynamics recover first; the matrix
//! version checks the over-parameterisation claim (weights out of unmatched
//! student nodes decay to zero).
//!
//! [`recon`] trains the student with this crate's autograd; [`matrix`] runs the
//! closed-form projected gradient of the original `test_multilayer.py`.

pub mod correlation;
pub mod data;
pub mod dense;
pub mod matrix;
pub mod recon;
pub mod student;
pub mod teacher;

use crate::error::{Error, Result};
use crate::train::MetricsLog;
use serde::Serialize;
use std::path::Path;

/// Checks that a student `node_multi` times as wide as the teacher of layer
/// widths `teacher` (input first), its data and its activations on them fit
/// in memory, `samples` the most examples any one pass holds, naming `flags`
/// where they do not.
fn student_fits(teacher: &[usize], node_multi: usize, samples: usize, flags: &str) -> Result<()> {
    let last = teacher.len().saturating_sub(1);
    let mut widths = Vec::with_capacity(teacher.len());
    for (i, &w) in teacher.iter().enumerate() {
        let multi = if i == 0 || i == last { 1 } else { node_multi };
        widths.push(w.checked_mul(multi).ok_or_else(|| Error::arg(flags, format!("{w} × {multi} student nodes overflow")))?);
    }
    for (i, pair) in widths.windows(2).enumerate() {
        crate::size::elements(&format!("student layer {}'s weights", i + 1), &[pair[1], pair[0].saturating_add(1)], flags)?;
    }
    crate::size::elements("the input samples", &[samples, teacher[0]], flags)?;
    let widest = widths.iter().copied().max().unwrap_or(0);
    crate::size::elements("the widest layer's activations", &[samples, widest], flags).map(|_| ())
}

/// Creates `out_dir`, writes `config.json` and opens a fresh `metrics.jsonl`
/// (refusing a directory that already holds a run's metrics).
fn open_run(out_dir: &Path, config: &impl Serialize) -> Result<MetricsLog> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::data(out_dir, format!("cannot create the run directory: {e}")))?;
    let log = MetricsLog::create(out_dir)?;
    let path = out_dir.join("config.json");
    let text = serde_json::to_string_pretty(config).map_err(|e| Error::data(&path, e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::data(&path, e.to_string()))?;
    Ok(log)
}
