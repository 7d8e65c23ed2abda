//! The filter gradient of 3×3 pad-1 windows of stride 1 (every 3×3 conv
//! inside a ResNet stage) and stride 2 (the convs that enter a stage),
//! summed straight from `dy` and a zero-bordered copy of `x`, with no patch
//! matrix and no Winograd transforms:
//! `dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · x_pad[n, c, S·oy + ky, S·ox + kx]`.
//! The inputs are broadcast one at a time, so a stride of 2 only spaces
//! their addresses.
//!
//! A vector's lanes are output channels: each image's `dy` is transposed to
//! `[position, o]` ([`super::transpose`]), and at each position a vector of
//! `dy` meets each input of the window, broadcast, in one fused
//! multiply-add per accumulator. With AVX-512 a block is two vectors of
//! output channels × 1 input channel × all 9 taps, 18 accumulators, each
//! broadcast serving two multiply-adds; on fewer than 32 output channels
//! left, one vector × 3 input channels × 9 taps, 27 accumulators, each
//! broadcast folded into its multiply-add. With AVX2's 16 registers, two
//! vectors × 2 input channels × the 3 taps of one filter row, 12
//! accumulators, each broadcast serving two multiply-adds.
//!
//! Why two vectors on AVX-512: with one, each multiply-add loaded its own
//! broadcast, one load a multiply-add (`perf`: 81% of the 64c8 kernel's
//! samples on them). Fastest of 30 calls, three alternated pairs, the
//! Intel host of 2026-12-07 17:00 (GEMM peak 290 GFLOP/s): 32c16 2.16–2.20
//! against 2.38–3.20 ms, 64c8 2.37–2.51 against 2.68–2.73, stride-2 16→32
//! 1.35–1.39 against 1.52–1.57, 32→64 1.37–1.39 against 1.53–1.56; 16c32,
//! whose 16 channels take the one-vector block, unchanged. Three vectors
//! (27 accumulators) matched two on 64c8 and left 32 channels to the
//! one-vector block.
//!
//! No lane is ever added to another, so the vector width cannot change a
//! bit. The kernel this replaced put positions in the lanes: every output
//! ended in a sum across them, so its summation order was AVX2's 8 lanes
//! and it could not take AVX-512. `kappa profile conv` (batch 128, f32,
//! medians of 7, old and new binaries alternated twice, the 2-core Intel
//! Xeon host with AVX-512, 2026-12-07): 16c32 3.07–3.08 → 1.84–1.90 ms,
//! 32c16 3.04–3.25 → 1.71–1.75 ms, 64c8 3.13 → 1.85–1.89 ms. Its AVX2
//! copy, forced on the same host, runs 5–13% slower than the old kernel
//! did (3.18–3.33 against 3.02–3.10 ms; 64c8 3.54 against 3.13 ms).
//!
//! Every output sums in one order whatever the vector width, the block or
//! the thread count: over each band of at most [`BAND`] positions (whole
//! rows of one image, or where planes are smaller, the whole planes of
//! consecutive images), one chain of fused multiply-adds in row-major order
//! from zero, image after image; the bands added into the image group's
//! partial in order; and [`in_image_groups`] adds the groups in order.

use super::conv::in_image_groups;
use super::direct::{copy_row, out_grid};
use super::lanes::{self, as_elements, into_scalars, Element, Lanes, Path, Portable};
use super::transpose::transpose;
use crate::backend::Window;
use crate::error::Result;
use crate::scalar::Scalar;
use std::ops::Range;

/// Positions of one chain of multiply-adds, at most: whole rows of one
/// image (at least one), or the whole planes of consecutive images. Short
/// chains bound the f32 error (`F32_ERROR`), and a band's `dy` (16 KiB for
/// 16 channels in f32) stays in L1 while every input channel passes over it.
const BAND: usize = 256;

