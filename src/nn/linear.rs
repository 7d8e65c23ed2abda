//! A fully connected layer, probed for conditioning analysis.

use super::{Draws, Init, MODEL_SIZES};
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::{ParamId, ParamStore};
use crate::size;
use crate::tensor::Tensor;

pub struct Linear {
    pub name: String,
    pub weight: ParamId,
    pub bias: Option<ParamId>,
}

impl Linear {
    /// Weight `out × in` from `init`, bias zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        store: &mut ParamStore<B>,
        backend: &B,
        name: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        layer: usize,
        draws: &mut Draws,
    ) -> Result<Self> {
        size::elements(&format!("{name}.weight"), &[outputs, inputs], MODEL_SIZES)?;
        let w = init.weights(backend, &[outputs, inputs], draws, inputs, outputs)?;
        let weight = store.add(format!("{name}.weight"), w, layer);
        let bias = bias
            .then(|| Ok::<_, crate::error::Error>(store.add(format!("{name}.bias"), Tensor::zeros(backend, &[outputs])?, layer)))
            .transpose()?;
        Ok(Linear { name: name.to_string(), weight, bias })
    }

    pub fn forward<B: Backend>(&self, tape: &mut Tape<B>, store: &ParamStore<B>, x: Var) -> Result<Var> {
        let w = tape.param(store, self.weight);
        let b = self.bias.map(|b| tape.param(store, b));
        let h = tape.linear(x, w, b)?;
        tape.probe(&self.name, self.weight, x, h, None);
        Ok(h)
    }
}
