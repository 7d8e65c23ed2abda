//! The analysis records written to `metrics.jsonl`, one per (analysis step,
//! layer), and its alerts; the metrics log tags each with its kind.
//! Read back leniently: a field a log lacks takes its default.

use super::config::Mode;
use super::diagnostics::{NeuronStats, WeightStats};
use super::spectrum::{Kronecker, Spectrum};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Updates made before the analysed state (0 = the initialisation).
    pub iteration: usize,
    #[serde(default)]
    pub epoch: usize,
    #[serde(default)]
    pub mode: Mode,
    pub layer: String,
    /// 1-based position among the probed layers (what `--freeze` counts).
    pub index: usize,
    /// The last linear layer (paper Fig. 6, 7, 9).
    #[serde(default)]
    pub last: bool,
    pub sigma_x: Spectrum,
    pub sigma_grad: Spectrum,
    /// Prop. 1: the sub-FIM (M in empirical mode) from the two factors.
    #[serde(default)]
    pub fim: Kronecker,
    pub weight: Option<WeightStats>,
    /// This layer's ReLU units, seen at the next layer's input.
    pub neurons: Option<NeuronStats>,
}

/// A change worth a human's attention, also written to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub iteration: usize,
    #[serde(default)]
    pub layer: String,
    /// `weight-domination`, `dead-neurons` or `kappa-jump`.
    pub alert: String,
    #[serde(default)]
    pub detail: String,
}
