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
