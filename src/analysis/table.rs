//! The per-layer conditioning table printed at the end of a run.

use super::readout::{self, view, KappaView};
use super::{LayerRecord, Spectrum};

fn sci(v: f64) -> String {
    format!("{v:.2e}")
}

/// One row per layer: λmax and the run's κ_p (smallest p first) of Σx and
/// Σ∇h, the Kronecker λmax, weight domination ratio and dead units; under
/// it, what a marked κ and an infinite κ_100 mean, when the table shows one.
pub fn conditioning_table(records: &[LayerRecord]) -> String {
    let views: Vec<KappaView> = records.iter().flat_map(|r| [view(&r.sigma_x), view(&r.sigma_grad)]).collect();
    let ps = readout::percent_keys(&views);
    let mut s = String::new();
    if let Some(r) = records.first() {
        s += &format!("conditioning at iteration {} ({:?} mode):\n", r.iteration, r.mode);
    }
    let kappa_heads = |of: &str| ps.iter().map(|p| format!(" {:>9}", format!("κ{p} {of}"))).collect::<String>();
    s += &format!(
        "{:<12} {:>10}{} {:>10}{} {:>10} {:>10} {:>6}\n",
        "layer",
        "λmax Σx",
        kappa_heads("Σx"),
        "λmax Σ∇h",
        kappa_heads("Σ∇h"),
        "λmax F",
        "‖∇W‖/‖W‖",
        "dead"
    );
    let kappas = |sp: &Spectrum| ps.iter().map(|p| format!(" {:>9}", view(sp).cell(p, sci))).collect::<String>();
    for r in records {
        let ratio = r.weight.as_ref().map_or("-".into(), |w| sci(w.ratio));
        let dead = r.neurons.as_ref().map_or("-".into(), |n| format!("{:.0}%", 100.0 * n.dead_fraction));
        s += &format!(
            "{:<12} {:>10.3e}{} {:>10.3e}{} {:>10.3e} {:>10} {:>6}\n",
            r.layer,
            r.sigma_x.lambda_max,
            kappas(&r.sigma_x),
            r.sigma_grad.lambda_max,
            kappas(&r.sigma_grad),
            r.fim.lambda_max,
            ratio,
            dead
        );
    }
    for line in readout::notes(&views, sci) {
        s += &line;
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Kronecker, Mode};

    fn record(layer: &str, x: Spectrum, g: Spectrum) -> LayerRecord {
        LayerRecord {
            iteration: 7,
            epoch: 0,
            mode: Mode::Empirical,
            layer: layer.into(),
            index: 1,
            last: false,
            fim: Kronecker::of(&x, &g),
            sigma_x: x,
            sigma_grad: g,
            weight: None,
            neurons: None,
        }
    }

    #[test]
    fn the_asked_kappas_show_smallest_p_first_with_limits_marked_and_infinities_explained() {
        let eps = f32::EPSILON as f64;
        let ps = [100.0, 50.0];
        // Σx: 4 dimensions from 2 examples, rank 2: κ_100 infinite, κ_50 = 2.
        let x = Spectrum::of_second_moment(&[2.0, 1.0, 0.0, 0.0], eps, 2, &ps);
        // Σ∇h: full rank, tolerance 10ε (√100 terms > 4 dimensions), its smallest eigenvalue 1.2 tolerances up: κ_100 at the limit.
        let g = Spectrum::of_second_moment(&[1.0, 0.5, 0.25, 12.0 * eps], eps, 100, &ps);
        let table = conditioning_table(&[record("layers.0", x, g)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        let head: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(head[..8], ["layer", "λmax", "Σx", "κ50", "Σx", "κ100", "Σx", "λmax"], "{table}");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        let kappa_100 = format!("{:.2e}{}", 1.0 / (12.0 * eps), readout::LIMIT_MARK);
        assert_eq!(row[..7], ["layers.0", "2.000e0", "2.00e0", "∞", "1.000e0", "2.00e0", kappa_100.as_str()], "{table}");
        assert!(lines[3].starts_with(readout::LIMIT_MARK) && lines[3].contains(&sci(1.0 / (10.0 * eps))), "{}", lines[3]);
        assert!(lines[4].starts_with("κ_100 = ∞ in 1 of 2 matrices") && lines[4].contains("n < d"), "{}", lines[4]);

        // Nothing to explain: no notes.
        let clean = Spectrum::of_second_moment(&[2.0, 1.0], eps, 100, &[80.0]);
        let table = conditioning_table(&[record("output", clean.clone(), clean)]);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("κ80 Σx") && !table.contains("κ100") && !table.contains('∞'), "{table}");
    }
}
