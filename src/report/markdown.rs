//! `report.md`: one row per run, each run's layers at its last analysis, the
//! alerts, and the plots (or why one was skipped).

use super::figures::Plot;
use super::read::Run;
use crate::analysis::readout::{self, KappaView};
use crate::analysis::{LayerRecord, Spectrum};
use crate::lenient::known;
use std::fmt::Write;
use std::path::PathBuf;

/// A plot and the files written for it (none when it had no data).
pub struct Rendered<'a> {
    pub plot: &'a Plot,
    pub files: Vec<PathBuf>,
}

pub fn report(runs: &[Run], preface: &str, seed_table: &str, plots: &[Rendered]) -> String {
    let mut md = String::from("# kappa report\n\n");
    md.push_str(preface);
    runs_table(&mut md, runs);
    md.push_str(seed_table);
    plot_list(&mut md, plots);
    md.push_str("## Layers at the last analysis\n\n");
    for run in runs {
        layer_tables(&mut md, run);
    }
    alerts(&mut md, runs);
    warnings(&mut md, runs);
    md
}

pub(super) fn runs_table(md: &mut String, runs: &[Run]) {
    md.push_str("## Runs\n\n");
    md.push_str("| run | model | data | iterations | diverged? | train loss | train acc | test acc | seconds |\n");
    md.push_str("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for run in runs {
        let s = run.summary.as_ref();
        // An unfinished run has no summary.json: fall back to its latest records.
        let last_train = run.train.iter().rev().find(|t| t.loss.is_some());
        let last_eval = run.eval.iter().rev().find(|e| e.test_accuracy.is_some());
        let seen = run.train.iter().map(|t| t.iteration).chain(run.eval.iter().map(|e| e.iteration)).max();
        let diverged_at = s.and_then(|s| s.diverged_at).or(run.diverged_at);
        let diverged = s.is_some_and(|s| s.diverged) || run.diverged_at.is_some();
        let status = match (diverged, diverged_at) {
            (true, Some(at)) => format!("yes (iteration {at})"),
            (true, None) => "yes".into(),
            (false, _) => "no".into(),
        };
        let status = if s.is_some() {
            status
        } else if diverged {
            format!("{status}, not finished")
        } else {
            "not finished".into()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&run.name),
            cell(run.model.as_deref().unwrap_or("-")),
            cell(run.data.as_deref().unwrap_or("-")),
            opt(s.and_then(|s| s.iterations).or(seen), |v| v.to_string()),
            status,
            opt(s.and_then(|s| s.headline.train_loss).or(last_train.and_then(|t| t.loss)), |v| format!("{v:.4}")),
            opt(s.and_then(|s| s.headline.train_accuracy).or(last_train.and_then(|t| t.accuracy)), percent),
            opt(s.and_then(|s| s.headline.test_accuracy).or(last_eval.and_then(|e| e.test_accuracy)), percent),
            opt(s.and_then(|s| s.seconds), |v| format!("{v:.1}")),
        );
    }
    md.push('\n');
}

fn plot_list(md: &mut String, plots: &[Rendered]) {
    md.push_str("## Plots\n\n");
    for rendered in plots {
        let figure = &rendered.plot.figure;
        let _ = writeln!(md, "### {}\n", figure.title);
        if rendered.files.is_empty() {
            let _ = writeln!(md, "Skipped: the runs have no {}.\n", rendered.plot.needs);
            continue;
        }
        let names: Vec<String> = rendered.files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        if let Some(png) = names.iter().find(|n| n.ends_with(".png")) {
            let _ = writeln!(md, "![{}]({png})\n", figure.title);
        }
        let links: Vec<String> = names.iter().map(|n| format!("[{n}]({n})")).collect();
        let _ = writeln!(md, "Files: {}\n", links.join(", "));
    }
}

pub(super) fn layer_tables(md: &mut String, run: &Run) {
    let groups = run.analysis_by_mode();
    if groups.is_empty() {
        let _ = writeln!(md, "### {}\n\nNo analysis records.\n", cell(&run.name));
    }
    for (label, records) in groups {
        let Some(last) = records.iter().map(|a| a.iteration).max() else { continue };
        let mut layers: Vec<&&LayerRecord> = records.iter().filter(|a| a.iteration == last).collect();
        layers.sort_by_key(|a| a.index);
        let views: Vec<KappaView> = layers.iter().flat_map(|a| [readout::view(&a.sigma_x), readout::view(&a.sigma_grad)]).collect();
        let ps = readout::percent_keys(&views);
        let heads = |of: &str| ps.iter().map(|p| format!(" κ_{p} {of} |")).collect::<String>();
        let _ = writeln!(md, "### {}: iteration {last}\n", cell(&label));
        let _ = writeln!(md, "| # | layer | λmax Σx | λmax Σ∇h |{}{} σmax(∇W)/σmax(W) | dead |", heads("Σx"), heads("Σ∇h"));
        let _ = writeln!(md, "| ---: | --- | ---: | ---: |{} ---: | ---: |", " ---: |".repeat(2 * ps.len()));
        let kappas = |s: &Spectrum| ps.iter().map(|p| format!(" {} |", readout::view(s).cell(p, num))).collect::<String>();
        for a in layers {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |{}{} {} | {} |",
                a.index,
                cell(&a.layer),
                opt(known(a.sigma_x.lambda_max), num),
                opt(known(a.sigma_grad.lambda_max), num),
                kappas(&a.sigma_x),
                kappas(&a.sigma_grad),
                opt(a.weight.as_ref().and_then(|w| known(w.ratio)), num),
                opt(a.neurons.as_ref().and_then(|n| known(n.dead_fraction)), percent),
            );
        }
        md.push('\n');
        for line in readout::notes(&views, num) {
            let _ = writeln!(md, "{line}\n");
        }
    }
}

fn alerts(md: &mut String, runs: &[Run]) {
    md.push_str("## Alerts\n\n");
    let mut any = false;
    for run in runs {
        for a in &run.alerts {
            any = true;
            let layer = Some(a.layer.as_str()).filter(|l| !l.is_empty()).map(|l| format!(", {l}")).unwrap_or_default();
            let detail = Some(a.detail.as_str()).filter(|d| !d.is_empty()).map(|d| format!(": {d}")).unwrap_or_default();
            let _ = writeln!(md, "- {}, iteration {}{layer}: **{}**{detail}", run.name, a.iteration, a.alert);
        }
    }
    md.push_str(if any { "\n" } else { "None.\n\n" });
}

fn warnings(md: &mut String, runs: &[Run]) {
    let said: Vec<String> = runs.iter().flat_map(super::warnings).collect();
    if said.is_empty() {
        return;
    }
    md.push_str("## Warnings\n\n");
    for warning in said {
        let _ = writeln!(md, "- {warning}");
    }
    md.push('\n');
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn percent(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Four significant figures; scientific outside [1e-3, 1e4).
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&v.abs()) {
        let decimals = (3 - v.abs().log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// Keeps a value from breaking the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
