//! The report renderer: reads run directories written by `kappa train` and
//! draws the paper's figures (PNG and SVG) plus a `report.md` summary, with
//! test errors aggregated over seeds against the published ones, and
//! optionally `report.html`, the same as one self-contained page.
//! Several runs overlay as series in the same plots, labelled by directory
//! name, so e.g. Plain and BN compare at a glance.

mod figures;
mod font;
mod html;
mod markdown;
mod measured;
mod plots;
pub(crate) mod published;
pub mod read;
mod seeds;

pub use measured::geometric_mean;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// An image format the plots are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Analysis iterations for the per-layer plots, each snapped to the
    /// nearest analysed one; empty: the first, middle and last.
    pub iterations: Vec<usize>,
    pub formats: Vec<Format>,
    /// Also write `report.html` (needs the SVG format, which it inlines).
    pub html: bool,
    /// The page's heading and what it says first; `None`: "kappa report".
    pub about: Option<About>,
    /// Markdown sections that head report.md and report.html, e.g. a
    /// reproduction's verdicts on the paper's claims.
    pub preface: String,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { iterations: vec![], formats: vec![Format::Png, Format::Svg], html: false, about: None, preface: String::new() }
    }
}

/// What a page says about itself at the top, e.g. a reproduction's preset.
#[derive(Clone, Debug)]
pub struct About {
    pub title: String,
    /// Label and text pairs, shown in order.
    pub items: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct ReportSummary {
    /// `out/report.md`.
    pub markdown: PathBuf,
    /// `out/report.html`, when asked for.
    pub html: Option<PathBuf>,
    /// Per run (and analysis mode): its conditioning at the last analysis, in one line.
    pub conditioning: Vec<(String, String)>,
    /// `out/test_error.csv`: test error over seeds, when the runs have configurations.
    pub tables: Vec<PathBuf>,
    /// Every plot file written.
    pub plots: Vec<PathBuf>,
    /// Plots left out for lack of data, with what they need.
    pub skipped: Vec<String>,
    /// One line per run whose metrics had unreadable lines (which were
    /// skipped) or repeated records.
    pub warnings: Vec<String>,
    /// One line per `--iterations` value a run did not analyse, with the
    /// nearest iteration its series show instead.
    pub snapped: Vec<String>,
    /// How many metrics lines were skipped, over all runs.
    pub malformed_lines: usize,
}

/// Renders the report of `runs` (run directories) into `out`, creating it.
pub fn render(runs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    if runs.is_empty() {
        return Err(Error::arg("runs", "give at least one run directory"));
    }
    if opts.formats.is_empty() {
        return Err(Error::arg("formats", "give at least one image format (png, svg)"));
    }
    if opts.html && !opts.formats.contains(&Format::Svg) {
        return Err(Error::arg("formats", "the HTML page inlines the SVG plots: include the svg format"));
    }
    // One directory given twice (`a`, `./a/`) would count as two seeds.
    let mut seen = std::collections::HashMap::new();
    for dir in runs {
        let resolved = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if let Some(first) = seen.insert(resolved, dir) {
            let detail = format!("{} and {} are the same run directory; give each run once", first.display(), dir.display());
            return Err(Error::arg("runs", detail));
        }
    }
    let mut runs = runs.iter().map(|dir| read::Run::load(dir)).collect::<Result<Vec<_>>>()?;
    // Series are told apart by run name: two directories of the same name
    // (runs/a/bn, runs/b/bn) are labelled by their full paths instead.
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    for run in &mut runs {
        if names.iter().filter(|n| **n == run.name).count() > 1 {
            run.name = run.dir.display().to_string();
        }
    }
    create_report_dir(out)?;

    let plots = figures::build(&runs, &opts.iterations);
    let mut rendered = vec![];
    for plot in &plots {
        let files = if plot.figure.has_data() { plot.figure.write(out, &opts.formats)? } else { vec![] };
        rendered.push(markdown::Rendered { plot, files });
    }
    let rows = seeds::rows(&runs);
    let mut tables = vec![];
    if !rows.is_empty() {
        let csv = out.join("test_error.csv");
        std::fs::write(&csv, seeds::csv(&rows)).map_err(|e| Error::data(&csv, e.to_string()))?;
        tables.push(csv);
    }
    let seed_table = seeds::markdown(&rows);
    let markdown = out.join("report.md");
    std::fs::write(&markdown, markdown::report(&runs, &opts.preface, &seed_table, &rendered))
        .map_err(|e| Error::data(&markdown, e.to_string()))?;
    let conditioning: Vec<(String, String)> = runs.iter().flat_map(measured::conditioning).collect();
    let html = if opts.html {
        let page = out.join("report.html");
        std::fs::write(&page, html::report(&runs, &opts.preface, &seed_table, &rendered, &conditioning, opts.about.as_ref())?)
            .map_err(|e| Error::data(&page, e.to_string()))?;
        Some(page)
    } else {
        None
    };

    Ok(ReportSummary {
        markdown,
        html,
        conditioning,
        tables,
        plots: rendered.iter().flat_map(|r| r.files.iter().cloned()).collect(),
        skipped: rendered
            .iter()
            .filter(|r| r.files.is_empty())
            .map(|r| format!("{}: the runs have no {}", r.plot.figure.title, r.plot.needs))
            .collect(),
        warnings: runs.iter().flat_map(warnings).collect(),
        snapped: figures::snapped(&runs, &opts.iterations),
        malformed_lines: runs.iter().map(|r| r.malformed.len()).sum(),
    })
}

/// Creates the report's folder `out`, naming a file that stands in its way.
fn create_report_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::data(out, "is a file, not a directory: expected a folder for the report (--out)"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::data(out, format!("cannot create the report directory: {e}")))
}

/// Writes `out/report.html` for an experiment that measures a text rather
/// than training runs (the LuckMatters scripts), headed by `preface` (markdown).
pub fn measured_page(out: &Path, about: &About, measured: &str, preface: &str) -> Result<PathBuf> {
    create_report_dir(out)?;
    let page = out.join("report.html");
    std::fs::write(&page, html::measured(about, measured, preface)).map_err(|e| Error::data(&page, e.to_string()))?;
    Ok(page)
}

/// What a run's log held that the report set aside: "<dir>/metrics.jsonl:
/// skipped N malformed lines (line 3: ...)", and likewise for records
/// repeated without a resume record between.
fn warnings(run: &read::Run) -> Vec<String> {
    let path = run.dir.join("metrics.jsonl");
    let say = |lines: &[String], what: String| {
        let more = if lines.len() > 1 { format!("; {} more", lines.len() - 1) } else { String::new() };
        lines.first().map(|first| format!("{}: {what} ({first}{more})", path.display()))
    };
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let repeated =
        format!("{} repeating an earlier one with no resume record between; the later kept", count(run.repeated.len(), "record"));
    [say(&run.malformed, format!("skipped {}", count(run.malformed.len(), "malformed line"))), say(&run.repeated, repeated)]
        .into_iter()
        .flatten()
        .collect()
}
