//! The model-run half of `kappa doctor --full`: the same short training runs
//! (one seed, analysed every few steps) on a device backend and on the CPU,
//! compared figure by figure. Generic over the backend, so the tests run the
//! very same code with the CPU on both sides.
//!
//! What is compared, from each run's `metrics.jsonl` and final checkpoint:
//! every step's loss; every analysis record's λmax, κ_50, rank and dead
//! fraction (Σx and Σ∇h); every final parameter and BN buffer.
//!
//! Tolerances (f32 on both sides, TF32 off). Iteration 0's analysis and the
//! first step's loss are computed from the state both runs share (the same
//! initialisation), so they are compared tightly: only rounding differs.
//! Later figures come from trajectories that part once a ReLU's input flips
//! sign on one side and not the other, which f32 rounding alone does within a
//! few steps; they are compared loosely, to catch a broken op (an O(1) change,
//! a NaN), not rounding. The loose bounds are a priori; the first GPU run's
//! JSON records every error next to its bound, and it shortened the device's
//! runs ([`RunSize::DEVICE`]) rather than widen them.

use crate::analysis::{LayerRecord, Mode, Spectrum};
use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::checkpoint::{self, TensorFile};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::train::{self, RunOptions, TrainConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The bounds one comparison applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    /// Relative, the first step's loss. Logits differ by a few f32 roundings
    /// per layer (≈1e-6 relative, different summation orders in the GEMMs);
    /// the loss is summed in f64, so it inherits that and no more.
    pub loss_first: f64,
    /// Relative, iteration 0's λmax. An f32 Gram of up to 10⁵ rows summed in
    /// another order differs by ≈√rows·ε ≈ 2e-5 relative; the activations
    /// feeding it carry ≈1e-6 per layer through 20 layers: 1e-3 leaves a
    /// factor of ten over both.
    pub lambda_first: f64,
    /// Multiplies the record's own rounding bound for κ_p at iteration 0:
    /// λ_p is known to ±`tolerance` (the rank cutoff, max(dim, √samples)·ε·λmax),
    /// so κ_p = λmax/λ_p moves by up to κ_p·tolerance/λ_p relative; 4× that, plus
    /// `lambda_first` for λmax itself.
    pub kappa_rounding: f64,
    /// Units of rank that may differ at iteration 0, as a fraction of the
    /// dimension (at least one): eigenvalues at the cutoff fall either side.
    pub rank_first: f64,
    /// Relative, every later step's loss.
    pub loss_later: f64,
    /// Relative, later λmax.
    pub lambda_later: f64,
    /// Relative, later κ_50 (a ratio of two drifting eigenvalues).
    pub kappa_later: f64,
    /// Rank difference as a fraction of the dimension, later.
    pub rank_later: f64,
    /// Absolute, dead-unit fractions after iteration 0 (at 0: one unit, as a
    /// unit whose largest pre-activation is a rounding from 0 may flip).
    pub dead_later: f64,
    /// Norm-wise relative (to the tensor's largest entry), final parameters
    /// and BN buffers after all steps.
    pub params: f64,
}

impl Tolerances {
    pub const F32: Tolerances = Tolerances {
        loss_first: 1e-5,
        lambda_first: 1e-3,
        kappa_rounding: 4.0,
        rank_first: 0.01,
        loss_later: 0.05,
        lambda_later: 0.2,
        kappa_later: 0.5,
        rank_later: 0.1,
        dead_later: 0.1,
        params: 0.1,
    };
    /// Nothing may differ: two runs of the same code on the same backend.
    pub const EXACT: Tolerances = Tolerances {
        loss_first: 0.0,
        lambda_first: 0.0,
        kappa_rounding: 0.0,
        rank_first: 0.0,
        loss_later: 0.0,
        lambda_later: 0.0,
        kappa_later: 0.0,
        rank_later: 0.0,
        dead_later: 0.0,
        params: 0.0,
    };
}

/// One compared figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// e.g. `loss`, `conv3 sigma_x lambda_max`, `param layer1.0.conv1.weight`.
    pub what: String,
    /// The iteration (for parameters: the run's last).
    pub iteration: usize,
    pub device: f64,
    pub cpu: f64,
    /// Relative, absolute or norm-wise, as the figure's tolerance says.
    pub error: f64,
    pub tolerance: f64,
    /// Compared tightly (shared state) rather than loosely.
    pub tight: bool,
}

