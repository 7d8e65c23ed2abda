//! A run directory's checkpoint on `kappa train --resume`: the model, the
//! optimiser and the run state loaded into a fresh trainer of the run's
//! configuration (the small BN MLP with momentum).
#![no_main]

use kappa::checkpoint;
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch, tiny};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    let path = scratch::file(checkpoint::CHECKPOINT_FILE, bytes);
    let cfg = tiny::config(scratch::dir());
    let mut trainer = tiny::to_load(&cfg);
    if let Some(state) = named(trainer.resume(scratch::dir(), &cfg), &path) {
        let (epoch, batch) = state.position();
        assert_eq!(epoch * state.batches_per_epoch.max(1) + batch, state.iteration);
    }
});
