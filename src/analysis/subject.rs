//! What an analysis needs of the model it measures: its parameters, and a
//! forward-backward pass against the labels the analysis picks. The trainer
//! provides it, so the analysis depends on no trainer.

use crate::autograd::Gradients;
use crate::backend::Backend;
use crate::data::Batch;
use crate::error::Result;
use crate::models::Model;
use crate::tensor::Tensor;

/// Which labels a forward-backward pass differentiates the loss against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// The data's labels (training; the empirical second moment M).
    True,
    /// Labels drawn from the model's own softmax (the Fisher), a pure
    /// function of `(seed, stream, row)`.
    Sampled { seed: u64, stream: u64 },
}

impl Labels {
    /// The targets for `logits` (`N × classes`) of a batch labelled `labels`.
    pub fn targets<B: Backend>(self, backend: &B, logits: &Tensor<B>, labels: &[u32]) -> Result<Vec<u32>> {
        match self {
            Labels::True => Ok(labels.to_vec()),
            Labels::Sampled { seed, stream } => backend.sample_labels(logits.buf(), logits.rows_cols().1, seed, stream),
        }
    }
}

/// The model under analysis, with a way to differentiate it.
pub trait Subject<B: Backend> {
    fn backend(&self) -> &B;
    fn model(&self) -> &dyn Model<B>;
    fn model_mut(&mut self) -> &mut dyn Model<B>;
    /// Forward (training mode) and backward on `batch` against `labels`, with
    /// every layer probed, leaving the parameters as they are. Only the
    /// probes are read, so the parameters' gradients may be skipped.
    fn backward(&mut self, batch: &Batch, labels: Labels) -> Result<Gradients<B>>;
}
