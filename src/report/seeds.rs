//! Test error over seeds: runs whose configurations differ only in seed (and
//! run directory) form one row, reported as mean ± std next to the published
//! value. Unfinished and diverged runs are counted, never averaged; runs
//! that never train (analysis at initialisation, e.g. `fig1`) have no test
//! error to give and are left out.

use super::published::{self, Published, Setting};
use super::read::Run;
use serde_json::Value;
use std::fmt::Write;

pub struct Row {
    pub label: String,
    pub runs: usize,
    /// Final top-1 test errors (%) of the runs that finished without diverging.
    pub errors: Vec<f64>,
    pub diverged: usize,
    pub unfinished: usize,
    pub published: Option<Published>,
}

impl Row {
    pub fn mean(&self) -> Option<f64> {
        (!self.errors.is_empty()).then(|| self.errors.iter().sum::<f64>() / self.errors.len() as f64)
    }

    /// The sample standard deviation (n − 1), zero for a single run.
    pub fn std(&self) -> Option<f64> {
        let mean = self.mean()?;
        let n = self.errors.len();
        Some(if n < 2 { 0.0 } else { (self.errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() })
    }
}

/// What makes two runs the same experiment: everything but seed and place.
fn key(config: &Value) -> String {
    let mut c = config.clone();
    if let Some(map) = c.as_object_mut() {
        map.remove("seed");
        map.remove("out");
    }
    c.to_string()
}

/// Whether the configuration takes any training step: `--iterations 0` (what
/// `kappa analyze` and the at-initialisation presets write) takes none, so
/// such a run is never evaluated and has no test error, finished or not.
fn trains(config: &Value) -> bool {
    config["iterations"].as_u64() != Some(0)
}

/// One row per experiment among `runs`, in the order they first appear; runs
/// without a readable configuration, or that take no training step, are left out.
pub fn rows(runs: &[Run]) -> Vec<Row> {
    let mut keys: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for run in runs {
        let Some(config) = run.train_config.as_ref().filter(|c| trains(c)) else { continue };
        let k = key(config);
        let at = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
            let s = Setting::of(config);
            let label = match &s {
                Some(s) => {
                    format!("{}-{} {}{}", s.model, s.depth, s.data, s.preset.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())
                }
                None => run.name.clone(),
            };
            keys.push(k);
            rows.push(Row {
                label,
                runs: 0,
                errors: vec![],
                diverged: 0,
                unfinished: 0,
                published: s.as_ref().and_then(published::test_error),
            });
            rows.len() - 1
        });
        let row = &mut rows[at];
        row.runs += 1;
        let diverged = run.summary.as_ref().is_some_and(|s| s.diverged) || run.diverged_at.is_some();
        match run.summary.as_ref().and_then(|s| s.headline.test_accuracy) {
            _ if diverged => row.diverged += 1,
            Some(acc) if run.summary.is_some() => row.errors.push(100.0 * (1.0 - acc)),
            _ => row.unfinished += 1,
        }
    }
    // Rows of the same label but different settings get their first run's name.
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    for (i, row) in rows.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == row.label).count() > 1 {
            row.label = format!("{} #{}", row.label, i + 1);
        }
    }
    rows
}

fn status(row: &Row) -> String {
    let mut parts = vec![format!("{} of {} finished", row.errors.len(), row.runs)];
    if row.diverged > 0 {
        parts.push(format!("{} diverged", row.diverged));
    }
    if row.unfinished > 0 {
        parts.push(format!("{} not finished", row.unfinished));
    }
    parts.join(", ")
}

/// The markdown table; empty when no run has a configuration.
pub fn markdown(rows: &[Row]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("## Test error over seeds\n\n");
    md.push_str("| setting | runs | test error (%) | published (%) | difference | source |\n| --- | --- | ---: | ---: | ---: | --- |\n");
    for row in rows {
        let measured = match (row.mean(), row.std()) {
            (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
            _ if row.diverged == row.runs => "diverged".into(),
            _ => "not finished".into(),
        };
        let published = row.published.map_or("-".into(), |p| format!("{:.2}", p.error));
        let difference = match (row.mean(), row.published) {
            (Some(m), Some(p)) => format!("{:+.2}", m - p.error),
            _ => "-".into(),
        };
        let source = row.published.map_or("-", |p| p.source);
        let _ =
            writeln!(md, "| {} | {} | {measured} | {published} | {difference} | {source} |", row.label.replace('|', "\\|"), status(row));
    }
    md.push('\n');
    md
}

/// The same as CSV, one line per row; empty cells where there is no number.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("setting,runs,finished,diverged,not_finished,mean_error,std_error,published_error,difference,source\n");
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for row in rows {
        let _ = writeln!(
            out,
            "\"{}\",{},{},{},{},{},{},{},{},\"{}\"",
            row.label.replace('"', "\"\""),
            row.runs,
            row.errors.len(),
            row.diverged,
            row.unfinished,
            num(row.mean()),
            num(row.std()),
            num(row.published.map(|p| p.error)),
            num(row.mean().zip(row.published).map(|(m, p)| m - p.error)),
            row.published.map_or("", |p| p.source),
        );
    }
    out
}
