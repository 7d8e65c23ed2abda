//! Convolution on the CPU as im2col + GEMM, one image per task: each task
//! unfolds its image into a buffer of its own (`c·kh·kw × oh·ow`, so the
//! unfolded data never exceeds one image per thread) and runs one GEMM on its
//! core. A pointwise (1×1, stride 1, unpadded) window skips the unfolding:
//! the image already is its patch matrix. The forward and backward-data of
//! 3×3 same-grid windows, and the forward of 3×3 stride-2 ones, go to
//! [`super::direct`] where the CPU has AVX2 and FMA, the backward-data of
//! 3×3 stride-2 ones to [`super::direct_data`] where it has AVX-512, and the
//! filter gradient of both to [`super::direct_filter`] (output rows at least
//! 8 wide, AVX2 and FMA) or, on large same-grid planes, to [`super::winograd`].

use super::direct;
use super::direct_data;
use super::direct_filter;
use super::gemm::{gemm_on_thread, gemm_on_thread_into, gemm_on_thread_strided, Leading};
use super::winograd;
#[cfg(target_arch = "x86_64")]
use super::winograd_lanes;
use crate::backend::{Gemm, Window};
use crate::error::Result;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// The directions a convolution runs in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Forward,
    Data,
    Filter,
}

/// Filter-gradient partial sums: see [`in_image_groups`].
pub(super) const FILTER_GROUPS: usize = 8;

/// A core's L2 on the machines this is tuned on: an image's patch matrix up
/// to this size is still cached when the GEMM reads it back, so it is
/// unfolded whole. A 16-channel 32×32 image's (576 KiB) is not: it is cut
/// into output-row bands of at most [`BAND_BYTES`].
const L2_BYTES: usize = 512 << 10;
const BAND_BYTES: usize = 256 << 10;

/// Output columns `lo..hi` of a row whose input column `ox·stride + kx − pad` is inside `0..w`.
fn inside(kx: usize, g: &Window, ow: usize) -> (usize, usize) {
    let lo = (g.pad.saturating_sub(kx)).div_ceil(g.stride);
    let hi = if g.w + g.pad > kx { (g.w + g.pad - kx).div_ceil(g.stride).min(ow) } else { 0 };
    (lo.min(hi), hi)
}

/// For a stride-1 window whose output grid is its input grid (`2·pad = k − 1`,
/// the 3×3 convs of every ResNet), patch row `(ky, kx)` is the plane shifted
/// by `(ky − pad)·w + kx − pad`: one contiguous span of outputs `lo..hi` maps
/// onto the plane, rows `y0..y1` of it are inside, and in those rows the
/// `|kx − pad|` columns at one edge wrapped around from the next row.
struct Shift {
    offset: isize,
    rows: (usize, usize),
    span: (usize, usize),
    wrapped: std::ops::Range<usize>,
}

fn same_grid(g: &Window, (oh, ow): (usize, usize)) -> bool {
    g.stride == 1 && (oh, ow) == (g.h, g.w)
}

fn shift(g: &Window, ky: usize, kx: usize) -> Shift {
    let (h, w) = (g.h as isize, g.w as isize);
    let (dy, dx) = (ky as isize - g.pad as isize, kx as isize - g.pad as isize);
    let offset = dy * w + dx;
    let rows = ((-dy).clamp(0, h) as usize, (h - dy).clamp(0, h) as usize);
    let (first, end) = (rows.0 as isize * w, rows.1 as isize * w);
    let lo = (-offset).clamp(first, end.max(first));
    let hi = (h * w - offset).clamp(lo, end.max(lo));
    let (lo, hi) = (lo as usize, hi as usize);
    let wrapped = if dx < 0 { 0..(-dx) as usize } else { (w - dx) as usize..g.w };
    Shift { offset, rows, span: (lo, hi), wrapped }
}

