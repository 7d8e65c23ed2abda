//! `acc += alpha·XᵀX` on the lower triangle for an X whose rows are
//! contiguous, by a register-blocked micro-kernel: the Gram behind every
//! dense Σx and Σ∇h.
//!
//! Why not the `gemm` crate, which ran it before: a product fills a whole
//! rectangle, so the triangle went as one product per 64-column block, its
//! diagonal block computed whole (at d = 256 a fifth of the flops above the
//! diagonal), and every product packed its operands again. Here a tile (two
//! vectors of rows by [`NR`] columns) is computed only where it touches the
//! lower triangle. A band's rows (the tiles' vector operand, used by every
//! tile of the band) are copied side by side once per [`KC`]-row chunk; the
//! columns (each used once per band) are read from the rows of X in place,
//! where a tile's columns lie side by side. Only a last, partial column
//! panel is copied (zero-padded).
//!
//! Alternated call by call with the crate's path in one binary on the
//! 2-core host (2026-12-04, best of 300 calls at 256 columns and of 60 at
//! 784, two runs): f32 1024×256 0.512–0.598 against 0.590–0.752 ms,
//! 1024×784 4.66–5.39 against 4.99–5.60 ms; f64 1024×256 1.29–1.30 against
//! 1.47–1.51 ms, 1024×784 10.4–11.7 against 10.2–12.0 ms. Reading the
//! band's rows in place too, as the kernel first did, was 15–20% slower
//! than copying them in both precisions (f64 1024×784 13.5–14.3 ms, behind
//! the crate).

//! Each output element is one micro-kernel pass over all n rows in order (the
//! accumulators carried across [`KC`]-row chunks), then `alpha·sum` is added
//! to `acc`, on whichever thread: the result depends on the shape alone,
//! never on the thread count.

use super::lanes::{Element, Lanes, Path};
use super::microkernel::{self, Tile, NR};
use super::parallel::SharedPtr;
use crate::backend::GramJob;
use crate::scalar::Scalar;
use std::any::TypeId;
use std::ops::Range;

/// Rows of X per pass over a band's tiles (a band's rows of 256 rows of X
/// are 16 KiB of f32).
const KC: usize = 256;

/// Runs every job, `acc[i·d + j] += alpha·Σ_p X(p, i)·X(p, j)` for `j ≤ i`
/// (X `n × d`, row-major), summed in `T` (f32 or f64, the only scalars),
/// the jobs' tasks ([`tasks`]) spread over the cores together. The caller
/// checks that each `acc` holds `d²` elements and each `x` `n·d`.
pub fn gram_lower_many<T: Scalar>(jobs: &mut [GramJob<'_, [T]>]) {
    match TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32, so the jobs are GramJobs of f32.
        true => many_f32(unsafe { &mut *(jobs as *mut [GramJob<'_, [T]>] as *mut [GramJob<'_, [f32]>]) }),
        false => {
            assert_eq!(TypeId::of::<T>(), TypeId::of::<f64>(), "f32 and f64 are the only scalars");
            // SAFETY: T is f64, so the jobs are GramJobs of f64.
            many_f64(unsafe { &mut *(jobs as *mut [GramJob<'_, [T]>] as *mut [GramJob<'_, [f64]>]) })
        }
    }
}

// Not generic, so the library compiles each once and every caller runs that
// machine code (lanes.rs, "One compiled copy").
fn many_f32(jobs: &mut [GramJob<'_, [f32]>]) {
    many(jobs)
}

fn many_f64(jobs: &mut [GramJob<'_, [f64]>]) {
    many(jobs)
}

fn many<E: Element>(jobs: &mut [GramJob<'_, [E]>]) {
    let cols: Vec<Columns<E>> = jobs.iter().map(|j| Columns::new(X { x: j.x, n: j.rows, d: j.cols })).collect();
    let dst: Vec<(SharedPtr<E>, E)> = jobs.iter_mut().map(|j| (SharedPtr(j.acc.as_mut_ptr()), E::from_f64(j.alpha))).collect();
    let path = Path::widest();
    let tasks = tasks(&cols, width::<E>(path), rayon::current_num_threads());
    super::parallel::longest_first(tasks.len(), |t| {
        let (j, bands_of_j) = tasks[t].clone();
        // SAFETY: job j's `acc` holds d² elements, these bands' rows are this
        // task's alone, and `path` is one the CPU has.
        unsafe { bands::<E>(path, dst[j].0 .0, bands_of_j, &cols[j], dst[j].1) }
    });
}

/// The tasks of the jobs as `(job, bands)`, the largest job first. A job
/// with more than a core's share of the work is cut into its bands, the
/// last (longest: a tile per column panel up to its diagonal) first; the
/// others run whole, on one thread each, where a chunk of X goes through
/// all the bands while it is in cache.
///
/// Measured on the analysis step's 40 Grams (f32, 1024 rows: one of 784
/// columns, 38 of 256, one of 10) on the 2-core host, the two ways
/// alternated in one process, best of 80, five runs: 24.3–24.9 ms as one
/// batch against 25.8–26.1 ms one Gram after another, each cut into bands.
/// Every band a task, the jobs' bands interleaved by length, was 40%
/// slower: each band read its X from memory again.
fn tasks<E: Element>(cols: &[Columns<E>], width: usize, threads: usize) -> Vec<(usize, Range<usize>)> {
    let cost = |c: &Columns<E>| c.x.n * c.x.d * c.x.d;
    let total: usize = cols.iter().map(cost).sum();
    let mut order: Vec<usize> = (0..cols.len()).filter(|&j| cost(&cols[j]) > 0).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(cost(&cols[j])));
    let band_count = |c: &Columns<E>| c.x.d.div_ceil(2 * width);
    order
        .into_iter()
        .flat_map(|j| match cost(&cols[j]) * threads > total {
            true => (0..band_count(&cols[j])).rev().map(|b| (j, b..b + 1)).collect(),
            false => vec![(j, 0..band_count(&cols[j]))],
        })
        .collect()
}

/// X, `n × d`, row-major.
#[derive(Clone, Copy)]
struct X<'a, E> {
    x: &'a [E],
    n: usize,
    d: usize,
}

/// X's columns in panels [`NR`] wide, read in place but for a last,
/// partial panel, read from a zero-padded copy.
struct Columns<'a, E> {
    x: X<'a, E>,
    /// The last panel, rows of [`NR`], when it is partial.
    partial: Vec<E>,
}

