//! `kappa profile covariance`: times the Σx Gram accumulation and its
//! eigendecomposition for one activation shape, with counted flops and
//! bytes and the achieved rates. N,C,1,1 is a dense layer's N×C input; any
//! larger H×W is a 3×3, stride-1, pad-1 conv layer's input, whose patch
//! matrix has N·H·W rows and 9C columns (the backends'
//! `gram_lower_patches`, given the NCHW activation).

use super::{bounds, median, of_bound};
use crate::backend::cpu::patch_gram::position_pairs;
use crate::backend::cpu::peaks::Probe;
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device, Window};
use crate::clock::{Clock, WallClock};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scalar::Scalar;
use std::str::FromStr;

/// An activation shape N×C×H×W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl FromStr for Shape {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let v: Vec<usize> = s.split(',').map(|p| p.trim().parse().ok().filter(|&d| d > 0)).collect::<Option<_>>().unwrap_or_default();
        match v[..] {
            [n, c, h, w] => {
                let shape = Shape { n, c, h, w };
                crate::size::elements("the activation", &[n, c, h, w], "--shape")?;
                let k = shape.matrix().1;
                crate::size::elements("Σx", &[k, k], "--shape")?;
                Ok(shape)
            }
            _ => Err(Error::arg("--shape", format!("'{s}' is not N,C,H,W with four positive whole numbers, e.g. 1024,256,1,1"))),
        }
    }
}

/// The conv window of a spatial shape.
pub const KERNEL: usize = 3;

impl Shape {
    pub fn is_dense(&self) -> bool {
        self.h == 1 && self.w == 1
    }
    /// The conv window whose patches a spatial shape's Σx is over.
    pub fn window(&self) -> Window {
        Window { n: self.n, c: self.c, h: self.h, w: self.w, kh: KERNEL, kw: KERNEL, stride: 1, pad: 1 }
    }

    /// Rows and columns of the matrix whose Gram is Σx.
    pub fn matrix(&self) -> (usize, usize) {
        if self.is_dense() {
            (self.n, self.c)
        } else {
            (self.n * self.h * self.w, self.c * KERNEL * KERNEL)
        }
    }
}

/// What one Gram update and one eigendecomposition cost, counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    /// 2 flops per multiply-add of the method the device uses: over the lower
    /// triangle, rows·K(K+1), for a dense input; the CPU forms each tap
    /// offset's channel products once (backend/cpu/patch_gram.rs), 2·N·C²
    /// per position pair; CUDA's GEMM over the unfolded patches takes both
    /// triangles, 2·rows·K².
    pub gram_flops: f64,
    /// Minimum traffic: the activation read once, the K×K accumulator read and written.
    pub gram_bytes: f64,
    /// Householder tridiagonalisation dominates a values-only solve: 4K³/3.
    pub eig_flops: f64,
}

pub fn counts(s: Shape, device: Device) -> Counts {
    let (rows, k) = s.matrix();
    let (rows, k) = (rows as f64, k as f64);
    let gram_flops = match (s.is_dense(), device) {
        (true, _) => rows * k * (k + 1.0),
        (false, Device::Cpu) => 2.0 * (s.n * s.c * s.c * position_pairs(&s.window())) as f64,
        (false, _) => 2.0 * rows * k * k,
    };
    Counts { gram_flops, gram_bytes: 4.0 * (s.n * s.c * s.h * s.w) as f64 + 8.0 * k * k, eig_flops: 4.0 * k * k * k / 3.0 }
}

/// Seconds per Gram update and per eigendecomposition (medians).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub gram_seconds: f64,
    pub eig_seconds: f64,
}

pub(super) fn activation<B: Backend>(backend: &B, s: Shape) -> Result<B::Buf> {
    let mut r = Rng::new(0, 0);
    backend.upload(&(0..s.n * s.c * s.h * s.w).map(|_| B::Elem::from_f64(r.normal())).collect::<Vec<_>>())
}

/// One Gram update (`gram_lower`, or `gram_lower_patches` for a spatial
/// shape) and one `eigvalsh`, each timed by the backend's own clock, after
/// an untimed round that loads and warms whatever runs them.
fn time<B: Backend>(backend: &B, clock: &dyn Clock, s: Shape, repeats: usize) -> Result<Timing> {
    let x = activation(backend, s)?;
    let (rows, k) = s.matrix();
    let mut acc = backend.zeros(k * k)?;
    let mut gram_once = || match s.is_dense() {
        true => backend.gram_lower(&mut acc, &x, rows, k, 1.0 / rows as f64),
        false => backend.gram_lower_patches(&mut acc, &x, s.window(), 1.0 / rows as f64),
    };
    gram_once()?;
    let (mut gram, mut eig) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        gram.push(clock.seconds(&mut gram_once)?);
    }
    backend.eigvalsh(&[(&acc, k)])?;
    for _ in 0..repeats.max(1) {
        eig.push(clock.seconds(&mut || backend.eigvalsh(&[(&acc, k)]).map(drop))?);
    }
    Ok(Timing { gram_seconds: median(gram), eig_seconds: median(eig) })
}

