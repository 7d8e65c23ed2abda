//! kappa: trains deep networks and measures, while they train, how well
//! conditioned each layer's optimisation problem is (Huang et al., ECCV 2020).

pub mod allocator;
pub mod analysis;
pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod data;
pub mod doctor;
pub mod error;
pub mod experiments;
pub mod files;
pub mod lenient;
pub mod luckmatters;
pub mod models;
pub mod nn;
pub mod optim;
pub mod param;
pub mod profile;
pub mod record;
pub mod report;
pub mod rng;
pub mod run_check;
pub mod scalar;
pub mod size;
pub mod speed;
pub mod tensor;
pub mod train;
pub mod workers;

pub use error::{Error, Result};
