//! The filter gradient of 3×3 pad-1 stride-1 windows whose output grid is
//! their input grid (every 3×3 conv inside a ResNet stage), summed straight
//! from `dy` and a zero-bordered copy of `x`, with no patch matrix and no
//! Winograd transforms:
//! `dw[o, c, ky, kx] = Σ_{n, oy, ox} dy[n, o, oy, ox] · x_pad[n, c, oy + ky, ox + kx]`.
//!
//! A block of [`OC`] output channels × the 3 taps of one filter row keeps 12
//! accumulators in registers, one vector of positions each: per vector of
//! outputs, 4 loads of `dy`, 3 shifted loads of `x` and 12 fused
//! multiply-adds. Each block runs over the positions of a chunk of images
//! ([`POSITIONS`]), so the `dy` rows it rereads for every input channel and
//! filter row stay in L1 (16 KiB for 4 channels in f32); the lanes are then
//! added left to right into the image group's partial sum.
//!
//! The lanes are [`Lanes`] rather than arrays left to the compiler: from
//! arrays, LLVM built the three overlapping loads of `x` out of one load
//! and shuffles, and the kernel ran at a third of the forward conv's rate.
//!
//! Every output sums in one order whatever the thread count or the copy of
//! the kernel: lane `l` takes, image after image of a chunk, the positions
//! `≡ l (mod lanes)` in row-major order with fused multiply-adds; a chunk's
//! lanes go into the partial left to right, chunk after chunk; and
//! [`in_image_groups`] adds the groups in order.

use super::conv::in_image_groups;
use super::lanes::{self, as_elements, into_scalars, Element, Lanes};
use crate::backend::Window;
use crate::error::Result;
use crate::scalar::Scalar;

/// Output channels per register block.
const OC: usize = 4;

/// Positions a block sums over before reducing its lanes: whole images, at
/// least one.
const POSITIONS: usize = 1024;

/// Whether window `g` with output grid `out` takes this path: 3×3, pad 1,
/// stride 1, output grid = input grid, rows a whole number of vectors of
/// either element type, on CPUs with AVX2 and FMA (the portable copy calls a
/// software `fma` per multiply-add). benches/conv.rs (batch 128, f32, 2
/// cores, criterion medians, old and new binaries alternated three times,
/// 2026-12-05): 16c32 3.81–3.91 against 4.78–6.06 ms (Winograd), 32c16
/// 3.94–4.13 against 4.62–6.50 ms (Winograd), 64c8 4.40–4.78 against
/// 5.89–6.32 ms (im2col + GEMM).
pub(super) fn applies(g: &Window, out: (usize, usize)) -> bool {
    let same = g.kh == 3 && g.kw == 3 && g.pad == 1 && g.stride == 1 && out == (g.h, g.w);
    same && g.w.is_multiple_of(8) && lanes::avx2_fma()
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
    filter(dy, x, g, c_out, lanes::avx2_fma())
}

fn filter_f64(dy: &[f64], x: &[f64], g: &Window, c_out: usize) -> Result<Vec<f64>> {
    filter(dy, x, g, c_out, lanes::avx2_fma())
}

