//! Inverted dropout with a counter-based mask, so every device draws the same mask.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// Zeroes each element with probability `p` and scales the rest by 1/(1-p);
    /// the mask is a pure function of `(seed, stream)`.
    pub fn dropout(&mut self, x: Var, p: f64, seed: u64, stream: u64) -> Result<Var> {
        let be = self.backend().clone();
        let xv = self.value(x);
        let mask = be.dropout_mask(xv.numel(), p, seed, stream)?;
        let y = Tensor::new(&be, xv.shape(), be.mul(xv.buf(), &mask)?)?;
        Ok(self.push(y, vec![x], Box::new(move |be, g| Ok(vec![Some(Tensor::new(be, g.shape(), be.mul(g.buf(), &mask)?)?)]))))
    }
}
