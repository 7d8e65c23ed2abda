//! A gzip-compressed MNIST IDX file: read as images and as labels.
#![no_main]

use kappa_fuzz::{cap, idx, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    idx::read_both(&scratch::file("train-images-idx3-ubyte.gz", bytes));
});
