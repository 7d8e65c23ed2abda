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
/// # Safety
/// Both panels must hold `k` rows at their strides.
#[inline(always)]
pub unsafe fn accumulate<E: Element, S: Lanes<E>>(c: &mut Tile<S>, (a, sa): (*const E, usize), (b, sb): (*const E, usize), k: usize) {
    let w = S::WIDTH;
    let mut r = *c;
    for p in 0..k {
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
