//! The register tile of kappa's own dense kernels: two vectors of rows by
//! [`NR`] columns, `c += Σ_p a_p ⊗ b_p` by one fused multiply-add per lane
//! and step, in the order of p. [`super::gram`] runs it along the rows of
//! X for XᵀX; [`super::tridiagonalise`] down the columns of the trailing
//! matrix for its rank-2k updates.

use super::lanes::{Element, Lanes};

/// Columns of a tile: with two vectors of rows, 12 accumulators, two loads
/// and a broadcast fill 15 of the 16 AVX2 registers.
pub const NR: usize = 6;

/// A tile's sums: column t in `c[t]`, its rows in the lanes of two vectors.
pub type Tile<S> = [[S; 2]; NR];

/// `c += Σ_p a_p ⊗ b_p` over `k` rows of a `2w`-wide and an [`NR`]-wide
/// panel, each given as its first element and row stride.
///
/// The [`NR`]-wide panel's row 8 steps ahead is prefetched: in the Gram it
/// is X read in place, whose rows lie a row of X apart (3 KiB at 784 f32
/// columns), a stride the hardware prefetcher follows poorly. Alternated
/// call by call in one binary, one thread, f32 (2026-12-05, two runs): the
/// Gram 1024×784 8.95–9.02 against 9.73–9.82 ms (best of 40), 1024×256
/// 0.925–1.267 against 0.972–1.274 ms (best of 300), same bits; the
/// tridiagonal reduction, whose Z panel sits in L1, 784² 15.78–16.50
/// against 15.82–16.25 ms, 256² unchanged.
///
/// # Safety
/// Both panels must hold `k` rows at their strides.
#[inline(always)]
pub unsafe fn accumulate<E: Element, S: Lanes<E>>(c: &mut Tile<S>, (a, sa): (*const E, usize), (b, sb): (*const E, usize), k: usize) {
    let w = S::WIDTH;
    let mut r = *c;
    for p in 0..k {
        // A prefetch is a hint: past the panel's end it reads nothing and cannot fault.
        #[cfg(target_arch = "x86_64")]
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.wrapping_add((p + 8) * sb).cast());
        let (ap, bp) = (std::slice::from_raw_parts(a.add(p * sa), 2 * w), std::slice::from_raw_parts(b.add(p * sb), NR));
        let (a0, a1) = (S::load(ap), S::load(&ap[w..]));
        for (t, rt) in r.iter_mut().enumerate() {
            let bt = S::splat(bp[t]);
            rt[0] = a0.mul_add(bt, rt[0]);
            rt[1] = a1.mul_add(bt, rt[1]);
        }
    }
    *c = r;
}
