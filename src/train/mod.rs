//! Training: configuration, the step loop, evaluation and the metrics log.

mod config;
mod event_file;
mod metrics;
pub mod recipe;
mod run;
mod table;
mod tensorboard;
mod trainer;

pub use config::{ArchOptions, Dtype, OptimizerKind, Pipeline, TrainConfig};
pub use metrics::{MetricsLog, Summary};
pub use run::{open_data, run, run_on, run_with, RunOptions};
pub use trainer::{EvalStats, Labels, StepStats, Trainer};
