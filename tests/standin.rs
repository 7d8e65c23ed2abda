//! The CPU stand-in for the CUDA driver (tests/standin) itself: a kernel or a
//! copy that strays outside its allocation fails loudly, naming it, and fresh
//! memory reads as NaN. Runs where the stand-in is the libcuda in use
//! (scripts/standin/run sets KAPPA_STANDIN=1, and then it must be); each bad
//! access runs in a child process, since it poisons (or aborts) the context.
#![cfg(feature = "cuda-backend")]

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use kappa::backend::cuda;
use std::process::Command;
use std::sync::Arc;

/// Whether to run: only under the stand-in, which KAPPA_STANDIN=1 insists on.
fn under_standin() -> bool {
    let wanted = std::env::var_os("KAPPA_STANDIN").is_some();
    let present = cuda::standin();
    assert!(present || !wanted, "KAPPA_STANDIN is set, but the libcuda found is not the stand-in (LD_LIBRARY_PATH?)");
    if !present {
        println!("SKIPPED: the CPU stand-in is not the libcuda in use (scripts/standin/run)");
    }
    present
}

fn stream() -> Arc<CudaStream> {
    CudaContext::new(0).unwrap().default_stream()
}

/// Runs kappa's `fill_f32` (y[i] = value for i < n) over `y` with one block.
fn fill(stream: &Arc<CudaStream>, y: &mut CudaSlice<f32>, value: f32, n: usize) -> Result<(), cudarc::driver::DriverError> {
    let module = cuda::kernels::module_of("fill_f32").unwrap();
    let f = stream.context().load_module(Ptx::from_src(module.ptx)).unwrap().load_function("fill_f32").unwrap();
    let mut launch = stream.launch_builder(&f);
    launch.arg(y).arg(&value).arg(&n);
    // SAFETY: fill_f32(float* y, float value, size_t n); n may exceed y on purpose.
    unsafe { launch.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 }) }?;
    stream.synchronize()
}

/// The exit code a bad-access case ends with once its own checks passed.
const CHECKED: i32 = 3;

/// Runs the ignored test `case` in a child process; returns its exit code
/// (None when a signal ended it) and stderr.
fn child(case: &str) -> (Option<i32>, String) {
    let exe = std::env::current_exe().unwrap();
    let o = Command::new(exe).args(["--exact", case, "--ignored", "--nocapture", "--test-threads", "1"]).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn an_in_bounds_launch_fills_exactly_its_elements_and_fresh_memory_is_nan() {
    if !under_standin() {
        return;
    }
    let s = stream();
    // SAFETY: read back before any write, on purpose: the poison must show.
    let mut y = unsafe { s.alloc::<f32>(5) }.unwrap();
    assert!(s.clone_dtoh(&y).unwrap().iter().all(|v| v.is_nan()), "fresh memory is not poisoned");
    fill(&s, &mut y, 2.5, 4).unwrap();
    let got = s.clone_dtoh(&y).unwrap();
    assert_eq!(&got[..4], &[2.5; 4]);
    assert!(got[4].is_nan(), "fill_f32 wrote past n");
}

#[test]
#[ignore = "a bad launch, run in a child process by a_kernel_writing_one_element_past_its_allocation_is_named"]
fn overrun_into_the_alignment_slack() {
    let s = stream();
    let mut y = unsafe { s.alloc::<f32>(5) }.unwrap(); // 20 bytes: 12 bytes of canary before the guard page
    let err = fill(&s, &mut y, 1.0, 6).unwrap_err();
    assert_eq!(err.0, cudarc::driver::sys::CUresult::CUDA_ERROR_ILLEGAL_ADDRESS, "{err:?}");
    // The fault is sticky, as on a device.
    assert!(s.clone_dtoh(&y).is_err());
    std::process::exit(CHECKED);
}

#[test]
#[ignore = "a bad launch, run in a child process by a_kernel_writing_one_element_past_its_allocation_is_named"]
fn overrun_onto_the_guard_page() {
    let s = stream();
    let mut y = unsafe { s.alloc::<f32>(4) }.unwrap(); // 16 bytes, ending at the guard page
    let _ = fill(&s, &mut y, 1.0, 5);
    unreachable!("the guard page did not stop fill_f32");
}

#[test]
#[ignore = "a bad copy, run in a child process by a_copy_past_an_allocation_is_refused_and_named"]
fn copy_past_the_end() {
    let s = stream();
    let y = unsafe { s.alloc::<f32>(5) }.unwrap();
    let host = [0f32; 6];
    let (ptr, _sync) = cudarc::driver::DevicePtr::device_ptr(&y, &s);
    // SAFETY: 24 bytes into a 20-byte allocation, on purpose; the stand-in refuses it.
    let r = unsafe { cudarc::driver::sys::cuMemcpyHtoD_v2(ptr, host.as_ptr().cast(), 24) };
    assert_eq!(r, cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_VALUE);
    std::process::exit(CHECKED);
}

#[test]
fn a_kernel_writing_one_element_past_its_allocation_is_named() {
    if !under_standin() {
        return;
    }
    let (code, err) = child("overrun_into_the_alignment_slack");
    assert_eq!(code, Some(CHECKED), "{err}");
    assert!(err.contains("fill_f32 wrote outside the 20-byte allocation"), "{err}");
    let (code, err) = child("overrun_onto_the_guard_page");
    assert_eq!(code, None, "the guard-page overrun did not abort: {err}");
    assert!(
        err.contains("kernel fill_f32 accessed") && err.contains("outside the 16-byte allocation") && err.contains("guard page"),
        "{err}"
    );
}

#[test]
fn a_copy_past_an_allocation_is_refused_and_named() {
    if !under_standin() {
        return;
    }
    let (code, err) = child("copy_past_the_end");
    assert_eq!(code, Some(CHECKED), "{err}");
    assert!(err.contains("cuMemcpyHtoD_v2: 24 bytes") && err.contains("run 4 bytes past the end of the 20-byte allocation"), "{err}");
}
