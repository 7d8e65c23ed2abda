//! CIFAR-10/100 binary batches through `kappa::data::load` and `open`: where
//! pixels and labels land, both directory layouts, limits, every way a file
//! can be wrong, and the augmented training source.

use kappa::data::augment::Placement;
use kappa::data::cifar::{self, Cifar};
use kappa::data::{load, open, LoadOptions, Normalize, OpenOptions, PadCropFlip, Padding};
use std::path::Path;

mod common;
use common::TempDir;

/// The pixel byte at channel `c`, row `y`, column `x` of record `r` of file `f`:
/// distinct enough that a swapped plane, row or record shows.
fn byte(f: usize, r: usize, c: usize, y: usize, x: usize) -> u8 {
    ((f * 101 + r * 37 + c * 89 + y * 7 + x * 3) % 256) as u8
}

/// One file of `labels.len()` records; `labels[r]` are the record's label bytes.
fn records(f: usize, labels: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for (r, lab) in labels.iter().enumerate() {
        v.extend_from_slice(lab);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    v.push(byte(f, r, c, y, x));
                }
            }
        }
    }
    v
}

/// CIFAR-10's six files, file `f` holding `f + 1` records labelled `(f + r) % 10`,
/// written into `dir` (or its tarball folder if `nested`).
fn write_cifar10(dir: &Path, nested: bool) -> Vec<(String, Vec<u32>)> {
    let out = if nested { dir.join("cifar-10-batches-bin") } else { dir.to_path_buf() };
    std::fs::create_dir_all(&out).unwrap();
    let names = [Cifar::Ten.train_files(), Cifar::Ten.test_files()].concat();
    names
        .iter()
        .enumerate()
        .map(|(f, name)| {
            let labels: Vec<u32> = (0..=f).map(|r| ((f + r) % 10) as u32).collect();
            let bytes: Vec<Vec<u8>> = labels.iter().map(|&l| vec![l as u8]).collect();
            std::fs::write(out.join(name), records(f, &bytes)).unwrap();
            (name.to_string(), labels)
        })
        .collect()
}

/// CIFAR-100's two files: 4 train and 3 test records with coarse label `r`, fine `90 + r`.
fn write_cifar100(dir: &Path) {
    for (f, (name, n)) in [("train.bin", 4), ("test.bin", 3)].into_iter().enumerate() {
        let labels: Vec<Vec<u8>> = (0..n).map(|r| vec![r as u8, 90 + r as u8]).collect();
        std::fs::write(dir.join(name), records(f, &labels)).unwrap();
    }
}

fn assert_example(ds: &kappa::data::Dataset, i: usize, f: usize, r: usize) {
    let ex = ds.example(i);
    for (c, y, x) in [(0, 0, 0), (0, 31, 0), (1, 5, 17), (2, 31, 31), (2, 0, 30)] {
        assert_eq!(ex[c * 1024 + y * 32 + x], byte(f, r, c, y, x) as f32 / 255.0, "example {i} at ({c}, {y}, {x})");
    }
}

