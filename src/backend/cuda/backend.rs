//! [`Cuda`]: the Backend trait on one device, op by op as the CPU backend
//! does it (src/backend/cpu), each op a few kernel launches on one stream.

use super::blas;
use super::conv::ConvPath;
use super::device::{Device, DeviceInfo};
use super::launch;
use super::mem::{self, Mem};
use super::solver::{self, Prepared};
use super::trace::Spans;
use super::NULL;
use crate::backend::{AdamHyper, Backend, BatchStats, ChannelShape, Device as DeviceName, Gemm, SgdHyper, Window};
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};
use std::sync::Arc;

/// The CUDA device `cuda:N`. Cheap to clone (shares the context).
#[derive(Clone, Debug)]
pub struct Cuda {
    pub(super) dev: Arc<Device>,
}

/// A device buffer of f32. Clones share the allocation until one of them is
/// written in place, which then copies it (so a clone behaves as the CPU's
/// `Vec` clone does).
#[derive(Clone, Debug)]
pub struct CudaBuf(pub(super) Arc<Mem<f32>>);

impl CudaBuf {
    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.0
    }
}

pub(super) fn same_len(op: &'static str, a: &CudaBuf, b: &CudaBuf) -> Result<()> {
    if a.0.len() == b.0.len() {
        Ok(())
    } else {
        Err(Error::shape(op, format!("lengths {} and {}", a.0.len(), b.0.len())))
    }
}

pub(super) fn check_channels(op: &'static str, x: &CudaBuf, s: ChannelShape, per_channel: &[&CudaBuf]) -> Result<()> {
    super::super::checks::channels(op, x.0.len(), s, per_channel.iter().map(|p| p.0.len()))
}

