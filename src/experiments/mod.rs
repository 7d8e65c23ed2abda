//! The papers' experiments, each by name: `kappa reproduce NAME` trains
//! every run of the experiment under one directory and prints what the paper
//! reports next to what was measured.

mod cifar;
pub mod claims;
mod conv_nets;
mod exact;
mod imagenet;
mod last_layer;
mod luckmatters;
mod measures;
mod mlp;
mod sweep;
mod tables;
mod tau;

use crate::analysis::AnalysisConfig;
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::report::read::Run;
use crate::train::{self, Dtype, Summary, TrainConfig};
use claims::{Claim, Evidence, Judged};
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
pub struct Experiment {
    pub name: &'static str,
    pub description: &'static str,
    /// What the paper reports, printed next to the measurement.
    pub expected: &'static str,
    /// Rough wall time on two cores at `Scale::Ci`.
    pub ci_minutes: f64,
    pub plan: Plan,
}

/// How an experiment runs.
pub enum Plan {
    /// Training runs on a dataset, named, reported together by `kappa report`
    /// and judged by the paper's claims.
    Runs {
        needs: Needs,
        runs: fn(Scale, &DataChoice) -> Vec<(String, TrainConfig)>,
        claims: &'static [Claim],
        /// Runs that differ in their learning rate alone are one
        /// configuration, reported at its best rate (see `sweep`).
        best_of_rates: bool,
    },
    /// An experiment of its own, with no training data to choose.
    Script(Script),
}

/// An experiment of its own: it writes its run under the directory and
/// returns what it measured, as text, with its claims judged.
pub type Script = fn(Scale, &Path) -> Result<(String, Vec<Judged>)>;

pub fn all() -> impl Iterator<Item = &'static Experiment> {
    [
        exact::EXPERIMENTS,
        mlp::EXPERIMENTS,
        conv_nets::EXPERIMENTS,
        imagenet::EXPERIMENTS,
        last_layer::EXPERIMENTS,
        tables::EXPERIMENTS,
        tau::EXPERIMENTS,
        luckmatters::EXPERIMENTS,
    ]
    .into_iter()
    .flatten()
}

pub fn find(name: &str) -> Result<&'static Experiment> {
    all().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().map(|p| p.name).collect();
        Error::arg("NAME", format!("unknown experiment '{name}'; valid: {}", names.join(", ")))
    })
}

/// The dataset an experiment's runs are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Mnist,
    Cifar10,
    Cifar100,
    Imagenet,
}

impl Needs {
    /// The dataset's name for `--data`.
    fn name(self) -> &'static str {
        match self {
            Needs::Mnist => "mnist",
            Needs::Cifar10 => "cifar10",
            Needs::Cifar100 => "cifar100",
            Needs::Imagenet => "imagenet",
        }
    }

    /// The built-in set that stands in for it, and how it falls short.
    fn stand_in(self) -> (&'static str, &'static str) {
        match self {
            Needs::Mnist => ("synthetic", ""),
            Needs::Cifar10 => (crate::data::synthetic_cifar::NAME, ""),
            Needs::Cifar100 => (crate::data::synthetic_cifar::NAME, ", which has 10 classes, not 100"),
            Needs::Imagenet => (crate::data::synthetic_cifar::NAME, ", 32×32 images in 10 classes through the ImageNet ResNets"),
        }
    }

    fn present_in(self, dir: &Path) -> bool {
        use crate::data::cifar::{locate, Cifar};
        match self {
            Needs::Mnist => crate::data::idx::locate(dir, crate::data::idx::MNIST_TRAIN_IMAGES).is_ok(),
            Needs::Cifar10 => locate(dir, Cifar::Ten, "test_batch.bin").is_ok(),
            Needs::Cifar100 => locate(dir, Cifar::Hundred, "test.bin").is_ok(),
            Needs::Imagenet => dir.join("train").is_dir() && dir.join("val").is_dir(),
        }
    }

    /// How to get the real data.
    fn how_to_get(self) -> String {
        match self {
            Needs::Imagenet => {
                "ILSVRC-2012 cannot be fetched by kappa: put its train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under a directory and pass --data-dir DIR".into()
            }
            _ => {
                let name = self.name();
                format!("fetch it with `kappa data fetch {name} --dir data/{name}` and pass --data-dir data/{name}")
            }
        }
    }
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
        let (real, (stand_in, caveat)) = (needs.name(), needs.stand_in());
        if let Some(d) = dir.filter(|d| needs.present_in(d)) {
            return Ok((DataChoice { name: real.into(), dir: Some(d.to_path_buf()) }, None));
        }
        let missing = format!("{real} not found{}", dir.map_or(String::new(), |d| format!(" in {}", d.display())));
        let get = needs.how_to_get();
        if !allow_synthetic {
            return Err(Error::arg(
                "--data-dir",
                format!("{missing}; {get}, or pass --allow-synthetic to run on the built-in {stand_in} stand-in{caveat}"),
            ));
        }
        let note =
            format!("{missing}; running on the built-in {stand_in} stand-in{caveat} as --allow-synthetic asks ({get} for the real data)");
        Ok((DataChoice { name: stand_in.into(), dir: None }, Some(note)))
    }
}

