//! Σx of a stride-1 convolution's patches without unfolding them.
//!
//! The entry for channels `(c, c')` at taps `(t, t')` sums the products
//! `x[c, u, v]·x[c', u + dy, v + dx]` over images and positions, where
//! `(dy, dx)` is tap `t'` minus tap `t`. Tap pairs with the same offset share
//! these products and differ only in which positions they sum over: each
//! tap's window, cut by the borders. So each offset's products are summed
//! once, into buckets of positions (rectangles cut wherever some tap's window
//! starts or ends), and each tap pair adds up the buckets its window covers.
//!
//! Why: the unfolded Gram multiplies every pair of a patch's `C·kh·kw`
//! entries at every position, so each offset's products are formed once per
//! tap pair sharing it. For 3×3 taps on 8×8 planes, 64 channels and batch
//! 128, the 13 offsets that remain (the others are their transposes) cover
//! 610 position pairs: 0.64 GFLOP, against 2.7 for the unfolded lower
//! triangle.
//!
//! Each bucket is one sequence of GEMMs on one task, and the buckets are
//! added in a fixed order, so the result depends on the shape alone, never
//! on the thread count.

use super::gemm::{gemm_on_thread_strided, Leading};
use crate::backend::{Gemm, Window};
use crate::error::Result;
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// `acc += alpha·Σ_patches p pᵀ` (lower triangle) for a stride-1 window;
/// the caller has checked the lengths and that the window fits.
pub(super) fn gram_lower_shifted<T: Scalar>(acc: &mut [T], x: &[T], g: Window, alpha: f64) -> Result<()> {
    debug_assert_eq!(g.stride, 1);
    let (oh, ow) = g.out("gram_lower_patches")?;
    let (c, taps) = (g.c, g.kh * g.kw);
    let k = c * taps;
    if x.is_empty() {
        return Ok(());
    }
    let y = position_major(x, &g);
    let offsets = Offsets::new(&g, (oh, ow));
    // Every offset's buckets, each a C×C sum of products, on its own task.
    let tasks: Vec<(usize, Range<usize>, Range<usize>)> = (0..offsets.list.len())
        .flat_map(|o| {
            let (rows, cols) = (offsets.rows[o].spans(), offsets.cols[o].spans());
            rows.flat_map(move |r| cols.clone().map(move |q| (o, r.clone(), q)))
        })
        .collect();
    let buckets: Vec<Vec<T>> = tasks
        .par_iter()
        .with_max_len(1)
        .map(|(o, rows, cols)| bucket(&y, &g, offsets.list[*o], rows.clone(), cols.clone()))
        .collect::<Result<_>>()?;
    // Tap pairs t ≥ t', each the sum of the buckets its window covers, in f64.
    let pairs: Vec<(usize, usize)> = (0..taps).flat_map(|t| (0..=t).map(move |u| (t, u))).collect();
    let blocks: Vec<Vec<f64>> = pairs
        .par_iter()
        .map(|&(t, u)| {
            let (a, b) = ((t / g.kw, t % g.kw), (u / g.kw, u % g.kw));
            let o = offsets.index(b.0 as isize - a.0 as isize, b.1 as isize - a.1 as isize);
            let (rows, cols) = (offsets.rows[o].covered(a.0), offsets.cols[o].covered(a.1));
            let first = offsets.first_bucket[o];
            let mut sum = vec![0.0; c * c];
            for r in rows {
                for q in cols.clone() {
                    let bucket = &buckets[first + r * offsets.cols[o].count() + q];
                    sum.iter_mut().zip(bucket).for_each(|(s, v)| *s += v.to_f64());
                }
            }
            sum
        })
        .collect();
    // Row i = (channel, tap) of the patch; its entry j ≤ i comes from block
    // (t, t') if t ≥ t', else from the transpose of block (t', t).
    acc.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        let (ci, ti) = (i / taps, i % taps);
        for (j, out) in row[..=i].iter_mut().enumerate() {
            let (cj, tj) = (j / taps, j % taps);
            let v = match ti >= tj {
                true => blocks[ti * (ti + 1) / 2 + tj][ci * c + cj],
                false => blocks[tj * (tj + 1) / 2 + ti][cj * c + ci],
            };
            *out += T::from_f64(alpha * v);
        }
    });
    Ok(())
}

