//! How κ_p values are shown to a person, in the terminal's table and in
//! report.md alike: the p's smallest first, a mark on a value that the
//! arithmetic's precision sets rather than the matrix, and one line saying
//! why κ_100 is infinite where it is.

use super::spectrum::{percent_key, Spectrum};
use crate::lenient::known;
use std::collections::BTreeMap;

/// An eigenvalue is resolved once it stands this far above the rank
/// tolerance. The tolerance `max(d, √n)·ε·λmax` bounds the rounding each
/// eigenvalue carries (see [`super::Spectrum::tolerance`]), so an eigenvalue
/// within 10× of it may be off by 10% or more, and its κ = λmax/λ sits near
/// the largest κ the precision can show, λmax/tolerance = 1/(max(d, √n)·ε)
/// (3.3e4 for d = 256 in f32), whatever the network does.
pub const RESOLVED_ABOVE_TOLERANCE: f64 = 10.0;

/// The mark after a κ at the precision's limit.
pub const LIMIT_MARK: &str = "†";

/// What reading the κ's of one spectrum needs; logged records may lack any
/// of it but `kappa`.
pub struct KappaView<'a> {
    /// κ_p keyed by p in percent; `None` is infinite.
    pub kappa: &'a BTreeMap<String, Option<f64>>,
    pub lambda_max: Option<f64>,
    pub tolerance: Option<f64>,
    pub dim: Option<usize>,
    /// Terms averaged into the matrix (examples, or conv positions).
    pub samples: Option<usize>,
}

/// How a spectrum's κ's read, whether measured now or read back from a log:
/// a float the log lacked is unknown, and so is a count of terms it did not
/// log (0, which also stands for a matrix that is no sum of outer products).
pub fn view(s: &Spectrum) -> KappaView<'_> {
    let count = |n: usize| (n > 0).then_some(n);
    KappaView {
        kappa: &s.kappa,
        lambda_max: known(s.lambda_max),
        tolerance: known(s.tolerance),
        dim: count(s.dim),
        samples: count(s.samples),
    }
}

impl KappaView<'_> {
    /// Whether κ = λmax/λ has λ within [`RESOLVED_ABOVE_TOLERANCE`] of the tolerance.
    pub fn at_limit(&self, kappa: f64) -> bool {
        match (self.lambda_max, self.tolerance) {
            (Some(max), Some(tol)) if tol > 0.0 => max <= kappa * tol * RESOLVED_ABOVE_TOLERANCE,
            _ => false,
        }
    }

    /// The largest κ the precision can show: λmax / tolerance.
    fn ceiling(&self) -> Option<f64> {
        self.lambda_max.zip(self.tolerance).filter(|(_, tol)| *tol > 0.0).map(|(max, tol)| max / tol)
    }

    /// Whether κ has no value at all: λmax is NaN (the matrix held a value
    /// that was not finite, or the log lacks it), so a missing κ cannot be
    /// read as an infinite one.
    fn undefined(&self) -> bool {
        self.lambda_max.is_none()
    }

    /// κ_p for the key `p`: `-` when not measured, `∞`, `NaN` when
    /// `Self::undefined`, or the value by `show`, marked when at the
    /// precision's limit.
    pub fn cell(&self, p: &str, show: impl Fn(f64) -> String) -> String {
        match self.kappa.get(p) {
            None => "-".into(),
            Some(None) if self.undefined() => "NaN".into(),
            Some(None) => "∞".into(),
            Some(Some(k)) if self.at_limit(*k) => format!("{}{LIMIT_MARK}", show(*k)),
            Some(Some(k)) => show(*k),
        }
    }
}

/// Every p measured in `views`, as keys, the smallest first.
pub fn percent_keys(views: &[KappaView]) -> Vec<String> {
    let mut ps: Vec<f64> = views.iter().flat_map(|v| v.kappa.keys()).filter_map(|k| k.parse().ok()).collect();
    ps.sort_by(f64::total_cmp);
    ps.dedup();
    ps.into_iter().map(percent_key).collect()
}

/// Why a matrix averaged over enough terms is still rank deficient.
const SILENT: &str = "what it averages spans fewer than d directions: low-rank data, dead or constant units, or the last layer's Σ∇h, whose softmax gradients sum to zero (rank ≤ classes − 1)";