/// Whether window `g` with output grid `out` takes this path: 3×3, pad 1,
/// stride 1 or 2, output rows at least 8 wide, on CPUs with AVX2 and FMA
/// (the portable copy calls a software `fma` per multiply-add). Against
/// Winograd (28×28) and im2col + GEMM (the rest), f32, medians of 7, two
/// alternated runs on the Intel host: 128c28 (16 images) 22.7 → 10.5 ms,
/// 256c14 (32) 28.6 → 26.7 ms, 32c12 (128) 2.0–2.1 → 1.0 ms, 64c20 (16)
/// 4.4 → 1.5 ms; but 512c7 (64) 81 → 87–89 ms, so rows of 7 stay on
/// im2col + GEMM. At stride 2 against im2col + GEMM, batch 128, `kappa
/// profile conv`, three runs each: 16→32 on 32×32 2.6–2.7 → 1.05–1.13 ms,
/// 32→64 on 16×16 2.0–2.1 → 1.00–1.02 ms.
pub(super) fn applies(g: &Window, out: (usize, usize)) -> bool {
    let window = g.kh == 3 && g.kw == 3 && g.pad == 1 && (g.stride == 1 || g.stride == 2);
    window && out == out_grid(g) && out.1 >= 8 && lanes::avx2_fma()
}

/// `∂L/∂w[c_out, c, 3, 3]` of the conv of `x[n, c, h, w]` given `dy[n,
/// c_out, h, w]`; None when `T` is neither f32 nor f64. The caller checks the
/// lengths and [`applies`].
pub(super) fn conv2d_backward_filter<T: Scalar>(dy: &[T], x: &[T], g: &Window, c_out: usize) -> Option<Result<Vec<T>>> {
    let dw = match (as_elements(dy), as_elements(x)) {
        (Some(dy), Some(x)) => filter_f32(dy, x, g, c_out).map(into_scalars),
        _ => filter_f64(as_elements(dy)?, as_elements(x)?, g, c_out).map(into_scalars),
    };
    dw.transpose()
}

// Not generic, so the library compiles each once and every caller runs that
// machine code (lanes.rs, "One compiled copy").
fn filter_f32(dy: &[f32], x: &[f32], g: &Window, c_out: usize) -> Result<Vec<f32>> {
    filter(dy, x, g, c_out, Path::widest())
}

fn filter_f64(dy: &[f64], x: &[f64], g: &Window, c_out: usize) -> Result<Vec<f64>> {
    filter(dy, x, g, c_out, Path::widest())
}

/// The filter gradient in `path`'s copy of the kernel.
fn filter<E: Element>(dy: &[E], x: &[E], g: &Window, c_out: usize, path: Path) -> Result<Vec<E>> {
    let (oh, ow) = out_grid(g);
    let (plane, taps) = (oh * ow, g.c * 9);
    in_image_groups(g.n, c_out * taps, |images, dw| {
        let (mut pad, mut dy_t) = (Vec::new(), Vec::new());
        // The group's partial as `[(c, ky, kx), o]`, so a block's lanes are adjacent.
        let mut part = vec![E::ZERO; taps * c_out];
        let per_chunk = (BAND / plane.max(1)).max(1);
        for first in images.clone().step_by(per_chunk) {
            let count = per_chunk.min(images.end - first);
            pad_images(&x[first * g.image_len()..][..count * g.image_len()], g, &mut pad);
            transpose_images(&dy[first * c_out * plane..][..count * c_out * plane], (c_out, plane), &mut dy_t);
            let chunk = Chunk { dy: &dy_t, pad: &pad, g, out: (oh, ow), c_out, count };
            match g.stride {
                1 => chunk.add_on::<1>(path, &mut part),
                _ => chunk.add_on::<2>(path, &mut part),
            }
        }
        transpose(&part, (taps, c_out), dw);
        Ok(())
    })
}

/// `dy[image, o, p]` of a chunk's images as `[image, p, o]`.
fn transpose_images<E: Element>(dy: &[E], (c_out, plane): (usize, usize), dy_t: &mut Vec<E>) {
    dy_t.resize(dy.len(), E::ZERO);
    for (dy, dy_t) in dy.chunks_exact(c_out * plane).zip(dy_t.chunks_exact_mut(c_out * plane)) {
        transpose(dy, (c_out, plane), dy_t);
    }
}

