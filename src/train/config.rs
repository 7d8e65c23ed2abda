//! Everything a training run is determined by; saved as `config.json`.

use crate::analysis::AnalysisConfig;
use crate::backend::Device;
use crate::data::{ImageNetOptions, Normalize, Padding};
use crate::error::{Error, Result};
use crate::files::read_file;
use crate::models::{Family, LastBnGamma, ShortcutKind, Variant, MLP, VGG16};
use crate::nn::Init;
use crate::optim::Schedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    /// Full-batch gradient descent: every step sees the whole training set.
    Gd,
}

/// The element type the CPU computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    /// Double precision (CPU only): slower, but spectra resolve eigenvalues
    /// down to ~1e-16·λmax instead of ~1e-7·λmax.
    F64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: String,
    pub depth: usize,
    pub width: usize,
    pub bn: bool,
    pub init: Init,
    pub data: String,
    pub data_dir: Option<PathBuf>,
    /// The paper's MNIST preprocessing: centre-crop to `.0`, resize to `.1`.
    pub crop_resize: Option<(usize, usize)>,
    pub limit_train: Option<usize>,
    /// Evaluate on the first this many test examples only.
    #[serde(default)]
    pub limit_test: Option<usize>,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub epochs: Option<usize>,
    pub iterations: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// 1-based layers whose parameters receive no update.
    pub freeze: Vec<usize>,
    pub log_every: usize,
    pub device: String,
    pub dtype: Dtype,
    pub analysis: AnalysisConfig,
    /// Conv-net options (ignored by the MLP).
    #[serde(default)]
    pub arch: ArchOptions,
    /// Augmentation, normalisation and batching of the data.
    #[serde(default)]
    pub pipeline: Pipeline,
    /// The training recipe the defaults came from (`--preset`), if any.
    #[serde(default)]
    pub preset: Option<String>,
}

/// How examples are prepared and batched; see [`crate::data::OpenOptions`].
/// Also the command line's flags for them (their docs are the help), so a
/// field cannot be missed on the way from the flags to the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
#[command(next_help_heading = "Data pipeline")]
pub struct Pipeline {
    /// Augment the training split: CIFAR pad 4 + random crop + flip; ImageNet random-resized crop, colour jitter, lighting, flip
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub augment: bool,
    /// How CIFAR's pad before the random crop is filled: zero (fb.resnet) or reflect (the paper's scripts)
    #[arg(long, value_enum, default_value = "zero")]
    pub padding: Padding,
    /// Per-channel normalisation: auto (fb-resnet for CIFAR, imagenet for ImageNet, none otherwise), none, fb-resnet, tau-resnet, imagenet
    #[arg(long, default_value = "auto")]
    pub normalize: String,
    /// Drop each epoch's last short training batch
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub drop_last: bool,
    /// ImageNet crop side
    #[arg(long, default_value_t = ImageNetOptions::default().size)]
    pub crop_size: usize,
    /// ImageNet eval: resize the shorter side to this, then centre-crop
    #[arg(long, default_value_t = ImageNetOptions::default().resize)]
    pub resize: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        let imagenet = ImageNetOptions::default();
        Pipeline {
            augment: false,
            padding: Padding::Zero,
            normalize: "auto".into(),
            drop_last: false,
            crop_size: imagenet.size,
            resize: imagenet.resize,
        }
    }
}

impl Pipeline {
    /// The per-channel statistics applied to `dataset`.
    pub fn normalization(&self, dataset: &str) -> Result<Option<Normalize>> {
        match self.normalize.as_str() {
            "auto" => Ok(Normalize::default_for(dataset)),
            "none" => Ok(None),
            name => Normalize::named(name).map(Some),
        }
    }
}

