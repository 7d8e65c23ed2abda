//! Backward-data of 3×3 pad-1 stride-2 convs (the convs that enter a ResNet
//! stage) without a patch matrix: a transposed convolution, split by the
//! parity of the input grid. Input pixel `(2i + py, 2j + px)` takes tap `ky
//! = 1` from output row `i` where `py = 0`, and taps `ky = 0` from row `i +
//! 1` and `ky = 2` from row `i` where `py = 1`; columns alike. So each of the
//! four parity planes is a small stride-1 conv of `dy`, with 1, 2, 2 or 4
//! taps: the 9 taps a stride-2 window has, none multiplied by a zero.
//! im2col + GEMM instead wrote `9·c_in` patch rows per image and folded them
//! back one scalar add at a time.
//!
//! The planes are summed like [`super::direct`]'s `pairs`: each `dy` plane is
//! copied once per column shift (0 or 1) with zeros past its edges, blocks
//! of output channels ([`channel_blocks`]) × four vectors of 16 outputs
//! (eight rows of 8 on planes at most 8 wide, else four rows of 16 columns)
//! are summed in registers, and the planes are then interleaved onto the grid.
//!
//! Every input pixel is one chain of fused multiply-adds from zero over
//! `(c_out, ky, kx)` in that order, its parity's taps only, whatever the
//! block, the task split or the thread count; the portable and AVX-512
//! copies round alike.

use super::conv::Direction;
use super::direct::channel_blocks;
use super::lanes::{self, as_elements, into_scalars, Element, Lanes, Path, Portable};
use crate::backend::Window;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Bound on the f32 error, max |f32 − f64 definition| / max |exact|, on the
/// two stride-2 convs of the CIFAR ResNets, two images
/// (`tests::f32_error_stays_near_im2col`). Measured, 16→32 on 32×32 / 32→64
/// on 16×16: 3.5e-7 / 4.5e-7, against im2col + GEMM's 1.7e-7 / 1.7e-7:
/// each pixel is one chain of up to 128 / 256 terms, where the GEMM adds
/// shorter partial sums. The bound is [`super::direct`]'s, about four times
/// the larger.
#[cfg(test)]
const F32_ERROR: f64 = 2e-6;

/// Whether window `g` takes this path in direction `d`: backward-data of a
/// 3×3 pad-1 stride-2 window, on CPUs with AVX-512, whose 16 f32 lanes the
/// kernel is laid out for. The portable copy, for other CPUs and f64,
/// would be far slower than im2col + GEMM (a software `fma` per lane).
/// Against im2col + GEMM (`kappa profile conv`, batch 128, three alternated
/// pairs, 2026-12-07, Intel host at a third less than its usual peak):
/// 16→32 on 32×32 1.54–1.73 against 3.97–4.32 ms, 32→64 on 16×16 1.38–2.04
/// against 2.37–3.58 ms.
pub(super) fn applies(g: &Window, d: Direction) -> bool {
    g.kh == 3 && g.kw == 3 && g.pad == 1 && g.stride == 2 && d == Direction::Data && lanes::avx512()
}

/// `dx[n, c, h, w]` of a 3×3 pad-1 stride-2 conv with filters `w[c_out, c,
/// 3, 3]` from `dy[n, c_out, ⌈h/2⌉, ⌈w/2⌉]`; None unless `T` is f32. The
/// caller checks the lengths.
pub(super) fn conv2d_backward_data<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize) -> Option<Vec<T>> {
    into_scalars(data_f32(as_elements(dy)?, as_elements(w)?, g, c_out))
}

// Not generic, so the library compiles it once (lanes.rs, "One compiled copy").
fn data_f32(dy: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
    transposed(dy, w, g, c_out, Path::widest())
}

/// A parity's taps along one axis as `(k, shift)`: tap `k` of the window
/// reads `dy` at `i + shift` for input `2i + parity`.
const fn taps(parity: usize) -> &'static [(usize, usize)] {
    if parity == 0 {
        &[(1, 0)]
    } else {
        &[(0, 1), (2, 0)]
    }
}

/// Lanes a vector of outputs holds.
const LANES: usize = 16;