impl Figure {
    pub fn passed(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// |a − b| / |b|, with 0 against 0 and NaN agreeing only with NaN.
fn relative(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => 0.0,
        (true, false) | (false, true) => f64::INFINITY,
        _ if a == b => 0.0,
        _ => (a - b).abs() / b.abs().max(f64::MIN_POSITIVE),
    }
}

/// A run's per-step losses and analysis records, from its `metrics.jsonl`.
#[derive(Clone, Debug, Default)]
pub struct RunFigures {
    /// Loss by iteration (the train record's, written every step).
    pub losses: BTreeMap<usize, f64>,
    pub analysis: Vec<LayerRecord>,
}

pub fn read_figures(run: &Path) -> Result<RunFigures> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::data(&path, format!("cannot read: {e}")))?;
    let mut out = RunFigures::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Record>(line).map_err(|e| Error::data(&path, format!("not a metrics record: {e}")))? {
            Record::Train(r) => {
                out.losses.insert(r.iteration, r.loss.unwrap_or(f64::NAN));
            }
            Record::Analysis(r) => out.analysis.push(*r),
            _ => {}
        }
    }
    Ok(out)
}

fn kappa_50(s: &Spectrum) -> f64 {
    s.kappa.get("50").copied().flatten().unwrap_or(f64::INFINITY)
}

/// Compares the device run's figures with the CPU run's.
pub fn compare_figures(dev: &RunFigures, cpu: &RunFigures, tol: &Tolerances) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |what: String, iteration, device: f64, cpu: f64, error: f64, tolerance: f64, tight| {
        out.push(Figure { what, iteration, device, cpu, error, tolerance, tight });
    };
    for (&it, &want) in &cpu.losses {
        let got = dev.losses.get(&it).copied().unwrap_or(f64::NAN);
        // Train record 1 is the first step, taken from the shared initial state.
        let (tolerance, tight) = if it <= 1 { (tol.loss_first, true) } else { (tol.loss_later, false) };
        push("loss".into(), it, got, want, relative(got, want), tolerance, tight);
    }
    for want in &cpu.analysis {
        let got = dev.analysis.iter().find(|r| r.iteration == want.iteration && r.layer == want.layer);
        let Some(got) = got else {
            push(format!("{} analysis record", want.layer), want.iteration, f64::NAN, 1.0, f64::INFINITY, 0.0, true);
            continue;
        };
        let first = want.iteration == 0;
        for (name, g, w) in [("sigma_x", &got.sigma_x, &want.sigma_x), ("sigma_grad", &got.sigma_grad, &want.sigma_grad)] {
            // Fisher labels are sampled from the softmax: one that sits on a CDF
            // boundary may differ (the op check allows 1%), which moves Σ∇h by
            // O(1/batch) even from a shared state, so it is compared loosely.
            let tight = first && !(name == "sigma_grad" && want.mode == Mode::Fisher);
            let what = |f: &str| format!("{} {name} {f}", want.layer);
            let lambda_tol = if tight { tol.lambda_first } else { tol.lambda_later };
            push(what("lambda_max"), want.iteration, g.lambda_max, w.lambda_max, relative(g.lambda_max, w.lambda_max), lambda_tol, tight);
            let (gk, wk) = (kappa_50(g), kappa_50(w));
            let kappa_tol = match tight {
                true if wk.is_finite() => tol.lambda_first + tol.kappa_rounding * w.tolerance * wk / w.lambda_max.max(f64::MIN_POSITIVE),
                true => 0.0,
                false => tol.kappa_later,
            };
            // Both infinite (λ_50 numerically zero on both sides) agree.
            let kappa_err = if gk.is_infinite() && wk.is_infinite() { 0.0 } else { relative(gk, wk) };
            push(what("kappa_50"), want.iteration, gk, wk, kappa_err, kappa_tol, tight);
            let rank_fraction = if tight { tol.rank_first } else { tol.rank_later };
            let rank_tol = (rank_fraction * w.dim as f64).max(if rank_fraction > 0.0 { 1.0 } else { 0.0 });
            push(what("rank"), want.iteration, g.rank as f64, w.rank as f64, (g.rank as f64 - w.rank as f64).abs(), rank_tol, tight);
        }
        if let (Some(g), Some(w)) = (&got.neurons, &want.neurons) {
            let tolerance = match first {
                true if tol.rank_first > 0.0 => 1.0 / w.units.max(1) as f64,
                true => 0.0,
                false => tol.dead_later,
            };
            let error = (g.dead_fraction - w.dead_fraction).abs();
            push(format!("{} dead_fraction", want.layer), want.iteration, g.dead_fraction, w.dead_fraction, error, tolerance, first);
        }
    }
    out
}

