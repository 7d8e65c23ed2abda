//! `kappa train --init-from FILE`: a PyTorch state dict written by Python's
//! safetensors starts a run exactly where a checkpoint holding the same
//! weights would, and a file that does not fit the model is refused, naming
//! the tensor.

use kappa::checkpoint::{self, HostTensor, TensorFile, Values};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{assert_error, kappa, safetensors_python, succeed, TempDir};

/// A 3-layer BN MLP (784 → 16 → 16 → 10) on 256 synthetic examples, unanalysed.
const SMALL: &[&str] = &["--depth", "3", "--width", "16", "--bn", "--limit-train", "256", "--batch-size", "32", "--analyze-every", "0"];

fn train(out: &Path, extra: &[&str]) {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    succeed(&args);
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every tensor's values as bits, by name.
fn bits(file: &TensorFile) -> Vec<(String, Vec<u64>)> {
    let as_bits = |t: &HostTensor| match &t.values {
        Values::I64(v) => v.iter().map(|&x| x as u64).collect(),
        v => v.to_f64s().unwrap().into_iter().map(f64::to_bits).collect(),
    };
    file.tensors.iter().map(|(n, t)| (n.clone(), as_bits(t))).collect()
}

/// The PyTorch state dict of SMALL's model with seeded values, BN running
/// statistics included, as `safetensors.torch.save_file` writes it (by numpy);
/// returns its SHA-256 as Python's hashlib computes it.
fn write_state_dict(py: &str, path: &Path) -> String {
    let script = r#"
import hashlib, sys, numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(7)
def u(*shape, fan_in):
    return rng.uniform(-1, 1, shape).astype(np.float32) / np.float32(np.sqrt(fan_in))
sd = {"layers.0.weight": u(16, 784, fan_in=784), "layers.1.weight": u(16, 16, fan_in=16),
      "output.weight": u(10, 16, fan_in=16), "output.bias": u(10, fan_in=16)}
for k in (0, 1):
    sd[f"bns.{k}.weight"] = (1 + rng.uniform(-0.5, 0.5, 16)).astype(np.float32)
    sd[f"bns.{k}.bias"] = rng.uniform(-0.1, 0.1, 16).astype(np.float32)
    sd[f"bns.{k}.running_mean"] = rng.uniform(-0.2, 0.2, 16).astype(np.float32)
    sd[f"bns.{k}.running_var"] = rng.uniform(0.5, 2.0, 16).astype(np.float32)
    sd[f"bns.{k}.num_batches_tracked"] = np.array(500, dtype=np.int64)
save_file(sd, sys.argv[1], metadata={"format": "pt"})
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
"#;
    let o = Command::new(py).args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn one_step_from_a_python_state_dict_matches_the_step_from_a_checkpoint_of_the_same_weights() {
    let Some(py) = safetensors_python() else { return };
    let dir = TempDir::new("init-from");
    let sd_path = dir.path().join("state_dict.safetensors");
    let sha256 = write_state_dict(&py, &sd_path);
    let sd = TensorFile::read(&sd_path).unwrap();

    // From the state dict: one SGD step (momentum 0.9, its buffer starting empty).
    let a = dir.path().join("a");
    train(&a, &["--init-from", sd_path.to_str().unwrap(), "--iterations", "1"]);

    // Through a checkpoint: a run of no steps saves its initialisation at
    // iteration 0; its model tensors become the state dict's, and it resumes for one step.
    let b = dir.path().join("b");
    train(&b, &["--iterations", "0"]);
    let ckpt_path = checkpoint::checkpoint_path(&b);
    let mut ckpt = TensorFile::read(&ckpt_path).unwrap();
    assert!(!ckpt.tensors.keys().any(|n| n.starts_with("optimizer.")), "no optimiser state before the first step");
    for (name, t) in sd.tensors.iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")) {
        let old = ckpt.tensors.insert(name.clone(), t.clone()).unwrap_or_else(|| panic!("{name} is not in the checkpoint"));
        assert_eq!(old.shape, t.shape, "{name}");
        assert_ne!(old.values, t.values, "{name}: the state dict's values are not the initialisation's");
    }
    ckpt.write(&ckpt_path).unwrap();
    succeed(&["train", "--resume", b.to_str().unwrap(), "--iterations", "1"]);

    // The same step, bit for bit: weights, BN running statistics, momentum buffers, loss.
    let (after_a, after_b) = (TensorFile::read(&checkpoint::checkpoint_path(&a)).unwrap(), TensorFile::read(&ckpt_path).unwrap());
    assert_eq!(after_a.metadata["iteration"], "1");
    assert_eq!(bits(&after_a), bits(&after_b));
    assert!(after_a.tensors.contains_key("optimizer.layers.0.weight.momentum_buffer"));
    assert_ne!(after_a.tensors["layers.0.weight"].values, sd.tensors["layers.0.weight"].values, "a step was taken");
    let loss = |run: &Path| records(run).into_iter().rev().find(|r| r["kind"] == "train").unwrap()["loss"].as_f64().unwrap().to_bits();
    assert_eq!(loss(&a), loss(&b));

    // config.json names the file and its SHA-256 (as Python's hashlib has it).
    let config = json(&a.join("config.json"));
    assert_eq!(config["weights"], sd_path.to_str().unwrap());
    assert_eq!(config["weights_sha256"], sha256.as_str());

    // Resumed, the run still names them, and keeps a note added to the file; its curves may start going to TensorBoard.
    let mut noted = config.clone();
    noted["notes"] = Value::from("lr from the sweep of 12-05");
    std::fs::write(a.join("config.json"), noted.to_string()).unwrap();
    let tb = dir.path().join("tb");
    succeed(&["train", "--resume", a.to_str().unwrap(), "--iterations", "2", "--tensorboard", tb.to_str().unwrap()]);
    let config = json(&a.join("config.json"));
    assert_eq!((&config["weights_sha256"], &config["train"]["iterations"]), (&Value::from(sha256.as_str()), &Value::from(2)));
    assert_eq!(config["notes"], "lr from the sweep of 12-05");
    assert_eq!(std::fs::read_dir(&tb).unwrap().count(), 1, "one event file");
}

/// A file of the model's own tensors (a fresh run's checkpoint, optimiser
/// state left out) after `edit`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut TensorFile)) -> PathBuf {
    let run = dir.join(format!("{name}-source"));
    train(&run, &["--iterations", "0"]);
    let mut file = TensorFile::read(&checkpoint::checkpoint_path(&run)).unwrap();
    file.tensors.retain(|n, _| !n.starts_with("optimizer."));
    edit(&mut file);
    let path = dir.join(format!("{name}.safetensors"));
    file.write(&path).unwrap();
    path
}

