//! The `kappa train` job: data, trainer, analysis, progress bar, metrics, summary.

use super::config::{Dtype, OptimizerKind, TrainConfig};
use super::metrics::{MetricsLog, Summary};
use super::tensorboard::Board;
use super::trainer::{Labels, StepStats, Trainer};
use crate::analysis::exact::{self, ExactOptions};
use crate::analysis::{Analyzer, LayerRecord, Mode, TrainingBatch};
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device};
use crate::checkpoint::{self, RunState, Window};
use crate::data::{self, Batch, BatchSource, ImageNetOptions, LoadOptions, OpenOptions, Sources};
use crate::error::{Error, Result};
use crate::record::{DivergedRecord, EvalRecord, Headline, Record, ResumeRecord, TrainRecord};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// How a run starts and what it saves besides its metrics; none of it
/// changes the trajectory.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `None` writes no checkpoint; `Some(0)` one at every epoch end and at the
    /// end of the run; `Some(n)` also every n iterations.
    pub checkpoint_every: Option<usize>,
    /// Continue the run in `cfg.out` from its checkpoint, appending to its metrics.
    pub resume: bool,
    /// Start from these weights (a safetensors state dict) instead of the
    /// initialisation; config.json records the file and its SHA-256.
    pub weights: Option<PathBuf>,
    /// Also write the records as TensorBoard event files to this directory.
    pub tensorboard: Option<PathBuf>,
}

/// Runs the configured training on the configured device, checkpointing at
/// every epoch end.
pub fn run(cfg: &TrainConfig) -> Result<Summary> {
    run_with(cfg, &RunOptions { checkpoint_every: Some(0), ..Default::default() })
}

pub fn run_with(cfg: &TrainConfig, opts: &RunOptions) -> Result<Summary> {
    cfg.validate()?;
    match cfg.device()? {
        Device::Cpu if cfg.dtype == Dtype::F64 => run_on(&Cpu::<f64>::new(), cfg, opts),
        Device::Cpu => run_on(&Cpu::<f32>::new(), cfg, opts),
        Device::Cuda(i) => run_on_cuda(i, cfg, opts),
    }
}

#[cfg(not(feature = "cuda-backend"))]
fn run_on_cuda(ordinal: usize, _cfg: &TrainConfig, _opts: &RunOptions) -> Result<Summary> {
    Err(Error::CudaNotCompiled(ordinal))
}

#[cfg(feature = "cuda-backend")]
fn run_on_cuda(ordinal: usize, cfg: &TrainConfig, opts: &RunOptions) -> Result<Summary> {
    run_on(&crate::backend::cuda::Cuda::new(ordinal)?, cfg, opts)
}

/// Everything the step loop writes to: the log (and its TensorBoard copy),
/// the terminal, the summary.
struct Output {
    log: MetricsLog,
    board: Option<Board>,
    bar: ProgressBar,
    last_analysis: Vec<LayerRecord>,
}

impl Output {
    fn say(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    fn write(&mut self, record: &Record) -> Result<()> {
        self.log.write(record)?;
        match &mut self.board {
            Some(board) => board.record(record),
            None => Ok(()),
        }
    }
}

/// The analysis side of the loop: the analyzer and the batches it draws.
struct Analysis<'a> {
    analyzer: Analyzer,
    /// Further batches for `--analysis-batches`, in an order of their own so
    /// they never disturb the training order.
    extra: Box<dyn BatchSource + 'a>,
    /// The fixed examples the exact curvature is measured on.
    exact: Box<dyn BatchSource + 'a>,
}

