//! Helpers the integration tests share; each test crate uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kappa-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory kept after the test, for looking into a failed run.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kappa-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `kappa` binary.
pub fn kappa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("run kappa")
}

/// Runs the `kappa` binary, failing the test with its stderr if it fails.
pub fn succeed(args: &[&str]) {
    let o = kappa(args);
    assert!(o.status.success(), "kappa {args:?}: {}", stderr(&o));
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless the command failed, without a panic, saying every `needle`.
pub fn assert_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {e}");
    assert!(!e.contains("panicked"), "panicked: {e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
}

/// The Python that writes safetensors files: `KAPPA_PYTHON` (CI points it at
/// a venv with safetensors and numpy), else `python3`. Without one the test
/// is skipped, saying so, except under CI, where it fails.
pub fn safetensors_python() -> Option<String> {
    let py = std::env::var("KAPPA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import numpy, safetensors.numpy"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("no Python with numpy and safetensors (KAPPA_PYTHON, or python3): .ci/run sets up a venv with them");
    }
    if !ok {
        println!("SKIPPED: no Python with numpy and safetensors (set KAPPA_PYTHON to one) to write the file with");
    }
    ok.then_some(py)
}

/// The device the device-generic tests run on: `KAPPA_TEST_DEVICE` (`cpu`,
/// `cuda:N`), the CPU when unset. CI sets `cuda:0` for a second pass over
/// training, analysis and checkpoint tests against the CPU stand-in for the
/// CUDA libraries (scripts/standin/run); a real GPU takes the same switch.
pub fn test_device() -> kappa::backend::Device {
    match std::env::var("KAPPA_TEST_DEVICE") {
        Ok(d) => d.parse().unwrap_or_else(|e| panic!("KAPPA_TEST_DEVICE: {e}")),
        Err(_) => kappa::backend::Device::Cpu,
    }
}

/// `--device D` for a test that runs the binary, D as [`test_device`].
pub fn device_args() -> [String; 2] {
    ["--device".into(), test_device().to_string()]
}

/// Evaluates `$body` with `$be` bound to an f32 backend on [`test_device`]:
/// the body is compiled once per backend type, so it may be generic code.
#[macro_export]
macro_rules! on_test_device {
    ($be:ident => $body:expr) => {
        match common::test_device() {
            kappa::backend::Device::Cpu => {
                let $be = &kappa::backend::cpu::Cpu::<f32>::new();
                $body
            }
            #[cfg(feature = "cuda-backend")]
            kappa::backend::Device::Cuda(i) => {
                let $be = &kappa::backend::cuda::Cuda::new(i).unwrap_or_else(|e| panic!("KAPPA_TEST_DEVICE=cuda:{i}: {e}"));
                $body
            }
            #[cfg(not(feature = "cuda-backend"))]
            d => panic!("KAPPA_TEST_DEVICE={d} needs a build with --features cuda"),
        }
    };
}
