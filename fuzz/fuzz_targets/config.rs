//! A run directory's `config.json` on `kappa train --resume`: read, then
//! checked as every run's configuration is before it starts.
#![no_main]

use kappa::train::TrainConfig;
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    let path = scratch::file("config.json", bytes);
    let Some(cfg) = named(TrainConfig::load_run(scratch::dir()), &path) else { return };
    assert_eq!(cfg.out, scratch::dir(), "a resumed run writes where its config.json is");
    // A bad value is reported against the flag that sets it, like a command line's.
    if let Err(err) = cfg.validate().and_then(|()| cfg.device().map(drop)) {
        assert!(!err.to_string().contains('\n'), "the error is not one line: {err}");
    }
});
