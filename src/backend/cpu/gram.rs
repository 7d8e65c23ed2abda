//! `acc += alpha·XᵀX` on the lower triangle for an X whose rows are
//! contiguous, by a register-blocked micro-kernel: the Gram behind every
//! dense Σx and Σ∇h.
//!
//! Why not the `gemm` crate, which ran it before: a product fills a whole
//! rectangle, so the triangle went as one product per 64-column block, its
//! diagonal block computed whole (at d = 256 a fifth of the flops above the
//! diagonal), and every product packed its operands again. Here a tile (two
//! vectors of rows by [`NR`] columns) is computed only where it touches the
//! lower triangle. A band's rows (the tiles' vector operand, used by every
//! tile of the band) are copied side by side once per [`KC`]-row chunk; the
//! columns (each used once per band) are read from the rows of X in place,
//! where a tile's columns lie side by side. Only a last, partial column
//! panel is copied (zero-padded).
//!
//! Alternated call by call with the crate's path in one binary on the
//! 2-core host (2026-12-04, best of 300 calls at 256 columns and of 60 at
//! 784, two runs): f32 1024×256 0.512–0.598 against 0.590–0.752 ms,
//! 1024×784 4.66–5.39 against 4.99–5.60 ms; f64 1024×256 1.29–1.30 against
//! 1.47–1.51 ms, 1024×784 10.4–11.7 against 10.2–12.0 ms. Reading the
//! band's rows in place too, as the kernel first did, was 15–20% slower
//! than copying them in both precisions (f64 1024×784 13.5–14.3 ms, behind
//! the crate).

//! Each output element is one micro-kernel pass over all n rows in order (the
//! accumulators carried across [`KC`]-row chunks), then `alpha·sum` is added
//! to `acc`, on whichever thread: the result depends on the shape alone,
//! never on the thread count.

use super::lanes::{self, Element, Lanes};
use super::microkernel::{self, Tile, NR};
use crate::scalar::Scalar;

/// Rows of X per pass over a band's tiles (a band's rows of 256 rows of X
/// are 16 KiB of f32).
const KC: usize = 256;

/// A raw pointer the bands share; each band writes its own rows of `acc`.
struct SharedPtr<T>(*mut T);
unsafe impl<T> Sync for SharedPtr<T> {}

/// `acc[i·d + j] += alpha·Σ_p X(p, i)·X(p, j)` for `j ≤ i`, where X is
/// `n × d` with element `(p, i)` at `x[p·rs + i]`; summed in f32 for an f32
/// `T`, else in f64. The caller checks that `rs ≥ d`, that `acc` holds `d²`
/// elements and `x` every addressed one.
pub fn gram_lower<T: Scalar>(acc: &mut [T], x: &[T], shape: (usize, usize), rs: usize, alpha: f64) {
    match T::EPSILON > f64::EPSILON {
        true => lower::<f32, T>(acc, x, shape, rs, alpha),
        false => lower::<f64, T>(acc, x, shape, rs, alpha),
    }
}

fn lower<E: Element, T: Scalar>(acc: &mut [T], x: &[T], (n, d): (usize, usize), rs: usize, alpha: f64) {
    if n == 0 || d == 0 {
        return;
    }
    // X itself for f32 and f64, the only scalars; a widened copy otherwise.
    let widened: Vec<E>;
    let x = match as_elements::<E, T>(x) {
        Some(x) => X { x, n, d, rs },
        None => {
            widened = x.iter().map(|v| E::from_f64(v.to_f64())).collect();
            X { x: &widened, n, d, rs }
        }
    };
    let cols = Columns::new(x);
    let alpha = E::from_f64(alpha);
    let bands = d.div_ceil(2 * <E::Portable as Lanes<E>>::WIDTH);
    let dst = SharedPtr(acc.as_mut_ptr());
    let dst = &dst;
    // Band b (rows b·2w..) has a tile per column panel up to its diagonal,
    // so the last band is the longest: listed first.
    super::parallel::longest_first(bands, |t| {
        // SAFETY: `acc` holds d² elements and band rows are this task's alone.
        unsafe { band::<E, T>(dst.0, bands - 1 - t, &cols, alpha) }
    });
}

/// X, `n × d`, its element `(p, i)` at `x[p·rs + i]`.
#[derive(Clone, Copy)]
struct X<'a, E> {
    x: &'a [E],
    n: usize,
    d: usize,
    rs: usize,
}

/// X's columns in panels [`NR`] wide, read in place but for a last,
/// partial panel, read from a zero-padded copy.
struct Columns<'a, E> {
    x: X<'a, E>,
    /// The last panel, rows of [`NR`], when it is partial.
    partial: Vec<E>,
}

impl<'a, E: Element> Columns<'a, E> {
    fn new(x: X<'a, E>) -> Self {
        let (c0, len) = (x.d / NR * NR, x.d % NR);
        let mut partial = vec![E::ZERO; if len > 0 { x.n * NR } else { 0 }];
        for (p, row) in partial.chunks_exact_mut(NR).enumerate() {
            row[..len].copy_from_slice(&x.x[p * x.rs + c0..][..len]);
        }
        Columns { x, partial }
    }

