//! The `kappa` command line: every subcommand's flags (clap), how they
//! become the library's configurations, and what each subcommand prints.
//! The binary only calls [`main`].

mod luckmatters;

use crate::analysis::{AnalysisConfig, ConvStat, Mode};
use crate::experiments::{self, Scale};
use crate::nn::Init;
use crate::optim::Schedule;
use crate::train::{ArchOptions, Dtype, OptimizerKind, Pipeline, RunOptions, TrainConfig};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
pub use luckmatters::{MatrixArgs, ReconArgs};
use std::path::PathBuf;
use std::process::ExitCode;

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
        /// Also write report.html: one self-contained page with the plots, tables, configurations, git revision and machine
        #[arg(long)]
        html: bool,
    },
    /// Run one of the papers' experiments end to end and report it
    Reproduce(ReproduceArgs),
    /// LuckMatters' teacher–student experiments (Tian et al.): does a wide student recover the teacher's nodes?
    Luckmatters {
        #[command(subcommand)]
        script: LuckScript,
    },
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
        /// Also train every model of the acceptance set on the device and on the CPU and compare the runs, on both convolution paths
        #[arg(long)]
        full: bool,
        /// Write every figure (errors and their tolerances) to this JSON file
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Time a kernel family with counted flops and bytes
    Profile {
        #[command(subcommand)]
        target: ProfileTarget,
    },
}

