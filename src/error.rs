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
    pub fn data(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Data { path: path.into(), detail: detail.into() }
    }
    pub fn arg(arg: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Argument { arg: arg.into(), detail: detail.into() }
    }
}
