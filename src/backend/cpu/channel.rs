//! CPU twin of kernels/channel.cu (launched by src/backend/cuda/channel.rs):
//! per-channel ops over an `outer × channels × inner` layout. Bias add and
//! bias gradient here, and batch norm (batch_norm.rs), are each a per-channel
//! reduction followed by a per-channel affine map, so two functions do all
//! their work; reductions accumulate in f64 over fixed blocks
//! (deterministic), maps run in `T`. Padding and narrowing copy whole channels.

use super::super::ChannelShape;
use super::lanes::wide;
use super::parallel::CHUNK;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Per channel, `Σ a` and `Σ a·b` (with `b = a` when `b` is `None`).
pub(super) fn channel_dots<T: Scalar>(a: &[T], b: Option<&[T]>, s: ChannelShape) -> (Vec<f64>, Vec<f64>) {
    dots::<T, true>(a, b.unwrap_or(a), s)
}

/// [`channel_dots`], its products `Σ a·b` taken only when `PRODUCTS`
/// (otherwise zero). A bias gradient wants the sums alone, in the same
/// order; without the products' conversions, multiplies and second chain
/// of adds, 1024×256 f32 took 16–17 µs against 27–28 (2026-12-07,
/// alternated, median of 400).
fn dots<T: Scalar, const PRODUCTS: bool>(a: &[T], b: &[T], s: ChannelShape) -> (Vec<f64>, Vec<f64>) {
    let c = s.channels;
    if s.inner == 1 {
        // Row-major N×C: each task sums a block of rows into its own C-vectors.
        let rows_per_block = (CHUNK / c.max(1)).max(1);
        let block = |(ra, rb): (&[T], &[T])| {
            let (mut sa, mut sab) = (vec![0.0f64; c], vec![0.0f64; c]);
            wide!(row_sums::<T, PRODUCTS>(ra, rb, c, &mut sa, &mut sab));
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
                let runs = (0..s.outer).map(|o| (o * c + ch) * s.inner..(o * c + ch + 1) * s.inner);
                let (sa, sab) = wide!(channel_lanes::<T, PRODUCTS>(a, b, runs));
                (fold_lanes(sa), fold_lanes(sab))
            })
            .unzip()
    }
}

/// Rows the N×C sums add per visit of an accumulator: each channel's
/// running sums are loaded and stored once per `ROWS` rows rather than per row.
const ROWS: usize = 4;

/// `Σ a` and `Σ a·b` per channel over the rows of the row-major N×C blocks
/// `a` and `b`, added into `sa` and `sab` one row after another, in order.
#[inline(always)]
fn row_sums<T: Scalar, const PRODUCTS: bool>(a: &[T], b: &[T], c: usize, sa: &mut [f64], sab: &mut [f64]) {
    let (quads_a, quads_b) = (a.chunks_exact(ROWS * c), b.chunks_exact(ROWS * c));
    let (rest_a, rest_b) = (quads_a.remainder(), quads_b.remainder());
    for (qa, qb) in quads_a.zip(quads_b) {
        for ch in 0..c {
            let (mut s, mut q) = (sa[ch], sab[ch]);
            for r in 0..ROWS {
                let x = qa[r * c + ch].to_f64();
                s += x;
                if PRODUCTS {
                    q += x * qb[r * c + ch].to_f64();
                }
            }
            (sa[ch], sab[ch]) = (s, q);
        }
    }
    for (row_a, row_b) in rest_a.chunks_exact(c).zip(rest_b.chunks_exact(c)) {
        for (((s, q), &x), &y) in sa.iter_mut().zip(sab.iter_mut()).zip(row_a).zip(row_b) {
            *s += x.to_f64();
            if PRODUCTS {
                *q += x.to_f64() * y.to_f64();
            }
        }
    }
}

