//! `kappa profile gpu`: the speed figures of the GPU acceptance run, generic
//! over the backend (so the CPU runs the same code at small sizes): a CIFAR
//! ResNet training step with and without analysis of every layer at every
//! step (img/s), dense and patch Σx accumulation against the device's peaks
//! (counted bytes and flops, see [`crate::profile::counts`]), `eigvalsh` at
//! the sizes conv layers give (n = 9·C for C = 16…512), and the peak device
//! memory of the training steps and, apart, of the analysed ones. On CUDA
//! also a timeline of one training and one analysed step (each op's time on
//! the stream, by name) and `eigvalsh` by the device's solver and by the
//! host's, alone and in batches (`eig_paths`).

use crate::analysis::{AnalysisConfig, Analyzer, TrainingBatch};
use crate::backend::{Backend, Device, Peaks};
use crate::clock::{Clock, Timeline, WallClock};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::profile::{counts, Shape};
use crate::rng::Rng;
use crate::scalar::Scalar;
use crate::train::{Labels, TrainConfig, Trainer};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// What to measure; the defaults are the issue's, the tests' are tiny.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub depths: Vec<usize>,
    pub batch: usize,
    /// Timed steps per depth, after two warm-up steps.
    pub steps: usize,
    /// Activation shapes N,C,H,W for Σx (H = W = 1: dense).
    pub covariance: Vec<[usize; 4]>,
    pub eig_sizes: Vec<usize>,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            depths: vec![20, 56, 110, 1202],
            batch: 128,
            steps: 5,
            covariance: vec![[1024, 256, 1, 1], [128, 16, 32, 32], [128, 64, 8, 8]],
            eig_sizes: vec![256, 576, 1152, 2304, 4608],
        }
    }

    /// Refuses, before anything is measured, a depth no CIFAR ResNet has and
    /// an eigen-solve too large for this machine's memory, naming the flag.
    pub fn check(&self) -> Result<()> {
        if let Some(d) = self.depths.iter().find(|&&d| d < 8 || (d - 2) % 6 != 0) {
            return Err(Error::arg("--depths", format!("{d} is not 6n+2 (n ≥ 1); CIFAR ResNets have depth 20, 32, 44, 56, 110, 1202, …")));
        }
        for &n in &self.eig_sizes {
            crate::size::elements("an eigen-solve's matrix", &[n, n], "--eig-sizes")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepSpeed {
    pub depth: usize,
    pub batch: usize,
    pub images_per_second: f64,
    /// With Σx, Σ∇h, spectra and diagnostics of every layer at every step.
    pub images_per_second_analysed: f64,
    /// Extra time of the analysis, in training steps.
    pub analysis_overhead: f64,
    /// Device memory at the peak of the plain training steps (model and
    /// optimiser state included): the figure PyTorch's anchor reports.
    pub peak_bytes: Option<u64>,
    /// The same over the analysed steps alone, whose probes and second
    /// moments come on top.
    pub peak_bytes_analysed: Option<u64>,
    /// One more training step, and one more analysed step, traced op by op
    /// (on a device only): how much of each the device was busy, and with what.
    pub timeline: Option<Timeline>,
    pub timeline_analysed: Option<Timeline>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CovarianceSpeed {
    pub shape: [usize; 4],
    pub rows: usize,
    pub k: usize,
    pub seconds: f64,
    pub gflops: f64,
    pub gbytes_per_second: f64,
    /// Achieved over the bound that binds (bandwidth or FMA), when peaks are known.
    pub fraction_of_bound: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EigSpeed {
    pub n: usize,
    pub seconds: f64,
}

fn synthetic_batch(rows: usize, dims: &[usize], classes: usize, seed: u64) -> Batch {
    let mut r = Rng::new(seed, 1);
    let per: usize = dims.iter().product();
    Batch {
        images: (0..rows * per).map(|_| r.normal() as f32).collect(),
        labels: (0..rows).map(|i| (i % classes) as u32).collect(),
        dims: [&[rows][..], dims].concat(),
    }
}

/// One depth's training step on `backend`, plain and analysed every step.
pub fn step_speed<B: Backend>(backend: &B, clock: &dyn Clock, depth: usize, plan: &Plan) -> Result<StepSpeed> {
    let cfg =
        TrainConfig { model: "resnet".into(), depth, batch_size: plan.batch, data: "synthetic-cifar".into(), ..TrainConfig::default() };
    let dims = [3, 32, 32];
    clock.reset_peak()?;
    let mut trainer = Trainer::new(backend, &cfg, &dims, 10)?;
    let batch = synthetic_batch(plan.batch, &dims, 10, depth as u64);
    // Warm-up steps (kernels loaded, cuDNN plans chosen, pools grown); the
    // second, warm, is the traced one.
    trainer.step(&batch, 0.01)?;
    let timeline = clock.timeline(&mut || trainer.step(&batch, 0.01).map(drop))?;
    let plain = clock.seconds(&mut || (0..plan.steps).try_for_each(|_| trainer.step(&batch, 0.01).map(drop)))? / plan.steps as f64;
    // Read before the analysed steps: the first GPU run read one peak after
    // both, and its analysed ResNet-1202 (22.3 GiB) was set against
    // PyTorch's plain step (11.2 GiB).
    let peak_bytes = clock.peak_bytes()?;
    clock.reset_peak()?;
    let mut analyzer = Analyzer::new(AnalysisConfig { every: 1, ..AnalysisConfig::default() }, 0, None)?;
    let mut analysed_step = |it: usize| -> Result<()> {
        let (_, grads) = trainer.gradients(&batch, Labels::True, true)?;
        analyzer.analyze(&mut trainer, TrainingBatch { batch: &batch, grads: &grads }, &[], it, 0)?;
        trainer.apply(&grads, 0.01)
    };
    analysed_step(0)?;
    let analysed = clock.seconds(&mut || (1..=plan.steps).try_for_each(&mut analysed_step))? / plan.steps as f64;
    let timeline_analysed = clock.timeline(&mut || analysed_step(plan.steps + 1))?;
    Ok(StepSpeed {
        depth,
        batch: plan.batch,
        images_per_second: plan.batch as f64 / plain,
        images_per_second_analysed: plan.batch as f64 / analysed,
        analysis_overhead: analysed / plain - 1.0,
        peak_bytes,
        peak_bytes_analysed: clock.peak_bytes()?,
        timeline,
        timeline_analysed,
    })
}

/// Σx accumulation of one activation shape, rated against `peaks`.
pub fn covariance_speed<B: Backend>(
    backend: &B,
    clock: &dyn Clock,
    [n, c, h, w]: [usize; 4],
    peaks: Option<Peaks>,
) -> Result<CovarianceSpeed> {
    let s = Shape { n, c, h, w };
    let (rows, k) = s.matrix();
    let mut r = Rng::new(0, 0);
    let x = backend.upload(&(0..n * c * h * w).map(|_| B::Elem::from_f64(r.normal())).collect::<Vec<_>>())?;
    let mut acc = backend.zeros(k * k)?;
    let mut once = || match s.is_dense() {
        true => backend.gram_lower(&mut acc, &x, rows, k, 1.0 / rows as f64),
        false => backend.gram_lower_patches(&mut acc, &x, s.window(), 1.0 / rows as f64),
    };
    once()?; // loads the kernels
    let repeats = 5;
    let seconds = clock.seconds(&mut || (0..repeats).try_for_each(|_| once()))? / repeats as f64;
    let cnt = counts(s, backend.device());
    let (flops, bytes) = (cnt.gram_flops / seconds, cnt.gram_bytes / seconds);
    // The bound that binds is the one the kernel would hit first at its counts.
    let fraction_of_bound = peaks.map(|p| p.bound_seconds(cnt.gram_flops, cnt.gram_bytes) / seconds);
    Ok(CovarianceSpeed { shape: [n, c, h, w], rows, k, seconds, gflops: flops / 1e9, gbytes_per_second: bytes / 1e9, fraction_of_bound })
}

/// `eigvalsh` of one n×n second moment (eigvalsh returns to the host, so it is finished when timed).
pub fn eig_speed<B: Backend>(backend: &B, clock: &dyn Clock, n: usize) -> Result<EigSpeed> {
    let mut r = Rng::new(1, 0);
    let rows = n + 8;
    let x = backend.upload(&(0..rows * n).map(|_| B::Elem::from_f64(r.normal())).collect::<Vec<_>>())?;
    let mut acc = backend.zeros(n * n)?;
    backend.gram_lower(&mut acc, &x, rows, n, 1.0 / rows as f64)?;
    backend.eigvalsh(&[(&acc, n)])?;
    let seconds = clock.seconds(&mut || backend.eigvalsh(&[(&acc, n)]).map(drop))?;
    Ok(EigSpeed { n, seconds })
}

/// `eigvalsh` both ways on the CUDA backend at `n`: one matrix by the
/// device's syevd and by the host's solver, then a batch of
/// [`EIG_BATCH`] matrices both ways (one syevd after another; one call to
/// the host, which solves them side by side), to set where the backend's
/// routing (`cuda::solver::HOST_MAX`) should lie. The host is timed only up
/// to [`EIG_HOST_UP_TO`] (one core takes seconds beyond), the batches only
/// up to [`EIG_BATCH_UP_TO`].
#[cfg(feature = "cuda-backend")]
pub fn eig_paths(dev: &crate::backend::cuda::Cuda, n: usize) -> Result<serde_json::Value> {
    let mut r = Rng::new(2, 0);
    let rows = n + 8;
    let x = dev.upload(&(0..rows * n).map(|_| r.normal() as f32).collect::<Vec<_>>())?;
    let mut acc = dev.zeros(n * n)?;
    dev.gram_lower(&mut acc, &x, rows, n, 1.0 / rows as f64)?;
    let batch = vec![(&acc, n); EIG_BATCH];
    let time = |work: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        work()?;
        dev.seconds(work)
    };
    let device = time(&mut || dev.eigvalsh_on_device(&acc, n).map(drop))?;
    let host = (n <= EIG_HOST_UP_TO).then(|| time(&mut || dev.eigvalsh_on_host(&[(&acc, n)]).map(drop))).transpose()?;
    let batched = n <= EIG_BATCH_UP_TO;
    let device_batch =
        batched.then(|| time(&mut || batch.iter().try_for_each(|&(m, n)| dev.eigvalsh_on_device(m, n).map(drop)))).transpose()?;
    let host_batch = batched.then(|| time(&mut || dev.eigvalsh_on_host(&batch).map(drop))).transpose()?;
    Ok(json!({ "n": n, "device": device, "host": host, "batch": EIG_BATCH, "device_batch": device_batch, "host_batch": host_batch }))
}

/// [`eig_paths`] at `n`, printed, or its error.
#[cfg(feature = "cuda-backend")]
fn print_eig_paths(dev: &crate::backend::cuda::Cuda, n: usize) -> serde_json::Value {
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |s| format!("{:.2} ms", s * 1e3));
    match eig_paths(dev, n) {
        Ok(v) => {
            let (device, host, device_batch, host_batch) = (ms(&v["device"]), ms(&v["host"]), ms(&v["device_batch"]), ms(&v["host_batch"]));
            println!("eigvalsh n = {n}, one matrix: device {device}, host {host}; {EIG_BATCH} matrices: device {device_batch}, host {host_batch}");
            v
        }
        Err(e) => {
            println!("eigvalsh n = {n}, both ways: FAILED: {e}");
            json!({ "error": e.to_string() })
        }
    }
}

/// Matrices in [`eig_paths`]'s batches.
#[cfg(feature = "cuda-backend")]
pub const EIG_BATCH: usize = 16;
/// The largest order [`eig_paths`] solves on the host.
#[cfg(feature = "cuda-backend")]
pub const EIG_HOST_UP_TO: usize = 2304;
/// The largest order [`eig_paths`] times in batches.
#[cfg(feature = "cuda-backend")]
pub const EIG_BATCH_UP_TO: usize = 1152;

/// Every figure of `plan` on `backend`; a failing part is recorded as its
/// error and the rest still runs. `progress` gets the figures so far after
/// each one, so a run cut off by a time limit can keep them.
pub fn measure<B: Backend>(
    backend: &B,
    clock: &dyn Clock,
    plan: &Plan,
    peaks: Option<Peaks>,
    progress: &mut dyn FnMut(&serde_json::Value),
) -> serde_json::Value {
    let as_json = |r: Result<serde_json::Value>| r.unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let so_far = |train: &[serde_json::Value], covariance: &[serde_json::Value], eig: &[serde_json::Value]| json!({ "plan": plan, "peaks": peaks, "train": train, "covariance": covariance, "eigvalsh": eig });
    let (mut train, mut covariance, mut eig) = (Vec::new(), Vec::new(), Vec::new());
    let gib = |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64));
    for &depth in &plan.depths {
        let r = step_speed(backend, clock, depth, plan);
        match &r {
            Ok(s) => {
                println!(
                    "resnet-{depth} batch {}: {:>9.1} img/s, peak {}; analysed every step {:>9.1} img/s (+{:.2} steps), peak {}",
                    s.batch,
                    s.images_per_second,
                    gib(s.peak_bytes),
                    s.images_per_second_analysed,
                    s.analysis_overhead,
                    gib(s.peak_bytes_analysed)
                );
                let untraced = [s.batch as f64 / s.images_per_second, s.batch as f64 / s.images_per_second_analysed];
                for ((t, kind), step) in [&s.timeline, &s.timeline_analysed].into_iter().zip(["step", "analysed step"]).zip(untraced) {
                    if let Some(t) = t {
                        println!("  {}", describe_timeline(t, kind, step));
                    }
                }
            }
            Err(e) => println!("resnet-{depth}: FAILED: {e}"),
        }
        train.push(as_json(r.map(|s| json!(s))));
        progress(&so_far(&train, &covariance, &eig));
    }
    for &shape in &plan.covariance {
        let r = covariance_speed(backend, clock, shape, peaks);
        match &r {
            Ok(c) => println!(
                "covariance {:?} ({}×{}): {:.3} ms, {:.1} GFLOP/s, {:.1} GB/s{}",
                c.shape,
                c.rows,
                c.k,
                c.seconds * 1e3,
                c.gflops,
                c.gbytes_per_second,
                c.fraction_of_bound.map_or(String::new(), |f| format!(", {:.0}% of its bound", 100.0 * f))
            ),
            Err(e) => println!("covariance {shape:?}: FAILED: {e}"),
        }
        covariance.push(as_json(r.map(|c| json!(c))));
        progress(&so_far(&train, &covariance, &eig));
    }
    for &n in &plan.eig_sizes {
        let r = eig_speed(backend, clock, n);
        match &r {
            Ok(e) => println!("eigvalsh n = {n}: {:.2} ms", e.seconds * 1e3),
            Err(e) => println!("eigvalsh n = {n}: FAILED: {e}"),
        }
        eig.push(as_json(r.map(|e| json!(e))));
        progress(&so_far(&train, &covariance, &eig));
    }
    so_far(&train, &covariance, &eig)
}