/// `x` (`[n, c, h, w]`) as `[h][w][n][c]`: a run of positions along a row
/// is then one `(positions·n) × c` row-major operand.
fn position_major<T: Scalar>(x: &[T], g: &Window) -> Vec<T> {
    let (n, c, h, w) = (g.n, g.c, g.h, g.w);
    let mut y = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()].par_chunks_mut(w * n * c).enumerate().for_each(|(u, row): (usize, &mut [MaybeUninit<T>])| {
        for image in 0..n {
            for ch in 0..c {
                let src = &x[((image * c + ch) * h + u) * w..][..w];
                for (v, &value) in src.iter().enumerate() {
                    row[(v * n + image) * c + ch] = MaybeUninit::new(value);
                }
            }
        }
    });
    // SAFETY: every row u wrote all of its w·n·c elements.
    unsafe { y.set_len(x.len()) };
    y
}

/// `bucket[c][c'] = Σ x[c, u, v]·x[c', u + dy, v + dx]` over the images and
/// the first operand's positions `rows × cols`: one GEMM per row, `k` =
/// images × columns, accumulated in row order.
fn bucket<T: Scalar>(y: &[T], g: &Window, (dy, dx): (isize, isize), rows: Range<usize>, cols: Range<usize>) -> Result<Vec<T>> {
    let (n, c, w) = (g.n, g.c, g.w);
    let mut sum = vec![T::ZERO; c * c];
    let at = |u: usize, v: usize| (u * w + v) * n * c;
    let partner = |p: usize, d: isize| p.checked_add_signed(d).expect("offsets keep partners inside the plane");
    for (r, u) in rows.enumerate() {
        let a = &y[at(u, cols.start)..];
        let b = &y[at(partner(u, dy), partner(cols.start, dx))..];
        let gemm = Gemm { m: c, n: c, k: n * cols.len(), trans_a: true, trans_b: false, alpha: 1.0, beta: if r == 0 { 0.0 } else { 1.0 } };
        gemm_on_thread_strided(a, b, &mut sum, gemm, Leading { a: c, b: c, c })?;
    }
    Ok(sum)
}

/// The offsets `(dy, dx)` = tap t' − tap t of the tap pairs t ≥ t' (row-major
/// tap order: dy < 0, or dy = 0 and dx ≤ 0).
fn lower_offsets(g: &Window) -> Vec<(isize, isize)> {
    let (kh, kw) = (g.kh as isize, g.kw as isize);
    (1 - kh..=0).flat_map(|dy| (1 - kw..=if dy < 0 { kw - 1 } else { 0 }).map(move |dx| (dy, dx))).collect()
}

/// Position pairs `(p, p + offset)` inside the plane over all offsets: the
/// products per image and channel pair that `gram_lower_shifted` forms.
pub fn position_pairs(g: &Window) -> usize {
    let inside = |len: usize, d: isize| len.saturating_sub(d.unsigned_abs());
    lower_offsets(g).into_iter().map(|(dy, dx)| inside(g.h, dy) * inside(g.w, dx)).sum()
}

/// The offsets `(dy, dx)` = tap t' − tap t of the tap pairs t ≥ t' (row-major
/// tap order: dy < 0, or dy = 0 and dx ≤ 0), and where each one's buckets lie.
struct Offsets {
    list: Vec<(isize, isize)>,
    rows: Vec<Cuts>,
    cols: Vec<Cuts>,
    /// Index of each offset's first bucket; its buckets run row-major over (row span, column span).
    first_bucket: Vec<usize>,
}

impl Offsets {
    fn new(g: &Window, (oh, ow): (usize, usize)) -> Self {
        let list = lower_offsets(g);
        let rows: Vec<Cuts> = list.iter().map(|&(dy, _)| Cuts::new(g.h, g.kh, g.pad, oh, dy)).collect();
        let cols: Vec<Cuts> = list.iter().map(|&(_, dx)| Cuts::new(g.w, g.kw, g.pad, ow, dx)).collect();
        let first_bucket = rows
            .iter()
            .zip(&cols)
            .scan(0, |next, (r, q)| {
                let first = *next;
                *next += r.count() * q.count();
                Some(first)
            })
            .collect();
        Offsets { list, rows, cols, first_bucket }
    }

    fn index(&self, dy: isize, dx: isize) -> usize {
        self.list.iter().position(|&o| o == (dy, dx)).expect("every tap pair t ≥ t' has its offset listed")
    }
}

/// One axis of an offset `d`: the first operand's positions `p` whose
/// partner `p + d` is inside `0..len`, cut wherever some tap's window
/// `tap − pad .. tap − pad + out` starts or ends.
struct Cuts {
    points: Vec<usize>,
    pad: usize,
    out: usize,
}

