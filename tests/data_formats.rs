//! IDX reading (raw and gzip, and every way a file can be wrong) and the
//! batch loader, through the public `kappa::data` API.

use flate2::write::GzEncoder;
use flate2::Compression;
use kappa::data::idx::{self, Images};
use kappa::data::{load, Dataset, LoadOptions, Loader};
use std::io::Write;
use std::path::Path;

mod common;
use common::TempDir;

fn images_idx(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051, count, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn labels_idx(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2049, labels.len() as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Pixels covering the whole u8 range, so the /255 scaling is checked at both ends.
fn pixels(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 255 + salt * 7) % 256) as u8).collect()
}

/// Writes a small MNIST-layout directory (5 train, 2 test images of 3×4).
fn write_mnist(dir: &TempDir, compress: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (train_px, test_px) = (pixels(5 * 12, 0), pixels(2 * 12, 1));
    let (train_lab, test_lab) = (vec![0u8, 9, 3, 3, 7], vec![5u8, 1]);
    let files = [
        ("train-images-idx3-ubyte", images_idx(5, 3, 4, &train_px)),
        ("train-labels-idx1-ubyte", labels_idx(&train_lab)),
        ("t10k-images-idx3-ubyte", images_idx(2, 3, 4, &test_px)),
        ("t10k-labels-idx1-ubyte", labels_idx(&test_lab)),
    ];
    for (name, bytes) in files {
        if compress {
            dir.write(&format!("{name}.gz"), &gz(&bytes));
        } else {
            dir.write(name, &bytes);
        }
    }
    (train_px, train_lab, test_px, test_lab)
}

fn check_round_trip(compress: bool) {
    let dir = TempDir::new(if compress { "gz" } else { "raw" });
    let (train_px, train_lab, test_px, test_lab) = write_mnist(&dir, compress);
    let split = load("mnist", Some(dir.path()), &LoadOptions::default()).unwrap();
    for (ds, px, lab) in [(&split.train, &train_px, &train_lab), (&split.test, &test_px, &test_lab)] {
        assert_eq!(ds.dims, vec![1, 3, 4]);
        assert_eq!(ds.classes, 10);
        assert_eq!(ds.labels, lab.iter().map(|&l| l as u32).collect::<Vec<_>>());
        let want: Vec<f32> = px.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(ds.images, want);
    }
    assert!(split.train.images.contains(&0.0) && split.train.images.contains(&1.0));
}

#[test]
fn raw_files_round_trip() {
    check_round_trip(false);
}

#[test]
fn gzip_files_round_trip() {
    check_round_trip(true);
}

#[test]
fn limits_and_crop_resize_apply_to_mnist() {
    let dir = TempDir::new("limits");
    write_mnist(&dir, false);
    let opts = LoadOptions { crop_resize: Some((2, 1)), limit_train: Some(3), limit_test: Some(9) };
    let split = load("mnist", Some(dir.path()), &opts).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 2));
    assert_eq!(split.train.dims, vec![1, 1, 1]);
    // The centre 2×2 of a 3×4 image starts at row 0, column 1: pixels 1, 2, 5, 6.
    let px = pixels(12, 0);
    let want = [1, 2, 5, 6].iter().map(|&i| px[i] as f32 / 255.0).sum::<f32>() / 4.0;
    assert!((split.train.images[0] - want).abs() < 1e-6);
}

fn err_of<T: std::fmt::Debug>(r: kappa::Result<T>) -> String {
    r.unwrap_err().to_string()
}

fn assert_names(err: &str, path: &Path, words: &[&str]) {
    assert!(err.contains(&path.display().to_string()), "error does not name {}: {err}", path.display());
    for w in words {
        assert!(err.contains(w), "error lacks `{w}`: {err}");
    }
}

#[test]
fn wrong_magic_is_reported() {
    let dir = TempDir::new("magic");
    // A label file where images are expected, and vice versa.
    let images = dir.write("images", &labels_idx(&[1, 2, 3]));
    assert_names(&err_of(idx::read_images(&images)), &images, &["magic", "2049", "2051"]);
    let labels = dir.write("labels", &images_idx(1, 1, 1, &[0]));
    assert_names(&err_of(idx::read_labels(&labels, 10)), &labels, &["magic", "2051", "2049"]);
}

