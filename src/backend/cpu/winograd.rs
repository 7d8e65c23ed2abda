//! Winograd F(2×2, 3×3) for 3×3 stride-1 windows whose output grid is their
//! input grid (pad 1, every 3×3 conv inside a ResNet stage). A 2×2 output
//! tile is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` of the 4×4 input tile `d` around it:
//! 16 multiplies per tile and channel pair where im2col spends 36. Summed
//! over input channels, the elementwise products are 16 GEMMs, one per
//! transform element `e`, over the tiles of several images side by side.
//! Tiles past an odd edge read zero input and their outputs are dropped.
//!
//! Backward-data is the forward conv of `dy` with the filters rotated 180°
//! and their channels swapped; backward-filter is the adjoint by linearity:
//! `dg = Gᵀ[Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)]G`.
//!
//! Only the backward directions at the larger planes are dispatched here
//! (see [`applies`]); f32 error against the f64 definition: [`F32_ERROR`].

use super::conv::{in_image_groups, rotated, Direction};
use super::gemm::gemm_on_thread;
use super::lanes::{self, wide};
use super::row_dots::{add_row_dots, lane_sums, LANES};
use crate::backend::{Gemm, Window};
use crate::error::Result;
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on the
/// ResNet stages' shapes, two images (`tests::f32_error_stays_near_im2col`).
/// Measured, 16c32 / 32c16 / 64c8: forward 2.2e-7 / 2.4e-7 / 3.9e-7,
/// backward-data 2.0e-7 / 3.0e-7 / 3.1e-7, backward-filter 3.4e-7 / 2.0e-7 /
/// 1.9e-7 (its GEMMs as [`super::row_dots`], spare tiles included; 2.4e-7 /
/// 3.2e-7 / 2.4e-7 as GEMMs); im2col + GEMM forward 4.6e-7 / 7.1e-7 / 8.5e-7.
#[cfg(test)]
const F32_ERROR: f64 = 1e-6;

/// Transform elements per tile (4×4).
const E: usize = 16;

/// Tiles per GEMM: images are batched until their tiles reach this many, so
/// the GEMMs are wide while the transformed tiles of a task (`16·(c_in +
/// c_out)·TILES` elements, 2 MiB at 64 channels in f32) stay in L2/L3.
const TILES: usize = 256;

/// Whether window `g` with output grid `out` takes the Winograd path in
/// direction `d`: only where benches/conv.rs (batch 128, f32, 2 shared
/// cores, new/old time, medians of 3–6 interleaved runs, ±20% noise) did not
/// measure it slower than im2col. Forward: 1.17 (16c32), 1.1 (32c16), 1.2
/// (64c8), so never: the transforms, memory-bound, cost more than the GEMM
/// flops they save (f32 forward and backward-data on 8×8 and 16×16 planes
/// with AVX-512 go to [`super::winograd_lanes`], whose transforms are whole
/// registers). Backward-data 0.96 / 1.2 / 0.95: 32×32 planes only, and
/// only on CPUs without AVX2 and FMA, where [`super::direct`] does not take it.
/// Backward-filter 0.68 / 0.9 / 0.98: planes of 16×16 and up, where
/// [`super::direct_filter`] does not take them first (rows narrower than 8,
/// or no AVX2 and FMA).
pub(super) fn applies(g: &Window, out: (usize, usize), d: Direction) -> bool {
    let plane = g.h * g.w;
    let fits = g.kh == 3 && g.kw == 3 && g.stride == 1 && out == (g.h, g.w);
    fits && match d {
        Direction::Forward => false,
        Direction::Data => plane >= 1024,
        Direction::Filter => plane >= 256,
    }
}