impl Cuts {
    fn new(len: usize, taps: usize, pad: usize, out: usize, d: isize) -> Self {
        let (lo, hi) = ((-d).max(0), (len as isize).min(len as isize - d));
        let mut points = Vec::new();
        if lo < hi {
            points.extend([lo as usize, hi as usize]);
            for tap in (0..taps as isize).filter(|tap| (0..taps as isize).contains(&(tap + d))) {
                let start = tap - pad as isize;
                points.extend([start.clamp(lo, hi) as usize, (start + out as isize).clamp(lo, hi) as usize]);
            }
            points.sort_unstable();
            points.dedup();
        }
        Cuts { points, pad, out }
    }

    /// The buckets' position ranges along this axis.
    fn spans(&self) -> impl Iterator<Item = Range<usize>> + Clone + '_ {
        self.points.windows(2).map(|p| p[0]..p[1])
    }

    fn count(&self) -> usize {
        self.points.len().saturating_sub(1)
    }

    /// Indices of the spans that make up `tap`'s window.
    fn covered(&self, tap: usize) -> Range<usize> {
        let (Some(&lo), Some(&hi)) = (self.points.first(), self.points.last()) else { return 0..0 };
        let start = tap as isize - self.pad as isize;
        let clamp = |p: isize| p.clamp(lo as isize, hi as isize) as usize;
        let find = |p: usize| self.points.binary_search(&p).expect("window ends are cut points");
        find(clamp(start))..find(clamp(start + self.out as isize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `alpha·Σ p pᵀ` over every patch, by the definition, in f64.
    fn reference(x: &[f64], g: &Window, alpha: f64) -> Vec<f64> {
        let (oh, ow) = g.out("test").unwrap();
        let k = g.patch_len();
        let at = |image: usize, c: usize, iy: isize, ix: isize| {
            let inside = (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
            if inside {
                x[((image * g.c + c) * g.h + iy as usize) * g.w + ix as usize]
            } else {
                0.0
            }
        };
        let mut want = vec![0.0; k * k];
        for image in 0..g.n {
            for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                let patch: Vec<f64> = (0..k)
                    .map(|i| {
                        let (c, t) = (i / (g.kh * g.kw), i % (g.kh * g.kw));
                        at(image, c, (oy + t / g.kw) as isize - g.pad as isize, (ox + t % g.kw) as isize - g.pad as isize)
                    })
                    .collect();
                for i in 0..k {
                    for j in 0..=i {
                        want[i * k + j] += alpha * patch[i] * patch[j];
                    }
                }
            }
        }
        want
    }

    fn window(n: usize, c: usize, (h, w): (usize, usize), (kh, kw): (usize, usize), pad: usize) -> Window {
        Window { n, c, h, w, kh, kw, stride: 1, pad }
    }

    #[test]
    fn matches_the_definition_for_every_kind_of_border() {
        let mut r = Rng::new(41, 0);
        for g in [
            window(3, 4, (8, 8), (3, 3), 1),
            window(2, 3, (7, 5), (3, 2), 0),
            window(2, 2, (5, 6), (5, 3), 2),
            window(2, 3, (4, 4), (3, 3), 2),
            window(1, 2, (2, 9), (3, 3), 1),
            window(2, 2, (1, 1), (3, 3), 1),
            window(2, 5, (6, 4), (1, 2), 0),
            window(3, 1, (9, 7), (4, 4), 3),
        ] {
            let x: Vec<f64> = (0..g.n * g.image_len()).map(|_| r.normal()).collect();
            let k = g.patch_len();
            let acc0: Vec<f64> = (0..k * k).map(|_| r.normal()).collect();
            let mut got = acc0.clone();
            gram_lower_shifted(&mut got, &x, g, 0.3).unwrap();
            let want = reference(&x, &g, 0.3);
            for i in 0..k {
                for j in 0..=i {
                    let (gv, wv) = (got[i * k + j], acc0[i * k + j] + want[i * k + j]);
                    assert!((gv - wv).abs() < 1e-12 * (1.0 + wv.abs()), "{g:?} ({i},{j}): {gv} vs {wv}");
                }
                // The upper triangle is not touched.
                assert!(got[i * k + i + 1..(i + 1) * k] == acc0[i * k + i + 1..(i + 1) * k], "{g:?} row {i}");
            }
        }
    }
}
