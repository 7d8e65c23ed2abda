//! The `kappa` command line.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use kappa::analysis::{AnalysisConfig, ConvStat, Mode};
use kappa::experiments::{self, Scale};
use kappa::models::{Family, LastBnGamma, ShortcutKind};
use kappa::nn::Init;
use kappa::optim::Schedule;
use kappa::train::{ArchOptions, Dtype, OptimizerKind, RunOptions, TrainConfig};
use std::path::PathBuf;
use std::process::ExitCode;

// Training frees and reallocates the same activation sizes every step;
// mimalloc keeps those pages mapped instead of faulting them in again.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kappa",
    version,
    about = "Train deep networks and measure how well conditioned each layer's optimisation problem is",
    long_about = "kappa trains deep networks with a handwritten autograd and measures how well conditioned each \
layer's optimisation problem is, from the second moments of the layer's input (Σx) and of its output-gradient \
(Σ∇h), after Huang et al., ECCV 2020, \"Layer-wise Conditioning Analysis in Exploring the Learning Dynamics of DNNs\".\n\n\
Start with `kappa train` (a 20×256 MLP on the built-in synthetic data, about a minute on two cores)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (or --resume one); writes config.json, metrics.jsonl, checkpoint.safetensors and summary.json to --out
    Train(TrainCommand),
    /// Analyse a model's conditioning without training it (at initialisation, or after --iterations)
    Analyze(AnalyzeArgs),
    /// Render plots (PNG, SVG) and a markdown summary from run directories; several runs overlay
    Report {
        /// Run directories written by `kappa train`
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write the report [default: the single run's directory, else ./report]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Analysis iterations to show in the per-layer plots [default: first, middle, last]
        #[arg(long, value_delimiter = ',')]
        iterations: Vec<usize>,
    },
    /// Run one of the papers' experiments end to end and report it
    Reproduce(ReproduceArgs),
    /// List every model name with its options
    Models,
    /// Download and verify datasets
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Report the CUDA driver, libraries and device, and check every backend op on it against the CPU
    Doctor {
        /// The device to check: cuda or cuda:N
        #[arg(long, default_value = "cuda:0")]
        device: String,
    },
    /// Time a kernel family with counted flops and bytes
    Profile {
        #[command(subcommand)]
        target: ProfileTarget,
    },
}

#[derive(Subcommand)]
enum ProfileTarget {
    /// Σx Gram accumulation and eigvalsh for one activation shape (N,C,1,1 dense; N,C,H,W 3×3 conv patches)
    Covariance {
        /// Activation shape N,C,H,W
        #[arg(long, default_value = "1024,256,1,1")]
        shape: String,
        /// cpu, or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Timed repetitions (the median is printed)
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
}

#[derive(Args)]
struct TrainCommand {
    #[command(flatten)]
    train: TrainArgs,
    /// Also checkpoint every N iterations to RUN_DIR/checkpoint.safetensors (always at every epoch end and at the end)
    #[arg(long, default_value_t = 0, value_name = "N")]
    checkpoint_every: usize,
    /// Continue the run in RUN_DIR from its checkpoint; only --epochs, --iterations and --checkpoint-every may be given with it
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
}

/// What `--resume` lets change: the run's length and its checkpointing.
const RESUME_FLAGS: &[&str] = &["resume", "epochs", "iterations", "checkpoint_every"];

impl TrainCommand {
    /// The run to start, or the run in `--resume`'s directory with its new length.
    /// `given` are the flags on the command line.
    fn into_run(self, given: &[String]) -> anyhow::Result<(TrainConfig, RunOptions)> {
        let opts = RunOptions { checkpoint_every: Some(self.checkpoint_every), resume: self.resume.is_some(), weights: None };
        let Some(dir) = self.resume else {
            return Ok((self.train.into_config(), opts));
        };
        if let Some(flag) = given.iter().find(|f| !RESUME_FLAGS.contains(&f.as_str())) {
            let detail = format!(
                "the run keeps the configuration in {}; only --epochs, --iterations and --checkpoint-every may be given with --resume, not --{}",
                dir.join("config.json").display(),
                flag.replace('_', "-")
            );
            return Err(kappa::Error::arg("--resume", detail).into());
        }
        let mut cfg = TrainConfig::load_run(&dir)?;
        match (self.train.epochs, self.train.iterations) {
            (Some(epochs), _) => (cfg.epochs, cfg.iterations) = (Some(epochs), None),
            (_, Some(iterations)) => (cfg.epochs, cfg.iterations) = (None, Some(iterations)),
            _ => {}
        }
        Ok((cfg, opts))
    }
}

/// The ids of the arguments of `subcommand` given on the command line, not defaulted.
fn given_flags(matches: &ArgMatches, subcommand: &str) -> Vec<String> {
    let (Some(m), Some(cmd)) = (matches.subcommand_matches(subcommand), Cli::command().find_subcommand(subcommand).cloned()) else {
        return Vec::new();
    };
    cmd.get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
        .map(str::to_string)
        .collect()
}

#[derive(Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Load parameters and BN buffers from a safetensors state dict (F32, F64, F16 or BF16;
    /// e.g. PyTorch's `safetensors.torch.save_file(model.state_dict(), FILE)`) instead of initialising
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Also build the exact FIM and second moment M from per-example gradients and compare them
    /// with the Kronecker approximation (tiny nets: paper Fig. 1, 2)
    #[arg(long)]
    exact: bool,
    /// Examples the exact matrices average over
    #[arg(long, default_value_t = 1024)]
    examples: usize,
}

