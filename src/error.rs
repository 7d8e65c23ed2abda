//! Typed errors of the library; the command line wraps them with anyhow context.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("CUDA device {0} requested, but this kappa was built without the `cuda` feature (rebuild with `cargo build --release --features cuda`)")]
    CudaNotCompiled(usize),
    #[error("CUDA is unavailable: {0}")]
    CudaUnavailable(String),
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("{path}: {detail}")]
    Data { path: PathBuf, detail: String },
    #[error("invalid argument {arg}: {detail}")]
    Argument { arg: String, detail: String },
    #[error("{0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape { op, detail: detail.into() }
    }
    /// A file's error. Its detail is kept to one line: a parser's message may
    /// quote the file, newlines included.
    pub fn data(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Data { path: path.into(), detail: one_line(detail.into()) }
    }
    pub fn arg(arg: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Argument { arg: arg.into(), detail: detail.into() }
    }
}

/// `text` with each control character (a newline, a tab, an escape) written
/// as its Rust escape, so that text quoted from a file stays on one line.
pub fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_error_quoting_control_characters_stays_one_line() {
        let err = Error::data("run/config.json", "unknown variant `a\nb\t\u{1b}×`, expected `constant`").to_string();
        assert_eq!(err, "run/config.json: unknown variant `a\\nb\\t\\u{1b}×`, expected `constant`");
        assert_eq!(one_line("plain × text".into()), "plain × text");
    }
}
