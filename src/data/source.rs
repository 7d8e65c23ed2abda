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
    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_>;
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

    fn epoch(&self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        Box::new(Loader::epoch(self, epoch).map(Ok))
    }
}
