//! Reading a run directory: `config.json` (optional), `metrics.jsonl` and
//! `summary.json` (absent while a run is unfinished). The metrics are read as
//! [`Record`]s, leniently: unknown fields and record kinds are ignored and
//! missing ones take their defaults, so older runs keep loading as the log grows.

use crate::analysis::exact::ExactRecord;
use crate::analysis::{Alert, LayerRecord, Mode};
use crate::error::{one_line, Error, Result};
use crate::files::{not_a_file, read_file};
use crate::record::{EvalRecord, Headline, Record, TrainRecord};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Everything the report knows about one run directory.
#[derive(Debug)]
pub struct Run {
    /// The directory's name: the series label in every plot.
    pub name: String,
    pub dir: PathBuf,
    pub model: Option<String>,
    pub data: Option<String>,
    /// `config.json`'s `train` object, as written.
    pub train_config: Option<serde_json::Value>,
    /// `None` while the run is unfinished.
    pub summary: Option<Summary>,
    /// The iteration at which the metrics say the loss stopped being finite.
    pub diverged_at: Option<usize>,
    pub train: Vec<TrainRecord>,
    pub eval: Vec<EvalRecord>,
    pub analysis: Vec<LayerRecord>,
    pub alerts: Vec<Alert>,
    pub exact: Vec<ExactRecord>,
    /// One entry per metrics line that could not be read: "line N: why".
    pub malformed: Vec<String>,
    /// One entry per record that repeats an earlier one with no resume
    /// record between (a log pasted in twice): "line N: what". The later is kept.
    pub repeated: Vec<String>,
}

/// The kind of the first record `kappa luckmatters` wrote to this log
/// ("recon" or "matrix"), if any: its own kinds, under the same file name.
fn luckmatters_kind(metrics: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    let kinds = metrics.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice::<Kind>(line).ok());
    kinds.map(|k| k.kind).find(|k| k == "recon" || k == "matrix")
}

/// `summary.json`, every field optional so a partial one still reports.
#[derive(Debug, Default, Deserialize)]
pub struct Summary {
    pub model: Option<String>,
    pub data: Option<String>,
    pub iterations: Option<usize>,
    #[serde(default)]
    pub diverged: bool,
    pub diverged_at: Option<usize>,
    #[serde(flatten)]
    pub headline: Headline,
    pub seconds: Option<f64>,
}

/// The parts of `config.json` worth showing for a run without a summary.
#[derive(Deserialize)]
struct Config {
    model: Option<String>,
    train: Option<serde_json::Value>,
}