/// How many of a timeline's names [`describe_timeline`] lists.
const TIMELINE_NAMES: usize = 6;

/// One line on a traced step: the device's busy time against the untraced
/// step's `step_seconds`, and the names that took most of it.
fn describe_timeline(t: &Timeline, kind: &str, step_seconds: f64) -> String {
    let ms = |s: f64| s * 1e3;
    let most: Vec<String> =
        t.by_name.iter().take(TIMELINE_NAMES).map(|o| format!("{} {:.2} ms ({}×)", o.name, ms(o.seconds), o.ops)).collect();
    format!(
        "traced {kind}: the device busy {:.2} of its {:.2} ms on the stream, in {} ops ({:.0}% of an untraced {kind}'s {:.2} ms); most: {}",
        ms(t.busy_seconds),
        ms(t.seconds),
        t.ops,
        100.0 * t.busy_seconds / step_seconds,
        ms(step_seconds),
        most.join(", ")
    )
}

/// Whether any figure of a [`measure`] result is an error.
pub fn any_failed(v: &serde_json::Value) -> bool {
    ["train", "covariance", "eigvalsh", "eigvalsh_paths"]
        .iter()
        .any(|k| v[k].as_array().is_some_and(|a| a.iter().any(|x| x.get("error").is_some())))
}

