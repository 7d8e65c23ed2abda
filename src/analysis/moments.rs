//! Per-layer second moments, accumulated on the backend's device.
//!
//! Scale convention: the tape holds ∂L/∂h for the batch-mean loss, i.e.
//! g_i/N for the per-example gradient g_i = ∂ℓ_i/∂h. So one batch adds
//! N²·GᵀG = Σ_i g_i g_iᵀ to the Σ∇h sum, and Σ∇h = (1/ΣN)·Σ_i g_i g_iᵀ.

use crate::autograd::Probe;
use crate::backend::{Backend, ChannelShape};
use crate::error::{Error, Result};

/// Σ_i v_i v_iᵀ (lower triangle) and Σ_i v_i for one family of vectors.
struct Moment<B: Backend> {
    dim: usize,
    outer: B::Buf,
    sum: B::Buf,
}

impl<B: Backend> Moment<B> {
    fn new(backend: &B, dim: usize) -> Result<Self> {
        Ok(Moment { dim, outer: backend.zeros(dim * dim)?, sum: backend.zeros(dim)? })
    }

    /// Adds the rows of a `rows × dim` matrix, each scaled by `scale`.
    fn add(&mut self, backend: &B, rows: &B::Buf, n: usize, scale: f64, centered: bool) -> Result<()> {
        backend.gram_lower(&mut self.outer, rows, n, self.dim, scale * scale)?;
        if centered {
            let s = backend.channel_sum(rows, ChannelShape { outer: n, channels: self.dim, inner: 1 })?;
            backend.axpy(&mut self.sum, scale, &s)?;
        }
        Ok(())
    }

    /// E[v vᵀ] (minus μμᵀ when centred), lower triangle.
    fn finish(mut self, backend: &B, count: usize, centered: bool) -> Result<B::Buf> {
        let inv = 1.0 / count as f64;
        let mut m = backend.scale(&self.outer, inv)?;
        if centered {
            self.sum = backend.scale(&self.sum, inv)?;
            backend.gram_lower(&mut m, &self.sum, 1, self.dim, -1.0)?;
        }
        Ok(m)
    }
}

/// The Σx and Σ∇h accumulators of one layer.
pub struct LayerMoments<B: Backend> {
    pub layer: String,
    x: Moment<B>,
    grad: Moment<B>,
}

/// Σx and Σ∇h of every probed layer over one or more batches.
pub struct Moments<B: Backend> {
    backend: B,
    centered: bool,
    count: usize,
    layers: Vec<LayerMoments<B>>,
}

/// The finished matrices of one layer, lower triangles of `dim × dim`.
pub struct LayerMatrices<B: Backend> {
    pub layer: String,
    /// Examples averaged over.
    pub samples: usize,
    pub sigma_x: (B::Buf, usize),
    pub sigma_grad: (B::Buf, usize),
}

impl<B: Backend> Moments<B> {
    pub fn new(backend: &B, centered: bool) -> Self {
        Moments { backend: backend.clone(), centered, count: 0, layers: Vec::new() }
    }

    /// Adds one batch's probes (the same layers, in the same order, every batch).
    pub fn add(&mut self, probes: &[Probe<B>]) -> Result<()> {
        if self.layers.is_empty() {
            for p in probes {
                let (dx, dg) = (p.x.rows_cols().1, p.grad_h.rows_cols().1);
                self.layers.push(LayerMoments {
                    layer: p.layer.clone(),
                    x: Moment::new(&self.backend, dx)?,
                    grad: Moment::new(&self.backend, dg)?,
                });
            }
        }
        if probes.len() != self.layers.len() || probes.iter().zip(&self.layers).any(|(p, l)| p.layer != l.layer) {
            return Err(Error::Backend("analysis batches probed different layers".into()));
        }
        let n = probes.first().map_or(0, |p| p.x.rows_cols().0);
        for (p, l) in probes.iter().zip(&mut self.layers) {
            l.x.add(&self.backend, p.x.buf(), n, 1.0, self.centered)?;
            l.grad.add(&self.backend, p.grad_h.buf(), n, n as f64, self.centered)?;
        }
        self.count += n;
        Ok(())
    }

    pub fn finish(self) -> Result<Vec<LayerMatrices<B>>> {
        if self.count == 0 {
            return Err(Error::Backend("analysis saw no examples".into()));
        }
        let (be, count, centered) = (self.backend, self.count, self.centered);
        self.layers
            .into_iter()
            .map(|l| {
                let (dx, dg) = (l.x.dim, l.grad.dim);
                Ok(LayerMatrices {
                    layer: l.layer,
                    samples: count,
                    sigma_x: (l.x.finish(&be, count, centered)?, dx),
                    sigma_grad: (l.grad.finish(&be, count, centered)?, dg),
                })
            })
            .collect()
    }
}
