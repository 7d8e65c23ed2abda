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
    child_with(case, &[])
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

/// Runs the ignored test `case` in a child process whose environment adds
/// `env`; returns its exit code and stderr.
fn child_with(case: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", case, "--ignored", "--nocapture", "--test-threads", "1"]).envs(env.iter().copied());
    let o = cmd.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// `kappa ARGS` with `env` added; exit status and stdout + stderr.
fn kappa_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).envs(env.iter().copied()).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// A folder holding links to some of the stand-in's libraries (and its
/// kernels), for a child that must find the others missing.
fn partial_standin(name: &str, libs: &[&str]) -> std::path::PathBuf {
    // Cargo puts its own folders before scripts/standin/run's.
    let path = std::env::var("LD_LIBRARY_PATH").unwrap();
    let standin = std::env::split_paths(&path).find(|d| d.join("libcuda.so").exists()).expect("the stand-in on LD_LIBRARY_PATH");
    let dir = std::env::temp_dir().join(format!("kappa-standin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in libs.iter().copied().chain(["kernels"]) {
        std::os::unix::fs::symlink(standin.join(entry), dir.join(entry)).unwrap();
    }
    dir
}

#[test]
fn a_driver_older_than_the_build_or_its_ptx_is_refused_with_the_fix() {
    if !under_standin() {
        return;
    }
    let too_old = format!("{}", (cuda::compat::BUILT_CUDA_MAJOR - 1) * 1000 + 80);
    let (ok, out) = kappa_with(&["doctor", "--device", "cuda:0"], &[("KAPPA_STANDIN_DRIVER_VERSION", &too_old)]);
    let built = format!("built for CUDA {}", cuda::compat::BUILT_CUDA_MAJOR);
    assert!(!ok && out.contains(&built) && out.contains(&format!("supports CUDA {}.8 only", cuda::compat::BUILT_CUDA_MAJOR - 1)), "{out}");
    // A driver new enough for the bindings but one minor release behind the nvcc that wrote the PTX.
    let (major, minor) = cuda::compat::nvcc_release(cuda::kernels::NVCC_VERSION).expect("the build's nvcc banner");
    let behind = if minor > 0 { (major, minor - 1) } else { (major - 1, 9) };
    if behind.0 < cuda::compat::BUILT_CUDA_MAJOR {
        println!("SKIPPED the PTX case: nvcc {major}.{minor} is no newer than this build's bindings");
        return;
    }
    let version = format!("{}", behind.0 * 1000 + behind.1 * 10);
    let (ok, out) = kappa_with(&["doctor", "--device", "cuda:0"], &[("KAPPA_STANDIN_DRIVER_VERSION", &version)]);
    let needle = format!("compiled to PTX by nvcc {major}.{minor}, which needs a driver for CUDA {major}.{minor} or newer");
    assert!(!ok && out.contains(&needle) && out.contains("update the driver"), "{out}");
}

#[test]
fn a_missing_cublas_is_named_with_what_to_install() {
    if !under_standin() {
        return;
    }
    let dir = partial_standin("no-cublas", &["libcuda.so"]);
    let (ok, out) = kappa_with(&["doctor", "--device", "cuda:0"], &[("LD_LIBRARY_PATH", dir.to_str().unwrap())]);
    let _ = std::fs::remove_dir_all(&dir);
    if out.lines().any(|l| l.contains("libcublas (gemm)") && l.trim_end().ends_with(" found")) {
        println!("SKIPPED: a libcublas outside the stand-in is on the loader's path");
        return;
    }
    let wanted = format!("libcublas.so.{} (cuBLAS, for matrix products) was not found", cuda::compat::BUILT_CUDA_MAJOR);
    assert!(!ok && out.contains(&wanted) && out.contains("pip install"), "{out}");
}

/// A run its device cannot hold is refused before it starts, against the
/// device's own memory (the stand-in's 16 GiB), not the host's, and writes
/// nothing.
#[test]
fn a_run_the_device_cannot_hold_is_refused_naming_the_device() {
    if !under_standin() {
        return;
    }
    let out = std::env::temp_dir().join(format!("kappa-standin-too-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let args = ["train", "--device", "cuda:0", "--model", "resnet", "--depth", "110", "--data", "synthetic-cifar", "--batch-size", "5000"];
    let (ok, said) = kappa_with(&[&args[..], &["--out", out.to_str().unwrap()]].concat(), &[]);
    assert!(
        !ok && said.contains("plus the activations of 5000 examples") && said.contains("more than cuda:0's 16.0 GiB of memory"),
        "{said}"
    );
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}

/// The peak-memory and timing calls `kappa profile gpu` makes, on the stand-in.
#[test]
fn peak_memory_counts_the_live_allocations_and_the_standin_reports_no_speed_peaks() {
    use kappa::backend::Backend;
    use kappa::clock::Clock;
    if !under_standin() {
        return;
    }
    let dev = cuda::Cuda::new(0).unwrap();
    dev.reset_peak().unwrap();
    let x = dev.upload(&vec![1.0f32; 1 << 16]).unwrap();
    let seconds = dev.seconds(&mut || dev.scale(&x, 2.0).map(drop)).unwrap();
    assert!(seconds >= 0.0 && seconds.is_finite(), "{seconds}");
    // The upload and the scaled copy were both live at the peak (other
    // tests, running alongside, may add to it or free theirs).
    assert!(dev.peak_bytes().unwrap().unwrap() >= 2 * (4 << 16));
    dev.synchronize().unwrap();
    assert!(dev.peaks().is_none(), "the stand-in reports no clock rates, so no speed peaks");
}

/// `kappa profile gpu` reports two peaks per depth, the plain training
/// steps' (the figure set against PyTorch's) and the analysed steps'.
#[test]
fn the_training_and_the_analysed_steps_have_their_own_peaks() {
    use kappa::speed::{step_speed, Plan};
    if !under_standin() {
        return;
    }
    let dev = cuda::Cuda::new(0).unwrap();
    let plan = Plan { depths: vec![8], batch: 2, steps: 1, covariance: vec![], eig_sizes: vec![] };
    let s = step_speed(&dev, &dev, 8, &plan).unwrap();
    // At least the model's parameters were live through both.
    for peak in [s.peak_bytes, s.peak_bytes_analysed] {
        assert!(peak.unwrap() > 4 * 4_000, "{s:?}");
    }
    // Each step was traced, and the analysed one ran the analysis's ops too.
    let (plain, analysed) = (s.timeline.unwrap(), s.timeline_analysed.unwrap());
    for t in [&plain, &analysed] {
        assert!(t.by_name.iter().map(|o| o.ops).sum::<usize>() == t.ops && t.busy_seconds <= t.seconds, "{t:?}");
        assert!(t.by_name.iter().any(|o| o.name == "relu_backward_f32"), "{t:?}");
    }
    assert!(analysed.ops > plain.ops && analysed.by_name.iter().any(|o| o.name == "im2col"), "the patch Σx unfolds: {analysed:?}");
}

/// A trace names every op put on the stream while it is on, in launch
/// order: kernels, library calls and copies alike.
#[test]
fn a_trace_names_each_op_on_the_stream_in_launch_order() {
    use kappa::backend::{Backend, Gemm};
    if !under_standin() {
        return;
    }
    let dev = cuda::Cuda::new(0).unwrap();
    let ((), spans) = dev
        .traced(|| {
            let a = dev.upload(&[1.0f32, -2.0, 3.0, -4.0])?;
            let b = dev.relu(&dev.scale(&a, 2.0)?)?;
            let c = dev.matmul(&a, &b, Gemm::new(2, 2, 2, false, false))?;
            dev.download(&c).map(drop)
        })
        .unwrap();
    let spans = spans.unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.0).collect();
    assert_eq!(names, ["upload", "scale_f32", "relu_f32", "cublas gemm", "download"]);
    assert!(spans.iter().all(|s| s.1 >= 0.0 && s.1.is_finite()), "{spans:?}");
}

/// A trace longer than one harvest of its events keeps every span, in order.
#[test]
fn a_trace_keeps_every_span_past_a_harvest_of_its_events() {
    use kappa::backend::Backend;
    if !under_standin() {
        return;
    }
    let dev = cuda::Cuda::new(0).unwrap();
    let x = dev.upload(&[1.0f32, -1.0]).unwrap();
    let ops = cuda::trace::HARVEST + 3;
    let (last, spans) =
        dev.traced(|| (0..ops).try_fold(x.clone(), |y, i| if i % 2 == 0 { dev.relu(&y) } else { dev.scale(&y, -1.0) })).unwrap();
    let names: Vec<_> = spans.unwrap().into_iter().map(|s| s.0).collect();
    assert_eq!(names.len(), ops);
    assert!(names.iter().enumerate().all(|(i, n)| *n == if i % 2 == 0 { "relu_f32" } else { "scale_f32" }), "out of order");
    assert_eq!(dev.download(&last).unwrap(), [0.0, 0.0], "the work ran");
}

/// `eigvalsh` solves matrices up to `solver::HOST_MAX` on the host, with
/// the CPU backend's own solver (so its very bits), and larger ones with
/// syevd on the device, each result in its caller's place; `kappa profile
/// gpu` times both ways.
#[test]
fn eigvalsh_solves_small_matrices_on_the_host_and_large_ones_on_the_device() {
    use kappa::backend::cpu::Cpu;
    use kappa::backend::Backend;
    if !under_standin() {
        return;
    }
    let (dev, cpu) = (cuda::Cuda::new(0).unwrap(), Cpu::<f32>::new());
    let gram = |n: usize, seed: u64| {
        let mut r = kappa::rng::Rng::new(seed, 0);
        let x: Vec<f32> = (0..(n + 3) * n).map(|_| r.normal() as f32).collect();
        let mut m = vec![0.0f32; n * n];
        cpu.gram_lower(&mut m, &x, n + 3, n, 1.0 / (n + 3) as f64).unwrap();
        m
    };
    let (small, big) = (12, cuda::solver::HOST_MAX + 4);
    let host: Vec<(Vec<f32>, usize)> = vec![(gram(big, 1), big), (gram(small, 2), small), (gram(small, 3), small)];
    let on_device: Vec<_> = host.iter().map(|(m, n)| (dev.upload(m).unwrap(), *n)).collect();
    let got = dev.eigvalsh(&on_device.iter().map(|(m, n)| (m, *n)).collect::<Vec<_>>()).unwrap();
    let want = cpu.eigvalsh(&host.iter().map(|(m, n)| (m, *n)).collect::<Vec<_>>()).unwrap();
    assert_eq!(got[1..], want[1..], "the small matrices, solved on the host, give the CPU's bits");
    let scale = want[0][0];
    assert!(got[0].len() == big && got[0].iter().zip(&want[0]).all(|(g, w)| (g - w).abs() <= 1e-4 * scale), "syevd's spectrum");
    assert_ne!(got[0], want[0], "the large matrix went to the host's solver, not syevd");
    let paths = kappa::speed::eig_paths(&dev, small).unwrap();
    for key in ["device", "host", "device_batch", "host_batch"] {
        assert!(paths[key].as_f64().is_some_and(|s| s >= 0.0), "{key}: {paths}");
    }
}

#[cfg(feature = "cudnn")]
mod cudnn {
    use super::*;
    use kappa::backend::cpu::Cpu;
    use kappa::backend::cuda::conv::ConvPath;
    use kappa::backend::{Backend, Window};

    /// A 3×3, stride-2, padded convolution's three directions on cuDNN's path
    /// (whatever runs them) against the CPU; returns what ran them.
    fn convolutions_match_the_cpu() -> String {
        let dev = cuda::Cuda::with_conv(0, ConvPath::Cudnn).unwrap();
        let cpu = Cpu::<f32>::new();
        let g = Window { n: 2, c: 3, h: 9, w: 8, kh: 3, kw: 3, stride: 2, pad: 1 };
        let c_out = 4;
        let values = |n: usize, k: f32| (0..n).map(|i| ((i as f32 * k).sin() * 3.0).round() / 4.0).collect::<Vec<f32>>();
        let (x, w) = (values(g.n * g.image_len(), 0.7), values(c_out * g.patch_len(), 1.3));
        let y = cpu.conv2d(&x, &w, g, c_out).unwrap();
        let dy = values(y.len(), 0.9);
        let (dx_, dw_, ddy) = (dev.upload(&x).unwrap(), dev.upload(&w).unwrap(), dev.upload(&dy).unwrap());
        let close = |got: Vec<f32>, want: Vec<f32>, what: &str| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{what}: {a} vs {b}");
            }
        };
        close(dev.download(&dev.conv2d(&dx_, &dw_, g, c_out).unwrap()).unwrap(), y, "forward");
        let got = dev.download(&dev.conv2d_backward_data(&ddy, &dw_, g, c_out).unwrap()).unwrap();
        close(got, cpu.conv2d_backward_data(&dy, &w, g, c_out).unwrap(), "backward data");
        let got = dev.download(&dev.conv2d_backward_filter(&ddy, &dx_, g, c_out).unwrap()).unwrap();
        close(got, cpu.conv2d_backward_filter(&dy, &x, g, c_out).unwrap(), "backward filter");
        dev.convolutions()
    }

    #[test]
    #[ignore = "run in a child process, with a stand-in variant, by cudnn_runs_every_direction_and_falls_back_as_designed"]
    fn conv_on_the_cudnn_path() {
        eprintln!("convolutions by: {}", convolutions_match_the_cpu());
        std::process::exit(CHECKED);
    }

    #[test]
    fn cudnn_runs_every_direction_and_falls_back_as_designed() {
        if !under_standin() {
            return;
        }
        let run = |env: &[(&str, &str)]| {
            let (code, err) = child_with("cudnn::conv_on_the_cudnn_path", env);
            assert_eq!(code, Some(CHECKED), "{env:?}: {err}");
            err
        };
        // The stand-in's cuDNN 9.21, with no algorithm refused and no fallback.
        let err = run(&[]);
        assert!(err.contains("convolutions by: cuDNN 9.21.0") && !err.contains("kappa CPU stand-in:") && !err.contains("warning"), "{err}");
        // The first-ranked algorithm of each direction fails: the next one runs, silently.
        let err = run(&[("KAPPA_STANDIN_CUDNN_FAIL", "first")]);
        for call in ["cudnnConvolutionForward", "cudnnConvolutionBackwardData", "cudnnConvolutionBackwardFilter"] {
            assert!(err.contains(&format!("{call}: failed, as KAPPA_STANDIN_CUDNN_FAIL asks")), "{call}: {err}");
        }
        assert!(!err.contains("warning"), "{err}");
        // Every algorithm fails: im2col + cuBLAS runs the shape, after one warning.
        let err = run(&[("KAPPA_STANDIN_CUDNN_FAIL", "all")]);
        assert_eq!(err.matches("warning: cuDNN cannot run a convolution").count(), 1, "{err}");
        assert!(err.contains("every algorithm failed") && err.contains("such shapes run as im2col + cuBLAS"), "{err}");
        // A cuDNN older than the bindings, or none: im2col + cuBLAS throughout, saying why.
        let err = run(&[("KAPPA_STANDIN_CUDNN_VERSION", "8907")]);
        assert!(err.contains("libcudnn 8.9.7 was found, but this build's cuDNN bindings need cuDNN 9"), "{err}");
        assert!(err.contains("convolutions by: im2col + cuBLAS, as cuDNN is unusable"), "{err}");
        let dir = partial_standin("no-cudnn", &["libcuda.so", "libcublas.so", "libcusolver.so"]);
        let err = run(&[("LD_LIBRARY_PATH", dir.to_str().unwrap())]);
        let _ = std::fs::remove_dir_all(&dir);
        if err.contains("convolutions by: cuDNN") {
            println!("SKIPPED the missing-cuDNN case: a libcudnn outside the stand-in is on the loader's path");
            return;
        }
        assert!(err.contains("libcudnn.so.9 (cuDNN 9, for convolutions) was not found"), "{err}");
        assert!(err.contains("convolutions by: im2col + cuBLAS, as cuDNN is unusable"), "{err}");
    }
}
