//! ImageNet (ILSVRC-2012) as folders of JPEGs, `train/<wnid>/*.JPEG` and
//! `val/<wnid>/*.JPEG`, streamed: only the batches in flight are in memory.
//!
//! Classes are the train folders' wnids in sorted order. An epoch's order is a
//! seeded permutation (as for in-memory data); each batch is decoded and
//! transformed in parallel with rayon, and a prefetch thread keeps batches
//! ready ahead of the trainer. An unreadable or corrupt file is skipped with a
//! warning (its batch is one example short); the epoch fails only once more
//! than 1% of the files it has reached failed, so a broken copy of the
//! dataset is not mistaken for a few bad files.

use super::imagenet_transform::PhotoTransform;
use super::jpeg;
use super::loader::epoch_order;
use super::source::BatchSource;
use super::{prefetch, Batch};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The files of one split and their class indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Class `i` is `wnids[i]`.
    pub wnids: Vec<String>,
    pub files: Vec<(PathBuf, u32)>,
}

fn is_jpeg(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// Sorted entries of `dir` that pass `keep`.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let err = |e: std::io::Error| Error::data(dir, format!("cannot list: {e}"));
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if keep(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

/// Lists `root/<wnid>/*.{jpg,jpeg}` (any case). With `classes`, a split's
/// folders must be among them and keep their indices (val against train);
/// without, the sorted folders define the classes.
pub fn scan(root: &Path, classes: Option<&[String]>) -> Result<Listing> {
    if !root.is_dir() {
        return Err(Error::data(root, "not a directory; ImageNet is read from DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG"));
    }
    let folders = sorted_entries(root, Path::is_dir)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let wnids: Vec<String> = match classes {
        Some(known) => known.to_vec(),
        None => folders.iter().map(|p| name(p)).collect(),
    };
    let mut files = Vec::new();
    for folder in &folders {
        let wnid = name(folder);
        let class = wnids
            .binary_search(&wnid)
            .map_err(|_| Error::data(folder, format!("class folder `{wnid}` is not one of the {} training classes", wnids.len())))?;
        files.extend(sorted_entries(folder, |p| p.is_file() && is_jpeg(p))?.into_iter().map(|f| (f, class as u32)));
    }
    if files.is_empty() {
        return Err(Error::data(root, "holds no <wnid>/*.JPEG files"));
    }
    Ok(Listing { wnids, files })
}

/// Keeps `n` files taken round-robin over the classes (the first file of
/// each class, then the second, …), so a small subset still covers them.
pub fn round_robin(files: &[(PathBuf, u32)], n: usize) -> Vec<(PathBuf, u32)> {
    let mut rank = Vec::with_capacity(files.len());
    let mut seen = std::collections::HashMap::new();
    for (i, (_, class)) in files.iter().enumerate() {
        let r = seen.entry(*class).or_insert(0usize);
        rank.push((*r, i));
        *r += 1;
    }
    rank.sort_unstable();
    let mut keep: Vec<usize> = rank.into_iter().take(n).map(|(_, i)| i).collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| files[i].clone()).collect()
}

/// How an ImageNet split is batched and transformed.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamOptions {
    pub batch_size: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub drop_last: bool,
    /// Batches kept ready by a prefetch thread; 0 decodes on the caller's thread.
    pub prefetch: usize,
}

struct Shared {
    name: String,
    files: Vec<(PathBuf, u32)>,
    wnids: Vec<String>,
    dims: Vec<usize>,
    opts: StreamOptions,
    transform: PhotoTransform,
    /// Indices of the files that failed to decode (each is warned about once).
    failed: Mutex<BTreeSet<usize>>,
}

/// A streaming split of ImageNet.
pub struct ImageNet {
    shared: Arc<Shared>,
}

impl ImageNet {
    pub fn new(name: &str, listing: Listing, transform: PhotoTransform, opts: StreamOptions) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(Error::arg("--batch-size", "must be at least 1"));
        }
        if opts.drop_last && opts.batch_size > listing.files.len() {
            return Err(Error::arg(
                "--batch-size",
                format!(
                    "{} exceeds the {} files of {name}, so dropping the last short batch leaves none",
                    opts.batch_size,
                    listing.files.len()
                ),
            ));
        }
        let dims = vec![3, transform.size, transform.size];
        let shared = Shared {
            name: name.to_string(),
            wnids: listing.wnids,
            files: listing.files,
            dims,
            opts,
            transform,
            failed: Mutex::new(BTreeSet::new()),
        };
        Ok(ImageNet { shared: Arc::new(shared) })
    }

    /// The distinct files skipped so far because they could not be decoded.
    pub fn skipped(&self) -> Vec<PathBuf> {
        let failed = self.shared.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.iter().map(|&i| self.shared.files[i].0.clone()).collect()
    }
}

/// One epoch's batches, decoded as they are asked for.
struct Epoch {
    shared: Arc<Shared>,
    epoch: usize,
    order: Vec<usize>,
    next_batch: usize,
    batches: usize,
    /// Files reached and files failed so far this epoch.
    seen: usize,
    failures: usize,
}

impl Epoch {
    fn new(shared: Arc<Shared>, epoch: usize, first: usize) -> Self {
        let n = shared.files.len();
        let order = epoch_order(n, shared.opts.seed, shared.opts.shuffle, epoch);
        let batches = if shared.opts.drop_last { n / shared.opts.batch_size } else { n.div_ceil(shared.opts.batch_size) };
        Epoch { shared, epoch, order, next_batch: first, batches, seen: 0, failures: 0 }
    }

