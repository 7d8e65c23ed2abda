//! A CIFAR binary batch: the folder of a CIFAR-10 and of a CIFAR-100 set
//! whose every file holds the input, loaded whole.
#![no_main]

use kappa::data::cifar::{self, Cifar, PIXELS};
use kappa_fuzz::verdict::named;
use kappa_fuzz::{cap, scratch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cap::input(bytes.len());
    for set in [Cifar::Ten, Cifar::Hundred] {
        let folder = set.folder();
        let files = set.train_files().iter().chain(set.test_files());
        let paths: Vec<_> = files.map(|f| scratch::file(&format!("{folder}/{f}"), bytes)).collect();
        let loaded = cifar::load(&scratch::dir().join(folder), set, None, None);
        // The first file is read first, so any error is about it.
        if let Some(split) = named(loaded, &paths[0]) {
            let records = bytes.len() / set.record_len();
            for part in [&split.train, &split.test] {
                assert_eq!(part.images.len(), part.len() * PIXELS);
                assert!(part.labels.iter().all(|&l| (l as usize) < set.classes()));
            }
            assert_eq!(split.test.len(), records);
        }
    }
});