impl<'a, E: Element> Columns<'a, E> {
    fn new(x: X<'a, E>) -> Self {
        let (c0, len) = (x.d / NR * NR, x.d % NR);
        let mut partial = vec![E::ZERO; if len > 0 { x.n * NR } else { 0 }];
        for (p, row) in partial.chunks_exact_mut(NR).enumerate() {
            row[..len].copy_from_slice(&x.x[p * x.d + c0..][..len]);
        }
        Columns { x, partial }
    }

    /// Panel `q` from row `k0` on: its first element and the stride between rows.
    fn at(&self, q: usize, k0: usize) -> (*const E, usize) {
        match q < self.x.d / NR {
            true => (self.x.x[k0 * self.x.d + q * NR..].as_ptr(), self.x.d),
            false => (self.partial[k0 * NR..].as_ptr(), NR),
        }
    }
}

/// The tiles of bands `bands`, each from column 0 to its diagonal, on `path`'s lanes.
///
/// # Safety
/// `acc` must point to `d²` elements whose band rows no other thread
/// touches, and the CPU must have `path`'s lanes.
unsafe fn bands<E: Element>(path: Path, acc: *mut E, bands: Range<usize>, cols: &Columns<E>, alpha: E) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => bands_avx512::<E>(acc, bands, cols, alpha),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => bands_avx2::<E>(acc, bands, cols, alpha),
        _ => bands_in::<E, E::Portable>(acc, bands, cols, alpha),
    }
}