#[test]
fn init_from_refuses_a_missing_unexpected_or_misshapen_tensor_naming_it() {
    let dir = TempDir::new("init-from-bad");
    let refuse = |path: &Path, needles: &[&str]| {
        let out = dir.path().join("refused");
        let mut args = vec!["train", "--init-from", path.to_str().unwrap(), "--iterations", "1", "--out", out.to_str().unwrap()];
        args.extend_from_slice(SMALL);
        let mut all = vec![path.file_name().unwrap().to_str().unwrap()];
        all.extend_from_slice(needles);
        assert_error(&kappa(&args), &all);
        assert!(!out.exists(), "a refused run writes nothing");
    };
    let missing = edited(dir.path(), "missing", |f| {
        f.tensors.remove("bns.1.running_var");
    });
    refuse(&missing, &["missing 1 tensor: bns.1.running_var"]);
    let unexpected = edited(dir.path(), "unexpected", |f| {
        f.tensors.insert("layers.2.weight".into(), HostTensor { shape: vec![2, 2], values: Values::F32(vec![0.0; 4]) });
    });
    refuse(&unexpected, &["unexpected 1 tensor: layers.2.weight"]);
    let misshapen = edited(dir.path(), "misshapen", |f| {
        f.tensors.insert("layers.1.weight".into(), HostTensor { shape: vec![16, 8], values: Values::F32(vec![0.5; 128]) });
    });
    refuse(&misshapen, &["layers.1.weight: [16, 8] in the file, [16, 16] in the model"]);
    let diverged = edited(dir.path(), "diverged", |f| {
        let w = f.tensors.get_mut("layers.1.weight").unwrap();
        w.values = Values::F32(
            w.values.to_f64s().unwrap().iter().enumerate().map(|(i, &v)| if i % 7 == 0 { f32::NAN } else { v as f32 }).collect(),
        );
    });
    refuse(&diverged, &["layers.1.weight holds 37 NaN or infinite values", "expected finite weights"]);
    // F64 values that f32 cannot hold are finite in the file, infinite in the run.
    let wide = edited(dir.path(), "wide", |f| {
        let w = f.tensors.get_mut("layers.1.weight").unwrap();
        w.values = Values::F64(w.values.to_f64s().unwrap().iter().enumerate().map(|(i, &v)| if i < 3 { 1e300 } else { v }).collect());
    });
    refuse(&wide, &["layers.1.weight holds 3 values past F32's range", "expected finite weights"]);
    refuse(&dir.path().join("absent.safetensors"), &["cannot read"]);
    refuse(dir.path(), &["is a directory, not a file"]);
    // A device is refused, not read until memory runs out.
    refuse(Path::new("/dev/zero"), &["not a regular file"]);

    // A resumed run keeps its own weights.
    let run = dir.path().join("run");
    train(&run, &["--iterations", "2"]);
    let o = kappa(&["train", "--resume", run.to_str().unwrap(), "--iterations", "4", "--init-from", missing.to_str().unwrap()]);
    assert_error(&o, &["--resume", "--init-from"]);
}