/// A window's tile grid and how many images one task batches. A tile row
/// is stored [`Tiling::cols`] tiles long, one more than the grid: with the
/// spare tile, each of the transforms' sums runs over every tile row of a
/// plane as one long vector loop, where a tile row took 24 loops of 16 or
/// 17 elements at 32×32. The GEMMs do one tile in 17 (32×32) or 9 (16×16)
/// more. The adjoint transform leaves the spare tiles zero, so they add
/// nothing to the filter gradient. benches/conv.rs (batch 128, f32, 2 cores)
/// alternated with the grid-wide rows, three runs: backward-filter 16c32
/// 4.4–6.0 against 6.2–7.6 ms, 32c16 4.5–5.1 against 6.3–7.6 ms.
#[derive(Clone, Copy)]
struct Tiling {
    th: usize,
    tw: usize,
    images: usize,
}

impl Tiling {
    fn new(g: &Window) -> Self {
        let (th, tw) = (g.h.div_ceil(2), g.w.div_ceil(2));
        Tiling { th, tw, images: (TILES / (th * tw)).clamp(1, g.n.max(1)) }
    }

    /// Tiles stored per tile row, the spare included.
    fn cols(&self) -> usize {
        self.tw + 1
    }

    fn per_image(&self) -> usize {
        self.th * self.cols()
    }
}

/// `G g Gᵀ` of every 3×3 filter of `w[c_out, c_in, 3, 3]`, stored `[e, c_out, c_in]`.
pub(super) fn filter_transform<T: Scalar>(w: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    let mut u = vec![T::ZERO; E * c_out * c_in];
    for (oc, g) in w.chunks_exact(9).enumerate() {
        // G·g, then (G·g)·Gᵀ; G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
        let mut gg = [[T::ZERO; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = a;
            gg[1][j] = half * (a + b + c);
            gg[2][j] = half * (a - b + c);
            gg[3][j] = c;
        }
        for (i, r) in gg.iter().enumerate() {
            let v = [r[0], half * (r[0] + r[1] + r[2]), half * (r[0] - r[1] + r[2]), r[2]];
            for (j, v) in v.into_iter().enumerate() {
                u[(i * 4 + j) * c_out * c_in + oc] = v;
            }
        }
    }
    u
}

/// `Gᵀ m G` of every 4×4 `m` stored `[e, c_out, c_in]`, into `dw[c_out, c_in, 3, 3]`:
/// the adjoint of [`filter_transform`].
fn filter_transform_adjoint<T: Scalar>(m: &[T], pairs: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    let mut dw = vec![T::ZERO; pairs * 9];
    for (oc, dg) in dw.chunks_exact_mut(9).enumerate() {
        let at = |i: usize, j: usize| m[(i * 4 + j) * pairs + oc];
        // Gᵀ·m, then (Gᵀ·m)·G; Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1].
        let gm: [[T; 4]; 3] = [
            std::array::from_fn(|j| at(0, j) + half * (at(1, j) + at(2, j))),
            std::array::from_fn(|j| half * (at(1, j) - at(2, j))),
            std::array::from_fn(|j| half * (at(1, j) + at(2, j)) + at(3, j)),
        ];
        for (i, r) in gm.iter().enumerate() {
            dg[i * 3] = r[0] + half * (r[1] + r[2]);
            dg[i * 3 + 1] = half * (r[1] - r[2]);
            dg[i * 3 + 2] = half * (r[1] + r[2]) + r[3];
        }
    }
    dw
}

/// `out[t] = f(a[t], …)`: the transforms run along a tile row, one
/// contiguous lane per transform element, so these loops vectorise.
#[inline(always)]
fn map<T: Scalar>(out: &mut [T], a: &[T], f: impl Fn(T) -> T) {
    out.iter_mut().zip(a).for_each(|(o, &a)| *o = f(a));
}

#[inline(always)]
fn map2<T: Scalar>(out: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(a, b));
}

#[inline(always)]
fn map3<T: Scalar>(out: &mut [T], a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) {
    out.iter_mut().zip(a.iter().zip(b).zip(c)).for_each(|(o, ((&a, &b), &c))| *o = f(a, b, c));
}

