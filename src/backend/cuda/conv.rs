//! Convolution on the CUDA backend, as the CPU does it (src/backend/cpu/conv.rs):
//! per image, the patch matrix `c·kh·kw × oh·ow` (kernels/im2col.cu) times the
//! filter `[c_out, c·kh·kw]` with cuBLAS, a chunk of images per strided-batched
//! SGEMM that shares the filter (batch stride 0); backward-data is the
//! transposed product folded back by col2im; backward-filter one GEMM per
//! chunk accumulating into `dw`, over the chunk's patches and `dy`, both
//! unfolded with their rows running across images. The forward and
//! backward-data products skip the unfolding of a pointwise window. With the
//! `cudnn` feature cuDNN runs the three instead (src/backend/cuda/dnn.rs), and
//! this path remains for shapes where no cuDNN algorithm fits its workspace cap.
//! Also the conv layer's patch Σx: a chunk of images unfolded with the rows
//! running across images, then one cuBLAS SGEMM per chunk.
//!
//! The GEMM derivations and unfoldings are pure functions, checked on the CPU by the tests.

use super::blas::Batch;
use crate::backend::{Gemm, Window};
use crate::error::{Error, Result};

/// What runs the convolutions: cuDNN (falling back per shape to im2col +
/// cuBLAS) or im2col + cuBLAS throughout. Chosen when the device opens, from
/// [`CONV_ENV`], so one binary checks both paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    Cudnn,
    Im2col,
}

/// The environment variable that picks the convolution path: `cudnn` or `im2col`.
pub const CONV_ENV: &str = "KAPPA_CONV";

impl ConvPath {
    /// The path `KAPPA_CONV` asks for; unset or empty means the build's best
    /// (cuDNN when built with the `cudnn` feature). `cudnn_built` is whether it was.
    pub fn parse(value: Option<&str>, cudnn_built: bool) -> Result<ConvPath> {
        match value.map(str::trim).unwrap_or("") {
            "" if cudnn_built => Ok(ConvPath::Cudnn),
            "" | "im2col" => Ok(ConvPath::Im2col),
            "cudnn" if cudnn_built => Ok(ConvPath::Cudnn),
            "cudnn" => Err(Error::arg(CONV_ENV, "cudnn was asked for, but this kappa was built without the `cudnn` feature")),
            other => Err(Error::arg(CONV_ENV, format!("'{other}' is not a convolution path: expected cudnn or im2col"))),
        }
    }

    /// The path the environment picks for this build.
    pub fn from_env() -> Result<ConvPath> {
        ConvPath::parse(std::env::var(CONV_ENV).ok().as_deref(), cfg!(feature = "cudnn"))
    }
}

/// Patch-matrix values unfolded at once (128 MiB of f32), so a large batch
/// needs a bounded im2col scratch.
pub const COLS_BUDGET: usize = 1 << 25;

/// Images per conv chunk: the whole batch when the window is pointwise (the
/// input is its own patch matrix), else [`images_unfolded`].
pub fn images_per_chunk(g: &Window, budget: usize) -> usize {
    if g.is_pointwise() {
        return g.n.max(1);
    }
    images_unfolded(g, budget)
}

/// As many of `g`'s images as `budget` values hold at `per_image` values
/// each, at least one.
fn images_within(g: &Window, per_image: usize, budget: usize) -> usize {
    (budget / per_image.max(1)).clamp(1, g.n.max(1))
}

/// As many images as `budget` values of patches hold, at least one.
pub fn images_unfolded(g: &Window, budget: usize) -> usize {
    images_within(g, g.patch_len() * g.out_area(), budget)
}

/// Images per chunk of the filter gradient, whose scratch holds both the
/// patches and `dy` unfolded: as many as `budget` values hold, at least one.
pub fn images_per_filter_chunk(g: &Window, c_out: usize, budget: usize) -> usize {
    images_within(g, (g.patch_len() + c_out) * g.out_area(), budget)
}

/// The `c_out` output planes of `count` images as a window of 1×1 patches,
/// whose unfolding with rows across images lays `dy` out as one
/// `c_out × count·area` matrix.
pub fn outputs_as_images(c_out: usize, count: usize, (oh, ow): (usize, usize)) -> Window {
    Window { n: count, c: c_out, h: oh, w: ow, kh: 1, kw: 1, stride: 1, pad: 0 }
}

