//! A run directory's `metrics.jsonl` as `kappa report` reads it: every line
//! either a record or one reported malformed line, never a failed report.
#![no_main]

use kappa::report::read::Run;
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    let path = scratch::file("metrics.jsonl", bytes);
    let run = named(Run::load(scratch::dir()), &path).expect("a readable metrics.jsonl always loads");
    let lines = bytes.split(|&b| b == b'\n').count();
    assert!(run.malformed.len() <= lines);
    assert!(run.analysis_by_mode().iter().map(|(_, records)| records.len()).sum::<usize>() == run.analysis.len());
});
