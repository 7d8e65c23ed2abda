//! CIFAR-10 and CIFAR-100 in their binary format: fixed-size records of label
//! bytes followed by 3072 pixel bytes (the R, G and B planes of a 32×32 image,
//! each row-major), which is exactly the `[3, 32, 32]` layout kappa uses.
//!
//! Files are memory-mapped and only the kept records are converted, so a
//! `--limit-train` run does not pay for the whole set. Sizes and labels are
//! checked before they are trusted; every error names the file.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use crate::files::not_a_file;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Pixel bytes of one record: 3 planes of 32×32.
pub const PIXELS: usize = 3 * 32 * 32;

/// Which of the two CIFAR sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cifar {
    Ten,
    Hundred,
}

impl Cifar {
    pub fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "cifar10",
            Cifar::Hundred => "cifar100",
        }
    }

    pub fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }

    /// The folder the official tarball unpacks into.
    pub fn folder(self) -> &'static str {
        match self {
            Cifar::Ten => "cifar-10-batches-bin",
            Cifar::Hundred => "cifar-100-binary",
        }
    }

    pub fn train_files(self) -> &'static [&'static str] {
        match self {
            Cifar::Ten => &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
            Cifar::Hundred => &["train.bin"],
        }
    }

    pub fn test_files(self) -> &'static [&'static str] {
        match self {
            Cifar::Ten => &["test_batch.bin"],
            Cifar::Hundred => &["test.bin"],
        }
    }

    /// Bytes of one record: the label bytes, then the pixels.
    pub fn record_len(self) -> usize {
        self.label_bounds().len() + PIXELS
    }

    /// The exclusive upper bound of each label byte; the class is the last one
    /// (CIFAR-100 stores its 20 coarse classes first, then the 100 fine ones).
    fn label_bounds(self) -> &'static [u8] {
        match self {
            Cifar::Ten => &[10],
            Cifar::Hundred => &[20, 100],
        }
    }
}

/// `dir/file` if it exists, else `dir/<tarball folder>/file`.
pub fn locate(dir: &Path, set: Cifar, file: &str) -> Result<PathBuf> {
    let flat = dir.join(file);
    if flat.is_file() {
        return Ok(flat);
    }
    let nested = dir.join(set.folder()).join(file);
    if nested.is_file() {
        return Ok(nested);
    }
    if let Some((path, problem)) = [&flat, &nested].into_iter().find_map(|p| Some((p, not_a_file(p)?))) {
        return Err(Error::data(path, format!("{problem}; expected {}'s file {file}", set.name())));
    }
    Err(Error::data(
        flat,
        format!(
            "not found (nor in {}/); download {} with `kappa data fetch {} --dir {}`",
            set.folder(),
            set.name(),
            set.name(),
            dir.display()
        ),
    ))
}

/// Appends up to `keep` records of `path` to `images` (scaled to [0, 1]) and
/// `labels`, after checking the file's size and every record's labels.
fn read_file(path: &Path, set: Cifar, keep: usize, images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::data(path, format!("cannot open: {e}")))?;
    let len = file.metadata().map_err(|e| Error::data(path, format!("cannot stat: {e}")))?.len();
    let record = set.record_len();
    if len == 0 || len % record as u64 != 0 {
        return Err(Error::data(
            path,
            format!(
                "size {len} bytes is not a positive whole number of {record}-byte {} records (truncated or not a CIFAR file?)",
                set.name()
            ),
        ));
    }
    // SAFETY: the map is read-only and dropped before returning. Another
    // process truncating the file meanwhile could fault, which no reader of a
    // shared file can prevent; the size was checked above.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::data(path, format!("cannot memory-map: {e}")))?;
    let bounds = set.label_bounds();
    for (i, rec) in map.chunks_exact(record).enumerate() {
        for (k, (&value, &bound)) in rec.iter().zip(bounds).enumerate() {
            if value >= bound {
                let which = if k + 1 == bounds.len() { "label" } else { "coarse label" };
                return Err(Error::data(path, format!("record {i} has {which} {value}, expected less than {bound}")));
            }
        }
    }
    for rec in map.chunks_exact(record).take(keep) {
        let (label, pixels) = rec.split_at(bounds.len());
        labels.push(u32::from(label[bounds.len() - 1]));
        images.extend(pixels.iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

/// Reads the records of `files` (in order) into one dataset, keeping at most `limit`.
fn read_split(dir: &Path, set: Cifar, files: &[&str], limit: Option<usize>) -> Result<Dataset> {
    let paths = files.iter().map(|f| locate(dir, set, f)).collect::<Result<Vec<_>>>()?;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for path in &paths {
        let keep = limit.map_or(usize::MAX, |n| n.saturating_sub(labels.len()));
        read_file(path, set, keep, &mut images, &mut labels)?;
    }
    Ok(Dataset { name: set.name().to_string(), images, labels, dims: vec![3, 32, 32], classes: set.classes() })
}

/// Loads a CIFAR set's train and test splits from `dir` (files directly in it
/// or in the tarball's folder), keeping the first `limit_*` examples of each.
pub fn load(dir: &Path, set: Cifar, limit_train: Option<usize>, limit_test: Option<usize>) -> Result<Split> {
    Ok(Split { train: read_split(dir, set, set.train_files(), limit_train)?, test: read_split(dir, set, set.test_files(), limit_test)? })
}