/// Sets to `zero` what a shifted row must not carry: rows outside the
/// plane, the span's ends, and the wrapped columns.
fn clear_outside<U: Copy>(row: &mut [U], zero: U, g: &Window, s: &Shift) {
    let w = g.w;
    let (y0, y1) = s.rows;
    row[..y0 * w].fill(zero);
    row[y1 * w..].fill(zero);
    row[y0 * w..s.span.0.max(y0 * w)].fill(zero);
    row[s.span.1.min(y1 * w)..y1 * w].fill(zero);
    for oy in y0..y1 {
        row[oy * w + s.wrapped.start..oy * w + s.wrapped.end].fill(zero);
    }
}

/// Unfolds channel plane `plane` (`h×w`) into its `kh·kw` patch rows of
/// `dst`, row `r` at `dst[r·ld..]`, columns `(oy, ox)`; padding reads zero.
/// Writes every element of those rows, so `dst` may be fresh memory.
pub(super) fn unfold_plane<T: Scalar>(plane: &[T], g: &Window, out: (usize, usize), dst: &mut [MaybeUninit<T>], ld: usize) {
    unfold_band(plane, g, out, 0..out.0, dst, ld)
}

/// [`unfold_plane`] for output rows `rows` only: columns `(oy − rows.start, ox)`.
fn unfold_band<T: Scalar>(plane: &[T], g: &Window, (oh, ow): (usize, usize), rows: Range<usize>, dst: &mut [MaybeUninit<T>], ld: usize) {
    let (len, zero) = (rows.len() * ow, MaybeUninit::new(T::ZERO));
    if rows == (0..oh) && same_grid(g, (oh, ow)) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let s = shift(g, ky, kx);
                let row = &mut dst[(ky * g.kw + kx) * ld..][..len];
                let (lo, hi) = s.span;
                if hi > lo {
                    let from = (lo as isize + s.offset) as usize;
                    write_copy(&mut row[lo..hi], &plane[from..from + hi - lo]);
                }
                clear_outside(row, zero, g, &s);
            }
        }
        return;
    }
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let row = &mut dst[(ky * g.kw + kx) * ld..][..len];
            let (lo, hi) = inside(kx, g, ow);
            for (out, oy) in row.chunks_exact_mut(ow).zip(rows.clone()) {
                let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                if iy >= g.h {
                    out.fill(zero);
                    continue;
                }
                out[..lo].fill(zero);
                out[hi..].fill(zero);
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                let ix0 = lo * g.stride + kx - g.pad;
                match g.stride {
                    1 => write_copy(&mut out[lo..hi], &src[ix0..ix0 + hi - lo]),
                    2 => write_evens(&mut out[lo..hi], &src[ix0..]),
                    _ => out[lo..hi].iter_mut().zip(src[ix0..].iter().step_by(g.stride)).for_each(|(o, &v)| _ = o.write(v)),
                }
            }
        }
    }
}

/// `dst = src` into possibly fresh memory (`write_copy_of_slice` is newer than the MSRV).
fn write_copy<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    debug_assert_eq!(dst.len(), src.len());
    dst.iter_mut().zip(src).for_each(|(d, &s)| _ = d.write(s));
}

/// `dst[i] = src[2·i]`, in the element pairs of `src` so that the loop
/// vectorises (loads and a shuffle) where `step_by(2)` went one element at
/// a time; the last element may lack its pair.
fn write_evens<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    let n = dst.len();
    let pairs = n.min(src.len() / 2);
    dst.iter_mut().zip(src.chunks_exact(2)).for_each(|(d, p)| _ = d.write(p[0]));
    if pairs < n {
        dst[n - 1].write(src[2 * (n - 1)]);
    }
}