/// Where im2col writes patch entry (image b, row, position p) of `K×area`
/// patches: at `b·image_stride + row·row_stride + p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfolding {
    pub image_stride: usize,
    pub row_stride: usize,
}

impl Unfolding {
    /// A `K×area` block per image, as the conv GEMMs read them.
    pub fn per_image(g: &Window) -> Self {
        Unfolding { image_stride: g.patch_len() * g.out_area(), row_stride: g.out_area() }
    }

    /// One `K × count·area` matrix over `count` images, its row k entry k of
    /// every patch: the operand of a single GEMM for the patch Gram.
    pub fn rows_across_images(g: &Window, count: usize) -> Self {
        Unfolding { image_stride: g.out_area(), row_stride: count * g.out_area() }
    }
}

/// Which way kernels/im2col.cu moves patches: unfolding images into them or
/// folding them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Unfold,
    Fold,
}

/// The entry of kernels/im2col.cu for one launch over `cols` patch values
/// and `x` image values: the one indexing in 32 bits when every index the
/// launch forms is below 2^31 (then a grid stride of up to 2^31 more cannot
/// wrap an unsigned 32-bit counter either), else the 64-bit one. A chunk
/// within [`COLS_BUDGET`] takes the 32-bit entry unless its images hold
/// 2^31 values or more.
pub fn unfold_entry(direction: Direction, cols: usize, x: usize) -> &'static str {
    const LIMIT: usize = 1 << 31;
    match (direction, cols.max(x) < LIMIT) {
        (Direction::Unfold, true) => "im2col",
        (Direction::Unfold, false) => "im2col_64",
        (Direction::Fold, true) => "col2im",
        (Direction::Fold, false) => "col2im_64",
    }
}

/// `acc[K×K] += alpha·U·Uᵀ` for a row-major `K×len` U: the patch Gram of a
/// chunk, both triangles (the trait reads only the lower one).
pub fn gram_gemm(k: usize, len: usize, alpha: f64) -> Gemm {
    Gemm { alpha, beta: 1.0, ..Gemm::new(k, k, len, false, true) }
}

/// The cuBLAS work for `count` images, per image `cols` `K×area`, `y`/`dy`
/// `c_out×area` and the filter `W` `c_out×K` (K = c·kh·kw); for the filter
/// gradient, the chunk's `dy` and patches unfolded with rows across images,
/// `D` `c_out × count·area` and `U` `K × count·area`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvGemms {
    /// `y_i = W·cols_i`: A = W shared, B = cols, C = y.
    pub forward: (Gemm, Batch),
    /// `dcols_i = Wᵀ·dy_i`: A = W shared, B = dy, C = dcols.
    pub data: (Gemm, Batch),
    /// `dW += D·Uᵀ`, one call per chunk.
    pub filter: Gemm,
}

pub fn conv_gemms(g: &Window, c_out: usize, count: usize) -> ConvGemms {
    let (area, k) = (g.out_area(), g.patch_len());
    ConvGemms {
        forward: (Gemm::new(c_out, area, k, false, false), Batch { count, stride_a: 0, stride_b: k * area, stride_c: c_out * area }),
        data: (Gemm::new(k, area, c_out, true, false), Batch { count, stride_a: 0, stride_b: c_out * area, stride_c: k * area }),
        filter: Gemm { beta: 1.0, ..Gemm::new(c_out, k, count * area, false, true) },
    }
}

#[cfg(feature = "cuda-backend")]
mod device {
    use super::super::mem::Mem;
    use super::super::{blas, launch, Cuda, CudaBuf};
    use super::*;
    use crate::backend::checks::conv as check;
    use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

    /// The trace's names for the im2col path's products (both the per-image
    /// and the pointwise call).
    const FORWARD_GEMM: &str = "conv forward gemm";
    const DATA_GEMM: &str = "conv backward-data gemm";

    impl Cuda {
        /// The im2col scratch of one chunk (empty for a pointwise window).
        fn cols_scratch(&self, g: &Window, chunk: usize) -> Result<Mem<f32>> {
            self.alloc::<f32>(if g.is_pointwise() { 0 } else { chunk * g.patch_len() * g.out_area() })
        }