impl Run {
    pub fn load(dir: &Path) -> Result<Run> {
        let metrics = dir.join("metrics.jsonl");
        if !metrics.is_file() {
            let why = match (dir.is_dir(), dir.exists()) {
                (true, _) => {
                    not_a_file(&metrics).map_or("it has no metrics.jsonl".into(), |problem| format!("its metrics.jsonl {problem}"))
                }
                (false, true) => "it is a file, not a directory".into(),
                (false, false) => "it does not exist".into(),
            };
            return Err(Error::data(dir, format!("expected a run directory written by `kappa train` (with metrics.jsonl), but {why}")));
        }
        let bytes = read_file(&metrics).map_err(|e| Error::data(&metrics, e.to_string()))?;
        let config: Option<Config> = read_json(&dir.join("config.json"), "the run configuration written by `kappa train`")?;
        let summary_path = dir.join("summary.json");
        let summary: Option<Summary> = read_json(&summary_path, "the run summary written by `kappa train`")?;
        // Every field is optional so a partial summary still reports, but one
        // with none of them would read as a finished run with no results.
        if let Some(Summary { model: None, data: None, iterations: None, seconds: None, .. }) = summary {
            let detail = "holds none of the run summary's fields (model, data, iterations, seconds); expected the summary \
                          `kappa train` writes, or no file while the run is unfinished";
            return Err(Error::data(&summary_path, detail));
        }
        let train = config.as_ref().and_then(|c| c.train.clone());
        let (model, data) = match (&summary, config) {
            (Some(s), _) if s.model.is_some() => (s.model.clone(), s.data.clone()),
            (_, Some(c)) => (c.model, train.as_ref().and_then(|t| t["data"].as_str().map(str::to_string))),
            _ => (None, None),
        };
        let mut run = Run {
            name: dir_name(dir),
            dir: dir.to_path_buf(),
            model,
            data,
            train_config: train,
            summary,
            diverged_at: None,
            train: vec![],
            eval: vec![],
            analysis: vec![],
            alerts: vec![],
            exact: vec![],
            malformed: vec![],
            repeated: vec![],
        };
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            run.add_line(n + 1, line);
        }
        let nothing_read = run.train.is_empty() && run.eval.is_empty() && run.analysis.is_empty() && run.exact.is_empty();
        // Only a log with none of kappa train's records is read again for luckmatters' kinds.
        if let Some(kind) = nothing_read.then(|| luckmatters_kind(&bytes)).flatten() {
            let detail = format!(
                "holds `kappa luckmatters` records (\"{kind}\"), which the report does not read (that command prints its own \
                 summary); expected the metrics of a run written by `kappa train` or `kappa analyze`"
            );
            return Err(Error::data(&metrics, detail));
        }
        // A log whose lines were reordered by hand would draw its curves back and forth.
        run.train.sort_by_key(|r| r.iteration);
        run.eval.sort_by_key(|r| r.iteration);
        Ok(run)
    }

    fn add_line(&mut self, number: usize, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Train(r)) => {
                let what = format!("line {number}: the training record of iteration {}", r.iteration);
                supersede(&mut self.train, r, |r| r.iteration, |a, b| a.iteration == b.iteration, &mut self.repeated, what);
            }
            Ok(Record::Eval(r)) => {
                let what = format!("line {number}: the evaluation at iteration {}", r.iteration);
                supersede(&mut self.eval, r, |r| r.iteration, |a, b| a.iteration == b.iteration, &mut self.repeated, what);
            }
            Ok(Record::Summary(r)) => {
                if r.diverged {
                    self.diverged_at = r.iteration.or(self.diverged_at);
                }
            }
            Ok(Record::Analysis(r)) => {
                let what = format!("line {number}: the analysis of {} at iteration {}", r.layer.escape_debug(), r.iteration);
                let same = |a: &LayerRecord, b: &LayerRecord| (a.iteration, a.mode, &a.layer) == (b.iteration, b.mode, &b.layer);
                supersede(&mut self.analysis, *r, |r| r.iteration, same, &mut self.repeated, what);
            }
            Ok(Record::Alert(r)) => self.alerts.push(r),
            Ok(Record::Exact(r)) => self.exact.push(*r),
            Ok(Record::Resume(r)) => self.resume_at(r.iteration),
            Ok(Record::Other) => {}
            Err(e) => self.malformed.push(one_line(format!("line {number}: {e}"))),
        }
    }

    /// The resumed run logs again from its checkpoint on, measuring the state
    /// at `iteration` anew: what the interrupted run logged past it goes.
    fn resume_at(&mut self, iteration: usize) {
        self.train.retain(|r| r.iteration <= iteration);
        self.eval.retain(|r| r.iteration <= iteration);
        self.analysis.retain(|r| r.iteration < iteration);
        self.alerts.retain(|r| r.iteration < iteration);
        self.exact.retain(|r| r.iteration < iteration);
        self.diverged_at = self.diverged_at.filter(|&i| i <= iteration);
    }

    /// The analysis records split by mode ("empirical", "fim", ...) in
    /// first-seen order, each labelled with the run name, plus the mode when
    /// the run has several (so their series stay apart in a plot).
    pub fn analysis_by_mode(&self) -> Vec<(String, Vec<&LayerRecord>)> {
        let mut groups: Vec<(Mode, Vec<&LayerRecord>)> = vec![];
        for a in &self.analysis {
            match groups.iter_mut().find(|(mode, _)| *mode == a.mode) {
                Some((_, records)) => records.push(a),
                None => groups.push((a.mode, vec![a])),
            }
        }
        let several = groups.len() > 1;
        let label = |mode: Mode| match several {
            true => format!("{} ({})", self.name, mode.name()),
            false => self.name.clone(),
        };
        groups.into_iter().map(|(mode, records)| (label(mode), records)).collect()
    }
}