/// `kappa profile gpu`: measures `plan` on `device`, prints every figure and
/// writes them to `json`, after each one (so a run its caller cuts off keeps
/// what it measured); an error when any part failed.
pub fn run(device: &str, plan: &Plan, json: Option<&Path>) -> Result<()> {
    plan.check()?;
    json.map(crate::doctor::check_json_path).transpose()?;
    let labelled = |v: &serde_json::Value, label: &str| {
        let mut v = v.clone();
        v["device"] = json!(label);
        v
    };
    // A failed write along the way is a warning: the last one, below, is the error.
    let save = |v: &serde_json::Value| {
        if let Some(Err(e)) = json.map(|path| crate::doctor::write_json(path, v)) {
            eprintln!("warning: {e}");
        }
    };
    let (value, label) = match device.parse::<Device>()? {
        Device::Cpu => {
            let cpu = crate::backend::cpu::Cpu::<f32>::new();
            (measure(&cpu, &WallClock, plan, None, &mut |v| save(&labelled(v, "cpu"))), "cpu".to_string())
        }
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => {
            let dev = crate::backend::cuda::Cuda::new(i)?;
            let label = format!("cuda:{i} ({})", dev.info().name);
            let mut value = measure(&dev, &dev, plan, dev.peaks(), &mut |v| save(&labelled(v, &label)));
            value["eigvalsh_paths"] = json!(plan.eig_sizes.iter().map(|&n| print_eig_paths(&dev, n)).collect::<Vec<_>>());
            (value, label)
        }
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => return Err(Error::CudaNotCompiled(i)),
    };
    let value = labelled(&value, &label);
    if let Some(path) = json {
        crate::doctor::write_json(path, &value)?;
    }
    match any_failed(&value) {
        true => Err(Error::Backend(format!("profile gpu on {label}: some measurements failed (see above)"))),
        false => Ok(()),
    }
}

