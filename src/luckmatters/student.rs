//! The student: the teacher's architecture with every hidden layer
//! `node_multi` times wider, built from this crate's layers so it trains on
//! the tape like any other model.

use super::teacher::{Activations, Dense, Teacher};
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Draws, Init, Linear};
use crate::param::ParamStore;
use crate::rng::Rng;
use crate::tensor::Tensor;

struct Hidden {
    linear: Linear,
    bn: Option<BatchNorm>,
}

pub struct Student<B: Backend> {
    backend: B,
    hidden: Vec<Hidden>,
    output: Linear,
    store: ParamStore<B>,
}

impl<B: Backend> Student<B> {
    /// `sizes` = [input, hidden…, output] (already widened). PyTorch's default
    /// `nn.Linear` init, U(±1/√fan_in) for weights and biases, as the original
    /// used; with `bn`, a batch norm follows each hidden ReLU (the original's
    /// default placement).
    pub fn new(backend: &B, sizes: &[usize], bn: bool, seed: u64) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::arg("student", format!("layer sizes {sizes:?}: need at least an input and an output, none zero")));
        }
        let mut draws = Draws::from_rng(Rng::named(seed, "luckmatters/student"));
        let mut store = ParamStore::default();
        let mut linear = |store: &mut ParamStore<B>, name: &str, inputs: usize, outputs: usize, layer: usize| -> Result<Linear> {
            let l = Linear::new(store, backend, name, inputs, outputs, true, Init::UniformFanIn, layer, &mut draws)?;
            let a = 1.0 / (inputs as f64).sqrt();
            let b = draws.uniform(outputs, -a, a);
            if let Some(id) = l.bias {
                store.param_mut(id).value = Tensor::from_f64s(backend, &[outputs], b)?;
            }
            Ok(l)
        };
        let last = sizes.len() - 1;
        let mut hidden = Vec::with_capacity(last - 1);
        for k in 1..last {
            let lin = linear(&mut store, &format!("layers.{}", k - 1), sizes[k - 1], sizes[k], k)?;
            let bn = bn.then(|| BatchNorm::new(&mut store, backend, &format!("bns.{}", k - 1), sizes[k], k, 0.1)).transpose()?;
            hidden.push(Hidden { linear: lin, bn });
        }
        let output = linear(&mut store, "output", sizes[last - 1], sizes[last], last)?;
        Ok(Student { backend: backend.clone(), hidden, output, store })
    }

    pub fn store_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.store
    }

    fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.hidden.iter().map(|h| &h.linear).chain(std::iter::once(&self.output))
    }

    /// Layer `i`'s weight and bias (hidden layers from 0, then the output) on the host.
    pub fn layer(&self, i: usize) -> Result<Dense> {
        let l = self.linears().nth(i).ok_or_else(|| Error::arg("student", format!("has no layer {i}")))?;
        let w = self.store.value(l.weight);
        let &[outputs, inputs] = w.shape() else { return Err(Error::shape("student", format!("weight {:?}", w.shape()))) };
        let b = match l.bias {
            Some(id) => self.store.value(id).to_f64s(&self.backend)?,
            None => vec![0.0; outputs],
        };
        Ok(Dense { inputs, outputs, w: w.to_f64s(&self.backend)?, b })
    }

    /// Replaces layer `i`'s weight and bias; the shapes must match.
    pub fn set_layer(&mut self, i: usize, d: &Dense) -> Result<()> {
        let l = self.linears().nth(i).ok_or_else(|| Error::arg("student", format!("has no layer {i}")))?;
        let (wid, bid) = (l.weight, l.bias);
        if self.store.value(wid).shape() != [d.outputs, d.inputs] || d.w.len() != d.outputs * d.inputs || d.b.len() != d.outputs {
            return Err(Error::shape("student layer", format!("{:?} given {}×{}", self.store.value(wid).shape(), d.outputs, d.inputs)));
        }
        self.store.param_mut(wid).value = Tensor::from_f64s(&self.backend, &[d.outputs, d.inputs], d.w.iter().copied())?;
        if let Some(id) = bid {
            self.store.param_mut(id).value = Tensor::from_f64s(&self.backend, &[d.outputs], d.b.iter().copied())?;
        }
        Ok(())
    }

    /// Number of linear layers, the output included.
    pub fn depth(&self) -> usize {
        self.hidden.len() + 1
    }

    /// Starts the student at the teacher plus N(0, σ²) noise: every weight and
    /// bias is noise, and the teacher's rows are added into the first rows and
    /// columns of each layer (with `node_multi` > 1 the extra nodes start as
    /// pure noise, so the student's function starts close to the teacher's).
    pub fn start_at_teacher(&mut self, teacher: &Teacher, sigma: f64, seed: u64) -> Result<()> {
        if teacher.layers.len() != self.depth() {
            return Err(Error::arg("--perturb", format!("teacher has {} layers, student {}", teacher.layers.len(), self.depth())));
        }
        let mut rng = Rng::named(seed, "luckmatters/perturb");
        for (i, t) in teacher.layers.iter().enumerate() {
            let mut s = self.layer(i)?;
            if t.outputs > s.outputs || t.inputs > s.inputs {
                return Err(Error::arg("--perturb", format!("teacher layer {i} ({}×{}) exceeds the student's", t.outputs, t.inputs)));
            }
            s.w.iter_mut().chain(s.b.iter_mut()).for_each(|v| *v = sigma * rng.normal());
            for r in 0..t.outputs {
                for c in 0..t.inputs {
                    s.w[r * s.inputs + c] += t.w[r * t.inputs + c];
                }
                s.b[r] += t.b[r];
            }
            self.set_layer(i, &s)?;
        }
        Ok(())
    }

    /// Scales every row of every layer, with its bias, to unit norm.
    pub fn normalize_rows(&mut self) -> Result<()> {
        for i in 0..self.depth() {
            let mut d = self.layer(i)?;
            d.unit_rows();
            self.set_layer(i, &d)?;
        }
        Ok(())
    }

    /// Forward pass of `x` (N×input) on `tape`; `train` selects batch
    /// statistics (and updates the running averages) in the batch norms.
    /// The hidden activations returned are post-ReLU, before any batch norm.
    pub fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Activations> {
        let mut h = x;
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for layer in &self.hidden {
            let pre = layer.linear.forward(tape, &self.store, h)?;
            h = tape.relu(pre)?;
            hidden.push(h);
            if let Some(bn) = &layer.bn {
                h = bn.forward(tape, &mut self.store, h, train)?;
            }
        }
        let output = self.output.forward(tape, &self.store, h)?;
        Ok(Activations { hidden, output })
    }
}