/// Copies an `h×w` plane into `dst`, `top` rows down and, with `left`, one
/// column right, as four `slots × cols` blocks `[column parity, row
/// parity]`: row `R`, column `C` lands at `(R/2, C/2)` of block `(C % 2,
/// R % 2)`, so a tile's row `2ty + i` and column `2tx + j` are row `ty + i/2`
/// and column `tx + j/2` of their blocks. The rest of `dst` stays zero.
#[inline(always)]
fn deinterleave<T: Scalar>(plane: &[T], w: usize, (top, left): (usize, bool), dst: &mut [T], (slots, cols): (usize, usize)) {
    let (even, odd) = dst.split_at_mut(2 * slots * cols);
    for (r, src) in plane.chunks_exact(w).enumerate() {
        let row = r + top;
        let at = ((row % 2) * slots + row / 2) * cols;
        // Source columns 2k and 2k + 1 land in `first[k]` and `second[k]`.
        let (first, second) = if left {
            (&mut odd[at..at + cols], &mut even[at + 1..at + cols])
        } else {
            (&mut even[at..at + cols], &mut odd[at..at + cols])
        };
        // Indexed, the bounds fixed up front, so the loop vectorises: 1024
        // planes of 32×32 in 0.28–0.45 ms against 0.40–0.63 as pairs of
        // scalars (16×16: 0.14–0.21 against 0.13–0.20).
        if w % 2 == 1 {
            first[w / 2] = src[w - 1];
        }
        let pairs = w / 2;
        let (src, first, second) = (&src[..2 * pairs], &mut first[..pairs], &mut second[..pairs]);
        for k in 0..pairs {
            first[k] = src[2 * k];
            second[k] = src[2 * k + 1];
        }
    }
}

/// `Bᵀ d B` of every tile of the `h×w` planes of `images` (`[image, c, h, w]`)
/// into `v[e, c, tile]`, tile `image·th·cols + ty·cols + tx` of `tiles`
/// columns (a spare tile ends each tile row, see [`Tiling`]).
#[inline(always)]
fn input_transform<T: Scalar>(images: &[T], (h, w): (usize, usize), t: Tiling, v: &mut [T], tiles: usize, pad: &mut Vec<T>) {
    // The plane padded (one zero row above, one zero column left) in its four
    // parity blocks of th + 1 rows; `span` is every tile row, spares included.
    let (slots, cols) = (t.th + 1, t.cols());
    let (block, span) = (slots * cols, t.th * cols);
    pad.clear();
    // Then the sums down the columns, each with one zero past its end: a
    // last spare tile's right neighbour.
    pad.resize(4 * block + 8 * (span + 1), T::ZERO);
    let (pad, vert) = pad.split_at_mut(4 * block);
    let channels = v.len() / (E * tiles);
    for (p, plane) in images.chunks_exact(h * w).enumerate() {
        deinterleave(plane, w, (1, true), pad, (slots, cols));
        let (image, c) = (p / channels, p % channels);
        // Bᵀ·d down the columns, each column parity, every tile row at once: a
        // tile row's padded rows 2ty..2ty + 4 are rows ty and ty + 1 of the even
        // and the odd row block. Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
        for parity in 0..2 {
            let (even_rows, odd_rows) = pad[2 * parity * block..][..2 * block].split_at(block);
            let r: [&[T]; 4] = [&even_rows[..span], &odd_rows[..span], &even_rows[cols..][..span], &odd_rows[cols..][..span]];
            let b = |i: usize| (parity * 4 + i) * (span + 1);
            let (b0, rest) = vert[b(0)..b(4)].split_at_mut(span + 1);
            let (b1, rest) = rest.split_at_mut(span + 1);
            let (b2, b3) = rest.split_at_mut(span + 1);
            map2(b0, r[0], r[2], |a, c| a - c);
            map2(b1, r[1], r[2], |a, c| a + c);
            map2(b2, r[2], r[1], |a, c| a - c);
            map2(&mut b3[..span], r[1], r[3], |a, c| a - c);
        }
        // ·B along the rows: columns 0..4 of a tile are even[tx], odd[tx], even[tx + 1], odd[tx + 1].
        let base = image * t.per_image();
        for i in 0..4 {
            let (even, odd) = (&vert[i * (span + 1)..][..span + 1], &vert[(4 + i) * (span + 1)..][..span + 1]);
            let (e0, e1, o0, o1) = (&even[..span], &even[1..], &odd[..span], &odd[1..]);
            let at = |j: usize| ((i * 4 + j) * channels + c) * tiles + base;
            map2(&mut v[at(0)..][..span], e0, e1, |a, b| a - b);
            map2(&mut v[at(1)..][..span], o0, e1, |a, b| a + b);
            map2(&mut v[at(2)..][..span], e1, o0, |a, b| a - b);
            map2(&mut v[at(3)..][..span], o0, o1, |a, b| a - b);
        }
    }
}