/// Vectors a tile of outputs holds: with blocks of 6 channels, 24 sums, 4
/// loads and a broadcast weight in AVX-512's 32 registers. Tiles of 2 took
/// 1.34–1.36 against 1.27–1.29 ms (32→64 on 16×16) and 1.48–1.50 against
/// 1.40–1.44 ms (16→32 on 32×32): fastest of 60 calls, three alternated pairs.
const TILE: usize = 4;

/// How an image's `dy` copies and parity planes are laid out: rows of
/// `cols` values (8 for planes at most 8 wide, so a vector holds two rows;
/// else a multiple of 16) and `rows` rows, enough for whole tiles of
/// [`TILE`] vectors, `tall` rows each.
#[derive(Clone, Copy)]
struct Layout {
    /// The parity planes' rows and columns: `dy`'s grid.
    oh: usize,
    ow: usize,
    cols: usize,
    rows: usize,
    tall: usize,
}

impl Layout {
    fn new(g: &Window) -> Self {
        let (oh, ow) = (g.h.div_ceil(2), g.w.div_ceil(2));
        let cols = if ow <= 8 { 8 } else { ow.div_ceil(LANES) * LANES };
        let tall = if cols == 8 { 2 * TILE } else { TILE };
        Layout { oh, ow, cols, rows: oh.div_ceil(tall) * tall, tall }
    }

    /// Elements from one vector of a tile to the next.
    fn step(&self) -> usize {
        if self.cols == 8 {
            LANES
        } else {
            self.cols
        }
    }

    /// Each tile's first element in a plane of `rows × cols`.
    fn tiles(&self) -> impl Iterator<Item = usize> + '_ {
        let across = self.cols.div_ceil(LANES);
        (0..self.rows).step_by(self.tall).flat_map(move |y0| (0..across).map(move |b| y0 * self.cols + b * LANES))
    }

    /// A copy of a `dy` plane: one more row than the planes, for shift 1.
    fn copy(&self) -> usize {
        (self.rows + 1) * self.cols
    }
}

/// The filters in blocks of output channels ([`channel_blocks`]): a block
/// of `k` channels from `start`, and for each parity `(py, px)` its weights
/// as `[c_out, k, taps]`, so those for one `dy` channel are adjacent.
struct Block<E> {
    start: usize,
    k: usize,
    parities: [Vec<E>; 4],
}

/// Packs `w[c_out, c, 3, 3]` for `c` output channels (the input's).
fn blocks<E: Element>(w: &[E], c: usize, c_out: usize) -> Vec<Block<E>> {
    let pack = |start: usize, k: usize, p: usize| {
        let (ty, tx) = (taps(p / 2), taps(p % 2));
        let mut packed = Vec::with_capacity(c_out * k * ty.len() * tx.len());
        for o in 0..c_out {
            for ci in start..start + k {
                for &(ky, _) in ty {
                    packed.extend(tx.iter().map(|&(kx, _)| w[(o * c + ci) * 9 + ky * 3 + kx]));
                }
            }
        }
        packed
    };
    channel_blocks(c).into_iter().map(|(start, k)| Block { start, k, parities: std::array::from_fn(|p| pack(start, k, p)) }).collect()
}

/// [`conv2d_backward_data`] in `path`'s copy of the kernel.
fn transposed<E: Element>(dy: &[E], w: &[E], g: &Window, c_out: usize, path: Path) -> Vec<E> {
    let len = g.n * g.image_len();
    let layout = Layout::new(g);
    let area = layout.oh * layout.ow;
    if len == 0 || c_out == 0 {
        return vec![E::ZERO; len];
    }
    // Written straight into fresh memory: the interleave stores every pixel once.
    let mut dx = Vec::with_capacity(len);
    let plan = Plan { blocks: blocks(w, g.c, c_out), g, c_out, layout };
    let images = dy.par_chunks(c_out * area).zip(dx.spare_capacity_mut()[..len].par_chunks_mut(g.image_len()));
    #[cfg(target_arch = "x86_64")]
    let sixteen = <E::Avx512 as Lanes<E>>::WIDTH == LANES;
    images.for_each_init(Scratch::default, |scratch, (dy, dx)| match path {
        // SAFETY: `path` is only AVX-512 where the CPU has it.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 if sixteen => unsafe { image_avx512(dy, &plan, dx, scratch) },
        _ => image::<E, Portable<E, LANES>>(dy, &plan, dx, scratch),
    });
    // SAFETY: `interleave` stores every pixel of every plane of every image.
    unsafe { dx.set_len(len) };
    dx
}

