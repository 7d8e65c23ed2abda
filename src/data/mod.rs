//! Datasets: the built-in synthetic default, MNIST from IDX files, CIFAR-10/100
//! from their binary batches (all in memory), ImageNet streamed from folders of
//! JPEGs; the paper's centre-crop-and-resize, augmentation and normalisation;
//! seeded batch sources.
//!
//! [`load`] scales pixels to [0, 1] (u8 / 255) and nothing else; [`open`] adds
//! the training recipes' augmentation and per-channel normalisation.

pub mod augment;
pub mod cifar;
pub mod fetch;
pub mod idx;
pub mod imagenet;
pub mod imagenet_transform;
pub mod jpeg;
pub mod loader;
pub mod normalize;
pub mod prefetch;
pub mod resample;
pub mod resize;
pub mod source;
pub mod synthetic;
pub mod synthetic_cifar;

pub use augment::{PadCropFlip, Padding, Transform};
pub use imagenet::ImageNetOptions;
pub use loader::{Batch, Loader};
pub use normalize::Normalize;
pub use source::BatchSource;

use crate::error::{Error, Result};
use imagenet::{ImageNet, StreamOptions};
use imagenet_transform::{PhotoTransform, TrainAugment};
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

fn need_dir<'a>(dir: Option<&'a Path>, name: &str, holding: &str) -> Result<&'a Path> {
    dir.ok_or_else(|| Error::arg("--data-dir", format!("the {name} dataset needs --data-dir DIR holding {holding}")))
}

/// Loads dataset `name` into memory: "synthetic" (MNIST-shaped) or
/// "synthetic-cifar" (CIFAR-shaped), both built in; "mnist" (IDX files in `dir`),
/// "cifar10" or "cifar100" (binary batches in `dir` or its tarball folder).
pub fn load(name: &str, dir: Option<&Path>, opts: &LoadOptions) -> Result<Split> {
    for (arg, limit) in [("--limit-train", opts.limit_train), ("--limit-test", opts.limit_test)] {
        if limit == Some(0) {
            return Err(Error::arg(arg, "must be at least 1 (or omitted for the whole set)"));
        }
    }
    let mut split = match name {
        "synthetic" | synthetic_cifar::NAME => {
            // Examples are independent of each other, so generating only the
            // kept prefix gives exactly the examples a full run would see.
            let train = opts.limit_train.map_or(synthetic::TRAIN, |n| n.min(synthetic::TRAIN));
            let test = opts.limit_test.map_or(synthetic::TEST, |n| n.min(synthetic::TEST));
            match name {
                "synthetic" => synthetic::generate(train, test),
                _ => synthetic_cifar::generate(train, test),
            }
        }
        "mnist" => idx::load_mnist(need_dir(dir, name, "the IDX files (download them with `kappa data fetch mnist --dir DIR`)")?)?,
        "cifar10" | "cifar100" => {
            let set = if name == "cifar10" { cifar::Cifar::Ten } else { cifar::Cifar::Hundred };
            let dir = need_dir(dir, name, &format!("the binary batches (download them with `kappa data fetch {name} --dir DIR`)"))?;
            // Converting only the kept records spares a limited run the whole set.
            cifar::load(dir, set, opts.limit_train, opts.limit_test)?
        }
        "imagenet" => {
            return Err(Error::arg("--data", "imagenet is streamed from disk by data::open and cannot be loaded whole into memory"));
        }
        other => {
            return Err(Error::arg(
                "--data",
                format!("unknown dataset `{other}`; expected synthetic, synthetic-cifar, mnist, cifar10, cifar100 or imagenet"),
            ));
        }
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

/// How [`open`] batches and prepares a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenOptions {
    pub load: LoadOptions,
    pub batch_size: usize,
    /// Keys the training order and augmentation.
    pub seed: u64,
    /// Drop the training split's last short batch (the test split keeps it).
    pub drop_last: bool,
    /// Augment the training split with its recipe: in memory, pad 4 (by
    /// `padding`), random crop and flip; ImageNet, random-resized crop, colour
    /// jitter, lighting and flip. Without it ImageNet trains on eval crops.
    pub augment: bool,
    pub padding: Padding,
    /// Per-channel normalisation of both splits (see [`Normalize::default_for`]).
    pub normalize: Option<Normalize>,
    pub imagenet: ImageNetOptions,
}

impl OpenOptions {
    /// No augmentation or normalisation, the whole dataset, default ImageNet geometry.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        OpenOptions {
            load: LoadOptions::default(),
            batch_size,
            seed,
            drop_last: false,
            augment: false,
            padding: Padding::Zero,
            normalize: None,
            imagenet: ImageNetOptions::default(),
        }
    }
}