/// `Aᵀ m A` of every tile of `m[e, c_out, tile]` onto the `h×w` output planes
/// (`[image, c_out, h, w]`), dropping outputs past the grid.
#[inline(always)]
fn output_transform<T: Scalar>(m: &[T], (h, w): (usize, usize), t: Tiling, tiles: usize, y: &mut [T], tmp: &mut Vec<T>) {
    let tw = t.tw;
    tmp.resize(8 * tw, T::ZERO);
    let channels = m.len() / (E * tiles);
    for (p, plane) in y.chunks_exact_mut(h * w).enumerate() {
        let (image, c) = (p / channels, p % channels);
        for ty in 0..t.th {
            let base = image * t.per_image() + ty * t.cols();
            let lane = |i: usize, j: usize| &m[((i * 4 + j) * channels + c) * tiles + base..][..tw];
            // Aᵀ·m down the columns: Aᵀ = [1 1 1 0; 0 1 −1 −1]; row i, column j at tmp[(4i + j)·tw..].
            for (j, pair) in tmp.chunks_exact_mut(tw).take(4).enumerate() {
                map3(pair, lane(0, j), lane(1, j), lane(2, j), |a, b, c| a + b + c);
            }
            for (j, pair) in tmp.chunks_exact_mut(tw).skip(4).enumerate() {
                map3(pair, lane(1, j), lane(2, j), lane(3, j), |a, b, c| a - b - c);
            }
            // ·A along the rows, interleaving the tile columns.
            for i in 0..2.min(h - 2 * ty) {
                let a: [&[T]; 4] = std::array::from_fn(|j| &tmp[(4 * i + j) * tw..][..tw]);
                let row = &mut plane[(2 * ty + i) * w..][..w];
                let (pairs, tail) = row.split_at_mut(w / 2 * 2);
                for (out, (((&a0, &a1), &a2), &a3)) in pairs.chunks_exact_mut(2).zip(a[0].iter().zip(a[1]).zip(a[2]).zip(a[3])) {
                    (out[0], out[1]) = (a0 + a1 + a2, a1 - a2 - a3);
                }
                if let Some(last) = tail.first_mut() {
                    *last = a[0][w / 2] + a[1][w / 2] + a[2][w / 2];
                }
            }
        }
    }
}

