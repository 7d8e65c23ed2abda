//! The `kappa train` job: data, trainer, analysis, progress bar, metrics, summary.

use super::config::{Dtype, OptimizerKind, TrainConfig};
use super::metrics::{MetricsLog, Summary};
use super::tensorboard::Board;
use super::trainer::{StepStats, Trainer};
use crate::analysis::exact::{self, ExactOptions};
use crate::analysis::{Analyzer, Labels, LayerRecord, Mode, TrainingBatch, EXACT_EXAMPLES_SEED, EXTRA_BATCHES_SEED};
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device};
use crate::checkpoint::{self, RunState, Saved, Window};
use crate::data::{self, Batch, BatchSource, ImageNetOptions, LoadOptions, OpenOptions, Sources};
use crate::error::{Error, Result};
use crate::files;
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
    if !opts.resume {
        MetricsLog::check_free(&cfg.out)?;
    }
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
/// configuration on two): prepares the run, trains it, and finishes it.
pub fn run_on<B: Backend>(backend: &B, cfg: &TrainConfig, opts: &RunOptions) -> Result<Summary> {
    // A resumed run's data and model come from its config.json.
    let saved = |e| if opts.resume { TrainConfig::saved_error(&cfg.out, e) } else { e };
    let sources = open_data(cfg).map_err(saved)?;
    let (dims, classes) = (sources.train.example_dims(), sources.train.classes());
    // Weights a checkpoint will overwrite are not drawn.
    let trainer = match opts.resume || opts.weights.is_some() {
        true => Trainer::to_load(backend, cfg, dims, classes),
        false => Trainer::new(backend, cfg, dims, classes),
    };
    let mut trainer = trainer.map_err(saved)?;
    if let Some(weights) = &opts.weights {
        checkpoint::load_weights(weights, trainer.model_mut(), backend)?;
    }
    let resumed = match opts.resume {
        true => Some(trainer.resume(&cfg.out, cfg)?),
        false => None,
    };
    // Full-batch descent steps through the whole split as one batch.
    let full_batch = match cfg.optimizer {
        OptimizerKind::Gd => Some(sources.train.reordered(sources.train.len(), cfg.seed, false)?),
        _ => None,
    };
    let (loader, batch_size) = match &full_batch {
        Some(all) => (&**all, sources.train.len()),
        None => (&*sources.train, cfg.batch_size),
    };
    // Before the run directory is made, so a refused run writes nothing.
    trainer.check_memory(sources.train.example_dims(), batch_size.min(loader.len()), cfg)?;
    if !cfg.analysis.exact_at.is_empty() {
        exact::check_examples(cfg.analysis.exact_examples, loader.len())?;
    }
    let mut run = Run::prepare(cfg, opts, trainer, resumed, &sources, loader, batch_size)?;
    run.train()?;
    run.finish()
}

/// A run under way: the trainer, the data it steps through, and what it writes.
struct Run<'a, B: Backend> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions,
    trainer: Trainer<B>,
    loader: &'a dyn BatchSource,
    test: &'a dyn BatchSource,
    per_epoch: usize,
    /// The iterations of the whole run, and the epochs they span.
    total: usize,
    epochs: usize,
    /// 0, or the iteration the resumed checkpoint was taken at.
    start_at: usize,
    analysis: Option<Analysis<'a>>,
    out: Output,
    summary: Summary,
    window: Window,
    /// Examples trained on since this leg started, for the rate.
    seen: usize,
    /// The iteration of the latest checkpoint.
    saved_at: Option<usize>,
    start: Instant,
}

