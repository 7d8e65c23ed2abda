//! The paper reports each configuration at its best learning rate: runs of
//! an experiment that differ in their learning rate alone are one configuration,
//! whose best run by final training loss is kept for the figures and the
//! claims, and whose others (diverged ones included) the report lists.

use crate::train::{Summary, TrainConfig};
use std::fmt::Write;
use std::path::PathBuf;

/// Indices of `configs` grouped by everything but the learning rate (and
/// the run directory), in first-seen order.
pub fn configurations(configs: &[&TrainConfig]) -> Vec<Vec<usize>> {
    let key = |c: &TrainConfig| serde_json::to_value(TrainConfig { lr: 0.0, out: PathBuf::new(), ..c.clone() }).ok();
    let mut groups: Vec<(Option<serde_json::Value>, Vec<usize>)> = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let k = key(c);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// The member with the lowest final training loss; a run that diverged (or
/// logged no finite loss) is never best, so a group may have none.
pub fn best(group: &[usize], summaries: &[&Summary]) -> Option<usize> {
    let loss = |i: usize| summaries[i].headline.train_loss.filter(|l| l.is_finite() && !summaries[i].diverged);
    group.iter().copied().filter_map(|i| Some((i, loss(i)?))).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(i, _)| i)
}

/// A preset's trained runs reduced to one per configuration: the kept
/// indices in order, and the report's listing of every sweep (empty when no
/// configuration ran at more than one rate).
pub fn keep_best(runs: &[(String, TrainConfig, Summary)]) -> (Vec<usize>, String) {
    let configs: Vec<&TrainConfig> = runs.iter().map(|r| &r.1).collect();
    let summaries: Vec<&Summary> = runs.iter().map(|r| &r.2).collect();
    let groups = configurations(&configs);
    let mut kept: Vec<usize> = groups.iter().filter_map(|g| best(g, &summaries)).collect();
    kept.sort_unstable();
    if groups.iter().all(|g| g.len() == 1) {
        return (kept, String::new());
    }
    let mut md = String::from(
        "## Learning-rate sweep\n\nEach configuration is shown at its best learning rate by final training loss; a run that diverged is never kept.\n\n",
    );
    md.push_str("| run | learning rate | final training loss | outcome |\n| --- | ---: | ---: | --- |\n");
    for group in &groups {
        for &i in group {
            let (name, c, s) = &runs[i];
            let outcome = match (s.diverged_at, kept.contains(&i)) {
                (Some(at), _) => format!("diverged at iteration {at}"),
                (None, true) => "kept (plotted)".into(),
                (None, false) => "not kept".into(),
            };
            let loss = s.headline.train_loss.filter(|_| !s.diverged).map_or("-".into(), |l| format!("{l:.4e}"));
            let _ = writeln!(md, "| {name} | {} | {loss} | {outcome} |", c.lr);
        }
    }
    md.push('\n');
    (kept, md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(loss: Option<f64>, diverged_at: Option<usize>) -> Summary {
        Summary {
            model: "mlp".into(),
            data: "synthetic".into(),
            iterations: 30,
            epochs: 1,
            diverged: diverged_at.is_some(),
            diverged_at,
            headline: crate::record::Headline { train_loss: loss, ..Default::default() },
            seconds: 1.0,
            examples_per_second: 1.0,
            out: PathBuf::new(),
        }
    }

    #[test]
    fn each_configuration_keeps_its_lowest_final_loss_and_never_a_diverged_run() {
        let cfg = |bn: bool, lr: f64| TrainConfig { bn, lr, out: PathBuf::from(format!("runs/{bn}-{lr}")), ..TrainConfig::default() };
        let runs = vec![
            // Plain: the diverged run's last finite loss is the lowest, but it is never kept.
            ("plain-lr0.1".to_string(), cfg(false, 0.1), summary(Some(0.9), None)),
            ("plain-lr0.5".to_string(), cfg(false, 0.5), summary(Some(0.01), Some(9))),
            ("bn-lr0.1".to_string(), cfg(true, 0.1), summary(Some(0.5), None)),
            ("bn-lr0.5".to_string(), cfg(true, 0.5), summary(Some(0.2), None)),
            // A configuration whose every rate diverged keeps nothing.
            ("wide-lr1".to_string(), TrainConfig { width: 512, ..cfg(false, 1.0) }, summary(None, Some(2))),
        ];
        let (kept, md) = keep_best(&runs);
        assert_eq!(kept, vec![0, 3]);
        assert!(md.contains("| plain-lr0.5 | 0.5 | - | diverged at iteration 9 |"), "{md}");
        assert!(
            md.contains("| bn-lr0.5 | 0.5 | 2.0000e-1 | kept (plotted) |") && md.contains("| bn-lr0.1 | 0.1 | 5.0000e-1 | not kept |"),
            "{md}"
        );
        assert!(md.contains("| wide-lr1 | 1 | - | diverged at iteration 2 |"), "{md}");
        // Runs at one rate each (e.g. frozen layers) form no sweep and get no listing.
        let single = vec![runs[0].clone(), runs[2].clone()];
        assert_eq!(keep_best(&single), (vec![0, 1], String::new()));
    }
}