#[test]
fn cifar10_round_trip_in_both_layouts() {
    for nested in [false, true] {
        let dir = TempDir::new("c10");
        let written = write_cifar10(dir.path(), nested);
        let split = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap();
        let (train, test) = (&split.train, &split.test);
        assert_eq!((train.name.as_str(), train.classes, train.dims.as_slice()), ("cifar10", 10, &[3, 32, 32][..]));
        // Five train files of 1..=5 records, in file order.
        assert_eq!(train.len(), 15);
        let want: Vec<u32> = written[..5].iter().flat_map(|(_, l)| l.clone()).collect();
        assert_eq!(train.labels, want);
        assert_example(train, 0, 0, 0);
        assert_example(train, 1, 1, 0);
        assert_example(train, 14, 4, 4);
        assert_eq!(test.labels, written[5].1);
        assert_example(test, 5, 5, 5);
        assert!(train.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn cifar100_uses_the_fine_label() {
    let dir = TempDir::new("c100");
    write_cifar100(dir.path());
    let split = load("cifar100", Some(dir.path()), &LoadOptions::default()).unwrap();
    assert_eq!((split.train.name.as_str(), split.train.classes), ("cifar100", 100));
    assert_eq!(split.train.labels, vec![90, 91, 92, 93]);
    assert_eq!(split.test.labels, vec![90, 91, 92]);
    assert_example(&split.train, 3, 0, 3);
    assert_example(&split.test, 2, 1, 2);
}

#[test]
fn limits_keep_the_first_examples_across_files() {
    let dir = TempDir::new("limit");
    write_cifar10(dir.path(), false);
    let full = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap();
    let opts = LoadOptions { limit_train: Some(4), limit_test: Some(2), crop_resize: None };
    let split = load("cifar10", Some(dir.path()), &opts).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (4, 2));
    assert_eq!(split.train.labels, full.train.labels[..4]);
    assert_eq!(split.train.images, full.train.images[..4 * 3072]);
    assert_eq!(split.test.images, full.test.images[..2 * 3072]);
}

#[test]
fn truncated_batch_names_file_size_and_record_size() {
    let dir = TempDir::new("trunc");
    write_cifar10(dir.path(), false);
    let path = dir.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    let size = (bytes.len() - 10).to_string();
    for needle in [path.display().to_string().as_str(), size.as_str(), "3073"] {
        assert!(err.contains(needle), "error lacks `{needle}`: {err}");
    }
    std::fs::write(&path, b"").unwrap();
    let err = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin") && err.contains("size 0"), "{err}");
}

#[test]
fn out_of_range_labels_name_file_and_record() {
    let dir = TempDir::new("label");
    write_cifar10(dir.path(), false);
    let path = dir.path().join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4 * 3073] = 10;
    std::fs::write(&path, &bytes).unwrap();
    let err = load("cifar10", Some(dir.path()), &LoadOptions { limit_test: Some(1), ..LoadOptions::default() }).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("record 4") && err.contains("label 10"), "{err}");

    // CIFAR-100 checks the fine label against 100 and the coarse one against 20.
    let dir = TempDir::new("label100");
    write_cifar100(dir.path());
    let path = dir.path().join("train.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2 * 3074 + 1] = 100;
    std::fs::write(&path, &bytes).unwrap();
    let err = load("cifar100", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("train.bin") && err.contains("record 2") && err.contains("label 100"), "{err}");
    bytes[2 * 3074 + 1] = 99;
    bytes[3 * 3074] = 20;
    std::fs::write(&path, &bytes).unwrap();
    let err = load("cifar100", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("record 3") && err.contains("coarse label 20"), "{err}");
}

#[test]
fn missing_file_names_both_places_and_the_fetch_command() {
    let dir = TempDir::new("missing");
    write_cifar10(dir.path(), true);
    std::fs::remove_file(dir.path().join("cifar-10-batches-bin/data_batch_5.bin")).unwrap();
    let err = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("data_batch_5.bin") && err.contains("cifar-10-batches-bin") && err.contains("kappa data fetch cifar10"), "{err}");
    assert!(cifar::locate(dir.path(), Cifar::Ten, "test_batch.bin").unwrap().ends_with("cifar-10-batches-bin/test_batch.bin"));
    // A directory where the batch should be is named as one, not as missing.
    std::fs::create_dir(dir.path().join("cifar-10-batches-bin/data_batch_5.bin")).unwrap();
    let err = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("data_batch_5.bin") && err.contains("is a directory, not a file") && !err.contains("not found"), "{err}");
}