#[derive(Subcommand)]
enum LuckScript {
    /// A student MLP trained by SGD on a ReLU teacher's outputs; logs the teacher–student node correlations per layer
    Recon(ReconArgs),
    /// Projected gradient descent on weight matrices in closed form; logs every student row's norm
    Matrix(MatrixArgs),
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
    /// Every conv shape of the CIFAR ResNets (the stem, each stage's 3×3 convs, the stride-2 3×3 convs and 1×1 projections between stages), in each direction a step runs, against the bound that applies
    Conv {
        /// cpu, or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Timed repetitions (the median is printed)
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// The GPU acceptance speed figures: CIFAR ResNet training steps with and without analysis every step (img/s, peak memory), Σx accumulation against the device's peaks, eigvalsh
    Gpu {
        /// cpu, or cuda:N
        #[arg(long, default_value = "cuda:0")]
        device: String,
        /// CIFAR ResNet depths (6n+2)
        #[arg(long, default_value = "20,56,110,1202")]
        depths: String,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Timed steps per depth
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// eigvalsh sizes n
        #[arg(long, default_value = "256,576,1152,2304,4608")]
        eig_sizes: String,
        /// Write every figure to this JSON file
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TrainCommand {
    #[command(flatten)]
    train: TrainArgs,
    /// Also checkpoint every N iterations to RUN_DIR/checkpoint.safetensors (always at every epoch end and at the end)
    #[arg(long, default_value_t = 0, value_name = "N")]
    checkpoint_every: usize,
    /// Continue the run in RUN_DIR from its checkpoint; only --epochs, --iterations, --checkpoint-every and --tensorboard may be given with it
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Start from these weights instead of the initialisation: a safetensors state dict under the names
    /// `analyze --weights` takes (every parameter and BN buffer, each of the model's shape); the optimiser starts fresh
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf>,
    /// Also write TensorBoard event files to DIR as the run goes: the training and test scalars, per layer
    /// λmax and κ_p of Σx and Σ∇h, the gradient/weight ratio and dead fraction, and the alerts as text
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
}

/// What `--resume` lets change: the run's length, its checkpointing and where its curves go.
const RESUME_FLAGS: &[&str] = &["resume", "epochs", "iterations", "checkpoint_every", "tensorboard"];

impl TrainCommand {
    /// The run to start, or the run in `--resume`'s directory with its new length.
    /// `given` are the flags on the command line.
    fn into_run(self, given: &[String]) -> anyhow::Result<(TrainConfig, RunOptions)> {
        let opts = RunOptions {
            checkpoint_every: Some(self.checkpoint_every),
            resume: self.resume.is_some(),
            weights: self.init_from,
            tensorboard: self.tensorboard,
        };
        let Some(dir) = self.resume else {
            return Ok((self.train.into_config(), opts));
        };
        if let Some(flag) = given.iter().find(|f| !RESUME_FLAGS.contains(&f.as_str())) {
            let detail = format!(
                "the run keeps the configuration in {}; only --epochs, --iterations, --checkpoint-every and --tensorboard may be given with --resume, not --{}",
                dir.join("config.json").display(),
                flag.replace('_', "-")
            );
            return Err(crate::Error::arg("--resume", detail).into());
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

impl AnalyzeArgs {
    /// A run that analyses the model once: at initialisation (or the loaded
    /// weights), or after the length given on the command line (`given`), as
    /// a preset's epochs do not count; the exact curvature too with `--exact`.
    fn into_run(self, given: &[String]) -> crate::Result<(TrainConfig, RunOptions)> {
        if !self.exact && given.iter().any(|g| g == "examples") {
            return Err(crate::Error::arg("--examples", "sizes the exact curvature, which only --exact measures"));
        }
        let explicit = ["iterations", "epochs"].iter().any(|f| given.iter().any(|g| g == f));
        let dtype = self.train.dtype.unwrap_or(if self.exact { Dtype::F64 } else { Dtype::F32 });
        let mut cfg = self.train.into_config();
        cfg.dtype = dtype;
        if !explicit {
            (cfg.iterations, cfg.epochs) = (Some(0), None);
        }
        let at = cfg.iterations.unwrap_or(0);
        cfg.analysis.at = vec![at];
        if self.exact {
            (cfg.analysis.exact_at, cfg.analysis.exact_examples) = (vec![at], self.examples);
        }
        Ok((cfg, RunOptions { weights: self.weights, ..Default::default() }))
    }
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
    /// Directory holding the preset's dataset (MNIST's IDX files, or CIFAR-10's binary batches)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Without the dataset, run on the built-in stand-in (synthetic or synthetic-cifar); reports name it
    #[arg(long)]
    allow_synthetic: bool,
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
    /// Weight initialisation: he (N(0, 2/fan_in)), lecun (N(0, 1/fan_in)), xavier, he-fan-out, or
    /// uniform-fan-in: U(±1/√fan_in) weights and zero biases, Torch7's nn.Linear weight scale and so the
    /// paper's "random" init; its variance 1/(3·fan_in) makes each ReLU layer keep a sixth of its input's
    /// second moment, which is why the paper's Plain nets reach λmax near 1e-5
    #[arg(long, default_value = "he", value_parser = flag_value::<Init>)]
    init: Init,
    /// A training recipe whose settings become the defaults (flags given still win):
    /// fb-cifar, lca-cifar, tau-cifar, fb-imagenet, lca-imagenet
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Dataset: synthetic or synthetic-cifar (built in, MNIST- and CIFAR-shaped), or in --data-dir: mnist (IDX files), cifar10, cifar100 (binary batches), imagenet (train/ and val/ JPEG folders)
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
    /// Evaluate on the first N test examples only
    #[arg(long)]
    limit_test: Option<usize>,
    /// sgd, adam, or gd (full-batch gradient descent: every step sees the whole training set)
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// Learning rate (before the schedule)
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.05)]
    lr: f64,
    /// SGD momentum
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.9)]
    momentum: f64,
    /// Nesterov momentum (`--nesterov false` turns off a preset's)
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    nesterov: bool,
    /// L2 weight decay on every parameter
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.0)]
    weight_decay: f64,
    /// constant, or multistep:E1,E2[:gamma] (multiply by gamma, default 0.1, at those epochs)
    #[arg(long, default_value = "constant", value_parser = flag_value::<Schedule>)]
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
    arch: ArchOptions,
    #[command(flatten)]
    pipeline: Pipeline,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

/// The command line, with `--preset`'s recipe (if the arguments name one) as
/// the defaults of `train` and `analyze`. clap itself finds the name, in a
/// first pass that passes over errors and reads `--help` as a plain flag:
/// both are left to the parse of the command returned, whose help then shows
/// the recipe's values as the defaults.
fn command(args: &[String]) -> crate::Result<clap::Command> {
    let help = Arg::new("help").short('h').long("help").action(ArgAction::SetTrue).global(true);
    let first = Cli::command().ignore_errors(true).disable_help_flag(true).arg(help).try_get_matches_from(args);
    let named = first.ok().and_then(|m| m.subcommand()?.1.try_get_one::<String>("preset").ok().flatten().cloned());
    let Some(name) = named else {
        return Ok(Cli::command());
    };
    let recipe = crate::train::recipe::find(&name)?;
    let mut cmd = Cli::command();
    for sub in ["train", "analyze"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for (flag, value) in recipe.defaults() {
                c = c.mut_arg(flag.replace('-', "_"), |a| a.default_value(value));
            }
            c
        });
    }
    Ok(cmd)
}

