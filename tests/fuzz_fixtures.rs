//! Inputs the fuzz targets (fuzz/, run by `scripts/fuzz`) found, kept in
//! tests/fixtures/fuzz/TARGET/ and read here the way their target reads them:
//! each gives the clear one-line error naming its file, or loads, and makes
//! no single allocation larger than the file justifies. `scripts/fuzz` also
//! replays every fixture through its target before fuzzing.

use kappa::backend::cpu::Cpu;
use kappa::checkpoint;
use kappa::data::imagenet_transform::{PhotoTransform, TrainAugment};
use kappa::data::{jpeg, Normalize};
use kappa::train::{TrainConfig, Trainer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The system allocator, noting the largest single allocation of each thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: a thread being torn down has no slot left, and needs none.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// `f`'s result and the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

fn fixture(target: &str, name: &str) -> (PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target).join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

/// What the ImageNet loader makes of one file: 16-pixel eval and train examples.
fn examples(path: &Path, bytes: &[u8]) -> kappa::Result<Vec<Vec<f32>>> {
    let img = jpeg::decode(path, bytes)?;
    let eval = PhotoTransform::eval(16, 18, Some(Normalize::IMAGENET));
    let train = PhotoTransform::train(16, TrainAugment::RECIPE, Some(Normalize::IMAGENET), 7);
    Ok([eval, train].iter().map(|t| t.apply(&img, 3, 5)).collect())
}

#[test]
fn a_jpeg_claiming_16384_squared_pixels_is_refused_before_the_decoder_allocates() {
    // A valid 8×8 greyscale file whose frame header was rewritten to 16384×16384.
    let (path, bytes) = fixture("jpeg", "claims-16384x16384.jpg");
    let (result, largest) = largest_allocation(|| examples(&path, &bytes));
    let err = result.unwrap_err().to_string();
    assert_one_line_naming(&err, &path);
    assert!(err.contains("declares 16384×16384 pixels, more than a 380-byte JPEG can hold"), "{err}");
    // Decoding would have taken 16384² × 3 bytes (768 MiB) for the pixels alone.
    assert!(largest < 1 << 20, "an allocation of {largest} bytes for a {}-byte file", bytes.len());
}

#[test]
fn a_jpeg_whose_entropy_data_runs_dry_gives_finite_examples_or_one_error_naming_it() {
    // zune-jpeg's bit reader treats this 1×33 file differently by build: with
    // debug assertions (the test profile) it reports a bad Huffman code, in a
    // plain release build it reads the missing bits as zeros. Either is fine;
    // a crash, a non-finite example or an allocation out of scale is not.
    let (path, bytes) = fixture("jpeg", "entropy-data-runs-dry.jpg");
    let (result, largest) = largest_allocation(|| examples(&path, &bytes));
    match result {
        Ok(examples) => {
            for example in examples {
                assert_eq!(example.len(), 3 * 16 * 16);
                assert!(example.iter().all(|v| v.is_finite()));
            }
        }
        Err(err) => {
            let err = err.to_string();
            assert_one_line_naming(&err, &path);
        }
    }
    assert!(largest < 1 << 20, "an allocation of {largest} bytes for a {}-byte file", bytes.len());
}

#[test]
fn a_jpeg_that_panics_the_decoder_costs_one_image_with_an_error_naming_it() {
    // Chroma sampled 2×2 above 1×1 luma: zune-jpeg's upsampler asserts on it.
    let (path, bytes) = fixture("jpeg", "chroma-sampled-above-luma.jpg");
    let err = jpeg::decode(&path, &bytes).unwrap_err().to_string();
    assert_eq!(err, format!("{}: the JPEG decoder crashed on this file", path.display()));
}

#[test]
fn a_state_dict_whose_tensor_names_hold_newlines_gets_a_one_line_error() {
    // The weights target's small BN MLP; the file is its state dict with names mangled.
    let (path, _) = fixture("weights", "tensor-name-with-newline.safetensors");
    let err = weights_error(&path);
    assert_one_line_naming(&err, &path);
    assert!(err.contains("unexpected 6 tensors") && err.contains(r"bns.0.r\nning_var"), "{err}");
}

#[test]
fn a_state_dict_whose_bad_offset_names_a_tensor_with_a_newline_gets_a_one_line_error() {
    // The check of the offsets names the tensor whose bytes are out of place, as the crate's message did.
    let (path, _) = fixture("weights", "bad-offset-name-with-newline.safetensors");
    let err = weights_error(&path);
    assert_one_line_naming(&err, &path);
    assert!(err.contains(r"tensor bns.0.r\nning_var's data starts at byte 80") && err.contains("back to back"), "{err}");
}

#[test]
fn a_log_whose_one_readable_kind_is_luckmatters_gets_an_error_naming_the_log() {
    // The metrics target writes its input as DIR/metrics.jsonl; the error named DIR.
    let (log, err) = run_file_error("metrics", "luckmatters-kind-among-malformed-lines.jsonl", "metrics.jsonl", |dir| {
        kappa::report::read::Run::load(dir).map(drop)
    });
    assert_one_line_naming(&err, &log);
    assert!(err.contains("`kappa luckmatters` records (\"matrix\")"), "{err}");
}

#[test]
fn a_config_whose_schedule_kind_holds_a_newline_gets_a_one_line_error() {
    // serde's message quotes the unknown variant, decoded newline and all.
    let (config, err) =
        run_file_error("config", "schedule-kind-with-newline.json", "config.json", |dir| TrainConfig::load_run(dir).map(drop));
    assert_one_line_naming(&err, &config);
    assert!(err.contains(r"unknown variant `con\nstant`"), "{err}");
}

/// The fixture `target/name` placed in a scratch run directory as `file`,
/// as its target places its input, and the error `load` gives for that
/// directory: the file's path and the message.
fn run_file_error(target: &str, name: &str, file: &str, load: impl FnOnce(&Path) -> kappa::Result<()>) -> (PathBuf, String) {
    let (_, bytes) = fixture(target, name);
    let dir = std::env::temp_dir().join(format!("kappa-fuzz-fixture-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    let err = load(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    (path, err)
}

/// The error of loading `path` as the weights target's small BN MLP's state dict.
fn weights_error(path: &Path) -> String {
    let cfg = TrainConfig { depth: 3, width: 4, bn: true, batch_size: 4, ..TrainConfig::default() };
    let be = Cpu::<f32>::new();
    let mut trainer = Trainer::new(&be, &cfg, &[6], 3).unwrap();
    checkpoint::load_weights(path, trainer.model_mut(), &be).unwrap_err().to_string()
}

/// The clear error kappa promises: one line that starts with the file's path.
fn assert_one_line_naming(err: &str, path: &Path) {
    assert!(err.starts_with(&path.display().to_string()) && !err.contains('\n'), "{err}");
}
