//! Matrix products: `matmul` and the affine map `linear`.

use super::tape::{Tape, Var};
use crate::backend::{Backend, ChannelShape, Gemm};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// `a[m×k] · b[k×n]`.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (av, bv) = (self.value(a).clone(), self.value(b).clone());
        let (&[m, k], &[k2, n]) = (av.shape(), bv.shape()) else {
            return Err(Error::shape("matmul", format!("{:?} · {:?}: both must be matrices", av.shape(), bv.shape())));
        };
        if k != k2 {
            return Err(Error::shape("matmul", format!("{:?} · {:?}", av.shape(), bv.shape())));
        }
        let be = self.backend().clone();
        let c = be.matmul(av.buf(), bv.buf(), Gemm::new(m, n, k, false, false))?;
        let out = Tensor::new(&be, &[m, n], c)?;
        let (need_a, need_b) = (self.requires_grad(a), self.requires_grad(b));
        Ok(self.push(
            out,
            vec![a, b],
            Box::new(move |be, g| {
                // dA = G·Bᵀ, dB = Aᵀ·G
                let da = need_a.then(|| product(be, g, &bv, &[m, k], Gemm::new(m, k, n, false, true))).transpose()?;
                let db = need_b.then(|| product(be, &av, g, &[k, n], Gemm::new(k, n, m, true, false))).transpose()?;
                Ok(vec![da, db])
            }),
        ))
    }

    /// `h = x·Wᵀ + b` with `x` N×in, `W` out×in (PyTorch's layout), `b` of length out.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xv, wv) = (self.value(x).clone(), self.value(w).clone());
        let (n, k) = xv.rows_cols();
        let &[out, k2] = wv.shape() else {
            return Err(Error::shape("linear", format!("weight must be a matrix, got {:?}", wv.shape())));
        };
        if k != k2 {
            return Err(Error::shape("linear", format!("input {:?} does not fit weight {:?}", xv.shape(), wv.shape())));
        }
        let be = self.backend().clone();
        let s = ChannelShape { outer: n, channels: out, inner: 1 };
        let mut h = be.matmul(xv.buf(), wv.buf(), Gemm::new(n, out, k, false, true))?;
        if let Some(b) = b {
            let bv = self.value(b);
            if bv.numel() != out {
                return Err(Error::shape("linear", format!("bias {:?} for {out} outputs", bv.shape())));
            }
            h = be.add_channel_bias(&h, bv.buf(), s)?;
        }
        let out_t = Tensor::new(&be, &[n, out], h)?;
        let x_shape = xv.shape().to_vec();
        let (need_x, need_w) = (self.requires_grad(x), self.requires_grad(w));
        let need_b = b.is_some_and(|b| self.requires_grad(b));
        let mut parents = vec![x, w];
        parents.extend(b);
        let has_bias = b.is_some();
        Ok(self.push(
            out_t,
            parents,
            Box::new(move |be, g| {
                // dx = G·W, dW = Gᵀ·x, db = Σ_rows G
                let dx = need_x.then(|| product(be, g, &wv, &x_shape, Gemm::new(n, k, out, false, false))).transpose()?;
                let dw = need_w.then(|| product(be, g, &xv, &[out, k], Gemm::new(out, k, n, true, false))).transpose()?;
                let mut grads = vec![dx, dw];
                if has_bias {
                    let db = need_b.then(|| Tensor::new(be, &[out], be.channel_sum(g.buf(), s)?)).transpose()?;
                    grads.push(db);
                }
                Ok(grads)
            }),
        ))
    }
}

/// `op(a)·op(b)` into a fresh tensor of `shape`.
fn product<B: Backend>(be: &B, a: &Tensor<B>, b: &Tensor<B>, shape: &[usize], g: Gemm) -> Result<Tensor<B>> {
    Tensor::new(be, shape, be.matmul(a.buf(), b.buf(), g)?)
}
