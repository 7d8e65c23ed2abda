//! ReLU, alone or on a sum. Backward needs only the output's sign, so it
//! keeps the output (which the next layer holds anyway) rather than a copy
//! of the input.

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

    /// `relu(a + b)`: a post-activation residual block's output, the sum
    /// never stored. Both inputs get the ReLU's gradient.
    pub fn add_relu(&mut self, a: Var, b: Var) -> Result<Var> {
        let shape = self.same_shape("add_relu", a, b)?;
        let be = self.backend().clone();
        let y = Tensor::new(&be, &shape, be.add_relu(self.value(a).buf(), self.value(b).buf())?)?;
        let saved = y.clone();
        Ok(self.push(
            y,
            vec![a, b],
            Box::new(move |be, g| {
                let g = Tensor::new(be, g.shape(), be.relu_backward(g.buf(), saved.buf())?)?;
                Ok(vec![Some(g.clone()), Some(g)])
            }),
        ))
    }
}
