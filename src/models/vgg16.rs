//! VGG-16 with batch norm for 32×32 images (Fig. A12's net): thirteen 3×3
//! convs (conv → BN → ReLU) in five stages closed by 2×2 max-pools, then two
//! 512-unit hidden linear layers (linear → BN → ReLU) and the classifier,
//! sixteen weight layers numbered 1–16 in forward order for `--freeze`.

use super::Model;
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Conv2d, ConvSpec, Draws, Init, Linear, Weights};
use crate::param::ParamStore;

/// The published first-stage width.
pub const WIDTH: usize = 64;
/// Conv widths per stage in first-stage widths; each stage ends in a max-pool.
const STAGES: [&[usize]; 5] = [&[1, 1], &[2, 2], &[4, 4, 4], &[8, 8, 8], &[8, 8, 8]];
/// The hidden linear layers' width, in first-stage widths.
const HIDDEN: usize = 8;

pub struct Vgg16<B: Backend> {
    in_channels: usize,
    width: usize,
    /// Per stage: its (conv, BN) pairs.
    stages: Vec<Vec<(Conv2d, BatchNorm)>>,
    hidden: Vec<(Linear, BatchNorm)>,
    output: Linear,
    store: ParamStore<B>,
}

impl<B: Backend> Vgg16<B> {
    /// The net with `width` first-stage channels (the published 64 gives 512 at
    /// the top), its weights drawn from `seed` or zero (see [`Weights`]).
    pub fn new(backend: &B, in_channels: usize, width: usize, classes: usize, seed: u64, weights: Weights) -> Result<Self> {
        if width == 0 {
            return Err(Error::arg("--base-width", "must be at least 1"));
        }
        let mut draws = Draws::new(seed, weights);
        let mut store = ParamStore::default();
        let mut layer = 0;
        let mut c_in = in_channels;
        let mut stages = Vec::new();
        for (s, widths) in STAGES.iter().enumerate() {
            let mut convs = Vec::new();
            for (i, &m) in widths.iter().enumerate() {
                let c_out = m * width;
                layer += 1;
                let name = format!("features.{s}.{i}");
                let spec = ConvSpec { c_in, c_out, k: 3, stride: 1, pad: 1 };
                let conv = Conv2d::new(&mut store, backend, &format!("{name}.conv"), spec, Init::HeFanOut, layer, &mut draws)?;
                let bn = BatchNorm::new(&mut store, backend, &format!("{name}.bn"), c_out, layer, 0.1)?;
                convs.push((conv, bn));
                c_in = c_out;
            }
            stages.push(convs);
        }
        let mut hidden = Vec::new();
        for i in 0..2 {
            layer += 1;
            let name = format!("classifier.{i}");
            // BN follows, so a bias would only duplicate its β.
            let linear = Linear::new(&mut store, backend, &name, c_in, HIDDEN * width, false, Init::UniformFanIn, layer, &mut draws)?;
            hidden.push((linear, BatchNorm::new(&mut store, backend, &format!("{name}.bn"), HIDDEN * width, layer, 0.1)?));
            c_in = HIDDEN * width;
        }
        layer += 1;
        let output = Linear::new(&mut store, backend, "classifier.out", c_in, classes, true, Init::UniformFanIn, layer, &mut draws)?;
        Ok(Vgg16 { in_channels, width, stages, hidden, output, store })
    }
}

impl<B: Backend> Model<B> for Vgg16<B> {
    fn describe(&self) -> String {
        format!("vgg16 (bn, base width {}, {} parameters)", self.width, self.store.count())
    }

    fn store(&self) -> &ParamStore<B> {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.store
    }

    fn forward(&mut self, tape: &mut Tape<B>, x: Var, train: bool) -> Result<Var> {
        let shape = tape.shape(x).to_vec();
        // Five halvings must leave at least one pixel.
        if shape.len() != 4 || shape[1] != self.in_channels || shape[2] < 32 || shape[3] < 32 {
            return Err(Error::shape("vgg16", format!("input {shape:?}; expected [N, {}, H ≥ 32, W ≥ 32]", self.in_channels)));
        }
        let store = &mut self.store;
        let mut h = x;
        for stage in &self.stages {
            for (conv, bn) in stage {
                let c = conv.forward(tape, store, h)?;
                h = bn.forward_relu(tape, store, c, train)?;
                tape.release(c);
            }
            h = tape.max_pool2d(h, 2, 2, 0)?;
        }
        // The last pool leaves 1×1 at 32×32; averaging also takes larger inputs.
        h = tape.global_avg_pool(h)?;
        for (linear, bn) in &self.hidden {
            let l = linear.forward(tape, store, h)?;
            h = bn.forward_relu(tape, store, l, train)?;
        }
        self.output.forward(tape, store, h)
    }
}
