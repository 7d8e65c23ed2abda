//! Losses and reductions to a scalar: cross-entropy, MSE, mean, sum.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// Mean over the batch of `−log softmax(logits)[label]`; logits are N×classes.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[u32]) -> Result<Var> {
        let be = self.backend().clone();
        let (n, classes) = self.value(logits).rows_cols();
        if labels.len() != n {
            return Err(Error::shape("cross_entropy", format!("{} labels for {n} rows", labels.len())));
        }
        let (probs, nll) = be.softmax_xent(self.value(logits).buf(), labels, classes)?;
        let loss = Tensor::from_f64s(&be, &[], [nll / n as f64])?;
        let labels = labels.to_vec();
        let shape = self.shape(logits).to_vec();
        Ok(self.push(
            loss,
            vec![logits],
            Box::new(move |be, g| {
                let scale = g.scalar(be)? / n as f64;
                Ok(vec![Some(Tensor::new(be, &shape, be.softmax_xent_backward(&probs, &labels, classes, scale)?)?)])
            }),
        ))
    }

    /// Mean over all elements of `(pred − target)²`.
    pub fn mse(&mut self, pred: Var, target: Var) -> Result<Var> {
        if self.shape(pred) != self.shape(target) {
            return Err(Error::shape("mse", format!("prediction {:?}, target {:?}", self.shape(pred), self.shape(target))));
        }
        let d = self.sub(pred, target)?;
        let sq = self.mul(d, d)?;
        self.mean(sq)
    }

    pub fn sum(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, 1.0)
    }

    pub fn mean(&mut self, x: Var) -> Result<Var> {
        let n = self.value(x).numel();
        self.reduce(x, 1.0 / n.max(1) as f64)
    }

    /// `scale · Σ x` as a scalar; backward broadcasts `scale · g`.
    fn reduce(&mut self, x: Var, scale: f64) -> Result<Var> {
        let be = self.backend().clone();
        let xv = self.value(x);
        let total = Tensor::from_f64s(&be, &[], [scale * be.sum(xv.buf())?])?;
        let shape = xv.shape().to_vec();
        Ok(self.push(total, vec![x], Box::new(move |be, g| Ok(vec![Some(Tensor::full(be, &shape, scale * g.scalar(be)?)?)]))))
    }
}
