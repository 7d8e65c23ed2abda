//! The IDX targets' shared body: one file read as each kind kappa reads.

use crate::verdict::named;
use kappa::data::idx;
use std::path::Path;

/// Reads `path` as images and as labels; whatever loads must be consistent.
pub fn read_both(path: &Path) {
    if let Some(img) = named(idx::read_images(path), path) {
        assert_eq!(img.pixels.len(), img.count * img.rows * img.cols, "pixels for {}×{}×{}", img.count, img.rows, img.cols);
    }
    if let Some(labels) = named(idx::read_labels(path, 10), path) {
        assert!(labels.iter().all(|&l| l < 10), "a label of 10 or more was accepted");
    }
}