    /// Decodes batch `b`, or fails if the failures now exceed the budget.
    fn batch(&mut self, b: usize) -> Result<Batch> {
        let s = &*self.shared;
        let start = b * s.opts.batch_size;
        let rows = &self.order[start..(start + s.opts.batch_size).min(self.order.len())];
        let decoded: Vec<Result<Vec<f32>>> = rows
            .par_iter()
            .enumerate()
            .map(|(k, &i)| jpeg::read(&s.files[i].0).map(|img| s.transform.apply(&img, self.epoch, start + k)))
            .collect();
        let mut images = Vec::with_capacity(rows.len() * s.dims.iter().product::<usize>());
        let mut labels = Vec::with_capacity(rows.len());
        // Tally in epoch order, so the outcome does not depend on thread timing.
        for (&i, result) in rows.iter().zip(decoded) {
            self.seen += 1;
            match result {
                Ok(values) => {
                    images.extend_from_slice(&values);
                    labels.push(s.files[i].1);
                }
                Err(err) => {
                    self.failures += 1;
                    if s.failed.lock().unwrap_or_else(|e| e.into_inner()).insert(i) {
                        eprintln!("warning: skipping an unreadable image: {err}");
                    }
                    // One failure is always tolerated; beyond that, at most 1% of the files reached.
                    if self.failures > 1 && self.failures * 100 > self.seen {
                        return Err(Error::data(
                            &s.files[i].0,
                            format!(
                                "{} of the first {} files of {} epoch {} could not be decoded (more than 1%): {err}",
                                self.failures, self.seen, s.name, self.epoch
                            ),
                        ));
                    }
                }
            }
        }
        let mut dims = Vec::with_capacity(4);
        dims.push(labels.len());
        dims.extend_from_slice(&s.dims);
        Ok(Batch { images, labels, dims })
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        while self.next_batch < self.batches {
            let b = self.next_batch;
            self.next_batch += 1;
            match self.batch(b) {
                // A batch whose every file failed is skipped, not yielded empty.
                Ok(batch) if batch.rows() == 0 => continue,
                Ok(batch) => return Some(Ok(batch)),
                Err(err) => {
                    self.next_batch = self.batches;
                    return Some(Err(err));
                }
            }
        }
        // Every file reached failed (the 1% budget tolerates one): an epoch
        // of nothing is an error, not a run that takes no steps.
        if self.failures > 0 && self.failures == self.seen {
            let s = &*self.shared;
            let first = s.failed.lock().unwrap_or_else(|e| e.into_inner()).first().map(|&i| s.files[i].0.clone());
            let detail = format!("none of the {} files {} epoch {} reached could be decoded", self.seen, s.name, self.epoch);
            self.failures = 0;
            return Some(Err(Error::data(first.unwrap_or_default(), detail)));
        }
        None
    }
}

impl BatchSource for ImageNet {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn len(&self) -> usize {
        self.shared.files.len()
    }

    fn classes(&self) -> usize {
        self.shared.wnids.len()
    }

    fn example_dims(&self) -> &[usize] {
        &self.shared.dims
    }

    fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.shared.files.len(), self.shared.opts.batch_size);
        if self.shared.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn reordered(&self, batch_size: usize, seed: u64, drop_last: bool) -> Result<Box<dyn BatchSource + '_>> {
        let s = &self.shared;
        let listing = Listing { wnids: s.wnids.clone(), files: s.files.clone() };
        let opts = StreamOptions { batch_size, seed, drop_last, ..s.opts.clone() };
        Ok(Box::new(ImageNet::new(&s.name, listing, s.transform.clone(), opts)?))
    }

    fn epoch_from(&self, epoch: usize, first: usize) -> Box<dyn Iterator<Item = Result<Batch>> + Send + '_> {
        let batches = Epoch::new(Arc::clone(&self.shared), epoch, first);
        match self.shared.opts.prefetch {
            0 => Box::new(batches),
            ahead => Box::new(prefetch::spawn(ahead, batches)),
        }
    }
}

/// ImageNet's geometry and streaming, as the command line sets them.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageNetOptions {
    /// Side of the square crop (224).
    pub size: usize,
    /// Eval: the shorter side is resized to this before the centre crop (256).
    pub resize: usize,
    /// Batches decoded ahead of the trainer.
    pub prefetch: usize,
}

impl Default for ImageNetOptions {
    fn default() -> Self {
        ImageNetOptions { size: 224, resize: 256, prefetch: 2 }
    }
}

impl ImageNetOptions {
    pub fn check(&self) -> Result<()> {
        if self.size == 0 {
            return Err(Error::arg("--crop-size", "must be at least 1"));
        }
        if self.resize < self.size {
            return Err(Error::arg("--resize", format!("{} is smaller than the crop size {}", self.resize, self.size)));
        }
        Ok(())
    }
}

/// Lists `dir/train` and `dir/val` (val's classes must be among train's).
pub fn scan_splits(dir: &Path) -> Result<(Listing, Listing)> {
    let train = scan(&dir.join("train"), None)?;
    let val = scan(&dir.join("val"), Some(&train.wnids))?;
    Ok((train, val))
}