/// What every image of a call shares.
struct Plan<'a, E> {
    blocks: Vec<Block<E>>,
    g: &'a Window,
    c_out: usize,
    layout: Layout,
}

/// A task's buffers: the `dy` copies and the parity planes.
struct Scratch<E> {
    copies: Vec<E>,
    planes: Vec<E>,
}

impl<E> Default for Scratch<E> {
    fn default() -> Self {
        Scratch { copies: Vec::new(), planes: Vec::new() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn image_avx512<E: Element>(dy: &[E], plan: &Plan<E>, dx: &mut [MaybeUninit<E>], scratch: &mut Scratch<E>) {
    image::<E, E::Avx512>(dy, plan, dx, scratch)
}

/// One image: copies each `dy` plane twice (column shifts 0 and 1), sums
/// the four parity planes of every block of channels, then interleaves them.
#[inline(always)]
fn image<E: Element, V: Lanes<E>>(dy: &[E], plan: &Plan<E>, dx: &mut [MaybeUninit<E>], scratch: &mut Scratch<E>) {
    debug_assert_eq!(V::WIDTH, LANES);
    let Plan { ref blocks, g, c_out, layout } = *plan;
    let Layout { oh, ow, cols, rows, .. } = layout;
    let copy = layout.copy();
    // Every image writes the same interior cells, so the zeroed edges stay zero.
    if scratch.copies.len() != c_out * 2 * copy {
        scratch.copies.clear();
        scratch.copies.resize(c_out * 2 * copy, E::ZERO);
    }
    // Every cell of the planes is stored before it is read.
    scratch.planes.resize(g.c * 4 * rows * cols, E::ZERO);
    for (src, dst) in dy.chunks_exact(oh * ow).zip(scratch.copies.chunks_exact_mut(2 * copy)) {
        let (same, shifted) = dst.split_at_mut(copy);
        if ow == cols {
            // Rows adjacent on both sides: one copy a plane, then the column
            // past the edge zeroed (row by row, the copies were an eighth of the time).
            same[..oh * ow].copy_from_slice(src);
            shifted[..oh * ow - 1].copy_from_slice(&src[1..]);
            (0..oh).for_each(|i| shifted[i * cols + ow - 1] = E::ZERO);
            continue;
        }
        for ((s, d), e) in src.chunks_exact(ow).zip(same.chunks_exact_mut(cols)).zip(shifted.chunks_exact_mut(cols)) {
            d[..ow].copy_from_slice(s);
            e[..ow - 1].copy_from_slice(&s[1..]);
        }
    }
    let copies = &scratch.copies[..];
    let plane_set = 4 * rows * cols;
    for b in blocks {
        let planes = &mut scratch.planes[b.start * plane_set..][..b.k * plane_set];
        let wts = b.parities.each_ref().map(Vec::as_slice);
        match b.k {
            6 => parity_planes::<E, V, 6>(copies, wts, layout, planes),
            4 => parity_planes::<E, V, 4>(copies, wts, layout, planes),
            _ => parity_planes::<E, V, 1>(copies, wts, layout, planes),
        }
    }
    interleave(&scratch.planes, g, layout, dx);
}

/// The four parity planes of `K` channels, `planes[K, 4, rows, cols]`, from
/// each parity's filters `wts[p][c_out, K, taps]`.
#[inline(always)]
fn parity_planes<E: Element, V: Lanes<E>, const K: usize>(copies: &[E], wts: [&[E]; 4], layout: Layout, planes: &mut [E]) {
    for tile in layout.tiles() {
        // Each parity's sums stored as soon as they are done: the four at
        // once would not fit in the registers.
        let sums = taps_of::<E, V, K, 0, 0>(copies, wts[0], layout, tile);
        store(sums, &mut planes[tile..], 0, layout);
        let sums = taps_of::<E, V, K, 0, 1>(copies, wts[1], layout, tile);
        store(sums, &mut planes[tile..], 1, layout);
        let sums = taps_of::<E, V, K, 1, 0>(copies, wts[2], layout, tile);
        store(sums, &mut planes[tile..], 2, layout);
        let sums = taps_of::<E, V, K, 1, 1>(copies, wts[3], layout, tile);
        store(sums, &mut planes[tile..], 3, layout);
    }
}

/// A tile's sums of parity `p` for `K` channels into `planes[K, 4, rows,
/// cols]` from the tile's first element on. A plain loop, inlined: as a
/// closure, the compiler kept it out of line, without the caller's
/// AVX-512, and each store was a call.
#[inline(always)]
fn store<E: Element, V: Lanes<E>, const K: usize>(sums: [[V; TILE]; K], planes: &mut [E], p: usize, layout: Layout) {
    let plane = layout.rows * layout.cols;
    for (o, pair) in sums.iter().enumerate() {
        for (q, v) in pair.iter().enumerate() {
            v.store(&mut planes[(o * 4 + p) * plane + q * layout.step()..]);
        }
    }
}

/// One tile of parity `(PY, PX)`'s planes for `K` channels: [`TILE`]
/// vectors each, summed over `dy`'s channels and the parity's taps.
#[inline(always)]
fn taps_of<E: Element, V: Lanes<E>, const K: usize, const PY: usize, const PX: usize>(
    copies: &[E],
    wts: &[E],
    layout: Layout,
    tile: usize,
) -> [[V; TILE]; K] {
    let (ty, tx) = (taps(PY), taps(PX));
    let per = ty.len() * tx.len();
    let (copy, step, cols) = (layout.copy(), layout.step(), layout.cols);
    let mut acc = [[V::zero(); TILE]; K];
    for (c, wc) in wts.chunks_exact(K * per).enumerate() {
        let shifted = &copies[c * 2 * copy..][..2 * copy];
        for (t, &(_, sy)) in ty.iter().enumerate() {
            for (u, &(_, sx)) in tx.iter().enumerate() {
                let load = |q: usize| {
                    let at = sx * copy + tile + sy * cols + q * step;
                    debug_assert!(at + LANES <= 2 * copy);
                    // SAFETY: a tile's last vector ends inside the planes'
                    // `rows × cols`, and a copy has one more row, for `sy = 1`.
                    unsafe { V::load(std::slice::from_raw_parts(shifted.as_ptr().add(at), LANES)) }
                };
                let v: [V; TILE] = std::array::from_fn(load);
                for (o, acc) in acc.iter_mut().enumerate() {
                    let wv = V::splat(wc[o * per + t * tx.len() + u]);
                    for (a, &v) in acc.iter_mut().zip(&v) {
                        *a = wv.mul_add(v, *a);
                    }
                }
            }
        }
    }
    acc
}

/// The parity planes `planes[c, 4, rows, cols]` onto `dx[c, h, w]`: pixel
/// `(2i + py, 2j + px)` from plane `(py, px)`'s `(i, j)`. Inlined into the
/// caller's AVX-512, where the pairs are stored a vector at a time.
#[inline(always)]
fn interleave<E: Element>(planes: &[E], g: &Window, layout: Layout, dx: &mut [MaybeUninit<E>]) {
    let plane = layout.rows * layout.cols;
    for (c, dst) in dx.chunks_exact_mut(g.h * g.w).enumerate() {
        for (y, row) in dst.chunks_exact_mut(g.w).enumerate() {
            let (i, py) = (y / 2, y % 2);
            let from = |px: usize| &planes[(c * 4 + py * 2 + px) * plane + i * layout.cols..][..layout.ow];
            let (even, odd) = (from(0), from(1));
            let whole = g.w / 2;
            let (pairs, last) = row.split_at_mut(2 * whole);
            let (even, odd) = (&even[..whole], &odd[..whole]);
            for j in 0..whole {
                pairs[2 * j].write(even[j]);
                pairs[2 * j + 1].write(odd[j]);
            }
            if let [last] = last {
                last.write(from(0)[whole]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::im2col_backward_data;
    use super::super::winograd::tests::{definition, max_abs, rand, relative_error};
    use super::*;
    use crate::rng::Rng;

    fn window(n: usize, c: usize, h: usize, w: usize) -> Window {
        Window { n, c, h, w, kh: 3, kw: 3, stride: 2, pad: 1 }
    }

    /// Every copy this CPU runs: the portable one, and AVX-512's where it runs.
    fn paths() -> Vec<Path> {
        Path::all().into_iter().filter(|&p| p != Path::Avx2).collect()
    }

    /// Each input pixel as one fused multiply-add chain from zero over
    /// `(c_out, ky, kx)`, its parity's taps only, outside taps as zeros:
    /// what the kernel promises.
    fn chains<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize) -> Vec<T> {
        let (h, wd, c) = (g.h, g.w, g.c);
        let (oh, ow) = (h.div_ceil(2), wd.div_ceil(2));
        let mut dx = vec![T::ZERO; g.n * g.image_len()];
        for (i, v) in dx.iter_mut().enumerate() {
            let (n, ci, iy, ix) = (i / (c * h * wd), i / (h * wd) % c, i / wd % h, i % wd);
            for o in 0..c_out {
                for &(ky, sy) in taps(iy % 2) {
                    for &(kx, sx) in taps(ix % 2) {
                        let (oy, ox) = (iy / 2 + sy, ix / 2 + sx);
                        let d = if oy < oh && ox < ow { dy[((n * c_out + o) * oh + oy) * ow + ox] } else { T::ZERO };
                        *v = w[(o * c + ci) * 9 + ky * 3 + kx].mul_add(d, *v);
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn backward_data_matches_the_definition_in_f64() {
        let mut r = Rng::new(35, 0);
        // Planes at most 8 wide (rows of 8 in pairs) and wider (rows of 16,
        // one or two vectors across), even and odd sides, single rows and
        // columns, channel counts with blocks of 6 and 4, an overlapping last
        // block and fewer than a block, many images.
        let cases = [
            (window(2, 4, 16, 16), 6),
            (window(1, 9, 15, 13), 5),
            (window(2, 16, 32, 32), 3),
            (window(1, 5, 9, 40), 7),
            (window(3, 3, 7, 17), 2),
            (window(2, 2, 1, 20), 3),
            (window(2, 6, 11, 1), 4),
            (window(20, 12, 4, 6), 2),
        ];
        for path in paths() {
            for (g, c_out) in cases {
                let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * g.c));
                let dy = rand(&mut r, g.n * c_out * g.h.div_ceil(2) * g.w.div_ceil(2));
                let [_, want, _] = definition(&x, &w, &dy, &g, c_out);
                let got = transposed(&dy, &w, &g, c_out, path);
                // A sum of at most 4·7 products in f64: within 28·2⁻⁵³·Σ|terms| of the exact one.
                let scale = max_abs(&want);
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-13 * scale), "{g:?} → {c_out}, {path:?}");
            }
        }
    }

    #[test]
    fn every_pixel_is_one_fused_chain_whatever_the_copy_or_thread_count() {
        let mut r = Rng::new(36, 0);
        let f32s = |n: usize, r: &mut Rng| (0..n).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        for (g, c_out) in [(window(5, 16, 16, 16), 9), (window(3, 10, 13, 33), 4), (window(4, 7, 8, 8), 3)] {
            let (dy, w) = (f32s(g.n * c_out * g.h.div_ceil(2) * g.w.div_ceil(2), &mut r), f32s(c_out * 9 * g.c, &mut r));
            let want = chains(&dy, &w, &g, c_out);
            for path in paths() {
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    assert!(pool.install(|| transposed(&dy, &w, &g, c_out, path)) == want, "{g:?}, {path:?}, {threads} threads");
                }
            }
        }
    }

    /// Max |f32 − f64 definition| / max |dx| on the stride-2 convs that
    /// enter ResNet stages 2 and 3, against im2col + GEMM's.
    #[test]
    fn f32_error_stays_near_im2col() {
        let mut r = Rng::new(37, 0);
        for (c, side, c_out) in [(16, 32, 32), (32, 16, 64)] {
            let g = window(2, c, side, side);
            let (x, w) = (rand(&mut r, g.n * g.image_len()), rand(&mut r, c_out * 9 * c));
            let dy = rand(&mut r, g.n * c_out * (side / 2).pow(2));
            let [_, want, _] = definition(&x, &w, &dy, &g, c_out);
            let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (wf, dyf) = (f32s(&w), f32s(&dy));
            let direct = relative_error(&transposed(&dyf, &wf, &g, c_out, Path::widest()), &want);
            let base = relative_error(&im2col_backward_data(&dyf, &wf, &g, c_out, (side / 2, side / 2)).unwrap(), &want);
            eprintln!("{c}c{side} → {c_out}: im2col {base:.2e}, direct {direct:.2e}");
            assert!(direct < F32_ERROR, "{c}c{side}: {direct:e} vs im2col {base:e}");
        }
    }
}