/// Layer-wise conditioning analysis (Σx, Σ∇h, κ_p, weight domination, dying neurons).
#[derive(Args)]
#[command(next_help_heading = "Conditioning analysis")]
struct AnalysisArgs {
    /// Analyse every N iterations, the initialisation (iteration 0) included; 0 turns it off
    #[arg(long, default_value_t = 50)]
    analyze_every: usize,
    /// Also analyse at these iterations, e.g. 0,1,2,3 (paper Fig. A11); each at most the run's last
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
    /// Every flag is bound by name and every field set, so neither side can
    /// gain one that the other does not carry.
    fn into_config(self) -> AnalysisConfig {
        let Self {
            analyze_every,
            analyze_at,
            analysis_mode,
            analysis_batches,
            centered,
            kappa_p,
            save_spectra,
            domination_threshold,
            conv_stat,
        } = self;
        AnalysisConfig {
            every: analyze_every,
            at: analyze_at,
            mode: analysis_mode,
            batches: analysis_batches,
            centered,
            kappa_p,
            save_spectra,
            domination_threshold,
            conv_stat,
            // Only `analyze --exact` measures the exact curvature (AnalyzeArgs::into_run).
            exact_at: Vec::new(),
            exact_examples: AnalysisConfig::default().exact_examples,
        }
    }
}

/// `v`, or an error naming `flag` where it is 0.
fn at_least_one(flag: &str, v: usize) -> crate::Result<usize> {
    match v {
        0 => Err(crate::Error::arg(flag, "must be at least 1")),
        v => Ok(v),
    }
}

/// A flag's value through its `FromStr`, the error without the flag's name,
/// which clap's message already gives.
fn flag_value<T: std::str::FromStr<Err = crate::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e| match e {
        crate::Error::Argument { detail, .. } => detail,
        e => e.to_string(),
    })
}

fn parse_crop_resize(s: &str) -> Result<(usize, usize), String> {
    let parsed = s.split_once(':').and_then(|(c, o)| Some((c.parse().ok()?, o.parse().ok()?)));
    match parsed {
        Some((c, o)) if c > 0 && o > 0 => Ok((c, o)),
        _ => Err(format!("'{s}' is not CROP:SIZE with two positive whole numbers, e.g. 20:12")),
    }
}