        /// `count` images of `x` unfolded into `cols`, placed by `at`.
        fn im2col(&self, x: &CudaView<f32>, g: &Window, count: usize, at: Unfolding, cols: &mut CudaViewMut<f32>) -> Result<()> {
            let (oh, ow) = g.out("im2col")?;
            let Window { c, h, w, kh, kw, stride, pad, .. } = *g;
            let Unfolding { image_stride, row_stride } = at;
            let total = cols.len();
            launch!(
                self,
                unfold_entry(Direction::Unfold, total, x.len()),
                launch::elementwise(total),
                [x, &count, &c, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, &image_stride, &row_stride, cols]
            )
        }

        /// `cols` of `count` images folded back onto `x` (the adjoint of im2col).
        fn col2im(&self, cols: &CudaView<f32>, g: &Window, count: usize, x: &mut CudaViewMut<f32>) -> Result<()> {
            let (oh, ow) = g.out("col2im")?;
            let Window { c, h, w, kh, kw, stride, pad, .. } = *g;
            let total = x.len();
            let entry = unfold_entry(Direction::Fold, cols.len(), total);
            launch!(self, entry, launch::elementwise(total), [cols, &count, &c, &h, &w, &kh, &kw, &stride, &pad, &oh, &ow, x])
        }

        pub(in crate::backend::cuda) fn conv_forward(&self, x: &CudaBuf, w: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
            let area = g.out_area();
            let (k, y_len) = (g.patch_len(), g.n * c_out * area);
            check("conv2d", &g, x.slice().len(), w.slice().len(), y_len, c_out)?;
            if y_len == 0 || k == 0 {
                return Ok(Self::wrap(self.alloc_zeros::<f32>(y_len)?));
            }
            let mut y = self.alloc::<f32>(y_len)?;
            #[cfg(feature = "cudnn")]
            if let Some(dnn) = self.dev.conv_dnn() {
                if self.span("cudnn conv forward", || dnn.forward(&self.dev, x.slice(), w.slice(), &mut y, g, c_out))? {
                    return Ok(Self::wrap(y));
                }
            }
            let chunk = images_per_chunk(&g, COLS_BUDGET);
            let mut cols = self.cols_scratch(&g, chunk)?;
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let (gemm, batch) = conv_gemms(&g, c_out, count).forward;
                let xs = x.slice().slice(first * g.image_len()..(first + count) * g.image_len());
                let mut ys = y.slice_mut(first * c_out * area..(first + count) * c_out * area);
                if g.is_pointwise() {
                    self.span(FORWARD_GEMM, || blas::gemm_strided_batched(&self.dev.blas, w.slice(), &xs, &mut ys, &gemm, &batch))?;
                } else {
                    let len = count * k * area;
                    self.im2col(&xs, &g, count, Unfolding::per_image(&g), &mut cols.slice_mut(..len))?;
                    self.span(FORWARD_GEMM, || {
                        blas::gemm_strided_batched(&self.dev.blas, w.slice(), &cols.slice(..len), &mut ys, &gemm, &batch)
                    })?;
                }
            }
            Ok(Self::wrap(y))
        }