/// The options of the ResNet family beyond `--depth` (`kappa models` lists
/// the names). Also the command line's flags for them, as [`Pipeline`] is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
#[command(next_help_heading = "Conv nets")]
pub struct ArchOptions {
    /// cifar (depth 6n+2) or imagenet (18/34/50/101/152) layout [default: imagenet for --data imagenet, else cifar]
    #[arg(long, value_enum)]
    pub family: Option<Family>,
    /// CIFAR shortcut where the shape changes: a (subsample + zero channels) or b (1×1 conv + BN)
    #[arg(long, value_enum, default_value = "a")]
    pub shortcut: ShortcutKind,
    /// τ of tau-resnet / tau-resnet-nobn [default: 1/√blocks on CIFAR, 2/√(largest stage) on ImageNet]
    #[arg(long, allow_hyphen_values = true)]
    pub tau: Option<f64>,
    /// γ of the BN before the last linear layer: one (the paper) or uniform (the old code's U(0,1))
    #[arg(long, value_enum, default_value = "one")]
    pub lastbn_gamma: LastBnGamma,
    /// Dropout probability before the last linear layer (ImageNet Table A1 uses 0.3)
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    pub dropout: f64,
    /// vgg16's first-stage channels; later stages have 2×, 4×, 8×, 8× and the hidden layers 8× [default: 64]
    #[arg(long)]
    pub base_width: Option<usize>,
}

/// The command line's default run (a 20×256 He-initialised MLP on the
/// synthetic data, SGD with momentum, 6 epochs) without its analysis: the base
/// that code building runs changes what it needs from.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "mlp".into(),
            depth: 20,
            width: 256,
            bn: false,
            init: Init::He,
            data: "synthetic".into(),
            data_dir: None,
            crop_resize: None,
            limit_train: None,
            limit_test: None,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            epochs: Some(6),
            iterations: None,
            batch_size: 128,
            seed: 0,
            out: PathBuf::from("runs/default"),
            freeze: Vec::new(),
            log_every: 10,
            device: "cpu".into(),
            dtype: Dtype::F32,
            analysis: AnalysisConfig::default(),
            arch: ArchOptions::default(),
            pipeline: Pipeline::default(),
            preset: None,
        }
    }
}

/// The first key of `given` that `known` (the configuration read from it,
/// written back as JSON) lacks, as a dotted path below `path`. Values that
/// are not objects in both are left to serde's own checks.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value, path: &str) -> Option<String> {
    let (serde_json::Value::Object(given), serde_json::Value::Object(known)) = (given, known) else { return None };
    given.iter().find_map(|(key, value)| match known.get(key) {
        None => Some(format!("{path}.{key}")),
        Some(default) => unknown_key(value, default, &format!("{path}.{key}")),
    })
}

/// Settings a resumed run may hold other than its checkpoint's: its length
/// (`--epochs`, `--iterations`), and where the run, its data and its device
/// are now (a moved folder, a dataset elsewhere, the same run on a GPU).
const RESUMABLE: [&str; 5] = ["epochs", "iterations", "out", "data_dir", "device"];

impl TrainConfig {
    pub fn device(&self) -> Result<Device> {
        self.device.parse()
    }