/// Parses a comma-separated list of positive whole numbers given for `flag`.
pub fn parse_list(flag: &'static str, s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|p| p.trim().parse::<usize>().ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::arg(flag, format!("'{s}' is not a comma-separated list of positive whole numbers")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;

    #[test]
    fn lists_parse_or_name_their_flag() {
        assert_eq!(parse_list("--depths", "20, 56").unwrap(), [20, 56]);
        for bad in ["", "20,,56", "x", "0"] {
            assert!(parse_list("--depths", bad).unwrap_err().to_string().contains("--depths"), "{bad}");
        }
    }

    #[test]
    fn a_plan_that_cannot_run_is_refused_before_anything_is_measured() {
        let plan = Plan::full();
        plan.check().unwrap();
        for depths in [vec![20, 21], vec![2]] {
            let e = Plan { depths, ..plan.clone() }.check().unwrap_err().to_string();
            assert!(e.contains("--depths") && e.contains("6n+2"), "{e}");
        }
        let e = Plan { eig_sizes: vec![256, 1 << 20], ..plan.clone() }.check().unwrap_err().to_string();
        assert!(e.contains("--eig-sizes") && e.contains("would not fit"), "{e}");
        let e = run("cpu", &plan, Some(Path::new("no-such-folder/x.json"))).unwrap_err().to_string();
        assert!(e.contains("--json") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn every_figure_is_measured_on_the_cpu_at_small_sizes() {
        let plan = Plan { depths: vec![8], batch: 4, steps: 1, covariance: vec![[16, 8, 1, 1], [2, 3, 6, 6]], eig_sizes: vec![12] };
        let peaks = Some(Peaks { fp32_flops: 1e12, bytes_per_second: 1e11 });
        let mut parts = Vec::new();
        let v = measure(&Cpu::<f32>::new(), &WallClock, &plan, peaks, &mut |part| parts.push(part.clone()));
        assert!(!any_failed(&v), "{v}");
        // One part after each of the 4 figures, each holding one more; the last is the whole.
        let counts: Vec<usize> =
            parts.iter().map(|p| ["train", "covariance", "eigvalsh"].iter().map(|k| p[k].as_array().unwrap().len()).sum()).collect();
        assert_eq!((counts, parts.last()), (vec![1, 2, 3, 4], Some(&v)));
        let t = &v["train"][0];
        assert!(t["images_per_second"].as_f64().unwrap() > 0.0 && t["images_per_second_analysed"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["peak_bytes"].is_null() && t["peak_bytes_analysed"].is_null(), "the CPU has no device memory: {t}");
        assert_eq!(v["covariance"][1]["k"], 27);
        assert!(v["covariance"][0]["fraction_of_bound"].as_f64().unwrap() > 0.0);
        assert!(v["eigvalsh"][0]["seconds"].as_f64().unwrap() > 0.0);
        // A depth the family rejects is one recorded error, not an abort.
        let bad = measure(
            &Cpu::<f32>::new(),
            &WallClock,
            &Plan { depths: vec![7], eig_sizes: vec![], covariance: vec![], ..plan },
            None,
            &mut |_| {},
        );
        assert!(any_failed(&bad) && bad["train"][0]["error"].as_str().unwrap().contains("depth"), "{bad}");
    }
}
