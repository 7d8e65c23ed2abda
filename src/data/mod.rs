//! Datasets: the built-in synthetic default, MNIST from IDX files, the
//! paper's centre-crop-and-resize preprocessing, and a seeded batch loader.
//!
//! Pixels are scaled to [0, 1] (u8 / 255) and nothing else: mean subtraction
//! and the like belong to the model, so every dataset arrives the same way.

pub mod fetch;
pub mod idx;
pub mod loader;
pub mod resize;
pub mod synthetic;

pub use loader::{Batch, Loader};

use crate::error::{Error, Result};
use std::path::Path;

/// Examples stored row-major: example `i` is `images[i*dim()..(i+1)*dim()]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Per-example shape, e.g. `[1, 28, 28]`.
    pub dims: Vec<usize>,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example (the product of `dims`).
    pub fn dim(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values of example `i`; panics if `i >= len()`, like slice indexing.
    pub fn example(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.images[i * d..(i + 1) * d]
    }

    /// Keeps the first `n` examples (all of them if there are fewer).
    fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.dim());
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `(crop, out)`: centre-crop to crop×crop, then resize to out×out. The
    /// paper's tiny-MLP experiments use MNIST at 12×12, i.e. `Some((20, 12))`.
    pub crop_resize: Option<(usize, usize)>,
    /// Keep only the first `n` training examples.
    pub limit_train: Option<usize>,
    /// Keep only the first `n` test examples.
    pub limit_test: Option<usize>,
}

/// Loads dataset `name` ("synthetic" or "mnist"; mnist reads IDX files from `dir`).
pub fn load(name: &str, dir: Option<&Path>, opts: &LoadOptions) -> Result<Split> {
    for (arg, limit) in [("--limit-train", opts.limit_train), ("--limit-test", opts.limit_test)] {
        if limit == Some(0) {
            return Err(Error::arg(arg, "must be at least 1 (or omitted for the whole set)"));
        }
    }
    let mut split = match name {
        "synthetic" => {
            // Examples are independent of each other, so generating only the
            // kept prefix gives exactly the examples a full run would see.
            let train = opts.limit_train.map_or(synthetic::TRAIN, |n| n.min(synthetic::TRAIN));
            let test = opts.limit_test.map_or(synthetic::TEST, |n| n.min(synthetic::TEST));
            synthetic::generate(train, test)
        }
        "mnist" => {
            let dir = dir.ok_or_else(|| {
                Error::arg(
                    "--data-dir",
                    "the mnist dataset needs --data-dir DIR holding the IDX files \
                     (download them with `kappa data fetch mnist --dir DIR`)",
                )
            })?;
            idx::load_mnist(dir)?
        }
        other => return Err(Error::arg("--data", format!("unknown dataset `{other}`; expected synthetic or mnist"))),
    };
    if let Some(n) = opts.limit_train {
        split.train.truncate(n);
    }
    if let Some(n) = opts.limit_test {
        split.test.truncate(n);
    }
    if let Some((crop, out)) = opts.crop_resize {
        split.train = resize::crop_resize_dataset(&split.train, crop, out)?;
        split.test = resize::crop_resize_dataset(&split.test, crop, out)?;
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_and_missing_dir_are_argument_errors() {
        let err = load("cifar", None, &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("--data") && err.contains("cifar"), "{err}");
        assert!(err.contains("expected synthetic or mnist"), "{err}");
        let err = load("mnist", None, &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("--data-dir"), "{err}");
    }

    #[test]
    fn synthetic_with_limits_and_crop_resize() {
        let opts = LoadOptions { crop_resize: Some((20, 12)), limit_train: Some(50), limit_test: Some(7) };
        let split = load("synthetic", None, &opts).unwrap();
        assert_eq!((split.train.len(), split.test.len()), (50, 7));
        assert_eq!(split.train.dims, vec![1, 12, 12]);
        assert_eq!(split.train.images.len(), 50 * 144);
        assert_eq!(split.train.example(49).len(), 144);
        assert!(split.train.images.iter().all(|v| (0.0..=1.0).contains(v)));
        let full = synthetic::generate(50, 0);
        assert_eq!(split.train.labels, full.train.labels);
    }

    #[test]
    fn zero_limit_is_rejected() {
        let opts = LoadOptions { limit_test: Some(0), ..LoadOptions::default() };
        let err = load("synthetic", None, &opts).unwrap_err().to_string();
        assert!(err.contains("--limit-test"), "{err}");
    }
}