impl Analysis<'_> {
    fn due(&self, iteration: usize) -> bool {
        let cfg = self.analyzer.config();
        cfg.due(iteration) || cfg.exact_at.contains(&iteration)
    }

    /// Measures the model before the step on `batch` (layer-wise and/or exact,
    /// as due), then takes that step at `lr`; `lr` is `None` after the last update.
    fn step<B: Backend>(
        &mut self,
        trainer: &mut Trainer<B>,
        batch: &Batch,
        lr: Option<f64>,
        iteration: usize,
        epoch: usize,
        out: &mut Output,
    ) -> Result<StepStats> {
        let cfg = self.analyzer.config().clone();
        if cfg.exact_at.contains(&iteration) {
            if let Some(examples) = self.exact.epoch(0).next().transpose()? {
                let opts = ExactOptions { examples: cfg.exact_examples, kappa_p: cfg.kappa_p.clone(), seed: iteration as u64 };
                let mut records = exact::exact_curvature(trainer, &examples, &opts)?;
                for r in &mut records {
                    r.iteration = iteration;
                    out.write(&Record::Exact(Box::new(r.clone())))?;
                }
                out.say(&exact::print_table(&records));
            }
        }
        let layerwise = cfg.due(iteration);
        let (stats, grads) = trainer.gradients(batch, Labels::True, layerwise && cfg.mode == Mode::Empirical)?;
        if layerwise {
            let extra: Vec<Batch> = self.extra.epoch(iteration).take(cfg.batches - 1).collect::<Result<_>>()?;
            let (records, alerts) = self.analyzer.analyze(trainer, TrainingBatch { batch, grads: &grads }, &extra, iteration, epoch)?;
            for r in &records {
                out.write(&Record::Analysis(Box::new(r.clone())))?;
            }
            for a in alerts {
                out.say(&format!("alert at iteration {}: {} {}: {}", a.iteration, a.layer, a.alert, a.detail));
                out.write(&Record::Alert(a))?;
            }
            out.last_analysis = records;
        }
        if let Some(lr) = lr.filter(|_| stats.loss.is_finite()) {
            trainer.apply(&grads, lr)?;
        }
        Ok(stats)
    }
}

/// Writes the checkpoint of the run as it stands, when checkpoints are on.
fn save_checkpoint<B: Backend>(
    trainer: &Trainer<B>,
    cfg: &TrainConfig,
    opts: &RunOptions,
    summary: &Summary,
    window: &Window,
    per_epoch: usize,
    analysis: Option<&Analysis>,
) -> Result<()> {
    if opts.checkpoint_every.is_none() {
        return Ok(());
    }
    let state = RunState {
        iteration: summary.iterations,
        batches_per_epoch: per_epoch,
        window: window.clone(),
        headline: summary.headline,
        forwards: trainer.model().forwards(),
        alerts: analysis.map(|a| a.analyzer.alerts_state()).unwrap_or_default(),
    };
    checkpoint::save(&cfg.out, trainer, cfg, &state)
}

/// The configured dataset as batch sources, augmented and normalised as asked.
pub fn open_data(cfg: &TrainConfig) -> Result<Sources> {
    let p = &cfg.pipeline;
    let opts = OpenOptions {
        load: LoadOptions { crop_resize: cfg.crop_resize, limit_train: cfg.limit_train, limit_test: cfg.limit_test },
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        drop_last: p.drop_last,
        augment: p.augment,
        padding: p.padding,
        normalize: p.normalization(&cfg.data)?,
        imagenet: ImageNetOptions { size: p.crop_size, resize: p.resize, ..ImageNetOptions::default() },
    };
    data::open(&cfg.data, cfg.data_dir.as_deref(), &opts)
}

