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
