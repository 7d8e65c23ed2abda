//! The run directory's `metrics.jsonl` (one JSON object per record, flushed as
//! written so a crash loses nothing) and its `summary.json`.

use crate::analysis::SPECTRA_DIR;
use crate::checkpoint::CHECKPOINT_FILE;
use crate::error::{Error, Result};
use crate::record::Headline;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
    /// Whether the file held anything when opened.
    held: bool,
}

const TAKEN: &str = "already holds part of a run; pick another --out so nothing is overwritten";

/// What a run writes: a fresh run refuses a directory holding any of them,
/// or it would overwrite the run there (or mix its spectra with that run's).
const RUN_FILES: [&str; 5] = ["metrics.jsonl", "config.json", CHECKPOINT_FILE, "summary.json", SPECTRA_DIR];

impl MetricsLog {
    /// Fails, naming the file, where `dir` already holds a run's metrics or
    /// any other file a run writes: a check before a run reads its data, so a
    /// taken `--out` is reported at once. [`MetricsLog::create`] still
    /// refuses a taken `metrics.jsonl` atomically.
    pub fn check_free(dir: &Path) -> Result<()> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::data(dir, "is a file, not a directory: expected a folder for the run (--out)"));
        }
        match RUN_FILES.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
            Some(path) => Err(Error::data(&path, TAKEN.to_string())),
            None => Ok(()),
        }
    }

    /// Creates `dir/metrics.jsonl`, refusing to touch one that already exists.
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
            let detail = if e.kind() == std::io::ErrorKind::AlreadyExists { TAKEN.to_string() } else { e.to_string() };
            Error::data(&path, detail)
        })?;
        Ok(MetricsLog { path, out: BufWriter::new(file), held: false })
    }

    /// Opens a run's existing `dir/metrics.jsonl` to continue it. A line cut
    /// short by a crash is ended first, so it is not glued to the next record.
    pub fn append(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut file = OpenOptions::new().read(true).append(true).open(&path).map_err(|e| {
            Error::data(&path, format!("cannot open it to continue the run ({e}); expected a run written by `kappa train`"))
        })?;
        let io = |e: std::io::Error| Error::data(&path, e.to_string());
        let len = file.seek(SeekFrom::End(0)).map_err(io)?;
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
            }
        }
        Ok(MetricsLog { path, out: BufWriter::new(file), held: len > 0 })
    }

    /// The file's path, and whether it held anything when opened (a resumed
    /// run's log that was emptied holds none of the run so far).
    pub fn opened(&self) -> (&Path, bool) {
        (&self.path, self.held)
    }

    pub fn write(&mut self, record: &impl Serialize) -> Result<()> {
        let io = |e: std::io::Error| Error::data(&self.path, e.to_string());
        serde_json::to_writer(&mut self.out, record).map_err(|e| Error::data(&self.path, e.to_string()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// The outcome of a run, printed at the end and saved as `summary.json`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub model: String,
    pub data: String,
    pub iterations: usize,
    pub epochs: usize,
    pub diverged: bool,
    /// The iteration whose loss was NaN or infinite.
    pub diverged_at: Option<usize>,
    #[serde(flatten)]
    pub headline: Headline,
    pub seconds: f64,
    pub examples_per_second: f64,
    pub out: PathBuf,
}

impl Summary {
    pub fn save(&self) -> Result<()> {
        let path = self.out.join("summary.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::data(&path, e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| Error::data(&path, e.to_string()))
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
        let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        let status = match self.diverged_at {
            Some(i) => format!("DIVERGED at iteration {i} (loss not finite)"),
            None => "finished".into(),
        };
        format!(
            "{status}: {} on {}, {} iterations / {} epochs in {:.1}s ({:.0} examples/s); train loss {} acc {}; test loss {} acc {}; run dir {}",
            self.model,
            self.data,
            self.iterations,
            self.epochs,
            self.seconds,
            self.examples_per_second,
            num(self.headline.train_loss),
            pct(self.headline.train_accuracy),
            num(self.headline.test_loss),
            pct(self.headline.test_accuracy),
            self.out.display()
        )
    }
}
