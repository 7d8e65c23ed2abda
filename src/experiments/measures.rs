//! The numbers the claims compare, read from an experiment's runs, and the checks
//! most claims share: one run's quantity below another's over training, and
//! final training losses in order.

use super::claims::{show, Evidence, Verdict};
use crate::analysis::LayerRecord;
use crate::lenient::known;
use crate::report::geometric_mean;
use crate::report::read::Run;

/// The run named `base`, or the kept run of its learning-rate sweep (`base-lrRATE`).
pub fn run<'a>(ev: &Evidence<'a>, base: &str) -> Option<&'a Run> {
    ev.runs.iter().find(|r| r.name == base || r.name.strip_prefix(base).is_some_and(|rest| rest.starts_with("-lr")))
}

/// No run to judge: a missing name means the run was not kept (every rate diverged) or not part of this scale.
pub fn missing(name: &str) -> Verdict {
    Verdict::NotMeasurable(format!("no run {name} to measure (not run at this scale, or it diverged at every learning rate)"))
}

/// The analysed iterations of `run`'s first analysis mode, in order.
pub fn analysed(run: &Run) -> Vec<usize> {
    let mut its: Vec<usize> = run.analysis_by_mode().into_iter().next().map_or(vec![], |(_, r)| r.iter().map(|a| a.iteration).collect());
    its.sort_unstable();
    its.dedup();
    its
}

/// The layers analysed at `iteration` (first analysis mode), bottom first.
pub fn layers_at(run: &Run, iteration: usize) -> Vec<&LayerRecord> {
    let Some((_, records)) = run.analysis_by_mode().into_iter().next() else { return vec![] };
    let mut layers: Vec<&LayerRecord> = records.into_iter().filter(|a| a.iteration == iteration).collect();
    layers.sort_by_key(|a| a.index);
    layers
}

/// κ_50 of Σx over the layers, as a geometric mean (κ spans decades).
pub fn kappa50_x(layers: &[&LayerRecord]) -> Option<f64> {
    geometric_mean(layers.iter().filter_map(|a| a.sigma_x.kappa.get("50").copied().flatten()))
}

/// κ_50 of Σ∇h over the layers, as a geometric mean.
pub fn kappa50_grad(layers: &[&LayerRecord]) -> Option<f64> {
    geometric_mean(layers.iter().filter_map(|a| a.sigma_grad.kappa.get("50").copied().flatten()))
}

/// λmax(Σx) of the last linear layer's input.
pub fn last_lambda_x(layers: &[&LayerRecord]) -> Option<f64> {
    layers.iter().find(|a| a.last).and_then(|a| known(a.sigma_x.lambda_max))
}

/// The last finite training loss, `None` when the run diverged.
pub fn final_loss(run: &Run) -> Option<f64> {
    if run.diverged_at.is_some() || run.summary.as_ref().is_some_and(|s| s.diverged) {
        return None;
    }
    run.train.iter().rev().find_map(|t| t.loss.filter(|l| l.is_finite()))
}

/// `(low, high)` at every analysis both runs have a value for.
fn paired(low: &Run, high: &Run, value: fn(&[&LayerRecord]) -> Option<f64>) -> Vec<(usize, f64, f64)> {
    let high_its = analysed(high);
    analysed(low)
        .into_iter()
        .filter(|it| high_its.contains(it))
        .filter_map(|it| Some((it, value(&layers_at(low, it))?, value(&layers_at(high, it))?)))
        .collect()
}

/// A few of many pairs: the first three and the last three.
fn listed(pairs: &[(usize, f64, f64)]) -> String {
    let item = |&(it, a, b): &(usize, f64, f64)| format!("{it}: {} vs {}", show(Some(a)), show(Some(b)));
    if pairs.len() <= 6 {
        return pairs.iter().map(item).collect::<Vec<_>>().join(", ");
    }
    let (head, tail) = (&pairs[..3], &pairs[pairs.len() - 3..]);
    format!("{}, …, {}", head.iter().map(item).collect::<Vec<_>>().join(", "), tail.iter().map(item).collect::<Vec<_>>().join(", "))
}