#[test]
fn open_augments_train_and_only_normalises_test() {
    let dir = TempDir::new("open");
    write_cifar10(dir.path(), false);
    let mut opts = OpenOptions::new(4, 11);
    opts.augment = true;
    opts.padding = Padding::Reflect;
    opts.normalize = Some(Normalize::TAU_RESNET_CIFAR);
    opts.drop_last = true;
    let sources = open("cifar10", Some(dir.path()), &opts).unwrap();
    let (train, test) = (&sources.train, &sources.test);
    assert_eq!((train.name(), train.len(), train.classes(), train.example_dims()), ("cifar10", 15, 10, &[3, 32, 32][..]));
    assert_eq!((train.batches_per_epoch(), test.batches_per_epoch()), (3, 2), "15 / 4 dropping the rest; 6 / 4 keeping it");
    let epoch = |src: &dyn kappa::data::BatchSource, e| src.epoch(e).collect::<Result<Vec<_>, _>>().unwrap();
    let again = open("cifar10", Some(dir.path()), &opts).unwrap();
    assert_eq!(epoch(&**train, 2), epoch(&*again.train, 2), "same seed and epoch, same batches");
    assert_ne!(epoch(&**train, 2), epoch(&*again.train, 3));

    // Test batches are the raw examples, in order, normalised.
    let raw = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap().test;
    let batches = epoch(&**test, 0);
    assert_eq!(batches.iter().map(|b| b.rows()).collect::<Vec<_>>(), vec![4, 2]);
    let n = Normalize::TAU_RESNET_CIFAR;
    for (k, (&got, &x)) in batches[1].images.iter().zip(&raw.images[4 * 3072..]).enumerate() {
        let c = (k % 3072) / 1024;
        assert!((got - (x - n.mean[c]) / n.std[c]).abs() < 1e-5, "value {k}");
    }

    // Each augmented example, de-normalised, is a reflect-padded crop (maybe
    // flipped) of a training image with its label, and not all are the identity.
    let raw_train = load("cifar10", Some(dir.path()), &LoadOptions::default()).unwrap().train;
    let aug = PadCropFlip::cifar(Padding::Reflect);
    let mut moved = 0;
    for batch in epoch(&**train, 0) {
        assert_eq!(batch.dims, vec![4, 3, 32, 32]);
        for (r, &label) in batch.labels.iter().enumerate() {
            let got: Vec<f32> =
                batch.images[r * 3072..(r + 1) * 3072].iter().enumerate().map(|(k, v)| v * n.std[k / 1024] + n.mean[k / 1024]).collect();
            let mut dst = vec![0.0; 3072];
            let found = (0..raw_train.len()).filter(|&i| raw_train.labels[i] == label).find_map(|i| {
                (0..162).map(|p| Placement { dy: p % 9, dx: (p / 9) % 9, flip: p >= 81 }).find(|&at| {
                    aug.apply(raw_train.example(i), [3, 32, 32], at, &mut dst);
                    dst.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-5)
                })
            });
            let at = found.unwrap_or_else(|| panic!("row {r} is no crop of a training image labelled {label}"));
            moved += usize::from(at != Placement { dy: 4, dx: 4, flip: false });
        }
    }
    assert!(moved > 6, "only {moved} of 12 examples were shifted or flipped");
}

fn logged(run: &Path, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["kind"] == kind).collect()
}

#[test]
fn a_preset_trains_resnet_on_cifar_and_resumes_exactly() {
    let dir = TempDir::new("preset");
    write_cifar10(dir.path(), false);
    let data = dir.path().to_str().unwrap();
    let run = |name: &str, iterations: &str| {
        let out = dir.path().join(name);
        let args = ["train", "--preset", "lca-cifar", "--data-dir", data, "--depth", "8", "--batch-size", "4", "--analyze-every", "2"];
        common::succeed(&[&args[..], &["--iterations", iterations, "--out", out.to_str().unwrap()]].concat());
        out
    };
    let whole = run("whole", "5");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join("config.json")).unwrap()).unwrap();
    let train = &config["train"];
    assert_eq!(
        (train["preset"].as_str(), train["model"].as_str(), train["nesterov"].as_bool()),
        (Some("lca-cifar"), Some("resnet"), Some(true))
    );
    assert_eq!(train["pipeline"]["padding"], "reflect");
    assert_eq!((train["pipeline"]["augment"].as_bool(), train["pipeline"]["drop_last"].as_bool()), (Some(true), Some(true)));

    // 15 training examples in batches of 4 with the last dropped: 3 a epoch, so 5 steps end in epoch 2.
    let evals = logged(&whole, "eval");
    assert_eq!(evals.iter().map(|e| e["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 5]);
    for e in &evals {
        let (top1, top5) = (e["test_top1_error"].as_f64().unwrap(), e["test_top5_error"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&top1) && top5 <= top1, "{e}");
        assert!((top1 - (1.0 - e["test_accuracy"].as_f64().unwrap())).abs() < 1e-12, "{e}");
    }
    assert!(logged(&whole, "analysis").iter().any(|r| r["layer"].as_str().is_some_and(|l| l.starts_with("layer1.0.conv1"))));

    // Stopped mid-epoch and resumed: the augmented batches pick up where they left off.
    let parts = run("parts", "4");
    common::succeed(&["train", "--resume", parts.to_str().unwrap(), "--iterations", "5"]);
    let last = |run: &Path| logged(run, "eval").last().unwrap()["test_loss"].clone();
    assert_eq!(last(&parts), last(&whole));
}
