//! A run directory's `metrics.jsonl` as `kappa report` reads it: every line
//! either a record or one reported malformed line, never a failed report,
//! except for a log whose only readable records are `kappa luckmatters`'
//! own, which is refused with one line naming the file.
#![no_main]

use kappa::report::read::Run;
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    let path = scratch::file("metrics.jsonl", bytes);
    match Run::load(scratch::dir()) {
        Ok(run) => {
            let lines = bytes.split(|&b| b == b'\n').count();
            assert!(run.malformed.len() <= lines);
            assert!(run.analysis_by_mode().iter().map(|(_, records)| records.len()).sum::<usize>() == run.analysis.len());
        }
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains("`kappa luckmatters` records"), "a readable metrics.jsonl failed to load: {message}");
            named::<()>(Err(err), &path);
        }
    }
});
