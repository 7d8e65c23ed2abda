//! Per-layer second moments, accumulated on the backend's device.
//!
//! Scale convention: the tape holds ∂L/∂h for the batch-mean loss, i.e.
//! g_i/N for the per-example gradient g_i = ∂ℓ_i/∂h. So one batch adds
//! N²·GᵀG = Σ_i g_i g_iᵀ to the Σ∇h sum, and Σ∇h = (1/ΣN)·Σ_i g_i g_iᵀ.
//!
//! A conv layer has one sample per spatial position of every example: Σx
//! over its input patches (`c·kh·kw`; or, by the old Torch code's
//! convention, the `c` channels at every input position), Σ∇h over the
//! `c_out` gradient vectors at every output position.

use crate::autograd::Probe;
use crate::backend::{Backend, ChannelShape, GramJob, Window};
use crate::error::{Error, Result};
use crate::param::ParamId;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// What a conv layer's Σx is taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConvStat {
    /// The im2col patch the filter sees (`C_in·kh·kw`), as the paper defines it.
    #[default]
    Patch,
    /// The `C_in` channels at each input position (the original Torch7 code).
    Channel,
}

/// How one probed tensor is read as samples.
#[derive(Clone, Copy, Debug)]
enum Samples {
    /// Each row of a `rows × dim` matrix.
    Rows { rows: usize },
    /// Each patch of an NCHW activation under a window.
    Patches(Window),
}

impl Samples {
    fn count(&self) -> usize {
        match self {
            Samples::Rows { rows } => *rows,
            Samples::Patches(g) => g.patches(),
        }
    }
}

/// Σ_i v_i v_iᵀ (lower triangle) and Σ_i v_i for one family of vectors.
struct Moment<B: Backend> {
    dim: usize,
    count: usize,
    outer: B::Buf,
    sum: B::Buf,
}

impl<B: Backend> Moment<B> {
    fn new(backend: &B, dim: usize) -> Result<Self> {
        Ok(Moment { dim, count: 0, outer: backend.zeros(dim * dim)?, sum: backend.zeros(dim)? })
    }

    /// Adds the samples of `t`, each scaled by `scale`: the Gram of a dense
    /// `t` joins `grams`, for the caller to run with the batch's others.
    fn add<'a>(
        &'a mut self,
        backend: &B,
        t: &'a Tensor<B>,
        samples: Samples,
        scale: f64,
        centered: bool,
        grams: &mut Vec<GramJob<'a, B::Buf>>,
    ) -> Result<()> {
        match samples {
            Samples::Rows { rows } => {
                if centered {
                    let s = backend.channel_sum(t.buf(), ChannelShape { outer: rows, channels: self.dim, inner: 1 })?;
                    backend.axpy(&mut self.sum, scale, &s)?;
                }
                grams.push(GramJob { acc: &mut self.outer, x: t.buf(), rows, cols: self.dim, alpha: scale * scale });
            }
            Samples::Patches(g) => {
                backend.gram_lower_patches(&mut self.outer, t.buf(), g, scale * scale)?;
                if centered {
                    // The patch sum is the filter gradient of an all-ones output gradient.
                    let ones = backend.full(g.patches(), 1.0)?;
                    let s = backend.conv2d_backward_filter(&ones, t.buf(), g, 1)?;
                    backend.axpy(&mut self.sum, scale, &s)?;
                }
            }
        }
        self.count += samples.count();
        Ok(())
    }

    /// E[v vᵀ] (minus μμᵀ when centred), lower triangle.
    fn finish(mut self, backend: &B, centered: bool) -> Result<B::Buf> {
        let inv = 1.0 / self.count as f64;
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
    weight: ParamId,
    x: Moment<B>,
    grad: Moment<B>,
}

/// Σx and Σ∇h of every probed layer over one or more batches.
pub struct Moments<B: Backend> {
    backend: B,
    centered: bool,
    conv_stat: ConvStat,
    layers: Vec<LayerMoments<B>>,
}

/// How a probe's input and output-gradient are read as samples, and their dimensions.
fn samples<B: Backend>(conv_stat: ConvStat, p: &Probe<B>) -> Result<((Samples, usize), (Samples, usize))> {
    let Some(g) = p.window else {
        let ((n, dx), (_, dg)) = (p.x.rows_cols(), p.grad_h.rows_cols());
        return Ok(((Samples::Rows { rows: n }, dx), (Samples::Rows { rows: n }, dg)));
    };
    let c_out = p.grad_h.channel_shape()?.channels;
    let x = match conv_stat {
        ConvStat::Patch => g,
        ConvStat::Channel => Window { kh: 1, kw: 1, stride: 1, pad: 0, ..g },
    };
    let grad = g.pointwise_over_output(c_out)?;
    Ok(((Samples::Patches(x), x.patch_len()), (Samples::Patches(grad), c_out)))
}