/// Finite weights whose logits overflow: every gradient, so every Σ∇h,
/// holds NaN, and its κ's read NaN (not ∞, "rank deficient"), the weight
/// gradients' σmax NaN (not 0, "weight domination").
#[test]
fn an_analysis_of_overflowing_activations_reads_nan() {
    let dir = TempDir::new("analysis-overflows");
    let loud = edited(dir.path(), "loud", |f| {
        let t = f.tensors.get_mut("output.weight").unwrap();
        t.values = Values::F32(vec![1e38; t.values.len()]);
    });
    let run = dir.path().join("run");
    let args = ["analyze", "--depth", "3", "--width", "16", "--bn", "--limit-train", "256", "--batch-size", "32"];
    let o = kappa(&[&args[..], &["--weights", loud.to_str().unwrap(), "--out", run.to_str().unwrap()]].concat());
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("κ = NaN in ") && said.contains("not finite"), "{said}");
    assert!(!said.contains("weight-domination"), "{said}");
    let analysed: Vec<Value> = records(&run).into_iter().filter(|r| r["kind"] == "analysis").collect();
    let output = analysed.iter().find(|r| r["layer"] == "output").expect("the output layer is analysed");
    assert!(output["sigma_grad"]["lambda_max"].is_null() && output["weight"]["ratio"].is_null(), "{output}");
}

/// A state that leaves f32's range while the loss stays finite: BN's shift of
/// −1e30 silences every ReLU before `layers.1`, whose weights at f32::MAX then
/// meet only zeros, until weight decay 5 at lr 1 scales them by −4. The run
/// records its divergence at that step instead of checkpointing the state.
#[test]
fn a_state_gone_non_finite_under_a_finite_loss_is_recorded_as_divergence() {
    let dir = TempDir::new("state-diverges");
    let fill = |f: &mut TensorFile, name: &str, v: f32| {
        let t = f.tensors.get_mut(name).unwrap();
        t.values = Values::F32(vec![v; t.values.len()]);
    };
    let silent = edited(dir.path(), "silent", |f| {
        fill(f, "bns.0.bias", -1e30);
        fill(f, "layers.1.weight", f32::MAX);
    });
    let run = dir.path().join("run");
    let mut args = vec!["train", "--out", run.to_str().unwrap(), "--init-from", silent.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--iterations", "1", "--lr", "1", "--weight-decay", "5"]);
    let o = kappa(&args);
    let said = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("diverged at iteration 1") && said.contains("holds NaN or infinite values"), "{said}");
    let trained: Vec<Value> = records(&run).into_iter().filter(|r| r["kind"] == "train").collect();
    assert!(trained[0]["loss"].as_f64().is_some_and(f64::is_finite), "the step's own loss was finite: {trained:?}");
    let summary = json(&run.join("summary.json"));
    assert_eq!((&summary["diverged"], &summary["diverged_at"]), (&Value::from(true), &Value::from(1)));
    assert!(!checkpoint::checkpoint_path(&run).exists(), "no checkpoint holds the non-finite state");
}