/// `kappa profile covariance`: prints counts, times and rates, and each
/// kernel's fraction of the bound that applies to it.
pub fn covariance(shape: &str, device: &str, repeats: usize) -> Result<()> {
    covariance_against(shape, device, repeats, Probe::FULL)
}

fn covariance_against(shape: &str, device: &str, repeats: usize, probe: Probe) -> Result<()> {
    let s: Shape = shape.parse()?;
    let device: Device = device.parse()?;
    let (rows, k) = s.matrix();
    let c = counts(s, device);
    let timing = match device {
        Device::Cpu => time(&Cpu::<f32>::new(), &WallClock, s, repeats)?,
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => {
            let dev = crate::backend::cuda::Cuda::new(i)?;
            time(&dev, &dev, s, repeats)?
        }
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => return Err(Error::CudaNotCompiled(i)),
    };
    let bounds = bounds(device, probe)?;
    let what = if s.is_dense() { "dense input".to_string() } else { format!("{KERNEL}×{KERNEL} conv patches") };
    println!("covariance on {device}: {}×{}×{}×{} activation, {what}: Σx of a {rows}×{k} matrix", s.n, s.c, s.h, s.w);
    match &bounds {
        Some(b) => {
            println!("  peaks: {:.1} GFLOP/s f32, {:.1} GB/s ({})", b.peaks.fp32_flops / 1e9, b.peaks.bytes_per_second / 1e9, b.source)
        }
        None => println!("  peaks: unknown (the device does not report them), so no fraction of the bound"),
    }
    let eig_bytes = 4.0 * (k * k) as f64;
    println!(
        "  gram_lower  {:>10.3} ms  {:>12.3e} flop  {:>12.3e} B  {:>8.2} GFLOP/s  {:>8.2} GB/s  {}",
        timing.gram_seconds * 1e3,
        c.gram_flops,
        c.gram_bytes,
        c.gram_flops / timing.gram_seconds / 1e9,
        c.gram_bytes / timing.gram_seconds / 1e9,
        bounds.as_ref().map(|b| of_bound(&b.peaks, c.gram_flops, c.gram_bytes, timing.gram_seconds)).unwrap_or_default()
    );
    let eig_fraction = bounds.as_ref().and_then(|b| b.eig_peak).map(|(f, precision)| {
        format!("{:5.1}% of the {precision} compute bound ({:.1} GFLOP/s)", 100.0 * c.eig_flops / f / timing.eig_seconds, f / 1e9)
    });
    println!(
        "  eigvalsh    {:>10.3} ms  {:>12.3e} flop  {:>12.3e} B  {:>8.2} GFLOP/s                {}",
        timing.eig_seconds * 1e3,
        c.eig_flops,
        eig_bytes,
        c.eig_flops / timing.eig_seconds / 1e9,
        eig_fraction.unwrap_or_else(|| "the solve's (f64) peak is not among the device's figures".into())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_pick_their_matrix() {
        let s: Shape = "1024,256,1,1".parse().unwrap();
        assert_eq!(s.matrix(), (1024, 256));
        assert_eq!("128,64,8,8".parse::<Shape>().unwrap().matrix(), (8192, 576));
        for bad in ["1,2,3", "a,b,c,d", "0,1,1,1", ""] {
            assert!(bad.parse::<Shape>().unwrap_err().to_string().contains("--shape"), "{bad}");
        }
    }

    #[test]
    fn counts_follow_each_device_method() {
        for device in [Device::Cpu, Device::Cuda(0)] {
            let c = counts(Shape { n: 10, c: 4, h: 1, w: 1 }, device);
            assert_eq!(c.gram_flops, 10.0 * 4.0 * 5.0, "the lower triangle on {device:?}");
            assert_eq!(c.gram_bytes, 160.0 + 128.0);
        }
        // 3×3 patches of 8×8 planes: the CPU's 13 offsets cover 64 + 56 + 48
        // pairs at dy = 0 and 7·34 + 6·34 at dy = −1, −2; CUDA's GEMM takes
        // all of the unfolded 8192×576's products.
        let s = Shape { n: 128, c: 64, h: 8, w: 8 };
        assert_eq!(counts(s, Device::Cpu).gram_flops, 2.0 * 128.0 * 64.0 * 64.0 * 610.0);
        assert_eq!(counts(s, Device::Cuda(0)).gram_flops, 2.0 * 8192.0 * 576.0 * 576.0);
    }

    #[test]
    fn the_cpu_path_times_a_small_shape() {
        let t = time(&Cpu::<f32>::new(), &WallClock, Shape { n: 4, c: 3, h: 4, w: 4 }, 2).unwrap();
        assert!(t.gram_seconds > 0.0 && t.eig_seconds > 0.0);
        covariance_against("16,8,1,1", "cpu", 1, Probe { gemm_side: 32, stream_len: 1 << 12 }).unwrap();
    }
}