/// The lanes of `Σ a` and `Σ a·b` over the runs `runs` of one channel. In
/// [`wide!`]'s AVX2 twin they round as here: Rust never fuses the multiply
/// and the add, so each is the same conversion, product and sum, 4 lanes to
/// a register instead of 2.
#[inline(always)]
fn channel_lanes<T: Scalar, const PRODUCTS: bool>(
    a: &[T],
    b: &[T],
    runs: impl Iterator<Item = Range<usize>>,
) -> ([f64; LANES], [f64; LANES]) {
    let (mut sa, mut sab) = ([0.0; LANES], [0.0; LANES]);
    for r in runs {
        lane_dots::<T, PRODUCTS>(&a[r.clone()], &b[r], &mut sa, &mut sab);
    }
    (sa, sab)
}

/// Independent f64 accumulators per channel sum: one serial chain of adds is
/// bound by the add latency, `LANES` chains overlap (and vectorise). Element
/// `i` of a run always lands in lane `i % LANES`, so the order is fixed.
const LANES: usize = 8;

#[inline(always)]
fn lane_dots<T: Scalar, const PRODUCTS: bool>(a: &[T], b: &[T], sa: &mut [f64; LANES], sab: &mut [f64; LANES]) {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    // Whole-array conversions and local sums: they vectorise, element-wise indexing did not.
    let (mut la, mut lab) = (*sa, *sab);
    for (xa, xb) in ca.zip(cb) {
        let x: [f64; LANES] = std::array::from_fn(|l| xa[l].to_f64());
        for l in 0..LANES {
            la[l] += x[l];
        }
        if PRODUCTS {
            let y: [f64; LANES] = std::array::from_fn(|l| xb[l].to_f64());
            for l in 0..LANES {
                lab[l] += x[l] * y[l];
            }
        }
    }
    (*sa, *sab) = (la, lab);
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        sa[l] += x.to_f64();
        if PRODUCTS {
            sab[l] += x.to_f64() * y.to_f64();
        }
    }
}

/// The lanes summed pairwise, in a fixed order.
fn fold_lanes(mut l: [f64; LANES]) -> f64 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            l[i] += l[i + width];
        }
    }
    l[0]
}

/// `out = scale[c]·x + shift[c]`, plus `zscale[c]·z` when `z = (z, zscale)` is given.
/// Written straight into fresh memory: every element is produced once, so no zero-fill first.
pub(super) fn channel_affine<T: Scalar>(x: &[T], scale: &[T], shift: &[T], z: Option<(&[T], &[T])>, s: ChannelShape) -> Vec<T> {
    channel_map(x, scale, shift, z, s, |v| v)
}

/// `relu(scale[c]·x + shift[c] + z)` in one pass (without `z`: a batch norm
/// feeding a ReLU; with it, also a residual sum). `z`'s coefficient is one,
/// so adding it rounds as a separate add would.
pub(super) fn channel_affine_relu<T: Scalar>(x: &[T], scale: &[T], shift: &[T], z: Option<&[T]>, s: ChannelShape) -> Vec<T> {
    let ones = vec![T::ONE; s.channels];
    channel_map(x, scale, shift, z.map(|z| (z, &ones[..])), s, super::relu)
}

/// [`channel_affine`], each result mapped by `post` before it is stored.
#[inline(always)]
fn channel_map<T: Scalar>(
    x: &[T],
    scale: &[T],
    shift: &[T],
    z: Option<(&[T], &[T])>,
    s: ChannelShape,
    post: impl Fn(T) -> T + Sync,
) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    let (c, inner) = (s.channels, s.inner);
    // A task covers whole `channels × inner` blocks, so a run's channel is known.
    let block = c * inner;
    let per_task = (CHUNK / block.max(1)).max(1) * block;
    let body = |(task, o): (usize, &mut [MaybeUninit<T>])| {
        let base = task * per_task;
        wide!({
            if inner == 1 {
                // N×C rows: the coefficients line up with each row.
                for (r, row) in o.chunks_mut(c).enumerate() {
                    let start = base + r * c;
                    let xs = row.iter_mut().zip(&x[start..start + c]).zip(scale.iter().zip(shift));
                    match z {
                        None => xs.for_each(|((o, &v), (&a, &b))| {
                            o.write(post(a * v + b));
                        }),
                        Some((z, zs)) => xs.zip(z[start..start + c].iter().zip(zs)).for_each(|(((o, &v), (&a, &b)), (&w, &k))| {
                            o.write(post(a * v + b + k * w));
                        }),
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
                        None => xs.for_each(|(o, &v)| {
                            o.write(post(a * v + b));
                        }),
                        Some((z, zs)) => {
                            let k = zs[ch];
                            xs.zip(&z[start..start + inner]).for_each(|((o, &v), &w)| {
                                o.write(post(a * v + b + k * w));
                            })
                        }
                    }
                }
            }
        })
    };
    let spare = &mut out.spare_capacity_mut()[..x.len()];
    if x.len() > CHUNK {
        spare.par_chunks_mut(per_task).enumerate().for_each(body);
    } else if !spare.is_empty() {
        body((0, spare));
    }
    // SAFETY: the runs and rows above cover every element of every task's chunk.
    unsafe { out.set_len(x.len()) };
    out
}

