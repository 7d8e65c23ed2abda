//! With the CUDA backend enabled (feature `cuda`, `cuda-12` or `cuda-13`),
//! compiles every `kernels/*.cu` to PTX with nvcc into `$OUT_DIR` and writes
//! `$OUT_DIR/kernels.rs`, which embeds them (`include_str!`) with the names
//! of their kernels. The default build needs no CUDA at all.
//!
//! Every build also sets `KAPPA_GIT_REVISION` (the commit, "-dirty" with
//! uncommitted changes, "unknown" outside a git checkout) for the report page.
//!
//! nvcc is found through `NVCC`, then `CUDA_HOME`/`CUDA_PATH` (`bin/nvcc`),
//! then `PATH`. The PTX targets `compute_$CUDA_COMPUTE_CAP` (default 80): the
//! driver JIT-compiles it for the GPU it finds, so no nvidia-smi is needed.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const GET_NVCC: &str = "install a CUDA toolkit (https://developer.nvidia.com/cuda-downloads) and put its bin/ on PATH or set \
CUDA_HOME, or install the compiler from PyPI: `python3 -m venv /opt/nvcc && /opt/nvcc/bin/pip install nvidia-cuda-nvcc \
nvidia-cuda-crt nvidia-cuda-runtime nvidia-nvvm` and set CUDA_HOME=/opt/nvcc/lib/python3.*/site-packages/nvidia/cu13 \
(or NVCC to the nvcc binary itself)";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The emulated-kernel tests compile kernels/*.cu for this target with the cc crate.
    println!("cargo:rustc-env=KAPPA_BUILD_TARGET={}", env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=KAPPA_GIT_REVISION={}", git_revision());
    if env::var_os("CARGO_FEATURE_CUDA_BACKEND").is_none() {
        return;
    }
    if let Err(e) = build_kernels() {
        eprintln!("\nerror: {e}\n");
        std::process::exit(1);
    }
}