/// The training batches an epoch holds, checked against what the model and
/// the analysis need of them before anything is written; what the split
/// leaves unused is said once.
fn batches_per_epoch(cfg: &TrainConfig, loader: &dyn BatchSource, batch_size: usize) -> Result<usize> {
    let per_epoch = loader.batches_per_epoch();
    if per_epoch == 0 {
        return Err(Error::data(cfg.data_dir.clone().unwrap_or_else(|| cfg.data.clone().into()), "the training split has no examples"));
    }
    if cfg.bn_over_examples() && !cfg.pipeline.drop_last && loader.len() % batch_size == 1 {
        let detail = format!(
            "{} examples in batches of {batch_size} leave a last batch of one, which {}'s batch norm would normalise to zeros; add --drop-last or change --batch-size",
            loader.len(),
            cfg.model
        );
        return Err(Error::arg("--batch-size", detail));
    }
    // Recorded as given, so a recipe's batch size survives a smoke test
    // on a few examples; said once here, as the steps see fewer.
    if batch_size > loader.len() {
        println!("--batch-size {batch_size}: the training split holds {} examples, so each step sees those {}", loader.len(), loader.len());
    }
    // The extra batches are one pass over the split at most, so a small
    // split caps them; said once here, as each record's sample count shows it.
    let extra_per_epoch = loader.len().div_ceil(batch_size);
    if cfg.analysis.enabled() && cfg.analysis.batches - 1 > extra_per_epoch {
        println!(
            "--analysis-batches {}: the training split holds {} examples, {extra_per_epoch} batches of {batch_size}, so each analysis sees the training batch and those {extra_per_epoch}",
            cfg.analysis.batches,
            loader.len()
        );
    }
    Ok(per_epoch)
}

/// The run's length in iterations, checked against the analyses asked for
/// and a resumed run's checkpoint; a schedule's drop it never reaches is said.
fn length(cfg: &TrainConfig, per_epoch: usize, resumed: Option<&RunState>) -> Result<usize> {
    let total = cfg.iterations.unwrap_or(cfg.epochs.unwrap_or(1) * per_epoch);
    if let Some(&late) = cfg.analysis.at.iter().filter(|&&at| at > total).min() {
        let length = match cfg.iterations {
            Some(n) => format!("--iterations {n}"),
            None => match cfg.epochs.unwrap_or(1) {
                1 => format!("1 epoch of {per_epoch} batches"),
                n => format!("{n} epochs of {per_epoch} batches"),
            },
        };
        let past = format!("past the run's end at iteration {total} ({length}), so it would never be analysed");
        // A resumed run's analyses come from its config.json: the length given now is what clashes.
        if resumed.is_none() {
            return Err(Error::arg("--analyze-at", format!("iteration {late} is {past}")));
        }
        let flag = if cfg.iterations.is_some() { "--iterations" } else { "--epochs" };
        let detail = format!("the run's config.json analyses iteration {late}, {past}; expected a run of at least {late} iterations");
        return Err(Error::arg(flag, detail));
    }
    // Said, not refused: a recipe's schedule in a short smoke run is common.
    let last_epoch = total.saturating_sub(1) / per_epoch;
    let unreached = cfg.schedule.unreached(last_epoch);
    if !unreached.is_empty() {
        let epochs = unreached.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let drops = if unreached.len() == 1 { "drop at epoch" } else { "drops at epochs" };
        println!("--schedule: the run's epochs are 0–{last_epoch} as milestones count them, so it never reaches the {drops} {epochs}");
    }
    if let Some(state) = resumed {
        if state.batches_per_epoch != per_epoch {
            let detail = format!("taken with {} batches per epoch, but the data now gives {per_epoch}", state.batches_per_epoch);
            return Err(Error::data(checkpoint::checkpoint_path(&cfg.out), detail));
        }
        if state.iteration >= total {
            let detail = format!("the run has done {} of its {total} iterations; ask for more to continue it", state.iteration);
            return Err(Error::arg(if cfg.iterations.is_some() { "--iterations" } else { "--epochs" }, detail));
        }
    }
    Ok(total)
}

