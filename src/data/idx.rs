//! MNIST's IDX format: a big-endian header (magic `0x0000_08_nd`, then `nd`
//! u32 dimensions) followed by the u8 payload.
//!
//! Files may be raw (memory-mapped) or gzip-compressed. Every size is checked
//! before it is trusted, so no input bytes can make the reader panic or
//! allocate more than the file actually holds.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use crate::files::not_a_file;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Magic of an IDX file of u8 with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic of an IDX file of u8 with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 2049;

/// The canonical MNIST file names (without `.gz`): train images, train labels,
/// test images, test labels.
pub const MNIST_TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const MNIST_TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const MNIST_TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const MNIST_TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// A stack of 8-bit greyscale images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }

    fn ndims(self) -> usize {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    fn header_len(self) -> usize {
        4 + 4 * self.ndims()
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Images => "IDX images",
            Kind::Labels => "IDX labels",
        }
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Validates the header at the start of `bytes` (which must hold at least the
/// header) and returns the dimensions and the payload size they declare.
fn parse_header(path: &Path, bytes: &[u8], kind: Kind) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        return Err(Error::data(path, format!("too short for an IDX file: {} bytes, no magic number", bytes.len())));
    }
    let magic = be_u32(bytes, 0);
    if magic != kind.magic() {
        return Err(Error::data(path, format!("wrong magic number {magic}, expected {} ({})", kind.magic(), kind.what())));
    }
    if bytes.len() < kind.header_len() {
        return Err(Error::data(path, format!("truncated header: expected {} bytes, actual {}", kind.header_len(), bytes.len())));
    }
    let dims: Vec<usize> = (0..kind.ndims()).map(|i| be_u32(bytes, 4 + 4 * i) as usize).collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("declared dimensions {dims:?} overflow the address space")))?;
    Ok((dims, payload))
}

/// Reads a whole IDX file of the given kind: dimensions and payload bytes.
fn read_idx(path: &Path, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = File::open(path).map_err(|e| Error::data(path, format!("cannot open: {e}")))?;
    if path.extension().is_some_and(|e| e == "gz") {
        read_gz(path, file, kind)
    } else {
        read_raw(path, file, kind)
    }
}

fn size_error(path: &Path, dims: &[usize], expected: usize, actual: u64) -> Error {
    let problem = if actual < expected as u64 { "truncated" } else { "trailing data" };
    Error::data(path, format!("{problem}: expected {expected} bytes for dimensions {dims:?}, actual {actual}"))
}

fn read_raw(path: &Path, file: File, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let len = file.metadata().map_err(|e| Error::data(path, format!("cannot stat: {e}")))?.len();
    // Mapping zero bytes fails on some systems; an empty file is just too short.
    let map;
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: the map is read-only and dropped before returning. Another
        // process truncating the file meanwhile could fault, which no reader of
        // a shared file can prevent; the bytes themselves are validated first.
        map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::data(path, format!("cannot memory-map: {e}")))?;
        &map
    };
    let (dims, payload) = parse_header(path, bytes, kind)?;
    let expected = payload.saturating_add(kind.header_len());
    if expected != bytes.len() {
        return Err(size_error(path, &dims, expected, bytes.len() as u64));
    }
    Ok((dims, bytes[kind.header_len()..].to_vec()))
}

/// Decompresses at most what the header declares (plus one byte to detect
/// trailing data), so a hostile archive cannot exhaust memory.
fn read_gz(path: &Path, file: File, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let gz_err = |e: io::Error| Error::data(path, format!("gzip decompression failed: {e}"));
    let mut decoder = MultiGzDecoder::new(io::BufReader::new(file));
    let mut header = Vec::with_capacity(kind.header_len());
    (&mut decoder).take(kind.header_len() as u64).read_to_end(&mut header).map_err(gz_err)?;
    let (dims, payload) = parse_header(path, &header, kind)?;
    let mut data = Vec::new();
    (&mut decoder).take((payload as u64).saturating_add(1)).read_to_end(&mut data).map_err(gz_err)?;
    if data.len() != payload {
        // Count the rest without keeping it, to report the true size.
        let rest = io::copy(&mut decoder, &mut io::sink()).map_err(gz_err)?;
        let actual = (header.len() + data.len()) as u64 + rest;
        let expected = payload.saturating_add(kind.header_len());
        return Err(size_error(path, &dims, expected, actual));
    }
    Ok((dims, data))
}

/// Reads an IDX images file (raw, or gzip if the name ends in `.gz`).
pub fn read_images(path: &Path) -> Result<Images> {
    let (dims, pixels) = read_idx(path, Kind::Images)?;
    Ok(Images { count: dims[0], rows: dims[1], cols: dims[2], pixels })
}

/// Reads an IDX labels file and checks every label is below `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, Kind::Labels)?;
    if let Some((i, &v)) = labels.iter().enumerate().find(|&(_, &v)| v as usize >= classes) {
        return Err(Error::data(path, format!("label at index {i} has value {v}, expected less than {classes}")));
    }
    Ok(labels)
}

/// `dir/name` if it exists, else `dir/name.gz`.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    if let Some((path, problem)) = [&raw, &gz].into_iter().find_map(|p| Some((p, not_a_file(p)?))) {
        return Err(Error::data(path, format!("{problem}; expected the MNIST-format IDX file {name} or {name}.gz")));
    }
    Err(Error::data(raw, format!("not found (nor {name}.gz); download MNIST with `kappa data fetch mnist --dir {}`", dir.display())))
}

/// Reads one images/labels pair into a dataset with pixels scaled to [0, 1].
pub fn read_pair(name: &str, images: &Path, labels: &Path, classes: usize) -> Result<Dataset> {
    let img = read_images(images)?;
    let lab = read_labels(labels, classes)?;
    if img.count != lab.len() {
        return Err(Error::data(
            labels,
            format!("count mismatch: {} labels, but {} holds {} images", lab.len(), images.display(), img.count),
        ));
    }
    Ok(Dataset {
        name: name.to_string(),
        images: img.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: lab.into_iter().map(u32::from).collect(),
        dims: vec![1, img.rows, img.cols],
        classes,
    })
}

/// Loads MNIST's train and test sets from the canonical files in `dir`.
/// The test images must have the training images' size: a model takes one.
pub fn load_mnist(dir: &Path) -> Result<Split> {
    let set = |images: &str, labels: &str| read_pair("mnist", &locate(dir, images)?, &locate(dir, labels)?, 10);
    let (train, test) = (set(MNIST_TRAIN_IMAGES, MNIST_TRAIN_LABELS)?, set(MNIST_TEST_IMAGES, MNIST_TEST_LABELS)?);
    if test.dims != train.dims {
        let side = |d: &[usize]| format!("{}×{}", d[1], d[2]);
        let detail =
            format!("holds {} images, but the training images are {}; expected the same size", side(&test.dims), side(&train.dims));
        return Err(Error::data(locate(dir, MNIST_TEST_IMAGES)?, detail));
    }
    Ok(Split { train, test })
}