/// The images' planes into `pad`, `[image, c, h + 2, w + 2]`, with a zero
/// border. Every chunk writes the same interior cells, so the border zeroed
/// when `pad` first grew stays zero.
fn pad_images<E: Element>(x: &[E], g: &Window, pad: &mut Vec<E>) {
    let cols = g.w + 2;
    let padded = (g.h + 2) * cols;
    let len = x.len() / (g.h * g.w).max(1) * padded;
    if pad.len() < len {
        pad.resize(len, E::ZERO);
    }
    for (src, dst) in x.chunks_exact(g.h * g.w).zip(pad.chunks_exact_mut(padded)) {
        for (s, d) in src.chunks_exact(g.w).zip(dst[cols..].chunks_exact_mut(cols)) {
            copy_row(&mut d[1..], s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_avx512<E: Element, const S: usize>(chunk: &Chunk<E>, part: &mut [E]) {
    chunk.add_into::<E::Avx512, 2, 1, 3, 3, S>(part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2<E: Element, const S: usize>(chunk: &Chunk<E>, part: &mut [E]) {
    chunk.add_into::<E::Avx2, 2, 2, 1, 2, S>(part)
}

/// A chunk of images: their transposed `dy` and padded `x`. Several only
/// when each image's plane is smaller than a band, so that a band is
/// [`BAND`] positions whatever the plane.
struct Chunk<'a, E> {
    dy: &'a [E],
    pad: &'a [E],
    g: &'a Window,
    /// The output grid.
    out: (usize, usize),
    c_out: usize,
    count: usize,
}

impl<E: Element> Chunk<'_, E> {
    /// [`Chunk::add_into`] at stride `S` in `path`'s copy of the kernel.
    fn add_on<const S: usize>(&self, path: Path, part: &mut [E]) {
        match path {
            // SAFETY: `path` is only AVX-512 where the CPU has it (and AVX2 and FMA).
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => unsafe { chunk_avx512::<E, S>(self, part) },
            // SAFETY: `path` is only AVX2 where the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => unsafe { chunk_avx2::<E, S>(self, part) },
            _ => self.add_into::<E::Portable, 1, 1, 3, 1, S>(part),
        }
    }

    /// Adds the chunk's filter gradient at stride `S` into `part`, band by
    /// band: blocks of `OB` vectors of output channels × `CI` input
    /// channels × `KY` filter rows, then the output channels left over a
    /// vector at a time (× `NCI` input channels), then one at a time.
    #[inline(always)]
    fn add_into<V: Lanes<E>, const OB: usize, const CI: usize, const KY: usize, const NCI: usize, const S: usize>(&self, part: &mut [E]) {
        let ((h, w), n) = (self.out, V::WIDTH);
        let rows = (BAND / w).max(1);
        let (wide, narrow) = (self.c_out / (OB * n) * OB * n, self.c_out / n * n);
        for y0 in (0..h).step_by(rows) {
            let band = y0..(y0 + rows).min(h);
            for o in (0..wide).step_by(OB * n) {
                self.channels::<V, OB, CI, KY, S>(o, band.clone(), part);
            }
            for o in (wide..narrow).step_by(n) {
                self.channels::<V, 1, NCI, KY, S>(o, band.clone(), part);
            }
            for o in narrow..self.c_out {
                self.channels::<Portable<E, 1>, 1, 1, 3, S>(o, band.clone(), part);
            }
        }
    }

    /// Output channels `o0..o0 + OB·V::WIDTH`, every input channel and filter row.
    #[inline(always)]
    fn channels<V: Lanes<E>, const OB: usize, const CI: usize, const KY: usize, const S: usize>(
        &self,
        o0: usize,
        band: Range<usize>,
        part: &mut [E],
    ) {
        let deep = self.g.c / CI * CI;
        for ky in (0..3).step_by(KY) {
            for c in (0..deep).step_by(CI) {
                self.block::<V, OB, CI, KY, S>([o0, c, ky], band.clone(), part);
            }
            for c in deep..self.g.c {
                self.block::<V, OB, 1, KY, S>([o0, c, ky], band.clone(), part);
            }
        }
    }

    /// Output channels from `o0` × input channels from `c0` × filter rows
    /// from `ky0` over rows `band`, added into `part`.
    #[inline(always)]
    fn block<V: Lanes<E>, const OB: usize, const CI: usize, const KY: usize, const S: usize>(
        &self,
        [o0, c0, ky0]: [usize; 3],
        band: Range<usize>,
        part: &mut [E],
    ) {
        // The wider ResNet stages' widths as constants, so the row loop
        // unrolls. Not 8: unrolled there, AVX2's block spilled registers
        // (64c8 4.3 against 3.5 ms), more than the 3–7% AVX-512 gained.
        let acc = match self.out.1 {
            16 => self.chains::<V, OB, CI, KY, S, 16>([o0, c0, ky0], band),
            32 => self.chains::<V, OB, CI, KY, S, 32>([o0, c0, ky0], band),
            _ => self.chains::<V, OB, CI, KY, S, 0>([o0, c0, ky0], band),
        };
        for (b, acc) in acc.iter().enumerate() {
            for (i, acc) in acc.iter().enumerate() {
                for (t, a) in acc.iter().flatten().enumerate() {
                    let mut lanes = [E::ZERO; 16];
                    a.store(&mut lanes);
                    let at = ((c0 + i) * 9 + ky0 * 3 + t) * self.c_out + o0 + b * V::WIDTH;
                    part[at..][..V::WIDTH].iter_mut().zip(lanes).for_each(|(p, l)| *p += l);
                }
            }
        }
    }

    /// The chains of [`Chunk::block`] over output rows `W` wide (0: the
    /// output grid's), each from zero: `acc[b][i][r][kx]` for output vector
    /// `b`, input channel `c0 + i`, filter row `ky0 + r`. At stride `S`,
    /// output `(oy, ox)` meets padded input `(S·oy + ky, S·ox + kx)`.
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn chains<V: Lanes<E>, const OB: usize, const CI: usize, const KY: usize, const S: usize, const W: usize>(
        &self,
        [o0, c0, ky0]: [usize; 3],
        band: Range<usize>,
    ) -> [[[[V; 3]; KY]; CI]; OB] {
        let (g, n) = (self.g, V::WIDTH);
        let (oh, w) = (self.out.0, if W == 0 { self.out.1 } else { W });
        let (cols, rows) = (g.w + 2, band.len());
        let c_out = self.c_out;
        let mut acc = [[[[V::zero(); 3]; KY]; CI]; OB];
        for image in 0..self.count {
            // The band's `dy` and each channel's padded rows, checked once here.
            let dy = &self.dy[(image * oh + band.start) * w * c_out + o0..][..(rows * w - 1) * c_out + OB * n];
            let pad: [&[E]; CI] = std::array::from_fn(|i| {
                let first = (image * g.c + c0 + i) * (g.h + 2) + S * band.start + ky0;
                &self.pad[first * cols..][..(S * (rows - 1) + KY) * cols]
            });
            for row in 0..rows {
                let d = dy[row * w * c_out..].as_ptr();
                let x: [*const E; CI] = std::array::from_fn(|i| pad[i][S * row * cols..].as_ptr());
                for ox in 0..w {
                    // SAFETY: `d` holds the row's `w` runs of `OB` vectors,
                    // `c_out` apart, and each of `x` the `KY` padded rows,
                    // whose last column read, `S·(w − 1) + 2`, is inside
                    // the `g.w + 2` of a padded row.
                    unsafe {
                        let d: [V; OB] = std::array::from_fn(|b| V::load(std::slice::from_raw_parts(d.add(ox * c_out + b * n), n)));
                        for (i, x) in x.iter().enumerate() {
                            for r in 0..KY {
                                for kx in 0..3 {
                                    let v = V::splat(*x.add(r * cols + S * ox + kx));
                                    for (acc, d) in acc.iter_mut().zip(&d) {
                                        acc[i][r][kx] = d.mul_add(v, acc[i][r][kx]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::{im2col_backward_filter, FILTER_GROUPS};
    use super::super::winograd::{self, tests::definition, tests::max_abs, tests::relative_error};
    use super::*;
    use crate::rng::Rng;

    /// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on
    /// the ResNet stages' shapes at 16 images
    /// (`f32_error_stays_near_the_path_it_replaced`). Measured, 16c32 /
    /// 32c16 / 64c8: 3.9e-7 / 3.2e-7 / 2.4e-7 (chains of 256 positions; with
    /// positions in 8 lanes, 3.7e-7 / 1.7e-7 / 1.4e-7), Winograd's 4.4e-7 /
    /// 2.4e-7 / 2.1e-7; stride 2, 16→32 on 32×32 / 32→64 on 16×16: 3.2e-7 /
    /// 2.4e-7, im2col + GEMM's 3.2e-7 / 1.6e-7. The bound is about 2.5 times
    /// the largest.
    const F32_ERROR: f64 = 1e-6;

    fn window(n: usize, c: usize, h: usize, w: usize) -> Window {
        Window { n, c, h, w, kh: 3, kw: 3, stride: 1, pad: 1 }
    }

    fn normals(r: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| r.normal()).collect()
    }

    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&a| a as f32).collect()
    }

    /// The shapes the tests run. Output channels: 21 and 40 (whole blocks,
    /// then a vector left over or single channels), 9 (a vector and one),
    /// fewer than a vector (1, 3, 4, 5). Input channels: 5 (blocks of 3 or
    /// 2, then the rest one at a time) and 1 to 4. Planes: several images a
    /// chunk (4×8, 5×16, 3×13, 8×8), one image in four bands (32×32), a
    /// single row; rows of the widths unrolled (16, 32) and others. Groups
    /// of unequal size (n = 20 in groups of 3), a single image. Stride 2 on
    /// even and odd sides, outputs 8, 16 (unrolled) and 17 wide, one image
    /// in two bands.
    fn cases() -> [(Window, usize); 10] {
        let halved = |g: Window| Window { stride: 2, ..g };
        [
            (window(3, 5, 4, 8), 21),
            (window(20, 3, 5, 16), 5),
            (window(9, 2, 32, 32), 9),
            (window(1, 1, 1, 8), 1),
            (window(2, 4, 3, 13), 40),
            (window(17, 3, 8, 8), 4),
            (halved(window(3, 5, 16, 16)), 21),
            (halved(window(2, 3, 17, 33)), 9),
            (halved(window(4, 2, 15, 32)), 5),
            (halved(window(2, 4, 32, 64)), 17),
        ]
    }

    fn out_len(g: &Window, c_out: usize) -> usize {
        let (oh, ow) = out_grid(g);
        g.n * c_out * oh * ow
    }

    #[test]
    fn the_gradient_matches_the_definition_in_f64() {
        let mut r = Rng::new(41, 0);
        for (g, c_out) in cases() {
            let (x, w) = (normals(&mut r, g.n * g.image_len()), normals(&mut r, c_out * 9 * g.c));
            let dy = normals(&mut r, out_len(&g, c_out));
            let [_, _, want] = definition(&x, &w, &dy, &g, c_out);
            // Sums of at most 20·5·16 products of normals, each within about
            // 1600·2⁻⁵³ of the exact sum relative to Σ|terms| (≈ 1600·0.64).
            let scale = max_abs(&want);
            for path in Path::all() {
                let got = filter(&dy, &x, &g, c_out, path).unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-12 * scale), "{g:?} → {c_out}, {path:?}");
            }
        }
    }

    /// Each output by the documented order, one scalar fused multiply-add at a time.
    fn documented(dy: &[f32], x: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
        let (oh, ow) = out_grid(g);
        let (plane, rows) = (oh * ow, (BAND / ow).max(1));
        let per_group = g.n.div_ceil(FILTER_GROUPS.min(g.n));
        let mut dw = vec![0.0f32; c_out * g.c * 9];
        for (i, dw) in dw.iter_mut().enumerate() {
            let (o, ci, ky, kx) = (i / (9 * g.c), i / 9 % g.c, i % 9 / 3, i % 3);
            let mut total = None;
            for group in (0..g.n).step_by(per_group) {
                let mut partial = 0.0f32;
                let end = (group + per_group).min(g.n);
                for first in (group..end).step_by((BAND / plane).max(1)) {
                    let images = first..(first + (BAND / plane).max(1)).min(end);
                    for y0 in (0..oh).step_by(rows) {
                        let mut chain = 0.0f32;
                        for n in images.clone() {
                            for p in y0 * ow..((y0 + rows) * ow).min(plane) {
                                let (oy, ox) = (p / ow, p % ow);
                                let (iy, ix) = ((oy * g.stride + ky).wrapping_sub(1), (ox * g.stride + kx).wrapping_sub(1));
                                let v = if iy < g.h && ix < g.w { x[((n * g.c + ci) * g.h + iy) * g.w + ix] } else { 0.0 };
                                chain = dy[(n * c_out + o) * plane + p].mul_add(v, chain);
                            }
                        }
                        partial += chain;
                    }
                }
                total = Some(total.map_or(partial, |t: f32| t + partial));
            }
            *dw = total.unwrap_or(0.0);
        }
        dw
    }

    #[test]
    fn every_output_sums_in_the_documented_order_on_any_copy_and_thread_count() {
        let mut r = Rng::new(42, 0);
        for (g, c_out) in cases() {
            let (x, dy) = (f32s(&normals(&mut r, g.n * g.image_len())), f32s(&normals(&mut r, out_len(&g, c_out))));
            let want = documented(&dy, &x, &g, c_out);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for path in Path::all() {
                    let got = pool.install(|| filter(&dy, &x, &g, c_out, path).unwrap());
                    assert!(got == want, "{g:?} → {c_out}: {threads} threads, {path:?}");
                }
            }
        }
    }

    /// Max |f32 − f64 definition| / max |dw| of this kernel and of the path
    /// it replaces (Winograd at stride 1, im2col + GEMM at stride 2), on the
    /// ResNet stages' shapes and the stride-2 convs that enter stages 2 and 3.
    #[test]
    fn f32_error_stays_near_the_path_it_replaced() {
        let mut r = Rng::new(43, 0);
        for (c, side, stride, c_out) in [(16, 32, 1, 16), (32, 16, 1, 32), (64, 8, 1, 64), (16, 32, 2, 32), (32, 16, 2, 64)] {
            let g = Window { stride, ..window(16, c, side, side) };
            let (x, w) = (normals(&mut r, g.n * g.image_len()), normals(&mut r, c_out * 9 * c));
            let dy = normals(&mut r, out_len(&g, c_out));
            let [_, _, want] = definition(&x, &w, &dy, &g, c_out);
            let (xf, dyf) = (f32s(&x), f32s(&dy));
            let direct = relative_error(&filter(&dyf, &xf, &g, c_out, Path::widest()).unwrap(), &want);
            let before = match stride {
                1 => winograd::conv2d_backward_filter(&dyf, &xf, &g, c_out),
                _ => im2col_backward_filter(&dyf, &xf, &g, c_out, out_grid(&g)),
            };
            let before = relative_error(&before.unwrap(), &want);
            eprintln!("{c}c{side} s{stride}: direct filter {direct:.2e}, before {before:.2e}");
            assert!(direct < F32_ERROR, "{c}c{side} s{stride}: {direct:e} vs {before:e} before");
        }
    }
}