/// The base of every MLP run; experiments change what they vary.
pub(crate) fn mlp_config(data: &DataChoice, out: PathBuf) -> TrainConfig {
    TrainConfig {
        data: data.name.clone(),
        data_dir: data.dir.clone(),
        // The paper's "random" init: its code's Torch7 nn.Linear scale.
        init: crate::nn::Init::UniformFanIn,
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

/// A run's name for the layers it freezes: `none`, `freeze-2-4`.
fn frozen_name(layers: &[usize]) -> String {
    if layers.is_empty() {
        return "none".into();
    }
    format!("freeze-{}", layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("-"))
}

/// What a reproduction's runs found.
pub struct Findings {
    /// The runs the report shows: every run, or the best of each
    /// learning-rate sweep.
    pub kept: Vec<(String, Summary)>,
    /// Every run of each sweep, kept or not, as a report section (markdown);
    /// empty without a sweep.
    pub sweep: String,
    pub judged: Vec<Judged>,
}

/// Trains every run of `experiment` under `out/<run name>`, keeps the best of
/// each learning-rate sweep, and judges the experiment's claims on the kept runs.
pub fn train_all(experiment: &Experiment, scale: Scale, data: &DataChoice, out: &Path, device: &str) -> Result<Findings> {
    let Plan::Runs { runs, claims, best_of_rates, .. } = experiment.plan else {
        return Err(Error::arg("NAME", format!("{} is a script, not training runs", experiment.name)));
    };
    let runs = runs(scale, data);
    // Before any run trains: the preset chose f64, the user chose the device.
    if let Some((name, _)) = runs.iter().find(|(_, c)| c.dtype == Dtype::F64) {
        if device.parse::<Device>()? != Device::Cpu {
            let detail = format!("{} ({name}) computes in f64, which runs on the CPU only; expected --device cpu", experiment.name);
            return Err(Error::arg("--device", detail));
        }
    }
    let mut trained = Vec::new();
    for (name, mut cfg) in runs {
        cfg.out = out.join(&name);
        cfg.device = device.to_string();
        println!("== {} / {name}", experiment.name);
        let summary = train::run(&cfg)?;
        trained.push((name, cfg, summary));
    }
    let (kept, sweep) = if best_of_rates { sweep::keep_best(&trained) } else { ((0..trained.len()).collect(), String::new()) };
    let kept: Vec<(String, Summary)> = kept.into_iter().map(|i| (trained[i].0.clone(), trained[i].2.clone())).collect();
    let read = kept.iter().map(|(name, _)| Run::load(&out.join(name))).collect::<Result<Vec<_>>>()?;
    let judged = claims::judge(claims, &Evidence { scale, runs: &read });
    Ok(Findings { kept, sweep, judged })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(needs: Needs) -> DataChoice {
        DataChoice { name: needs.name().into(), dir: None }
    }

    #[test]
    fn every_preset_that_trains_has_claims_that_need_evidence() {
        for experiment in all() {
            let Plan::Runs { needs, runs, claims, .. } = experiment.plan else { continue };
            assert!(!claims.is_empty(), "{} has no claim", experiment.name);
            for scale in [Scale::Ci, Scale::Paper] {
                for (name, c) in runs(scale, &data(needs)) {
                    c.validate().unwrap_or_else(|e| panic!("{}/{name} at {scale:?}: {e}", experiment.name));
                }
                // Without runs nothing can agree or disagree.
                for judged in claims::judge(claims, &Evidence { scale, runs: &[] }) {
                    assert!(matches!(judged.verdict, claims::Verdict::NotMeasurable(_)), "{}: {:?}", experiment.name, judged);
                }
            }
        }
    }

    #[test]
    fn the_swept_presets_try_four_rates_at_the_paper_scale_and_two_at_ci() {
        for name in ["fig3", "fig5", "figA5", "figA6"] {
            let Plan::Runs { needs, runs, best_of_rates, .. } = find(name).unwrap().plan else { panic!("{name} trains") };
            assert!(best_of_rates, "{name}");
            for (scale, rates) in [(Scale::Ci, vec![0.1, 0.5]), (Scale::Paper, vec![0.05, 0.1, 0.5, 1.0])] {
                let runs = runs(scale, &data(needs));
                let configs: Vec<&TrainConfig> = runs.iter().map(|(_, c)| c).collect();
                for group in sweep::configurations(&configs) {
                    let lrs: Vec<f64> = group.iter().map(|&i| configs[i].lr).collect();
                    assert_eq!(lrs, rates, "{name} at {scale:?}: {}", runs[group[0]].0);
                }
            }
        }
        // The paper's random init is Torch7's nn.Linear scale, LeCun stays available.
        let Plan::Runs { runs, .. } = find("fig5").unwrap().plan else { panic!() };
        assert!(runs(Scale::Ci, &data(Needs::Mnist)).iter().all(|(_, c)| c.init == crate::nn::Init::UniformFanIn));
    }
}