/// Norm-wise relative error of two equally long tensors.
fn normwise(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    got.iter().zip(want).fold(0.0, |m, (g, w)| m.max(if g.is_nan() || w.is_nan() { f64::INFINITY } else { (g - w).abs() / scale }))
}

/// Every parameter and BN buffer of the two final checkpoints (the
/// optimiser's state aside: it follows from the parameters' path).
pub fn compare_checkpoints(dev: &TensorFile, cpu: &TensorFile, iteration: usize, tol: &Tolerances) -> Vec<Figure> {
    cpu.tensors
        .iter()
        .filter(|(name, _)| !name.starts_with("optimizer."))
        .map(|(name, want)| {
            let want = want.values.to_f64s().unwrap_or_default();
            let got = dev.tensors.get(name).and_then(|t| t.values.to_f64s()).unwrap_or_default();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            Figure {
                what: format!("param {name}"),
                iteration,
                device: norm(&got),
                cpu: norm(&want),
                error: normwise(&got, &want),
                tolerance: tol.params,
                tight: false,
            }
        })
        .collect()
}

/// One model of the full doctor: its name and run configuration.
#[derive(Clone, Debug)]
pub struct ModelRun {
    pub name: String,
    pub cfg: TrainConfig,
}

/// How large the doctor's runs are.
#[derive(Clone, Copy, Debug)]
pub struct RunSize {
    pub steps: usize,
    pub analyze_every: usize,
    pub batch: usize,
    /// VGG-16's first-stage channels.
    pub vgg_width: usize,
}

impl RunSize {
    /// The device run: two steps (the second uses the momentum buffer),
    /// analysed before and after each. Why not more: the first GPU run
    /// (H200, 2026-12-04) trained 24 steps analysed every 6. Every op and
    /// every iteration-0 figure was within its tight bound (worst 2.5e-6
    /// against 2e-3), yet by iteration 6 VGG's Σ∇h λmax had parted by
    /// 27–70%, and by iteration 24 most models' parameters by 11–160%, on
    /// cuDNN and on im2col alike: rounding amplified by training, which the
    /// loose bounds cannot tell from a broken op.
    pub const DEVICE: RunSize = RunSize { steps: 2, analyze_every: 1, batch: 32, vgg_width: 8 };
}

/// The models, each with the options that exercise a distinct path:
/// BN in Fisher mode over several batches; both ResNet shortcuts; max pools;
/// no BN with learnable scalars; dropout before a last BN; patch and channel
/// conv statistics.
pub fn models(size: RunSize) -> Vec<ModelRun> {
    use crate::analysis::ConvStat;
    use crate::models::ShortcutKind;
    let base = TrainConfig {
        iterations: Some(size.steps),
        epochs: None,
        batch_size: size.batch,
        limit_train: Some(size.batch * 4),
        limit_test: Some(size.batch),
        log_every: 1,
        lr: 0.05,
        seed: 7,
        ..TrainConfig::default()
    };
    let analysis = |mode, batches, conv_stat| crate::analysis::AnalysisConfig {
        every: size.analyze_every,
        mode,
        batches,
        conv_stat,
        kappa_p: vec![50.0],
        ..Default::default()
    };
    let conv = |name: &str, model: &str, stat: ConvStat, arch: train::ArchOptions| ModelRun {
        name: name.into(),
        cfg: TrainConfig {
            model: model.into(),
            depth: 8,
            data: "synthetic-cifar".into(),
            analysis: analysis(Mode::Empirical, 1, stat),
            arch,
            ..base.clone()
        },
    };
    let arch = train::ArchOptions::default;
    vec![
        ModelRun {
            name: "mlp-bn fisher".into(),
            cfg: TrainConfig { depth: 6, width: 64, bn: true, analysis: analysis(Mode::Fisher, 3, ConvStat::Patch), ..base.clone() },
        },
        conv("resnet-8 A patch", "resnet", ConvStat::Patch, train::ArchOptions { shortcut: ShortcutKind::A, ..arch() }),
        conv("resnet-8 B channel", "resnet", ConvStat::Channel, train::ArchOptions { shortcut: ShortcutKind::B, ..arch() }),
        conv("vgg16 narrow patch", "vgg16", ConvStat::Patch, train::ArchOptions { base_width: Some(size.vgg_width), ..arch() }),
        conv("tau-resnet-nobn channel", "tau-resnet-nobn", ConvStat::Channel, arch()),
        conv("resnet-lastbn dropout patch", "resnet-lastbn", ConvStat::Patch, train::ArchOptions { dropout: 0.2, ..arch() }),
    ]
}