pub(super) fn cast<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

pub fn add_bias<T: Scalar>(x: &[T], bias: &[T], s: ChannelShape) -> Vec<T> {
    channel_affine(x, &vec![T::ONE; s.channels], bias, None, s)
}

pub fn channel_sum<T: Scalar>(x: &[T], s: ChannelShape) -> Vec<T> {
    cast(&dots::<T, false>(x, x, s).0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The N×C sums, run in their AVX2 twin, four rows to an accumulator
    /// visit, in blocks: the bits of a plain row-by-row loop on this (not
    /// AVX2-compiled) thread. Channel counts below, at and past the vector
    /// width; row counts with and without a partial group of four.
    #[test]
    fn wide_row_sums_are_the_row_by_row_sums() {
        let mut r = Rng::new(43, 0);
        for (rows, c) in [(1, 1), (7, 3), (64, 16), (67, 259), (130, 256)] {
            // Magnitudes 2⁻⁴⁰ to 2⁴⁰: f64 sums of f32 values round, so the order shows.
            let a: Vec<f32> = (0..rows * c).map(|_| (r.normal() * 2f64.powi(r.below(81) as i32 - 40)) as f32).collect();
            let b: Vec<f32> = (0..rows * c).map(|_| r.normal() as f32).collect();
            let (mut sa, mut sab) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (ra, rb) in a.chunks(c).zip(b.chunks(c)) {
                for ch in 0..c {
                    sa[ch] += ra[ch] as f64;
                    sab[ch] += ra[ch] as f64 * rb[ch] as f64;
                }
            }
            let (mut wa, mut wab) = (vec![0.0f64; c], vec![0.0f64; c]);
            wide!(row_sums::<f32, true>(&a, &b, c, &mut wa, &mut wab));
            assert!(wa == sa && wab == sab, "{rows}×{c}");
            // Whole ops, in parallel blocks: each block's sums start at zero.
            let s = ChannelShape { outer: rows, channels: c, inner: 1 };
            let per_block = (CHUNK / c).max(1);
            let (da, dab) = channel_dots(&a, Some(&b), s);
            let mut expect = (vec![0.0f64; c], vec![0.0f64; c]);
            for (ba, bb) in a.chunks(per_block * c).zip(b.chunks(per_block * c)) {
                let (mut pa, mut pab) = (vec![0.0f64; c], vec![0.0f64; c]);
                row_sums::<f32, true>(ba, bb, c, &mut pa, &mut pab);
                expect.0.iter_mut().zip(pa).for_each(|(e, p)| *e += p);
                expect.1.iter_mut().zip(pab).for_each(|(e, p)| *e += p);
            }
            assert!((da, dab) == expect, "{rows}×{c}: channel_dots");
        }
    }

    /// A bias gradient, which skips the products, sums in `channel_dots`'
    /// order: the same f64 sums, over N×C rows and NCHW planes, in parallel
    /// blocks and not.
    #[test]
    fn channel_sums_are_the_sums_of_channel_dots() {
        let mut r = Rng::new(59, 0);
        for s in [
            ChannelShape { outer: 3, channels: 5, inner: 1 },
            ChannelShape { outer: 1030, channels: 256, inner: 1 },
            ChannelShape { outer: 4, channels: 3, inner: 4099 },
        ] {
            // Magnitudes 2⁻⁴⁰ to 2⁴⁰: f64 sums of them round, so another order would show.
            let a: Vec<f32> = (0..s.len()).map(|_| (r.normal() * 2f64.powi(r.below(81) as i32 - 40)) as f32).collect();
            let sums = channel_dots(&a, None, s).0;
            assert_eq!(dots::<f32, false>(&a, &a, s).0, sums, "{s:?}");
            assert_eq!(channel_sum(&a, s), cast::<f32>(&sums), "{s:?}");
        }
    }

    /// The per-channel maps, run in their AVX2 twin and in parallel, give
    /// the bits of the formula evaluated one element at a time here.
    #[test]
    fn wide_channel_maps_are_the_scalar_formula() {
        let mut r = Rng::new(47, 0);
        for s in [ChannelShape { outer: 300, channels: 259, inner: 1 }, ChannelShape { outer: 3, channels: 5, inner: 4099 }] {
            let mut rand = |len: usize| (0..len).map(|_| r.normal() as f32).collect::<Vec<f32>>();
            let (x, z, scale, shift, zs) = (rand(s.len()), rand(s.len()), rand(s.channels), rand(s.channels), rand(s.channels));
            let ch = |i: usize| (i / s.inner) % s.channels;
            let affine = channel_affine(&x, &scale, &shift, Some((&z, &zs)), s);
            let relu = channel_affine_relu(&x, &scale, &shift, Some(&z), s);
            for i in 0..s.len() {
                let (a, b) = (scale[ch(i)], shift[ch(i)]);
                assert_eq!(affine[i].to_bits(), (a * x[i] + b + zs[ch(i)] * z[i]).to_bits(), "{s:?} element {i}");
                assert_eq!(relu[i].to_bits(), (a * x[i] + b + z[i]).max(0.0).to_bits(), "{s:?} element {i}");
            }
        }
    }

    #[test]
    fn both_copies_of_the_lane_sums_round_alike() {
        let mut r = Rng::new(41, 0);
        // Runs with and without a remainder past the last 8, several runs per channel.
        for inner in [1, 7, 8, 29, 1024] {
            let a: Vec<f32> = (0..3 * inner).map(|_| r.normal() as f32).collect();
            let b: Vec<f32> = (0..3 * inner).map(|_| r.normal() as f32).collect();
            let runs = || (0..3).map(|o| o * inner..(o + 1) * inner);
            let portable = channel_lanes::<f32, true>(&a, &b, runs());
            assert_eq!(wide!(channel_lanes::<f32, true>(&a, &b, runs())), portable, "{inner}");
        }
    }

    #[test]
    fn lane_sums_match_plain_sums_for_every_remainder() {
        for (outer, channels, inner) in [(3, 2, 1), (2, 3, 7), (4, 2, 8), (2, 5, 13), (1, 1, 0)] {
            let s = ChannelShape { outer, channels, inner };
            let a: Vec<f64> = (0..s.len()).map(|i| ((i * 37 % 23) as f64 - 11.0) / 8.0).collect();
            let b: Vec<f64> = (0..s.len()).map(|i| ((i * 13 % 17) as f64 - 8.0) / 4.0).collect();
            let (sa, sab) = channel_dots(&a, Some(&b), s);
            for c in 0..channels {
                let idx = || (0..outer).flat_map(move |o| (0..inner).map(move |i| (o * channels + c) * inner + i));
                // Multiples of 1/32 sum exactly in f64, so any order gives the same bits.
                assert_eq!(sa[c], idx().map(|i| a[i]).sum::<f64>(), "{s:?} channel {c}");
                assert_eq!(sab[c], idx().map(|i| a[i] * b[i]).sum::<f64>(), "{s:?} channel {c}");
            }
        }
    }
}
