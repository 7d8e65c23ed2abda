//! Mini-batches in a seeded order.
//!
//! The order of epoch `e` is a pure function of `(seed, e)`, so a resumed run
//! or a second machine sees exactly the same batches without replaying the
//! epochs before it. So are the draws of an augmenting [`Transform`].

use super::augment::Transform;
use super::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng;
use rayon::prelude::*;
use std::ops::Deref;
use std::sync::Arc;

/// Batches with at least this many values are gathered in parallel; below it
/// rayon's overhead outweighs the copy.
const PARALLEL_GATHER: usize = 1 << 16;

/// A batch of examples copied out of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `rows × dim` values, row-major.
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// `[rows, ...example dims]`.
    pub dims: Vec<usize>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// The examples a loader reads: borrowed from the caller, or owned so the
/// loader can outlive the code that loaded them.
#[derive(Clone, Debug)]
enum Examples<'a> {
    Borrowed(&'a Dataset),
    Shared(Arc<Dataset>),
}

impl Deref for Examples<'_> {
    type Target = Dataset;

    fn deref(&self) -> &Dataset {
        match self {
            Examples::Borrowed(ds) => ds,
            Examples::Shared(ds) => ds,
        }
    }
}

/// The example order of an epoch: identity without shuffling, otherwise a
/// permutation drawn from a stream keyed by `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, shuffle: bool, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        // Derive the key by name so it cannot collide with other users of `seed`.
        let key = Rng::named(seed, "data/loader/shuffle").next_u64();
        Rng::new(key, epoch as u64).shuffle(&mut order);
    }
    order
}

#[derive(Clone, Debug)]
pub struct Loader<'a> {
    ds: Examples<'a>,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    drop_last: bool,
    transform: Option<Transform>,
}

impl Loader<'static> {
    /// A loader that owns its examples, as [`new`](Loader::new) otherwise.
    pub fn owned(ds: Dataset, batch_size: usize, seed: u64, shuffle: bool, drop_last: bool) -> Result<Self> {
        Self::build(Examples::Shared(Arc::new(ds)), batch_size, seed, shuffle, drop_last)
    }
}

impl<'a> Loader<'a> {
    /// `drop_last` skips a final short batch (full-size batches keep the
    /// gradient noise scale constant); otherwise it is yielded.
    pub fn new(ds: &'a Dataset, batch_size: usize, seed: u64, shuffle: bool, drop_last: bool) -> Result<Self> {
        Self::build(Examples::Borrowed(ds), batch_size, seed, shuffle, drop_last)
    }

