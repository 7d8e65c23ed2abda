//! The small run the checkpoint and state-dict targets load into: a BN MLP
//! (so the files hold running statistics and `num_batches_tracked`) trained
//! with momentum (so checkpoints hold optimiser state), small enough that
//! building it for every input costs microseconds.

use kappa::backend::cpu::Cpu;
use kappa::data::Batch;
use kappa::train::{TrainConfig, Trainer};
use std::path::Path;

/// Values per example and classes.
pub const DIMS: [usize; 1] = [6];
pub const CLASSES: usize = 3;

pub type Backend = Cpu<f32>;

/// The run's configuration, its directory `out`.
pub fn config(out: &Path) -> TrainConfig {
    TrainConfig { depth: 3, width: 4, bn: true, batch_size: 4, out: out.to_path_buf(), ..TrainConfig::default() }
}

pub fn trainer(cfg: &TrainConfig) -> Trainer<Backend> {
    Trainer::new(&Cpu::new(), cfg, &DIMS, CLASSES).expect("the small run's configuration is valid")
}

/// The trainer a file loads into, as `kappa train` builds it for one: no weights drawn.
pub fn to_load(cfg: &TrainConfig) -> Trainer<Backend> {
    Trainer::to_load(&Cpu::new(), cfg, &DIMS, CLASSES).expect("the small run's configuration is valid")
}

/// A fixed batch of four examples, for the seed generator's training step.
pub fn batch() -> Batch {
    let images = (0..4 * DIMS[0]).map(|i| (i % 7) as f32 / 7.0).collect();
    Batch { images, labels: vec![0, 1, 2, 1], dims: vec![4, DIMS[0]] }
}