impl TrainArgs {
    /// Every flag is bound by name and every field of the configuration set,
    /// so neither side can gain one that the other does not carry.
    fn into_config(self) -> TrainConfig {
        let Self {
            model,
            depth,
            width,
            bn,
            init,
            preset,
            data,
            data_dir,
            crop_resize,
            limit_train,
            limit_test,
            optimizer,
            lr,
            momentum,
            nesterov,
            weight_decay,
            schedule,
            epochs,
            iterations,
            batch_size,
            seed,
            out,
            freeze,
            log_every,
            device,
            dtype,
            arch,
            pipeline,
            analysis,
        } = self;
        let out = out.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            PathBuf::from(format!("runs/{model}-{now}"))
        });
        // --iterations replaces the epochs, a preset's included.
        let epochs = if iterations.is_none() { Some(epochs.unwrap_or(6)) } else { None };
        TrainConfig {
            model,
            depth,
            width,
            bn,
            init,
            data,
            data_dir,
            crop_resize,
            limit_train,
            limit_test,
            optimizer,
            lr,
            momentum,
            nesterov,
            weight_decay,
            schedule,
            epochs,
            iterations,
            batch_size,
            seed,
            out,
            freeze,
            log_every,
            device,
            dtype: dtype.unwrap_or_default(),
            analysis: analysis.into_config(),
            arch,
            pipeline,
            preset,
        }
    }
}

fn reproduce(args: ReproduceArgs) -> anyhow::Result<()> {
    if args.list {
        println!("{:<20} {:>8}  description", "name", "ci time");
        for p in experiments::all() {
            println!("{:<20} {:>6.1}m  {}", p.name, p.ci_minutes, p.description);
        }
        return Ok(());
    }
    let preset = experiments::find(args.name.as_deref().unwrap_or_default())?;
    let scale = format!("{:?}", args.scale).to_lowercase();
    let out = args.out.unwrap_or_else(|| PathBuf::from(format!("runs/reproduce-{}-{scale}", preset.name)));
    // Each reproduction gets one page, headed by what the preset is and what the paper found.
    let mut about = crate::report::About {
        title: format!("kappa reproduce {}", preset.name),
        items: vec![
            ("description".into(), preset.description.into()),
            ("expected (paper)".into(), preset.expected.into()),
            ("scale".into(), scale.clone()),
        ],
    };
    let needs = match preset.plan {
        experiments::Plan::Runs { needs, .. } => needs,
        experiments::Plan::Script(script) => {
            // A script builds its own data and runs on the host.
            let unread =
                [("--device", args.device != "cpu"), ("--data-dir", args.data_dir.is_some()), ("--allow-synthetic", args.allow_synthetic)];
            if let Some((flag, _)) = unread.iter().find(|(_, given)| *given) {
                let detail = format!("{} is a script that makes its own data and runs on the host; it does not read {flag}", preset.name);
                return Err(crate::Error::arg(*flag, detail).into());
            }
            let (measured, judged) = script(args.scale, &out)?;
            let page = crate::report::measured_page(&out, &about, &measured, &experiments::claims::markdown(&judged))?;
            println!("\n{} ({scale} scale)\n{measured}expected (paper): {}", preset.name, preset.expected);
            print!("claims against the measurements:\n{}", experiments::claims::lines(&judged));
            println!("run dir: {}\npage: {}", out.display(), page.display());
            return Ok(());
        }
    };
    let (data, note) = experiments::DataChoice::resolve(needs, args.data_dir.as_deref(), args.allow_synthetic)?;
    if let Some(note) = &note {
        eprintln!("note: {note}");
    }
    about.items.push(("data".into(), data.name.clone()));
    about.items.extend(note.iter().map(|n| ("note".into(), n.clone())));
    let findings = experiments::train_all(preset, args.scale, &data, &out, &args.device)?;
    let dirs: Vec<PathBuf> = findings.kept.iter().map(|(name, _)| out.join(name)).collect();
    // The verdicts head the report, then the sweep's runs that are not plotted.
    let preface = experiments::claims::markdown(&findings.judged) + &findings.sweep;
    let opts = crate::report::ReportOptions { html: true, about: Some(about), preface, ..Default::default() };
    let report = crate::report::render(&dirs, &out, &opts)?;
    println!("\n{} ({scale} scale, {} data)", preset.name, data.name);
    for (name, s) in &findings.kept {
        println!("  {name:<14} {}", s.line());
    }
    if !findings.sweep.is_empty() {
        println!("  (each configuration at its best learning rate by final training loss; the report lists every rate)");
    }
    if !report.conditioning.is_empty() {
        println!("measured conditioning at the last analysis:");
        for (name, line) in &report.conditioning {
            println!("  {name:<14} {line}");
        }
    }
    println!("expected (paper): {}", preset.expected);
    print!("claims against the measurements:\n{}", experiments::claims::lines(&findings.judged));
    println!("report: {}", report.markdown.display());
    if let Some(page) = &report.html {
        println!("page: {}", page.display());
    }
    Ok(())
}

