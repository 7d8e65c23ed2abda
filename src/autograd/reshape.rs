//! Reshape (flatten is a reshape): the buffer is shared, only the shape changes.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend> Tape<B> {
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x).reshape(shape)?;
        let x_shape = self.shape(x).to_vec();
        Ok(self.push(y, vec![x], Box::new(move |_, g| Ok(vec![Some(g.reshape(&x_shape)?)]))))
    }
}
