//! Direct convolution of 3×3 stride-1 pad-1 windows (every 3×3 conv inside a
//! ResNet stage) without a patch matrix. Each input plane is copied once into
//! a zero-bordered scratch, so the inner loop has no edge tests; a block of
//! 4 or 6 output channels ([`block_channels`]) × 16 outputs (one row of 16, or two rows of 8 on
//! narrow planes) is summed in registers over `(c_in, ky, kx)`, each weight
//! broadcast against a shifted, unaligned input row. im2col instead writes a
//! `9·c_in`-row patch matrix per image and reads it back: 576 KiB per image
//! at 16 channels on 32×32, more than L2.
//!
//! Every output is one chain of fused multiply-adds in the order `(c_in, ky,
//! kx)`, whatever the block shape, the task split or the thread count, and
//! the portable and AVX2 copies of the kernel round alike.
//!
//! Backward-data is the same kernel on `dy` with the filters rotated 180° and
//! their channels swapped ([`super::conv::rotated`]).

use super::conv::Direction;
use super::lanes;
use crate::backend::Window;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on the
/// ResNet stages' shapes, two images (`tests::f32_error_stays_near_im2col`).
/// Measured, 16c32 / 32c16 / 64c8: forward 4.2e-7 / 5.2e-7 / 7.8e-7,
/// backward-data 4.9e-7 / 4.7e-7 / 9.5e-7; im2col + GEMM forward 4.2e-7 /
/// 5.2e-7 / 7.1e-7. The bound is about twice the largest.
#[cfg(test)]
const F32_ERROR: f64 = 2e-6;

/// Whether window `g` with output grid `out` takes the direct path in
/// direction `d`: 3×3 stride-1 pad-1 windows on planes at least 8 wide,
/// forward and backward-data, on CPUs with AVX2 and FMA (the portable copy
/// calls a software `fma` per multiply-add: about 100× slower in a
/// prototype). benches/conv.rs (batch 128, f32, 2 cores shared at load
/// 2.9–4.1, new/old time, medians of 6 alternated runs of the two builds):
/// forward 0.85 (16c32), 0.81 (32c16), 0.80 (64c8) against im2col;
/// backward-data 0.83 against Winograd (16c32), 0.64 / 0.77 against im2col.
/// The filter gradient stays a GEMM over images (Winograd or im2col).
pub(super) fn applies(g: &Window, out: (usize, usize), d: Direction) -> bool {
    let fits = g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1 && out == (g.h, g.w) && g.w >= 8;
    fits && d != Direction::Filter && lanes::avx2_fma()
}

/// `y[n, c_out, h, w]` of a 3×3 stride-1 pad-1 window over `x[n, c, h, w]`
/// with filters `w[c_out, c, 3, 3]`. The caller checks the lengths.
pub(super) fn conv2d<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize) -> Vec<T> {
    convolve(x, w, g, c_out, lanes::avx2_fma())
}

