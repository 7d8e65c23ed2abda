//! ImageNet-layout folders of JPEGs (generated here, tiny) through
//! `kappa::data`: class indices, the eval crop's geometry, corrupt files,
//! and the prefetching stream against the sequential one.

use image::codecs::jpeg::JpegEncoder;
use image::ColorType;
use kappa::data::imagenet::{self, ImageNet, StreamOptions};
use kappa::data::imagenet_transform::{PhotoTransform, TrainAugment};
use kappa::data::{jpeg, open, BatchSource, ImageNetOptions, Normalize, OpenOptions};
use std::path::Path;

mod common;
use common::TempDir;

/// Encodes a `width × height` RGB image whose pixel (x, y) is `f(x, y)`.
fn jpeg_bytes(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let f = &f;
    let pixels: Vec<u8> = (0..height).flat_map(|y| (0..width).flat_map(move |x| f(x, y))).collect();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 100).encode(&pixels, width, height, ColorType::Rgb8).unwrap();
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `count` small JPEGs per class under `root/<wnid>/`, each a flat colour set by its index.
fn populate(root: &Path, wnids: &[&str], count: usize) {
    for (c, wnid) in wnids.iter().enumerate() {
        for i in 0..count {
            let shade = ((c * 97 + i * 13) % 256) as u8;
            write(&root.join(wnid).join(format!("{wnid}_{i}.JPEG")), &jpeg_bytes(12, 10, |x, _| [shade, x as u8 * 9, 200]));
        }
    }
}

fn stream(batch_size: usize, prefetch: usize) -> StreamOptions {
    StreamOptions { batch_size, seed: 3, shuffle: true, drop_last: false, prefetch }
}

fn train_transform() -> PhotoTransform {
    PhotoTransform::train(8, TrainAugment::RECIPE, Some(Normalize::IMAGENET), 3)
}

#[test]
fn classes_are_sorted_wnids_and_extensions_any_case() {
    let dir = TempDir::new("classes");
    let img = jpeg_bytes(8, 8, |_, _| [1, 2, 3]);
    for file in ["train/n03/a.JPEG", "train/n01/b.jpg", "train/n01/a.Jpeg", "train/n02/c.jpeg", "val/n03/v.JPG", "val/n01/w.JPEG"] {
        write(&dir.path().join(file), &img);
    }
    write(&dir.path().join("train/n02/notes.txt"), b"not an image");
    let (train, val) = imagenet::scan_splits(dir.path()).unwrap();
    assert_eq!(train.wnids, vec!["n01", "n02", "n03"]);
    let names = |l: &imagenet::Listing| -> Vec<(String, u32)> {
        l.files.iter().map(|(p, c)| (p.strip_prefix(dir.path()).unwrap().display().to_string(), *c)).collect()
    };
    let want = [("train/n01/a.Jpeg", 0), ("train/n01/b.jpg", 0), ("train/n02/c.jpeg", 1), ("train/n03/a.JPEG", 2)];
    assert_eq!(names(&train), want.map(|(p, c)| (p.to_string(), c)));
    assert_eq!(names(&val), vec![("val/n01/w.JPEG".to_string(), 0), ("val/n03/v.JPG".to_string(), 2)]);

    write(&dir.path().join("val/n09/x.JPEG"), &img);
    let err = imagenet::scan_splits(dir.path()).unwrap_err().to_string();
    assert!(err.contains("val/n09") && err.contains("not one of the 3 training classes"), "{err}");
    let empty = TempDir::new("empty");
    std::fs::create_dir_all(empty.path().join("train/n01")).unwrap();
    let err = imagenet::scan_splits(empty.path()).unwrap_err().to_string();
    assert!(err.contains("train") && err.contains("no <wnid>/*.JPEG"), "{err}");
}