/// Runs `cfg` on `backend` into `dir` (replaced), quietly as far as the log goes.
pub fn run_into<B: Backend>(backend: &B, cfg: &TrainConfig, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot clear the old run: {e}")))?;
    }
    let cfg = TrainConfig { out: dir.to_path_buf(), ..cfg.clone() };
    train::run_on(backend, &cfg, &RunOptions { checkpoint_every: Some(0), ..Default::default() }).map(drop)
}

/// Every compared figure of two finished runs.
pub fn compare_runs(dev: &Path, cpu: &Path, tol: &Tolerances) -> Result<Vec<Figure>> {
    let (d, c) = (read_figures(dev)?, read_figures(cpu)?);
    let last = c.losses.keys().max().copied().unwrap_or(0);
    let mut figures = compare_figures(&d, &c, tol);
    let ckpt = |run: &Path| TensorFile::read(&checkpoint::checkpoint_path(run));
    figures.extend(compare_checkpoints(&ckpt(dev)?, &ckpt(cpu)?, last, tol));
    Ok(figures)
}

/// One model's comparison on one device path.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCheck {
    pub model: String,
    /// The device side's label, e.g. `cuda:0 cudnn`.
    pub device: String,
    pub figures: Vec<Figure>,
    /// Set when a run failed outright (then `figures` is empty).
    pub error: Option<String>,
}

impl ModelCheck {
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.figures.is_empty() && self.figures.iter().all(Figure::passed)
    }
}

/// The CPU reference runs of `models`, under `root/cpu/`; a model whose CPU
/// run fails is left out of the result with its error.
pub fn reference_runs(models: &[ModelRun], root: &Path) -> Vec<(ModelRun, Result<PathBuf>)> {
    models
        .iter()
        .map(|m| {
            let dir = root.join("cpu").join(slug(&m.name));
            let ran = run_into(&Cpu::<f32>::new(), &m.cfg, &dir).map(|()| dir);
            (m.clone(), ran)
        })
        .collect()
}

