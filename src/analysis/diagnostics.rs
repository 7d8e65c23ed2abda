//! Weight domination (paper Def. 1: σmax(∂L/∂W) ≪ σmax(W)) and dying / full
//! ReLU neurons.

use crate::backend::{Backend, Gemm};
use crate::error::Result;
use crate::lenient;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Read back leniently: a float a log lacks or holds as `null` is NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightStats {
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub sigma_max: f64,
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub grad_sigma_max: f64,
    /// σmax(∂L/∂W) / σmax(W): small means the weight dominates its gradient.
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub ratio: f64,
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub frobenius: f64,
}

impl WeightStats {
    /// From the largest eigenvalues of the Gram matrices of W and ∂L/∂W.
    /// A NaN eigenvalue (a matrix that was not finite) stays NaN rather than
    /// reading as σ = 0, which would raise a false weight-domination alert.
    pub fn from_gram_eigenvalues(w_max: f64, g_max: f64, frobenius: f64) -> Self {
        let sigma = |lambda: f64| if lambda.is_nan() { lambda } else { lambda.max(0.0).sqrt() };
        let (sigma_max, grad_sigma_max) = (sigma(w_max), sigma(g_max));
        WeightStats { sigma_max, grad_sigma_max, ratio: grad_sigma_max / sigma_max, frobenius }
    }
}

/// The smaller Gram matrix of an `out × in` matrix (W·Wᵀ or WᵀW, lower
/// triangle valid): its largest eigenvalue is σmax².
pub fn gram<B: Backend>(backend: &B, w: &Tensor<B>) -> Result<(B::Buf, usize)> {
    let (out, inp) = w.rows_cols();
    if out <= inp {
        Ok((backend.matmul(w.buf(), w.buf(), Gemm::new(out, out, inp, false, true))?, out))
    } else {
        let mut acc = backend.zeros(inp * inp)?;
        backend.gram_lower(&mut acc, w.buf(), out, inp, 1.0)?;
        Ok((acc, inp))
    }
}

/// Read back leniently, as [`WeightStats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronStats {
    #[serde(default)]
    pub units: usize,
    /// Units whose ReLU output is 0 for every analysed example.
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub dead_fraction: f64,
    /// Units whose ReLU output is positive for every analysed example.
    #[serde(default = "lenient::nan", deserialize_with = "lenient::float")]
    pub full_fraction: f64,
}

/// Accumulates per-unit positive counts over the analysis batches.
#[derive(Default)]
pub struct NeuronCounts {
    positive: Vec<u32>,
    rows: u32,
}

impl NeuronCounts {
    pub fn add(&mut self, positive: &[u32], rows: usize) {
        if self.positive.is_empty() {
            self.positive = vec![0; positive.len()];
        }
        self.positive.iter_mut().zip(positive).for_each(|(a, b)| *a += b);
        self.rows += rows as u32;
    }

    pub fn stats(&self) -> NeuronStats {
        let units = self.positive.len();
        let frac = |f: &dyn Fn(u32) -> bool| self.positive.iter().filter(|&&c| f(c)).count() as f64 / units.max(1) as f64;
        NeuronStats { units, dead_fraction: frac(&|c| c == 0), full_fraction: frac(&|c| c == self.rows) }
    }
}
