//! One model, one optimiser, one step at a time: the part of training that
//! tests and experiments drive directly.

use super::config::{OptimizerKind, TrainConfig};
use crate::analysis::{matrix_elements, AnalysisConfig, Labels, Subject};
use crate::autograd::{Gradients, Tape};
use crate::backend::Backend;
use crate::checkpoint::{self, RunState, Saved};
use crate::data::{Batch, BatchSource};
use crate::error::{Error, Result};
use crate::models::{vgg16, Mlp, MlpConfig, Model, ResNet, ResNetConfig, Variant, Vgg16, VGG16};
use crate::nn::Weights;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::size;
use crate::tensor::Tensor;
use std::path::Path;

/// Loss and accuracy of one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub correct: usize,
    pub examples: usize,
}

/// Loss and accuracy over a whole dataset, in eval mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalStats {
    pub loss: f64,
    /// Top-1.
    pub accuracy: f64,
    pub top5_accuracy: f64,
}

pub struct Trainer<B: Backend> {
    backend: B,
    model: Box<dyn Model<B>>,
    optimizer: Box<dyn Optimizer<B>>,
}

/// The memory a run of `model` needs at the least (`None`: past counting),
/// and what needs it. A step keeps a gradient and the optimiser's `slots`
/// beside each weight, and an analysis every layer's Σx and Σ∇h besides.
/// A checkpoint needs less: it brings one tensor at a time to the host,
/// beside the weights and slots. [`Trainer::check_memory`] adds the
/// activations once the batch is known.
fn least_memory<B: Backend>(model: &dyn Model<B>, slots: usize, analysis: &AnalysisConfig) -> (String, Option<usize>) {
    let params = model.store().params();
    let weights = params.iter().map(|p| p.value.numel()).sum::<usize>();
    let slots_named = if slots == 1 { "1 optimiser slot".to_string() } else { format!("{slots} optimiser slots") };
    let mut what = format!("training {} with a gradient and {slots_named} beside each weight", model.describe());
    let mut elements = weights.checked_mul(2 + slots);
    if analysis.enabled() {
        let layers = params.iter().filter(|p| matches!(p.value.shape().len(), 2 | 4)).count();
        what += &format!(", and analysing its {layers} layers' Σx and Σ∇h,");
        let matrices = params.iter().try_fold(0usize, |n, p| n.checked_add(matrix_elements(p.value.shape(), analysis.conv_stat)?));
        elements = elements.zip(matrices).and_then(|(e, m)| e.checked_add(m));
    }
    (what, elements.and_then(|e| e.checked_mul(std::mem::size_of::<B::Elem>())))
}

/// Where a run's weights, gradients, slots, analysis matrices and
/// activations live: a device's own memory, or else the host's.
fn memory<B: Backend>(backend: &B) -> size::Memory {
    match backend.own_memory() {
        Some(bytes) => size::Memory::Device { name: backend.device().to_string(), bytes },
        None => size::Memory::Host,
    }
}

/// The flags that size what [`least_memory`] counts, after `batch`, the
/// flag that sizes a step's batch where its activations count too.
fn sizing_flags(cfg: &TrainConfig, batch: Option<&str>) -> String {
    let mut flags = batch.map_or(String::new(), |b| format!("{b}, "));
    flags += "--depth, --width, --base-width or the model";
    if cfg.analysis.enabled() {
        flags += " (or --analyze-every 0 and no --analyze-at)";
    }
    flags
}

impl<B: Backend> Trainer<B> {
    /// A trainer for examples of shape `dims` (e.g. `[3, 32, 32]`) in `classes` classes.
    pub fn new(backend: &B, cfg: &TrainConfig, dims: &[usize], classes: usize) -> Result<Self> {
        Trainer::with_weights(backend, cfg, dims, classes, Weights::Drawn)
    }

    /// [`Trainer::new`] with every weight zero, for a checkpoint to
    /// overwrite every tensor: a resumed run, or one `--init-from` starts.
    pub fn to_load(backend: &B, cfg: &TrainConfig, dims: &[usize], classes: usize) -> Result<Self> {
        Trainer::with_weights(backend, cfg, dims, classes, Weights::Zero)
    }