impl Cuda {
    /// Opens `cuda:ordinal`: an error (never a panic) when the driver, cuBLAS
    /// or the device is missing. Convolutions take the path `KAPPA_CONV` names.
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_conv(ordinal, ConvPath::from_env()?)
    }

    /// Opens `cuda:ordinal` with the convolutions on `conv`.
    pub fn with_conv(ordinal: usize, conv: ConvPath) -> Result<Self> {
        Ok(Cuda { dev: Arc::new(Device::open(ordinal, conv)?) })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    /// What runs the convolutions, for `kappa doctor`.
    pub fn convolutions(&self) -> String {
        #[cfg(not(feature = "cudnn"))]
        return "im2col + cuBLAS (built without the `cudnn` feature)".to_string();
        #[cfg(feature = "cudnn")]
        match self.dev.conv {
            ConvPath::Im2col => format!("im2col + cuBLAS ({}=im2col)", super::conv::CONV_ENV),
            ConvPath::Cudnn => {
                match self.dev.dnn() {
                    Ok(d) => {
                        let (major, minor, patch) = d.version;
                        format!("cuDNN {major}.{minor}.{patch} (per shape, the next algorithm, then im2col + cuBLAS, when one fails or none fits)")
                    }
                    Err(e) => format!("im2col + cuBLAS, as cuDNN is unusable: {e}"),
                }
            }
        }
    }

    /// Device memory in use at the peak since [`Cuda::reset_peak_memory`].
    pub fn peak_memory(&self) -> Result<u64> {
        self.dev.peak_memory()
    }

    pub fn reset_peak_memory(&self) -> Result<()> {
        self.dev.reset_peak_memory()
    }

    /// The FP32 FMA and memory-bandwidth peaks from the driver's attributes;
    /// None when an attribute is missing or the architecture unknown.
    pub fn peaks(&self) -> Option<crate::backend::Peaks> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let get = |a| self.dev.attribute(a).ok().filter(|&v| v > 0).map(f64::from);
        let (major, minor) = self.dev.info.compute_capability;
        Some(crate::backend::Peaks::of(
            self.dev.info.multiprocessors,
            crate::backend::Peaks::fp32_lanes(major, minor)?,
            get(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
            get(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
            get(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
        ))
    }

    /// Waits for every launched op (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.dev.stream.synchronize().map_err(|e| self.dev.error("synchronize", e))
    }

    /// Runs `work` with every op it puts on the stream traced (see
    /// `trace.rs`); also returns each op's name and seconds, in launch
    /// order, or why the trace failed (the work's own error comes first).
    pub fn traced<R>(&self, work: impl FnOnce() -> Result<R>) -> Result<(R, Result<Spans>)> {
        self.dev.trace.start();
        let out = work();
        let spans = self.dev.trace.finish();
        Ok((out?, spans))
    }

    /// The underlying context and stream, for callers that time with CUDA events.
    pub fn stream(&self) -> &Arc<cudarc::driver::CudaStream> {
        &self.dev.stream
    }

    /// Runs `work`, one op on the stream, as a span of the trace when one is on.
    pub(super) fn span<R>(&self, name: &'static str, work: impl FnOnce() -> Result<R>) -> Result<R> {
        self.dev.trace.span(&self.dev.stream, name, work)
    }

    pub(super) fn alloc<T: DeviceRepr>(&self, len: usize) -> Result<Mem<T>> {
        // SAFETY: every caller writes all `len` elements before reading them.
        unsafe { Mem::alloc(&self.dev.stream, len) }.map_err(|e| self.dev.error("alloc", e))
    }

    pub(super) fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<Mem<T>> {
        if !mem::allocates(len) {
            return Ok(Mem::empty(&self.dev.stream));
        }
        self.span("memset", || self.dev.stream.alloc_zeros::<T>(len).map(Mem::from).map_err(|e| self.dev.error("alloc", e)))
    }

    pub(super) fn upload_as<T: DeviceRepr>(&self, host: &[T]) -> Result<Mem<T>> {
        if !mem::allocates(host.len()) {
            return Ok(Mem::empty(&self.dev.stream));
        }
        self.span("upload", || self.dev.stream.clone_htod(host).map(Mem::from).map_err(|e| self.dev.error("upload", e)))
    }

    pub(super) fn download_as<T: DeviceRepr>(&self, buf: &CudaSlice<T>) -> Result<Vec<T>> {
        if !mem::allocates(buf.len()) {
            return Ok(Vec::new());
        }
        self.span("download", || self.dev.stream.clone_dtoh(buf).map_err(|e| self.dev.error("download", e)))
    }

    /// The buffer's slice for writing, copied first if a clone shares it.
    pub(super) fn make_mut<'a>(&self, buf: &'a mut CudaBuf) -> Result<&'a mut CudaSlice<f32>> {
        if Arc::get_mut(&mut buf.0).is_none() {
            let copy = self.span("copy-on-write", || buf.0.try_clone().map_err(|e| self.dev.error("copy-on-write", e)))?;
            buf.0 = Arc::new(copy);
        }
        Ok(Arc::get_mut(&mut buf.0).expect("the buffer was just made unique"))
    }

    pub(super) fn wrap(s: Mem<f32>) -> CudaBuf {
        CudaBuf(Arc::new(s))
    }

    fn binary(&self, op: &'static str, kernel: Kernel2, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf> {
        same_len(op, a, b)?;
        let n = a.0.len();
        let mut y = self.alloc::<f32>(n)?;
        if n > 0 {
            let g = launch::elementwise(n);
            match kernel {
                Kernel2::Add => launch!(self, "add_f32", g, [a.slice(), b.slice(), &mut y, &n])?,
                Kernel2::Sub => launch!(self, "sub_f32", g, [a.slice(), b.slice(), &mut y, &n])?,
                Kernel2::Mul => launch!(self, "mul_f32", g, [a.slice(), b.slice(), &mut y, &n])?,
                Kernel2::ReluBackward => launch!(self, "relu_backward_f32", g, [a.slice(), b.slice(), &mut y, &n])?,
            }
        }
        Ok(Self::wrap(y))
    }

    fn to_f32(&self, x: &CudaSlice<f64>) -> Result<CudaBuf> {
        let n = x.len();
        let mut y = self.alloc::<f32>(n)?;
        if n > 0 {
            launch!(self, "f64_to_f32", launch::elementwise(n), [x, &mut y, &n])?;
        }
        Ok(Self::wrap(y))
    }

    /// Σ a·b (Σ a when b is None) in f64, read back to the host.
    fn reduce(&self, a: &CudaBuf, b: Option<&CudaBuf>) -> Result<f64> {
        let n = a.0.len();
        if n == 0 {
            return Ok(0.0);
        }
        let mut out = self.alloc_zeros::<f64>(1)?;
        match b {
            Some(b) => launch!(self, "sum_f32", launch::reduction(n), [a.slice(), b.slice(), &n, &mut out])?,
            None => launch!(self, "sum_f32", launch::reduction(n), [a.slice(), &NULL, &n, &mut out])?,
        }
        Ok(self.download_as(&out)?[0])
    }

    /// Every matrix downloaded and solved by the CPU backend's solver, side
    /// by side on the host's cores (see [`solver::HOST_MAX`]).
    pub fn eigvalsh_on_host(&self, mats: &[(&CudaBuf, usize)]) -> Result<Vec<Vec<f64>>> {
        let lowers = mats.iter().map(|&(m, _)| self.download_as(&m.0)).collect::<Result<Vec<_>>>()?;
        let solve: Vec<(&Vec<f32>, usize)> = lowers.iter().zip(mats).map(|(l, &(_, n))| (l, n)).collect();
        crate::backend::cpu::Cpu::<f32>::new().eigvalsh(&solve)
    }

    /// One matrix by cuSOLVER's `syevd` on the device.
    pub fn eigvalsh_on_device(&self, lower: &CudaBuf, n: usize) -> Result<Vec<f64>> {
        if lower.0.len() != n * n {
            return Err(Error::shape("eigvalsh", format!("{} elements for a {n}×{n} matrix", lower.0.len())));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut stats = self.alloc_zeros::<u32>(2)?;
        launch!(self, "lower_max_abs", launch::reduction(n * n), [lower.slice(), &n, &mut stats])?;
        let stats = self.download_as(&stats)?;
        let scale = match solver::prepare(stats[0], stats[1]) {
            Prepared::NonFinite => return Ok(vec![f64::NAN; n]),
            Prepared::Zero => return Ok(vec![0.0; n]),
            Prepared::Scale(s) => s,
        };
        let len = n * n;
        let mut a = self.alloc::<f64>(len)?;
        launch!(self, "scale_to_f64", launch::elementwise(len), [lower.slice(), &len, &scale, &mut a])?;
        let solver = self.dev.solver()?;
        let ascending = self.span("syevd", || solver.syevd(&mut a, n))?;
        Ok(solver::finish(&ascending, scale))
    }
}

