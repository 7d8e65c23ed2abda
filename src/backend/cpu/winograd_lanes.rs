//! Winograd F(2×2, 3×3) on 8×8 and 16×16 planes (the ResNets' last two
//! stages), f32 on AVX-512, a plane's tiles of 2×2 outputs one per lane:
//! 16 tiles, one register, at 8×8; 64, four registers of two tile rows, at
//! 16×16. A plane's transforms are then whole-register arithmetic with no
//! edge loops. The 4×4 input tile `(t, u)` reads padded rows `2t..2t + 4`
//! and columns `2u..2u + 4`; split into its four parity sub-planes
//! (`x[2t + a][2u + b]`, tiles in the same lanes), every row or column of a
//! tile is a parity sub-plane shifted by one tile at most, zeros shifted in
//! at the plane's border.
//!
//! Between the transforms, the 16 products `U_e · V_e` (`U = G g Gᵀ`,
//! [`super::winograd`]'s filter transform) are register-blocked GEMMs over
//! the input channels, 6 (or 4) output channels × 4 registers of tiles,
//! each output one chain of fused multiply-adds in input-channel order. So
//! an output depends on neither its image's place in a group nor the thread
//! count.
//!
//! Why: the direct kernel ([`super::direct`]) runs the 64c8 forward at
//! about 91% of the FMA peak and was still no faster than PyTorch's;
//! F(2×2, 3×3) spends 16 multiplies per tile and channel pair where it
//! spends 36. [`super::winograd`]'s tile rows on these planes are 5 or 9
//! tiles long, and its transforms took half of a 64c8 forward that ran 2×
//! slower than the direct kernel's. f32 error against the f64 definition:
//! [`F32_ERROR`].

#![cfg(target_arch = "x86_64")]

use super::conv::rotated;
use super::direct::channel_blocks;
use super::lanes::{self, as_elements, into_scalars};
use super::winograd::filter_transform;
use crate::backend::Window;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Bound on the f32 error, max |f32 − f64 definition| / max |exact|
/// (`tests::matches_the_definition`, which prints what it measures).
#[cfg(test)]
const F32_ERROR: f64 = 1e-6;

/// Transform elements per tile (4×4).
const E: usize = 16;

/// Tiles a task transforms and multiplies together: 8 images at 8×8, 2 at
/// 16×16. `V` and `M` hold `16 · COLS` floats per channel, 512 KiB each at
/// 64 channels, inside L2.
const COLS: usize = 128;

/// Registers of tiles per register block.
const NV: usize = 4;

/// Whether `g` (output grid `out`) is a 3×3 pad-1 stride-1 window on planes of 8×8 or 16×16.
pub(super) fn applies(g: &Window, out: (usize, usize)) -> bool {
    let square = matches!((g.h, g.w), (8, 8) | (16, 16));
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1 && square && out == (g.h, g.w) && lanes::avx512()
}

/// `y[n, c_out, h, w]` of `x[n, c, h, w]` and `w[c_out, c, 3, 3]`, for a
/// window that [`applies`]; None unless `T` is f32. The caller checks the lengths.
pub(super) fn conv2d<T: Scalar>(x: &[T], w: &[T], g: &Window, c_out: usize) -> Option<Vec<T>> {
    into_scalars(conv2d_f32(as_elements(x)?, as_elements(w)?, g, c_out))
}

/// [`super::conv::conv2d_backward_data`] for a window that [`applies`]: the
/// forward conv of `dy` with `w` rotated 180°, input and output channels
/// swapped; None unless `T` is f32 (checked before the filters are rotated).
pub(super) fn conv2d_backward_data<T: Scalar>(dy: &[T], w: &[T], g: &Window, c_out: usize) -> Option<Vec<T>> {
    let (dy, w) = (as_elements::<f32, T>(dy)?, as_elements::<f32, T>(w)?);
    into_scalars(conv2d_f32(dy, &rotated(w, g.c, c_out), &Window { c: c_out, ..*g }, g.c))
}

