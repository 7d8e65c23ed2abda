//! The per-layer conditioning table printed at the end of a run.

use crate::analysis::{LayerRecord, Spectrum};

fn kappa(s: &Spectrum) -> String {
    match s.kappa.get("100").copied().flatten() {
        Some(k) => format!("{k:.2e}"),
        None => match s.kappa_nonzero {
            Some(k) => format!("∞ ({k:.1e} nz)"),
            None => "∞".into(),
        },
    }
}

/// One row per layer: λmax and κ of Σx and Σ∇h, the Kronecker λmax, weight
/// domination ratio and dead units.
pub fn conditioning_table(records: &[LayerRecord]) -> String {
    let mut s = String::new();
    if let Some(r) = records.first() {
        s += &format!("conditioning at iteration {} ({:?} mode; κ = κ_100, ∞ when rank deficient):\n", r.iteration, r.mode);
    }
    s += &format!(
        "{:<12} {:>10} {:>18} {:>10} {:>18} {:>10} {:>10} {:>6}\n",
        "layer", "λmax Σx", "κ Σx", "λmax Σ∇h", "κ Σ∇h", "λmax F", "‖∇W‖/‖W‖", "dead"
    );
    for r in records {
        let ratio = r.weight.as_ref().map_or("-".into(), |w| format!("{:.2e}", w.ratio));
        let dead = r.neurons.as_ref().map_or("-".into(), |n| format!("{:.0}%", 100.0 * n.dead_fraction));
        s += &format!(
            "{:<12} {:>10.3e} {:>18} {:>10.3e} {:>18} {:>10.3e} {:>10} {:>6}\n",
            r.layer,
            r.sigma_x.lambda_max,
            kappa(&r.sigma_x),
            r.sigma_grad.lambda_max,
            kappa(&r.sigma_grad),
            r.fim.lambda_max,
            ratio,
            dead
        );
    }
    s
}