    /// Panel `q` from row `k0` on: its first element and the stride between rows.
    fn at(&self, q: usize, k0: usize) -> (*const E, usize) {
        match q < self.x.d / NR {
            true => (self.x.x[k0 * self.x.rs + q * NR..].as_ptr(), self.x.rs),
            false => (self.partial[k0 * NR..].as_ptr(), NR),
        }
    }
}

/// `x` as a slice of `E` when `T` is `E`.
fn as_elements<E: 'static, T: 'static>(x: &[T]) -> Option<&[E]> {
    // SAFETY: T and E are the same type.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<E>()).then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// The tiles of band `b` from column 0 to the diagonal.
///
/// # Safety
/// `acc` must point to `d²` elements whose band rows no other thread touches.
unsafe fn band<E: Element, T: Scalar>(acc: *mut T, b: usize, cols: &Columns<E>, alpha: E) {
    #[cfg(target_arch = "x86_64")]
    if lanes::avx2_fma() {
        return band_avx2::<E, T>(acc, b, cols, alpha);
    }
    band_in::<E, T, E::Portable>(acc, b, cols, alpha)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn band_avx2<E: Element, T: Scalar>(acc: *mut T, b: usize, cols: &Columns<E>, alpha: E) {
    band_in::<E, T, E::Avx2>(acc, b, cols, alpha)
}

/// The band's rows are `b·2w..` for `w` lanes; tile `q` its columns `q·NR..`.
#[inline(always)]
unsafe fn band_in<E: Element, T: Scalar, S: Lanes<E>>(acc: *mut T, b: usize, cols: &Columns<E>, alpha: E) {
    let (w, X { x, n, d, rs }) = (S::WIDTH, cols.x);
    let (i0, i_end) = (b * 2 * w, ((b + 1) * 2 * w).min(d));
    let mut tiles: Vec<Tile<S>> = vec![[[S::zero(); 2]; NR]; i_end.div_ceil(NR)];
    // Zero-padded past a last, partial band's columns.
    let mut rows = vec![E::ZERO; KC * 2 * w];
    for k0 in (0..n).step_by(KC) {
        let k = KC.min(n - k0);
        // The band's rows of this chunk, copied side by side: read in place,
        // at a row stride of 1 KiB (f32, d = 256) they fell into 4 of L1's 64
        // sets and came from L2 again for every tile.
        for (p, row) in rows.chunks_exact_mut(2 * w).take(k).enumerate() {
            row[..i_end - i0].copy_from_slice(&x[(k0 + p) * rs + i0..][..i_end - i0]);
        }
        for (q, t) in tiles.iter_mut().enumerate() {
            microkernel::accumulate::<E, S>(t, (rows.as_ptr(), 2 * w), cols.at(q, k0), k);
        }
    }
    let mut sums = [E::ZERO; 16];
    for (q, t) in tiles.iter().enumerate() {
        for (c, [lo, hi]) in t.iter().enumerate() {
            let j = q * NR + c;
            if j >= i_end {
                break;
            }
            lo.store(&mut sums[..w]);
            hi.store(&mut sums[w..2 * w]);
            for (i, &s) in (i0..i_end).zip(&sums).filter(|&(i, _)| j <= i) {
                *acc.add(i * d + j) += T::from_f64((alpha * s).to_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Every band of `x`'s Gram through `kernel`, onto a non-zero accumulator.
    fn all_bands<E: Element>(x: &[E], (n, d): (usize, usize), kernel: unsafe fn(*mut E, usize, &Columns<E>, E)) -> Vec<u64> {
        let cols = Columns::new(X { x, n, d, rs: d });
        let mut acc = vec![E::from_f64(0.25); d * d];
        for b in 0..d.div_ceil(2 * <E::Portable as Lanes<E>>::WIDTH) {
            // SAFETY: `acc` holds d² elements; one band at a time.
            unsafe { kernel(acc.as_mut_ptr(), b, &cols, E::from_f64(0.3)) };
        }
        acc.iter().map(|v| v.to_f64().to_bits()).collect()
    }

    /// The AVX2 and portable copies give the same bits: each lane is one
    /// fused multiply-add, in the same order.
    #[test]
    fn both_copies_of_the_kernel_round_alike() {
        #[cfg(target_arch = "x86_64")]
        if lanes::avx2_fma() {
            let mut r = Rng::new(21, 0);
            for (n, d) in [(1, 1), (300, 37), (517, 64)] {
                let x: Vec<f64> = (0..n * d).map(|_| r.normal()).collect();
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                assert_eq!(
                    all_bands(&x, (n, d), band_avx2::<f64, f64>),
                    all_bands(&x, (n, d), band_in::<f64, f64, <f64 as Element>::Portable>),
                    "f64 {n}×{d}"
                );
                assert_eq!(
                    all_bands(&x32, (n, d), band_avx2::<f32, f32>),
                    all_bands(&x32, (n, d), band_in::<f32, f32, <f32 as Element>::Portable>),
                    "f32 {n}×{d}"
                );
            }
        }
    }
}
