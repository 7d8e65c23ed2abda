//! A row-major matrix transposed, `b[j, i] = a[i, j]`, in 8 × 8 tiles. An
//! f32 tile goes through AVX2 registers where the CPU has AVX2: 8 row
//! loads, 24 shuffles, 8 row stores, where one element at a time the
//! stores land `rows` apart. The edges, f64, and CPUs without AVX2 go one
//! element at a time. Only moves, so every path gives the same bits.

use super::lanes::Element;
#[cfg(target_arch = "x86_64")]
use super::lanes::{self, as_elements, as_elements_mut};

/// Tile side: one AVX2 register of f32.
const T: usize = 8;

/// `a`, `rows × cols`, transposed into `b`, `cols × rows`.
pub(super) fn transpose<E: Element>(a: &[E], (rows, cols): (usize, usize), b: &mut [E]) {
    assert!(a.len() == rows * cols && b.len() == rows * cols, "transpose: {} and {} elements for {rows} × {cols}", a.len(), b.len());
    let tiled = (rows / T * T, cols / T * T);
    #[cfg(target_arch = "x86_64")]
    if let (Some(a), Some(b), true) = (as_elements::<f32, E>(a), as_elements_mut::<f32, E>(b), lanes::avx2_fma()) {
        // SAFETY: the CPU has AVX2, and every tile lies inside both matrices.
        unsafe { tiles_avx2(a, (rows, cols), tiled, b) };
        edges(a, (rows, cols), tiled, b);
        return;
    }
    for i in 0..tiled.0 {
        for j in 0..tiled.1 {
            b[j * rows + i] = a[i * cols + j];
        }
    }
    edges(a, (rows, cols), tiled, b);
}

/// The elements outside the `tiled` corner, one at a time.
fn edges<E: Copy>(a: &[E], (rows, cols): (usize, usize), tiled: (usize, usize), b: &mut [E]) {
    for i in 0..rows {
        let from = if i < tiled.0 { tiled.1 } else { 0 };
        for j in from..cols {
            b[j * rows + i] = a[i * cols + j];
        }
    }
}

/// The 8 × 8 tiles of the `tiled` corner: pairs of rows interleaved, then
/// pairs of pairs, then the 128-bit halves swapped across.
///
/// # Safety
/// The CPU must have AVX2; `a` and `b` must hold `rows · cols` elements and
/// `tiled` be multiples of 8 no larger than `(rows, cols)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tiles_avx2(a: &[f32], (rows, cols): (usize, usize), tiled: (usize, usize), b: &mut [f32]) {
    use std::arch::x86_64::*;
    for i0 in (0..tiled.0).step_by(T) {
        for j0 in (0..tiled.1).step_by(T) {
            let r: [__m256; T] = std::array::from_fn(|i| _mm256_loadu_ps(a.as_ptr().add((i0 + i) * cols + j0)));
            let t: [__m256; T] = std::array::from_fn(|k| {
                let (x, y) = (r[k / 2 * 2], r[k / 2 * 2 + 1]);
                if k % 2 == 0 {
                    _mm256_unpacklo_ps(x, y)
                } else {
                    _mm256_unpackhi_ps(x, y)
                }
            });
            // s[k]: lanes k % 4 of rows 4·(k / 4)..+4, in each 128-bit half.
            let s: [__m256; T] = std::array::from_fn(|k| {
                let (q, m) = (k / 4 * 4, k % 4);
                let (x, y) = (t[q + m / 2], t[q + m / 2 + 2]);
                if m % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(x, y)
                } else {
                    _mm256_shuffle_ps::<0xEE>(x, y)
                }
            });
            for k in 0..T {
                let c = if k < 4 { _mm256_permute2f128_ps::<0x20>(s[k], s[k + 4]) } else { _mm256_permute2f128_ps::<0x31>(s[k - 4], s[k]) };
                _mm256_storeu_ps(b.as_mut_ptr().add((j0 + k) * rows + i0), c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Every shape class: whole tiles, edges on either side or both, fewer
    /// rows or columns than a tile, empty.
    const SHAPES: [(usize, usize); 7] = [(16, 1024), (64, 64), (9, 17), (8, 13), (21, 8), (3, 5), (0, 4)];

    fn check<E: Element>(value: impl Fn(f64) -> E) {
        let mut r = Rng::new(61, 0);
        for (rows, cols) in SHAPES {
            let a: Vec<E> = (0..rows * cols).map(|_| value(r.normal())).collect();
            let mut b = vec![E::ZERO; rows * cols];
            transpose(&a, (rows, cols), &mut b);
            for i in 0..rows {
                for j in 0..cols {
                    assert!(b[j * rows + i] == a[i * cols + j], "{rows} × {cols}: ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn every_element_lands_at_its_mirror_in_f32_and_f64() {
        check(|v| v as f32);
        check(|v| v);
    }
}
