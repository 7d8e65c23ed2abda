//! Runs kernels/*.cu on the CPU: g++ compiles each file with kernels/emulate.h
//! into a shared library (once, into Cargo's per-test scratch directory, again
//! only when a source is newer), and a launch calls the kernel once per
//! emulated CUDA thread through a trampoline.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A device pointer as the emulated kernels take it: a plain host pointer,
/// shareable between the emulated threads (each kernel decides who writes what).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Ptr(*mut c_void);
// SAFETY: a Ptr only crosses to the emulated threads of one launch, during
// which the test's buffers outlive it; races are the kernel's own to avoid.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    pub const NULL: Ptr = Ptr(std::ptr::null_mut());
}

pub fn ptr<T>(v: &mut [T]) -> Ptr {
    Ptr(v.as_mut_ptr().cast())
}

/// Read-only buffers still travel as `Ptr`; the kernel's `const` is the contract.
pub fn cptr<T>(v: &[T]) -> Ptr {
    Ptr(v.as_ptr() as *mut c_void)
}

type Body = extern "C" fn(*mut c_void);
type LaunchFn = unsafe extern "C" fn(u32, u32, u32, u32, u32, u32, Body, *mut c_void);

pub struct Module {
    lib: libloading::Library,
}

extern "C" fn trampoline<F: Fn() + Sync>(ctx: *mut c_void) {
    // SAFETY: `ctx` is the `&F` that `Module::launch` passed and still borrows.
    let f = unsafe { &*(ctx as *const F) };
    f();
}

impl Module {
    /// The kernel `name`, typed by the caller as the `extern "C"` signature of
    /// its .cu declaration (pointers as [`Ptr`], size_t as usize).
    pub fn kernel<F: Copy>(&self, name: &str) -> F {
        // SAFETY: the caller's F mirrors the kernel's C declaration.
        unsafe { *self.lib.get::<F>(name.as_bytes()).unwrap_or_else(|e| panic!("kernel {name}: {e}")) }
    }

    /// Runs `body` once per thread of a grid×block launch; `body` calls the kernel.
    pub fn launch<F: Fn() + Sync>(&self, grid: (u32, u32, u32), block: (u32, u32, u32), body: F) {
        let launch: LaunchFn = self.kernel("emu_launch");
        // SAFETY: emu_launch calls trampoline::<F> with &body, returning only
        // after every emulated thread has finished.
        unsafe { launch(grid.0, grid.1, grid.2, block.0, block.1, block.2, trampoline::<F>, &body as *const F as *mut c_void) }
    }
}

/// The emulated build of kernels/`name`.cu.
pub fn module(name: &str) -> &'static Module {
    static LIBS: OnceLock<Vec<(String, Module)>> = OnceLock::new();
    let libs = LIBS.get_or_init(build_all);
    &libs.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no kernel file {name}.cu")).1
}

pub fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

/// Every kernel file, by name without `.cu`: all of them are built, so a new
/// file is emulated without being listed anywhere.
pub fn kernel_files() -> Vec<String> {
    let entries = std::fs::read_dir(kernels_dir()).unwrap_or_else(|e| panic!("{}: {e}", kernels_dir().display()));
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".cu").map(str::to_string)).collect();
    names.sort();
    names
}

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH)
}

/// Compiles every file at once (g++ is single-threaded), skipping up-to-date ones.
fn build_all() -> Vec<(String, Module)> {
    let dir = kernels_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emulated-kernels");
    std::fs::create_dir_all(&out).unwrap();
    let headers = ["emulate.h", "common.cuh"].map(|h| modified(&dir.join(h))).into_iter().max().unwrap();
    let target = env!("KAPPA_BUILD_TARGET");
    let tool =
        cc::Build::new().cpp(true).target(target).host(target).opt_level(2).cargo_metadata(false).cargo_warnings(false).get_compiler();
    let jobs: Vec<_> = kernel_files()
        .into_iter()
        .map(|name| {
            let src = dir.join(format!("{name}.cu"));
            let so = out.join(format!("{name}.so"));
            let fresh = so.exists() && modified(&so) > headers.max(modified(&src));
            let child = (!fresh).then(|| {
                let mut cmd: Command = tool.to_command();
                cmd.args(["-std=c++20", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"])
                    .args(["-x", "c++", "-include"])
                    .arg(dir.join("emulate.h"))
                    .arg(&src)
                    .arg("-o")
                    .arg(&so);
                cmd.spawn().unwrap_or_else(|e| panic!("cannot run the C++ compiler for {}: {e}", src.display()))
            });
            (name, so, child)
        })
        .collect();
    jobs.into_iter()
        .map(|(name, so, child)| {
            if let Some(child) = child {
                let o = child.wait_with_output().unwrap();
                assert!(o.status.success(), "emulated build of {name}.cu failed");
            }
            // SAFETY: our own library; its initialisers only set up statics.
            let lib = unsafe { libloading::Library::new(&so) }.unwrap_or_else(|e| panic!("{}: {e}", so.display()));
            (name, Module { lib })
        })
        .collect()
}