/// Parses the process arguments and runs the subcommand they name.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cmd = match command(&args) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let matches = cmd.get_matches_from(&args);
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
            let given = given_flags(matches, "train");
            let (cfg, opts) = args.into_run(&given)?;
            // A resumed run's settings come from its config.json, not from flags.
            let saved = |e| if opts.resume { crate::train::TrainConfig::saved_error(&cfg.out, e) } else { e };
            cfg.check_flags_apply(&given).map_err(saved)?;
            let summary = crate::train::run_with(&cfg, &opts)?;
            println!("{}", summary.line());
        }
        Command::Analyze(args) => {
            let given = given_flags(matches, "analyze");
            let (cfg, opts) = args.into_run(&given)?;
            cfg.check_flags_apply(&given)?;
            let summary = crate::train::run_with(&cfg, &opts)?;
            println!("{}", summary.line());
        }
        Command::Report { runs, out, iterations, html } => {
            let out = out.unwrap_or_else(|| if runs.len() == 1 { runs[0].clone() } else { PathBuf::from("report") });
            let opts = crate::report::ReportOptions { iterations, html, ..Default::default() };
            let summary = crate::report::render(&runs, &out, &opts)?;
            for w in &summary.warnings {
                eprintln!("warning: {w}");
            }
            summary.snapped.iter().for_each(|line| println!("{line}"));
            let tables: Vec<String> = summary.tables.iter().map(|t| t.display().to_string()).collect();
            println!(
                "wrote {} and {} plots{}",
                summary.markdown.display(),
                summary.plots.len(),
                tables.iter().map(|t| format!(", {t}")).collect::<String>()
            );
            if let Some(page) = &summary.html {
                println!("page: {}", page.display());
            }
        }
        Command::Reproduce(args) => reproduce(args)?,
        Command::Luckmatters { script: LuckScript::Recon(args) } => {
            let (cfg, out) = args.into_config()?;
            print!("{}", crate::luckmatters::recon::run(&cfg, &out)?.summary());
            println!("run dir {}", out.display());
        }
        Command::Luckmatters { script: LuckScript::Matrix(args) } => {
            let (cfg, out) = args.into_config()?;
            print!("{}", crate::luckmatters::matrix::run(&cfg, &out)?.summary());
            println!("run dir {}", out.display());
        }
        Command::Models => {
            for (name, options) in crate::models::models() {
                println!("{name:<12} {options}");
            }
        }
        Command::Doctor { device, full, json } => crate::doctor::run(&device, full, json.as_deref())?,
        Command::Profile { target: ProfileTarget::Gpu { device, depths, batch_size, steps, eig_sizes, json } } => {
            let plan = crate::speed::Plan {
                depths: crate::speed::parse_list("--depths", &depths)?,
                batch: at_least_one("--batch-size", batch_size)?,
                steps: at_least_one("--steps", steps)?,
                eig_sizes: crate::speed::parse_list("--eig-sizes", &eig_sizes)?,
                ..crate::speed::Plan::full()
            };
            crate::speed::run(&device, &plan, json.as_deref())?
        }
        Command::Profile { target: ProfileTarget::Covariance { shape, device, repeats } } => {
            crate::profile::covariance(&shape, &device, at_least_one("--repeats", repeats)?)?
        }
        Command::Profile { target: ProfileTarget::Conv { device, batch_size, repeats } } => {
            crate::profile::conv(&device, at_least_one("--batch-size", batch_size)?, at_least_one("--repeats", repeats)?)?
        }
        Command::Data { action: DataAction::Fetch { name, dir, mirrors } } => {
            let manifest = crate::data::fetch::manifest(&name)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn train_config(args: &[&str]) -> TrainConfig {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let matches = command(&args).unwrap().try_get_matches_from(&args).unwrap();
        match Cli::from_arg_matches(&matches).unwrap().command {
            Command::Train(t) => t.train.into_config(),
            _ => unreachable!("a train command line"),
        }
    }

    #[test]
    fn every_recipe_flag_is_a_train_and_analyze_flag() {
        let cmd = Cli::command();
        for sub in ["train", "analyze"] {
            let c = cmd.find_subcommand(sub).unwrap();
            for r in crate::train::recipe::RECIPES {
                for (flag, _) in r.defaults() {
                    assert!(c.get_arguments().any(|a| a.get_long() == Some(flag)), "{} sets --{flag}, which {sub} lacks", r.name);
                }
            }
        }
    }

    #[test]
    fn a_preset_sets_defaults_and_given_flags_win() {
        let cfg = train_config(&["kappa", "train", "--preset", "lca-cifar"]);
        assert_eq!((cfg.model.as_str(), cfg.data.as_str(), cfg.epochs, cfg.batch_size), ("resnet", "cifar10", Some(160), 128));
        assert!(cfg.nesterov && cfg.pipeline.augment && cfg.pipeline.drop_last);
        assert_eq!((cfg.lr, cfg.momentum, cfg.weight_decay), (0.1, 0.9, 1e-4));
        assert_eq!(cfg.schedule, "multistep:80,120".parse().unwrap());
        assert_eq!((cfg.pipeline.padding, cfg.pipeline.normalize.as_str()), (crate::data::Padding::Reflect, "fb-resnet"));
        assert_eq!(cfg.preset.as_deref(), Some("lca-cifar"));

        let cfg = train_config(&["kappa", "train", "--lr=0.05", "--preset=tau-cifar", "--nesterov", "--drop-last", "--iterations", "3"]);
        assert_eq!((cfg.model.as_str(), cfg.lr, cfg.nesterov, cfg.pipeline.drop_last), ("tau-resnet", 0.05, true, true));
        assert_eq!((cfg.epochs, cfg.iterations), (None, Some(3)), "--iterations replaces the preset's epochs");
        let cfg = train_config(&["kappa", "train", "--preset", "fb-cifar", "--nesterov", "false", "--augment=false"]);
        assert!(!cfg.nesterov && !cfg.pipeline.augment);

        let plain = train_config(&["kappa", "train"]);
        assert_eq!((plain.model.as_str(), plain.lr, plain.nesterov, plain.pipeline.augment), ("mlp", 0.05, false, false));
        let args: Vec<String> = ["kappa", "train", "--preset", "fb-mnist"].iter().map(|a| a.to_string()).collect();
        let err = command(&args).unwrap_err().to_string();
        assert!(err.contains("unknown preset 'fb-mnist'") && err.contains("lca-imagenet"), "{err}");
    }

    #[test]
    fn the_help_shows_the_presets_values_as_the_defaults() {
        let help = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let err = command(&args).unwrap().try_get_matches_from(&args).expect_err("--help ends the parse");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
            err.render().to_string()
        };
        // --help anywhere, before the preset too, and in analyze as in train.
        for args in [
            &["kappa", "train", "--preset", "lca-cifar", "--help"][..],
            &["kappa", "train", "--help", "--preset=lca-cifar"],
            &["kappa", "analyze", "-h", "--lr", "0.2", "--preset", "lca-cifar"],
        ] {
            let text = help(args);
            for default in ["[default: resnet]", "[default: multistep:80,120]", "[default: reflect]", "[default: 160]"] {
                assert!(text.contains(default), "{args:?}: no {default} in\n{text}");
            }
        }
        let plain = help(&["kappa", "train", "--help"]);
        assert!(plain.contains("[default: mlp]") && !plain.contains("[default: resnet]"), "{plain}");
    }
}
