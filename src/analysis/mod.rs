//! Layer-wise conditioning analysis (Huang et al., ECCV 2020, §3–4): for
//! every linear layer, the second moments Σx of its input and Σ∇h of its
//! output-gradient, their spectra and the Kronecker (K-FAC) sub-FIM, with
//! weight-domination and dying-neuron diagnostics.

mod alerts;
mod analyzer;
mod config;
mod diagnostics;
pub mod exact;
mod moments;
pub mod npy;
pub mod readout;
mod record;
pub mod spectrum;
mod subject;
mod table;

pub use alerts::AlertsState;
pub use analyzer::{Analyzer, TrainingBatch, SPECTRA_DIR};
pub use config::{AnalysisConfig, Mode, EXACT_EXAMPLES_SEED, EXTRA_BATCHES_SEED};
pub use diagnostics::{NeuronStats, WeightStats};
pub use moments::{matrix_elements, ConvStat, LayerMatrices, Moments};
pub use record::{Alert, LayerRecord};
pub use spectrum::{Kronecker, Spectrum};
pub use subject::{Labels, Subject};
pub use table::conditioning_table;
