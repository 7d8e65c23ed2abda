//! Writes the seed corpora: small valid files of every format kappa reads,
//! made the way kappa (or the format's own tools) make them, one folder per
//! target. `seeds DIR` fills `DIR/<target>/`.

mod hooks;

use flate2::write::GzEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::ColorType;
use kappa::checkpoint::{self, Entry, HostTensor, RunState, TensorFile, Values};
use kappa::data::cifar::{Cifar, PIXELS};
use kappa::data::idx::{IMAGES_MAGIC, LABELS_MAGIC};
use kappa_fuzz::tiny;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An IDX file: magic, big-endian dimensions, then the bytes.
fn idx(magic: u32, dims: &[u32], fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| out.extend(d.to_be_bytes()));
    let len: u32 = dims.iter().product();
    out.extend((0..len as usize).map(fill));
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// `records` CIFAR records with valid labels and varied pixels.
fn cifar(set: Cifar, records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..records {
        if set == Cifar::Hundred {
            out.push((r % 20) as u8);
        }
        out.push((r * 7 % set.classes()) as u8);
        out.extend((0..PIXELS).map(|i| (i * 31 + r) as u8));
    }
    out
}

fn jpeg(width: u32, height: u32, color: ColorType) -> Vec<u8> {
    let channels = if color == ColorType::L8 { 1 } else { 3 };
    let pixels: Vec<u8> = (0..width * height * channels).map(|i| (i * 37 % 251) as u8).collect();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode(&pixels, width, height, color).expect("encode a JPEG");
    out
}

/// The small model's state dict with every float tensor stored as `dtype`.
fn state_dict(convert: impl Fn(&[f64]) -> Values) -> Vec<u8> {
    let trainer = tiny::trainer(&tiny::config(Path::new("unused")));
    let mut file = TensorFile::default();
    for (name, t) in checkpoint::model_tensors(trainer.model(), trainer.backend(), 3) {
        let values = t.values().expect("the model's tensors");
        let values = values.to_f64s().map_or_else(|| values.into_owned(), |v| convert(&v));
        file.tensors.insert(name, HostTensor { shape: t.shape().to_vec(), values });
    }
    file.to_bytes().expect("serialise the state dict")
}

/// A checkpoint of the small run after one step, as `kappa train` writes it.
fn run_checkpoint(dir: &Path) -> Vec<u8> {
    let cfg = tiny::config(dir);
    let mut trainer = tiny::trainer(&cfg);
    trainer.step(&tiny::batch(), 0.1).expect("a training step");
    let state = RunState { iteration: 1, batches_per_epoch: 4, forwards: 1, ..RunState::default() };
    trainer.save_checkpoint(dir, &cfg, &state).expect("save the checkpoint");
    std::fs::read(checkpoint::checkpoint_path(dir)).expect("read the checkpoint back")
}

fn config(cfg: kappa::train::TrainConfig) -> Vec<u8> {
    let text = serde_json::to_string_pretty(&json!({ "train": cfg, "model": "MLP" })).expect("serialise the config");
    (text + "\n").into_bytes()
}

/// One record of each kind `kappa report` reads, as `kappa train` logs them.
fn metrics() -> Vec<u8> {
    let spectrum =
        json!({"lambda_max": 2.5, "kappa": {"100": 40.0, "90": null}, "kappa_nonzero": 12.0, "dim": 8, "tolerance": 1e-6, "samples": 64});
    let records = [
        json!({"kind": "train", "iteration": 10, "epoch": 0, "loss": 2.1, "accuracy": 0.3}),
        json!({"kind": "eval", "iteration": 20, "epoch": 0, "test_accuracy": 0.4}),
        json!({"kind": "analysis", "iteration": 20, "mode": "empirical", "layer": "fc1", "index": 1, "last": false,
               "sigma_x": spectrum, "sigma_grad": spectrum, "fim": spectrum, "weight": {"sigma_max": 1.5, "ratio": 0.01},
               "neurons": {"dead_fraction": 0.25}}),
        json!({"kind": "alert", "iteration": 20, "layer": "fc1", "alert": "weight_domination", "detail": "ratio 0.01"}),
        json!({"kind": "exact", "iteration": 0, "matrix": "fim", "block": "fc1", "exact": spectrum, "kronecker": spectrum}),
        json!({"kind": "resume", "iteration": 10, "epoch": 0, "iterations": 40}),
        json!({"kind": "summary", "diverged": true, "iteration": 30}),
        json!({"kind": "speed", "steps_per_second": 12.5}),
    ];
    records.iter().map(|r| r.to_string() + "\n").collect::<String>().into_bytes()
}

fn main() {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seeds DIR (writes DIR/<target>/<seed>)");
        std::process::exit(2);
    };
    let images = idx(IMAGES_MAGIC, &[3, 4, 5], |i| (i * 13) as u8);
    let no_images = idx(IMAGES_MAGIC, &[0, 28, 28], |_| 0);
    let labels = idx(LABELS_MAGIC, &[3], |i| (i * 3 % 10) as u8);
    let run_dir = std::env::temp_dir().join(format!("kappa-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).expect("make a scratch run directory");
    let resnet = kappa::train::TrainConfig { model: "resnet20".into(), data: "cifar10".into(), ..tiny::config(&run_dir) };
    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        ("idx", "images", images.clone()),
        ("idx", "no-images", no_images.clone()),
        ("idx", "labels", labels.clone()),
        ("idx_gz", "images.gz", gzip(&images)),
        ("idx_gz", "no-images.gz", gzip(&no_images)),
        ("idx_gz", "labels.gz", gzip(&labels)),
        ("cifar", "cifar10-2", cifar(Cifar::Ten, 2)),
        ("cifar", "cifar100-2", cifar(Cifar::Hundred, 2)),
        ("jpeg", "rgb-9x7.jpg", jpeg(9, 7, ColorType::Rgb8)),
        ("jpeg", "grey-8x8.jpg", jpeg(8, 8, ColorType::L8)),
        ("jpeg", "rgb-1x33.jpg", jpeg(1, 33, ColorType::Rgb8)),
        ("weights", "f32.safetensors", state_dict(|v| Values::F32(v.iter().map(|&x| x as f32).collect()))),
        ("weights", "f64.safetensors", state_dict(|v| Values::F64(v.to_vec()))),
        ("weights", "f16.safetensors", state_dict(|v| Values::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()))),
        ("weights", "bf16.safetensors", state_dict(|v| Values::BF16(v.iter().map(|&x| half::bf16::from_f64(x)).collect()))),
        ("checkpoint", "checkpoint.safetensors", run_checkpoint(&run_dir)),
        ("config", "mlp.json", config(tiny::config(&run_dir))),
        ("config", "resnet20.json", config(resnet)),
        ("metrics", "metrics.jsonl", metrics()),
    ];
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("cannot write {target}/{name}: {e}"));
    }
    std::fs::remove_dir_all(&run_dir).expect("remove the scratch run directory");
}
