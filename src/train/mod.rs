//! Training: configuration, the step loop, evaluation and the metrics log.

mod config;
mod event_file;
mod metrics;
pub mod recipe;
mod run;
mod tensorboard;
mod trainer;

pub use config::{ArchOptions, Dtype, OptimizerKind, Pipeline, TrainConfig};
pub use metrics::{MetricsLog, Summary};
pub use run::{open_data, run, run_on, run_with, RunOptions};
// Where callers of the trainer's passes have always found it.
pub use crate::analysis::Labels;
pub use trainer::{EvalStats, StepStats, Trainer};