/// The adjoint of [`unfold_band`]: patch-row gradients (row `r` at
/// `src[r·rows.len()·ow..]`) summed into `plane`. `src` is scratch: the
/// same-grid path zeroes its padding entries.
fn fold_band<T: Scalar>(src: &mut [T], g: &Window, (oh, ow): (usize, usize), rows: Range<usize>, plane: &mut [T]) {
    let len = rows.len() * ow;
    if rows == (0..oh) && same_grid(g, (oh, ow)) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let s = shift(g, ky, kx);
                let row = &mut src[(ky * g.kw + kx) * len..][..len];
                clear_outside(row, T::ZERO, g, &s);
                let (lo, hi) = s.span;
                if hi > lo {
                    let from = (lo as isize + s.offset) as usize;
                    plane[from..from + hi - lo].iter_mut().zip(&row[lo..hi]).for_each(|(p, &v)| *p += v);
                }
            }
        }
        return;
    }
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let row = &src[(ky * g.kw + kx) * len..][..len];
            let (lo, hi) = inside(kx, g, ow);
            for (grads, oy) in row.chunks_exact(ow).zip(rows.clone()) {
                let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                if iy >= g.h || hi <= lo {
                    continue;
                }
                let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                let ix0 = lo * g.stride + kx - g.pad;
                if g.stride == 1 {
                    dst[ix0..ix0 + hi - lo].iter_mut().zip(&grads[lo..hi]).for_each(|(p, &v)| *p += v);
                } else {
                    // Through `step_by`, as in `unfold_band`: indexed, each add had a bounds
                    // test (3×3 stride 2, 16→32 on 32×32: 2.82–2.89 against 2.36–2.40 ms).
                    dst[ix0..].iter_mut().step_by(g.stride).zip(&grads[lo..hi]).for_each(|(p, &v)| *p += v);
                }
            }
        }
    }
}

/// Output rows `rows` of one image's patch matrix, `c·kh·kw × rows·ow`, into `cols`.
fn im2col<T: Scalar>(image: &[T], g: &Window, out: (usize, usize), rows: Range<usize>, cols: &mut Vec<T>) {
    let (len, taps) = (rows.len() * out.1, g.kh * g.kw);
    let size = g.patch_len() * len;
    cols.clear();
    cols.reserve(size);
    for (c, dst) in cols.spare_capacity_mut()[..size].chunks_mut(taps * len).enumerate() {
        unfold_band(&image[c * g.h * g.w..(c + 1) * g.h * g.w], g, out, rows.clone(), dst, len);
    }
    // SAFETY: `unfold_band` wrote every element of each channel's rows.
    unsafe { cols.set_len(size) };
}

/// The output-row bands an image is unfolded in: the whole image if its
/// patch matrix fits in [`L2_BYTES`], else the fewest bands of near-equal
/// height that fit in [`BAND_BYTES`].
fn bands<T>(g: &Window, (oh, ow): (usize, usize)) -> impl Iterator<Item = Range<usize>> {
    let bytes = g.patch_len() * oh * ow * std::mem::size_of::<T>();
    let count = if bytes <= L2_BYTES { 1 } else { bytes.div_ceil(BAND_BYTES) };
    let rows = oh.div_ceil(count.clamp(1, oh.max(1)));
    (0..oh).step_by(rows.max(1)).map(move |y0| y0..(y0 + rows).min(oh))
}

/// Runs `f(image index, image, output slice, scratch)` for every image:
/// one image per task when there are enough images to fill the cores.
fn per_image<T: Scalar, U: Send>(
    input: &[T],
    in_len: usize,
    output: &mut [U],
    out_len: usize,
    f: impl Fn(&[T], &mut [U], &mut Vec<T>) -> Result<()> + Sync,
) -> Result<()> {
    if in_len == 0 || out_len == 0 {
        return Ok(());
    }
    let pairs = input.par_chunks(in_len).zip(output.par_chunks_mut(out_len));
    pairs.try_for_each_init(Vec::new, |scratch, (x, y)| f(x, y, scratch))
}

