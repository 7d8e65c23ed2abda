//! The seam between the engine and the hardware.
//!
//! [`Backend`] is the whole op set a device must provide. Tensors, autograd,
//! layers, optimisers and analysis call only these methods, so the same model
//! code runs on the CPU ([`cpu::Cpu`]) and on CUDA. Buffers are flat; shapes
//! live one level up, in [`crate::tensor::Tensor`].

mod checks;
pub mod cpu;
pub mod cuda;
mod device;
mod peaks;
mod window;

pub use device::Device;
pub use peaks::Peaks;
pub use window::{window_out, Window};

use crate::error::Result;
use crate::scalar::Scalar;
use std::fmt::Debug;

/// A row-major GEMM: `C[m×n] = alpha · op(A) · op(B) + beta · C`, where `op(A)`
/// is m×k (A stored k×m when `trans_a`) and `op(B)` is k×n.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f64,
    pub beta: f64,
}

impl Gemm {
    /// `C = op(A)·op(B)`, overwriting C.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        Gemm { m, n, k, trans_a, trans_b, alpha: 1.0, beta: 0.0 }
    }
}

/// Layout of a per-channel op (bias, batch norm): `outer × channels × inner`.
/// A feature matrix N×C is `(N, C, 1)`; an NCHW activation is `(N, C, H·W)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelShape {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl ChannelShape {
    /// Elements in all: a shape's size, never asked whether it is empty.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }
    /// Elements that share one channel.
    pub fn per_channel(&self) -> usize {
        self.outer * self.inner
    }
}

/// What a training-mode batch norm returns besides its output: the batch
/// statistics backward needs and the running averages are updated from.
#[derive(Clone, Debug)]
pub struct BatchStats<Buf> {
    pub mean: Buf,
    /// Biased (population) variance of the batch.
    pub var: Buf,
    pub inv_std: Buf,
}

/// One update `acc[cols×cols] += alpha·XᵀX` of [`Backend::gram_lower_many`],
/// for a row-major `rows×cols` X.
pub struct GramJob<'a, Buf: ?Sized> {
    pub acc: &'a mut Buf,
    pub x: &'a Buf,
    pub rows: usize,
    pub cols: usize,
    pub alpha: f64,
}

/// SGD with momentum and L2 weight decay, PyTorch's convention:
/// `v ← μv + (g + λw)`, step along `v` (or `g + λw + μv` with Nesterov).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// Adam with L2 weight decay added to the gradient; `step` counts from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: u64,
}

