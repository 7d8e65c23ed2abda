//! A PyTorch state dict in safetensors (`kappa analyze --weights`,
//! `kappa train --init-from`), loaded into the small BN MLP with any float
//! dtype converted.
#![no_main]

use kappa::checkpoint;
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch, tiny};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    let path = scratch::file("state_dict.safetensors", bytes);
    let mut trainer = tiny::to_load(&tiny::config(scratch::dir()));
    let backend = *trainer.backend();
    named(checkpoint::load_weights(&path, trainer.model_mut(), &backend), &path);
});