/// The elements of the Σx and Σ∇h an analysis holds for a layer whose
/// weight has `shape` (`[out, in]`, or `[c_out, c_in, kh, kw]`), as
/// `samples` reads its probe; 0 for a shape no probed layer has (a BN
/// scale, a bias), `None` past counting.
pub fn matrix_elements(shape: &[usize], conv_stat: ConvStat) -> Option<usize> {
    let (dx, dg) = match (shape, conv_stat) {
        (&[out, inputs], _) => (inputs, out),
        (&[c_out, c_in, kh, kw], ConvStat::Patch) => (c_in.checked_mul(kh)?.checked_mul(kw)?, c_out),
        (&[c_out, c_in, _, _], ConvStat::Channel) => (c_in, c_out),
        _ => return Some(0),
    };
    dx.checked_mul(dx)?.checked_add(dg.checked_mul(dg)?)
}

/// The finished matrices of one layer, lower triangles of `dim × dim`.
pub struct LayerMatrices<B: Backend> {
    pub layer: String,
    /// The layer's weight parameter.
    pub weight: ParamId,
    /// Samples Σx averages over (examples, or patches of a conv layer).
    pub samples_x: usize,
    /// Samples Σ∇h averages over (examples, or output positions).
    pub samples_grad: usize,
    pub sigma_x: (B::Buf, usize),
    pub sigma_grad: (B::Buf, usize),
}

impl<B: Backend> Moments<B> {
    pub fn new(backend: &B, centered: bool, conv_stat: ConvStat) -> Self {
        Moments { backend: backend.clone(), centered, conv_stat, layers: Vec::new() }
    }

    /// Adds one batch's probes (the same layers, in the same order, every batch).
    pub fn add(&mut self, probes: &[Probe<B>]) -> Result<()> {
        if self.layers.is_empty() {
            for p in probes {
                let ((_, dx), (_, dg)) = samples(self.conv_stat, p)?;
                self.layers.push(LayerMoments {
                    layer: p.layer.clone(),
                    weight: p.weight,
                    x: Moment::new(&self.backend, dx)?,
                    grad: Moment::new(&self.backend, dg)?,
                });
            }
        }
        if probes.len() != self.layers.len() || probes.iter().zip(&self.layers).any(|(p, l)| p.layer != l.layer) {
            return Err(Error::Backend("analysis batches probed different layers".into()));
        }
        let n = probes.first().map_or(0, |p| p.x.rows_cols().0);
        let (be, centered) = (&self.backend, self.centered);
        let mut grams = Vec::new();
        for (p, l) in probes.iter().zip(&mut self.layers) {
            let ((sx, _), (sg, _)) = samples(self.conv_stat, p)?;
            l.x.add(be, &p.x, sx, 1.0, centered, &mut grams)?;
            l.grad.add(be, &p.grad_h, sg, n as f64, centered, &mut grams)?;
        }
        be.gram_lower_many(&mut grams)
    }

    pub fn finish(self) -> Result<Vec<LayerMatrices<B>>> {
        if self.layers.is_empty() || self.layers.iter().any(|l| l.x.count == 0 || l.grad.count == 0) {
            return Err(Error::Backend("analysis saw no examples".into()));
        }
        let (be, centered) = (self.backend, self.centered);
        self.layers
            .into_iter()
            .map(|l| {
                let (dx, dg, samples_x, samples_grad) = (l.x.dim, l.grad.dim, l.x.count, l.grad.count);
                Ok(LayerMatrices {
                    layer: l.layer,
                    weight: l.weight,
                    samples_x,
                    samples_grad,
                    sigma_x: (l.x.finish(&be, centered)?, dx),
                    sigma_grad: (l.grad.finish(&be, centered)?, dg),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_elements_are_the_dims_the_probes_are_read_at() {
        assert_eq!(matrix_elements(&[10, 784], ConvStat::Patch), Some(784 * 784 + 10 * 10));
        assert_eq!(matrix_elements(&[64, 16, 3, 3], ConvStat::Patch), Some(144 * 144 + 64 * 64));
        assert_eq!(matrix_elements(&[64, 16, 3, 3], ConvStat::Channel), Some(16 * 16 + 64 * 64));
        assert_eq!(matrix_elements(&[64], ConvStat::Patch), Some(0));
        assert_eq!(matrix_elements(&[1, usize::MAX / 2], ConvStat::Patch), None);
    }
}
