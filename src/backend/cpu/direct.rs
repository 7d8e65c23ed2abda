//! Direct convolution of 3×3 pad-1 windows without a patch matrix: stride 1
//! (every 3×3 conv inside a ResNet stage) and stride 2 (the convs that enter
//! a stage, forward only). Each input plane is copied once into a
//! zero-bordered scratch (at stride 2 with its even and odd columns apart, so
//! a tap's inputs stay adjacent), and the inner loop has no edge tests; a
//! block of 4 or 6 output channels ([`channel_blocks`]) × 16 outputs (one row
//! of 16, or two rows of 8 on narrow planes; with AVX-512, 32 outputs, as
//! one row of 32 or two of 16, on planes wider than 8, and four rows of 8
//! on narrower f32 planes: [`Path`]) is summed
//! in registers over `(c_in, ky, kx)`, each weight broadcast against a
//! shifted, unaligned input row. im2col instead writes a
//! `9·c_in`-row patch matrix per image and reads it back: 576 KiB per image
//! at 16 channels on 32×32, more than L2.
//!
//! Every output is one chain of fused multiply-adds in the order `(c_in, ky,
//! kx)`, whatever the block shape, the task split or the thread count, and
//! the portable, AVX2 and AVX-512 copies of the kernel round alike.
//!
//! Backward-data is the same kernel on `dy` with the filters rotated 180° and
//! their channels swapped ([`super::conv::rotated`]).
//!
//! With AVX-512, f32 stride-1 convs on 8×8 and 16×16 planes take
//! [`super::winograd_lanes`] before this kernel; it keeps them in f64 and
//! on other CPUs, and [`pairs`] keeps the stride-2 forward onto 8×8.

use super::conv::Direction;
use super::lanes::{self, as_elements, into_scalars, Element, Lanes, Path};
#[cfg(target_arch = "x86_64")]
use super::pair_copies::pair_copies;
use crate::backend::Window;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on the
/// ResNet stages' shapes, two images (`tests::f32_error_stays_near_im2col`).
/// Measured, 16c32 / 32c16 / 64c8: forward 4.2e-7 / 5.2e-7 / 7.8e-7,
/// backward-data 4.9e-7 / 4.7e-7 / 9.5e-7; im2col + GEMM forward 4.2e-7 /
/// 5.2e-7 / 7.1e-7. Stride 2, 16→32 on 32×32 / 32→64 on 16×16: forward
/// 3.7e-7 / 6.1e-7, the same as im2col + GEMM. The bound is about twice the
/// largest.
#[cfg(test)]
const F32_ERROR: f64 = 2e-6;

/// Whether window `g` with output grid `out` takes the direct path in
/// direction `d`: 3×3 pad-1 windows with outputs at least 8 wide, stride 1
/// forward and backward-data, stride 2 forward, on CPUs with AVX2 and FMA
/// (the portable copy calls a software `fma` per multiply-add: about 100×
/// slower in a prototype). benches/conv.rs (batch 128, f32, 2 cores shared
/// at load 2.9–4.1, new/old time, medians of 6 alternated runs of the two
/// builds): forward 0.85 (16c32), 0.81 (32c16), 0.80 (64c8) against im2col;
/// backward-data 0.83 against Winograd (16c32), 0.64 / 0.77 against im2col.
/// Stride-2 forward against im2col (CPU time per call, medians of four
/// alternated runs at load 3.4): 0.58 (16→32 on 32×32), 0.69 (32→64 on
/// 16×16). Stride-2 backward-data is [`super::direct_data`]'s, the filter
/// gradient [`super::direct_filter`]'s.
pub(super) fn applies(g: &Window, out: (usize, usize), d: Direction) -> bool {
    let same = g.stride == 1 && out == (g.h, g.w) && d != Direction::Filter;
    let halved = g.stride == 2 && d == Direction::Forward;
    g.kh == 3 && g.kw == 3 && g.pad == 1 && (same || halved) && out.1 >= 8 && lanes::avx2_fma()
}

/// The output grid of a 3×3 pad-1 window of `g`'s stride.
pub(super) fn out_grid(g: &Window) -> (usize, usize) {
    (g.h.div_ceil(g.stride), g.w.div_ceil(g.stride))
}

/// `y[n, c_out, oh, ow]` of a 3×3 pad-1 window of stride 1 or 2 over `x[n, c, h, w]`
/// with filters `w[c_out, c, 3, 3]`; None when `T` is neither f32 nor f64.
/// The caller checks the lengths.
pub(super) fn conv2d<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize) -> Option<Vec<T>> {
    match (as_elements(x), as_elements(w)) {
        (Some(x), Some(w)) => into_scalars(conv2d_f32(x, w, g, c_out)),
        _ => into_scalars(conv2d_f64(as_elements(x)?, as_elements(w)?, g, c_out)),
    }
}