/// A dataset's two splits as batch sources: train shuffled and augmented,
/// test in order and only normalised.
pub struct Sources {
    pub train: Box<dyn BatchSource>,
    pub test: Box<dyn BatchSource>,
}

/// Opens dataset `name` (any [`load`] accepts, or "imagenet" from
/// `dir/train` and `dir/val`) as batch sources.
pub fn open(name: &str, dir: Option<&Path>, opts: &OpenOptions) -> Result<Sources> {
    if name == "imagenet" {
        return open_imagenet(need_dir(dir, name, "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")?, opts);
    }
    let split = load(name, dir, &opts.load)?;
    let (b, seed) = (opts.batch_size, opts.seed);
    let mut train = Loader::owned(split.train, b, seed, true, opts.drop_last)?;
    let mut test = Loader::owned(split.test, b, seed, false, false)?;
    if opts.augment || opts.normalize.is_some() {
        train = train.with_transform(Transform::new(opts.augment.then(|| PadCropFlip::cifar(opts.padding)), opts.normalize, seed))?;
    }
    if opts.normalize.is_some() {
        test = test.with_transform(Transform::new(None, opts.normalize, seed))?;
    }
    Ok(Sources { train: Box::new(train), test: Box::new(test) })
}

fn open_imagenet(dir: &Path, opts: &OpenOptions) -> Result<Sources> {
    let geometry = &opts.imagenet;
    geometry.check()?;
    if opts.load.crop_resize.is_some() {
        return Err(Error::arg("--crop-resize", "does not apply to imagenet, whose crops are set by its crop size and resize"));
    }
    let (mut train, mut val) = imagenet::scan_splits(dir)?;
    for (listing, limit) in [(&mut train, opts.load.limit_train), (&mut val, opts.load.limit_test)] {
        if let Some(n) = limit {
            listing.files = imagenet::round_robin(&listing.files, n);
        }
    }
    let eval = PhotoTransform::eval(geometry.size, geometry.resize, opts.normalize);
    let train_transform =
        if opts.augment { PhotoTransform::train(geometry.size, TrainAugment::RECIPE, opts.normalize, opts.seed) } else { eval.clone() };
    let stream = |shuffle, drop_last| StreamOptions {
        batch_size: opts.batch_size,
        seed: opts.seed,
        shuffle,
        drop_last,
        prefetch: geometry.prefetch,
    };
    Ok(Sources {
        train: Box::new(ImageNet::new("imagenet", train, train_transform, stream(true, opts.drop_last))?),
        test: Box::new(ImageNet::new("imagenet", val, eval, stream(false, false))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_and_missing_dir_are_argument_errors() {
        let err = load("cifar", None, &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("--data") && err.contains("cifar"), "{err}");
        assert!(err.contains("expected synthetic, synthetic-cifar, mnist, cifar10, cifar100 or imagenet"), "{err}");
        for name in ["mnist", "cifar10", "cifar100"] {
            let err = load(name, None, &LoadOptions::default()).unwrap_err().to_string();
            assert!(err.contains("--data-dir") && err.contains(name), "{err}");
        }
        let err = load("imagenet", Some(Path::new(".")), &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("imagenet") && err.contains("streamed"), "{err}");
        let err = open("imagenet", None, &OpenOptions::new(8, 0)).err().unwrap().to_string();
        assert!(err.contains("--data-dir") && err.contains("train/<wnid>"), "{err}");
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