    fn build(ds: Examples<'a>, batch_size: usize, seed: u64, shuffle: bool, drop_last: bool) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::arg("--batch-size", "must be at least 1"));
        }
        if drop_last && batch_size > ds.len() && !ds.is_empty() {
            return Err(Error::arg(
                "--batch-size",
                format!("{batch_size} exceeds the {} examples of {}, so dropping the last short batch leaves none", ds.len(), ds.name),
            ));
        }
        Ok(Loader { ds, batch_size, seed, shuffle, drop_last, transform: None })
    }

    /// The same examples and transform, batched and ordered anew.
    pub fn reordered(&self, batch_size: usize, seed: u64, drop_last: bool) -> Result<Self> {
        let loader = Self::build(self.ds.clone(), batch_size, seed, self.shuffle, drop_last)?;
        Ok(Loader { transform: self.transform.clone(), ..loader })
    }

    /// Applies `transform` to every example as it is gathered; its draws are
    /// keyed by the epoch and the example's position in the epoch.
    pub fn with_transform(mut self, transform: Transform) -> Result<Self> {
        transform.check(&self.ds.name, &self.ds.dims)?;
        self.transform = Some(transform);
        Ok(self)
    }

    pub fn dataset(&self) -> &Dataset {
        &self.ds
    }

    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.ds.len() / self.batch_size
        } else {
            self.ds.len().div_ceil(self.batch_size)
        }
    }

    /// The example order of an epoch: identity without shuffling, otherwise a
    /// permutation drawn from a stream keyed by `(seed, epoch)`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        epoch_order(self.ds.len(), self.seed, self.shuffle, epoch)
    }

    pub fn epoch(&self, epoch: usize) -> impl Iterator<Item = Batch> + '_ {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on.
    pub fn epoch_from(&self, epoch: usize, first: usize) -> impl Iterator<Item = Batch> + '_ {
        let order = self.order(epoch);
        (first.min(self.batches_per_epoch())..self.batches_per_epoch()).map(move |b| {
            let start = b * self.batch_size;
            let end = (start + self.batch_size).min(order.len());
            self.gather(epoch, start, &order[start..end])
        })
    }

    /// Copies (and transforms) `rows`, the examples at positions `start..` of `epoch`.
    fn gather(&self, epoch: usize, start: usize, rows: &[usize]) -> Batch {
        let dim = self.ds.dim();
        let mut images = vec![0f32; rows.len() * dim];
        let copy = |(k, (dst, &i)): (usize, (&mut [f32], &usize))| match &self.transform {
            Some(t) => t.apply(self.ds.example(i), &self.ds.dims, epoch, start + k, dst),
            None => dst.copy_from_slice(self.ds.example(i)),
        };
        if dim > 0 && images.len() >= PARALLEL_GATHER {
            images.par_chunks_mut(dim).zip(rows.par_iter()).enumerate().for_each(copy);
        } else if dim > 0 {
            images.chunks_mut(dim).zip(rows).enumerate().for_each(copy);
        }
        let mut dims = Vec::with_capacity(1 + self.ds.dims.len());
        dims.push(rows.len());
        dims.extend_from_slice(&self.ds.dims);
        Batch { images, labels: rows.iter().map(|&i| self.ds.labels[i]).collect(), dims }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, dim: usize) -> Dataset {
        Dataset {
            name: "toy".into(),
            images: (0..n * dim).map(|v| v as f32).collect(),
            labels: (0..n as u32).collect(),
            dims: vec![dim],
            classes: n,
        }
    }

    #[test]
    fn rows_match_their_labels_in_serial_and_parallel_gathers() {
        // dim 1024 × batch 100 crosses the parallel threshold; dim 3 does not.
        for dim in [3, 1024] {
            let ds = toy(250, dim);
            let loader = Loader::new(&ds, 100, 9, true, false).unwrap();
            for batch in loader.epoch(0) {
                assert_eq!(batch.dims, vec![batch.rows(), dim]);
                for (r, &label) in batch.labels.iter().enumerate() {
                    assert_eq!(&batch.images[r * dim..(r + 1) * dim], ds.example(label as usize));
                }
            }
        }
    }

    #[test]
    fn transformed_rows_are_drawn_at_their_epoch_position() {
        use crate::data::augment::{PadCropFlip, Padding};
        // 3×16×16 × batch 30 crosses the parallel threshold; 3×4×4 does not.
        for side in [4, 16] {
            let dims = vec![3, side, side];
            let ds = Dataset { dims: dims.clone(), ..toy(70, 3 * side * side) };
            let t = Transform::new(Some(PadCropFlip::cifar(Padding::Zero)), None, 4);
            let loader = Loader::new(&ds, 30, 2, true, false).unwrap().with_transform(t.clone()).unwrap();
            let d = ds.dim();
            for (b, batch) in loader.epoch(5).enumerate() {
                for (r, &label) in batch.labels.iter().enumerate() {
                    let mut want = vec![0.0; d];
                    t.apply(ds.example(label as usize), &dims, 5, b * 30 + r, &mut want);
                    assert_eq!(&batch.images[r * d..(r + 1) * d], want.as_slice(), "batch {b} row {r}");
                }
            }
        }
    }

    #[test]
    fn unshuffled_order_is_the_identity() {
        let ds = toy(10, 2);
        let loader = Loader::new(&ds, 4, 1, false, false).unwrap();
        let labels: Vec<u32> = loader.epoch(3).flat_map(|b| b.labels).collect();
        assert_eq!(labels, (0..10).collect::<Vec<u32>>());
    }

    #[test]
    fn oversized_batch_with_drop_last_is_rejected() {
        let ds = toy(10, 2);
        let err = Loader::new(&ds, 11, 1, true, true).unwrap_err().to_string();
        assert!(err.contains("--batch-size") && err.contains("10 examples"), "{err}");
        assert_eq!(Loader::new(&ds, 11, 1, true, false).unwrap().batches_per_epoch(), 1);
    }
}