    /// What a checkpoint's metadata must agree with this configuration on to
    /// resume it: the dtype, optimiser and seed by name, and every setting
    /// but those a resumed run may change (`RESUMABLE`) as one JSON object,
    /// so a config.json edited between checkpoint and resume is refused
    /// rather than recorded as what the whole run used.
    pub fn checkpoint_identity(&self) -> [(&'static str, String); 4] {
        let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let mut settings = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = settings.as_object_mut() {
            fields.retain(|key, _| !RESUMABLE.contains(&key.as_str()));
        }
        [
            ("dtype", name(serde_json::json!(self.dtype))),
            ("optimizer", name(serde_json::json!(self.optimizer))),
            ("seed", self.seed.to_string()),
            (crate::checkpoint::SETTINGS, settings.to_string()),
        ]
    }

    /// The configuration a run directory's `config.json` holds, with `out` set
    /// to that directory (it may have moved since).
    pub fn load_run(run_dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Saved {
            train: TrainConfig,
        }
        let path = run_dir.join("config.json");
        let text = read_file(&path)
            .map_err(|e| Error::data(&path, format!("cannot read it ({e}); expected a run directory written by `kappa train`")))?;
        let expected = |e: &dyn std::fmt::Display| {
            Error::data(&path, format!("expected the configuration `kappa train` writes, {{\"train\": {{...}}}}: {e}"))
        };
        // An object first: serde would read a struct from an array too, and then speak of its length.
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| expected(&e))?;
        if !value.is_object() {
            let kind = match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(expected(&format!("it holds {kind}, not an object")));
        }
        // From the text, so serde's error says the line and column of the value at fault.
        let saved: Saved = serde_json::from_slice(&text).map_err(|e| expected(&e))?;
        // serde skips a key no field reads: a hand-edited "lrr" would resume
        // at the old rate. What was read, written back, has every key it read.
        let known = serde_json::to_value(&saved.train).map_err(|e| expected(&e))?;
        if let Some(key) = unknown_key(&value["train"], &known, "train") {
            return Err(expected(&format!("it has a key {key} that no setting of this kappa reads")));
        }
        let cfg = TrainConfig { out: run_dir.to_path_buf(), ..saved.train };
        cfg.validate().map_err(|e| Self::saved_error(run_dir, e))?;
        Ok(cfg)
    }

    /// An argument error of the configuration a run directory holds, named as
    /// its `config.json`'s, not as flags the user never gave.
    pub fn saved_error(run_dir: &Path, e: Error) -> Error {
        match e {
            e @ Error::Argument { .. } => {
                Error::data(run_dir.join("config.json"), format!("holds a configuration `kappa train` would refuse: {e}"))
            }
            e => e,
        }
    }

