//! `kappa doctor` and `kappa profile` as users run them on a machine without
//! a GPU (every development and CI machine): a clear one-line error and a
//! non-zero exit, never a panic.

use std::process::{Command, Output};

fn kappa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("run kappa")
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure; stderr: {e}");
    assert!(!e.contains("panicked"), "panicked: {e}");
    assert!(e.starts_with("error: "), "{e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
}

#[test]
fn doctor_without_a_gpu_says_why_and_fails() {
    let o = kappa(&["doctor"]);
    if cfg!(feature = "cuda-backend") {
        // Built with CUDA on a machine without the driver or a device.
        assert_clean_failure(&o, &["CUDA is unavailable"]);
    } else {
        assert_clean_failure(&o, &["built without the `cuda` feature", "--features cuda"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("without the CUDA backend"));
    }
}

#[test]
fn doctor_rejects_non_cuda_devices() {
    assert_clean_failure(&kappa(&["doctor", "--device", "cpu"]), &["cuda:N"]);
    assert_clean_failure(&kappa(&["doctor", "--device", "tpu"]), &["--device", "tpu"]);
}

#[test]
fn profile_covariance_runs_on_the_cpu_and_refuses_a_missing_gpu() {
    let o = kappa(&["profile", "covariance", "--shape", "64,32,1,1", "--repeats", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("gram_lower") && out.contains("GFLOP/s") && out.contains("64×32"), "{out}");
    assert_clean_failure(&kappa(&["profile", "covariance", "--shape", "1,2,3"]), &["--shape"]);
    let o = kappa(&["profile", "covariance", "--shape", "8,4,1,1", "--device", "cuda:0"]);
    assert_clean_failure(&o, &[if cfg!(feature = "cuda-backend") { "CUDA is unavailable" } else { "--features cuda" }]);
}

#[test]
fn profile_conv_rates_every_shape_and_direction_and_refuses_a_missing_gpu() {
    let o = kappa(&["profile", "conv", "--batch-size", "2", "--repeats", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let shapes = ["3×3/1 3→16 32²", "3×3/1 16→16 32²", "3×3/2 16→32 32²", "1×1/2 16→32 32²"];
    let shapes = [&shapes[..], &["3×3/1 32→32 16²", "3×3/2 32→64 16²", "1×1/2 32→64 16²", "3×3/1 64→64 8²"]].concat();
    for shape in shapes {
        for direction in ["forward", "backward-data", "backward-filter"] {
            let line = out.lines().find(|l| l.contains(&format!("{shape} ")) && l.contains(direction));
            // No step takes the gradient of the data, the stem's input.
            if shape.contains(" 3→") && direction == "backward-data" {
                assert!(line.is_none(), "{line:?}");
                continue;
            }
            let line = line.unwrap_or_else(|| panic!("{shape} {direction}: {out}"));
            assert!(line.contains("GFLOP/s") && line.contains("% of the"), "{line}");
        }
    }
    let o = kappa(&["profile", "conv", "--device", "cuda:0"]);
    assert_clean_failure(&o, &[if cfg!(feature = "cuda-backend") { "CUDA is unavailable" } else { "--features cuda" }]);
}

#[test]
fn profile_gpu_measures_every_figure_on_the_cpu_and_names_bad_lists() {
    let dir = std::env::temp_dir().join(format!("kappa-profile-gpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("profile.json");
    let args = ["profile", "gpu", "--device", "cpu", "--depths", "8", "--batch-size", "2", "--steps", "1", "--eig-sizes", "8"];
    let o = kappa(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("resnet-8 batch 2") && out.contains("analysed every step") && out.contains("eigvalsh n = 8"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["train"][0]["depth"], 8);
    assert_eq!(v["covariance"].as_array().unwrap().len(), 3);
    assert_clean_failure(&kappa(&["profile", "gpu", "--device", "cpu", "--depths", "20,x"]), &["--depths", "20,x"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_full_without_a_gpu_fails_cleanly() {
    let o = kappa(&["doctor", "--full", "--json", "/tmp/never-written.json"]);
    assert_clean_failure(&o, &[if cfg!(feature = "cuda-backend") { "CUDA is unavailable" } else { "--features cuda" }]);
}

/// scripts/gpu/run's host side: on a machine without a GPU (and with a
/// CPU-only kappa) every step fails, yet the summary is written and names each.
#[test]
fn the_gpu_run_script_keeps_going_and_writes_its_summary() {
    let out = std::env::temp_dir().join(format!("kappa-gpu-run-{}", std::process::id()));
    let o = Command::new("scripts/gpu/run")
        .arg(&out)
        .env("KAPPA_BIN", env!("CARGO_BIN_EXE_kappa"))
        .env("KAPPA_GPU_LIMITS", "60 60 60 60")
        .env("KAPPA_GPU_PYTHON", std::env::var("KAPPA_PYTHON").unwrap_or_else(|_| "python3".into()))
        .output()
        .expect("run scripts/gpu/run");
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "no GPU here, yet every step passed: {log}");
    let md = std::fs::read_to_string(out.join("summary.md")).expect("summary.md written");
    for step in ["libraries", "doctor", "profile", "conv-cudnn", "conv-im2col", "torch"] {
        assert!(md.contains(&format!("| {step} | failed (exit ")), "{step}: {md}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).expect("summary.json is JSON");
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert!(steps.iter().all(|s| s["passed"] == false && s["log"].as_str().is_some()));
    assert!(md.contains("    (none: no step ran)"), "{md}");
    let doctor = std::fs::read_to_string(out.join("doctor.log")).unwrap();
    assert!(doctor.contains("error: "), "{doctor}");
    assert!(std::fs::read_to_string(out.join("libraries.log")).unwrap().contains("libcuda.so"));
    let _ = std::fs::remove_dir_all(&out);
}

/// The summary quotes each training step's line and its traced step's, from
/// kappa's profile log and PyTorch's alike, and nothing else of the logs.
#[test]
fn the_gpu_run_summary_quotes_the_step_lines() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("kappa-gpu-summary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A stand-in for the payload's kappa: `profile gpu` prints what the real one does on a GPU.
    let bin = dir.join("kappa");
    let profile =
        "resnet-20 batch 128: 900.0 img/s\n  traced step: the device busy 5.10 of its 7.90 ms\ncovariance [1024, 256, 1, 1]: 0.017 ms";
    std::fs::write(&bin, format!("#!/bin/sh\n[ \"$1 $2\" = \"profile gpu\" ] && printf '{profile}\\n'\nexit 0\n")).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("out");
    Command::new("scripts/gpu/run")
        .arg(&out)
        .env("KAPPA_BIN", &bin)
        .env("KAPPA_GPU_LIMITS", "60 60 60 60")
        .env("KAPPA_GPU_PYTHON", std::env::var("KAPPA_PYTHON").unwrap_or_else(|_| "python3".into()))
        .output()
        .expect("run scripts/gpu/run");
    let md = std::fs::read_to_string(out.join("summary.md")).expect("summary.md written");
    assert!(md.contains("\n    resnet-20 batch 128: 900.0 img/s\n      traced step: the device busy 5.10 of its 7.90 ms\n"), "{md}");
    assert!(!md.contains("covariance") && !md.contains("(none: no step ran)"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
