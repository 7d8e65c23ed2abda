//! CPU twin of kernels/channel.cu (launched by src/backend/cuda/channel.rs):
//! per-channel ops over an `outer × channels × inner` layout. Bias add and
//! bias gradient here, and batch norm (batch_norm.rs), are each a per-channel
//! reduction followed by a per-channel affine map, so two functions do all
//! their work; reductions accumulate in f64 over fixed blocks
//! (deterministic), maps run in `T`. Padding and narrowing copy whole channels.

use super::super::ChannelShape;
use super::parallel::CHUNK;
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Per channel, `Σ a` and `Σ a·b` (with `b = a` when `b` is `None`).
pub(super) fn channel_dots<T: Scalar>(a: &[T], b: Option<&[T]>, s: ChannelShape) -> (Vec<f64>, Vec<f64>) {
    let b = b.unwrap_or(a);
    let c = s.channels;
    if s.inner == 1 {
        // Row-major N×C: each task sums a block of rows into its own C-vectors.
        let rows_per_block = (CHUNK / c.max(1)).max(1);
        let block = |(ra, rb): (&[T], &[T])| {
            let (mut sa, mut sab) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (row_a, row_b) in ra.chunks_exact(c).zip(rb.chunks_exact(c)) {
                for (((sa, sab), &x), &y) in sa.iter_mut().zip(sab.iter_mut()).zip(row_a).zip(row_b) {
                    *sa += x.to_f64();
                    *sab += x.to_f64() * y.to_f64();
                }
            }
            (sa, sab)
        };
        let parts: Vec<_> = a.par_chunks(rows_per_block * c).zip(b.par_chunks(rows_per_block * c)).map(block).collect();
        let (mut sa, mut sab) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (pa, pab) in parts {
            sa.iter_mut().zip(pa).for_each(|(s, p)| *s += p);
            sab.iter_mut().zip(pab).for_each(|(s, p)| *s += p);
        }
        (sa, sab)
    } else {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut sa, mut sab) = (0.0, 0.0);
                for o in 0..s.outer {
                    let start = (o * c + ch) * s.inner;
                    for (&x, &y) in a[start..start + s.inner].iter().zip(&b[start..start + s.inner]) {
                        sa += x.to_f64();
                        sab += x.to_f64() * y.to_f64();
                    }
                }
                (sa, sab)
            })
            .unzip()
    }
}

/// `out = scale[c]·x + shift[c]`, plus `zscale[c]·z` when `z = (z, zscale)` is given.
pub(super) fn channel_affine<T: Scalar>(x: &[T], scale: &[T], shift: &[T], z: Option<(&[T], &[T])>, s: ChannelShape) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    let (c, inner) = (s.channels, s.inner);
    // A task covers whole `channels × inner` blocks, so a run's channel is known.
    let block = c * inner;
    let per_task = (CHUNK / block.max(1)).max(1) * block;
    let body = |(task, o): (usize, &mut [T])| {
        let base = task * per_task;
        if inner == 1 {
            // N×C rows: the coefficients line up with each row.
            for (r, row) in o.chunks_mut(c).enumerate() {
                let start = base + r * c;
                let xs = row.iter_mut().zip(&x[start..start + c]).zip(scale.iter().zip(shift));
                match z {
                    None => xs.for_each(|((o, &v), (&a, &b))| *o = a * v + b),
                    Some((z, zs)) => {
                        xs.zip(z[start..start + c].iter().zip(zs)).for_each(|(((o, &v), (&a, &b)), (&w, &k))| *o = a * v + b + k * w)
                    }
                }
            }
        } else {
            // NCHW: each run of `inner` elements shares one channel's coefficients.
            for (r, run) in o.chunks_mut(inner).enumerate() {
                let start = base + r * inner;
                let ch = (start / inner) % c;
                let (a, b) = (scale[ch], shift[ch]);
                let xs = run.iter_mut().zip(&x[start..start + inner]);
                match z {
                    None => xs.for_each(|(o, &v)| *o = a * v + b),
                    Some((z, zs)) => xs.zip(&z[start..start + inner]).for_each(|((o, &v), &w)| *o = a * v + b + zs[ch] * w),
                }
            }
        }
    };
    if x.len() > CHUNK {
        out.par_chunks_mut(per_task).enumerate().for_each(body);
    } else if !out.is_empty() {
        body((0, &mut out));
    }
    out
}

pub(super) fn cast<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

pub fn add_bias<T: Scalar>(x: &[T], bias: &[T], s: ChannelShape) -> Vec<T> {
    channel_affine(x, &vec![T::ONE; s.channels], bias, None, s)
}

pub fn channel_sum<T: Scalar>(x: &[T], s: ChannelShape) -> Vec<T> {
    cast(&channel_dots(x, None, s).0)
}

/// `[outer, C, inner]` → `[outer, before + C + after, inner]`, the new channels zero.
pub fn pad_channels<T: Scalar>(x: &[T], s: ChannelShape, before: usize, after: usize) -> Vec<T> {
    let wide = (before + s.channels + after) * s.inner;
    let mut y = vec![T::ZERO; s.outer * wide];
    let block = s.channels * s.inner;
    if block > 0 {
        y.par_chunks_mut(wide).zip(x.par_chunks(block)).for_each(|(y, x)| y[before * s.inner..][..block].copy_from_slice(x));
    }
    y
}

/// Channels `start..start + len` of `[outer, C, inner]`: the adjoint of [`pad_channels`].
pub fn narrow_channels<T: Scalar>(x: &[T], s: ChannelShape, start: usize, len: usize) -> Vec<T> {
    let block = len * s.inner;
    let mut y = vec![T::ZERO; s.outer * block];
    if block > 0 {
        let wide = s.channels * s.inner;
        y.par_chunks_mut(block).zip(x.par_chunks(wide)).for_each(|(y, x)| y.copy_from_slice(&x[start * s.inner..][..block]));
    }
    y
}