/// Every image's patch matrix, `[n, c·kh·kw, oh·ow]`: what the im2col path
/// multiplies, and the twin of the device's im2col kernel.
pub(super) fn unfold<T: Scalar>(x: &[T], g: Window) -> Result<Vec<T>> {
    let out = g.out("im2col")?;
    let (area, k) = (out.0 * out.1, g.patch_len());
    let mut cols = vec![T::ZERO; g.n * k * area];
    super::super::checks::conv("im2col", &g, x.len(), k * k, cols.len(), k)?;
    per_image(x, g.image_len(), &mut cols, k * area, |image, dst, scratch| {
        im2col(image, &g, out, 0..out.0, scratch);
        dst.copy_from_slice(scratch);
        Ok(())
    })?;
    Ok(cols)
}

/// The adjoint of [`unfold`]: patch-matrix gradients summed onto the input grid.
pub(super) fn fold<T: Scalar>(cols: &[T], g: Window) -> Result<Vec<T>> {
    let out = g.out("col2im")?;
    let (area, k, plane) = (out.0 * out.1, g.patch_len(), g.h * g.w);
    let mut x = vec![T::ZERO; g.n * g.image_len()];
    super::super::checks::conv("col2im", &g, x.len(), k * k, cols.len(), k)?;
    per_image(cols, k * area, &mut x, g.image_len(), |src, x, scratch| {
        scratch.clear();
        scratch.extend_from_slice(src);
        for (c, rows) in scratch.chunks_mut(g.kh * g.kw * area).enumerate() {
            fold_band(rows, &g, out, 0..out.0, &mut x[c * plane..(c + 1) * plane]);
        }
        Ok(())
    })?;
    Ok(x)
}

/// `y = w ⋆ x` for an NCHW `x` and `w[c_out, c, kh, kw]`.
pub fn conv2d<T: Scalar>(x: &[T], w: &[T], g: Window, c_out: usize) -> Result<Vec<T>> {
    let out = g.out("conv2d")?;
    super::super::checks::conv("conv2d", &g, x.len(), w.len(), g.n * c_out * out.0 * out.1, c_out)?;
    // Winograd first where it applies: 0.65× (64c8) and 0.75× (32c16) the
    // direct kernel's time (winograd_lanes.rs).
    #[cfg(target_arch = "x86_64")]
    if winograd_lanes::applies(&g, out) {
        if let Some(y) = winograd_lanes::conv2d(x, w, &g, c_out) {
            return Ok(y);
        }
    }
    if direct::applies(&g, out, Direction::Forward) {
        if let Some(y) = direct::conv2d(x, w, &g, c_out) {
            return Ok(y);
        }
    }
    im2col_forward(x, w, &g, c_out, out)
}

/// [`conv2d`] as im2col + GEMM, in output-row bands.
fn im2col_forward<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize, out: (usize, usize)) -> Result<Vec<T>> {
    let (area, k, size) = (out.0 * out.1, g.patch_len(), g.n * c_out * out.0 * out.1);
    // No channels, or an empty image whose padding alone the window covers: all zeros.
    if k == 0 || g.image_len() == 0 {
        return Ok(vec![T::ZERO; size]);
    }
    // The products write every element of y, so it starts as fresh memory.
    // Zeroed first (on the calling thread, before the images' tasks), the
    // 1×1 stride-2 forward 16→32 on 32×32 took 0.57–0.62 against 0.34–0.45
    // ms (fastest of 300, three alternated pairs).
    let mut y = Vec::with_capacity(size);
    per_image(x, g.image_len(), &mut y.spare_capacity_mut()[..size], c_out * area, |image, y, cols| {
        if g.is_pointwise() {
            return gemm_on_thread_into(w, image, y, Gemm::new(c_out, area, k, false, false), Leading { a: k, b: area, c: area });
        }
        for rows in bands::<T>(g, out) {
            let len = rows.len() * out.1;
            im2col(image, g, out, rows.clone(), cols);
            let ld = Leading { a: k, b: len, c: area };
            gemm_on_thread_into(w, cols, &mut y[rows.start * out.1..], Gemm::new(c_out, len, k, false, false), ld)?;
        }
        Ok(())
    })?;
    // SAFETY: each image's products wrote all of its c_out × area outputs.
    unsafe { y.set_len(size) };
    Ok(y)
}

