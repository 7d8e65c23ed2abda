//! The analysis records written to `metrics.jsonl`, one per (analysis step, layer).

use super::config::Mode;
use super::diagnostics::{NeuronStats, WeightStats};
use super::spectrum::{Kronecker, Spectrum};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Always `"analysis"`.
    pub kind: String,
    /// Updates made before the analysed state (0 = the initialisation).
    pub iteration: usize,
    pub epoch: usize,
    pub mode: Mode,
    pub layer: String,
    /// 1-based position among the probed layers (what `--freeze` counts).
    pub index: usize,
    /// The last linear layer (paper Fig. 6, 7, 9).
    pub last: bool,
    pub sigma_x: Spectrum,
    pub sigma_grad: Spectrum,
    /// Prop. 1: the sub-FIM (M in empirical mode) from the two factors.
    pub fim: Kronecker,
    pub weight: Option<WeightStats>,
    /// This layer's ReLU units, seen at the next layer's input.
    pub neurons: Option<NeuronStats>,
}

/// A change worth a human's attention, also written to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Always `"alert"`.
    pub kind: String,
    pub iteration: usize,
    pub layer: String,
    /// `weight-domination`, `dead-neurons` or `kappa-jump`.
    pub alert: String,
    pub detail: String,
}