    fn with_weights(backend: &B, cfg: &TrainConfig, dims: &[usize], classes: usize, weights: Weights) -> Result<Self> {
        cfg.validate()?;
        let mut model = build_model(backend, cfg, dims, classes, weights)?;
        let layers = model.store().layers();
        if let Some(&bad) = cfg.freeze.iter().find(|&&l| l > layers) {
            return Err(Error::arg("--freeze", format!("layer {bad} does not exist; {} has layers 1..={layers}", model.describe())));
        }
        model.store_mut().freeze_layers(&cfg.freeze);
        if !cfg.freeze.is_empty() && model.store().params().iter().all(|p| p.frozen) {
            let detail = format!(
                "it freezes every layer of {}, so no parameter would train (kappa analyze analyses fixed weights)",
                model.describe()
            );
            return Err(Error::arg("--freeze", detail));
        }
        let optimizer: Box<dyn Optimizer<B>> = match cfg.optimizer {
            OptimizerKind::Sgd | OptimizerKind::Gd => Box::new(Sgd::new(backend, cfg.momentum, cfg.weight_decay, cfg.nesterov)),
            OptimizerKind::Adam => Box::new(Adam::new(backend, cfg.weight_decay)),
        };
        // Refused here, before a step, an analysis or a checkpoint would abort in the allocator.
        let (what, bytes) = least_memory(model.as_ref(), optimizer.slot_names().len(), &cfg.analysis);
        size::bytes(&memory(backend), &what, bytes, &sizing_flags(cfg, None))?;
        Ok(Trainer { backend: backend.clone(), model, optimizer })
    }

    /// Refuses steps on `batch` examples of shape `dims` that could not fit
    /// in the memory the run's values live in (`memory`): what
    /// `least_memory` counts, plus the activations of `batch` examples,
    /// counted in one example's forward pass ([`Tape::held_elements`]: a
    /// lower bound). The pass is in eval mode, so it moves no BN average and
    /// draws no dropout mask. A run its machine cannot hold stops here,
    /// naming the flags that size it, rather than being killed in its first
    /// step.
    pub fn check_memory(&mut self, dims: &[usize], batch: usize, cfg: &TrainConfig) -> Result<()> {
        let mut tape = Tape::new(&self.backend);
        let one = tape.constant(Tensor::zeros(&self.backend, &[&[1], dims].concat())?);
        self.model.forward(&mut tape, one, false)?;
        let per_example = tape.held_elements();
        drop(tape);
        let (what, state) = least_memory(self.model.as_ref(), self.optimizer.slot_names().len(), &cfg.analysis);
        let activations = per_example.checked_mul(batch).and_then(|e| e.checked_mul(std::mem::size_of::<B::Elem>()));
        let what = format!("{what} plus the activations of {batch} examples ({per_example} values each, at the least)");
        let batch_flag = match cfg.optimizer {
            OptimizerKind::Gd => "--limit-train (full-batch descent steps on every example)",
            _ => "--batch-size",
        };
        let bytes = state.zip(activations).and_then(|(s, a)| s.checked_add(a));
        size::bytes(&memory(&self.backend), &what, bytes, &sizing_flags(cfg, Some(batch_flag)))
    }

    pub fn model(&self) -> &dyn Model<B> {
        self.model.as_ref()
    }