/// `w[c_out, c_in, kh, kw]` rotated 180° with its channels swapped, `[c_in,
/// c_out, kh, kw]`: the filters whose forward conv of `dy` is backward-data
/// for a same-grid window.
pub(super) fn rotated<T: Scalar>(w: &[T], c_in: usize, c_out: usize) -> Vec<T> {
    let taps = w.len() / (c_in * c_out).max(1);
    let mut flipped = vec![T::ZERO; w.len()];
    for (oc, src) in w.chunks_exact(taps).enumerate() {
        let (o, c) = (oc / c_in, oc % c_in);
        for (k, &v) in src.iter().enumerate() {
            flipped[(c * c_out + o) * taps + taps - 1 - k] = v;
        }
    }
    flipped
}

/// `∂L/∂x` of [`conv2d`]: `wᵀ·dy` per image band, folded back onto the input grid.
pub fn conv2d_backward_data<T: Scalar>(dy: &[T], w: &[T], g: Window, c_out: usize) -> Result<Vec<T>> {
    let out = g.out("conv2d_backward_data")?;
    super::super::checks::conv("conv2d_backward_data", &g, g.n * g.image_len(), w.len(), dy.len(), c_out)?;
    #[cfg(target_arch = "x86_64")]
    if winograd_lanes::applies(&g, out) {
        if let Some(dx) = winograd_lanes::conv2d_backward_data(dy, w, &g, c_out) {
            return Ok(dx);
        }
    }
    if direct::applies(&g, out, Direction::Data) {
        // Backward-data is the forward kernel on dy with the filters rotated.
        if let Some(dx) = direct::conv2d(dy, &rotated(w, g.c, c_out), &Window { c: c_out, ..g }, g.c) {
            return Ok(dx);
        }
    }
    if direct_data::applies(&g, Direction::Data) {
        if let Some(dx) = direct_data::conv2d_backward_data(dy, w, &g, c_out) {
            return Ok(dx);
        }
    }
    if winograd::applies(&g, out, Direction::Data) {
        return winograd::conv2d_backward_data(dy, w, &g, c_out);
    }
    im2col_backward_data(dy, w, &g, c_out, out)
}

/// [`conv2d_backward_data`] as GEMM + col2im, in output-row bands.
pub(super) fn im2col_backward_data<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize, out: (usize, usize)) -> Result<Vec<T>> {
    let (area, k, plane, size) = (out.0 * out.1, g.patch_len(), g.h * g.w, g.n * g.image_len());
    if c_out == 0 {
        return Ok(vec![T::ZERO; size]);
    }
    // Each image's task zeroes its own dx, where the folds then add into it
    // while it is in cache; zeroed whole first, on the calling thread, the
    // 1×1 stride-2 backward-data 16→32 on 32×32 took 0.82–0.87 against
    // 0.53–0.54 ms (fastest of 200, three alternated pairs).
    let mut dx = Vec::with_capacity(size);
    per_image(dy, c_out * area, &mut dx.spare_capacity_mut()[..size], g.image_len(), |dy, dx, cols| {
        if g.is_pointwise() {
            return gemm_on_thread_into(w, dy, dx, Gemm::new(k, area, c_out, true, false), Leading { a: k, b: area, c: area });
        }
        dx.fill(MaybeUninit::new(T::ZERO));
        // SAFETY: every element was just written.
        let dx = unsafe { &mut *(dx as *mut [MaybeUninit<T>] as *mut [T]) };
        for rows in bands::<T>(g, out) {
            let len = rows.len() * out.1;
            cols.resize(k * len, T::ZERO);
            let ld = Leading { a: k, b: area, c: len };
            gemm_on_thread_strided(w, &dy[rows.start * out.1..], cols, Gemm::new(k, len, c_out, true, false), ld)?;
            for (c, src) in cols.chunks_mut(g.kh * g.kw * len).enumerate() {
                fold_band(src, g, out, rows.clone(), &mut dx[c * plane..(c + 1) * plane]);
            }
        }
        Ok(())
    })?;
    // SAFETY: each image's task wrote all of its dx, by a product or zeros.
    unsafe { dx.set_len(size) };
    Ok(dx)
}