/// `A dY Aᵀ` of every 2×2 tile of the `h×w` output-gradient planes into
/// `v[e, c_out, tile]`, with zero gradient past the grid and in the spare
/// tiles: the adjoint of [`output_transform`].
#[inline(always)]
fn output_transform_adjoint<T: Scalar>(dy: &[T], (h, w): (usize, usize), t: Tiling, v: &mut [T], tiles: usize, pad: &mut Vec<T>) {
    // The plane in its four parity blocks of th rows, a zero column right
    // (the spare tiles); `span` is every tile row.
    let span = t.th * t.cols();
    pad.clear();
    pad.resize(4 * span + 8 * span, T::ZERO);
    let (pad, vert) = pad.split_at_mut(4 * span);
    let channels = v.len() / (E * tiles);
    for (p, plane) in dy.chunks_exact(h * w).enumerate() {
        deinterleave(plane, w, (0, false), pad, (t.th, t.cols()));
        let (image, c) = (p / channels, p % channels);
        // A·dY down the columns, each column parity, every tile row at once:
        // rows d0, d0 + d1, d0 − d1, −d1 of a tile row's rows d0 (even block) and d1 (odd).
        for parity in 0..2 {
            let (d0, d1) = pad[2 * parity * span..][..2 * span].split_at(span);
            let (a, rest) = vert[parity * 4 * span..][..4 * span].split_at_mut(span);
            let (a1, rest) = rest.split_at_mut(span);
            let (a2, a3) = rest.split_at_mut(span);
            a.copy_from_slice(d0);
            map2(a1, d0, d1, |p, q| p + q);
            map2(a2, d0, d1, |p, q| p - q);
            map(a3, d1, |q| -q);
        }
        // ·Aᵀ along the rows, the same combinations of the even and odd column.
        let base = image * t.per_image();
        for i in 0..4 {
            let (even, odd) = (&vert[i * span..][..span], &vert[(4 + i) * span..][..span]);
            let at = |j: usize| ((i * 4 + j) * channels + c) * tiles + base;
            v[at(0)..][..span].copy_from_slice(even);
            map2(&mut v[at(1)..][..span], even, odd, |p, q| p + q);
            map2(&mut v[at(2)..][..span], even, odd, |p, q| p - q);
            map(&mut v[at(3)..][..span], odd, |q| -q);
        }
    }
}

/// Scratch one task reuses across its batches.
#[derive(Default)]
struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    pad: Vec<T>,
    tmp: Vec<T>,
}

/// `y[n, c_out, h, w]` of the transformed filters `u[e, c_out, c_in]` over `x[n, c_in, h, w]`.
fn convolve<T: Scalar>(x: &[T], u: &[T], g: &Window, c_out: usize) -> Result<Vec<T>> {
    let plane = g.h * g.w;
    let mut y = vec![T::ZERO; g.n * c_out * plane];
    if y.is_empty() || g.c == 0 {
        return Ok(y);
    }
    let t = Tiling::new(g);
    let xs = x.par_chunks(t.images * g.c * plane);
    let ys = y.par_chunks_mut(t.images * c_out * plane);
    xs.zip(ys).try_for_each_init(Scratch::default, |s, (x, y)| {
        let tiles = x.len() / (g.c * plane) * t.per_image();
        s.v.resize(E * g.c * tiles, T::ZERO);
        s.m.resize(E * c_out * tiles, T::ZERO);
        // The transforms only add, subtract and halve, which round alike at
        // any vector width: AVX2 runs them 8 f32 wide instead of 4.
        wide!(input_transform(x, (g.h, g.w), t, &mut s.v, tiles, &mut s.pad));
        for e in 0..E {
            let (u, v) = (&u[e * c_out * g.c..][..c_out * g.c], &s.v[e * g.c * tiles..][..g.c * tiles]);
            gemm_on_thread(u, v, &mut s.m[e * c_out * tiles..][..c_out * tiles], Gemm::new(c_out, tiles, g.c, false, false))?;
        }
        wide!(output_transform(&s.m, (g.h, g.w), t, tiles, y, &mut s.tmp));
        Ok(())
    })?;
    Ok(y)
}

/// The forward conv of a 3×3 pad-1 window: the tests' reference for the two
/// backward directions, not dispatched (slower than im2col, see [`applies`]).
#[cfg(test)]
fn conv2d<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize) -> Result<Vec<T>> {
    convolve(x, &filter_transform(w, c_out, g.c), g, c_out)
}

/// [`super::conv::conv2d_backward_data`] for a window that [`applies`]: the
/// forward conv of `dy` with `w` rotated 180°, input and output channels swapped.
pub(super) fn conv2d_backward_data<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize) -> Result<Vec<T>> {
    convolve(dy, &filter_transform(&rotated(w, g.c, c_out), g.c, c_out), &Window { c: c_out, ..*g }, g.c)
}