/// Runs every model on `backend` (labelled `label`) and compares it with its CPU reference.
pub fn check_models<B: Backend>(
    backend: &B,
    label: &str,
    references: &[(ModelRun, Result<PathBuf>)],
    root: &Path,
    tol: &Tolerances,
) -> Vec<ModelCheck> {
    references
        .iter()
        .map(|(m, reference)| {
            let dir = root.join(slug(label)).join(slug(&m.name));
            let figures = reference
                .as_ref()
                .map_err(|e| format!("the CPU reference run failed: {e}"))
                .and_then(|cpu| run_into(backend, &m.cfg, &dir).and_then(|()| compare_runs(&dir, cpu, tol)).map_err(|e| e.to_string()));
            match figures {
                Ok(figures) => ModelCheck { model: m.name.clone(), device: label.into(), figures, error: None },
                Err(e) => ModelCheck { model: m.name.clone(), device: label.into(), figures: Vec::new(), error: Some(e) },
            }
        })
        .collect()
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// One line per model: the worst tight and loose figure against its bound.
pub fn print_models(checks: &[ModelCheck]) -> bool {
    println!("{:<30} {:<16} {:>8} {:>26} {:>26}", "model", "device", "figures", "worst tight err/tol", "worst loose err/tol");
    for c in checks {
        if let Some(e) = &c.error {
            println!("{:<30} {:<16} FAILED: {e}", c.model, c.device);
            continue;
        }
        let worst = |tight: bool| {
            c.figures
                .iter()
                .filter(|f| f.tight == tight)
                .max_by(|a, b| (a.error / a.tolerance).total_cmp(&(b.error / b.tolerance)))
                .map_or("-".to_string(), |f| format!("{:.1e}/{:.0e} {}", f.error, f.tolerance, if f.passed() { "ok" } else { "MISMATCH" }))
        };
        println!("{:<30} {:<16} {:>8} {:>26} {:>26}", c.model, c.device, c.figures.len(), worst(true), worst(false));
        for f in c.figures.iter().filter(|f| !f.passed()) {
            println!(
                "    MISMATCH at iteration {}: {}: device {} cpu {} (error {:.3e} > {:.1e})",
                f.iteration, f.what, f.device, f.cpu, f.error, f.tolerance
            );
        }
    }
    checks.iter().all(ModelCheck::passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> RunSize {
        RunSize { steps: 4, analyze_every: 2, batch: 8, vgg_width: 2 }
    }

    #[test]
    fn relative_errors_treat_zero_and_nan_as_values() {
        assert_eq!(relative(0.0, 0.0), 0.0);
        assert_eq!(relative(f64::NAN, f64::NAN), 0.0);
        assert_eq!(relative(1.0, f64::NAN), f64::INFINITY);
        assert!((relative(1.01, 1.0) - 0.01).abs() < 1e-12);
        assert_eq!(normwise(&[1.0, 2.0], &[1.0]), f64::INFINITY);
        assert!((normwise(&[1.0, 2.2], &[1.0, 2.0]) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_cpu_against_itself_matches_every_figure_exactly_and_an_injected_difference_is_a_mismatch() {
        let root = std::env::temp_dir().join(format!("kappa-run-check-{}", std::process::id()));
        let mlp = models(tiny()).into_iter().next().unwrap();
        let refs = reference_runs(std::slice::from_ref(&mlp), &root);
        let checks = check_models(&Cpu::<f32>::new(), "cpu again", &refs, &root, &Tolerances::EXACT);
        let c = &checks[0];
        assert!(c.error.is_none(), "{c:?}");
        assert!(c.passed(), "{:?}", c.figures.iter().find(|f| !f.passed()));
        let kinds = |p: &str| c.figures.iter().filter(|f| f.what.starts_with(p) || f.what.ends_with(p)).count();
        assert_eq!(kinds("loss"), 4, "one loss per step");
        assert!(kinds("lambda_max") >= 2 * 3 * 6, "Σx and Σ∇h of six layers at iterations 0, 2, 4");
        assert!(kinds("dead_fraction") > 0 && kinds("param ") > 0 && kinds("kappa_50") > 0);
        assert!(c.figures.iter().any(|f| f.tight) && c.figures.iter().any(|f| !f.tight));
        assert!(print_models(&checks));

        // The device side off by 1e-4 in the first loss: beyond the tight bound.
        let cpu = refs[0].1.as_ref().unwrap();
        let (mut dev, want) = (read_figures(cpu).unwrap(), read_figures(cpu).unwrap());
        *dev.losses.get_mut(&1).unwrap() *= 1.0 + 1e-4;
        let bad: Vec<Figure> = compare_figures(&dev, &want, &Tolerances::F32).into_iter().filter(|f| !f.passed()).collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].what.as_str(), bad[0].iteration, bad[0].tight), ("loss", 1, true));
        // A λmax off by 30% at a later analysis: beyond even the loose bound.
        let mut dev = read_figures(cpu).unwrap();
        let later = dev.analysis.iter_mut().find(|r| r.iteration > 0).unwrap();
        later.sigma_x.lambda_max *= 1.3;
        let bad: Vec<Figure> = compare_figures(&dev, &want, &Tolerances::F32).into_iter().filter(|f| !f.passed()).collect();
        assert!(bad.len() == 1 && bad[0].what.ends_with("sigma_x lambda_max") && !bad[0].tight, "{bad:?}");
        // A run with another learning rate differs somewhere once nothing may.
        let other = ModelRun { cfg: TrainConfig { lr: 0.06, ..mlp.cfg.clone() }, ..mlp.clone() };
        let dir = root.join("other");
        run_into(&Cpu::<f32>::new(), &other.cfg, &dir).unwrap();
        assert!(compare_runs(&dir, cpu, &Tolerances::EXACT).unwrap().iter().any(|f| !f.passed()));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn every_model_of_the_full_doctor_runs_on_the_cpu() {
        let root = std::env::temp_dir().join(format!("kappa-run-check-models-{}", std::process::id()));
        let refs = reference_runs(&models(RunSize { steps: 2, analyze_every: 2, batch: 4, vgg_width: 2 }), &root);
        assert_eq!(refs.len(), 6);
        for (m, r) in &refs {
            assert!(r.is_ok(), "{}: {:?}", m.name, r.as_ref().err());
            let f = read_figures(r.as_ref().unwrap()).unwrap();
            assert_eq!(f.losses.len(), 2, "{}", m.name);
            assert!(f.analysis.iter().any(|a| a.iteration == 0), "{}", m.name);
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
