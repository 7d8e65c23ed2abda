//! The papers' experiments as named presets: `kappa reproduce NAME` trains
//! every run of the preset under one directory and prints what the paper
//! reports next to what was measured.

mod exact;
mod luckmatters;
mod mlp;

use crate::analysis::AnalysisConfig;
use crate::error::{Error, Result};
use crate::train::{self, Summary, TrainConfig};
use std::path::{Path, PathBuf};

/// How large a reproduction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Reduced: minutes on two CPU cores, still showing the paper's effect.
    Ci,
    /// The published settings.
    Paper,
}

/// One named experiment.
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    /// What the paper reports, printed next to the measurement.
    pub expected: &'static str,
    /// Rough wall time on two cores at `Scale::Ci`.
    pub ci_minutes: f64,
    pub plan: Plan,
}

/// How a preset runs.
pub enum Plan {
    /// Training runs, named, reported together by `kappa report`.
    Runs(fn(Scale, &DataChoice) -> Vec<(String, TrainConfig)>),
    /// An experiment of its own (no training data to choose) that writes its
    /// run under the directory and returns what it measured, as text.
    Script(fn(Scale, &Path) -> Result<String>),
}

pub fn presets() -> impl Iterator<Item = &'static Preset> {
    exact::PRESETS.iter().chain(mlp::PRESETS).chain(luckmatters::PRESETS)
}

pub fn find(name: &str) -> Result<&'static Preset> {
    presets().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = presets().map(|p| p.name).collect();
        Error::arg("NAME", format!("unknown experiment '{name}'; valid: {}", names.join(", ")))
    })
}

/// The dataset a reproduction trains on: MNIST when its files are in
/// `dir`, otherwise the synthetic stand-in (and every report says so).
#[derive(Clone, Debug)]
pub struct DataChoice {
    pub name: String,
    pub dir: Option<PathBuf>,
}

impl DataChoice {
    pub fn mnist_or_synthetic(dir: Option<&Path>) -> (DataChoice, Option<String>) {
        let found = dir.filter(|d| crate::data::idx::locate(d, crate::data::idx::MNIST_TRAIN_IMAGES).is_ok());
        match found {
            Some(d) => (DataChoice { name: "mnist".into(), dir: Some(d.to_path_buf()) }, None),
            None => (
                DataChoice { name: "synthetic".into(), dir: None },
                Some(format!(
                    "MNIST not found{}; running on the built-in synthetic data instead (fetch it with `kappa data fetch mnist --dir DIR` and pass --data-dir DIR)",
                    dir.map_or(String::new(), |d| format!(" in {}", d.display()))
                )),
            ),
        }
    }
}

/// The base of every MLP run; presets change what they vary.
pub(crate) fn mlp_config(data: &DataChoice, out: PathBuf) -> TrainConfig {
    TrainConfig {
        data: data.name.clone(),
        data_dir: data.dir.clone(),
        init: crate::nn::Init::Lecun,
        lr: 0.1,
        momentum: 0.0,
        epochs: None,
        iterations: Some(100),
        batch_size: 1024,
        seed: 1,
        out,
        log_every: 5,
        analysis: AnalysisConfig { every: 25, batches: 1, ..Default::default() },
        ..TrainConfig::default()
    }
}

/// Runs every training run of `runs` under `out/<run name>`, returning their summaries.
pub fn train_all(
    runs: fn(Scale, &DataChoice) -> Vec<(String, TrainConfig)>,
    preset: &Preset,
    scale: Scale,
    data: &DataChoice,
    out: &Path,
    device: &str,
) -> Result<Vec<(String, Summary)>> {
    let mut summaries = Vec::new();
    for (name, mut cfg) in runs(scale, data) {
        cfg.out = out.join(&name);
        cfg.device = device.to_string();
        println!("== {} / {name}", preset.name);
        summaries.push((name, train::run(&cfg)?));
    }
    Ok(summaries)
}