/// [`run_with`] on a backend the caller opened (the doctor runs one
/// configuration on two).
pub fn run_on<B: Backend>(backend: &B, cfg: &TrainConfig, opts: &RunOptions) -> Result<Summary> {
    let sources = open_data(cfg)?;
    let mut trainer = Trainer::new(backend, cfg, sources.train.example_dims(), sources.train.classes())?;
    if let Some(weights) = &opts.weights {
        checkpoint::load_weights(weights, trainer.model_mut(), backend)?;
    }
    let resumed = match opts.resume {
        true => Some(checkpoint::resume(&cfg.out, &mut trainer, cfg)?),
        false => None,
    };

    let full_batch;
    let (loader, batch_size) = match cfg.optimizer {
        OptimizerKind::Gd => {
            full_batch = sources.train.reordered(sources.train.len(), cfg.seed, false)?;
            (&*full_batch, sources.train.len())
        }
        _ => (&*sources.train, cfg.batch_size),
    };
    let per_epoch = loader.batches_per_epoch();
    if per_epoch == 0 {
        return Err(Error::data(cfg.data_dir.clone().unwrap_or_else(|| cfg.data.clone().into()), "the training split has no examples"));
    }
    let total = cfg.iterations.unwrap_or(cfg.epochs.unwrap_or(1) * per_epoch);
    let epochs = total.div_ceil(per_epoch);
    if let Some(state) = &resumed {
        if state.batches_per_epoch != per_epoch {
            let detail = format!("taken with {} batches per epoch, but the data now gives {per_epoch}", state.batches_per_epoch);
            return Err(Error::data(checkpoint::checkpoint_path(&cfg.out), detail));
        }
        if state.iteration >= total {
            let detail = format!("the run has done {} of its {total} iterations; ask for more to continue it", state.iteration);
            return Err(Error::arg(if cfg.iterations.is_some() { "--iterations" } else { "--epochs" }, detail));
        }
    }

    // Before the run directory, so a TensorBoard folder that cannot be made leaves nothing half-written.
    let board = opts.tensorboard.as_deref().map(Board::create).transpose()?;
    if let (Some(b), Some(dir)) = (&board, &opts.tensorboard) {
        println!("TensorBoard events: {} (tensorboard --logdir {})", b.path().display(), dir.display());
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::data(&cfg.out, format!("cannot create the run directory: {e}")))?;
    let mut log = match resumed {
        Some(_) => MetricsLog::append(&cfg.out)?,
        None => MetricsLog::create(&cfg.out)?,
    };
    let config_path = cfg.out.join("config.json");
    let mut config = json!({ "train": cfg, "model": trainer.model().describe() });
    if let Some(weights) = &opts.weights {
        config["weights"] = json!(weights);
        config["weights_sha256"] = json!(data::fetch::sha256_file(weights)?);
    } else if resumed.is_some() {
        // The run still started from the weights its first leg named.
        let first: serde_json::Value = std::fs::read(&config_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        for key in ["weights", "weights_sha256"].into_iter().filter(|k| !first[k].is_null()) {
            config[key] = first[key].clone();
        }
    }
    let config_json = serde_json::to_string_pretty(&config).map_err(|e| Error::data(&config_path, e.to_string()))?;
    // Atomic, as a resumed run replaces it (with its new length).
    checkpoint::write_atomic(&config_path, (config_json + "\n").as_bytes())?;
    let start_at = resumed.as_ref().map_or(0, |s| s.iteration);
    if resumed.is_some() {
        // Records after this one supersede those of iterations from here on.
        log.write(&Record::Resume(ResumeRecord { iteration: start_at, epoch: start_at / per_epoch, iterations: total }))?;
    }
    let mut analysis = match cfg.analysis.enabled() || !cfg.analysis.exact_at.is_empty() {
        true => Some(Analysis {
            analyzer: Analyzer::new(cfg.analysis.clone(), cfg.seed, Some(cfg.out.clone()))?,
            extra: loader.reordered(batch_size, cfg.seed ^ 0x616e_616c_7973_6973, false)?,
            exact: loader.reordered(cfg.analysis.exact_examples, cfg.seed ^ 0x6578_6163_74, false)?,
        }),
        false => None,
    };
    if let (Some(a), Some(state)) = (analysis.as_mut(), &resumed) {
        a.analyzer.restore_alerts(state.alerts.clone());
    }

    let bar = ProgressBar::new(total as u64);
    bar.set_position(start_at as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} it  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = Output { log, board, bar, last_analysis: Vec::new() };
    let start = Instant::now();
    let mut summary = Summary {
        model: trainer.model().describe(),
        data: sources.train.name().to_string(),
        iterations: start_at,
        epochs: start_at / per_epoch,
        diverged: false,
        diverged_at: None,
        headline: resumed.as_ref().map_or(Headline::default(), |s| s.headline),
        seconds: 0.0,
        examples_per_second: 0.0,
        out: cfg.out.clone(),
    };
    let mut window = resumed.map(|s| s.window).unwrap_or_default();
    let mut seen = 0usize;
    let mut saved_at = Some(start_at).filter(|_| opts.resume);
    'epochs: for epoch in start_at / per_epoch..epochs {
        let lr = cfg.schedule.lr(cfg.lr, epoch);
        // An epoch's order is a pure function of (seed, epoch): skip what the resumed run saw.
        let done = if epoch == start_at / per_epoch { start_at % per_epoch } else { 0 };
        // A run's last epoch may end early; it is evaluated all the same.
        for batch in loader.epoch_from(epoch, done).take(total - summary.iterations) {
            let batch = batch?;
            let stats = match analysis.as_mut().filter(|a| a.due(summary.iterations)) {
                Some(a) => a.step(&mut trainer, &batch, Some(lr), summary.iterations, epoch, &mut out)?,
                None => trainer.step(&batch, lr)?,
            };
            summary.iterations += 1;
            seen += stats.examples;
            if !stats.loss.is_finite() {
                summary.diverged = true;
                summary.diverged_at = Some(summary.iterations);
                summary.epochs = epoch + 1;
                let record = TrainRecord {
                    iteration: summary.iterations,
                    epoch: Some(epoch),
                    loss: None,
                    lr: Some(lr),
                    diverged: true,
                    ..Default::default()
                };
                out.write(&Record::Train(record))?;
                break 'epochs;
            }
            window.loss += stats.loss;
            window.correct += stats.correct;
            window.examples += stats.examples;
            window.steps += 1;
            let regular = summary.iterations % cfg.log_every == 0;
            if regular || summary.iterations == total {
                let (loss, acc) = (window.loss / window.steps as f64, window.correct as f64 / window.examples as f64);
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                out.write(&Record::Train(TrainRecord {
                    iteration: summary.iterations,
                    epoch: Some(epoch),
                    loss: Some(loss),
                    accuracy: Some(acc),
                    lr: Some(lr),
                    examples_per_second: Some(rate),
                    diverged: false,
                }))?;
                out.bar.set_message(format!("epoch {} loss {loss:.4} acc {:.1}% {rate:.0} ex/s", epoch + 1, 100.0 * acc));
                (summary.headline.train_loss, summary.headline.train_accuracy) = (Some(loss), Some(acc));
                // The end-of-run record keeps its window, so a run resumed and
                // extended from here logs what an uninterrupted one would.
                if regular {
                    window = Window::default();
                }
            }
            out.bar.inc(1);
            // An epoch's (or the run's) last step is checkpointed after its evaluation, below.
            let epoch_end = summary.iterations % per_epoch == 0 || summary.iterations == total;
            if opts.checkpoint_every.is_some_and(|n| n > 0 && summary.iterations % n == 0) && !epoch_end {
                save_checkpoint(&trainer, cfg, opts, &summary, &window, per_epoch, analysis.as_ref())?;
                saved_at = Some(summary.iterations);
            }
        }
        summary.epochs = epoch + 1;
        let eval = trainer.evaluate(&*sources.test)?;
        out.write(&Record::Eval(EvalRecord {
            iteration: summary.iterations,
            epoch: Some(epoch),
            test_loss: Some(eval.loss),
            test_accuracy: Some(eval.accuracy),
            test_top1_error: Some(1.0 - eval.accuracy),
            test_top5_error: Some(1.0 - eval.top5_accuracy),
        }))?;
        (summary.headline.test_loss, summary.headline.test_accuracy, summary.headline.test_top5_accuracy) =
            (Some(eval.loss), Some(eval.accuracy), Some(eval.top5_accuracy));
        out.say(&format!(
            "epoch {:>3}  train loss {:.4} acc {:5.2}%  test loss {:.4} top-1 error {:5.2}% top-5 error {:5.2}%  lr {lr:.3e}",
            epoch + 1,
            summary.headline.train_loss.unwrap_or(f64::NAN),
            100.0 * summary.headline.train_accuracy.unwrap_or(f64::NAN),
            eval.loss,
            100.0 * (1.0 - eval.accuracy),
            100.0 * (1.0 - eval.top5_accuracy)
        ));
        save_checkpoint(&trainer, cfg, opts, &summary, &window, per_epoch, analysis.as_ref())?;
        saved_at = Some(summary.iterations);
    }
    // A run of no steps; before the final analysis, which a resumed run repeats.
    if !summary.diverged && saved_at != Some(summary.iterations) {
        save_checkpoint(&trainer, cfg, opts, &summary, &window, per_epoch, analysis.as_ref())?;
    }
    // The state after the last update has no step of its own to ride on.
    if let Some(a) = analysis.as_mut().filter(|a| !summary.diverged && a.due(summary.iterations)) {
        if let Some(batch) = loader.epoch(epochs).next().transpose()? {
            a.step(&mut trainer, &batch, None, summary.iterations, summary.epochs, &mut out)?;
        }
    }
    out.bar.finish_and_clear();
    summary.seconds = start.elapsed().as_secs_f64();
    summary.examples_per_second = seen as f64 / summary.seconds.max(1e-9);
    if summary.diverged {
        out.write(&Record::Summary(DivergedRecord { diverged: true, iteration: summary.diverged_at }))?;
    }
    if !out.last_analysis.is_empty() {
        println!("{}", super::table::conditioning_table(&out.last_analysis));
    }
    summary.save()?;
    Ok(summary)
}