        pub(in crate::backend::cuda) fn conv_backward_data(&self, dy: &CudaBuf, w: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
            let area = g.out_area();
            let (k, dx_len) = (g.patch_len(), g.n * g.image_len());
            check("conv2d_backward_data", &g, dx_len, w.slice().len(), dy.slice().len(), c_out)?;
            if dx_len == 0 || c_out == 0 {
                return Ok(Self::wrap(self.alloc_zeros::<f32>(dx_len)?));
            }
            let mut dx = self.alloc::<f32>(dx_len)?;
            #[cfg(feature = "cudnn")]
            if let Some(dnn) = self.dev.conv_dnn() {
                if self.span("cudnn conv backward data", || dnn.backward_data(&self.dev, dy.slice(), w.slice(), &mut dx, g, c_out))? {
                    return Ok(Self::wrap(dx));
                }
            }
            let chunk = images_per_chunk(&g, COLS_BUDGET);
            let mut cols = self.cols_scratch(&g, chunk)?;
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let (gemm, batch) = conv_gemms(&g, c_out, count).data;
                let dys = dy.slice().slice(first * c_out * area..(first + count) * c_out * area);
                let mut dxs = dx.slice_mut(first * g.image_len()..(first + count) * g.image_len());
                if g.is_pointwise() {
                    self.span(DATA_GEMM, || blas::gemm_strided_batched(&self.dev.blas, w.slice(), &dys, &mut dxs, &gemm, &batch))?;
                } else {
                    let len = count * k * area;
                    self.span(DATA_GEMM, || {
                        blas::gemm_strided_batched(&self.dev.blas, w.slice(), &dys, &mut cols.slice_mut(..len), &gemm, &batch)
                    })?;
                    self.col2im(&cols.slice(..len), &g, count, &mut dxs)?;
                }
            }
            Ok(Self::wrap(dx))
        }

        pub(in crate::backend::cuda) fn conv_backward_filter(&self, dy: &CudaBuf, x: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
            let area = g.out_area();
            let (k, dw_len) = (g.patch_len(), c_out * g.patch_len());
            check("conv2d_backward_filter", &g, x.slice().len(), dw_len, dy.slice().len(), c_out)?;
            if dw_len == 0 || g.n == 0 {
                return Ok(Self::wrap(self.alloc_zeros::<f32>(dw_len)?));
            }
            // Zeroed for the accumulating GEMM; cuDNN overwrites it.
            let mut dw = self.alloc_zeros::<f32>(dw_len)?;
            #[cfg(feature = "cudnn")]
            if let Some(dnn) = self.dev.conv_dnn() {
                if self.span("cudnn conv backward filter", || dnn.backward_filter(&self.dev, dy.slice(), x.slice(), &mut dw, g, c_out))? {
                    return Ok(Self::wrap(dw));
                }
            }
            let out = g.out("conv2d_backward_filter")?;
            let chunk = images_per_filter_chunk(&g, c_out, COLS_BUDGET);
            let (mut cols, mut dys) = (self.alloc::<f32>(chunk * k * area)?, self.alloc::<f32>(chunk * c_out * area)?);
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let xs = x.slice().slice(first * g.image_len()..(first + count) * g.image_len());
                let dy_chunk = dy.slice().slice(first * c_out * area..(first + count) * c_out * area);
                let outputs = outputs_as_images(c_out, count, out);
                let (u_len, d_len) = (count * k * area, count * c_out * area);
                self.im2col(&xs, &g, count, Unfolding::rows_across_images(&g, count), &mut cols.slice_mut(..u_len))?;
                self.im2col(&dy_chunk, &outputs, count, Unfolding::rows_across_images(&outputs, count), &mut dys.slice_mut(..d_len))?;
                let filter = conv_gemms(&g, c_out, count).filter;
                self.span("conv filter gemm", || blas::gemm(&self.dev.blas, &dys.slice(..d_len), &cols.slice(..u_len), &mut *dw, &filter))?;
            }
            Ok(Self::wrap(dw))
        }

        /// `acc[K×K] += alpha·PᵀP` (lower triangle) for the patch rows P of
        /// `x` under window `g`: a chunk of images at a time unfolded into one
        /// `K × count·area` matrix, and one SGEMM per chunk, so the vendor's
        /// tuned product does the O(K²) work per patch.
        pub(in crate::backend::cuda) fn patch_gram(&self, acc: &mut CudaBuf, x: &CudaBuf, g: Window, alpha: f64) -> Result<()> {
            g.out("gram_lower_patches")?;
            let (k, area) = (g.patch_len(), g.out_area());
            if x.slice().len() != g.n * g.image_len() || acc.slice().len() != k * k {
                return Err(Error::shape(
                    "gram_lower_patches",
                    format!("{g:?}: input of {}, accumulator of {}", x.slice().len(), acc.slice().len()),
                ));
            }
            if g.patches() == 0 || k == 0 {
                return Ok(());
            }
            let chunk = images_unfolded(&g, COLS_BUDGET);
            let mut cols = self.alloc::<f32>(chunk * k * area)?;
            let acc = self.make_mut(acc)?;
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let xs = x.slice().slice(first * g.image_len()..(first + count) * g.image_len());
                let len = count * k * area;
                self.im2col(&xs, &g, count, Unfolding::rows_across_images(&g, count), &mut cols.slice_mut(..len))?;
                let u = cols.slice(..len);
                self.span("patch gram gemm", || blas::gemm(&self.dev.blas, &u, &u, acc, &gram_gemm(k, count * area, alpha)))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blas::batched_reference;
    use super::*;
    use crate::backend::checks::conv as check;
    use crate::backend::cpu::Cpu;
    use crate::backend::Backend;
    use crate::rng::Rng;

    fn win([n, c, h, w, kh, kw, stride, pad]: [usize; 8]) -> Window {
        Window { n, c, h, w, kh, kw, stride, pad }
    }

    fn identity(k: usize) -> Vec<f64> {
        (0..k * k).map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 }).collect()
    }

    /// Images `first..first + count` of `m` (per image `rows × area`, as the
    /// CPU's im2col lays them out) where the kernel writes them under `at`,
    /// in scratch that starts as NaN, so an entry the placement missed shows.
    fn placed(m: &[f64], first: usize, count: usize, (rows, area): (usize, usize), at: Unfolding) -> Vec<f64> {
        let mut out = vec![f64::NAN; count * rows * area];
        for (b, row, p) in (0..count).flat_map(|b| (0..rows).flat_map(move |row| (0..area).map(move |p| (b, row, p)))) {
            out[b * at.image_stride + row * at.row_stride + p] = m[((first + b) * rows + row) * area + p];
        }
        out
    }

    /// Runs the derived cuBLAS calls on the CPU, chunk by chunk, with the
    /// CPU conv's identity-filter im2col/col2im standing in for the kernels
    /// (which tests/emulated_kernels.rs checks against the same twins).
    #[test]
    fn derived_gemms_compute_the_cpu_convolution_in_chunks() {
        let cpu = Cpu::<f64>::new();
        let mut r = Rng::new(3, 0);
        let cases = [
            (win([5, 3, 7, 6, 3, 3, 2, 1]), 4, 2),
            (win([3, 2, 5, 5, 3, 2, 1, 1]), 5, 3),
            (win([4, 6, 3, 4, 1, 1, 1, 0]), 3, 4),
            (win([3, 4, 5, 5, 1, 1, 2, 0]), 2, 2),
            (win([2, 2, 9, 9, 7, 7, 2, 3]), 3, 1),
        ];
        for (g, c_out, chunk) in cases {
            let (area, k, image) = (g.out_area(), g.patch_len(), g.image_len());
            let mut normal = |n: usize| -> Vec<f64> { (0..n).map(|_| r.normal()).collect() };
            let (x, w, dy) = (normal(g.n * image), normal(c_out * k), normal(g.n * c_out * area));
            let cols = if g.is_pointwise() { x.clone() } else { cpu.conv2d(&x, &identity(k), g, k).unwrap() };
            let (mut y, mut dcols, mut dw) = (vec![f64::NAN; dy.len()], vec![f64::NAN; cols.len()], vec![0.0; w.len()]);
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let plan = conv_gemms(&g, c_out, count);
                let (f, fb) = plan.forward;
                let chunk_cols = &cols[first * k * area..(first + count) * k * area];
                let ys = &mut y[first * c_out * area..(first + count) * c_out * area];
                assert_eq!(fb.lens(&f), (w.len(), chunk_cols.len(), ys.len()), "{g:?} forward spans");
                // beta = 0 must not read the NaN already in C.
                ys.fill(0.0);
                batched_reference(&f, &fb, &w, chunk_cols, ys);
                let (d, db) = plan.data;
                let dys = &dy[first * c_out * area..(first + count) * c_out * area];
                let dcs = &mut dcols[first * k * area..(first + count) * k * area];
                assert_eq!(db.lens(&d), (w.len(), dys.len(), dcs.len()), "{g:?} data spans");
                dcs.fill(0.0);
                batched_reference(&d, &db, &w, dys, dcs);
                // The filter gradient: the chunk's patches and dy with rows across images, one GEMM.
                let outputs = outputs_as_images(c_out, count, g.out("test").unwrap());
                assert_eq!((outputs.patch_len(), outputs.out_area()), (c_out, area), "dy's unfolding is a relabelling");
                let across = Unfolding { image_stride: area, row_stride: count * area };
                assert_eq!((Unfolding::rows_across_images(&g, count), Unfolding::rows_across_images(&outputs, count)), (across, across));
                let u = placed(&cols, first, count, (k, area), Unfolding::rows_across_images(&g, count));
                let d = placed(&dy, first, count, (c_out, area), Unfolding::rows_across_images(&outputs, count));
                batched_reference(&plan.filter, &Batch::contiguous(&plan.filter, 1), &d, &u, &mut dw);
            }
            let close = |what: &str, got: &[f64], want: &[f64]| {
                assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-10), "{g:?} {what}");
                assert_eq!(got.len(), want.len());
            };
            close("forward", &y, &cpu.conv2d(&x, &w, g, c_out).unwrap());
            let dx = if g.is_pointwise() { dcols } else { cpu.conv2d_backward_data(&dcols, &identity(k), g, k).unwrap() };
            close("backward data", &dx, &cpu.conv2d_backward_data(&dy, &w, g, c_out).unwrap());
            close("backward filter", &dw, &cpu.conv2d_backward_filter(&dy, &x, g, c_out).unwrap());
        }
    }

    /// Runs the patch Gram's derived GEMM on the CPU, chunk by chunk, on the
    /// CPU's im2col placed as [`Unfolding::rows_across_images`] says. The
    /// scratch starts as NaN, so a placement that missed an entry would show.
    #[test]
    fn the_patch_gram_in_chunks_is_the_cpu_patch_gram() {
        let cpu = Cpu::<f64>::new();
        let mut r = Rng::new(4, 0);
        let cases = [
            (win([5, 3, 7, 6, 3, 3, 2, 1]), 2),
            (win([3, 2, 5, 5, 3, 2, 1, 1]), 3),
            (win([4, 6, 3, 4, 1, 1, 1, 0]), 3),
            (win([1, 2, 4, 4, 3, 3, 1, 1]), 1),
        ];
        for (g, chunk) in cases {
            let (area, k) = (g.out_area(), g.patch_len());
            let x: Vec<f64> = (0..g.n * g.image_len()).map(|_| r.normal()).collect();
            let acc0: Vec<f64> = (0..k * k).map(|_| r.normal()).collect();
            let cols = cpu.conv2d(&x, &identity(k), g, k).unwrap();
            let mut got = acc0.clone();
            for first in (0..g.n).step_by(chunk) {
                let count = chunk.min(g.n - first);
                let u = placed(&cols, first, count, (k, area), Unfolding::rows_across_images(&g, count));
                let gemm = gram_gemm(k, count * area, 0.5);
                batched_reference(&gemm, &Batch::contiguous(&gemm, 1), &u, &u, &mut got);
            }
            let mut want = acc0.clone();
            cpu.gram_lower_patches(&mut want, &x, g, 0.5).unwrap();
            for (i, j) in (0..k).flat_map(|i| (0..=i).map(move |j| (i, j))) {
                let (a, b) = (got[i * k + j], want[i * k + j]);
                assert!((a - b).abs() < 1e-10, "{g:?} in chunks of {chunk}: ({i}, {j}): {a} against {b}");
            }
        }
    }

    #[test]
    fn the_two_unfoldings_place_entries_by_image_and_by_row() {
        let g = Window { n: 3, c: 2, h: 5, w: 5, kh: 3, kw: 3, stride: 1, pad: 1 };
        assert_eq!(Unfolding::per_image(&g), Unfolding { image_stride: 18 * 25, row_stride: 25 });
        assert_eq!(Unfolding::rows_across_images(&g, 3), Unfolding { image_stride: 25, row_stride: 75 });
    }

    #[test]
    fn chunks_respect_the_budget_and_pointwise_windows_need_no_scratch() {
        let g = Window { n: 64, c: 64, h: 32, w: 32, kh: 3, kw: 3, stride: 1, pad: 1 };
        let per_image = g.patch_len() * g.out_area();
        assert_eq!(images_per_chunk(&g, COLS_BUDGET), COLS_BUDGET / per_image);
        assert!(images_per_chunk(&g, COLS_BUDGET) * per_image <= COLS_BUDGET);
        assert_eq!(images_per_chunk(&g, 1), 1, "an image larger than the budget is still one chunk");
        assert_eq!(images_per_chunk(&Window { n: 3, ..g }, COLS_BUDGET), 3);
        assert_eq!(images_per_chunk(&Window { kh: 1, kw: 1, pad: 0, ..g }, 1), 64);
        assert_eq!(images_per_chunk(&Window { n: 0, ..g }, COLS_BUDGET), 1);
        // The patch Gram unfolds even a pointwise window, so its chunks keep to the budget.
        let pointwise = Window { kh: 1, kw: 1, pad: 0, ..g };
        assert_eq!(images_unfolded(&pointwise, 64 * 32 * 32 * 5), 5);
        assert_eq!(images_unfolded(&g, COLS_BUDGET), images_per_chunk(&g, COLS_BUDGET));
        // The filter gradient unfolds dy beside the patches, within the same budget.
        let both = (g.patch_len() + 32) * g.out_area();
        assert_eq!(images_per_filter_chunk(&g, 32, COLS_BUDGET), COLS_BUDGET / both);
        assert_eq!(images_per_filter_chunk(&g, 32, both - 1), 1, "an image larger than the budget is still one chunk");
        assert_eq!(images_per_filter_chunk(&Window { n: 3, ..g }, 32, COLS_BUDGET), 3);
    }

    #[test]
    fn launches_index_in_32_bits_while_every_index_is_below_2_to_the_31() {
        use Direction::{Fold, Unfold};
        let below = (1 << 31) - 1;
        assert_eq!(unfold_entry(Unfold, below, below), "im2col");
        assert_eq!(unfold_entry(Fold, below, below), "col2im");
        assert_eq!(unfold_entry(Unfold, 1 << 31, 1), "im2col_64");
        assert_eq!(unfold_entry(Unfold, 1, 1 << 31), "im2col_64", "the images' indices count as well as the patches'");
        assert_eq!(unfold_entry(Fold, 1 << 31, 1), "col2im_64");
        assert_eq!(unfold_entry(Fold, 1, 1 << 31), "col2im_64");
        // Every chunk of the CIFAR and ImageNet ResNets' convs within the budget: 32 bits.
        for g in [
            Window { n: 128, c: 16, h: 32, w: 32, kh: 3, kw: 3, stride: 1, pad: 1 },
            Window { n: 256, c: 64, h: 224, w: 224, kh: 3, kw: 3, stride: 1, pad: 1 },
            Window { n: 256, c: 3, h: 224, w: 224, kh: 7, kw: 7, stride: 2, pad: 3 },
            Window { n: 256, c: 1024, h: 14, w: 14, kh: 1, kw: 1, stride: 2, pad: 0 },
        ] {
            let count = images_unfolded(&g, COLS_BUDGET);
            let (cols, x) = (count * g.patch_len() * g.out_area(), count * g.image_len());
            assert_eq!(unfold_entry(Unfold, cols, x), "im2col", "{g:?}");
        }
    }

    #[test]
    fn shape_errors_name_the_op_and_the_lengths() {
        let g = Window { n: 2, c: 3, h: 4, w: 4, kh: 3, kw: 3, stride: 1, pad: 1 };
        assert_eq!(check("conv2d", &g, 96, 54, 64, 2).unwrap(), (4, 4));
        let err = check("conv2d_backward_data", &g, 95, 54, 64, 2).unwrap_err().to_string();
        assert!(err.contains("conv2d_backward_data") && err.contains("input 96"), "{err}");
        assert!(check("conv2d", &Window { kh: 9, ..g }, 96, 2 * 3 * 81, 0, 2).is_err());
    }

    #[test]
    fn the_convolution_path_comes_from_kappa_conv() {
        assert_eq!(ConvPath::parse(None, true).unwrap(), ConvPath::Cudnn);
        assert_eq!(ConvPath::parse(None, false).unwrap(), ConvPath::Im2col);
        assert_eq!(ConvPath::parse(Some(" im2col "), true).unwrap(), ConvPath::Im2col);
        assert_eq!(ConvPath::parse(Some("cudnn"), true).unwrap(), ConvPath::Cudnn);
        let e = ConvPath::parse(Some("cudnn"), false).unwrap_err().to_string();
        assert!(e.contains("KAPPA_CONV") && e.contains("without the `cudnn` feature"), "{e}");
        let e = ConvPath::parse(Some("winograd"), true).unwrap_err().to_string();
        assert!(e.contains("KAPPA_CONV") && e.contains("'winograd'") && e.contains("cudnn or im2col"), "{e}");
    }
}
