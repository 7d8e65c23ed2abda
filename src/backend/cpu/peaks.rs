//! This machine's peaks, measured rather than looked up (a CPU reports no
//! FLOP/s or bandwidth of its own): a large GEMM through the backend's own
//! `gemm` on every core, and a streaming triad over arrays far larger than
//! any cache. They are what a kernel here can reach, not the datasheet's.

use super::gemm::gemm;
use super::parallel::CHUNK;
use crate::backend::{Gemm, Peaks};
use crate::error::Result;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::time::Instant;

/// The probes' sizes: the GEMM's side and the triad's array length.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub gemm_side: usize,
    pub stream_len: usize,
}

impl Probe {
    /// 2048² (17 GFLOP per f32 product) and 3 × 64 MiB arrays of f32.
    pub const FULL: Probe = Probe { gemm_side: 2048, stream_len: 1 << 24 };
}

/// The best of `repeats` timings after one warm-up: the peak is what the
/// machine can do, so the least disturbed run is the estimate.
fn best_seconds(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// FLOP/s of an n×n×n product in `T`.
fn gemm_flops<T: Scalar>(n: usize) -> Result<f64> {
    let (a, b) = (vec![T::from_f64(0.5); n * n], vec![T::from_f64(0.25); n * n]);
    let mut c = vec![T::ZERO; n * n];
    let g = Gemm::new(n, n, n, false, false);
    Ok(2.0 * (n * n * n) as f64 / best_seconds(3, || gemm(&a, &b, &mut c, g))?)
}

/// Bytes per second of `a = b + s·c` in f32: 12 bytes moved per element.
fn triad_bandwidth(len: usize) -> Result<f64> {
    let (b, c) = (vec![1.0f32; len], vec![2.0f32; len]);
    let mut a = vec![0.0f32; len];
    let seconds = best_seconds(5, || {
        a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).zip(c.par_chunks(CHUNK)).for_each(|((a, b), c)| {
            a.iter_mut().zip(b).zip(c).for_each(|((a, &b), &c)| *a = b + 0.5 * c);
        });
        Ok(())
    })?;
    Ok(12.0 * len as f64 / seconds)
}

/// The f32 peaks: the GEMM bounds the Grams and the eigen-solves of f32
/// matrices (reduced in f32), the triad the memory-bound kernels.
pub fn measure(probe: Probe) -> Result<Peaks> {
    Ok(Peaks { fp32_flops: gemm_flops::<f32>(probe.gemm_side)?, bytes_per_second: triad_bandwidth(probe.stream_len)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_probes_give_positive_finite_rates() {
        let p = measure(Probe { gemm_side: 64, stream_len: 1 << 16 }).unwrap();
        for rate in [p.fp32_flops, p.bytes_per_second] {
            assert!(rate.is_finite() && rate > 0.0, "{p:?}");
        }
    }
}
