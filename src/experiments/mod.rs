//! The papers' experiments as named presets: `kappa reproduce NAME` trains
//! every run of the preset under one directory and prints what the paper
//! reports next to what was measured.

mod cifar;
mod exact;
mod last_layer;
mod luckmatters;
mod mlp;
mod tau;

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
    /// Training runs on a dataset, named, reported together by `kappa report`.
    Runs(Needs, fn(Scale, &DataChoice) -> Vec<(String, TrainConfig)>),
    /// An experiment of its own (no training data to choose) that writes its
    /// run under the directory and returns what it measured, as text.
    Script(fn(Scale, &Path) -> Result<String>),
}

pub fn presets() -> impl Iterator<Item = &'static Preset> {
    exact::PRESETS.iter().chain(mlp::PRESETS).chain(last_layer::PRESETS).chain(tau::PRESETS).chain(luckmatters::PRESETS)
}

pub fn find(name: &str) -> Result<&'static Preset> {
    presets().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = presets().map(|p| p.name).collect();
        Error::arg("NAME", format!("unknown experiment '{name}'; valid: {}", names.join(", ")))
    })
}

/// The dataset a preset's runs are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Mnist,
    Cifar10,
}

/// The dataset a reproduction trains on: the real one when its files are in
/// `dir`, its built-in stand-in only when the user allowed it (and every
/// report names the data it ran on).
#[derive(Clone, Debug)]
pub struct DataChoice {
    pub name: String,
    pub dir: Option<PathBuf>,
}

impl DataChoice {
    /// The real dataset, or with `allow_synthetic` the stand-in and a note
    /// saying so; otherwise an error saying what to fetch.
    pub fn resolve(needs: Needs, dir: Option<&Path>, allow_synthetic: bool) -> Result<(DataChoice, Option<String>)> {
        let (real, stand_in, fetch) = match needs {
            Needs::Mnist => ("mnist", "synthetic", "mnist"),
            Needs::Cifar10 => ("cifar10", crate::data::synthetic_cifar::NAME, "cifar10"),
        };
        let found = dir.filter(|d| match needs {
            Needs::Mnist => crate::data::idx::locate(d, crate::data::idx::MNIST_TRAIN_IMAGES).is_ok(),
            Needs::Cifar10 => crate::data::cifar::locate(d, crate::data::cifar::Cifar::Ten, "test_batch.bin").is_ok(),
        });
        if let Some(d) = found {
            return Ok((DataChoice { name: real.into(), dir: Some(d.to_path_buf()) }, None));
        }
        let missing = format!("{real} not found{}", dir.map_or(String::new(), |d| format!(" in {}", d.display())));
        let fetch = format!("fetch it with `kappa data fetch {fetch} --dir data/{fetch}` and pass --data-dir data/{fetch}");
        if !allow_synthetic {
            return Err(Error::arg(
                "--data-dir",
                format!("{missing}; {fetch}, or pass --allow-synthetic to run on the built-in {stand_in} stand-in"),
            ));
        }
        let note = format!("{missing}; running on the built-in {stand_in} stand-in as --allow-synthetic asks ({fetch} for the real data)");
        Ok((DataChoice { name: stand_in.into(), dir: None }, Some(note)))
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