/// The lines to print under a table of `views`: what the mark means, when a
/// shown value carries it, and why κ_100 is infinite, when it is.
pub fn notes(views: &[KappaView], show: impl Fn(f64) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    let marked: Vec<&KappaView> = views.iter().filter(|v| v.kappa.values().flatten().any(|&k| v.at_limit(k))).collect();
    let ceilings: Vec<f64> = marked.iter().filter_map(|v| v.ceiling()).collect();
    if let (Some(lo), Some(hi)) = (ceilings.iter().copied().reduce(f64::min), ceilings.iter().copied().reduce(f64::max)) {
        let range = if show(lo) == show(hi) { show(lo) } else { format!("{}–{}", show(lo), show(hi)) };
        lines.push(format!(
            "{LIMIT_MARK} at the precision's limit: λ_(p·d) is within {RESOLVED_ABOVE_TOLERANCE}× the rank tolerance max(d, √n)·ε·λmax, so κ_p reflects rounding, not the network (κ can reach at most 1/(max(d, √n)·ε): {range} in those matrices)"
        ));
    }
    let undefined = views.iter().filter(|v| v.undefined() && v.kappa.values().any(Option::is_none)).count();
    if undefined > 0 {
        lines.push(format!(
            "κ = NaN in {undefined} of {} matrices: λmax is NaN, so the matrix held a value that was not finite (an activation or gradient overflowed) and has no spectrum",
            views.len()
        ));
    }
    let full: Vec<&KappaView> = views.iter().filter(|v| v.kappa.contains_key("100")).collect();
    let infinite: Vec<&&KappaView> = full.iter().filter(|v| v.kappa["100"].is_none() && !v.undefined()).collect();
    if !infinite.is_empty() {
        let narrow = infinite.iter().filter(|v| v.samples.zip(v.dim).is_some_and(|(n, d)| n < d)).count();
        let known = infinite.iter().all(|v| v.samples.is_some() && v.dim.is_some());
        let why = match (known, narrow) {
            (false, _) => String::new(),
            (true, n) if n == infinite.len() => {
                "; each averages fewer terms n than its dimension d, so its rank is at most n < d by construction (more --analysis-batches give more terms)".into()
            }
            (true, 0) => format!("; each averages at least d terms, so {SILENT}"),
            (true, n) => format!("; {n} average fewer terms n than their dimension d (rank ≤ n < d by construction), and in the others {SILENT}"),
        };
        lines.push(format!(
            "κ_100 = ∞ in {} of {} matrices: rank deficient, their smallest eigenvalue is below the rank tolerance{why}",
            infinite.len(),
            full.len()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kappa_is_at_the_limit_once_its_eigenvalue_is_within_ten_tolerances() {
        let eps = f32::EPSILON as f64;
        // d = 4, n = 0: tolerance = 4·ε·λmax; the 3rd eigenvalue 5 tolerances up, the 2nd 20.
        let tol = 4.0 * eps;
        let s = Spectrum::of_second_moment(&[1.0, 20.0 * tol, 5.0 * tol, 0.1 * tol], eps, 0, &[100.0, 50.0, 75.0]);
        assert!((s.tolerance - tol).abs() < 1e-20);
        let v = view(&s);
        assert_eq!(v.cell("50", |k| format!("{k:.1e}")), format!("{:.1e}", 1.0 / (20.0 * tol)));
        assert_eq!(v.cell("75", |k| format!("{k:.1e}")), format!("{:.1e}{LIMIT_MARK}", 1.0 / (5.0 * tol)));
        assert_eq!((v.cell("100", |k| k.to_string()), v.cell("80", |k| k.to_string())), ("∞".into(), "-".into()));
        // The line falls at ten tolerances.
        assert!(v.at_limit(1.0 / (9.99 * tol)) && !v.at_limit(1.0 / (10.01 * tol)));
    }

    #[test]
    fn percentages_sort_by_value_not_text() {
        let s = Spectrum::from_descending(&[3.0, 2.0, 1.0], f64::EPSILON, &[100.0, 50.0, 12.5, 80.0]);
        assert_eq!(percent_keys(&[view(&s)]), ["12.5", "50", "80", "100"]);
        // A tiny p keys as its shortest digits, not as 300 zeros.
        let s = Spectrum::from_descending(&[3.0, 2.0, 1.0], f64::EPSILON, &[1e-300, 0.5]);
        assert_eq!(percent_keys(&[view(&s)]), ["1e-300", "0.5"]);
    }

    #[test]
    fn the_notes_say_why_kappa_100_is_infinite() {
        let eps = f32::EPSILON as f64;
        let ps = [50.0, 100.0];
        // Rank 2 of 4 from 2 examples; rank 2 of 4 from 100; full rank and resolved.
        let narrow = Spectrum::of_second_moment(&[2.0, 1.0, 0.0, 0.0], eps, 2, &ps);
        let silent = Spectrum::of_second_moment(&[2.0, 1.0, 0.0, 0.0], eps, 100, &ps);
        let full = Spectrum::of_second_moment(&[2.0, 1.0, 0.5, 0.25], eps, 100, &ps);
        let show = |k: f64| format!("{k:.1e}");
        assert!(notes(&[view(&full)], show).is_empty());
        let n = notes(&[view(&narrow), view(&full)], show);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].starts_with("κ_100 = ∞ in 1 of 2 matrices") && n[0].contains("fewer terms n than its dimension d"), "{}", n[0]);
        let n = notes(&[view(&silent)], show);
        assert!(n[0].contains("in 1 of 1") && n[0].contains("at least d terms, so what it averages spans fewer"), "{}", n[0]);
        let n = notes(&[view(&narrow), view(&silent)], show);
        assert!(n[0].contains("in 2 of 2") && n[0].contains("1 average fewer terms") && n[0].contains("low-rank data"), "{}", n[0]);

        // A κ at the limit (d = 2: tolerance 2ε): the legend with the ceiling λmax/tolerance = 1/(2ε).
        let limited = Spectrum::of_second_moment(&[1.0, 8.0 * 2.0 * eps], eps, 0, &[100.0]);
        let n = notes(&[view(&limited)], show);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].starts_with(LIMIT_MARK) && n[0].contains(&format!(": {} in those", show(1.0 / (2.0 * eps)))), "{}", n[0]);
    }

    #[test]
    fn a_matrix_that_was_not_finite_has_nan_kappas_not_infinite_ones() {
        let ps = [50.0, 100.0];
        let nan = Spectrum::of_second_moment(&[f64::NAN; 4], f32::EPSILON as f64, 100, &ps);
        let silent = Spectrum::of_second_moment(&[2.0, 1.0, 0.0, 0.0], f32::EPSILON as f64, 100, &ps);
        let v = view(&nan);
        assert_eq!((v.cell("50", |k| k.to_string()), v.cell("100", |k| k.to_string())), ("NaN".into(), "NaN".into()));
        let n = notes(&[view(&nan), view(&silent)], |k| format!("{k:.1e}"));
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(n[0].starts_with("κ = NaN in 1 of 2 matrices") && n[0].contains("not finite"), "{}", n[0]);
        assert!(n[1].starts_with("κ_100 = ∞ in 1 of 2 matrices"), "{}", n[1]);
    }
}