// Not generic, so the library compiles each once and every caller runs that
// machine code (lanes.rs, "One compiled copy").
fn conv2d_f32(x: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
    convolve(x, w, g, c_out, Path::widest())
}

fn conv2d_f64(x: &[f64], w: &[f64], g: &Window, c_out: usize) -> Vec<f64> {
    convolve(x, w, g, c_out, Path::widest())
}

/// [`conv2d`] in `path`'s copy of the kernel. AVX-512's takes blocks of 32
/// outputs on planes wider than 8; on narrower ones, f32 takes [`pairs`]
/// (two rows of 8 a vector), and f64 AVX2's blocks of 16.
///
/// Why AVX-512: a core with two 512-bit FMA units (the 2-core Intel Xeon
/// host of 2026-12-06, 366–410 GFLOP/s measured) gets at most half its
/// peak from AVX2, where the AVX2 kernels ran at 35–42%. `kappa profile
/// conv` (batch 128, medians of 7, old and new binaries alternated twice):
/// 16c32 forward 4.27–4.34 → 2.11–2.38 ms, backward-data 4.19–4.26 →
/// 1.92–2.38 ms; 32c16 forward 3.70–3.77 → 2.16–2.18 ms, backward-data
/// 3.76–3.92 → 2.17–2.18 ms. With [`pairs`] (two runs each way, same
/// host): 64c8 forward 4.00–4.22 → 2.45–2.88 ms, backward-data 3.84–3.86 →
/// 2.86–3.08 ms. At stride 2 (32→64 on 16×16, whose 8-wide rows took
/// AVX2's blocks before), [`pairs`] took 1.25–1.26 against 1.93–1.94 ms,
/// two runs each way. Each output is the same chain of fused multiply-adds,
/// so the bits do not change.
fn convolve<E: Element>(x: &[E], w: &[E], g: &Window, c_out: usize, path: Path) -> Vec<E> {
    let (oh, ow) = out_grid(g);
    let plane = oh * ow;
    let len = g.n * c_out * plane;
    if len == 0 || g.c == 0 {
        return vec![E::ZERO; len];
    }
    // Written straight into fresh memory: every output is stored once, so no zero-fill first.
    let mut y = Vec::with_capacity(len);
    let filters = Filters::new(w, g.c, c_out);
    let images = x.par_chunks(g.image_len()).zip(y.spare_capacity_mut()[..len].par_chunks_mut(c_out * plane));
    #[cfg(target_arch = "x86_64")]
    let wide = out_grid(g).1 > 8;
    // Two rows of 8 fill one vector of 16 lanes: f32's on AVX-512.
    #[cfg(target_arch = "x86_64")]
    let paired = <E::Avx512 as Lanes<E>>::WIDTH == 16;
    images.for_each_init(Vec::new, |pad, (x, y)| match path {
        // SAFETY: `path` is only AVX-512 where the CPU has it (and AVX2 and FMA).
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 if wide => unsafe { image_avx512(x, &filters, g, y, pad) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 if paired => unsafe { pairs_avx512(x, &filters, g, y, pad) },
        // SAFETY: `path` is only AVX2 or AVX-512 where the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 | Path::Avx512 => unsafe { image_avx2(x, &filters, g, y, pad) },
        _ => image::<E, E::Portable, 16>(x, &filters, g, y, pad),
    });
    // SAFETY: `channels` stores every row and column of every output plane of every image.
    unsafe { y.set_len(len) };
    y
}

/// Output channels per register block. With two 8-lane input vectors and a
/// broadcast weight, 4 × 2 or 6 × 2 accumulators both leave AVX2's 16
/// registers unspilled; the 12 chains of the larger block keep the FMA units
/// busier (64c8, batch 128, 2 threads: 0.95× the time of blocks of 4 in
/// forward and backward-data, medians of 3 alternated runs at load 1.7–2.3).
const OC: usize = 4;
const OC_WIDE: usize = 6;

/// The output-channel blocks as `(first channel, width)`: blocks of
/// [`OC_WIDE`], then of [`OC`], the last of which may end at the last
/// channel, overlapping the one before (its channels computed twice); of
/// the mixes that compute the fewest channels, the one with the most wide
/// blocks. So an even `c_out` is computed exactly, 16 as 6 + 6 + 4 and 64
/// as ten 6s + 4. Single channels when `c_out < OC`.
///
/// Why mixed: with one width per call, 16 and 32 channels went in blocks
/// of 4 (blocks of 6 would have computed 18 and 36: 1.08–1.16× the time)
/// and 64 in blocks of 6 (66 computed). Mixed, the ResNet-20 step took
/// 269–280 against 289–293 ms (criterion medians, old and new binaries
/// alternated, three pairs, 2026-12-05); the batch-128 convs
/// (benches/conv.rs, same runs) 16c32 forward / backward-data 4.0–4.4 /
/// 4.0–4.3 against 4.4–5.0 / 4.5–5.1 ms, 32c16 3.7–3.9 / 3.6–3.8 against
/// 4.3–4.7 / 4.3–4.4 ms, 64c8 unchanged. Each output is the same chain of
/// fused multiply-adds whatever its block, so the results are the same bits.
pub(super) fn channel_blocks(c_out: usize) -> Vec<(usize, usize)> {
    if c_out < OC {
        return (0..c_out).map(|o| (o, 1)).collect();
    }
    let computed = |wide: usize| wide * OC_WIDE + (c_out - wide * OC_WIDE).div_ceil(OC) * OC;
    let wide = (0..=c_out / OC_WIDE).rev().min_by_key(|&a| computed(a)).expect("a range from 0");
    let narrow = (c_out - wide * OC_WIDE).div_ceil(OC);
    let wide_blocks = (0..wide).map(|b| (b * OC_WIDE, OC_WIDE));
    // The last narrow block ends at the last channel; only it can overlap.
    let narrow_blocks = (0..narrow).map(move |b| ((wide * OC_WIDE + b * OC).min(c_out - OC), OC));
    wide_blocks.chain(narrow_blocks).collect()
}

/// The filters in blocks of output channels ([`channel_blocks`]), one block
/// after another, a block of `k` channels as `[c, k, 9]`, so a block's
/// weights for one input channel are adjacent.
struct Filters<T> {
    blocks: Vec<(usize, usize)>,
    packed: Vec<T>,
}

impl<T: Element> Filters<T> {
    /// Packs `w[c_out, c, 3, 3]`.
    fn new(w: &[T], c: usize, c_out: usize) -> Self {
        let blocks = channel_blocks(c_out);
        let mut packed = Vec::with_capacity(blocks.iter().map(|&(_, k)| k * c * 9).sum());
        for &(start, k) in &blocks {
            for ci in 0..c {
                for o in start..start + k {
                    packed.extend_from_slice(&w[(o * c + ci) * 9..][..9]);
                }
            }
        }
        Filters { blocks, packed }
    }

    /// Each block as `(first channel, width, its weights [c, width, 9])`.
    fn each(&self, c: usize) -> impl Iterator<Item = (usize, usize, &[T])> {
        self.blocks.iter().scan(&self.packed[..], move |rest, &(start, k)| {
            let (block, tail) = rest.split_at(k * c * 9);
            *rest = tail;
            Some((start, k, block))
        })
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn image_avx2<E: Element>(x: &[E], filters: &Filters<E>, g: &Window, y: &mut [MaybeUninit<E>], pad: &mut Vec<E>) {
    image::<E, E::Avx2, 16>(x, filters, g, y, pad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn image_avx512<E: Element>(x: &[E], filters: &Filters<E>, g: &Window, y: &mut [MaybeUninit<E>], pad: &mut Vec<E>) {
    image::<E, E::Avx512, 32>(x, filters, g, y, pad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn pairs_avx512<E: Element>(x: &[E], filters: &Filters<E>, g: &Window, y: &mut [MaybeUninit<E>], pad: &mut Vec<E>) {
    match g.stride {
        1 => pairs::<E, E::Avx512, 1>(x, filters, g, y, pad),
        _ => pairs::<E, E::Avx512, 2>(x, filters, g, y, pad),
    }
}

/// Output rows per block of [`pairs`]: two vectors of two rows each.
#[cfg(target_arch = "x86_64")]
const PAIRED_ROWS: usize = 4;

/// One image of output planes at most 8 wide, on 16 lanes that each vector
/// fills with two output rows of 8. Each padded plane is copied once per
/// column tap `kx` and, at stride 2, per row parity ([`pair_copies`]): row
/// `i` of copy `(kx, p)` holds padded columns `kx, kx + S, …, kx + 7·S` of
/// padded row `S·i + p`. Tap `(ky, kx)` of output row `oy` reads padded row `S·oy + ky`, row
/// `oy + ky / S` of copy `(kx, ky % S)`, so for every tap the inputs of two
/// adjacent output rows are 16 adjacent values, one load. Blocks of output
/// channels ([`channel_blocks`]) × [`PAIRED_ROWS`] rows; each output is the
/// chain of fused multiply-adds in `(c_in, ky, kx)` order the other copies
/// take.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn pairs<E: Element, V: Lanes<E>, const S: usize>(x: &[E], filters: &Filters<E>, g: &Window, y: &mut [MaybeUninit<E>], pad: &mut Vec<E>) {
    let (oh, ow) = out_grid(g);
    debug_assert!(V::WIDTH == 16 && g.stride == S && ow <= 8);
    let c = g.c;
    // The last block's second vector reads rows up to its last output row + 1 + 2 / S.
    let rows = oh.div_ceil(PAIRED_ROWS) * PAIRED_ROWS + 2 / S;
    let copy = rows * 8;
    let plane = 3 * S * copy;
    // Every image writes the same interior cells, so the zeroed border stays zero.
    if pad.len() != c * plane {
        pad.clear();
        pad.resize(c * plane, E::ZERO);
    }
    // SAFETY: `pairs` runs only in `pairs_avx512`, where the CPU has AVX-512.
    unsafe { pair_copies::<E, S>(x, g, pad, copy) };
    for (start, k, block) in filters.each(c) {
        let y = &mut y[start * oh * ow..][..k * oh * ow];
        match k {
            OC_WIDE => paired_channels::<E, V, S, OC_WIDE>(pad, block, (oh, ow), plane, y),
            OC => paired_channels::<E, V, S, OC>(pad, block, (oh, ow), plane, y),
            _ => paired_channels::<E, V, S, 1>(pad, block, (oh, ow), plane, y),
        }
    }
}

/// The `K` output planes `y` of filters `wts[c, K, 9]` from [`pairs`]'s
/// copies (`plane` values a channel), [`PAIRED_ROWS`] rows at a time. Its
/// loads are unchecked: with a bounds test before each (two compares, two
/// branches and a reload from the stack a load), 64c8 took 1.90–1.94
/// against 1.59–1.63 ms forward, 1.98–1.99 against 1.63–1.67 backward-data,
/// and the stride-2 32→64 on 16×16 1.17–1.21 against 1.00–1.04 (three
/// alternated pairs, 2026-12-07, Intel host). The channel's copies are
/// reached by a pointer stepped a plane at a time, for the same reason:
/// a slice per channel kept two bounds tests in the loop, and with them
/// LLVM moved the 12 accumulators through other registers at every
/// channel (24 moves per 108 FMAs); without, 64c8 forward 1.895–1.900
/// against 1.912–1.914 ms, the stride-2 one 1.048–1.049 against
/// 1.063–1.066 (best of 300, three alternated pairs, same host).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn paired_channels<E: Element, V: Lanes<E>, const S: usize, const K: usize>(
    pad: &[E],
    wts: &[E],
    (h, wd): (usize, usize),
    plane: usize,
    y: &mut [MaybeUninit<E>],
) {
    let copy = plane / (3 * S);
    let mut row = [E::ZERO; 16];
    assert!(pad.len() >= wts.len() / (K * 9) * plane, "a copy for every input channel");
    for y0 in (0..h).step_by(PAIRED_ROWS) {
        let mut acc = [[V::zero(); 2]; K];
        let mut p = pad.as_ptr();
        for wc in wts.chunks_exact(K * 9) {
            for ky in 0..3 {
                for kx in 0..3 {
                    let at = |q: usize| {
                        let at = (kx * S + ky % S) * copy + (y0 + 2 * q + ky / S) * 8;
                        debug_assert!(at + 16 <= plane);
                        // SAFETY: the last row read, y0 + 3 + 2 / S, is inside each
                        // copy's rows (`pairs`), and the copy (kx, ky % S) inside `p`.
                        // Unchecked, the loop carries no bounds tests between its loads.
                        unsafe { V::load(std::slice::from_raw_parts(p.add(at), 16)) }
                    };
                    let v = [at(0), at(1)];
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let wv = V::splat(wc[o * 9 + ky * 3 + kx]);
                        for (a, &v) in acc.iter_mut().zip(&v) {
                            *a = wv.mul_add(v, *a);
                        }
                    }
                }
            }
            // SAFETY: the next channel's copies (asserted in `pad`); after the
            // last channel, one past its end at most.
            p = unsafe { p.add(plane) };
        }
        for (o, acc) in acc.iter().enumerate() {
            for (q, v) in acc.iter().enumerate() {
                let first = y0 + 2 * q;
                // Two whole rows of 8 lie side by side in `y`: one store.
                if wd == 8 && first + 2 <= h {
                    v.store_uninit(&mut y[(o * h + first) * wd..]);
                    continue;
                }
                v.store(&mut row);
                for (half, r) in (first..h).take(2).enumerate() {
                    let dst = &mut y[(o * h + r) * wd..][..wd];
                    dst.iter_mut().zip(&row[half * 8..]).for_each(|(d, &v)| _ = d.write(v));
                }
            }
        }
    }
}

/// One image: blocks of output channels ([`channel_blocks`]), each one row
/// of `B` outputs where the output plane is wider than `B / 2`, two rows of
/// `B / 2` where it is not, at stride 1 or 2.
#[inline(always)]
fn image<E: Element, V: Lanes<E>, const B: usize>(x: &[E], filters: &Filters<E>, g: &Window, y: &mut [MaybeUninit<E>], pad: &mut Vec<E>) {
    match (g.stride == 2, out_grid(g).1 > B / 2) {
        (false, true) => rows::<E, V, 1, 1, B>(x, filters, g, y, pad),
        (false, false) => rows::<E, V, 1, 2, B>(x, filters, g, y, pad),
        (true, true) => rows::<E, V, 2, 1, B>(x, filters, g, y, pad),
        (true, false) => rows::<E, V, 2, 2, B>(x, filters, g, y, pad),
    }
}

/// [`blocks`] of `R` rows of `B / R` outputs, each row `N` vectors of `V`.
#[inline(always)]
fn rows<E: Element, V: Lanes<E>, const S: usize, const R: usize, const B: usize>(
    x: &[E],
    filters: &Filters<E>,
    g: &Window,
    y: &mut [MaybeUninit<E>],
    pad: &mut Vec<E>,
) {
    match B / R / V::WIDTH {
        1 => blocks::<E, V, S, R, 1>(x, filters, g, y, pad),
        2 => blocks::<E, V, S, R, 2>(x, filters, g, y, pad),
        _ => blocks::<E, V, S, R, 4>(x, filters, g, y, pad),
    }
}

/// Copies the image's planes into `pad` with a zero border (one row above,
/// one column left, zeros out to the last block) and sums every block of `R`
/// rows of `N` vectors of outputs of every block of channels. At stride 2
/// each padded row is stored as its even columns, then its odd ones, so the
/// inputs of a row of adjacent outputs are adjacent for every tap as at stride 1:
/// tap `kx` of output `ox` reads padded column `2·ox + kx`, the even half's
/// `ox` (kx = 0) or `ox + 1` (kx = 2), or the odd half's `ox` (kx = 1).
#[inline(always)]
fn blocks<E: Element, V: Lanes<E>, const S: usize, const R: usize, const N: usize>(
    x: &[E],
    filters: &Filters<E>,
    g: &Window,
    y: &mut [MaybeUninit<E>],
    pad: &mut Vec<E>,
) {
    let (h, wd, c) = (g.h, g.w, g.c);
    let (oh, ow) = out_grid(g);
    let width = N * V::WIDTH;
    let (out_rows, out_cols) = (oh.div_ceil(R) * R, ow.div_ceil(width) * width);
    // Padded rows reach the last block's last tap; each half of a stride-2 row is one longer than the blocks.
    let half = out_cols + 1;
    let (rows, cols) = (S * (out_rows - 1) + 3, if S == 1 { out_cols + 2 } else { 2 * half });
    let plane = rows * cols;
    // Every image of a call writes the same interior cells, so the border
    // zeroed for the first image stays zero for the rest.
    if pad.len() != c * plane {
        pad.clear();
        pad.resize(c * plane, E::ZERO);
    }
    for (src, dst) in x.chunks_exact(h * wd).zip(pad.chunks_exact_mut(plane)) {
        for (s, d) in src.chunks_exact(wd).zip(dst[cols..].chunks_exact_mut(cols)) {
            if S == 1 {
                copy_row(&mut d[1..], s);
            } else {
                // By whole pairs: element by element, with a test for the
                // last, the copy took a sixth of the 16→32 conv on 32×32
                // (1.23–1.27 against 1.03–1.11 ms, three alternated pairs).
                let (even, odd) = d.split_at_mut(half);
                let pairs = s.chunks_exact(2);
                if let &[v] = pairs.remainder() {
                    odd[wd / 2] = v;
                }
                for ((o, e), pair) in odd.iter_mut().zip(&mut even[1..]).zip(pairs) {
                    (*o, *e) = (pair[0], pair[1]);
                }
            }
        }
    }
    let geometry = Geometry { h: oh, w: ow, c, plane, cols, half };
    let out_plane = oh * ow;
    for (start, k, block) in filters.each(c) {
        let y = &mut y[start * out_plane..][..k * out_plane];
        match k {
            OC_WIDE => channels::<E, V, S, OC_WIDE, R, N>(pad, block, &geometry, y),
            OC => channels::<E, V, S, OC, R, N>(pad, block, &geometry, y),
            _ => channels::<E, V, S, 1, R, N>(pad, block, &geometry, y),
        }
    }
}

/// `d[..s.len()] = s`, an input row into a padded row. At the ResNets'
/// widths the length is a constant, so the copy is a few vector moves in
/// line rather than a call to memcpy per row. Those calls, here and in
/// the filter gradient's padding, were 5% of the ResNet-20 step (`perf`);
/// inlined, the step took 178.9–183.8 against 181.7–187.8 ms (best of 15,
/// five alternated pairs, 2026-12-07, Intel host).
#[inline(always)]
pub(super) fn copy_row<E: Copy>(d: &mut [E], s: &[E]) {
    match s.len() {
        32 => d[..32].copy_from_slice(&s[..32]),
        16 => d[..16].copy_from_slice(&s[..16]),
        8 => d[..8].copy_from_slice(&s[..8]),
        n => d[..n].copy_from_slice(s),
    }
}

/// An image's output plane and padded scratch.
struct Geometry {
    /// Output rows.
    h: usize,
    /// Output columns.
    w: usize,
    c: usize,
    /// Elements per padded plane.
    plane: usize,
    /// Elements per padded row.
    cols: usize,
    /// Where a stride-2 padded row's odd columns start.
    half: usize,
}

impl Geometry {
    /// Offset in a padded row of tap `kx` of the block's first output.
    #[inline(always)]
    fn tap<const S: usize>(&self, kx: usize) -> usize {
        if S == 1 {
            kx
        } else {
            kx / 2 + kx % 2 * self.half
        }
    }
}

/// The `K` output planes `y` of filters `wts[c, K, 9]`, block by block.
#[inline(always)]
fn channels<E: Element, V: Lanes<E>, const S: usize, const K: usize, const R: usize, const N: usize>(
    pad: &[E],
    wts: &[E],
    g: &Geometry,
    y: &mut [MaybeUninit<E>],
) {
    let width = N * V::WIDTH;
    let mut acc = [[[V::zero(); N]; R]; K];
    let mut row = [E::ZERO; 32];
    for y0 in (0..g.h).step_by(R) {
        for x0 in (0..g.w).step_by(width) {
            tile::<E, V, S, K, R, N>(&pad[S * y0 * g.cols + x0..], wts, g, &mut acc);
            let n = width.min(g.w - x0);
            for (o, acc) in acc.iter().enumerate() {
                for (r, acc) in acc.iter().enumerate().take(g.h - y0) {
                    let dst = &mut y[(o * g.h + y0 + r) * g.w + x0..][..n];
                    // A whole block goes straight into `y`: through `row`, each
                    // output row was a call to memcpy (the ResNet-20 bench step
                    // 1.5–2.1% faster, three alternated pairs, 2026-12-07, Intel).
                    // A plain loop: an iterator adapter the compiler does not
                    // inline runs without the caller's AVX-512, each store a call.
                    if n == width {
                        for (j, v) in acc.iter().enumerate() {
                            v.store_uninit(&mut dst[j * V::WIDTH..]);
                        }
                        continue;
                    }
                    for (j, v) in acc.iter().enumerate() {
                        v.store(&mut row[j * V::WIDTH..]);
                    }
                    dst.iter_mut().zip(&row).for_each(|(d, &v)| _ = d.write(v));
                }
            }
        }
    }
}

/// The `K × R × N` vectors of outputs whose padded-input block starts at
/// `pad[0]`, into `out`. The sums live in a local array, written out once at
/// the end, so they stay in registers through the channel loop. They are
/// [`Lanes`], not arrays left to the compiler: from arrays, one build of
/// the `kappa` binary compiled this loop 128 bits wide with the sums spilled
/// to the stack, at 0.6× the speed of the benches' build of the same code.
/// Its loads are unchecked, the bounds proved once by `span`: with a bounds
/// test before each, 32c16 took 1.56–1.59 against 1.44–1.46 ms forward and
/// 1.59–1.62 against 1.46–1.48 backward-data (`kappa profile conv`, three
/// alternated pairs, 2026-12-07, Intel host).
#[inline(always)]
fn tile<E: Element, V: Lanes<E>, const S: usize, const K: usize, const R: usize, const N: usize>(
    pad: &[E],
    wts: &[E],
    g: &Geometry,
    out: &mut [[[V; N]; R]; K],
) {
    let width = N * V::WIDTH;
    let mut acc = [[[V::zero(); N]; R]; K];
    // Rows up to the last output row's last tap, columns past the last tap's block.
    let span = (S * (R - 1) + 2) * g.cols + g.tap::<S>(1).max(g.tap::<S>(2)) + width;
    for (c, wc) in wts.chunks_exact(K * 9).enumerate().take(g.c) {
        let p = &pad[c * g.plane..][..span];
        for ky in 0..3 {
            for kx in 0..3 {
                let rows: [[V; N]; R] = std::array::from_fn(|r| {
                    let at = (S * r + ky) * g.cols + g.tap::<S>(kx);
                    debug_assert!(at + width <= span);
                    // SAFETY: `span` reaches the last row's last tap's block
                    // of `width`; unchecked, the loop carries no bounds tests.
                    let row = unsafe { std::slice::from_raw_parts(p.as_ptr().add(at), width) };
                    std::array::from_fn(|j| V::load(&row[j * V::WIDTH..]))
                });
                for (o, acc) in acc.iter_mut().enumerate() {
                    let wv = V::splat(wc[o * 9 + ky * 3 + kx]);
                    for (acc, row) in acc.iter_mut().zip(&rows) {
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a = wv.mul_add(v, *a);
                        }
                    }
                }
            }
        }
    }
    *out = acc;
}

#[cfg(test)]
mod tests {
    use super::super::conv::rotated;
    use super::super::winograd::tests::{definition as reference, im2col_forward, max_abs, rand, relative_error};
    use super::*;
    use crate::rng::Rng;

    fn window(n: usize, c: usize, h: usize, w: usize) -> Window {
        Window { n, c, h, w, kh: 3, kw: 3, stride: 1, pad: 1 }
    }

    /// The definition of a 3×3 pad-1 conv and its data gradient (winograd.rs's reference, filter gradient dropped).
    fn definition(x: &[f64], w: &[f64], dy: &[f64], g: &Window, c_out: usize) -> [Vec<f64>; 2] {
        let [y, dx, _] = reference(x, w, dy, g, c_out);
        [y, dx]
    }

    /// Backward-data as the forward kernel on `dy`, as conv.rs dispatches it.
    fn backward_data<E: Element>(dy: &[E], w: &[E], g: &Window, c_out: usize, path: Path) -> Vec<E> {
        convolve(dy, &rotated(w, g.c, c_out), &Window { c: c_out, ..*g }, g.c, path)
    }

    #[test]
    fn forward_and_backward_data_match_the_definition_in_f64() {
        let mut r = Rng::new(31, 0);
        // Wide (rows of 16) and narrow (two rows of 8) blocks, sides that are
        // not a multiple of the block, odd heights, single-row and single-column
        // planes, c_in ≠ c_out with channels past the last block of 4 or 6
        // (fewer than a block, a last block overlapping the one before), many images.
        let cases = [
            (window(2, 4, 5, 8), 47),
            (window(1, 3, 6, 19), 12),
            (window(2, 3, 5, 7), 6),
            (window(3, 2, 6, 8), 5),
            (window(2, 5, 9, 17), 4),
            (window(1, 4, 7, 33), 9),
            (window(2, 5, 1, 20), 2),
            (window(2, 1, 7, 1), 3),
            (window(40, 3, 3, 5), 4),
            (window(2, 16, 16, 16), 8),
        ];
        for path in Path::all() {
            for (g, c_out) in cases {
                let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * g.c));
                let dy = rand(&mut r, g.n * c_out * g.h * g.w);
                let got = [convolve(&x, &w, &g, c_out, path), backward_data(&dy, &w, &g, c_out, path)];
                for (dir, (got, want)) in got.iter().zip(definition(&x, &w, &dy, &g, c_out)).enumerate() {
                    // Both are sums of at most 9·16 products in f64: each within
                    // 144·2⁻⁵³·Σ|terms| ≈ 2e-14·Σ|terms| of the exact sum.
                    let scale = max_abs(&want);
                    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-13 * scale), "{g:?} direction {dir}");
                }
            }
        }
    }

    /// Each output as one fused multiply-add chain over `(c_in, ky, kx)`
    /// from zero, padding taps included as zeros: what the kernel promises.
    fn chains<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize) -> Vec<T> {
        let (h, wd, c, s) = (g.h, g.w, g.c, g.stride);
        let (oh, ow) = out_grid(g);
        let mut y = vec![T::ZERO; g.n * c_out * oh * ow];
        for (i, y) in y.iter_mut().enumerate() {
            let (n, o, oy, ox) = (i / (c_out * oh * ow), i / (oh * ow) % c_out, i / ow % oh, i % ow);
            for ci in 0..c {
                for k in 0..9 {
                    let (iy, ix) = ((s * oy + k / 3).wrapping_sub(1), (s * ox + k % 3).wrapping_sub(1));
                    let v = if iy < h && ix < wd { x[((n * c + ci) * h + iy) * wd + ix] } else { T::ZERO };
                    *y = w[(o * c + ci) * 9 + k].mul_add(v, *y);
                }
            }
        }
        y
    }

    #[test]
    fn channel_blocks_cover_every_channel_with_the_fewest_computed() {
        assert_eq!(channel_blocks(3), [(0, 1), (1, 1), (2, 1)]);
        assert_eq!(channel_blocks(16), [(0, 6), (6, 6), (12, 4)]);
        assert_eq!(channel_blocks(9), [(0, 6), (5, 4)]);
        assert_eq!(channel_blocks(64).len(), 11);
        for c_out in OC..200 {
            let blocks = channel_blocks(c_out);
            let mut covered = vec![0; c_out];
            for &(start, k) in &blocks {
                assert!([OC, OC_WIDE].contains(&k) && start + k <= c_out, "{c_out}: block {start}+{k}");
                covered[start..start + k].iter_mut().for_each(|c| *c += 1);
            }
            assert!(covered.iter().all(|&c| c >= 1), "{c_out}: a channel left out");
            let computed: usize = blocks.iter().map(|&(_, k)| k).sum();
            // Even counts are exact; an odd one repeats at most 3 channels (blocks of 4 alone would).
            assert!(computed <= c_out + if c_out % 2 == 0 { 0 } else { 3 }, "{c_out}: {computed} computed");
        }
    }

    #[test]
    fn every_output_is_one_fused_chain_whatever_the_block() {
        let mut r = Rng::new(34, 0);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        // Blocks of 6 and 4 (16, 64), of 6 alone (12), of 6 and an
        // overlapping 4 (9), of 4 and an overlapping 4 (5), wide and narrow
        // planes, c_out < 4, stride 1 and 2 (odd and even sides, outputs 8 to
        // 17 wide; at stride 2, 8 wide with 7 or 8 rows, in pairs of rows).
        let halved = |g: Window| Window { stride: 2, ..g };
        for (g, c_out) in [
            (window(2, 5, 9, 17), 16),
            (window(2, 3, 8, 8), 9),
            (window(3, 4, 6, 20), 12),
            (window(2, 3, 8, 8), 64),
            (window(2, 2, 5, 8), 3),
            (halved(window(2, 3, 17, 33)), 12),
            (halved(window(2, 5, 16, 16)), 9),
            (halved(window(1, 3, 15, 15)), 5),
            (halved(window(2, 3, 13, 16)), 6),
            (halved(window(2, 4, 7, 32)), 2),
        ] {
            let (x, w) = (f32s(g.n * g.image_len(), &mut r), f32s(c_out * 9 * g.c, &mut r));
            let want = chains(&x, &w, &g, c_out);
            for path in Path::all() {
                assert!(convolve(&x, &w, &g, c_out, path) == want, "{g:?} → {c_out}, {path:?}");
            }
        }
    }

    #[test]
    fn every_copy_rounds_alike_and_the_thread_count_does_not_matter() {
        let mut r = Rng::new(32, 0);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        let cases = [
            (window(7, 6, 32, 32), 7),
            (window(9, 5, 8, 8), 6),
            (window(5, 3, 11, 13), 5),
            (Window { stride: 2, ..window(7, 5, 32, 32) }, 9),
        ];
        for (g, c_out) in cases {
            let (x, w) = (f32s(g.n * g.image_len(), &mut r), f32s(c_out * 9 * g.c, &mut r));
            let run = |threads, path| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| convolve(&x, &w, &g, c_out, path))
            };
            let one = run(1, Path::Portable);
            for path in Path::all() {
                assert!(run(1, path) == one, "{g:?}: the portable and {path:?} copies");
            }
            for threads in [2, 3] {
                assert!(run(threads, Path::widest()) == one, "{g:?}: {threads} threads");
            }
        }
    }

    /// Max |f32 − f64 definition| / max |y| of the direct kernel (forward and,
    /// at stride 1, backward-data) and of im2col + GEMM (forward), the ResNet
    /// stages' shapes and the stride-2 convs that enter stages 2 and 3.
    #[test]
    fn f32_error_stays_near_im2col() {
        let mut r = Rng::new(33, 0);
        for (c, side, stride, c_out) in [(16, 32, 1, 16), (32, 16, 1, 32), (64, 8, 1, 64), (16, 32, 2, 32), (32, 16, 2, 64)] {
            let g = Window { stride, ..window(2, c, side, side) };
            let area = side.div_ceil(stride).pow(2);
            let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * c));
            let dy = rand(&mut r, g.n * c_out * area);
            let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (xf, wf, dyf) = (f32s(&x), f32s(&w), f32s(&dy));
            let err = relative_error;
            let im2col = im2col_forward(&xf, &wf, &g, c_out);
            let path = Path::widest();
            let want = chains(&x, &w, &g, c_out);
            let mut direct = vec![err(&convolve(&xf, &wf, &g, c_out, path), &want)];
            if stride == 1 {
                let [_, dx] = definition(&x, &w, &dy, &g, c_out);
                direct.push(err(&backward_data(&dyf, &wf, &g, c_out, path), &dx));
            }
            let base = err(&im2col, &want);
            let shown: Vec<String> = direct.iter().map(|e| format!("{e:.2e}")).collect();
            eprintln!("{c}c{side} s{stride}: im2col forward {base:.2e}, direct forward/data {}", shown.join(" "));
            assert!(direct.iter().all(|&e| e < F32_ERROR), "{c}c{side} s{stride}: {direct:?} vs im2col {base:e}");
        }
    }
}