/// The filter gradient in the AVX2 copy of the kernel when `vector`, else the portable one.
fn filter<E: Element>(dy: &[E], x: &[E], g: &Window, c_out: usize, vector: bool) -> Result<Vec<E>> {
    let plane = g.h * g.w;
    let chunk = POSITIONS.div_ceil(plane.max(1));
    in_image_groups(g.n, c_out * g.c * 9, |images, dw| {
        let (mut pad, mut packed) = (Vec::new(), Vec::new());
        for first in images.clone().step_by(chunk) {
            let count = chunk.min(images.end - first);
            pad_images(&x[first * g.image_len()..][..count * g.image_len()], g, &mut pad);
            let dy = &dy[first * c_out * plane..][..count * c_out * plane];
            let (dy, strides) = if count > 1 {
                pack_channels(dy, (count, c_out, plane), &mut packed);
                (&packed[..], (count * plane, plane))
            } else {
                (dy, (plane, c_out * plane))
            };
            let job = Chunk { dy, strides, pad: &pad, g, c_out, count };
            #[cfg(target_arch = "x86_64")]
            if vector {
                // SAFETY: `vector` is only set where the CPU has AVX2 and FMA.
                unsafe { chunk_avx2(&job, dw) };
                continue;
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = vector;
            job.add_into::<E::Portable>(dw);
        }
        Ok(())
    })
}

/// `dy[image, o, plane]` of `count` images as `[o, image, plane]` in
/// `packed`: a block's channels then lie in one run (16 KiB at 4 channels),
/// where in place one channel's planes of successive images lie `c_out`
/// planes apart, 16 KiB at 64 channels on 8×8, so all fall in the same few
/// L1 sets. 64c8, alternated in one binary: 4.39–4.57 against 4.62–4.92 ms.
fn pack_channels<E: Element>(dy: &[E], (count, c_out, plane): (usize, usize, usize), packed: &mut Vec<E>) {
    packed.clear();
    for o in 0..c_out {
        for i in 0..count {
            packed.extend_from_slice(&dy[(i * c_out + o) * plane..][..plane]);
        }
    }
}

/// Copies the images' planes into `pad`, `[image, c, h + 2, w + 2]`, with a
/// zero border. Every chunk writes the same interior cells, so the border
/// zeroed when `pad` first grew stays zero.
fn pad_images<E: Element>(x: &[E], g: &Window, pad: &mut Vec<E>) {
    let cols = g.w + 2;
    let padded = (g.h + 2) * cols;
    let len = x.len() / (g.h * g.w).max(1) * padded;
    if pad.len() < len {
        pad.resize(len, E::ZERO);
    }
    for (src, dst) in x.chunks_exact(g.h * g.w).zip(pad.chunks_exact_mut(padded)) {
        for (s, d) in src.chunks_exact(g.w).zip(dst[cols..].chunks_exact_mut(cols)) {
            d[1..=g.w].copy_from_slice(s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2<E: Element>(job: &Chunk<E>, dw: &mut [E]) {
    job.add_into::<E::Avx2>(dw)
}

/// A chunk of images: their `dy` and padded `x`.
struct Chunk<'a, E> {
    dy: &'a [E],
    /// Between `dy`'s planes: of one image's channels, of one channel's images.
    strides: (usize, usize),
    pad: &'a [E],
    g: &'a Window,
    c_out: usize,
    count: usize,
}

impl<E: Element> Chunk<'_, E> {
    /// Adds the chunk's filter gradient into `dw`: blocks of [`OC`] output
    /// channels, then the last channels one at a time.
    #[inline(always)]
    fn add_into<V: Lanes<E>>(&self, dw: &mut [E]) {
        let blocks = self.c_out / OC * OC;
        for o in (0..blocks).step_by(OC) {
            self.block::<V, OC>(o, dw);
        }
        for o in blocks..self.c_out {
            self.block::<V, 1>(o, dw);
        }
    }

    /// Output channels `o0..o0 + K`, every input channel and filter row.
    #[inline(always)]
    fn block<V: Lanes<E>, const K: usize>(&self, o0: usize, dw: &mut [E]) {
        let (g, plane) = (self.g, self.g.h * self.g.w);
        let (cols, c) = (g.w + 2, g.c);
        let padded = (g.h + 2) * cols;
        for ci in 0..c {
            for ky in 0..3 {
                let mut acc = [[V::zero(); 3]; K];
                for image in 0..self.count {
                    let (channel, stride) = self.strides;
                    let d = std::array::from_fn(|o| self.dy[(o0 + o) * channel + image * stride..][..plane].as_ptr());
                    let x = &self.pad[(image * c + ci) * padded + ky * cols..][..g.h * cols];
                    // The ResNet stages' widths as constants, so the row loop
                    // unrolls: 0.92–0.97× the time, alternated in one binary.
                    // SAFETY: `x` holds `h` padded rows, each of `d` a plane, and `applies` made `w` a multiple of the lanes.
                    unsafe {
                        match g.w {
                            8 => add_plane::<E, V, K>(&mut acc, d, x.as_ptr(), (g.h, 8)),
                            16 => add_plane::<E, V, K>(&mut acc, d, x.as_ptr(), (g.h, 16)),
                            32 => add_plane::<E, V, K>(&mut acc, d, x.as_ptr(), (g.h, 32)),
                            w => add_plane::<E, V, K>(&mut acc, d, x.as_ptr(), (g.h, w)),
                        }
                    };
                }
                for (o, acc) in acc.iter().enumerate() {
                    let dw = &mut dw[((o0 + o) * c + ci) * 9 + ky * 3..][..3];
                    for (d, a) in dw.iter_mut().zip(acc) {
                        *d += a.sum();
                    }
                }
            }
        }
    }
}

/// Adds `d[o][oy, ox] · x[oy, ox + kx]` over an `h × w` plane into
/// `acc[o][kx]`, a vector of positions at a time, `x`'s rows `w + 2` apart.
///
/// # Safety
/// `x` must hold `h` rows of `w + 2` elements and each of `d` `h·w`, `w` a
/// multiple of the lanes.
#[inline(always)]
unsafe fn add_plane<E: Element, V: Lanes<E>, const K: usize>(acc: &mut [[V; 3]; K], d: [*const E; K], x: *const E, (h, w): (usize, usize)) {
    let n = V::WIDTH;
    let load = |p: *const E| V::load(std::slice::from_raw_parts(p, n));
    for oy in 0..h {
        let (x, d) = (x.add(oy * (w + 2)), d.map(|d| d.add(oy * w)));
        for x0 in (0..w).step_by(n) {
            let taps: [V; 3] = std::array::from_fn(|kx| load(x.add(x0 + kx)));
            for (acc, d) in acc.iter_mut().zip(d) {
                let d = load(d.add(x0));
                for (a, &t) in acc.iter_mut().zip(&taps) {
                    *a = d.mul_add(t, *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::FILTER_GROUPS;
    use super::super::winograd::{self, tests::definition, tests::max_abs, tests::relative_error};
    use super::*;
    use crate::rng::Rng;

    /// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on
    /// the ResNet stages' shapes at 16 images (`f32_error_stays_near_winograd`).
    /// Measured, 16c32 / 32c16 / 64c8: 3.7e-7 / 1.7e-7 / 1.4e-7, Winograd's
    /// 4.4e-7 / 2.4e-7 / 2.1e-7. The bound is about three times the largest.
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

    /// The shapes the tests run: blocks of 4 and single channels past them
    /// (6, 5, 9 outputs) and fewer than a block (1, 3); rows of one, two and
    /// three f32 vectors; one chunk per group (8×8 and 4×8 planes), several
    /// chunks per group (32×32: one image each), groups of unequal size (n =
    /// 20 in groups of 3), a single image, single-row planes.
    fn cases() -> [(Window, usize); 6] {
        [
            (window(3, 5, 4, 8), 6),
            (window(20, 3, 5, 16), 5),
            (window(9, 2, 32, 32), 9),
            (window(1, 1, 1, 8), 1),
            (window(2, 4, 3, 24), 3),
            (window(17, 3, 8, 8), 4),
        ]
    }

    #[test]
    fn the_gradient_matches_the_definition_in_f64() {
        let mut r = Rng::new(41, 0);
        for (g, c_out) in cases() {
            let (x, w) = (normals(&mut r, g.n * g.image_len()), normals(&mut r, c_out * 9 * g.c));
            let dy = normals(&mut r, g.n * c_out * g.h * g.w);
            let [_, _, want] = definition(&x, &w, &dy, &g, c_out);
            // Sums of at most 20·5·16 products of normals, each within about
            // 1600·2⁻⁵³ of the exact sum relative to Σ|terms| (≈ 1600·0.64).
            let scale = max_abs(&want);
            for vector in [false, lanes::avx2_fma()] {
                let got = filter(&dy, &x, &g, c_out, vector).unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-12 * scale), "{g:?} → {c_out}, vector {vector}");
            }
        }
    }

    /// Each output by the documented order, one scalar fused multiply-add at a time.
    fn documented(dy: &[f32], x: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
        let (plane, lanes) = (g.h * g.w, 8);
        let chunk = POSITIONS.div_ceil(plane);
        let per_group = g.n.div_ceil(FILTER_GROUPS.min(g.n));
        let mut dw = vec![0.0f32; c_out * g.c * 9];
        for (i, dw) in dw.iter_mut().enumerate() {
            let (o, ci, ky, kx) = (i / (9 * g.c), i / 9 % g.c, i % 9 / 3, i % 3);
            let mut total = None;
            for group in (0..g.n).step_by(per_group) {
                let mut partial = 0.0f32;
                for first in (group..(group + per_group).min(g.n)).step_by(chunk) {
                    let mut lane = vec![0.0f32; lanes];
                    for n in first..(first + chunk).min(group + per_group).min(g.n) {
                        for p in 0..plane {
                            let (oy, ox) = (p / g.w, p % g.w);
                            let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                            let v = if iy < g.h && ix < g.w { x[((n * g.c + ci) * g.h + iy) * g.w + ix] } else { 0.0 };
                            lane[p % lanes] = dy[(n * c_out + o) * plane + p].mul_add(v, lane[p % lanes]);
                        }
                    }
                    partial += lane[1..].iter().fold(lane[0], |s, &v| s + v);
                }
                total = Some(total.map_or(partial, |t: f32| t + partial));
            }
            *dw = total.unwrap_or(0.0);
        }
        dw
    }

    #[test]
    fn every_output_sums_in_the_documented_order_on_any_thread_count() {
        let mut r = Rng::new(42, 0);
        for (g, c_out) in cases() {
            let (x, dy) = (f32s(&normals(&mut r, g.n * g.image_len())), f32s(&normals(&mut r, g.n * c_out * g.h * g.w)));
            let want = documented(&dy, &x, &g, c_out);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for vector in [false, lanes::avx2_fma()] {
                    let got = pool.install(|| filter(&dy, &x, &g, c_out, vector).unwrap());
                    assert!(got == want, "{g:?} → {c_out}: {threads} threads, vector {vector}");
                }
            }
        }
    }

    /// Max |f32 − f64 definition| / max |dw| of this kernel and of
    /// Winograd's, the path it replaces, on the ResNet stages' shapes.
    #[test]
    fn f32_error_stays_near_winograd() {
        let mut r = Rng::new(43, 0);
        for (c, side) in [(16, 32), (32, 16), (64, 8)] {
            let g = window(16, c, side, side);
            let (x, w) = (normals(&mut r, g.n * g.image_len()), normals(&mut r, c * 9 * c));
            let dy = normals(&mut r, g.n * c * side * side);
            let [_, _, want] = definition(&x, &w, &dy, &g, c);
            let (xf, dyf) = (f32s(&x), f32s(&dy));
            let direct = relative_error(&filter(&dyf, &xf, &g, c, lanes::avx2_fma()).unwrap(), &want);
            let wino = relative_error(&winograd::conv2d_backward_filter(&dyf, &xf, &g, c).unwrap(), &want);
            eprintln!("{c}c{side}: direct filter {direct:.2e}, Winograd {wino:.2e}");
            assert!(direct < F32_ERROR, "{c}c{side}: {direct:e} vs Winograd {wino:e}");
        }
    }
}