/// `git rev-parse --short=12 HEAD`, plus "-dirty" when `git status` lists
/// changes; "unknown" when git is missing or this is no checkout, since a
/// build must never fail for want of a revision. Reruns when HEAD moves; the
/// dirty mark is as of then (watching every source file would rerun nvcc).
fn git_revision() -> String {
    let git = |args: &[&str]| {
        let o = Command::new("git").args(args).current_dir(env::var_os("CARGO_MANIFEST_DIR")?).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(revision) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".into() };
    // HEAD, the branch it names, and packed-refs, where a branch without a file of its own lives.
    let head = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD"].into_iter().chain(head.as_deref()).chain(["packed-refs"]);
    for path in watched.filter_map(|p| git(&["rev-parse", "--path-format=absolute", "--git-path", p])) {
        if Path::new(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // --no-optional-locks: status must not rewrite the index, which would look like a change.
    match git(&["--no-optional-locks", "status", "--porcelain"]) {
        Some(changes) if !changes.is_empty() => format!("{revision}-dirty"),
        _ => revision,
    }
}

fn build_kernels() -> Result<(), String> {
    let (v12, v13) = (env::var_os("CARGO_FEATURE_CUDA_12").is_some(), env::var_os("CARGO_FEATURE_CUDA_13").is_some());
    match (v12, v13) {
        (true, true) => return Err("features `cuda`/`cuda-12` and `cuda-13` pick different CUDA bindings: enable only one".into()),
        (false, false) => {
            return Err("the CUDA backend needs a CUDA version: build with `--features cuda` (CUDA 12.x) or `--features cuda-13`".into())
        }
        _ => {}
    }
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "PATH", "CUDA_COMPUTE_CAP", "NVCC_FLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("kernels");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.extension().is_some_and(|e| e == "cu") {
            sources.push(path);
        }
    }
    sources.sort();

    let nvcc = find_nvcc().ok_or_else(|| format!("nvcc was not found (NVCC, CUDA_HOME/bin, CUDA_PATH/bin, PATH); {GET_NVCC}"))?;
    let cap = compute_cap(env::var("CUDA_COMPUTE_CAP").ok().as_deref())?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let version = Command::new(&nvcc).arg("--version").output().map_err(|e| format!("{}: {e}; {GET_NVCC}", nvcc.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).lines().find(|l| l.contains("release")).unwrap_or("unknown").trim().to_string();

    // All files at once: nvcc is single-threaded per file.
    let jobs: Vec<_> = sources
        .iter()
        .map(|src| {
            let ptx = out.join(src.file_stem().unwrap()).with_extension("ptx");
            let mut cmd = Command::new(&nvcc);
            cmd.args(["-ptx", "-O3", "-std=c++17", "-lineinfo", "-Xptxas=-Werror", &format!("-arch=compute_{cap}")])
                .arg(fmad_flag(src))
                .arg("-I")
                .arg(&dir)
                .arg(src)
                .arg("-o")
                .arg(&ptx);
            if let Ok(flags) = env::var("NVCC_FLAGS") {
                cmd.args(flags.split_whitespace());
            }
            (src, ptx, cmd.output())
        })
        .collect();
    let mut table = String::from("// Generated by build.rs from kernels/*.cu.\n");
    writeln!(table, "pub const NVCC_VERSION: &str = {version:?};\npub const PTX_ARCH: &str = \"compute_{cap}\";").unwrap();
    table.push_str("pub const MODULES: &[Module] = &[\n");
    for (src, ptx, result) in jobs {
        let o = result.map_err(|e| format!("cannot run {}: {e}; {GET_NVCC}", nvcc.display()))?;
        if !o.status.success() {
            return Err(format!(
                "nvcc failed on {}:\n{}{}",
                src.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let text = std::fs::read_to_string(src).map_err(|e| e.to_string())?;
        let name = src.file_stem().unwrap().to_string_lossy();
        writeln!(
            table,
            "    Module {{ name: {name:?}, ptx: include_str!({:?}), kernels: &{:?} }},",
            ptx.display().to_string(),
            kernel_names(&text)
        )
        .unwrap();
    }
    table.push_str("];\n");
    std::fs::write(out.join("kernels.rs"), table).map_err(|e| e.to_string())
}

/// FMA contraction per file. nvcc fuses `a*b + c` into one `fma` (one
/// rounding instead of two) wherever it can; the CPU twins round twice, and
/// the emulated-kernel tests (tests/emulated_kernels.rs) compare most kernels
/// to them bit for bit. So every file is built with `-fmad=false`, which makes
/// the device round exactly as the emulation and the CPU do, at no cost to
/// these memory-bound kernels; except covariance.cu, whose Gram tiles are
/// bound by FMA throughput (fusing doubles the peak): its tests and the
/// doctor state a tolerance instead (1e-5 of the largest entry: a fused
/// product-sum differs by at most one rounding per term, 2⁻²⁴ each, well
/// inside it for the row counts compared).
fn fmad_flag(src: &Path) -> &'static str {
    match src.file_stem().and_then(|s| s.to_str()) {
        Some("covariance") => "-fmad=true",
        _ => "-fmad=false",
    }
}

/// `NVCC`, then `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, then `PATH`.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    let exe = if cfg!(windows) { "nvcc.exe" } else { "nvcc" };
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env::var_os(var) {
            let p = Path::new(&root).join("bin").join(exe);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(exe)).find(|p| p.is_file())
}

/// `CUDA_COMPUTE_CAP` as nvcc's digits: "80", "8.6" and "sm_90" all work.
fn compute_cap(var: Option<&str>) -> Result<String, String> {
    let raw = var.unwrap_or("80").trim();
    let digits: String = raw.trim_start_matches("sm_").trim_start_matches("compute_").chars().filter(|c| *c != '.').collect();
    if digits.len() >= 2 && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(format!("CUDA_COMPUTE_CAP={raw:?} is not a compute capability such as 80, 8.6 or 90"))
    }
}

/// The names of the `extern "C" __global__` functions of one .cu file.
fn kernel_names(src: &str) -> Vec<String> {
    src.split("extern \"C\" __global__ void ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(|name| name.trim().to_string())
        .collect()
}