#[test]
fn eval_crop_has_the_output_size_and_shows_the_centre() {
    let dir = TempDir::new("eval");
    // Grey (so chroma subsampling loses nothing) ramp 4x + 2y on a 40×30 image.
    let ramp = jpeg_bytes(40, 30, |x, y| [(4 * x + 2 * y) as u8; 3]);
    write(&dir.path().join("train/n01/a.JPEG"), &ramp);
    write(&dir.path().join("val/n01/a.JPEG"), &ramp);
    let mut opts = OpenOptions::new(4, 0);
    opts.imagenet = ImageNetOptions { size: 8, resize: 10, prefetch: 0 };
    let sources = open("imagenet", Some(dir.path()), &opts).unwrap();
    assert_eq!((sources.test.example_dims(), sources.test.classes(), sources.test.len()), (&[3, 8, 8][..], 1, 1));
    let batch = sources.test.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.dims, vec![1, 3, 8, 8]);
    // Shorter side 30 → 10 is ×1/3, so the 8×8 crop is the centre 24×24 source
    // pixels, x in [8, 32) and y in [3, 27); output (i, j) is centred on source
    // (8 + 3j + 1.5, 3 + 3i + 1.5), where the ramp reads 4(x − ½) + 2(y − ½).
    for i in 0..8 {
        for j in 0..8 {
            let want = 4.0 * (8.0 + 3.0 * j as f32 + 1.0) + 2.0 * (3.0 + 3.0 * i as f32 + 1.0);
            for c in 0..3 {
                let got = batch.images[(c * 8 + i) * 8 + j] * 255.0;
                assert!((got - want).abs() < 2.5, "({i}, {j}) channel {c}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn greyscale_jpegs_decode_to_rgb() {
    let pixels: Vec<u8> = (0..6 * 4).map(|i| (i * 10) as u8).collect();
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 100).encode(&pixels, 6, 4, ColorType::L8).unwrap();
    let img = jpeg::decode(Path::new("grey.jpg"), &bytes).unwrap();
    assert_eq!((img.width, img.height, img.pixels.len()), (6, 4, 72));
    assert!(img.pixels.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    let err = jpeg::decode(Path::new("junk.jpg"), b"\xff\xd8 not really").unwrap_err().to_string();
    assert!(err.contains("junk.jpg"), "{err}");
}

#[test]
fn one_corrupt_file_in_201_is_skipped_and_counted() {
    let dir = TempDir::new("corrupt");
    populate(dir.path(), &["n01", "n02"], 100);
    let bad = dir.path().join("n02/n02_broken.JPEG");
    write(&bad, b"this is not a JPEG");
    let listing = imagenet::scan(dir.path(), None).unwrap();
    assert_eq!(listing.files.len(), 201);
    for prefetch in [0, 2] {
        let source = ImageNet::new("imagenet", listing.clone(), train_transform(), stream(16, prefetch)).unwrap();
        assert_eq!(source.batches_per_epoch(), 13);
        let batches: Vec<_> = source.epoch(0).collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(|b| b.rows()).sum::<usize>(), 200);
        assert_eq!(batches.len(), 13, "the short batch is yielded, not dropped");
        assert!(batches.iter().all(|b| b.dims == vec![b.rows(), 3, 8, 8] && b.images.len() == b.rows() * 192));
        assert_eq!(source.skipped(), vec![bad.clone()]);
    }
}

#[test]
fn more_than_one_percent_corrupt_fails_naming_a_file() {
    let dir = TempDir::new("many-corrupt");
    populate(dir.path(), &["n01"], 100);
    for i in 0..3 {
        write(&dir.path().join(format!("n01/zz_broken_{i}.JPEG")), b"");
    }
    let listing = imagenet::scan(dir.path(), None).unwrap();
    for prefetch in [0, 2] {
        let source = ImageNet::new("imagenet", listing.clone(), train_transform(), stream(10, prefetch)).unwrap();
        let mut epoch = source.epoch(0);
        let err = epoch.by_ref().find_map(Result::err).expect("the epoch must fail").to_string();
        assert!(err.contains("zz_broken_") && err.contains("more than 1%") && err.contains("2 of the first"), "{err}");
        assert!(epoch.next().is_none(), "nothing follows the error");
    }
}

/// The budget tolerates one bad file, but not when it is the only one: an
/// epoch that yields nothing is an error, not a run of no steps.
#[test]
fn an_epoch_with_nothing_decodable_fails_naming_a_file() {
    let dir = TempDir::new("all-corrupt");
    write(&dir.path().join("n01/only.JPEG"), b"not a JPEG either");
    let listing = imagenet::scan(dir.path(), None).unwrap();
    for prefetch in [0, 2] {
        let source = ImageNet::new("imagenet", listing.clone(), train_transform(), stream(4, prefetch)).unwrap();
        let mut epoch = source.epoch(0);
        let err = epoch.next().expect("an error, not an empty epoch").unwrap_err().to_string();
        assert!(err.contains("only.JPEG") && err.contains("none of the 1 files"), "{err}");
        assert!(epoch.next().is_none(), "nothing follows the error");
    }
}

#[test]
fn prefetched_batches_equal_the_sequential_ones() {
    let dir = TempDir::new("prefetch");
    populate(dir.path(), &["n01", "n02", "n03"], 15);
    let listing = imagenet::scan(dir.path(), None).unwrap();
    let epoch = |prefetch, e| {
        let source = ImageNet::new("imagenet", listing.clone(), train_transform(), stream(7, prefetch)).unwrap();
        source.epoch(e).collect::<Result<Vec<_>, _>>().unwrap()
    };
    let sequential = epoch(0, 1);
    assert_eq!(sequential.len(), 7);
    assert_eq!(sequential.iter().map(|b| b.rows()).collect::<Vec<_>>(), vec![7, 7, 7, 7, 7, 7, 3]);
    assert_eq!(epoch(2, 1), sequential);
    assert_eq!(epoch(5, 1), sequential);
    assert_ne!(epoch(2, 2), sequential, "another epoch, another order and other draws");
    // Every file appears once per epoch with its class.
    let mut labels: Vec<u32> = sequential.iter().flat_map(|b| b.labels.clone()).collect();
    labels.sort();
    assert_eq!(labels, [vec![0; 15], vec![1; 15], vec![2; 15]].concat());
}

#[test]
fn limits_take_files_round_robin_over_classes() {
    let dir = TempDir::new("limits");
    populate(&dir.path().join("train"), &["n01", "n02", "n03"], 4);
    populate(&dir.path().join("val"), &["n01", "n02", "n03"], 2);
    let mut opts = OpenOptions::new(5, 1);
    opts.load.limit_train = Some(5);
    opts.load.limit_test = Some(4);
    opts.augment = true;
    opts.imagenet = ImageNetOptions { size: 6, resize: 8, prefetch: 1 };
    let sources = open("imagenet", Some(dir.path()), &opts).unwrap();
    assert_eq!((sources.train.len(), sources.test.len()), (5, 4));
    let test: Vec<u32> = sources.test.epoch(0).flat_map(|b| b.unwrap().labels).collect();
    assert_eq!(test, vec![0, 0, 1, 2], "in file order: n01's two, then n02's and n03's first");
    let mut train: Vec<u32> = sources.train.epoch(0).flat_map(|b| b.unwrap().labels).collect();
    train.sort();
    assert_eq!(train, vec![0, 0, 1, 1, 2]);

    opts.imagenet.resize = 5;
    let err = open("imagenet", Some(dir.path()), &opts).err().unwrap().to_string();
    assert!(err.contains("--resize") && err.contains("smaller than the crop size 6"), "{err}");
}

/// The run's last evaluation, from its metrics.
fn last_eval(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["kind"] == "eval").collect();
    evals.last().cloned().unwrap()
}

#[test]
fn trains_from_the_command_line_and_resumes_dropout_exactly() {
    let dir = TempDir::new("cli");
    populate(&dir.path().join("train"), &["n01", "n02"], 4);
    populate(&dir.path().join("val"), &["n01", "n02"], 2);
    let run = |name: &str, iterations: &str| {
        let out = dir.path().join(name);
        let data = dir.path().to_str().unwrap();
        let args = ["train", "--preset", "fb-imagenet", "--data-dir", data, "--model", "resnet-lastbn", "--dropout", "0.5"];
        let small = [
            "--crop-size",
            "32",
            "--resize",
            "36",
            "--batch-size",
            "4",
            "--lr",
            "0.01",
            "--analyze-every",
            "0",
            "--iterations",
            iterations,
        ];
        common::succeed(&[&args[..], &small, &["--out", out.to_str().unwrap()]].concat());
        out
    };
    let whole = run("whole", "4");
    let eval = last_eval(&whole);
    assert_eq!(eval["iteration"], 4);
    assert_eq!(eval["test_top5_error"], 0.0, "two classes are always in the top five");
    assert!(eval["test_loss"].as_f64().unwrap().is_finite());
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["data"].as_str(), summary["iterations"].as_u64()), (Some("imagenet"), Some(4)));

    // Dropout's masks follow the model's training forwards, which the checkpoint keeps.
    let parts = run("parts", "2");
    common::succeed(&["train", "--resume", parts.to_str().unwrap(), "--iterations", "4"]);
    assert_eq!(last_eval(&parts)["test_loss"], eval["test_loss"]);
}