    pub fn model_mut(&mut self) -> &mut dyn Model<B> {
        self.model.as_mut()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn optimizer(&self) -> &dyn Optimizer<B> {
        self.optimizer.as_ref()
    }

    /// Writes `RUN_DIR/checkpoint.safetensors` for the trainer as it stands.
    pub fn save_checkpoint(&self, run_dir: &Path, cfg: &TrainConfig, state: &RunState) -> Result<Saved> {
        checkpoint::save(run_dir, &self.backend, self.model(), self.optimizer(), &cfg.checkpoint_identity(), state)
    }

    /// The first tensor of the state that holds a NaN or infinite value, if any.
    pub fn non_finite_state(&self) -> Result<Option<String>> {
        checkpoint::non_finite_state(&self.backend, self.model(), self.optimizer())
    }

    /// Loads `RUN_DIR/checkpoint.safetensors` into this trainer, built from
    /// the run's configuration, and returns where the run stood.
    pub fn resume(&mut self, run_dir: &Path, cfg: &TrainConfig) -> Result<RunState> {
        checkpoint::resume(run_dir, &self.backend, self.model.as_mut(), self.optimizer.as_mut(), &cfg.checkpoint_identity())
    }

    /// Forward (training mode) and backward on a batch, without updating:
    /// the loss, accuracy against the true labels, and gradients (with layer
    /// probes when `probe` is set).
    pub fn gradients(&mut self, batch: &Batch, labels: Labels, probe: bool) -> Result<(StepStats, Gradients<B>)> {
        let mut tape = Tape::new(&self.backend);
        tape.set_probing(probe);
        self.backward_on(tape, batch, labels)
    }

    /// The probes' inputs and output-gradients alone, without any
    /// parameter's gradient ([`Tape::set_probes_only`]).
    pub fn probe_gradients(&mut self, batch: &Batch, labels: Labels) -> Result<Gradients<B>> {
        let mut tape = Tape::new(&self.backend);
        tape.set_probes_only();
        self.backward_on(tape, batch, labels).map(|(_, grads)| grads)
    }

    fn backward_on(&mut self, mut tape: Tape<B>, batch: &Batch, labels: Labels) -> Result<(StepStats, Gradients<B>)> {
        let x = tape.constant(Tensor::from_f32s(&self.backend, &batch.dims, &batch.images)?);
        let logits = self.model.forward(&mut tape, x, true)?;
        let correct = count_correct(&tape.value(logits).to_f64s(&self.backend)?, &batch.labels);
        let targets = labels.targets(&self.backend, tape.value(logits), &batch.labels)?;
        let loss = tape.cross_entropy(logits, &targets)?;
        let loss_value = tape.value(loss).scalar(&self.backend)?;
        let grads = tape.backward(loss)?;
        Ok((StepStats { loss: loss_value, correct, examples: batch.labels.len() }, grads))
    }

    /// Updates the parameters from `grads` at learning rate `lr`.
    pub fn apply(&mut self, grads: &Gradients<B>, lr: f64) -> Result<()> {
        self.optimizer.step(self.model.store_mut(), grads, lr)
    }

    /// One optimisation step at learning rate `lr`. A non-finite loss is
    /// returned without updating, so the caller can record the divergence.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> Result<StepStats> {
        self.step_with_gradients(batch, lr, false).map(|(stats, _)| stats)
    }

    /// [`Trainer::step`], also handing back the gradients it applied.
    pub fn step_with_gradients(&mut self, batch: &Batch, lr: f64, probe: bool) -> Result<(StepStats, Gradients<B>)> {
        let (stats, grads) = self.gradients(batch, Labels::True, probe)?;
        if stats.loss.is_finite() {
            self.apply(&grads, lr)?;
        }
        Ok((stats, grads))
    }

    /// Eval-mode loss, top-1 and top-5 accuracy over one pass of `data`.
    pub fn evaluate(&mut self, data: &dyn BatchSource) -> Result<EvalStats> {
        let (mut loss, mut top1, mut top5, mut n) = (0.0, 0, 0, 0);
        for batch in data.epoch(0) {
            let batch = batch?;
            let mut tape = Tape::new(&self.backend);
            let x = tape.constant(Tensor::from_f32s(&self.backend, &batch.dims, &batch.images)?);
            let logits = self.model.forward(&mut tape, x, false)?;
            let values = tape.value(logits).to_f64s(&self.backend)?;
            top1 += count_in_top(&values, &batch.labels, 1);
            top5 += count_in_top(&values, &batch.labels, 5);
            let l = tape.cross_entropy(logits, &batch.labels)?;
            loss += tape.value(l).scalar(&self.backend)? * batch.rows() as f64;
            n += batch.rows();
        }
        let n = n.max(1) as f64;
        Ok(EvalStats { loss: loss / n, accuracy: top1 as f64 / n, top5_accuracy: top5 as f64 / n })
    }
}