/// Lanes of `E` in one vector of `path`. A Gram runs on the widest the CPU
/// has ([`Path::widest`]). A lane holds one output element's sum, so the
/// width sets only how many rows a band spans, never a sum's order, and
/// every path gives the same bits.
///
/// AVX-512 against AVX2, alternated call by call in one binary on the
/// 2-core Zen 4 host (2026-12-06, best of 300 calls at 256 columns and
/// of 60 at 784, two runs): f64 1024×256 0.729–0.732 against
/// 0.863–0.864 ms, 1024×784 6.23–6.72 against 6.95–7.42 ms; f32 as
/// fast either way (1024×784 3.39 ms, some 92% of the measured peak).
fn width<E: Element>(path: Path) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => <E::Avx2 as Lanes<E>>::WIDTH,
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => <E::Avx512 as Lanes<E>>::WIDTH,
        _ => <E::Portable as Lanes<E>>::WIDTH,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bands_avx2<E: Element>(acc: *mut E, bands: Range<usize>, cols: &Columns<E>, alpha: E) {
    bands_in::<E, E::Avx2>(acc, bands, cols, alpha)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bands_avx512<E: Element>(acc: *mut E, bands: Range<usize>, cols: &Columns<E>, alpha: E) {
    bands_in::<E, E::Avx512>(acc, bands, cols, alpha)
}

/// Band b's rows are `b·2w..` for `w` lanes; its tile `q` has columns
/// `q·NR..`. Each [`KC`]-row chunk of X goes through all the bands before
/// the next, so it is read from memory once and from cache by the others.
#[inline(always)]
unsafe fn bands_in<E: Element, S: Lanes<E>>(acc: *mut E, bands: Range<usize>, cols: &Columns<E>, alpha: E) {
    let (w, X { x, n, d }) = (S::WIDTH, cols.x);
    let span = |b: usize| b * 2 * w..((b + 1) * 2 * w).min(d);
    let mut tiles: Vec<Vec<Tile<S>>> = bands.clone().map(|b| vec![[[S::zero(); 2]; NR]; span(b).end.div_ceil(NR)]).collect();
    // Zero-padded past a last, partial band's columns.
    let mut rows = vec![E::ZERO; KC * 2 * w];
    for k0 in (0..n).step_by(KC) {
        let k = KC.min(n - k0);
        for (b, tiles) in bands.clone().zip(&mut tiles) {
            let i = span(b);
            // The band's rows of this chunk, copied side by side: read in place,
            // at a row stride of 1 KiB (f32, d = 256) they fell into 4 of L1's 64
            // sets and came from L2 again for every tile.
            for (p, row) in rows.chunks_exact_mut(2 * w).take(k).enumerate() {
                row[..i.len()].copy_from_slice(&x[(k0 + p) * d + i.start..][..i.len()]);
            }
            for (q, t) in tiles.iter_mut().enumerate() {
                microkernel::accumulate::<E, S>(t, (rows.as_ptr(), 2 * w), cols.at(q, k0), k);
            }
        }
    }
    let mut sums = vec![E::ZERO; 2 * w];
    for (b, tiles) in bands.zip(&tiles) {
        let i = span(b);
        for (q, t) in tiles.iter().enumerate() {
            for (c, [lo, hi]) in t.iter().enumerate() {
                let j = q * NR + c;
                if j >= i.end {
                    break;
                }
                lo.store(&mut sums[..w]);
                hi.store(&mut sums[w..2 * w]);
                for (i, &s) in i.clone().zip(&sums).filter(|&(i, _)| j <= i) {
                    *acc.add(i * d + j) += alpha * s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Every band of `x`'s Gram on `path`'s lanes, onto a non-zero accumulator.
    fn all_bands<E: Element>(x: &[E], (n, d): (usize, usize), path: Path) -> Vec<u64> {
        let cols = Columns::new(X { x, n, d });
        let mut acc = vec![E::from_f64(0.25); d * d];
        for b in 0..d.div_ceil(2 * width::<E>(path)) {
            // SAFETY: `acc` holds d² elements; the CPU has the path's lanes; one band at a time.
            unsafe { bands(path, acc.as_mut_ptr(), b..b + 1, &cols, E::from_f64(0.3)) };
        }
        acc.iter().map(|v| v.to_f64().to_bits()).collect()
    }

    /// A batch gives each job the bits it gets alone, whole or cut into
    /// bands, on any number of threads.
    #[test]
    fn a_batch_gives_each_job_its_own_bits() {
        let mut r = Rng::new(22, 0);
        let shapes = [(517, 64), (300, 37), (0, 5), (40, 1), (129, 100), (7, 0)];
        let xs: Vec<Vec<f32>> = shapes.iter().map(|&(n, d)| (0..n * d).map(|_| r.normal() as f32).collect()).collect();
        let run = |threads: usize, batch: &[usize]| -> Vec<Vec<u32>> {
            let mut accs: Vec<Vec<f32>> = batch.iter().map(|&j| vec![0.25; shapes[j].1 * shapes[j].1]).collect();
            let mut jobs: Vec<GramJob<[f32]>> = batch
                .iter()
                .zip(&mut accs)
                .map(|(&j, acc)| GramJob { acc: &mut acc[..], x: &xs[j][..], rows: shapes[j].0, cols: shapes[j].1, alpha: 0.3 })
                .collect();
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| gram_lower_many(&mut jobs));
            accs.iter().map(|a| a.iter().map(|v| v.to_bits()).collect()).collect()
        };
        let all: Vec<usize> = (0..shapes.len()).collect();
        let alone: Vec<Vec<u32>> = all.iter().map(|&j| run(1, &[j]).remove(0)).collect();
        for threads in [1, 2, 3] {
            assert_eq!(run(threads, &all), alone, "{threads} threads");
            assert_eq!(run(threads, &[0]), alone[..1], "job 0 alone on {threads} threads");
        }
        // Each job's update lands only on its own lower triangle.
        let (n, d) = shapes[4];
        for i in 0..d {
            for j in 0..d {
                let got = f32::from_bits(alone[4][i * d + j]) as f64;
                let want =
                    0.25 + if j <= i { 0.3 * (0..n).map(|p| xs[4][p * d + i] as f64 * xs[4][p * d + j] as f64).sum::<f64>() } else { 0.0 };
                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "({i}, {j}): {got} against {want}");
            }
        }
    }

    /// Every copy of the kernel the CPU runs gives the portable copy's
    /// bits: each lane is one output element's fused multiply-adds, in the
    /// order of the rows, whatever the width.
    #[test]
    fn every_copy_of_the_kernel_rounds_alike() {
        let mut r = Rng::new(21, 0);
        for (n, d) in [(1, 1), (300, 37), (517, 64), (40, 100)] {
            let x: Vec<f64> = (0..n * d).map(|_| r.normal()).collect();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let (want, want32) = (all_bands(&x, (n, d), Path::Portable), all_bands(&x32, (n, d), Path::Portable));
            for path in Path::all() {
                assert_eq!(all_bands(&x, (n, d), path), want, "f64 {n}×{d} on {path:?}");
                assert_eq!(all_bands(&x32, (n, d), path), want32, "f32 {n}×{d} on {path:?}");
            }
        }
    }
}