/// A claim about training dynamics: run `low`'s `value` below run `high`'s
/// over the training phase, i.e. at more than half of the analyses both
/// have, not only at the last (which may come after the loss has converged
/// and the gradients are noise).
pub fn below_over_training(ev: &Evidence, low: &str, high: &str, what: &str, value: fn(&[&LayerRecord]) -> Option<f64>) -> Verdict {
    let (Some(l), Some(h)) = (run(ev, low), run(ev, high)) else {
        return missing(if run(ev, low).is_none() { low } else { high });
    };
    let pairs = paired(l, h, value);
    if pairs.is_empty() {
        return Verdict::NotMeasurable(format!("{} and {} share no analysis with a finite {what}", l.name, h.name));
    }
    let below = pairs.iter().filter(|(_, a, b)| a < b).count();
    let numbers = format!("{what}, {} vs {}: below at {below} of {} analyses (iteration: {})", l.name, h.name, pairs.len(), listed(&pairs));
    Verdict::of(2 * below > pairs.len(), numbers)
}

/// The paper's claim of better conditioning: `low`'s κ50 of Σ∇h and of Σx
/// (geometric means over the layers) both below `high`'s over training.
pub fn better_conditioned(ev: &Evidence, low: &str, high: &str) -> Verdict {
    Verdict::all(vec![
        below_over_training(ev, low, high, "κ50(Σ∇h)", kappa50_grad),
        below_over_training(ev, low, high, "κ50(Σx)", kappa50_x),
    ])
}

/// A claim that the runs' final training losses rise in the order given
/// (each above the one before).
pub fn losses_rise(ev: &Evidence, names: &[&str]) -> Verdict {
    let mut losses = Vec::new();
    for name in names {
        let Some(r) = run(ev, name) else { return missing(name) };
        let Some(loss) = final_loss(r) else {
            return Verdict::NotMeasurable(format!("{} diverged: it has no final training loss", r.name));
        };
        losses.push((r.name.as_str(), loss));
    }
    let numbers = losses.iter().map(|(n, l)| format!("{n} {}", show(Some(*l)))).collect::<Vec<_>>().join(" < ");
    let holds = losses.windows(2).all(|w| w[0].1 < w[1].1);
    Verdict::of(holds, format!("final training loss: {numbers}{}", if holds { "" } else { " does not hold" }))
}

/// λmax(Σx) per layer from layer `from` (1-based) to the top input, as the
/// geometric per-layer factor (λ_from / λ_top)^(1/(top − from)): above 1 it
/// shrinks going up, below 1 it grows.
pub fn shrink_per_layer(layers: &[&LayerRecord], from: usize, value: fn(&LayerRecord) -> Option<f64>) -> Option<f64> {
    let bottom = layers.iter().find(|a| a.index == from)?;
    let top = layers.last()?;
    let steps = top.index.checked_sub(from).filter(|&s| s > 0)? as f64;
    Some((value(bottom)? / value(top)?).powf(1.0 / steps))
}

/// Fig. A11: at initialisation the sub-FIM's λmax of the first layer at
/// least 100× that of the top hidden layer (the one below the output).
pub fn explodes_downwards(ev: &Evidence, name: &str) -> Verdict {
    let Some(r) = run(ev, name) else { return missing(name) };
    let layers = layers_at(r, 0);
    let fim = |a: &&LayerRecord| known(a.fim.lambda_max);
    let (bottom, top) = (layers.first().and_then(fim), layers.iter().rev().nth(1).and_then(fim));
    match (bottom, top) {
        (Some(b), Some(t)) => Verdict::of(
            b >= 100.0 * t,
            format!("{}: sub-FIM λmax at iteration 0, layer 1 {} vs layer {} {}", r.name, show(Some(b)), layers.len() - 1, show(Some(t))),
        ),
        _ => Verdict::NotMeasurable(format!("{} has no sub-FIM λmax at initialisation", r.name)),
    }
}

/// Fig. A11: the lowest layer's σmax(∂L/∂W)/σmax(W) at least 10× smaller
/// after the first step than at initialisation.
pub fn ratio_collapses(ev: &Evidence, name: &str) -> Verdict {
    let Some(r) = run(ev, name) else { return missing(name) };
    let ratio = |it: usize| layers_at(r, it).first().and_then(|a| known(a.weight.as_ref()?.ratio));
    match (ratio(0), ratio(1)) {
        (Some(before), Some(after)) => Verdict::of(
            after * 10.0 <= before,
            format!("{}: layer 1's gradient/weight ratio {} at iteration 0, {} at 1", r.name, show(Some(before)), show(Some(after))),
        ),
        _ => Verdict::NotMeasurable(format!("{} was not analysed at iterations 0 and 1", r.name)),
    }
}

