//! A 2-D convolution layer (no bias, as in every ResNet), probed for
//! conditioning analysis with its window, so Σx is taken over patches.

use super::{Draws, Init, MODEL_SIZES};
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::{ParamId, ParamStore};
use crate::size;

pub struct Conv2d {
    pub name: String,
    pub weight: ParamId,
    pub stride: usize,
    pub pad: usize,
}

/// What a conv layer is: channels in and out, a square kernel, stride, padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2d {
    /// Weight `[c_out, c_in, k, k]` from `init` (fan-in `c_in·k·k`, fan-out `c_out·k·k`).
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        backend: &B,
        name: &str,
        spec: ConvSpec,
        init: Init,
        layer: usize,
        draws: &mut Draws,
    ) -> Result<Self> {
        let ConvSpec { c_in, c_out, k, stride, pad } = spec;
        size::elements(&format!("{name}.weight"), &[c_out, c_in, k, k], MODEL_SIZES)?;
        let w = init.weights(backend, &[c_out, c_in, k, k], draws, c_in * k * k, c_out * k * k)?;
        let weight = store.add(format!("{name}.weight"), w, layer);
        Ok(Conv2d { name: name.to_string(), weight, stride, pad })
    }

    pub fn forward<B: Backend>(&self, tape: &mut Tape<B>, store: &ParamStore<B>, x: Var) -> Result<Var> {
        let w = tape.param(store, self.weight);
        let (window, _) = tape.conv_window(x, w, self.stride, self.pad)?;
        let h = tape.conv2d(x, w, self.stride, self.pad)?;
        tape.probe(&self.name, self.weight, x, h, Some(window));
        Ok(h)
    }
}