/// The analysis measures the trainer's model and differentiates it as a training step does.
impl<B: Backend> Subject<B> for Trainer<B> {
    fn backend(&self) -> &B {
        &self.backend
    }

    fn model(&self) -> &dyn Model<B> {
        self.model.as_ref()
    }

    fn model_mut(&mut self) -> &mut dyn Model<B> {
        self.model.as_mut()
    }

    fn backward(&mut self, batch: &Batch, labels: Labels) -> Result<Gradients<B>> {
        self.probe_gradients(batch, labels)
    }
}

/// The model `cfg` names, for examples of shape `dims`.
fn build_model<B: Backend>(backend: &B, cfg: &TrainConfig, dims: &[usize], classes: usize, weights: Weights) -> Result<Box<dyn Model<B>>> {
    let channels = || match dims {
        &[c, _, _] => Ok(c),
        _ => Err(Error::arg("--model", format!("{} needs images [C, H, W]; the data has examples of shape {dims:?}", cfg.model))),
    };
    if cfg.model == VGG16.0 {
        // Five halvings must leave at least one pixel.
        if let &[_, h, w] = dims {
            if h < 32 || w < 32 {
                let detail = format!("vgg16 needs images of at least 32×32; {} has {h}×{w} (try --data cifar10)", cfg.data);
                return Err(Error::arg("--data", detail));
            }
        }
        let width = cfg.arch.base_width.unwrap_or(vgg16::WIDTH);
        return Ok(Box::new(Vgg16::new(backend, channels()?, width, classes, cfg.seed, weights)?));
    }
    let Some(variant) = Variant::from_name(&cfg.model) else {
        let inputs = dims.iter().product();
        let mlp = MlpConfig { inputs, depth: cfg.depth, width: cfg.width, classes, bn: cfg.bn, init: cfg.init, bn_momentum: 0.1 };
        return Ok(Box::new(Mlp::new(backend, mlp, cfg.seed, weights)?));
    };
    let in_channels = channels()?;
    let a = &cfg.arch;
    let family = cfg.family();
    let config = ResNetConfig {
        in_channels,
        shortcut: a.shortcut,
        tau: a.tau,
        lastbn_gamma: a.lastbn_gamma,
        dropout: a.dropout,
        ..ResNetConfig::new(variant, family, cfg.depth, classes)
    };
    Ok(Box::new(ResNet::new(backend, config, cfg.seed, weights)?))
}

/// Rows of `logits` whose arg-max is the label.
pub fn count_correct(logits: &[f64], labels: &[u32]) -> usize {
    count_in_top(logits, labels, 1)
}

/// Rows of `logits` whose label's logit is among the `k` largest; ties count
/// against the label, so a constant row is never correct by luck.
pub fn count_in_top(logits: &[f64], labels: &[u32], k: usize) -> usize {
    let classes = logits.len() / labels.len().max(1);
    logits
        .chunks(classes.max(1))
        .zip(labels)
        .filter(|(row, &y)| {
            row.get(y as usize).is_some_and(|&v| v.is_finite() && row.iter().filter(|&&o| o >= v || o.is_nan()).count() <= k)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_labels_among_the_k_largest_and_ties_against_them() {
        let logits = [
            0.1,
            0.5,
            0.2,
            0.9,
            0.0,
            0.3, // label 3: the largest
            0.1,
            0.5,
            0.2,
            0.9,
            0.0,
            0.3, // label 0: fifth largest
            0.1,
            0.5,
            0.2,
            0.9,
            0.0,
            0.3, // label 4: the smallest
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0, // a constant row: never correct
            0.1,
            f64::NAN,
            0.2,
            0.9,
            0.0,
            0.3, // a NaN beats everything
        ];
        let labels = [3, 0, 4, 2, 5];
        assert_eq!(count_in_top(&logits, &labels, 1), 1);
        assert_eq!(count_in_top(&logits, &labels, 5), 3);
        assert_eq!(count_in_top(&logits[24..], &[1], 6), 0, "a NaN logit is never correct");
        assert_eq!(count_in_top(&logits, &labels, 6), 5);
        assert_eq!(count_correct(&logits[..12], &[3, 1]), 1);
    }
}
