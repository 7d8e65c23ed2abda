//! One analysis of the model as it stands: accumulate Σx and Σ∇h over the
//! analysis batches, solve every spectrum in one batched call, and add the
//! weight and neuron diagnostics.

use super::alerts::{Alerts, AlertsState};
use super::config::{AnalysisConfig, Mode};
use super::diagnostics::{self, NeuronCounts, WeightStats};
use super::moments::Moments;
use super::npy;
use super::record::{Alert, LayerRecord};
use super::spectrum::{Kronecker, Spectrum};
use super::subject::{Labels, Subject};
use crate::autograd::Gradients;
use crate::backend::Backend;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use std::path::PathBuf;

/// The run directory's folder of `--save-spectra` files.
pub const SPECTRA_DIR: &str = "spectra";

pub struct Analyzer {
    config: AnalysisConfig,
    seed: u64,
    alerts: Alerts,
    spectra_dir: Option<PathBuf>,
}

/// The state an analysis looks at: the batch of the coming training step and
/// the gradients the step computed on it (true labels, probed when empirical).
pub struct TrainingBatch<'a, B: Backend> {
    pub batch: &'a Batch,
    pub grads: &'a Gradients<B>,
}

impl Analyzer {
    /// `run_dir` receives `spectra/*.npy` when the config asks for them.
    pub fn new(config: AnalysisConfig, seed: u64, run_dir: Option<PathBuf>) -> Result<Self> {
        config.validate()?;
        let spectra_dir = match (&run_dir, config.save_spectra) {
            (Some(dir), true) => {
                let d = dir.join(SPECTRA_DIR);
                let why = |e| format!("cannot make the folder --save-spectra writes to ({e}); expected a folder or nothing there");
                std::fs::create_dir_all(&d).map_err(|e| Error::data(&d, why(e)))?;
                Some(d)
            }
            _ => None,
        };
        Ok(Analyzer { alerts: Alerts::new(config.domination_threshold), config, seed, spectra_dir })
    }

    pub fn config(&self) -> &AnalysisConfig {
        &self.config
    }

    /// What the alerts remember between analyses, for a checkpoint.
    pub fn alerts_state(&self) -> AlertsState {
        self.alerts.state()
    }

    pub fn restore_alerts(&mut self, state: AlertsState) {
        self.alerts.restore(state);
    }

    /// Analyses the model of `subject` (not yet updated by `training.grads`).
    /// `extra` are the further batches of `--analysis-batches`. BN running
    /// averages are restored after every extra forward pass, so the training
    /// trajectory is the same with or without analysis.
    pub fn analyze<B: Backend>(
        &mut self,
        subject: &mut impl Subject<B>,
        training: TrainingBatch<'_, B>,
        extra: &[Batch],
        iteration: usize,
        epoch: usize,
    ) -> Result<(Vec<LayerRecord>, Vec<Alert>)> {
        let be = subject.backend().clone();
        let mut moments = Moments::new(&be, self.config.centered, self.config.conv_stat);
        let mut neurons: Vec<NeuronCounts> = Vec::new();
        let mut add = |grads: &Gradients<B>| -> Result<()> {
            let probes = grads.probes();
            moments.add(probes)?;
            neurons.resize_with(probes.len().saturating_sub(1), NeuronCounts::default);
            for (counts, next) in neurons.iter_mut().zip(&probes[1..]) {
                let (rows, cols) = next.x.rows_cols();
                let positive = be.count_positive(next.x.buf(), rows, cols)?;
                match next.x.shape() {
                    // A conv unit is a channel: positive counts add up over its positions.
                    &[n, _, h, w] => counts.add(&positive.chunks((h * w).max(1)).map(|p| p.iter().sum()).collect::<Vec<u32>>(), n * h * w),
                    _ => counts.add(&positive, rows),
                }
            }
            Ok(())
        };
        let batches = std::iter::once(training.batch).chain(extra);
        for (k, batch) in batches.enumerate() {
            if k == 0 && self.config.mode == Mode::Empirical {
                add(training.grads)?;
                continue;
            }
            let labels = match self.config.mode {
                Mode::Empirical => Labels::True,
                Mode::Fisher => Labels::Sampled { seed: self.seed, stream: (iteration * self.config.batches + k) as u64 },
            };
            let saved = subject.model().store().snapshot_buffers();
            let grads = subject.backward(batch, labels)?;
            subject.model_mut().store_mut().restore_buffers(saved);
            add(&grads)?;
        }
        let matrices = moments.finish()?;

        // Weight Gram matrices join the same batched eigen-solve.
        let store = subject.model().store();
        let mut weight_grams = Vec::new();
        for m in &matrices {
            let pair = match training.grads.param(m.weight).map(|g| (store.value(m.weight), g)) {
                Some((w, g)) => Some((diagnostics::gram(&be, w)?, diagnostics::gram(&be, g)?, be.dot(w.buf(), w.buf())?.sqrt())),
                None => None,
            };
            weight_grams.push(pair);
        }
        let mut solve: Vec<(&B::Buf, usize)> = Vec::new();
        for (m, w) in matrices.iter().zip(&weight_grams) {
            solve.push((&m.sigma_x.0, m.sigma_x.1));
            solve.push((&m.sigma_grad.0, m.sigma_grad.1));
            if let Some((wg, gg, _)) = w {
                solve.push((&wg.0, wg.1));
                solve.push((&gg.0, gg.1));
            }
        }
        let mut spectra = be.eigvalsh(&solve)?.into_iter();

        let eps = B::Elem::EPSILON;
        let last = matrices.len();
        let mut records = Vec::new();
        let mut alerts = Vec::new();
        for (i, (m, w)) in matrices.iter().zip(&weight_grams).enumerate() {
            let mut next = || spectra.next().ok_or_else(|| Error::Backend("eigvalsh returned too few spectra".into()));
            let (ex, eg) = (next()?, next()?);
            let weight = match w {
                Some((_, _, frobenius)) => {
                    let (ew, egw) = (next()?, next()?);
                    Some(WeightStats::from_gram_eigenvalues(ew[0], egw[0], *frobenius))
                }
                None => None,
            };
            if let Some(dir) = &self.spectra_dir {
                npy::write_f64(&dir.join(format!("it{iteration:07}-{}-sigma_x.npy", m.layer)), &ex)?;
                npy::write_f64(&dir.join(format!("it{iteration:07}-{}-sigma_grad.npy", m.layer)), &eg)?;
            }
            let sigma_x = Spectrum::of_second_moment(&ex, eps, m.samples_x, &self.config.kappa_p);
            let sigma_grad = Spectrum::of_second_moment(&eg, eps, m.samples_grad, &self.config.kappa_p);
            let record = LayerRecord {
                iteration,
                epoch,
                mode: self.config.mode,
                layer: m.layer.clone(),
                index: i + 1,
                last: i + 1 == last,
                fim: Kronecker::of(&sigma_x, &sigma_grad),
                sigma_x,
                sigma_grad,
                weight,
                neurons: neurons.get(i).map(NeuronCounts::stats),
            };
            alerts.extend(self.alerts.check(&record));
            records.push(record);
        }
        Ok((records, alerts))
    }
}
