//! The one interface the run loop reads batches through, whether the examples
//! sit in memory ([`Loader`]) or stream from disk
//! ([`ImageNet`](super::imagenet::ImageNet)).

use super::{Batch, Loader};
use crate::error::Result;

pub trait BatchSource: Send + Sync {
    /// The dataset's name, e.g. `cifar10`.
    fn name(&self) -> &str;
    /// Examples per epoch (before any are dropped by `drop_last`).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn classes(&self) -> usize;
    /// The shape of one example as batches deliver it, e.g. `[3, 32, 32]`.
    fn example_dims(&self) -> &[usize];
    fn batches_per_epoch(&self) -> usize;
    /// The batches of `epoch`, a pure function of the source's seed and `epoch`.
    /// A streaming source may end the epoch early with an error.
    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        self.epoch_from(epoch, 0)
    }
    /// The batches of `epoch` from batch `first` on, without preparing the
    /// ones before it (a resumed run starts mid-epoch).
    fn epoch_from(&self, epoch: usize, first: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_>;
    /// The same examples and transform in batches of `batch_size`, in the
    /// order keyed by `seed`: full-batch descent, and the analysis's batches
    /// drawn apart from the training order.
    fn reordered(&self, batch_size: usize, seed: u64, drop_last: bool) -> Result<Box<dyn BatchSource + '_>>;
}

impl BatchSource for Loader<'_> {
    fn name(&self) -> &str {
        &self.dataset().name
    }

    fn len(&self) -> usize {
        self.dataset().len()
    }

    fn classes(&self) -> usize {
        self.dataset().classes
    }

    fn example_dims(&self) -> &[usize] {
        &self.dataset().dims
    }

    fn batches_per_epoch(&self) -> usize {
        Loader::batches_per_epoch(self)
    }

    fn epoch_from(&self, epoch: usize, first: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        Box::new(Loader::epoch_from(self, epoch, first).map(Ok))
    }

    fn reordered(&self, batch_size: usize, seed: u64, drop_last: bool) -> Result<Box<dyn BatchSource + '_>> {
        Ok(Box::new(Loader::reordered(self, batch_size, seed, drop_last)?))
    }
}
