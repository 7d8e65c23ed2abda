//! Training: configuration, the step loop, evaluation and the metrics log.

mod config;
mod metrics;
mod run;
mod table;
mod trainer;

pub use config::{ArchOptions, Dtype, OptimizerKind, TrainConfig};
pub use metrics::{MetricsLog, Summary};
pub use run::{run, run_with, RunOptions};
pub use trainer::{EvalStats, Labels, StepStats, Trainer};
