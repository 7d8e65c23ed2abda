//! The teacher: a ReLU MLP whose rows are distinct, sparse, low-precision
//! directions, so every teacher node is distinguishable and a student node
//! can match at most one of them.

use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The values a teacher weight is drawn from (before the row is normalised).
pub const CHOICES: [f64; 5] = [-0.5, -0.25, 0.0, 0.25, 0.5];

/// Whether `rows` distinct non-zero rows of `cols` entries from [`CHOICES`] exist.
pub fn separable(rows: usize, cols: usize) -> bool {
    rows as f64 <= (CHOICES.len() as f64).powi(cols.min(64) as i32) - 1.0
}

/// `rows` distinct rows of `cols` entries from [`CHOICES`], none all-zero,
/// row-major. Fails when there are not that many distinct non-zero rows.
pub fn separable_rows(rng: &mut Rng, rows: usize, cols: usize) -> Result<Vec<f64>> {
    if !separable(rows, cols) {
        return Err(Error::arg("teacher", format!("{rows} distinct non-zero rows of {cols} entries from {CHOICES:?} do not exist")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rows * cols);
    while seen.len() < rows {
        let code: Vec<usize> = (0..cols).map(|_| rng.below(CHOICES.len())).collect();
        if code.iter().any(|&c| CHOICES[c] != 0.0) && seen.insert(code.clone()) {
            out.extend(code.iter().map(|&c| CHOICES[c]));
        }
    }
    Ok(out)
}

/// One affine layer held on the host: `w` is outputs×inputs, row-major
/// (PyTorch's layout), `b` has one entry per output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f64>,
    pub b: Vec<f64>,
}

impl Dense {
    /// Scales every row together with its bias to unit norm; a zero row stays zero.
    pub fn unit_rows(&mut self) {
        for (row, b) in self.w.chunks_exact_mut(self.inputs).zip(&mut self.b) {
            let norm = (row.iter().map(|v| v * v).sum::<f64>() + *b * *b).sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
                *b /= norm;
            }
        }
    }

    /// `x·Wᵀ + b` on `tape` (no gradient: the teacher's outputs are targets).
    pub fn apply<B: Backend>(&self, tape: &mut Tape<B>, x: Var) -> Result<Var> {
        let be = tape.backend().clone();
        let w = tape.constant(Tensor::from_f64s(&be, &[self.outputs, self.inputs], self.w.iter().copied())?);
        let b = tape.constant(Tensor::from_f64s(&be, &[self.outputs], self.b.iter().copied())?);
        tape.linear(x, w, Some(b))
    }
}

/// A net's post-ReLU hidden activations, bottom first, and its output.
pub struct Activations {
    pub hidden: Vec<Var>,
    pub output: Var,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Teacher {
    /// The hidden layers, then the (linear) output layer.
    pub layers: Vec<Dense>,
}

impl Teacher {
    /// `sizes` = [input, hidden…, output]. Weights from [`separable_rows`],
    /// biases U(±0.5), then every row with its bias scaled to unit norm.
    pub fn new(seed: u64, sizes: &[usize]) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::arg("teacher", format!("layer sizes {sizes:?}: need at least an input and an output, none zero")));
        }
        let mut rng = Rng::named(seed, "luckmatters/teacher");
        let mut layers = Vec::new();
        for pair in sizes.windows(2) {
            let (inputs, outputs) = (pair[0], pair[1]);
            let w = separable_rows(&mut rng, outputs, inputs)?;
            let b = (0..outputs).map(|_| rng.uniform_in(-0.5, 0.5)).collect();
            let mut layer = Dense { inputs, outputs, w, b };
            layer.unit_rows();
            layers.push(layer);
        }
        Ok(Teacher { layers })
    }

    /// Widths of the hidden layers.
    pub fn hidden_widths(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1].iter().map(|l| l.outputs).collect()
    }

    /// Forward pass of `x` (N×input) recorded on `tape`: ReLU after every
    /// hidden layer, a linear output.
    pub fn forward<B: Backend>(&self, tape: &mut Tape<B>, x: Var) -> Result<Activations> {
        let Some((last, hidden_layers)) = self.layers.split_last() else {
            return Err(Error::arg("teacher", "has no layers"));
        };
        let mut h = x;
        let mut hidden = Vec::with_capacity(hidden_layers.len());
        for layer in hidden_layers {
            let pre = layer.apply(tape, h)?;
            h = tape.relu(pre)?;
            hidden.push(h);
        }
        let output = last.apply(tape, h)?;
        Ok(Activations { hidden, output })
    }
}