/// `∂L/∂w` of [`conv2d`]: `Σ_images dy·colsᵀ`, in fixed image groups.
pub fn conv2d_backward_filter<T: Scalar>(dy: &[T], x: &[T], g: Window, c_out: usize) -> Result<Vec<T>> {
    let out = g.out("conv2d_backward_filter")?;
    let k = g.patch_len();
    super::super::checks::conv("conv2d_backward_filter", &g, x.len(), c_out * k, dy.len(), c_out)?;
    if direct_filter::applies(&g, out) {
        if let Some(dw) = direct_filter::conv2d_backward_filter(dy, x, &g, c_out) {
            return dw;
        }
    }
    if winograd::applies(&g, out, Direction::Filter) {
        return winograd::conv2d_backward_filter(dy, x, &g, c_out);
    }
    im2col_backward_filter(dy, x, &g, c_out, out)
}

/// [`conv2d_backward_filter`] as im2col + GEMM, in output-row bands.
pub(super) fn im2col_backward_filter<T: Scalar>(dy: &[T], x: &[T], g: &Window, c_out: usize, out: (usize, usize)) -> Result<Vec<T>> {
    let (area, k) = (out.0 * out.1, g.patch_len());
    if area == 0 {
        return Ok(vec![T::ZERO; c_out * k]);
    }
    in_image_groups(g.n, c_out * k, |images, dw| {
        let mut cols = Vec::new();
        for i in images {
            let image = &x[i * g.image_len()..(i + 1) * g.image_len()];
            let dy = &dy[i * c_out * area..(i + 1) * c_out * area];
            if g.is_pointwise() {
                gemm_on_thread(dy, image, dw, Gemm { beta: 1.0, ..Gemm::new(c_out, k, area, false, true) })?;
                continue;
            }
            for rows in bands::<T>(g, out) {
                let len = rows.len() * out.1;
                im2col(image, g, out, rows.clone(), &mut cols);
                let gemm = Gemm { beta: 1.0, ..Gemm::new(c_out, k, len, false, true) };
                gemm_on_thread_strided(&dy[rows.start * out.1..], &cols, dw, gemm, Leading { a: area, b: len, c: k })?;
            }
        }
        Ok(())
    })
}