#[derive(Args)]
struct ReproduceArgs {
    /// Experiment name (see --list)
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// List every experiment with its scale and an estimated time
    #[arg(long)]
    list: bool,
    /// ci: reduced, minutes on two cores; paper: the published settings
    #[arg(long, value_enum, default_value = "ci")]
    scale: Scale,
    /// Directory holding MNIST's files (the synthetic data stands in when they are absent)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the runs and the report go [default: runs/reproduce-<name>-<scale>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Subcommand)]
enum DataAction {
    /// Download a dataset's canonical files, verify their SHA-256 and move them (or, for a tarball, its extracted files) into place atomically
    Fetch {
        /// Dataset name (mnist, cifar10, cifar100)
        name: String,
        /// Directory to put the files in (created if missing)
        #[arg(long)]
        dir: PathBuf,
        /// Base URL to download from instead of the default mirrors (repeatable, tried in order)
        #[arg(long = "mirror")]
        mirrors: Vec<String>,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Model name (see `kappa models`)
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Number of linear layers, output layer included
    #[arg(long, default_value_t = 20)]
    depth: usize,
    /// Units per hidden layer
    #[arg(long, default_value_t = 256)]
    width: usize,
    /// Batch norm between each hidden linear layer and its ReLU
    #[arg(long)]
    bn: bool,
    /// Weight initialisation: lecun (the paper's "random", N(0, 1/fan_in)), he, xavier
    #[arg(long, default_value = "he")]
    init: Init,
    /// Dataset: synthetic (built in, MNIST-shaped) or mnist (IDX files in --data-dir)
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Directory holding the dataset's files
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Centre-crop to C×C then resize to S×S, as C:S (the paper's small MNIST is 20:12)
    #[arg(long, value_parser = parse_crop_resize)]
    crop_resize: Option<(usize, usize)>,
    /// Use only the first N training examples
    #[arg(long)]
    limit_train: Option<usize>,
    /// sgd, adam, or gd (full-batch gradient descent: every step sees the whole training set)
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// Learning rate (before the schedule)
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Nesterov momentum
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay on every parameter
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// constant, or multistep:E1,E2[:gamma] (multiply by gamma, default 0.1, at those epochs)
    #[arg(long, default_value = "constant")]
    schedule: Schedule,
    /// Epochs to train [default: 6]
    #[arg(long, conflicts_with = "iterations")]
    epochs: Option<usize>,
    /// Iterations (optimiser steps) to train, instead of --epochs
    #[arg(long)]
    iterations: Option<usize>,
    /// Examples per step (ignored by --optimizer gd)
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Seed for initialisation and shuffling; the same seed gives the same trajectory
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory [default: runs/<model>-<unix time>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Comma-separated 1-based layers to freeze (no updates), e.g. 2,4
    #[arg(long, value_delimiter = ',')]
    freeze: Vec<usize>,
    /// Write a training record every N iterations
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// cpu, or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Element type on the CPU: f32, or f64 for spectra resolved to ~1e-16·λmax [default: f32; f64 for analyze --exact]
    #[arg(long, value_enum)]
    dtype: Option<Dtype>,
    #[command(flatten)]
    arch: ArchArgs,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

/// Options of the ResNet family (`kappa models` lists the names).
#[derive(Args)]
#[command(next_help_heading = "Conv nets")]
struct ArchArgs {
    /// cifar (depth 6n+2) or imagenet (18/34/50/101/152) layout [default: imagenet for --data imagenet, else cifar]
    #[arg(long, value_enum)]
    family: Option<Family>,
    /// CIFAR shortcut where the shape changes: a (subsample + zero channels) or b (1×1 conv + BN)
    #[arg(long, value_enum, default_value = "a")]
    shortcut: ShortcutKind,
    /// τ of tau-resnet / tau-resnet-nobn [default: 1/√blocks on CIFAR, 2/√(largest stage) on ImageNet]
    #[arg(long)]
    tau: Option<f64>,
    /// γ of the BN before the last linear layer: one (the paper) or uniform (the old code's U(0,1))
    #[arg(long, value_enum, default_value = "one")]
    lastbn_gamma: LastBnGamma,
    /// Dropout probability before the last linear layer (ImageNet Table A1 uses 0.3)
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
}

impl ArchArgs {
    fn into_options(self) -> ArchOptions {
        ArchOptions { family: self.family, shortcut: self.shortcut, tau: self.tau, lastbn_gamma: self.lastbn_gamma, dropout: self.dropout }
    }
}

/// Layer-wise conditioning analysis (Σx, Σ∇h, κ_p, weight domination, dying neurons).
#[derive(Args)]
#[command(next_help_heading = "Conditioning analysis")]
struct AnalysisArgs {
    /// Analyse every N iterations, the initialisation (iteration 0) included; 0 turns it off
    #[arg(long, default_value_t = 50)]
    analyze_every: usize,
    /// Also analyse at these iterations, e.g. 0,1,2,3 (paper Fig. A11)
    #[arg(long, value_delimiter = ',')]
    analyze_at: Vec<usize>,
    /// empirical: true labels, reusing the training backward; fisher: labels sampled from the model's softmax
    #[arg(long, value_enum, default_value = "empirical")]
    analysis_mode: Mode,
    /// Batches to accumulate Σx and Σ∇h over at each analysis (8 × 128 examples cover a 784-d input)
    #[arg(long, default_value_t = 8)]
    analysis_batches: usize,
    /// Centre the second moments (covariances) instead of the paper's uncentred E[x xᵀ]
    #[arg(long)]
    centered: bool,
    /// Percentages p for the generalised condition numbers κ_p = λmax / λ_(p·d)
    #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
    kappa_p: Vec<f64>,
    /// Save every spectrum as .npy under RUN_DIR/spectra
    #[arg(long)]
    save_spectra: bool,
    /// Flag weight domination when σmax(∂L/∂W)/σmax(W) falls below this
    #[arg(long, default_value_t = 1e-3)]
    domination_threshold: f64,
    /// A conv layer's Σx: over input patches C_in·k·k (the paper), or over channels C_in (the old Torch code)
    #[arg(long, value_enum, default_value = "patch")]
    conv_stat: ConvStat,
}

impl AnalysisArgs {
    fn into_config(self) -> AnalysisConfig {
        AnalysisConfig {
            every: self.analyze_every,
            at: self.analyze_at,
            mode: self.analysis_mode,
            batches: self.analysis_batches,
            centered: self.centered,
            kappa_p: self.kappa_p,
            save_spectra: self.save_spectra,
            domination_threshold: self.domination_threshold,
            exact_at: Vec::new(),
            exact_examples: 1024,
            conv_stat: self.conv_stat,
        }
    }
}

fn parse_crop_resize(s: &str) -> Result<(usize, usize), String> {
    let parsed = s.split_once(':').and_then(|(c, o)| Some((c.parse().ok()?, o.parse().ok()?)));
    match parsed {
        Some((c, o)) if c > 0 && o > 0 => Ok((c, o)),
        _ => Err(format!("'{s}' is not CROP:SIZE with two positive whole numbers, e.g. 20:12")),
    }
}

impl TrainArgs {
    fn into_config(self) -> TrainConfig {
        let out = self.out.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            PathBuf::from(format!("runs/{}-{now}", self.model))
        });
        TrainConfig {
            model: self.model,
            depth: self.depth,
            width: self.width,
            bn: self.bn,
            init: self.init,
            data: self.data,
            data_dir: self.data_dir,
            crop_resize: self.crop_resize,
            limit_train: self.limit_train,
            optimizer: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            epochs: if self.iterations.is_none() { Some(self.epochs.unwrap_or(6)) } else { None },
            iterations: self.iterations,
            batch_size: self.batch_size,
            seed: self.seed,
            out,
            freeze: self.freeze,
            log_every: self.log_every,
            device: self.device,
            dtype: self.dtype.unwrap_or_default(),
            analysis: self.analysis.into_config(),
            arch: self.arch.into_options(),
        }
    }
}

fn reproduce(args: ReproduceArgs) -> anyhow::Result<()> {
    if args.list {
        println!("{:<8} {:>8}  description", "name", "ci time");
        for p in experiments::presets() {
            println!("{:<8} {:>6.1}m  {}", p.name, p.ci_minutes, p.description);
        }
        return Ok(());
    }
    let preset = experiments::find(args.name.as_deref().unwrap_or_default())?;
    let (data, note) = experiments::DataChoice::mnist_or_synthetic(args.data_dir.as_deref());
    if let Some(note) = &note {
        eprintln!("note: {note}");
    }
    let scale = format!("{:?}", args.scale).to_lowercase();
    let out = args.out.unwrap_or_else(|| PathBuf::from(format!("runs/reproduce-{}-{scale}", preset.name)));
    let summaries = experiments::reproduce(preset, args.scale, &data, &out, &args.device)?;
    let dirs: Vec<PathBuf> = summaries.iter().map(|(name, _)| out.join(name)).collect();
    let report = kappa::report::render(&dirs, &out, &Default::default())?;
    println!("\n{} ({scale} scale, {} data)", preset.name, data.name);
    for (name, s) in &summaries {
        println!("  {name:<14} {}", s.line());
    }
    println!("expected (paper): {}", preset.expected);
    println!("report: {}", report.markdown.display());
    Ok(())
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let (cfg, opts) = args.into_run(&given_flags(matches, "train"))?;
            let summary = kappa::train::run_with(&cfg, &opts)?;
            println!("{}", summary.line());
        }
        Command::Analyze(args) => {
            let explicit = args.train.iterations.or(args.train.epochs);
            let dtype = args.train.dtype.unwrap_or(if args.exact { Dtype::F64 } else { Dtype::F32 });
            let mut cfg = args.train.into_config();
            cfg.dtype = dtype;
            if explicit.is_none() {
                (cfg.iterations, cfg.epochs) = (Some(0), None);
            }
            let at = cfg.iterations.unwrap_or(0);
            cfg.analysis.at = vec![at];
            if args.exact {
                (cfg.analysis.exact_at, cfg.analysis.exact_examples) = (vec![at], args.examples);
            }
            let summary = kappa::train::run_with(&cfg, &RunOptions { weights: args.weights, ..Default::default() })?;
            println!("{}", summary.line());
        }
        Command::Report { runs, out, iterations } => {
            let out = out.unwrap_or_else(|| if runs.len() == 1 { runs[0].clone() } else { PathBuf::from("report") });
            let opts = kappa::report::ReportOptions { iterations, ..Default::default() };
            let summary = kappa::report::render(&runs, &out, &opts)?;
            for w in &summary.warnings {
                eprintln!("warning: {w}");
            }
            println!("wrote {} and {} plots", summary.markdown.display(), summary.plots.len());
        }
        Command::Reproduce(args) => reproduce(args)?,
        Command::Models => {
            for (name, options) in kappa::models::models() {
                println!("{name:<12} {options}");
            }
        }
        Command::Doctor { device } => kappa::doctor::run(&device)?,
        Command::Profile { target: ProfileTarget::Covariance { shape, device, repeats } } => {
            kappa::profile::covariance(&shape, &device, repeats)?
        }
        Command::Data { action: DataAction::Fetch { name, dir, mirrors } } => {
            let manifest = kappa::data::fetch::manifest(&name)?;
            let mirrors = if mirrors.is_empty() { manifest.default_mirrors() } else { mirrors };
            let paths = manifest.fetch(&mirrors, &dir, |file, done, total| {
                if Some(done) == total {
                    eprintln!("  {file}: {done} bytes");
                }
            })?;
            for p in paths {
                println!("verified {}", p.display());
            }
        }
    }
    Ok(())
}
