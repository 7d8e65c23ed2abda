//! The paper's multilayer perceptrons: `depth` linear layers, ReLU between
//! them, optionally batch norm between each hidden linear and its ReLU.

use super::Model;
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Draws, Init, Linear, Weights};
use crate::param::ParamStore;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpConfig {
    pub inputs: usize,
    /// Number of linear layers, the output layer included.
    pub depth: usize,
    pub width: usize,
    pub classes: usize,
    pub bn: bool,
    pub init: Init,
    pub bn_momentum: f64,
}

struct Hidden {
    linear: Linear,
    bn: Option<BatchNorm>,
}

pub struct Mlp<B: Backend> {
    config: MlpConfig,
    hidden: Vec<Hidden>,
    output: Linear,
    store: ParamStore<B>,
}

impl<B: Backend> Mlp<B> {
    /// The net with its weights drawn from `seed`, or zero (see [`Weights`]).
    pub fn new(backend: &B, config: MlpConfig, seed: u64, weights: Weights) -> Result<Self> {
        if config.depth < 2 {
            return Err(Error::arg("--depth", format!("{} linear layers; an MLP needs at least 2", config.depth)));
        }
        if config.width == 0 {
            return Err(Error::arg("--width", "must be at least 1"));
        }
        // All layers together, before the first is allocated.
        crate::size::elements("the hidden layers' weights", &[config.depth - 1, config.width, config.width], "--depth or --width")?;
        let mut draws = Draws::new(seed, weights);
        let mut store = ParamStore::default();
        let mut hidden = Vec::new();
        let mut fan_in = config.inputs;
        for k in 1..config.depth {
            // With BN the bias is redundant (β plays its part), as in the paper's nets.
            let linear = Linear::new(
                &mut store,
                backend,
                &format!("layers.{}", k - 1),
                fan_in,
                config.width,
                !config.bn,
                config.init,
                k,
                &mut draws,
            )?;
            let bn = config
                .bn
                .then(|| BatchNorm::new(&mut store, backend, &format!("bns.{}", k - 1), config.width, k, config.bn_momentum))
                .transpose()?;
            hidden.push(Hidden { linear, bn });
            fan_in = config.width;
        }
        let output = Linear::new(&mut store, backend, "output", fan_in, config.classes, true, config.init, config.depth, &mut draws)?;
        Ok(Mlp { config, hidden, output, store })
    }

    pub fn config(&self) -> &MlpConfig {
        &self.config
    }
}

impl<B: Backend> Model<B> for Mlp<B> {
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "mlp {}×{} {} ({} init, {} parameters)",
            c.depth,
            c.width,
            if c.bn { "bn" } else { "plain" },
            c.init.name(),
            self.store.count()
        )
    }

    fn store(&self) -> &ParamStore<B> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.store
    }

    fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Var> {
        let (n, d) = tape.value(x).rows_cols();
        if d != self.config.inputs {
            return Err(Error::shape("mlp", format!("input has {d} features, the model expects {}", self.config.inputs)));
        }
        let mut h = tape.reshape(x, &[n, d])?;
        for layer in &self.hidden {
            let z = layer.linear.forward(tape, &self.store, h)?;
            h = match &layer.bn {
                Some(bn) => bn.forward_relu(tape, &mut self.store, z, train)?,
                None => tape.relu(z)?,
            };
            // No backward rule reads the pre-activation (a probe keeps its
            // own), so its buffer goes back to the allocator while still in
            // cache, for the next layer's product.
            tape.release(z);
        }
        self.output.forward(tape, &self.store, h)
    }
}