#[derive(Clone, Copy)]
enum Kernel2 {
    Add,
    Sub,
    Mul,
    ReluBackward,
}

impl Backend for Cuda {
    type Elem = f32;
    type Buf = CudaBuf;

    fn device(&self) -> DeviceName {
        DeviceName::Cuda(self.dev.info.ordinal)
    }

    fn own_memory(&self) -> Option<usize> {
        Some(self.dev.info.total_mem)
    }

    fn len(&self, buf: &CudaBuf) -> usize {
        buf.0.len()
    }

    fn full(&self, len: usize, value: f64) -> Result<CudaBuf> {
        if value == 0.0 {
            return Ok(Self::wrap(self.alloc_zeros::<f32>(len)?));
        }
        let mut y = self.alloc::<f32>(len)?;
        let v = value as f32;
        if len > 0 {
            launch!(self, "fill_f32", launch::elementwise(len), [&mut y, &v, &len])?;
        }
        Ok(Self::wrap(y))
    }

    fn upload(&self, host: &[f32]) -> Result<CudaBuf> {
        Ok(Self::wrap(self.upload_as(host)?))
    }

    fn download(&self, buf: &CudaBuf) -> Result<Vec<f32>> {
        self.download_as(&buf.0)
    }

    fn overwrite(&self, buf: &mut CudaBuf, fill: &mut dyn FnMut(usize, &mut [f32])) -> Result<()> {
        // 16 MiB of staging: a copy that size is bound by the bus, not the call.
        const CHUNK: usize = 1 << 22;
        let len = buf.0.len();
        if len == 0 {
            return Ok(());
        }
        let dst = self.make_mut(buf)?;
        let mut host = vec![0f32; CHUNK.min(len)];
        for start in (0..len).step_by(CHUNK) {
            let chunk = &mut host[..CHUNK.min(len - start)];
            fill(start, chunk);
            let mut view = dst.slice_mut(start..start + chunk.len());
            self.span("upload", || self.dev.stream.memcpy_htod(&*chunk, &mut view).map_err(|e| self.dev.error("upload", e)))?;
            // The next chunk refills the staging buffer only once this copy has read it.
            self.synchronize()?;
        }
        Ok(())
    }

