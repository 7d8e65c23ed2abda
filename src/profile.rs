//! `kappa profile covariance`: times the Σx Gram accumulation and its
//! eigendecomposition for one activation shape, with counted flops and
//! bytes and the achieved rates. N,C,1,1 is a dense layer's N×C input; any
//! larger H×W is a 3×3, stride-1, pad-1 conv layer's input, whose patch
//! matrix has N·H·W rows and 9C columns, read straight from NCHW (the
//! backends' `gram_lower_patches`).

use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device, Window};
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::str::FromStr;
use std::time::Instant;

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
            [n, c, h, w] => Ok(Shape { n, c, h, w }),
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
    /// 2 flops per multiply-add over the lower triangle: rows·K(K+1).
    pub gram_flops: f64,
    /// Minimum traffic: the activation read once, the K×K accumulator read and written.
    pub gram_bytes: f64,
    /// Householder tridiagonalisation dominates a values-only solve: 4K³/3.
    pub eig_flops: f64,
}

pub fn counts(s: Shape) -> Counts {
    let (rows, k) = s.matrix();
    let (rows, k) = (rows as f64, k as f64);
    Counts {
        gram_flops: rows * k * (k + 1.0),
        gram_bytes: 4.0 * (s.n * s.c * s.h * s.w) as f64 + 8.0 * k * k,
        eig_flops: 4.0 * k * k * k / 3.0,
    }
}

/// Seconds per Gram update and per eigendecomposition (medians).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub gram_seconds: f64,
    pub eig_seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn activation(s: Shape) -> Vec<f32> {
    let mut r = Rng::new(0, 0);
    (0..s.n * s.c * s.h * s.w).map(|_| r.normal() as f32).collect()
}

/// The CPU path: `gram_lower` (or `gram_lower_patches`) and `eigvalsh` of the Cpu backend.
pub fn time_cpu(s: Shape, repeats: usize) -> Result<Timing> {
    let cpu = Cpu::<f32>::new();
    let x = activation(s);
    let (rows, k) = s.matrix();
    let mut acc = vec![0.0f32; k * k];
    let (mut gram, mut eig) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        match s.is_dense() {
            true => cpu.gram_lower(&mut acc, &x, rows, k, 1.0 / rows as f64)?,
            false => cpu.gram_lower_patches(&mut acc, &x, s.window(), 1.0 / rows as f64)?,
        }
        gram.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        cpu.eigvalsh(&[(&acc, k)])?;
        eig.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing { gram_seconds: median(gram), eig_seconds: median(eig) })
}

/// The CUDA path, timed with CUDA events on the backend's stream.
#[cfg(feature = "cuda-backend")]
pub fn time_cuda(ordinal: usize, s: Shape, repeats: usize) -> Result<Timing> {
    use crate::backend::cuda::Cuda;
    use cudarc::driver::sys::CUevent_flags;
    let dev = Cuda::new(ordinal)?;
    let x = dev.upload(&activation(s))?;
    let (rows, k) = s.matrix();
    let mut acc = dev.zeros(k * k)?;
    let stream = dev.stream().clone();
    let err = |e: cudarc::driver::DriverError| Error::Backend(format!("cuda:{ordinal} events: {e}"));
    let event = || stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(err);
    let window = s.window();
    let gram_once = |acc: &mut _| {
        if s.is_dense() {
            dev.gram_lower(acc, &x, rows, k, 1.0 / rows as f64)
        } else {
            dev.gram_lower_patches(acc, &x, window, 1.0 / rows as f64)
        }
    };
    gram_once(&mut acc)?; // loads the module and warms the JIT
    let (mut gram, mut eig) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let (start, end) = (event()?, event()?);
        start.record(&stream).map_err(err)?;
        gram_once(&mut acc)?;
        end.record(&stream).map_err(err)?;
        end.synchronize().map_err(err)?;
        gram.push(start.elapsed_ms(&end).map_err(err)? as f64 / 1e3);
        // eigvalsh returns to the host, so wall time is its true cost.
        let t = Instant::now();
        dev.eigvalsh(&[(&acc, k)])?;
        eig.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing { gram_seconds: median(gram), eig_seconds: median(eig) })
}

/// `kappa profile covariance`: prints counts, times and rates.
pub fn covariance(shape: &str, device: &str, repeats: usize) -> Result<()> {
    let s: Shape = shape.parse()?;
    let device: Device = device.parse()?;
    let (rows, k) = s.matrix();
    let c = counts(s);
    let timing = match device {
        Device::Cpu => time_cpu(s, repeats)?,
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => time_cuda(i, s, repeats)?,
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => return Err(Error::CudaNotCompiled(i)),
    };
    let what = if s.is_dense() { "dense input".to_string() } else { format!("{KERNEL}×{KERNEL} conv patches") };
    println!("covariance on {device}: {}×{}×{}×{} activation, {what}: Σx of a {rows}×{k} matrix", s.n, s.c, s.h, s.w);
    println!(
        "  gram_lower  {:>10.3} ms  {:>12.3e} flop  {:>12.3e} B  {:>8.2} GFLOP/s  {:>8.2} GB/s",
        timing.gram_seconds * 1e3,
        c.gram_flops,
        c.gram_bytes,
        c.gram_flops / timing.gram_seconds / 1e9,
        c.gram_bytes / timing.gram_seconds / 1e9
    );
    println!(
        "  eigvalsh    {:>10.3} ms  {:>12.3e} flop  {:>12.3e} B  {:>8.2} GFLOP/s",
        timing.eig_seconds * 1e3,
        c.eig_flops,
        4.0 * (k * k) as f64,
        c.eig_flops / timing.eig_seconds / 1e9
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
    fn counts_follow_the_lower_triangle() {
        let c = counts(Shape { n: 10, c: 4, h: 1, w: 1 });
        assert_eq!(c.gram_flops, 10.0 * 4.0 * 5.0);
        assert_eq!(c.gram_bytes, 160.0 + 128.0);
    }

    #[test]
    fn the_cpu_path_times_a_small_shape() {
        let t = time_cpu(Shape { n: 4, c: 3, h: 4, w: 4 }, 2).unwrap();
        assert!(t.gram_seconds > 0.0 && t.eig_seconds > 0.0);
        covariance("16,8,1,1", "cpu", 1).unwrap();
    }
}