/// [`super::conv::conv2d_backward_filter`] for a window that [`applies`]:
/// `Σ_tiles (A dY Aᵀ)_e·(Bᵀ d B)_eᵀ` as 16 GEMMs per batch of images, in
/// fixed image groups, then `Gᵀ·G`.
pub(super) fn conv2d_backward_filter<T: Scalar>(dy: &[T], x: &[T], g: &Window, c_out: usize) -> Result<Vec<T>> {
    let (plane, pairs) = (g.h * g.w, c_out * g.c);
    if g.n == 0 || plane == 0 || pairs == 0 {
        return Ok(vec![T::ZERO; pairs * 9]);
    }
    let t = Tiling::new(g);
    // Each transform element's GEMM is a block of row dot products, their
    // lanes kept apart until every image is in (see [`super::row_dots`]).
    let dots = lanes::avx2_fma();
    let width = if dots { LANES } else { 1 };
    let acc = in_image_groups(g.n, E * pairs * width, |images, acc| {
        let mut s = Scratch::default();
        for first in images.clone().step_by(t.images) {
            let count = t.images.min(images.end - first);
            let tiles = count * t.per_image();
            s.v.resize(E * g.c * tiles, T::ZERO);
            s.m.resize(E * c_out * tiles, T::ZERO);
            let x = &x[first * g.c * plane..][..count * g.c * plane];
            let dy = &dy[first * c_out * plane..][..count * c_out * plane];
            wide!(input_transform(x, (g.h, g.w), t, &mut s.v, tiles, &mut s.pad));
            wide!(output_transform_adjoint(dy, (g.h, g.w), t, &mut s.m, tiles, &mut s.pad));
            for e in 0..E {
                let (a, b) = (&s.m[e * c_out * tiles..][..c_out * tiles], &s.v[e * g.c * tiles..][..g.c * tiles]);
                let acc = &mut acc[e * pairs * width..][..pairs * width];
                if dots {
                    add_row_dots(a, b, acc, (c_out, g.c, tiles));
                } else {
                    gemm_on_thread(a, b, acc, Gemm { beta: 1.0, ..Gemm::new(c_out, g.c, tiles, false, true) })?;
                }
            }
        }
        Ok(())
    })?;
    let acc = if dots { lane_sums(&acc) } else { acc };
    Ok(filter_transform_adjoint(&acc, pairs))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rng::Rng;

    pub(in super::super) fn rand(r: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| r.normal()).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(p, q)| p * q).sum()
    }

    /// The definition of a 3×3 pad-1 conv of any stride and both its
    /// gradients, one tap at a time.
    pub(in super::super) fn definition(x: &[f64], w: &[f64], dy: &[f64], g: &Window, c_out: usize) -> [Vec<f64>; 3] {
        let (h, wd, c, s) = (g.h, g.w, g.c, g.stride);
        let (oh, ow) = (h.div_ceil(s), wd.div_ceil(s));
        let (mut y, mut dx, mut dw) = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        for n in 0..g.n {
            for o in 0..c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let out = ((n * c_out + o) * oh + oy) * ow + ox;
                        for ci in 0..c {
                            for k in 0..9 {
                                let (iy, ix) = ((oy * s + k / 3).wrapping_sub(1), (ox * s + k % 3).wrapping_sub(1));
                                if iy < h && ix < wd {
                                    let (xi, wi) = (((n * c + ci) * h + iy) * wd + ix, (o * c + ci) * 9 + k);
                                    y[out] += w[wi] * x[xi];
                                    dx[xi] += w[wi] * dy[out];
                                    dw[wi] += x[xi] * dy[out];
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw]
    }

    fn window(n: usize, c: usize, h: usize, w: usize) -> Window {
        Window { n, c, h, w, kh: 3, kw: 3, stride: 1, pad: 1 }
    }

    pub(in super::super) fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// Max |f32 − f64| / max |f64|: the f32 error measure of the faster conv paths.
    pub(in super::super) fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        let diff = got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        diff / max_abs(want)
    }

    /// The f32 forward by im2col and one GEMM per image: the baseline those errors are held against.
    pub(in super::super) fn im2col_forward(x: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
        let cols = super::super::conv::unfold(x, *g).unwrap();
        let area = cols.len() / (g.n * 9 * g.c);
        cols.chunks(9 * g.c * area)
            .flat_map(|p| super::super::gemm::matmul(w, p, Gemm::new(c_out, area, 9 * g.c, false, false)).unwrap())
            .collect()
    }

    #[test]
    fn all_three_directions_match_the_definition_in_f64() {
        let mut r = Rng::new(21, 0);
        // Odd and even sides, one and several images per batch of tiles, c_in ≠ c_out,
        // more images than a batch holds, and single-row, single-column planes.
        let cases =
            [(window(1, 3, 5, 7), 2), (window(3, 2, 6, 6), 5), (window(40, 4, 3, 5), 3), (window(2, 5, 1, 4), 2), (window(2, 1, 7, 1), 3)];
        for (g, c_out) in cases {
            let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * g.c));
            let dy = rand(&mut r, g.n * c_out * g.h * g.w);
            let got = [
                conv2d(&x, &w, &g, c_out).unwrap(),
                conv2d_backward_data(&dy, &w, &g, c_out).unwrap(),
                conv2d_backward_filter(&dy, &x, &g, c_out).unwrap(),
            ];
            for (dir, (got, want)) in got.iter().zip(definition(&x, &w, &dy, &g, c_out)).enumerate() {
                let scale = max_abs(&want);
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-13 * scale), "{g:?} direction {dir}");
            }
            // <dy, conv(x, w)> = <bwd_data(dy), x> = <bwd_filter(dy, x), w>.
            let lhs = dot(&dy, &got[0]);
            assert!((dot(&got[1], &x) - lhs).abs() < 1e-12 * lhs.abs().max(1.0), "{g:?} data adjoint");
            assert!((dot(&got[2], &w) - lhs).abs() < 1e-12 * lhs.abs().max(1.0), "{g:?} filter adjoint");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let mut r = Rng::new(22, 0);
        // Several images per batch of tiles, several batches per filter group, an odd side.
        let (g, c_out) = (window(37, 6, 7, 6), 5);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        let (x, w, dy) = (f32s(g.n * g.image_len(), &mut r), f32s(c_out * 9 * g.c, &mut r), f32s(g.n * c_out * g.h * g.w, &mut r));
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = conv2d(&x, &w, &g, c_out).unwrap();
                (y, conv2d_backward_data(&dy, &w, &g, c_out).unwrap(), conv2d_backward_filter(&dy, &x, &g, c_out).unwrap())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    /// Max |f32 − f64 definition| / max |y| of Winograd and of im2col + GEMM
    /// on the three ResNet stages' shapes, two images each.
    #[test]
    fn f32_error_stays_near_im2col() {
        let mut r = Rng::new(23, 0);
        for (c, side) in [(16, 32), (32, 16), (64, 8)] {
            let g = window(2, c, side, side);
            let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c * 9 * c));
            let dy = rand(&mut r, g.n * c * side * side);
            let want = definition(&x, &w, &dy, &g, c);
            let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (xf, wf, dyf) = (f32s(&x), f32s(&w), f32s(&dy));
            let err = relative_error;
            let im2col = im2col_forward(&xf, &wf, &g, c);
            let wino = [
                err(&conv2d(&xf, &wf, &g, c).unwrap(), &want[0]),
                err(&conv2d_backward_data(&dyf, &wf, &g, c).unwrap(), &want[1]),
                err(&conv2d_backward_filter(&dyf, &xf, &g, c).unwrap(), &want[2]),
            ];
            let base = err(&im2col, &want[0]);
            eprintln!(
                "{c}c{side}: im2col forward {base:.2e}, Winograd forward/data/filter {:.2e} {:.2e} {:.2e}",
                wino[0], wino[1], wino[2]
            );
            assert!(wino.iter().all(|&e| e < F32_ERROR), "{c}c{side}: {wino:?} vs im2col {base:e}");
        }
    }
}
