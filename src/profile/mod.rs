//! `kappa profile`: kernels timed with counted flops and bytes, each rated
//! against the bound that applies to it: on the CPU, peaks the command
//! measures itself (a large GEMM, a streaming triad); on CUDA, the device's
//! own figures.

mod conv;
mod covariance;

pub use conv::conv;
pub use covariance::{counts, covariance, Shape};

use crate::backend::cpu::peaks::Probe;
use crate::backend::{Device, Peaks};
#[cfg(not(feature = "cuda-backend"))]
use crate::error::Error;
use crate::error::Result;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the kernels are rated against: the f32 peaks and, where known, the
/// FLOP/s that bounds the eigen-solve, with the precision it runs in.
struct Bounds {
    peaks: Peaks,
    eig_peak: Option<(f64, &'static str)>,
    source: String,
}

fn bounds(device: Device, probe: Probe) -> Result<Option<Bounds>> {
    match device {
        Device::Cpu => {
            let peaks = crate::backend::cpu::peaks::measure(probe)?;
            let source = format!("measured here: {0}² GEMM and a streaming triad over 3×{1} f32", probe.gemm_side, probe.stream_len);
            // The CPU reduces an f32 matrix in f32 (backend/cpu/eigen.rs): its
            // O(n³) part runs against the f32 peak; the f64 QL after it is O(n²).
            Ok(Some(Bounds { peaks, eig_peak: Some((peaks.fp32_flops, "f32")), source }))
        }
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => Ok(crate::backend::cuda::Cuda::new(i)?.peaks().map(|peaks| Bounds {
            peaks,
            // cuSOLVER solves in f64, whose peak the device does not report.
            eig_peak: None,
            source: "the device's attributes: FMA lanes × clock, memory clock × bus".into(),
        })),
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => Err(Error::CudaNotCompiled(i)),
    }
}

/// "NN% of the compute bound (X GFLOP/s)" or "... of the bandwidth bound (Y GB/s)".
fn of_bound(p: &Peaks, flops: f64, bytes: f64, seconds: f64) -> String {
    let fraction = p.bound_seconds(flops, bytes) / seconds;
    match p.compute_bound(flops, bytes) {
        true => format!("{:5.1}% of the compute bound ({:.1} GFLOP/s)", 100.0 * fraction, p.fp32_flops / 1e9),
        false => format!("{:5.1}% of the bandwidth bound ({:.1} GB/s)", 100.0 * fraction, p.bytes_per_second / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_name_the_bound_that_applies() {
        let p = Peaks { fp32_flops: 1e12, bytes_per_second: 1e11 };
        // 1e12 flops in 4 s against a 1 s compute bound: 25%.
        assert_eq!(of_bound(&p, 1e12, 1e10, 4.0), " 25.0% of the compute bound (1000.0 GFLOP/s)");
        // 1e10 bytes in 0.2 s against a 0.1 s bandwidth bound: 50%.
        assert_eq!(of_bound(&p, 1e9, 1e10, 0.2), " 50.0% of the bandwidth bound (100.0 GB/s)");
    }
}