    fn gemm(&self, a: &CudaBuf, b: &CudaBuf, c: &mut CudaBuf, g: Gemm) -> Result<()> {
        let Gemm { m, n, k, .. } = g;
        // Checked before make_mut, so a mismatch never copies a shared C.
        if a.0.len() != m * k || b.0.len() != k * n || c.0.len() != m * n {
            return Err(Error::shape("gemm", format!("m={m} n={n} k={k} but |A|={} |B|={} |C|={}", a.0.len(), b.0.len(), c.0.len())));
        }
        let c = self.make_mut(c)?;
        self.span("cublas gemm", || blas::gemm(&self.dev.blas, a.slice(), b.slice(), c, &g))
    }

    fn matmul(&self, a: &CudaBuf, b: &CudaBuf, g: Gemm) -> Result<CudaBuf> {
        let g = Gemm { beta: 0.0, ..g };
        let mut c = if g.k == 0 { self.zeros(g.m * g.n)? } else { Self::wrap(self.alloc::<f32>(g.m * g.n)?) };
        if g.k > 0 {
            self.gemm(a, b, &mut c, g)?;
        } else if !a.0.is_empty() || !b.0.is_empty() {
            return Err(Error::shape("gemm", format!("k=0 but |A|={} |B|={}", a.0.len(), b.0.len())));
        }
        Ok(c)
    }

    fn add(&self, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf> {
        self.binary("add", Kernel2::Add, a, b)
    }

    fn sub(&self, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf> {
        self.binary("sub", Kernel2::Sub, a, b)
    }

    fn mul(&self, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf> {
        self.binary("mul", Kernel2::Mul, a, b)
    }

    fn scale(&self, a: &CudaBuf, s: f64) -> Result<CudaBuf> {
        let n = a.0.len();
        let mut y = self.alloc::<f32>(n)?;
        let s = s as f32;
        if n > 0 {
            launch!(self, "scale_f32", launch::elementwise(n), [a.slice(), &s, &mut y, &n])?;
        }
        Ok(Self::wrap(y))
    }

    fn axpy(&self, y: &mut CudaBuf, alpha: f64, x: &CudaBuf) -> Result<()> {
        same_len("axpy", y, x)?;
        let n = x.0.len();
        let alpha = alpha as f32;
        if n > 0 {
            let ys = self.make_mut(y)?;
            launch!(self, "axpy_f32", launch::elementwise(n), [ys, &alpha, x.slice(), &n])?;
        }
        Ok(())
    }

    fn relu(&self, x: &CudaBuf) -> Result<CudaBuf> {
        let n = x.0.len();
        let mut y = self.alloc::<f32>(n)?;
        if n > 0 {
            launch!(self, "relu_f32", launch::elementwise(n), [x.slice(), &mut y, &n])?;
        }
        Ok(Self::wrap(y))
    }

    fn relu_backward(&self, grad: &CudaBuf, y: &CudaBuf) -> Result<CudaBuf> {
        self.binary("relu_backward", Kernel2::ReluBackward, grad, y)
    }

    fn dropout_mask(&self, len: usize, p: f64, seed: u64, stream: u64) -> Result<CudaBuf> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::arg("dropout p", format!("{p} is not in [0, 1)")));
        }
        let keep = (1.0 / (1.0 - p)) as f32;
        let mut y = self.alloc::<f32>(len)?;
        if len > 0 {
            launch!(self, "dropout_mask_f32", launch::elementwise(len), [&mut y, &len, &p, &keep, &seed, &stream])?;
        }
        Ok(Self::wrap(y))
    }

    fn add_channel_bias(&self, x: &CudaBuf, bias: &CudaBuf, s: ChannelShape) -> Result<CudaBuf> {
        check_channels("add_channel_bias", x, s, &[bias])?;
        self.channel_affine(x, None, &bias.0, None, s)
    }

    fn channel_sum(&self, x: &CudaBuf, s: ChannelShape) -> Result<CudaBuf> {
        check_channels("channel_sum", x, s, &[])?;
        let (sum, _) = self.channel_dots(x, None, s)?;
        self.to_f32(&sum)
    }