/// `Σ_images` of what `body(images, acc)` adds into a zeroed `acc` of `len`
/// elements: images are cut into at most [`FILTER_GROUPS`] groups, each
/// summed on one task, then the groups added in order, so the result does not
/// depend on the thread count. Zeros for no images.
pub(super) fn in_image_groups<T: Scalar>(
    n: usize,
    len: usize,
    body: impl Fn(Range<usize>, &mut [T]) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    if n == 0 {
        return Ok(vec![T::ZERO; len]);
    }
    let per_group = n.div_ceil(FILTER_GROUPS.min(n));
    let partials: Vec<Vec<T>> = (0..n.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let mut acc = vec![T::ZERO; len];
            body(group * per_group..((group + 1) * per_group).min(n), &mut acc)?;
            Ok(acc)
        })
        .collect::<Result<_>>()?;
    let mut parts = partials.into_iter();
    let mut sum = parts.next().unwrap_or_default();
    for p in parts {
        sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::super::covariance::gram_lower_patches;
    use super::super::winograd::tests::rand;
    use super::*;
    use crate::rng::Rng;

    /// The dense equivalent of a pointwise conv: `w·image` per image.
    fn pointwise_reference(x: &[f64], w: &[f64], g: Window, c_out: usize) -> Vec<f64> {
        let hw = g.h * g.w;
        let gemm = Gemm::new(c_out, hw, g.c, false, false);
        x.chunks(g.c * hw).flat_map(|image| super::super::gemm::matmul(w, image, gemm).unwrap()).collect()
    }

    /// The definition, one output at a time.
    fn direct(x: &[f64], w: &[f64], g: Window, c_out: usize) -> Vec<f64> {
        let (oh, ow) = g.out("direct").unwrap();
        let mut y = vec![0.0; g.n * c_out * oh * ow];
        for n in 0..g.n {
            for o in 0..c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0;
                        for c in 0..g.c {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let (iy, ix) =
                                        ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                        s += w[((o * g.c + c) * g.kh + ky) * g.kw + kx]
                                            * x[((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize];
                                    }
                                }
                            }
                        }
                        y[((n * c_out + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn windows() -> Vec<(Window, usize)> {
        let w = |n, c, h, w, k, stride, pad| Window { n, c, h, w, kh: k, kw: k, stride, pad };
        vec![
            (w(3, 2, 7, 6, 3, 1, 1), 4),
            (w(2, 2, 6, 7, 5, 1, 2), 3),
            (w(2, 3, 1, 1, 3, 1, 1), 2),
            (w(2, 2, 2, 3, 3, 1, 1), 2),
            (w(2, 3, 7, 5, 3, 2, 1), 5),
            (w(2, 2, 9, 9, 7, 2, 3), 3),
            (w(11, 3, 4, 4, 1, 1, 0), 2),
            (w(2, 4, 5, 5, 1, 2, 0), 3),
            (Window { n: 2, c: 2, h: 6, w: 5, kh: 3, kw: 2, stride: 2, pad: 0 }, 2),
            // An empty image inside its padding: a 2×2 output of zeros.
            (w(2, 2, 0, 0, 1, 1, 1), 3),
        ]
    }

    #[test]
    fn forward_matches_the_definition_and_backward_is_its_adjoint() {
        let mut r = Rng::new(4, 0);
        for (g, c_out) in windows() {
            let x = rand(&mut r, g.n * g.image_len());
            let w = rand(&mut r, c_out * g.patch_len());
            let y = conv2d(&x, &w, g, c_out).unwrap();
            let want = direct(&x, &w, g, c_out);
            assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "{g:?}");
            // <dy, conv(x, w)> = <dx(dy), x> = <dw(dy), w>, for every window.
            let dy = rand(&mut r, y.len());
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
            let lhs = dot(&dy, &y);
            let dx = conv2d_backward_data(&dy, &w, g, c_out).unwrap();
            let dw = conv2d_backward_filter(&dy, &x, g, c_out).unwrap();
            assert!((dot(&dx, &x) - lhs).abs() < 1e-9 * lhs.abs().max(1.0), "{g:?} data");
            assert!((dot(&dw, &w) - lhs).abs() < 1e-9 * lhs.abs().max(1.0), "{g:?} filter");
        }
    }

    #[test]
    fn images_unfolded_in_bands_match_the_definition() {
        let mut r = Rng::new(7, 0);
        let w = |c, side, stride| Window { n: 2, c, h: side, w: side, kh: 3, kw: 3, stride, pad: 1 };
        for (g, c_out) in [(w(8, 32, 1), 4), (w(32, 33, 2), 3), (w(16, 24, 1), 2)] {
            assert!(bands::<f64>(&g, g.out("bands").unwrap()).count() > 1, "{g:?} fits one band");
            let x = rand(&mut r, g.n * g.image_len());
            let w = rand(&mut r, c_out * g.patch_len());
            // The dispatched path, and im2col itself where the direct kernel takes these windows.
            let out = g.out("bands").unwrap();
            let y = conv2d(&x, &w, g, c_out).unwrap();
            let banded = im2col_forward(&x, &w, &g, c_out, out).unwrap();
            let want = direct(&x, &w, g, c_out);
            for y in [&y, &banded] {
                assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "{g:?}");
            }
            let dy = rand(&mut r, y.len());
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
            let lhs = dot(&dy, &y);
            let dx = conv2d_backward_data(&dy, &w, g, c_out).unwrap();
            let dx_banded = im2col_backward_data(&dy, &w, &g, c_out, out).unwrap();
            let dw = conv2d_backward_filter(&dy, &x, g, c_out).unwrap();
            assert!((dot(&dx, &x) - lhs).abs() < 1e-9 * lhs.abs(), "{g:?} data");
            assert!((dot(&dx_banded, &x) - lhs).abs() < 1e-9 * lhs.abs(), "{g:?} banded data");
            assert!((dot(&dw, &w) - lhs).abs() < 1e-9 * lhs.abs(), "{g:?} filter");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let mut r = Rng::new(8, 0);
        let g = Window { n: 11, c: 16, h: 32, w: 32, kh: 3, kw: 3, stride: 1, pad: 1 };
        let x: Vec<f32> = (0..g.n * g.image_len()).map(|_| r.normal() as f32).collect();
        let w: Vec<f32> = (0..5 * g.patch_len()).map(|_| r.normal() as f32).collect();
        let dy: Vec<f32> = (0..g.n * 5 * g.out_area()).map(|_| r.normal() as f32).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = conv2d(&x, &w, g, 5).unwrap();
                (y, conv2d_backward_data(&dy, &w, g, 5).unwrap(), conv2d_backward_filter(&dy, &x, g, 5).unwrap())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    #[test]
    fn pointwise_fast_path_is_a_per_image_matrix_product() {
        let mut r = Rng::new(5, 0);
        let g = Window { n: 3, c: 5, h: 3, w: 4, kh: 1, kw: 1, stride: 1, pad: 0 };
        let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, 6 * 5));
        assert_eq!(conv2d(&x, &w, g, 6).unwrap(), pointwise_reference(&x, &w, g, 6));
    }

    #[test]
    fn patch_gram_equals_the_gram_of_explicit_patches() {
        let mut r = Rng::new(6, 0);
        for (g, _) in windows() {
            let x = rand(&mut r, g.n * g.image_len());
            let k = g.patch_len();
            let mut acc = vec![0.5; k * k];
            gram_lower_patches(&mut acc, &x, g, 0.25).unwrap();
            // Explicit patches: conv with the identity filter bank gives every patch entry.
            let eye: Vec<f64> = (0..k * k).map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 }).collect();
            let p = conv2d(&x, &eye, g, k).unwrap();
            let area = g.out_area();
            for i in 0..k {
                for j in 0..=i {
                    let s: f64 = (0..g.n)
                        .flat_map(|n| (0..area).map(move |a| (n, a)))
                        .map(|(n, a)| p[(n * k + i) * area + a] * p[(n * k + j) * area + a])
                        .sum();
                    assert!((acc[i * k + j] - (0.5 + 0.25 * s)).abs() < 1e-10, "{g:?} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn mismatched_buffers_are_shape_errors() {
        let g = Window { n: 2, c: 3, h: 4, w: 4, kh: 3, kw: 3, stride: 1, pad: 1 };
        let err = conv2d(&[0.0f64; 10], &[0.0; 54], g, 2).unwrap_err().to_string();
        assert!(err.contains("conv2d") && err.contains("input 96"), "{err}");
        let bad = Window { kh: 9, ..g };
        assert!(conv2d(&[0.0f64; 96], &[0.0; 2 * 3 * 81], bad, 2).is_err());
    }
}