/// The final top-1 test error of a run: its summary's, else its last evaluation's.
pub fn test_error(run: &Run) -> Option<f64> {
    let accuracy = run.summary.as_ref().and_then(|s| s.headline.test_accuracy);
    accuracy.or_else(|| run.eval.iter().rev().find_map(|e| e.test_accuracy)).map(|a| 1.0 - a)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::experiments::Scale;
    use std::path::Path;

    /// A run directory `dir/name` with these metrics lines, read back.
    pub fn run_with(dir: &Path, name: &str, lines: &[String]) -> Run {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("metrics.jsonl"), lines.join("\n")).unwrap();
        Run::load(&d).unwrap()
    }

    /// An analysis record of one layer with κ_50 of Σ∇h.
    pub fn kappa_record(iteration: usize, index: usize, kappa_grad: f64) -> String {
        format!(
            r#"{{"kind":"analysis","iteration":{iteration},"layer":"l{index}","index":{index},"sigma_x":{{"lambda_max":1.0}},"sigma_grad":{{"kappa":{{"50":{kappa_grad}}}}}}}"#
        )
    }

    pub fn loss_record(iteration: usize, loss: f64) -> String {
        format!(r#"{{"kind":"train","iteration":{iteration},"loss":{loss}}}"#)
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kappa-measures-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_claim_about_dynamics_is_judged_over_training_not_at_the_last_analysis() {
        let dir = scratch("dynamics");
        // BN well below Plain until its loss converges; then its κ rises above Plain's (the issue's paper-scale run).
        let bn: Vec<String> = [(0, 20.0), (200, 4.0), (400, 50.0), (600, 7e3)].iter().map(|&(it, k)| kappa_record(it, 1, k)).collect();
        let plain: Vec<String> = [(0, 300.0), (200, 900.0), (400, 1e3), (600, 6e2)].iter().map(|&(it, k)| kappa_record(it, 1, k)).collect();
        let runs = vec![run_with(&dir, "bn-gd-lr1", &bn), run_with(&dir, "plain-gd-lr0.5", &plain)];
        let ev = Evidence { scale: Scale::Paper, runs: &runs };
        let v = below_over_training(&ev, "bn-gd", "plain-gd", "κ50(Σ∇h)", kappa50_grad);
        assert!(matches!(v, Verdict::Agrees(_)), "{v:?}");
        assert!(v.numbers().contains("below at 3 of 4 analyses") && v.numbers().contains("600: 7.000e3 vs 6.000e2"), "{v:?}");
        // The opposite claim disagrees, with the same numbers.
        let v = below_over_training(&ev, "plain-gd", "bn-gd", "κ50(Σ∇h)", kappa50_grad);
        assert!(matches!(v, Verdict::Disagrees(_)) && v.numbers().contains("below at 1 of 4"), "{v:?}");
        // A run that is absent, or shares no analysis, cannot be judged.
        assert!(matches!(below_over_training(&ev, "bn-he", "plain-gd", "κ", kappa50_grad), Verdict::NotMeasurable(_)));
        let later = vec![run_with(&dir, "late", &[kappa_record(5, 1, 1.0)]), run_with(&dir, "early", &[kappa_record(0, 1, 2.0)])];
        let ev = Evidence { scale: Scale::Ci, runs: &later };
        assert!(matches!(below_over_training(&ev, "late", "early", "κ", kappa50_grad), Verdict::NotMeasurable(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn losses_in_order_agree_out_of_order_disagree_and_a_diverged_run_is_not_measurable() {
        let dir = scratch("losses");
        let diverged = [loss_record(5, 2.0), r#"{"kind":"summary","diverged":true,"iteration":7}"#.to_string()];
        let runs = vec![
            run_with(&dir, "none", &[loss_record(5, 2.0), loss_record(10, 0.1)]),
            run_with(&dir, "freeze-2", &[loss_record(10, 0.3)]),
            run_with(&dir, "freeze-2-4", &[loss_record(10, 0.2)]),
            run_with(&dir, "gone", &diverged),
        ];
        let ev = Evidence { scale: Scale::Ci, runs: &runs };
        let v = losses_rise(&ev, &["none", "freeze-2"]);
        assert_eq!(v, Verdict::Agrees("final training loss: none 1.000e-1 < freeze-2 3.000e-1".into()));
        assert!(matches!(losses_rise(&ev, &["none", "freeze-2", "freeze-2-4"]), Verdict::Disagrees(_)));
        assert!(matches!(losses_rise(&ev, &["none", "gone"]), Verdict::NotMeasurable(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
