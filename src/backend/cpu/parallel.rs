//! Deterministic data parallelism: work is cut into fixed-size chunks, so the
//! order of every floating-point sum is independent of thread scheduling and a
//! seeded run repeats bit for bit.

use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Elements per parallel task; below this a loop runs on the calling thread.
pub const CHUNK: usize = 1 << 14;

/// A vector of `len` elements whose chunk `r` is produced by the iterator
/// `f(r)`, written straight into fresh memory (no zero-fill first).
pub fn build<T: Send, I: Iterator<Item = T>>(len: usize, chunk: usize, f: impl Fn(Range<usize>) -> I + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    let fill = |(i, dst): (usize, &mut [MaybeUninit<T>])| {
        let (start, n) = (i * chunk, dst.len());
        let mut written = 0;
        for (d, v) in dst.iter_mut().zip(f(start..start + n)) {
            d.write(v);
            written += 1;
        }
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
        f(0, data);
    } else {
        data.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| f(i * CHUNK, c));
    }
}

/// Σ f(range) over fixed chunks of `0..len`, partial sums added in order.
pub fn sum_chunks(len: usize, f: impl Fn(Range<usize>) -> f64 + Sync) -> f64 {
    if len <= CHUNK {
        return f(0..len);
    }
    let parts: Vec<f64> = (0..len.div_ceil(CHUNK)).into_par_iter().map(|i| f(i * CHUNK..((i + 1) * CHUNK).min(len))).collect();
    parts.iter().sum()
}