#[test]
fn truncated_files_report_expected_and_actual_bytes() {
    let dir = TempDir::new("trunc");
    // 2 images of 2×2 need 16 + 8 = 24 bytes; give 21.
    let full = images_idx(2, 2, 2, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let raw = dir.write("short", &full[..21]);
    assert_names(&err_of(idx::read_images(&raw)), &raw, &["truncated", "24", "21"]);
    let gzipped = dir.write("short.gz", &gz(&full[..21]));
    assert_names(&err_of(idx::read_images(&gzipped)), &gzipped, &["truncated", "24", "21"]);
    // A header cut short is also a truncation.
    let header = dir.write("header", &full[..10]);
    assert_names(&err_of(idx::read_images(&header)), &header, &["truncated", "16", "10"]);
}

#[test]
fn trailing_bytes_are_reported() {
    let dir = TempDir::new("trailing");
    let mut bytes = labels_idx(&[1, 2]);
    bytes.push(3);
    let raw = dir.write("long", &bytes);
    assert_names(&err_of(idx::read_labels(&raw, 10)), &raw, &["trailing", "10", "11"]);
    let gzipped = dir.write("long.gz", &gz(&bytes));
    assert_names(&err_of(idx::read_labels(&gzipped, 10)), &gzipped, &["trailing", "10", "11"]);
}

#[test]
fn label_out_of_range_names_index_and_value() {
    let dir = TempDir::new("label");
    let path = dir.write("labels", &labels_idx(&[0, 9, 2, 10, 4]));
    assert_names(&err_of(idx::read_labels(&path, 10)), &path, &["index 3", "value 10"]);
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = TempDir::new("count");
    write_mnist(&dir, false);
    let labels = dir.write("train-labels-idx1-ubyte", &labels_idx(&[1, 2, 3, 4]));
    let err = err_of(load("mnist", Some(dir.path()), &LoadOptions::default()));
    assert_names(&err, &labels, &["4 labels", "5 images", "train-images-idx3-ubyte"]);
}

#[test]
fn missing_file_is_reported() {
    let dir = TempDir::new("missing");
    let err = err_of(load("mnist", Some(dir.path()), &LoadOptions::default()));
    assert_names(&err, &dir.path().join("train-images-idx3-ubyte"), &["not found", ".gz", "fetch"]);
    // Only the test labels missing: that file is the one named.
    write_mnist(&dir, true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = err_of(load("mnist", Some(dir.path()), &LoadOptions::default()));
    assert_names(&err, &dir.path().join("t10k-labels-idx1-ubyte"), &["not found"]);
    // A directory in its place is named as one, not as missing.
    std::fs::create_dir(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = err_of(load("mnist", Some(dir.path()), &LoadOptions::default()));
    assert_names(&err, &dir.path().join("t10k-labels-idx1-ubyte.gz"), &["is a directory, not a file", "IDX"]);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let dir = TempDir::new("corrupt");
    let mut bytes = gz(&labels_idx(&[1, 2, 3]));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes.truncate(bytes.len() - 3);
    let path = dir.write("labels.gz", &bytes);
    assert_names(&err_of(idx::read_labels(&path, 10)), &path, &[]);
}

#[test]
fn no_prefix_of_a_valid_file_and_no_huge_header_panics() {
    let dir = TempDir::new("prefix");
    let full = images_idx(2, 2, 3, &pixels(12, 2));
    let path = dir.path().join("x");
    let gz_path = dir.path().join("x.gz");
    for cut in 0..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        assert!(idx::read_images(&path).is_err(), "prefix of {cut} bytes accepted");
        std::fs::write(&gz_path, gz(&full[..cut])).unwrap();
        assert!(idx::read_images(&gz_path).is_err(), "gz prefix of {cut} bytes accepted");
    }
    std::fs::write(&path, &full).unwrap();
    assert_eq!(idx::read_images(&path).unwrap(), Images { count: 2, rows: 2, cols: 3, pixels: pixels(12, 2) });
    // Dimensions whose product overflows, and a huge declared size with no data.
    let huge = dir.write("huge", &images_idx(u32::MAX, u32::MAX, u32::MAX, &[]));
    assert_names(&err_of(idx::read_images(&huge)), &huge, &["overflow"]);
    let big = dir.write("big.gz", &gz(&images_idx(60_000, 1 << 12, 1 << 12, &[1, 2, 3])));
    assert_names(&err_of(idx::read_images(&big)), &big, &["truncated"]);
}

fn indexed(n: usize, dim: usize) -> Dataset {
    Dataset {
        name: "indexed".into(),
        images: (0..n * dim).map(|v| v as f32).collect(),
        labels: (0..n as u32).collect(),
        dims: vec![dim],
        classes: n,
    }
}

fn epoch_labels(loader: &Loader, epoch: usize) -> Vec<u32> {
    loader.epoch(epoch).flat_map(|b| b.labels).collect()
}

#[test]
fn loader_order_is_a_function_of_seed_and_epoch() {
    let ds = indexed(100, 3);
    let a = Loader::new(&ds, 16, 42, true, false).unwrap();
    let b = Loader::new(&ds, 16, 42, true, false).unwrap();
    assert_eq!(epoch_labels(&a, 5), epoch_labels(&b, 5));
    // Whole batches agree, not just the order.
    assert_eq!(a.epoch(5).collect::<Vec<_>>(), b.epoch(5).collect::<Vec<_>>());
    assert_ne!(epoch_labels(&a, 5), epoch_labels(&a, 6));
    let c = Loader::new(&ds, 16, 43, true, false).unwrap();
    assert_ne!(epoch_labels(&a, 5), epoch_labels(&c, 5));
    assert_ne!(epoch_labels(&a, 0), (0..100).collect::<Vec<u32>>());
}

#[test]
fn loader_covers_every_example_once_per_epoch() {
    let ds = indexed(103, 5);
    let loader = Loader::new(&ds, 10, 7, true, false).unwrap();
    assert_eq!(loader.batches_per_epoch(), 11);
    for epoch in 0..3 {
        let batches: Vec<_> = loader.epoch(epoch).collect();
        assert_eq!(batches.len(), 11);
        assert_eq!(batches.last().unwrap().dims, vec![3, 5]);
        let mut seen = Vec::new();
        for b in &batches {
            for (r, &label) in b.labels.iter().enumerate() {
                assert_eq!(&b.images[r * 5..(r + 1) * 5], ds.example(label as usize));
                seen.push(label);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<u32>>());
    }
}

#[test]
fn drop_last_skips_the_short_batch() {
    let ds = indexed(10, 2);
    let loader = Loader::new(&ds, 4, 1, true, true).unwrap();
    assert_eq!(loader.batches_per_epoch(), 2);
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.rows() == 4 && b.dims == vec![4, 2]));
    let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    let keep = Loader::new(&ds, 4, 1, true, false).unwrap();
    let sizes: Vec<usize> = keep.epoch(0).map(|b| b.rows()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
}

#[test]
fn zero_batch_size_is_an_argument_error() {
    let ds = indexed(10, 2);
    let err = Loader::new(&ds, 0, 1, true, false).unwrap_err().to_string();
    assert!(err.contains("--batch-size"), "{err}");
}