    fn batch_norm_train(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(CudaBuf, BatchStats<CudaBuf>)> {
        self.bn_train(x, gamma, beta, s, eps)
    }

    fn batch_norm_eval(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        mean: &CudaBuf,
        var: &CudaBuf,
        s: ChannelShape,
        eps: f64,
    ) -> Result<CudaBuf> {
        self.bn_eval(x, gamma, beta, mean, var, s, eps)
    }

    fn batch_norm_backward(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        mean: &CudaBuf,
        inv_std: &CudaBuf,
        s: ChannelShape,
    ) -> Result<(CudaBuf, CudaBuf, CudaBuf)> {
        self.bn_backward(dy, x, gamma, mean, inv_std, s)
    }

    fn pad_channels(&self, x: &CudaBuf, s: ChannelShape, before: usize, after: usize) -> Result<CudaBuf> {
        check_channels("pad_channels", x, s, &[])?;
        self.copy_channels(x, s, before + s.channels + after, before, 0)
    }

    fn narrow_channels(&self, x: &CudaBuf, s: ChannelShape, start: usize, len: usize) -> Result<CudaBuf> {
        check_channels("narrow_channels", x, s, &[])?;
        if start + len > s.channels {
            return Err(Error::shape("narrow_channels", format!("channels {start}..{} of {}", start + len, s.channels)));
        }
        self.copy_channels(x, s, len, 0, start)
    }

    fn conv2d(&self, x: &CudaBuf, w: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
        self.conv_forward(x, w, g, c_out)
    }

    fn conv2d_backward_data(&self, dy: &CudaBuf, w: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
        self.conv_backward_data(dy, w, g, c_out)
    }

    fn conv2d_backward_filter(&self, dy: &CudaBuf, x: &CudaBuf, g: Window, c_out: usize) -> Result<CudaBuf> {
        self.conv_backward_filter(dy, x, g, c_out)
    }

    fn max_pool2d(&self, x: &CudaBuf, g: Window) -> Result<CudaBuf> {
        self.max_pool(x, g)
    }

    fn max_pool2d_backward(&self, dy: &CudaBuf, x: &CudaBuf, y: &CudaBuf, g: Window) -> Result<CudaBuf> {
        self.max_pool_backward(dy, x, y, g)
    }

    fn avg_pool2d(&self, x: &CudaBuf, g: Window) -> Result<CudaBuf> {
        self.avg_pool(x, g)
    }

    fn avg_pool2d_backward(&self, dy: &CudaBuf, g: Window) -> Result<CudaBuf> {
        self.avg_pool_backward(dy, g)
    }

    fn sum(&self, x: &CudaBuf) -> Result<f64> {
        self.reduce(x, None)
    }

    fn dot(&self, a: &CudaBuf, b: &CudaBuf) -> Result<f64> {
        same_len("dot", a, b)?;
        self.reduce(a, Some(b))
    }

    fn softmax_xent(&self, logits: &CudaBuf, labels: &[u32], classes: usize) -> Result<(CudaBuf, f64)> {
        if classes == 0 || !logits.0.len().is_multiple_of(classes) {
            return Err(Error::shape("softmax_xent", format!("{} logits for {classes} classes", logits.0.len())));
        }
        let rows = logits.0.len() / classes;
        super::super::checks::labels(labels, rows, classes)?;
        let mut probs = self.alloc::<f32>(logits.0.len())?;
        if rows == 0 {
            return Ok((Self::wrap(probs), 0.0));
        }
        let labels = self.upload_as(labels)?;
        let mut nll = self.alloc::<f64>(rows)?;
        launch!(self, "softmax_xent_rows", launch::warp_per_row(rows), [logits.slice(), &labels, &rows, &classes, &mut probs, &mut nll])?;
        // Per-row losses summed on the host in row order, as the CPU does.
        let total = self.download_as(&nll)?.iter().sum();
        Ok((Self::wrap(probs), total))
    }

    fn softmax_xent_backward(&self, probs: &CudaBuf, labels: &[u32], classes: usize, scale: f64) -> Result<CudaBuf> {
        super::super::checks::labels(labels, probs.0.len() / classes.max(1), classes)?;
        let n = probs.0.len();
        let mut grad = self.alloc::<f32>(n)?;
        if n == 0 {
            return Ok(Self::wrap(grad));
        }
        let labels = self.upload_as(labels)?;
        let s = scale as f32;
        launch!(self, "softmax_xent_backward", launch::elementwise(n), [probs.slice(), &labels, &n, &classes, &s, &mut grad])?;
        Ok(Self::wrap(grad))
    }

    fn gram_lower(&self, acc: &mut CudaBuf, x: &CudaBuf, rows: usize, cols: usize, alpha: f64) -> Result<()> {
        if acc.0.len() != cols * cols || x.0.len() != rows * cols {
            return Err(Error::shape("gram_lower", format!("{rows}×{cols} input, accumulator of {}", acc.0.len())));
        }
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let g = launch::gram(rows, cols, self.dev.info.multiprocessors);
        let alpha = alpha as f32;
        let acc = self.make_mut(acc)?;
        launch!(self, "gram_lower_rows", g, [acc, x.slice(), &rows, &cols, &alpha])
    }

    fn gram_lower_patches(&self, acc: &mut CudaBuf, x: &CudaBuf, g: Window, alpha: f64) -> Result<()> {
        self.patch_gram(acc, x, g, alpha)
    }

    fn eigvalsh(&self, mats: &[(&CudaBuf, usize)]) -> Result<Vec<Vec<f64>>> {
        let (host, device): (Vec<usize>, Vec<usize>) = (0..mats.len()).partition(|&i| solver::on_host(mats[i].1));
        let mut out = vec![Vec::new(); mats.len()];
        for i in device {
            out[i] = self.eigvalsh_on_device(mats[i].0, mats[i].1)?;
        }
        let host_mats: Vec<(&CudaBuf, usize)> = host.iter().map(|&i| mats[i]).collect();
        for (i, values) in host.into_iter().zip(self.eigvalsh_on_host(&host_mats)?) {
            out[i] = values;
        }
        Ok(out)
    }

    fn count_positive(&self, x: &CudaBuf, rows: usize, cols: usize) -> Result<Vec<u32>> {
        if x.0.len() != rows * cols {
            return Err(Error::shape("count_positive", format!("{} elements for {rows}×{cols}", x.0.len())));
        }
        let mut counts = self.alloc_zeros::<u32>(cols)?;
        if rows > 0 && cols > 0 {
            launch!(self, "count_positive", launch::columns(rows, cols), [x.slice(), &rows, &cols, &mut counts])?;
        }
        self.download_as(&counts)
    }

    fn sample_labels(&self, logits: &CudaBuf, classes: usize, seed: u64, stream: u64) -> Result<Vec<u32>> {
        if classes == 0 || !logits.0.len().is_multiple_of(classes) {
            return Err(Error::shape("sample_labels", format!("{} logits for {classes} classes", logits.0.len())));
        }
        let rows = logits.0.len() / classes;
        let mut out = self.alloc::<u32>(rows)?;
        if rows > 0 {
            launch!(self, "sample_labels", launch::elementwise(rows), [logits.slice(), &rows, &classes, &seed, &stream, &mut out])?;
        }
        self.download_as(&out)
    }

    fn sgd_step(&self, param: &mut CudaBuf, grad: &CudaBuf, velocity: &mut CudaBuf, h: &SgdHyper) -> Result<()> {
        same_len("sgd_step", param, grad)?;
        same_len("sgd_step", param, velocity)?;
        let n = grad.0.len();
        if n == 0 {
            return Ok(());
        }
        let (lr, mu, wd) = (h.lr as f32, h.momentum as f32, h.weight_decay as f32);
        let (has_momentum, nesterov) = ((h.momentum != 0.0) as i32, h.nesterov as i32);
        let p = self.make_mut(param)?;
        let v = self.make_mut(velocity)?;
        launch!(self, "sgd_step", launch::elementwise(n), [p, grad.slice(), v, &n, &lr, &mu, &wd, &has_momentum, &nesterov])
    }

    fn adam_step(&self, param: &mut CudaBuf, grad: &CudaBuf, m: &mut CudaBuf, v: &mut CudaBuf, h: &AdamHyper) -> Result<()> {
        same_len("adam_step", param, grad)?;
        same_len("adam_step", param, m)?;
        same_len("adam_step", param, v)?;
        let n = grad.0.len();
        if n == 0 {
            return Ok(());
        }
        let (b1, b2, one_b1, one_b2) = (h.beta1 as f32, h.beta2 as f32, (1.0 - h.beta1) as f32, (1.0 - h.beta2) as f32);
        let wd = h.weight_decay as f32;
        let (c1, c2) = (1.0 - h.beta1.powi(h.step as i32), 1.0 - h.beta2.powi(h.step as i32));
        let (lr, eps) = (h.lr, h.eps);
        let p = self.make_mut(param)?;
        let m = self.make_mut(m)?;
        let v = self.make_mut(v)?;
        launch!(
            self,
            "adam_step",
            launch::elementwise(n),
            [p, grad.slice(), m, v, &n, &b1, &b2, &one_b1, &one_b2, &wd, &lr, &eps, &c1, &c2]
        )
    }
}