// Not generic, so the library compiles it once (lanes.rs, "One compiled copy").
// `applies` admits planes of 8×8 and 16×16 only.
fn conv2d_f32(x: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
    match g.h {
        8 => convolve::<8, 1>(x, w, g, c_out),
        _ => convolve::<16, 4>(x, w, g, c_out),
    }
}

/// [`conv2d_f32`] on planes `SIDE` wide, `Q` registers of tiles a plane.
fn convolve<const SIDE: usize, const Q: usize>(x: &[f32], w: &[f32], g: &Window, c_out: usize) -> Vec<f32> {
    let plane = SIDE * SIDE;
    let len = g.n * c_out * plane;
    if len == 0 || g.c == 0 {
        return vec![0.0; len];
    }
    let u = filter_transform(w, c_out, g.c);
    let blocks = channel_blocks(c_out);
    let images = COLS / (16 * Q);
    let mut y = Vec::with_capacity(len);
    let groups = x.par_chunks(images * g.c * plane).zip(y.spare_capacity_mut()[..len].par_chunks_mut(images * c_out * plane));
    // A few long tasks, so each thread fills its scratch once.
    let per_thread = g.n.div_ceil(images).div_ceil(rayon::current_num_threads());
    groups.with_min_len(per_thread).for_each_init(Scratch::default, |s, (x, y)| {
        // SAFETY: `applies` checked that the CPU has AVX-512F.
        unsafe { group::<SIDE, Q>(x, &u, &blocks, (g.c, c_out), y, s) }
    });
    // SAFETY: `group` stores every output plane of every image.
    unsafe { y.set_len(len) };
    y
}

/// Transformed inputs `v[e, c, image·tiles + tile]` and products
/// `m[e, c_out, image·tiles + tile]` of one group. Never zeroed: each phase
/// writes every place the next one reads (zeroed, they took 2% of the
/// 64c8 forward, `perf`).
#[derive(Default)]
struct Scratch {
    v: Vec<MaybeUninit<f32>>,
    m: Vec<MaybeUninit<f32>>,
}

/// One group of images: transform, multiply, transform back.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn group<const SIDE: usize, const Q: usize>(
    x: &[f32],
    u: &[f32],
    blocks: &[(usize, usize)],
    (c, c_out): (usize, usize),
    y: &mut [MaybeUninit<f32>],
    s: &mut Scratch,
) {
    let (plane, tiles) = (SIDE * SIDE, 16 * Q);
    let cols = x.len() / (c * plane) * tiles;
    s.v.resize(E * c * cols, MaybeUninit::uninit());
    s.m.resize(E * c_out * cols, MaybeUninit::uninit());
    for (i, image) in x.chunks_exact(c * plane).enumerate() {
        for (ci, src) in image.chunks_exact(plane).enumerate() {
            let at = |e: usize, q: usize| (e * c + ci) * cols + i * tiles + 16 * q;
            // SAFETY: the CPU has AVX-512F.
            unsafe {
                input_tiles::<SIDE, Q>(
                    src,
                    #[inline(always)]
                    |e, q, v| store(v, &mut s.v[at(e, q)..]),
                )
            };
        }
    }
    let registers = cols / 16;
    for e in 0..E {
        let (u, v) = (&u[e * c_out * c..][..c_out * c], &s.v[e * c * cols..][..c * cols]);
        let m = &mut s.m[e * c_out * cols..][..c_out * cols];
        for &(o, k) in blocks {
            for first in (0..registers).step_by(NV) {
                let at = (o, 16 * first);
                // SAFETY: the CPU has AVX-512F.
                unsafe {
                    match (k, registers - first) {
                        (6, 4..) => products::<6, 4>(u, v, m, at, (c, cols)),
                        (4, 4..) => products::<4, 4>(u, v, m, at, (c, cols)),
                        (1, 4..) => products::<1, 4>(u, v, m, at, (c, cols)),
                        (6, 3) => products::<6, 3>(u, v, m, at, (c, cols)),
                        (4, 3) => products::<4, 3>(u, v, m, at, (c, cols)),
                        (1, 3) => products::<1, 3>(u, v, m, at, (c, cols)),
                        (6, 2) => products::<6, 2>(u, v, m, at, (c, cols)),
                        (4, 2) => products::<4, 2>(u, v, m, at, (c, cols)),
                        (1, 2) => products::<1, 2>(u, v, m, at, (c, cols)),
                        (6, _) => products::<6, 1>(u, v, m, at, (c, cols)),
                        (4, _) => products::<4, 1>(u, v, m, at, (c, cols)),
                        _ => products::<1, 1>(u, v, m, at, (c, cols)),
                    }
                }
            }
        }
    }
    for (i, image) in y.chunks_exact_mut(c_out * plane).enumerate() {
        for (o, dst) in image.chunks_exact_mut(plane).enumerate() {
            let at = |e: usize, q: usize| (e * c_out + o) * cols + i * tiles + 16 * q;
            // SAFETY: the CPU has AVX-512F.
            unsafe {
                output_plane::<SIDE, Q>(
                    #[inline(always)]
                    |e, q| load(&s.m[at(e, q)..]),
                    dst,
                )
            };
        }
    }
}