/// [`conv2d`] in the AVX2 copy of the kernel when `vector`, else the portable one.
fn convolve<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize, vector: bool) -> Vec<T> {
    let plane = g.h * g.w;
    let len = g.n * c_out * plane;
    if len == 0 || g.c == 0 {
        return vec![T::ZERO; len];
    }
    // Written straight into fresh memory: every output is stored once, so no zero-fill first.
    let mut y = Vec::with_capacity(len);
    let packed = pack(w, g.c, c_out, block_channels(c_out));
    let images = x.par_chunks(g.image_len()).zip(y.spare_capacity_mut()[..len].par_chunks_mut(c_out * plane));
    images.for_each_init(Vec::new, |pad, (x, y)| {
        #[cfg(target_arch = "x86_64")]
        if vector {
            // SAFETY: `vector` is only set where the CPU has AVX2 and FMA.
            return unsafe { image_avx2(x, &packed, w, g, y, pad) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = vector;
        image(x, &packed, w, g, y, pad)
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
/// A last block that does not fit is recomputed overlapping the one before,
/// so blocks of 6 only pay where they repeat at most 1/16 of the channels:
/// 64 channels (66 computed) but not 16 or 32 (18, 36 computed: 1.08–1.16×
/// the time, single-threaded).
const OC: usize = 4;
const OC_WIDE: usize = 6;

/// [`OC_WIDE`] where its overlapping last block repeats at most 1/16 of the channels, else [`OC`].
fn block_channels(c_out: usize) -> usize {
    if c_out.div_ceil(OC_WIDE) * OC_WIDE * 16 <= c_out * 17 {
        OC_WIDE
    } else {
        OC
    }
}

/// First output channel of each block of `k`: whole blocks, then one more
/// ending at the last channel (overlapping the one before) where `k` does not
/// divide `c_out`. None where `c_out < k`.
fn starts(c_out: usize, k: usize) -> impl Iterator<Item = usize> {
    let whole = if c_out >= k { c_out / k } else { 0 };
    let last = (c_out >= k && c_out % k != 0).then(|| c_out - k);
    (0..whole).map(move |b| b * k).chain(last)
}

/// The filters of each block of `k` output channels ([`starts`]) as
/// `[block, c, k, 9]`, so a block's weights for one input channel are adjacent.
fn pack<T: Scalar>(w: &[T], c: usize, c_out: usize, k: usize) -> Vec<T> {
    let mut packed = vec![T::ZERO; starts(c_out, k).count() * k * c * 9];
    for (start, dst) in starts(c_out, k).zip(packed.chunks_exact_mut(k * c * 9)) {
        for (ci, dst) in dst.chunks_exact_mut(k * 9).enumerate() {
            for (o, dst) in dst.chunks_exact_mut(9).enumerate() {
                dst.copy_from_slice(&w[((start + o) * c + ci) * 9..][..9]);
            }
        }
    }
    packed
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn image_avx2<T: Scalar>(x: &[T], packed: &[T], w: &[T], g: &Window, y: &mut [MaybeUninit<T>], pad: &mut Vec<T>) {
    image(x, packed, w, g, y, pad)
}

/// One image: blocks of [`block_channels`] output channels, each one row of
/// 16 outputs where the plane is wider than 8, two rows of 8 where it is not.
#[inline(always)]
fn image<T: Scalar>(x: &[T], packed: &[T], w: &[T], g: &Window, y: &mut [MaybeUninit<T>], pad: &mut Vec<T>) {
    let c_out = y.len() / (g.h * g.w);
    match (block_channels(c_out) == OC_WIDE, g.w > 8) {
        (false, true) => blocks::<T, OC, 1, 16>(x, packed, w, g, y, pad),
        (false, false) => blocks::<T, OC, 2, 8>(x, packed, w, g, y, pad),
        (true, true) => blocks::<T, OC_WIDE, 1, 16>(x, packed, w, g, y, pad),
        (true, false) => blocks::<T, OC_WIDE, 2, 8>(x, packed, w, g, y, pad),
    }
}

/// Copies the image's planes into `pad`, each `rows × cols` with a zero
/// border (one row above, one column left, zeros out to the last block), and
/// sums every `R × W` block of outputs of every block of `K` channels.
#[inline(always)]
fn blocks<T: Scalar, const K: usize, const R: usize, const W: usize>(
    x: &[T],
    packed: &[T],
    w: &[T],
    g: &Window,
    y: &mut [MaybeUninit<T>],
    pad: &mut Vec<T>,
) {
    let (h, wd, c) = (g.h, g.w, g.c);
    let (rows, cols) = (h.div_ceil(R) * R + 2, wd.div_ceil(W) * W + 2);
    let plane = rows * cols;
    pad.clear();
    pad.resize(c * plane, T::ZERO);
    for (src, dst) in x.chunks_exact(h * wd).zip(pad.chunks_exact_mut(plane)) {
        for (s, d) in src.chunks_exact(wd).zip(dst[cols + 1..].chunks_mut(cols)) {
            d[..wd].copy_from_slice(s);
        }
    }
    let geometry = Geometry { h, w: wd, c, plane, cols };
    let (c_out, out_plane) = (y.len() / (h * wd), h * wd);
    if c_out < K {
        for (o, y) in y.chunks_exact_mut(out_plane).enumerate() {
            channels::<T, 1, R, W>(pad, &w[o * c * 9..][..c * 9], &geometry, y);
        }
        return;
    }
    for (start, wts) in starts(c_out, K).zip(packed.chunks_exact(K * c * 9)) {
        channels::<T, K, R, W>(pad, wts, &geometry, &mut y[start * out_plane..][..K * out_plane]);
    }
}

/// An image's output plane and padded scratch.
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    /// Elements per padded plane.
    plane: usize,
    /// Elements per padded row.
    cols: usize,
}

/// The `K` output planes `y` of filters `wts[c, K, 9]`, block by block.
#[inline(always)]
fn channels<T: Scalar, const K: usize, const R: usize, const W: usize>(pad: &[T], wts: &[T], g: &Geometry, y: &mut [MaybeUninit<T>]) {
    let mut acc = [[[T::ZERO; W]; R]; K];
    for y0 in (0..g.h).step_by(R) {
        for x0 in (0..g.w).step_by(W) {
            tile(&pad[y0 * g.cols + x0..], wts, g, &mut acc);
            let n = W.min(g.w - x0);
            for (o, acc) in acc.iter().enumerate() {
                for (r, acc) in acc.iter().enumerate().take(g.h - y0) {
                    let dst = &mut y[(o * g.h + y0 + r) * g.w + x0..][..n];
                    dst.iter_mut().zip(acc).for_each(|(d, &v)| {
                        d.write(v);
                    });
                }
            }
        }
    }
}

/// The `K × R × W` outputs whose padded-input block starts at `pad[0]`, into
/// `out`. The sums live in a local array, written out once at the end, so
/// they stay in registers through the channel loop.
#[inline(always)]
fn tile<T: Scalar, const K: usize, const R: usize, const W: usize>(pad: &[T], wts: &[T], g: &Geometry, out: &mut [[[T; W]; R]; K]) {
    let mut acc = [[[T::ZERO; W]; R]; K];
    for (c, wc) in wts.chunks_exact(K * 9).enumerate().take(g.c) {
        let p = &pad[c * g.plane..][..(R + 1) * g.cols + 2 + W];
        for ky in 0..3 {
            for kx in 0..3 {
                let rows: [[T; W]; R] = std::array::from_fn(|r| p[(ky + r) * g.cols + kx..][..W].try_into().unwrap());
                for (o, acc) in acc.iter_mut().enumerate() {
                    let wv = wc[o * 9 + ky * 3 + kx];
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
    use super::*;
    use crate::backend::Gemm;
    use crate::rng::Rng;

    fn rand(r: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| r.normal()).collect()
    }

    fn window(n: usize, c: usize, h: usize, w: usize) -> Window {
        Window { n, c, h, w, kh: 3, kw: 3, stride: 1, pad: 1 }
    }

    /// The definition of a 3×3 pad-1 conv and its data gradient, one tap at a time.
    fn definition(x: &[f64], w: &[f64], dy: &[f64], g: &Window, c_out: usize) -> [Vec<f64>; 2] {
        let (h, wd, c) = (g.h, g.w, g.c);
        let (mut y, mut dx) = (vec![0.0; dy.len()], vec![0.0; x.len()]);
        for n in 0..g.n {
            for o in 0..c_out {
                for oy in 0..h {
                    for ox in 0..wd {
                        let out = ((n * c_out + o) * h + oy) * wd + ox;
                        for ci in 0..c {
                            for k in 0..9 {
                                let (iy, ix) = ((oy + k / 3).wrapping_sub(1), (ox + k % 3).wrapping_sub(1));
                                if iy < h && ix < wd {
                                    let (xi, wi) = (((n * c + ci) * h + iy) * wd + ix, (o * c + ci) * 9 + k);
                                    y[out] += w[wi] * x[xi];
                                    dx[xi] += w[wi] * dy[out];
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx]
    }

    /// Backward-data as the forward kernel on `dy`, as conv.rs dispatches it.
    fn backward_data<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize, vector: bool) -> Vec<T> {
        convolve(dy, &rotated(w, g.c, c_out), &Window { c: c_out, ..*g }, g.c, vector)
    }

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |m, x| m.max(x.abs()))
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
        for vector in [false, lanes::avx2_fma()] {
            for (g, c_out) in cases {
                let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * g.c));
                let dy = rand(&mut r, g.n * c_out * g.h * g.w);
                let got = [convolve(&x, &w, &g, c_out, vector), backward_data(&dy, &w, &g, c_out, vector)];
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
    fn chains(x: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
        let (h, wd, c) = (g.h, g.w, g.c);
        let mut y = vec![0.0f32; g.n * c_out * h * wd];
        for (i, y) in y.iter_mut().enumerate() {
            let (n, o, oy, ox) = (i / (c_out * h * wd), i / (h * wd) % c_out, i / wd % h, i % wd);
            for ci in 0..c {
                for k in 0..9 {
                    let (iy, ix) = ((oy + k / 3).wrapping_sub(1), (ox + k % 3).wrapping_sub(1));
                    let v = if iy < h && ix < wd { x[((n * c + ci) * h + iy) * wd + ix] } else { 0.0 };
                    *y = w[(o * c + ci) * 9 + k].mul_add(v, *y);
                }
            }
        }
        y
    }

    #[test]
    fn every_output_is_one_fused_chain_whatever_the_block() {
        let mut r = Rng::new(34, 0);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        // Blocks of 4 (16, 9 with an overlapping last block) and of 6 (12, 64
        // with an overlapping last block), wide and narrow planes, c_out < 4.
        for (g, c_out) in [
            (window(2, 5, 9, 17), 16),
            (window(2, 3, 8, 8), 9),
            (window(3, 4, 6, 20), 12),
            (window(2, 3, 8, 8), 64),
            (window(2, 2, 5, 8), 3),
        ] {
            let (x, w) = (f32s(g.n * g.image_len(), &mut r), f32s(c_out * 9 * g.c, &mut r));
            let want = chains(&x, &w, &g, c_out);
            for vector in [false, lanes::avx2_fma()] {
                assert!(convolve(&x, &w, &g, c_out, vector) == want, "{g:?} → {c_out}, vector {vector}");
            }
        }
    }

    #[test]
    fn both_copies_round_alike_and_the_thread_count_does_not_matter() {
        let mut r = Rng::new(32, 0);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        for (g, c_out) in [(window(7, 6, 32, 32), 7), (window(9, 5, 8, 8), 6), (window(5, 3, 11, 13), 5)] {
            let (x, w) = (f32s(g.n * g.image_len(), &mut r), f32s(c_out * 9 * g.c, &mut r));
            let run = |threads, vector| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| convolve(&x, &w, &g, c_out, vector))
            };
            let one = run(1, false);
            assert!(run(1, lanes::avx2_fma()) == one, "{g:?}: portable and AVX2 copies");
            for threads in [2, 3] {
                assert!(run(threads, lanes::avx2_fma()) == one, "{g:?}: {threads} threads");
            }
        }
    }

    /// Max |f32 − f64 definition| / max |y| of the direct kernel (forward and
    /// backward-data) and of im2col + GEMM (forward), the ResNet stages' shapes.
    #[test]
    fn f32_error_stays_near_im2col() {
        let mut r = Rng::new(33, 0);
        for (c, side) in [(16, 32), (32, 16), (64, 8)] {
            let g = window(2, c, side, side);
            let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c * 9 * c));
            let dy = rand(&mut r, g.n * c * side * side);
            let want = definition(&x, &w, &dy, &g, c);
            let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (xf, wf, dyf) = (f32s(&x), f32s(&w), f32s(&dy));
            let err = |got: &[f32], want: &[f64]| {
                let diff = got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
                diff / max_abs(want)
            };
            let cols = super::super::conv::unfold(&xf, g).unwrap();
            let area = side * side;
            let im2col: Vec<f32> = cols
                .chunks(9 * c * area)
                .flat_map(|p| super::super::gemm::matmul(&wf, p, Gemm::new(c, area, 9 * c, false, false)).unwrap())
                .collect();
            let vector = lanes::avx2_fma();
            let direct = [err(&convolve(&xf, &wf, &g, c, vector), &want[0]), err(&backward_data(&dyf, &wf, &g, c, vector), &want[1])];
            let base = err(&im2col, &want[0]);
            eprintln!("{c}c{side}: im2col forward {base:.2e}, direct forward/data {:.2e} {:.2e}", direct[0], direct[1]);
            assert!(direct.iter().all(|&e| e < F32_ERROR), "{c}c{side}: {direct:?} vs im2col {base:e}");
        }
    }
}