impl<'a, B: Backend> Run<'a, B> {
    /// Checks a resumed run against its data, opens the run directory and
    /// its log, writes config.json, and sets up the analysis and the summary.
    fn prepare(
        cfg: &'a TrainConfig,
        opts: &'a RunOptions,
        trainer: Trainer<B>,
        resumed: Option<RunState>,
        sources: &'a Sources,
        loader: &'a dyn BatchSource,
        batch_size: usize,
    ) -> Result<Self> {
        let per_epoch = batches_per_epoch(cfg, loader, batch_size)?;
        let total = length(cfg, per_epoch, resumed.as_ref())?;

        // Before the run directory, so a TensorBoard folder that cannot be made leaves nothing half-written.
        let board = opts.tensorboard.as_deref().map(Board::create).transpose()?;
        if let (Some(b), Some(dir)) = (&board, &opts.tensorboard) {
            println!("TensorBoard events: {} (tensorboard --logdir {})", b.path().display(), dir.display());
        }
        std::fs::create_dir_all(&cfg.out).map_err(|e| Error::data(&cfg.out, format!("cannot create the run directory: {e}")))?;
        // What can still refuse a resumed run (its spectra folder, its alerts'
        // state) comes before the run's files are touched, so a refused resume
        // leaves them as they were.
        let mut analysis = match cfg.analysis.enabled() || !cfg.analysis.exact_at.is_empty() {
            true => Some(Analysis {
                analyzer: Analyzer::new(cfg.analysis.clone(), cfg.seed, Some(cfg.out.clone()))?,
                extra: loader.reordered(batch_size, cfg.seed ^ EXTRA_BATCHES_SEED, false)?,
                exact: loader.reordered(cfg.analysis.exact_examples, cfg.seed ^ EXACT_EXAMPLES_SEED, false)?,
            }),
            false => None,
        };
        if let (Some(a), Some(state)) = (analysis.as_mut(), &resumed) {
            let alerts = serde_json::from_str(&state.alerts).map_err(|e| {
                Error::data(checkpoint::checkpoint_path(&cfg.out), format!("metadata alerts: expected the alerts' JSON state: {e}"))
            })?;
            a.analyzer.restore_alerts(alerts);
        }
        let mut log = match resumed {
            Some(_) => MetricsLog::append(&cfg.out)?,
            None => MetricsLog::create(&cfg.out)?,
        };
        write_config(cfg, opts, &trainer, resumed.is_some())?;
        let start_at = resumed.as_ref().map_or(0, |s| s.iteration);
        if resumed.is_some() {
            // Records after this one supersede those of iterations from here on.
            log.write(&Record::Resume(ResumeRecord { iteration: start_at, epoch: start_at / per_epoch, iterations: total }))?;
            if let (path, false) = log.opened() {
                if start_at > 0 {
                    println!(
                        "{}: empty, though the checkpoint was taken at iteration {start_at}; the log holds only what follows",
                        path.display()
                    );
                }
            }
        }

        let bar = ProgressBar::new(total as u64);
        bar.set_position(start_at as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} it  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let summary = Summary {
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
        Ok(Run {
            cfg,
            opts,
            trainer,
            loader,
            test: &*sources.test,
            per_epoch,
            total,
            epochs: total.div_ceil(per_epoch),
            start_at,
            analysis,
            out: Output { log, board, bar, last_analysis: Vec::new() },
            summary,
            window: resumed.map(|s| s.window).unwrap_or_default(),
            seen: 0,
            saved_at: Some(start_at).filter(|_| opts.resume),
            start: Instant::now(),
        })
    }

    /// The epochs: steps (analysed when due), training records, evaluations
    /// and checkpoints, until the run's length or a loss that is not finite.
    fn train(&mut self) -> Result<()> {
        let (cfg, loader, per_epoch, total) = (self.cfg, self.loader, self.per_epoch, self.total);
        for epoch in self.start_at / per_epoch..self.epochs {
            let lr = cfg.schedule.lr(cfg.lr, epoch);
            // An epoch's order is a pure function of (seed, epoch): skip what the resumed run saw.
            let done = if epoch == self.start_at / per_epoch { self.start_at % per_epoch } else { 0 };
            // A run's last epoch may end early; it is evaluated all the same.
            for batch in loader.epoch_from(epoch, done).take(total - self.summary.iterations) {
                let batch = batch?;
                let summary = &mut self.summary;
                let stats = match self.analysis.as_mut().filter(|a| a.due(summary.iterations)) {
                    Some(a) => a.step(&mut self.trainer, &batch, Some(lr), summary.iterations, epoch, &mut self.out)?,
                    None => self.trainer.step(&batch, lr)?,
                };
                summary.iterations += 1;
                self.seen += stats.examples;
                if !stats.loss.is_finite() {
                    return self.diverge(epoch, lr);
                }
                self.log_step(stats, epoch, lr)?;
                // An epoch's (or the run's) last step is checkpointed after its evaluation, below.
                let iterations = self.summary.iterations;
                let epoch_end = iterations.is_multiple_of(per_epoch) || iterations == total;
                if self.opts.checkpoint_every.is_some_and(|n| n > 0 && iterations.is_multiple_of(n)) && !epoch_end {
                    if let Some(tensor) = self.save_checkpoint()? {
                        return self.diverge_in_state(epoch, lr, &tensor);
                    }
                }
            }
            self.summary.epochs = epoch + 1;
            // Weights can grow past what a forward pass survives while the
            // training loss, taken before the update, was still finite.
            let test_loss = self.evaluate(epoch, lr)?;
            if !test_loss.is_finite() {
                if let Some(tensor) = self.trainer.non_finite_state()? {
                    return self.diverge_in_state(epoch, lr, &tensor);
                }
                let at = self.summary.iterations;
                self.out.say(&format!("diverged at iteration {at}: the test loss is {test_loss}; the last checkpoint is kept"));
                return self.diverge(epoch, lr);
            }
            if let Some(tensor) = self.save_checkpoint()? {
                return self.diverge_in_state(epoch, lr, &tensor);
            }
        }
        Ok(())
    }

    /// Records that the run diverged at the current iteration, and its epoch.
    fn diverge(&mut self, epoch: usize, lr: f64) -> Result<()> {
        let summary = &mut self.summary;
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
        self.out.write(&Record::Train(record))
    }

    /// [`Run::diverge`] for a state that is no longer finite though the loss
    /// is (a ReLU can hide a NaN weight): found as a checkpoint was due.
    fn diverge_in_state(&mut self, epoch: usize, lr: f64, tensor: &str) -> Result<()> {
        let at = self.summary.iterations;
        self.out.say(&format!("diverged at iteration {at}: {tensor} holds NaN or infinite values; the last checkpoint is kept"));
        self.diverge(epoch, lr)
    }

    /// Adds a finite step to the training window, and writes the window's
    /// record every `--log-every` steps and at the run's end.
    fn log_step(&mut self, stats: StepStats, epoch: usize, lr: f64) -> Result<()> {
        let (window, summary) = (&mut self.window, &mut self.summary);
        window.loss += stats.loss;
        window.correct += stats.correct;
        window.examples += stats.examples;
        window.steps += 1;
        let regular = summary.iterations % self.cfg.log_every == 0;
        if regular || summary.iterations == self.total {
            let (loss, acc) = (window.loss / window.steps as f64, window.correct as f64 / window.examples as f64);
            let rate = self.seen as f64 / self.start.elapsed().as_secs_f64();
            self.out.write(&Record::Train(TrainRecord {
                iteration: summary.iterations,
                epoch: Some(epoch),
                loss: Some(loss),
                accuracy: Some(acc),
                lr: Some(lr),
                examples_per_second: Some(rate),
                diverged: false,
            }))?;
            self.out.bar.set_message(format!("epoch {} loss {loss:.4} acc {:.1}% {rate:.0} ex/s", epoch + 1, 100.0 * acc));
            (summary.headline.train_loss, summary.headline.train_accuracy) = (Some(loss), Some(acc));
            // The end-of-run record keeps its window, so a run resumed and
            // extended from here logs what an uninterrupted one would.
            if regular {
                *window = Window::default();
            }
        }
        self.out.bar.inc(1);
        Ok(())
    }

    /// Evaluates on the test split after `epoch`, trained at `lr`; returns the test loss.
    fn evaluate(&mut self, epoch: usize, lr: f64) -> Result<f64> {
        let summary = &mut self.summary;
        let eval = self.trainer.evaluate(self.test)?;
        self.out.write(&Record::Eval(EvalRecord {
            iteration: summary.iterations,
            epoch: Some(epoch),
            test_loss: Some(eval.loss),
            test_accuracy: Some(eval.accuracy),
            test_top1_error: Some(1.0 - eval.accuracy),
            test_top5_error: Some(1.0 - eval.top5_accuracy),
        }))?;
        (summary.headline.test_loss, summary.headline.test_accuracy, summary.headline.test_top5_accuracy) =
            (Some(eval.loss), Some(eval.accuracy), Some(eval.top5_accuracy));
        // An epoch shorter than --log-every has logged no training window yet.
        let (train_loss, train_acc) = match (summary.headline.train_loss, summary.headline.train_accuracy) {
            (Some(loss), Some(acc)) => (format!("{loss:.4}"), format!("{:5.2}%", 100.0 * acc)),
            _ => ("-".into(), "-".into()),
        };
        self.out.say(&format!(
            "epoch {:>3}  train loss {train_loss} acc {train_acc}  test loss {:.4} top-1 error {:5.2}% top-5 error {:5.2}%  lr {lr:.3e}",
            epoch + 1,
            eval.loss,
            100.0 * (1.0 - eval.accuracy),
            100.0 * (1.0 - eval.top5_accuracy)
        ));
        Ok(eval.loss)
    }

    /// Writes the checkpoint of the run as it stands, when checkpoints are on;
    /// a tensor of a state no longer finite is named instead ([`Saved::NotFinite`]).
    fn save_checkpoint(&mut self) -> Result<Option<String>> {
        if self.opts.checkpoint_every.is_none() {
            return Ok(None);
        }
        let alerts = self.analysis.as_ref().map(|a| a.analyzer.alerts_state()).unwrap_or_default();
        let state = RunState {
            iteration: self.summary.iterations,
            batches_per_epoch: self.per_epoch,
            window: self.window.clone(),
            headline: self.summary.headline,
            forwards: self.trainer.model().forwards(),
            alerts: serde_json::to_string(&alerts).map_err(|e| Error::Backend(format!("alerts state: {e}")))?,
        };
        match self.trainer.save_checkpoint(&self.cfg.out, self.cfg, &state)? {
            Saved::Written => {
                self.saved_at = Some(self.summary.iterations);
                Ok(None)
            }
            Saved::NotFinite(tensor) => Ok(Some(tensor)),
        }
    }

    /// The last checkpoint and analysis, the summary, and the conditioning table.
    fn finish(mut self) -> Result<Summary> {
        // A run of no steps; before the final analysis, which a resumed run repeats.
        if !self.summary.diverged && self.saved_at != Some(self.summary.iterations) {
            if let Some(tensor) = self.save_checkpoint()? {
                let epoch = self.summary.epochs.saturating_sub(1);
                self.diverge_in_state(epoch, self.cfg.schedule.lr(self.cfg.lr, epoch), &tensor)?;
            }
        }
        // The state after the last update has no step of its own to ride on.
        let summary = &mut self.summary;
        if let Some(a) = self.analysis.as_mut().filter(|a| !summary.diverged && a.due(summary.iterations)) {
            if let Some(batch) = self.loader.epoch(self.epochs).next().transpose()? {
                a.step(&mut self.trainer, &batch, None, summary.iterations, summary.epochs, &mut self.out)?;
            }
        }
        self.out.bar.finish_and_clear();
        summary.seconds = self.start.elapsed().as_secs_f64();
        summary.examples_per_second = self.seen as f64 / summary.seconds.max(1e-9);
        if summary.diverged {
            self.out.write(&Record::Summary(DivergedRecord { diverged: true, iteration: summary.diverged_at }))?;
        }
        if !self.out.last_analysis.is_empty() {
            println!("{}", crate::analysis::conditioning_table(&self.out.last_analysis));
        }
        summary.save()?;
        Ok(self.summary)
    }
}

/// Writes config.json: the configuration, the model, and the weights the run
/// started from. A resumed run keeps what its first leg's file held beside
/// those (the weights it named, a key a researcher added). Atomic, as a
/// resumed run replaces it (with its new length).
fn write_config<B: Backend>(cfg: &TrainConfig, opts: &RunOptions, trainer: &Trainer<B>, resumed: bool) -> Result<()> {
    let config_path = cfg.out.join("config.json");
    let mut config = json!({ "train": cfg, "model": trainer.model().describe() });
    if resumed {
        let first: serde_json::Value = std::fs::read(&config_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        for (key, value) in first.as_object().into_iter().flatten().filter(|(k, _)| !["train", "model"].contains(&k.as_str())) {
            config[key] = value.clone();
        }
    }
    if let Some(weights) = &opts.weights {
        config["weights"] = json!(weights);
        config["weights_sha256"] = json!(data::fetch::sha256_file(weights)?);
    }
    let config_json = serde_json::to_string_pretty(&config).map_err(|e| Error::data(&config_path, e.to_string()))?;
    files::write_atomic(&config_path, (config_json + "\n").as_bytes())
}