/// The first 16 places of scratch `s`, which the phase before wrote.
#[inline(always)]
fn load(s: &[MaybeUninit<f32>]) -> __m512 {
    // SAFETY: 16 places in bounds (indexed first) and written; the caller has AVX-512F.
    unsafe { _mm512_loadu_ps(s[..16].as_ptr().cast()) }
}

#[inline(always)]
fn store(v: __m512, s: &mut [MaybeUninit<f32>]) {
    // SAFETY: 16 places in bounds; a raw pointer, so no reference to an unwritten float.
    unsafe { _mm512_storeu_ps(s[..16].as_mut_ptr().cast(), v) }
}

/// `m[e][o..o + R][col..col + 16·V] = u[e][o..o + R][·] · v[e][·][col..]`
/// for one transform element: R × V registers, summed over the `c` input
/// channels in order, one fused multiply-add per channel.
#[inline(always)]
unsafe fn products<const R: usize, const V: usize>(
    u: &[f32],
    v: &[MaybeUninit<f32>],
    m: &mut [MaybeUninit<f32>],
    (o, col): (usize, usize),
    (c, cols): (usize, usize),
) {
    // Checked once, so the channel loop runs on pointers without bounds tests.
    assert!((o + R) * c <= u.len() && c * cols <= v.len() && (o + R) * cols <= m.len() && col + 16 * V <= cols);
    let (u, v) = (u.as_ptr().add(o * c), v.as_ptr().add(col).cast::<f32>());
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for ci in 0..c {
        // SAFETY (the loads): inside `u` and `v` by the assert, and `v` written.
        let x: [__m512; V] = std::array::from_fn(|j| _mm512_loadu_ps(v.add(ci * cols + 16 * j)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_ps(*u.add(r * c + ci));
            for (a, &x) in acc.iter_mut().zip(&x) {
                *a = _mm512_fmadd_ps(w, x, *a);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (j, &a) in acc.iter().enumerate() {
            store(a, &mut m[(o + r) * cols + col + j * 16..]);
        }
    }
}

/// A permute's index register, lane `l` holding `f(l)`.
#[inline(always)]
unsafe fn lane_index(f: impl Fn(i32) -> i32) -> __m512i {
    let lanes: [i32; 16] = std::array::from_fn(|l| f(l as i32));
    _mm512_loadu_si512(lanes.as_ptr().cast())
}

/// Each tile's neighbour in the tile row above (`t − 1`), from register
/// `cur` and the one before it (zeros above the plane), tile rows `tw` lanes long.
#[inline(always)]
unsafe fn above(before: __m512, cur: __m512, tw: i32) -> __m512 {
    _mm512_permutex2var_ps(before, lane_index(|l| l + 16 - tw), cur)
}

/// Each tile's neighbour in the tile row below (`t + 1`).
#[inline(always)]
unsafe fn below(cur: __m512, after: __m512, tw: i32) -> __m512 {
    _mm512_permutex2var_ps(cur, lane_index(|l| l + tw), after)
}

/// Each tile's left neighbour (`u − 1`), zero in a tile row's first lane
/// (tile rows of 4 or 8 lanes).
#[inline(always)]
unsafe fn left(v: __m512, tw: i32) -> __m512 {
    let keep = if tw == 4 { 0xEEEE } else { 0xFEFE };
    _mm512_maskz_permutexvar_ps(keep, lane_index(|l| (l + 15) % 16), v)
}

/// Each tile's right neighbour (`u + 1`), zero in a tile row's last lane.
#[inline(always)]
unsafe fn right(v: __m512, tw: i32) -> __m512 {
    let keep = if tw == 4 { 0x7777 } else { 0x7F7F };
    _mm512_maskz_permutexvar_ps(keep, lane_index(|l| (l + 1) % 16), v)
}

/// `[r0 − r2, r1 + r2, r2 − r1, r1 − r3]`: `Bᵀ` applied to rows (or columns) 0..4 of every tile.
#[inline(always)]
unsafe fn b_t([r0, r1, r2, r3]: [__m512; 4]) -> [__m512; 4] {
    [_mm512_sub_ps(r0, r2), _mm512_add_ps(r1, r2), _mm512_sub_ps(r2, r1), _mm512_sub_ps(r1, r3)]
}

/// `Bᵀ d B` of every tile of one input plane (pad 1): `put(e, q, v)` for
/// element `e = 4k + l` of register `q`'s tiles.
///
/// Padded row `2t + i` is plane row `2t + i − 1`: rows `i = 0..4` of tile
/// row `t` are the odd rows of tile row `t − 1`, the even and odd rows of
/// `t`, the even rows of `t + 1`; columns alike.
#[inline(always)]
unsafe fn input_tiles<const SIDE: usize, const Q: usize>(plane: &[f32], mut put: impl FnMut(usize, usize, __m512)) {
    let tw = SIDE as i32 / 2;
    let p = parities::<SIDE, Q>(plane);
    for q in 0..Q {
        let (t0, t1) = (tile_rows(&p, 0, q, tw), tile_rows(&p, 1, q, tw));
        for k in 0..4 {
            let v = b_t([left(t1[k], tw), t0[k], t1[k], right(t0[k], tw)]);
            for (l, v) in v.into_iter().enumerate() {
                put(4 * k + l, q, v);
            }
        }
    }
}

/// `Bᵀ` down the rows of register `q`'s tiles, their columns of parity `b`.
#[inline(always)]
unsafe fn tile_rows<const Q: usize>(p: &[[__m512; Q]; 4], b: usize, q: usize, tw: i32) -> [__m512; 4] {
    let (even, odd) = (&p[b], &p[2 + b]);
    let before = if q > 0 { odd[q - 1] } else { _mm512_setzero_ps() };
    let after = if q + 1 < Q { even[q + 1] } else { _mm512_setzero_ps() };
    b_t([above(before, odd[q], tw), even[q], odd[q], below(even[q], after, tw)])
}

/// The plane's parity sub-planes `[p00, p01, p10, p11]`, `p_ab` holding
/// `x[2t + a][2u + b]` in tile `(t, u)`'s lane.
///
/// At 8×8 (lane `4t + u`) each register of the plane holds rows `2t` and
/// `2t + 1`: a two-source permute gathers one column parity of both rows
/// for `t` and `t + 1`, and 128-bit block shuffles then pair the halves of
/// tile rows 0–1 with those of 2–3. At 16×16 (register `q`, lane `8t' + u`
/// for tile row `t = 2q + t'`) a register is a row: one permute of rows
/// `4q + a` and `4q + 2 + a` gathers a register of `p_ab`.
#[inline(always)]
unsafe fn parities<const SIDE: usize, const Q: usize>(plane: &[f32]) -> [[__m512; Q]; 4] {
    assert!(plane.len() >= SIDE * SIDE);
    // The plane's r-th 16 floats: two rows at 8×8, one at 16×16.
    let row = |r: usize| plane[16 * r..][..16].as_ptr();
    let mut p = [[_mm512_setzero_ps(); Q]; 4];
    for b in 0..2 {
        if SIDE == 8 {
            // Lane 4·(2a + t) + u ← lane 16t + 8a + 2u + b of a register pair (t = 0, 1).
            let idx = lane_index(|l| {
                let (a, t, u) = (l / 8, l / 4 % 2, l % 4);
                16 * t + 8 * a + 2 * u + b as i32
            });
            let (top, bottom) = (
                _mm512_permutex2var_ps(_mm512_loadu_ps(row(0)), idx, _mm512_loadu_ps(row(1))),
                _mm512_permutex2var_ps(_mm512_loadu_ps(row(2)), idx, _mm512_loadu_ps(row(3))),
            );
            p[b][0] = _mm512_shuffle_f32x4::<0x44>(top, bottom);
            p[2 + b][0] = _mm512_shuffle_f32x4::<0xEE>(top, bottom);
        } else {
            // Lane 8t' + u ← lane 16t' + 2u + b of rows 4q + a and 4q + 2 + a.
            let idx = lane_index(|l| 16 * (l / 8) + 2 * (l % 8) + b as i32);
            for a in 0..2 {
                for (q, p) in p[2 * a + b].iter_mut().enumerate() {
                    *p = _mm512_permutex2var_ps(_mm512_loadu_ps(row(4 * q + a)), idx, _mm512_loadu_ps(row(4 * q + 2 + a)));
                }
            }
        }
    }
    p
}

/// `[r0 + r1 + r2, r1 − r2 − r3]`: `Aᵀ` applied to rows (or columns) 0..4 of every tile.
#[inline(always)]
unsafe fn a_t([r0, r1, r2, r3]: [__m512; 4]) -> [__m512; 2] {
    [_mm512_add_ps(_mm512_add_ps(r0, r1), r2), _mm512_sub_ps(_mm512_sub_ps(r1, r2), r3)]
}

/// `Aᵀ m A` of every tile, element `e` of
/// register `q` from `get(e, q)`, onto an output plane.
#[inline(always)]
unsafe fn output_plane<const SIDE: usize, const Q: usize>(get: impl Fn(usize, usize) -> __m512, plane: &mut [MaybeUninit<f32>]) {
    assert!(plane.len() >= SIDE * SIDE);
    let out = plane.as_mut_ptr().cast::<f32>();
    for q in 0..Q {
        // Down the tile's columns, then along its rows: y_ab for output row a, column b.
        let mut s = [[_mm512_setzero_ps(); 2]; 4];
        for (l, s) in s.iter_mut().enumerate() {
            *s = a_t([get(l, q), get(4 + l, q), get(8 + l, q), get(12 + l, q)]);
        }
        let [y00, y01] = a_t([s[0][0], s[1][0], s[2][0], s[3][0]]);
        let [y10, y11] = a_t([s[0][1], s[1][1], s[2][1], s[3][1]]);
        if SIDE == 8 {
            for h in 0..2 {
                // Lane 8t + 2u + b of half h's row pairs ← lane 4·(2h + t) + u of y_ab.
                let idx = lane_index(|l| 16 * (l % 2) + 8 * h + 4 * (l / 8) + l % 8 / 2);
                // Rows 4h and 4h + 2 (output row parity 0), and 4h + 1 and 4h + 3.
                let (even, odd) = (_mm512_permutex2var_ps(y00, idx, y01), _mm512_permutex2var_ps(y10, idx, y11));
                // SAFETY: rows 4h..4h + 4 of the plane (asserted).
                _mm512_storeu_ps(out.add(32 * h as usize), _mm512_shuffle_f32x4::<0x44>(even, odd));
                _mm512_storeu_ps(out.add(32 * h as usize + 16), _mm512_shuffle_f32x4::<0xEE>(even, odd));
            }
        } else {
            for t in 0..2 {
                // Lane 2u + b of row 2·(2q + t) + a ← lane 8t + u of y_ab.
                let idx = lane_index(|l| 16 * (l % 2) + 8 * t as i32 + l / 2);
                for (a, (y0, y1)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
                    // SAFETY: a row of the plane (asserted).
                    _mm512_storeu_ps(out.add(16 * (4 * q + 2 * t + a)), _mm512_permutex2var_ps(y0, idx, y1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::conv;
    use crate::backend::cpu::winograd::tests::{definition, max_abs, rand, relative_error};
    use crate::rng::Rng;

    fn window(n: usize, c: usize, side: usize) -> Window {
        Window { n, c, h: side, w: side, kh: 3, kw: 3, stride: 1, pad: 1 }
    }

    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&v| v as f32).collect()
    }

    /// Forward and backward-data through the dispatch, against the f64
    /// definition: every tile's neighbours, both register-block widths, a
    /// last group of fewer images than the rest (at 8×8, 11 = 8 + 3 and 3 =
    /// 2 + 1 registers) and output channels in blocks of 6, 4 and 1.
    #[test]
    fn matches_the_definition() {
        if !lanes::avx512() {
            return;
        }
        let mut r = Rng::new(7, 0);
        for (side, n, c, c_out) in [(8, 11, 5, 10), (8, 2, 64, 64), (8, 5, 1, 3), (16, 3, 7, 10), (16, 2, 32, 32)] {
            let g = window(n, c, side);
            let plane = side * side;
            let (x, w, dy) = (rand(&mut r, n * c * plane), rand(&mut r, c_out * c * 9), rand(&mut r, n * c_out * plane));
            let [y, dx, _] = definition(&x, &w, &dy, &g, c_out);
            assert!(applies(&g, (side, side)));
            let got_y = conv::conv2d(&f32s(&x), &f32s(&w), g, c_out).unwrap();
            let got_dx = conv::conv2d_backward_data(&f32s(&dy), &f32s(&w), g, c_out).unwrap();
            let (ey, edx) = (relative_error(&got_y, &y), relative_error(&got_dx, &dx));
            println!("{side}×{side}, n {n}, c {c} → {c_out}: forward {ey:.1e}, backward-data {edx:.1e} (max |y| {:.2})", max_abs(&y));
            assert!(ey < F32_ERROR && edx < F32_ERROR, "forward {ey:e}, backward-data {edx:e}");
        }
    }

    /// The thread count and an image's place in its group change no bit.
    #[test]
    fn results_do_not_depend_on_the_thread_count_or_the_group() {
        if !lanes::avx512() {
            return;
        }
        let mut r = Rng::new(8, 0);
        for (side, n) in [(8, 13), (16, 5)] {
            let (c, c_out, plane) = (6, 6, side * side);
            let (x, w) = (f32s(&rand(&mut r, n * c * plane)), f32s(&rand(&mut r, c_out * c * 9)));
            let run = |threads: usize, x: &[f32], n: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| conv2d_f32(x, &w, &window(n, c, side), c_out))
            };
            let one = run(1, &x, n);
            assert_eq!(one, run(2, &x, n));
            // Images 3.. alone: each lands in another group and register block.
            let tail = run(2, &x[3 * c * plane..], n - 3);
            assert_eq!(one[3 * c_out * plane..], tail[..]);
        }
    }
}