/// The op set every device implements.
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    type Elem: Scalar;
    type Buf: Clone + Debug + Send + Sync;

    fn device(&self) -> Device;
    /// The bytes of memory of its own the device has, where its buffers
    /// live; `None` for one whose buffers live in the host's memory.
    fn own_memory(&self) -> Option<usize> {
        None
    }

    // ---- memory ----
    fn len(&self, buf: &Self::Buf) -> usize;
    fn full(&self, len: usize, value: f64) -> Result<Self::Buf>;
    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        self.full(len, 0.0)
    }
    fn upload(&self, host: &[Self::Elem]) -> Result<Self::Buf>;
    /// [`Backend::upload`] of values the caller is done with: a backend
    /// whose buffers live on the host keeps them as they are, uncopied.
    fn upload_owned(&self, host: Vec<Self::Elem>) -> Result<Self::Buf> {
        self.upload(&host)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::Elem>>;
    /// Overwrites `buf` with the values `fill(start, chunk)` writes into
    /// consecutive chunks of it, in place: a device with memory of its own
    /// stages one chunk at a time, so the host never holds the buffer whole.
    fn overwrite(&self, buf: &mut Self::Buf, fill: &mut dyn FnMut(usize, &mut [Self::Elem])) -> Result<()>;

    // ---- dense linear algebra ----
    /// `C = alpha·op(A)·op(B) + beta·C`, accumulating into an existing `c`.
    fn gemm(&self, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf, g: Gemm) -> Result<()>;
    /// `alpha·op(A)·op(B)` into a new buffer (`g.beta` is ignored).
    fn matmul(&self, a: &Self::Buf, b: &Self::Buf, g: Gemm) -> Result<Self::Buf>;

    // ---- element-wise ----
    fn add(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    fn sub(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    fn mul(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    fn scale(&self, a: &Self::Buf, s: f64) -> Result<Self::Buf>;
    /// `y ← y + alpha·x`, in place (gradient accumulation, running averages).
    fn axpy(&self, y: &mut Self::Buf, alpha: f64, x: &Self::Buf) -> Result<()>;
    fn relu(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// `relu(a + b)`, a residual block's output, rounded as [`Backend::add`]
    /// then [`Backend::relu`]; a device may do it in one pass.
    fn add_relu(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf> {
        self.relu(&self.add(a, b)?)
    }
    /// `grad · [y > 0]`, from the ReLU's output `y`.
    fn relu_backward(&self, grad: &Self::Buf, y: &Self::Buf) -> Result<Self::Buf>;
    /// A dropout mask: 0 with probability `p`, else `1/(1-p)`; element i draws
    /// from [`crate::rng::hash3`]`(seed, stream, i)`, the same on every device.
    fn dropout_mask(&self, len: usize, p: f64, seed: u64, stream: u64) -> Result<Self::Buf>;

    // ---- per-channel ----
    /// `x + bias[c]` broadcast over outer and inner.
    fn add_channel_bias(&self, x: &Self::Buf, bias: &Self::Buf, s: ChannelShape) -> Result<Self::Buf>;
    /// Sum over outer and inner for each channel (a bias gradient).
    fn channel_sum(&self, x: &Self::Buf, s: ChannelShape) -> Result<Self::Buf>;
    fn batch_norm_train(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(Self::Buf, BatchStats<Self::Buf>)>;
    /// `relu(batch_norm_train(x) + z)`, or `relu(batch_norm_train(x))`
    /// without `z`, rounded as those ops: a batch norm feeding a ReLU, or a
    /// post-activation residual block's last batch norm, shortcut sum and
    /// ReLU. A device may do it in one pass.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train_relu(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        z: Option<&Self::Buf>,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(Self::Buf, BatchStats<Self::Buf>)> {
        let (y, stats) = self.batch_norm_train(x, gamma, beta, s, eps)?;
        let y = match z {
            Some(z) => self.add_relu(&y, z)?,
            None => self.relu(&y)?,
        };
        Ok((y, stats))
    }
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_eval(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        mean: &Self::Buf,
        var: &Self::Buf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<Self::Buf>;
    /// Backward of a training-mode batch norm: `(dx, dgamma, dbeta)`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        inv_std: &Self::Buf,
        s: ChannelShape,
    ) -> Result<(Self::Buf, Self::Buf, Self::Buf)>;

    /// `[outer, C, inner]` → `[outer, before + C + after, inner]`, the new
    /// channels zero (the type-A shortcut's extra channels).
    fn pad_channels(&self, x: &Self::Buf, s: ChannelShape, before: usize, after: usize) -> Result<Self::Buf>;
    /// Channels `start..start + len` of `[outer, C, inner]` (the adjoint of `pad_channels`).
    fn narrow_channels(&self, x: &Self::Buf, s: ChannelShape, start: usize, len: usize) -> Result<Self::Buf>;

    // ---- convolution and pooling over NCHW, geometry in a [`Window`] ----
    /// Cross-correlation of `x` with `w[c_out, c, kh, kw]` (no bias):
    /// `[n, c_out, oh, ow]`.
    fn conv2d(&self, x: &Self::Buf, w: &Self::Buf, g: Window, c_out: usize) -> Result<Self::Buf>;
    /// `∂L/∂x` of [`Backend::conv2d`] from `dy = ∂L/∂y`.
    fn conv2d_backward_data(&self, dy: &Self::Buf, w: &Self::Buf, g: Window, c_out: usize) -> Result<Self::Buf>;
    /// `∂L/∂w` of [`Backend::conv2d`] from `dy` and the input `x`.
    fn conv2d_backward_filter(&self, dy: &Self::Buf, x: &Self::Buf, g: Window, c_out: usize) -> Result<Self::Buf>;
    /// Maximum over each window; padding is never a candidate.
    fn max_pool2d(&self, x: &Self::Buf, g: Window) -> Result<Self::Buf>;
    /// Each output gradient to the first cell of its window holding the maximum `y`.
    fn max_pool2d_backward(&self, dy: &Self::Buf, x: &Self::Buf, y: &Self::Buf, g: Window) -> Result<Self::Buf>;
    /// Mean over each window with padding counted as zeros (PyTorch's
    /// default); a 1×1 window with stride `s` is the strided subsample.
    fn avg_pool2d(&self, x: &Self::Buf, g: Window) -> Result<Self::Buf>;
    fn avg_pool2d_backward(&self, dy: &Self::Buf, g: Window) -> Result<Self::Buf>;

    // ---- reductions (to the host) ----
    fn sum(&self, x: &Self::Buf) -> Result<f64>;
    fn dot(&self, a: &Self::Buf, b: &Self::Buf) -> Result<f64>;

    // ---- loss ----
    /// Row-wise softmax of `rows × classes` logits, and the summed negative
    /// log-likelihood of `labels`.
    fn softmax_xent(&self, logits: &Self::Buf, labels: &[u32], classes: usize) -> Result<(Self::Buf, f64)>;
    /// `scale · (softmax − onehot(labels))`.
    fn softmax_xent_backward(&self, probs: &Self::Buf, labels: &[u32], classes: usize, scale: f64) -> Result<Self::Buf>;

    // ==== Analysis ops ====
    // What the conditioning analysis alone asks of a device: Gram matrices
    // (Σx, Σ∇h and the weights'), their eigenvalues, ReLU activity and the
    // Fisher's sampled labels. Training never calls them; a new backend can
    // train before it has them.
    /// `acc[cols×cols] += alpha·XᵀX` for a row-major `rows×cols` X, on the
    /// lower triangle (row-major, `j ≤ i`): half the work of a GEMM, and all
    /// [`Backend::eigvalsh`] reads. Entries above the diagonal mean nothing:
    /// a backend may leave them or write them (the CPU's unfolded patch Gram
    /// inside its diagonal blocks, the CUDA patch Gram's GEMM everywhere).
    fn gram_lower(&self, acc: &mut Self::Buf, x: &Self::Buf, rows: usize, cols: usize, alpha: f64) -> Result<()>;
    /// [`Backend::gram_lower`] of independent jobs, which a backend may run
    /// side by side; each result is as if its job ran alone.
    fn gram_lower_many(&self, jobs: &mut [GramJob<'_, Self::Buf>]) -> Result<()> {
        jobs.iter_mut().try_for_each(|j| self.gram_lower(j.acc, j.x, j.rows, j.cols, j.alpha))
    }
    /// [`Backend::gram_lower`] over the patch matrix of an NCHW `x` under
    /// window `g` (rows: image and output position; columns: `c·kh·kw`), a
    /// conv layer's Σx. A 1×1 window over an output-gradient gives Σ∇h.
    fn gram_lower_patches(&self, acc: &mut Self::Buf, x: &Self::Buf, g: Window, alpha: f64) -> Result<()>;
    /// Eigenvalues, in descending order, of each symmetric `n×n` matrix given
    /// by its lower triangle. Only the eigenvalues leave the device. Solved
    /// after scaling by the largest |entry|, so degenerate and tiny-scale PSD
    /// matrices do not fail: in f64, except that the CPU reduces an f32
    /// matrix to tridiagonal form in f32 (an error far inside the rank
    /// tolerance, see cpu/eigen.rs); a matrix with a non-finite entry
    /// yields NaNs (a diverged run is recorded, not aborted).
    fn eigvalsh(&self, mats: &[(&Self::Buf, usize)]) -> Result<Vec<Vec<f64>>>;
    /// Per column of a row-major `rows×cols` matrix, how many entries are
    /// positive (a ReLU unit with none is dead, one with all is full).
    fn count_positive(&self, x: &Self::Buf, rows: usize, cols: usize) -> Result<Vec<u32>>;
    /// One class per row of `rows×classes` logits, drawn from the row's
    /// softmax by inverse CDF of the uniform [`crate::rng::hash3`]`(seed,
    /// stream, row)`: the Fisher's labels sampled from the model, the same on
    /// every device.
    fn sample_labels(&self, logits: &Self::Buf, classes: usize, seed: u64, stream: u64) -> Result<Vec<u32>>;

    // ==== Optimiser updates ====
    // One fused, in-place update of a parameter and its optimiser state per
    // call; the optimisers hold the hyper-parameters.
    fn sgd_step(&self, param: &mut Self::Buf, grad: &Self::Buf, velocity: &mut Self::Buf, h: &SgdHyper) -> Result<()>;
    fn adam_step(&self, param: &mut Self::Buf, grad: &Self::Buf, m: &mut Self::Buf, v: &mut Self::Buf, h: &AdamHyper) -> Result<()>;
}