    /// Checks what clap cannot: relations between flags and value ranges.
    pub fn validate(&self) -> Result<()> {
        crate::models::check_name(&self.model)?;
        if self.dtype == Dtype::F64 && self.device()? != Device::Cpu {
            return Err(Error::arg("--dtype", "f64 runs on the CPU only; use f32 on CUDA"));
        }
        if self.batch_size == 0 {
            return Err(Error::arg("--batch-size", "must be at least 1"));
        }
        if self.batch_size == 1 && self.bn_over_examples() {
            return Err(Error::arg(
                "--batch-size",
                format!("1: {} normalises each unit over the batch, which one example leaves all zeros", self.model),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::arg("--lr", format!("{} is not a positive learning rate", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::arg("--momentum", format!("{} is not in [0, 1)", self.momentum)));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::arg("--nesterov", "needs --momentum > 0"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::arg("--weight-decay", format!("{} is not a non-negative number", self.weight_decay)));
        }
        match (self.epochs, self.iterations) {
            (Some(0), _) => Err(Error::arg("--epochs", "must be at least 1")),
            (Some(_), Some(_)) => Err(Error::arg("--iterations", "give --epochs or --iterations, not both")),
            _ => Ok(()),
        }?;
        self.analysis.validate()?;
        if self.log_every == 0 {
            return Err(Error::arg("--log-every", "must be at least 1"));
        }
        self.pipeline.normalization(&self.data)?;
        self.schedule.validate()?;
        if self.freeze.contains(&0) {
            return Err(Error::arg("--freeze", "layer 0 does not exist; layers are numbered from 1"));
        }
        if let Some(twice) = self.freeze.iter().enumerate().find_map(|(i, l)| self.freeze[..i].contains(l).then_some(l)) {
            return Err(Error::arg("--freeze", format!("layer {twice} is given twice")));
        }
        self.arch.validate()?;
        if self.arch.tau.is_some() && !self.model.starts_with("tau-") {
            let detail = format!("τ scales the residual branches of tau-resnet and tau-resnet-nobn, and --model is {}", self.model);
            return Err(Error::arg("--tau", detail));
        }
        Ok(())
    }
}

impl TrainConfig {
    /// Whether the model has a batch norm over a batch of examples alone (a
    /// BN over vectors: the MLP's, vgg16's hidden layers', the *-lastbn
    /// models' last), which a batch of one example leaves all zeros; a conv
    /// net's BN also averages over the image's positions.
    pub fn bn_over_examples(&self) -> bool {
        (self.model == MLP.0 && self.bn) || self.model == VGG16.0 || Variant::from_name(&self.model).is_some_and(Variant::last_bn)
    }

    /// The conv nets' layout: `--family`, else ImageNet's for ImageNet data and CIFAR's otherwise.
    pub fn family(&self) -> Family {
        self.arch.family.unwrap_or(if self.data == "imagenet" { Family::Imagenet } else { Family::Cifar })
    }

    /// Refuses a flag given on the command line (`given`, clap's ids) that
    /// `--model`, or the data pipeline, does not read. Such a flag was
    /// recorded in config.json and ignored, so the run was not the one asked
    /// for (`--width 512` on a ResNet, `--shortcut b` on a VGG). Defaults
    /// cannot be told from given values here, hence the ids. A `--preset`
    /// made for another kind of images than `--data` is refused too.
    pub fn check_flags_apply(&self, given: &[String]) -> Result<()> {
        crate::models::check_name(&self.model)?;
        if let Some(preset) = &self.preset {
            super::recipe::find(preset)?.check_data(&self.data)?;
        }
        let (mlp, vgg16, variant) = (self.model == MLP.0, self.model == VGG16.0, Variant::from_name(&self.model));
        let conv = variant.is_some();
        let cifar_shortcuts = variant.is_some_and(Variant::shortcuts) && self.family() == Family::Cifar;
        let layout = match variant.is_some_and(Variant::shortcuts) {
            true => format!(" on the {:?} layout", self.family()).to_lowercase(),
            false => String::new(),
        };
        let unread = |layout: &str, what: &str| format!("--model {}{layout} does not read it; it {what}", self.model);
        let model = |what: &str| unread("", what);
        let imagenet = self.data == "imagenet";
        let crops = format!("--data {} does not read it; it sizes ImageNet's crops", self.data);
        let padded = if imagenet { "ImageNet's augmentation crops without padding" } else { "without --augment no crop is padded" };
        // Each flag's id, whether the run reads it, and why not where it does not.
        let readers = [
            ("depth", !vgg16, model("sizes the MLP and the ResNet family (vgg16's depth is fixed)")),
            ("width", mlp, model("is the MLP's hidden width (vgg16 takes --base-width)")),
            ("bn", mlp, model("puts BN into the MLP (a conv net's name says whether it has BN)")),
            ("init", mlp, model("initialises the MLP (the conv nets keep their papers' schemes)")),
            ("base_width", vgg16, model("scales vgg16's layers")),
            ("family", conv, model("picks the ResNet family's layout")),
            (
                "shortcut",
                cifar_shortcuts,
                unread(&layout, "picks the shortcut of the CIFAR layout's models with shortcuts (the ImageNet layout always projects)"),
            ),
            (
                "lastbn_gamma",
                variant.is_some_and(Variant::last_bn),
                model("sets γ of the BN before the last linear layer of the *-lastbn models"),
            ),
            ("dropout", conv, model("is the dropout before the ResNet family's last linear layer")),
            ("crop_size", imagenet, crops.clone()),
            ("resize", imagenet, crops),
            ("padding", self.pipeline.augment && !imagenet, format!("it fills the pad of --augment's random crop, and {padded}")),
        ];
        match readers.into_iter().find(|(id, reads, _)| !reads && given.iter().any(|g| g == id)) {
            Some((id, _, detail)) => Err(Error::arg(format!("--{}", id.replace('_', "-")), detail)),
            None => Ok(()),
        }
    }
}

impl ArchOptions {
    fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::arg("--dropout", format!("{} is not a probability in [0, 1)", self.dropout)));
        }
        if let Some(tau) = self.tau.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(Error::arg("--tau", format!("{tau} is not a finite τ ≥ 0")));
        }
        if self.base_width == Some(0) {
            return Err(Error::arg("--base-width", "must be at least 1"));
        }
        Ok(())
    }
}
