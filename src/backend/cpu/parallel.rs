//! Deterministic data parallelism: work is cut into fixed-size chunks, so the
//! order of every floating-point sum is independent of thread scheduling and a
//! seeded run repeats bit for bit.

use super::lanes::wide;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A raw pointer that parallel tasks share, each writing a region of its own.
pub struct SharedPtr<T>(pub *mut T);
unsafe impl<T> Sync for SharedPtr<T> {}

/// Elements per parallel task; below this a loop runs on the calling thread.
pub const CHUNK: usize = 1 << 14;

/// A vector of `len` elements whose chunk `r` is produced by the iterator
/// `f(r)`, written straight into fresh memory (no zero-fill first).
pub fn build<T: Send, I: Iterator<Item = T>>(len: usize, chunk: usize, f: impl Fn(Range<usize>) -> I + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    let fill = |(i, dst): (usize, &mut [MaybeUninit<T>])| {
        let (start, n) = (i * chunk, dst.len());
        let written = wide!({
            let mut written = 0;
            for (d, v) in dst.iter_mut().zip(f(start..start + n)) {
                d.write(v);
                written += 1;
            }
            written
        });
        assert_eq!(written, n, "chunk producer yielded too few elements");
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len <= chunk {
        fill((0, spare));
    } else {
        spare.par_chunks_mut(chunk).enumerate().for_each(fill);
    }
    // SAFETY: every chunk asserted that all of its elements were written.
    unsafe { out.set_len(len) };
    out
}

/// `out[i] = f(a[i])`.
pub fn map<T: Copy + Sync, U: Send>(a: &[T], f: impl Fn(T) -> U + Sync) -> Vec<U> {
    build(a.len(), CHUNK, |r| a[r].iter().map(|&x| f(x)))
}

/// `out[i] = f(a[i], b[i])`; the caller checks the lengths match.
pub fn zip<T: Copy + Send + Sync>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    build(a.len(), CHUNK, |r| a[r.clone()].iter().zip(&b[r]).map(|(&x, &y)| f(x, y)))
}

/// Runs `f(start, chunk)` over fixed chunks of `data`, in parallel when large.
pub fn for_each_chunk<T: Send>(data: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if data.len() <= CHUNK {
        wide!(f(0, data));
    } else {
        data.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| wide!(f(i * CHUNK, c)));
    }
}

/// `[f(0), …, f(count − 1)]` for tasks the caller lists longest first,
/// each thread taking the next task as it comes free (greedy longest-first
/// scheduling). A task's result must not depend on which thread runs it.
/// Why not `par_iter`: rayon halves the list and a thief takes the later
/// half, so the short tasks of a longest-first list run together on one
/// thread while the long ones queue on the other.
pub fn longest_first<R: Send>(count: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let workers = rayon::current_num_threads().min(count);
    let done: Vec<Vec<(usize, R)>> = (0..workers)
        .into_par_iter()
        .with_max_len(1)
        .map(|_| std::iter::from_fn(|| Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&t| t < count).map(|t| (t, f(t)))).collect())
        .collect();
    let mut results: Vec<(usize, R)> = done.into_iter().flatten().collect();
    results.sort_by_key(|&(t, _)| t);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Σ f(range) over fixed chunks of `0..len`, partial sums added in order.
pub fn sum_chunks(len: usize, f: impl Fn(Range<usize>) -> f64 + Sync) -> f64 {
    if len <= CHUNK {
        return f(0..len);
    }
    let parts: Vec<f64> = (0..len.div_ceil(CHUNK)).into_par_iter().map(|i| f(i * CHUNK..((i + 1) * CHUNK).min(len))).collect();
    parts.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `map`, `zip` and `for_each_chunk` run their closures in parallel
    /// chunks, in the AVX2 twin: the bits of a plain loop on this thread.
    #[test]
    fn wide_element_wise_passes_are_plain_loops() {
        let len = 2 * CHUNK + 7;
        let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
        let f = |x: f32, y: f32| x * 0.1 + y;
        let plain: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
        assert!(zip(&a, &b, f) == plain);
        assert!(map(&a, |x| f(x, 0.3)) == a.iter().map(|&x| f(x, 0.3)).collect::<Vec<_>>());
        let mut c = b.clone();
        for_each_chunk(&mut c, |start, c| c.iter_mut().enumerate().for_each(|(i, c)| *c = f(a[start + i], *c)));
        assert!(c == plain);
    }

    #[test]
    fn longest_first_runs_every_task_once_and_returns_them_in_order() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for count in [0, 1, 2, 7] {
                let calls = AtomicUsize::new(0);
                let got = pool.install(|| {
                    longest_first(count, |t| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        t * t
                    })
                });
                assert_eq!(got, (0..count).map(|t| t * t).collect::<Vec<_>>(), "{count} tasks on {threads} threads");
                assert_eq!(calls.load(Ordering::Relaxed), count, "{count} tasks on {threads} threads");
            }
        }
    }
}