/// Adds `record` to `list`, or puts it in the place of an earlier record
/// `same` as it, saying so in `repeated` (`what`): the later one stands, as
/// it would after a resume, and the order of iterations is kept.
///
/// The search runs back from the end over records of `record`'s iteration
/// (`at`) or later only: in a log in iteration order, as kappa writes it,
/// those are the records of this iteration, so reading a long log stays
/// linear in its length. (A pasted-in second copy is found all the same.)
fn supersede<T>(
    list: &mut Vec<T>,
    record: T,
    at: fn(&T) -> usize,
    same: impl Fn(&T, &T) -> bool,
    repeated: &mut Vec<String>,
    what: String,
) {
    let start = list.len() - list.iter().rev().take_while(|earlier| at(earlier) >= at(&record)).count();
    match list[start..].iter().position(|earlier| same(earlier, &record)) {
        Some(i) => {
            list[start + i] = record;
            repeated.push(what);
        }
        None => list.push(record),
    }
}

/// Parses an optional JSON file: absent is `None`, unreadable is an error.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, expected: &str) -> Result<Option<T>> {
    let text = match read_file(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::data(path, e.to_string())),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| Error::data(path, format!("expected {expected} (a JSON object): {e}")))
}

fn dir_name(dir: &Path) -> String {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    resolved.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_quoting_a_newline_is_reported_on_one_line() {
        let dir = std::env::temp_dir().join(format!("kappa-read-one-line-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = r#"{"kind":"analysis","iteration":1,"mode":"fi\nm","layer":"l","index":1,"sigma_x":{},"sigma_grad":{}}"#;
        std::fs::write(dir.join("metrics.jsonl"), format!("{}\n{line}\n", r#"{"kind":"train","iteration":1,"loss":1.0}"#)).unwrap();
        let run = Run::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(run.malformed.len(), 1);
        assert!(run.malformed[0].starts_with("line 2: unknown variant `fi\\nm`"), "{:?}", run.malformed);
    }

    #[test]
    fn a_resume_record_drops_what_the_interrupted_run_logged_past_it() {
        let dir = std::env::temp_dir().join(format!("kappa-read-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let analysis =
            |it: usize| format!(r#"{{"kind":"analysis","iteration":{it},"layer":"l","index":1,"sigma_x":{{}},"sigma_grad":{{}}}}"#);
        let train = |it: usize| format!(r#"{{"kind":"train","iteration":{it},"loss":1.0}}"#);
        let lines = [
            train(5),
            analysis(8),
            train(10),
            analysis(12),
            train(15),
            r#"{"kind":"resume","iteration":12}"#.into(),
            analysis(12),
            train(15),
        ];
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
        let run = Run::load(&dir).unwrap();
        assert_eq!(run.train.iter().map(|r| r.iteration).collect::<Vec<_>>(), vec![5, 10, 15]);
        assert_eq!(run.analysis.iter().map(|r| r.iteration).collect::<Vec<_>>(), vec![8, 12]);
        assert!(run.malformed.is_empty() && run.repeated.is_empty(), "{:?} {:?}", run.malformed, run.repeated);

        // The same records again with no resume record between: the later stand, and it is said.
        std::fs::write(dir.join("metrics.jsonl"), [&lines[..5], &lines[..2], &[analysis(8).replace("\"l\"", "\"m\"")]].concat().join("\n"))
            .unwrap();
        let run = Run::load(&dir).unwrap();
        assert_eq!(run.train.iter().map(|r| r.iteration).collect::<Vec<_>>(), vec![5, 10, 15]);
        assert_eq!(run.analysis.iter().map(|r| (r.iteration, r.layer.as_str())).collect::<Vec<_>>(), vec![(8, "l"), (12, "l"), (8, "m")]);
        assert_eq!(run.repeated, ["line 6: the training record of iteration 5", "line 7: the analysis of l at iteration 8"]);

        // Lines reordered by hand are read in the order of their iterations.
        std::fs::write(dir.join("metrics.jsonl"), [train(15), train(5), train(10)].join("\n")).unwrap();
        assert_eq!(Run::load(&dir).unwrap().train.iter().map(|r| r.iteration).collect::<Vec<_>>(), vec![5, 10, 15]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
