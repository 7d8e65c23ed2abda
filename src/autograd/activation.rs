//! ReLU. Backward needs only the output's sign, so it keeps the output (which
//! the next layer holds anyway) rather than a copy of the input.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let be = self.backend().clone();
        let xv = self.value(x);
        let y = Tensor::new(&be, xv.shape(), be.relu(xv.buf())?)?;
        let saved = y.clone();
        Ok(self.push(
            y,
            vec![x],
            Box::new(move |be, g| Ok(vec![Some(Tensor::new(be, g.shape(), be.relu_backward(g.buf(), saved.buf())?)?)])),
        ))
    }
}
