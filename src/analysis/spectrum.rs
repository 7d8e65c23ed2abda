//! What a spectrum says about conditioning: λmax, the smallest non-zero
//! eigenvalue, the numerical rank and the generalised condition numbers κ_p.

use crate::lenient;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The conditioning summary of one symmetric PSD matrix. Read back
/// leniently: a float a log lacks or holds as `null` is NaN, a count it lacks 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    #[serde(default)]
    pub dim: usize,
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub lambda_max: f64,
    /// The smallest eigenvalue above `tolerance` (0 when the matrix is zero).
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub lambda_min: f64,
    /// Eigenvalues above `tolerance`.
    #[serde(default)]
    pub rank: usize,
    /// `max(dim, √samples) · ε · λmax`, ε the machine epsilon of the type the
    /// matrix was accumulated in and `samples` the terms summed into it:
    /// below it an eigenvalue is indistinguishable from rounding (NumPy's
    /// `matrix_rank` rule, with the summation's rounding growing as √terms,
    /// as it does for the blocked sums of a GEMM; a conv layer sums 10⁵–10⁶
    /// patch terms, where a linear bound would call every layer rank deficient).
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub tolerance: f64,
    /// The terms summed into the matrix (examples, or conv positions); 0 when
    /// not a sum of outer products (or not logged). Fewer than `dim` caps the rank at it.
    #[serde(default)]
    pub samples: usize,
    /// κ_p = λmax / λ_(p·d), keyed by p in percent; `None` when λ_(p·d) is
    /// numerically zero (κ is infinite).
    #[serde(default)]
    pub kappa: BTreeMap<String, Option<f64>>,
    /// λmax / λmin over the non-zero eigenvalues.
    pub kappa_nonzero: Option<f64>,
}

impl Spectrum {
    /// From eigenvalues in descending order; `epsilon` of the accumulation
    /// type; `ps` the percentages to report κ_p for.
    pub fn from_descending(eigenvalues: &[f64], epsilon: f64, ps: &[f64]) -> Spectrum {
        Spectrum::of_second_moment(eigenvalues, epsilon, 0, ps)
    }

    /// [`Spectrum::from_descending`] for an average of `samples` outer
    /// products, whose rounding grows with the number of terms.
    pub fn of_second_moment(eigenvalues: &[f64], epsilon: f64, samples: usize, ps: &[f64]) -> Spectrum {
        let dim = eigenvalues.len();
        let lambda_max = eigenvalues.first().copied().unwrap_or(0.0);
        let tolerance = (dim as f64).max((samples as f64).sqrt()) * epsilon * lambda_max.max(0.0);
        let nonzero = |v: f64| v > tolerance && lambda_max > 0.0;
        let rank = eigenvalues.iter().filter(|&&v| nonzero(v)).count();
        let lambda_min = if rank > 0 { eigenvalues[rank - 1] } else { 0.0 };
        let ratio = |v: f64| (nonzero(v) && lambda_max.is_finite()).then(|| lambda_max / v);
        let kappa = ps.iter().map(|&p| (percent_key(p), eigenvalues.get(kappa_index(p, dim)).and_then(|&v| ratio(v)))).collect();
        Spectrum {
            dim,
            lambda_max,
            lambda_min,
            rank,
            tolerance,
            samples,
            kappa,
            kappa_nonzero: (rank > 0).then(|| lambda_max / lambda_min),
        }
    }
}

/// 0-based position of λ_(p·d): the ⌈p·d⌉-th largest eigenvalue (at least the first).
pub fn kappa_index(p: f64, dim: usize) -> usize {
    ((p / 100.0 * dim as f64).ceil() as usize).clamp(1, dim.max(1)) - 1
}

/// `50` for 50.0, `12.5` for 12.5: how κ_p keys read in JSON.
pub fn percent_key(p: f64) -> String {
    // Debug, not Display: the shortest digits that read back as `p`, with an
    // exponent where Display would write 1e-300 as 300 zeros (as 12.5, 0.5 alike).
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p:?}")
    }
}

/// Prop. 1 of the paper: the sub-FIM F ≈ Σx ⊗ Σ∇h has λmax(F) = λmax(Σx)·λmax(Σ∇h)
/// and κ(F) = κ(Σx)·κ(Σ∇h).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kronecker {
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub lambda_max: f64,
    /// Product of the two full condition numbers (over non-zero eigenvalues).
    pub kappa_nonzero: Option<f64>,
    /// Product of κ_100 (infinite when either factor is rank deficient).
    pub kappa_full: Option<f64>,
}

/// Nothing measured, as a log without the sub-FIM reads.
impl Default for Kronecker {
    fn default() -> Self {
        Kronecker { lambda_max: f64::NAN, kappa_nonzero: None, kappa_full: None }
    }
}

impl Kronecker {
    pub fn of(x: &Spectrum, g: &Spectrum) -> Kronecker {
        let full = |s: &Spectrum| {
            s.kappa.get("100").copied().flatten().or_else(|| (s.rank == s.dim && s.dim > 0).then_some(s.kappa_nonzero).flatten())
        };
        Kronecker {
            lambda_max: x.lambda_max * g.lambda_max,
            kappa_nonzero: x.kappa_nonzero.zip(g.kappa_nonzero).map(|(a, b)| a * b),
            kappa_full: full(x).zip(full(g)).map(|(a, b)| a * b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_p_indexes_the_descending_spectrum() {
        // d = 10, eigenvalues 10, 9, ..., 1.
        let ev: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Spectrum::from_descending(&ev, f64::EPSILON, &[50.0, 80.0, 100.0, 12.5]);
        assert_eq!(s.kappa["50"], Some(10.0 / 6.0)); // 5th largest is 6
        assert_eq!(s.kappa["80"], Some(10.0 / 3.0)); // 8th largest is 3
        assert_eq!(s.kappa["100"], Some(10.0)); // 10th largest is 1
        assert_eq!(s.kappa["12.5"], Some(10.0 / 9.0)); // ⌈1.25⌉ = 2nd largest
        assert_eq!((s.rank, s.lambda_max, s.lambda_min), (10, 10.0, 1.0));
    }

    #[test]
    fn rank_deficient_spectra_have_infinite_kappa_but_finite_nonzero_kappa() {
        let ev = [4.0, 2.0, 1e-20, -1e-18];
        let s = Spectrum::from_descending(&ev, f32::EPSILON as f64, &[50.0, 75.0, 100.0]);
        assert_eq!(s.rank, 2);
        assert_eq!(s.kappa["50"], Some(2.0)); // 2nd largest
        assert_eq!(s.kappa["75"], None); // 3rd largest is below the tolerance
        assert_eq!(s.kappa["100"], None);
        assert_eq!(s.kappa_nonzero, Some(2.0));
    }

    #[test]
    fn the_tolerance_grows_with_the_samples_summed() {
        let ev = [1.0, 1e-13];
        assert_eq!(Spectrum::of_second_moment(&ev, f64::EPSILON, 0, &[]).rank, 2);
        assert_eq!(Spectrum::of_second_moment(&ev, f64::EPSILON, 1000, &[]).rank, 2);
        assert_eq!(Spectrum::of_second_moment(&ev, f64::EPSILON, 1_000_000, &[]).rank, 1);
    }

    #[test]
    fn zero_matrix_has_rank_zero() {
        let s = Spectrum::from_descending(&[0.0; 4], f64::EPSILON, &[100.0]);
        assert_eq!((s.rank, s.lambda_min, s.kappa_nonzero), (0, 0.0, None));
        assert_eq!(s.kappa["100"], None);
    }
}
