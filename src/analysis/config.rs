//! When and how the conditioning analysis runs.

use super::moments::ConvStat;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The further analysis batches of `--analysis-batches` are drawn in the order
/// of the run's seed XOR this ("analysis" in ASCII): an order of their own,
/// which neither repeats nor disturbs the training order.
pub const EXTRA_BATCHES_SEED: u64 = 0x616e_616c_7973_6973;

/// The fixed examples the exact curvature is measured on are the first batch
/// in the order of the run's seed XOR this ("exact" in ASCII).
pub const EXACT_EXAMPLES_SEED: u64 = 0x65_78_61_63_74;

/// Which labels the output-gradient second moment Σ∇h is taken under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// True labels: the empirical second moment M; reuses the training backward.
    #[default]
    Empirical,
    /// Labels sampled from the model's softmax: the Fisher; one extra backward
    /// per analysis batch, which leaves the training trajectory untouched.
    Fisher,
}

impl Mode {
    /// As the log and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Empirical => "empirical",
            Mode::Fisher => "fisher",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// Analyse every N iterations (0 = never), counting from iteration 0 (the initialisation).
    pub every: usize,
    /// Also analyse at exactly these iterations.
    pub at: Vec<usize>,
    pub mode: Mode,
    /// Batches each analysis accumulates Σx and Σ∇h over.
    pub batches: usize,
    /// Subtract the mean: Σx = E[(x−μ)(x−μ)ᵀ] instead of the uncentred E[x xᵀ].
    pub centered: bool,
    /// The p of κ_p, in percent.
    pub kappa_p: Vec<f64>,
    /// Save every eigenvalue as .npy under `spectra/` in the run directory.
    pub save_spectra: bool,
    /// σmax(∂L/∂W)/σmax(W) below this flags weight domination.
    pub domination_threshold: f64,
    /// Iterations at which to build the exact FIM and M from per-example
    /// gradients (tiny nets only: paper Fig. 1, 2, A1–A4).
    pub exact_at: Vec<usize>,
    /// Examples the exact matrices are averaged over.
    pub exact_examples: usize,
    /// A conv layer's Σx over input patches or over channels.
    #[serde(default)]
    pub conv_stat: ConvStat,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            every: 0,
            at: Vec::new(),
            mode: Mode::Empirical,
            batches: 1,
            centered: false,
            kappa_p: vec![50.0, 80.0, 100.0],
            save_spectra: false,
            domination_threshold: 1e-3,
            exact_at: Vec::new(),
            exact_examples: 1024,
            conv_stat: ConvStat::Patch,
        }
    }
}

impl AnalysisConfig {
    pub fn enabled(&self) -> bool {
        self.every > 0 || !self.at.is_empty()
    }

    /// Whether to analyse the model as it is after `iteration` updates.
    pub fn due(&self, iteration: usize) -> bool {
        (self.every > 0 && iteration.is_multiple_of(self.every)) || self.at.contains(&iteration)
    }

    pub fn validate(&self) -> Result<()> {
        if self.batches == 0 {
            return Err(Error::arg("--analysis-batches", "must be at least 1"));
        }
        if let Some(p) = self.kappa_p.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
            return Err(Error::arg("--kappa-p", format!("{p} is not a percentage in (0, 100]")));
        }
        if !self.exact_at.is_empty() && self.exact_examples == 0 {
            return Err(Error::arg("--examples", "must be at least 1"));
        }
        if !(self.domination_threshold > 0.0 && self.domination_threshold.is_finite()) {
            return Err(Error::arg("--domination-threshold", "must be a positive number"));
        }
        if self.save_spectra && !self.enabled() {
            return Err(Error::arg(
                "--save-spectra",
                "no analysis is scheduled (--analyze-every 0 and no --analyze-at), so there are no spectra to save",
            ));
        }
        Ok(())
    }
}
