//! cuDNN convolutions (feature `cudnn`): forward, backward-data and
//! backward-filter through cuDNN's legacy API in f32 with FMA math (no TF32,
//! so results stay within the CPU comparison's tolerance). Each direction
//! keeps, per shape, the algorithms `cudnnGet*Algorithm_v7`'s heuristics rank
//! whose workspace fits a cap, best first, cached with the shape's
//! descriptors (keyed by the window and `c_out`). An algorithm that fails at
//! run time is dropped for that shape and the next one runs; when none is
//! left, the caller runs the im2col + cuBLAS path instead, after one warning.
//!
//! The descriptor dimensions and strides, the workspace cap, the candidate
//! lists, the fallback order and the version decoding are pure functions,
//! tested without a GPU.

use crate::backend::Window;
use crate::error::{Error, Result};

/// cuDNN's view of one convolution, as `c_int`s: dims and strides of the
/// NCHW input and output, the filter's `[c_out, c, kh, kw]`, pad and stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDescriptor {
    pub x: [i32; 4],
    pub x_strides: [i32; 4],
    pub w: [i32; 4],
    pub y: [i32; 4],
    pub y_strides: [i32; 4],
    pub pad: [i32; 2],
    pub stride: [i32; 2],
}

/// Strides of a packed NCHW tensor: the trait's layout.
pub fn packed_strides([_, c, h, w]: [i32; 4]) -> [i32; 4] {
    [c * h * w, h * w, w, 1]
}

/// The descriptors of `g` with `c_out` output channels; an error when a
/// tensor exceeds cuDNN's 32-bit indexing.
pub fn describe(g: &Window, c_out: usize) -> Result<ConvDescriptor> {
    let (oh, ow) = g.out("conv2d")?;
    let int = |v: usize| {
        i32::try_from(v).map_err(|_| Error::shape("conv2d", format!("{g:?} with {c_out} output channels exceeds cuDNN's 32-bit indexing")))
    };
    // Whole tensors, not only their dims, must be addressable with an int.
    int(g.n.max(1) * g.image_len())?;
    int(g.n.max(1) * c_out * oh * ow)?;
    int(c_out * g.patch_len())?;
    let x = [int(g.n)?, int(g.c)?, int(g.h)?, int(g.w)?];
    let y = [int(g.n)?, int(c_out)?, int(oh)?, int(ow)?];
    Ok(ConvDescriptor {
        x,
        x_strides: packed_strides(x),
        w: [int(c_out)?, int(g.c)?, int(g.kh)?, int(g.kw)?],
        y,
        y_strides: packed_strides(y),
        pad: [int(g.pad)?; 2],
        stride: [int(g.stride)?; 2],
    })
}

/// Most workspace (bytes) one cuDNN conv may use.
pub const WORKSPACE_MAX: usize = 512 << 20;

/// The workspace cap on a device with `total_mem` bytes: a sixteenth of it,
/// at most [`WORKSPACE_MAX`], so activations keep the memory.
pub fn workspace_cap(total_mem: usize) -> usize {
    (total_mem / 16).min(WORKSPACE_MAX)
}

/// One algorithm as cuDNN's heuristics report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<A> {
    pub algo: A,
    pub supported: bool,
    pub workspace: usize,
}

/// Those of `ranked` (cuDNN lists the expected fastest first) that support
/// the shape and whose workspace fits `cap`, in cuDNN's order.
pub fn usable<A: Copy>(ranked: impl IntoIterator<Item = Candidate<A>>, cap: usize) -> Vec<Candidate<A>> {
    ranked.into_iter().filter(|c| c.supported && c.workspace <= cap).collect()
}

/// Runs the first of `candidates` that succeeds, dropping each that fails
/// (for good: the failure is a property of the shape and algorithm) with its
/// error; None when every one failed or none was left, the caller's cue to
/// fall back.
pub fn first_success<A: Copy, T, E>(
    candidates: &mut Vec<Candidate<A>>,
    mut run: impl FnMut(Candidate<A>) -> std::result::Result<T, E>,
    mut failed: impl FnMut(Candidate<A>, E),
) -> Option<T> {
    while let Some(&c) = candidates.first() {
        match run(c) {
            Ok(t) => return Some(t),
            Err(e) => {
                candidates.remove(0);
                failed(c, e);
            }
        }
    }
    None
}

/// Prints `message` to stderr the first time the flag is seen unset; true then.
pub fn warn_once(flag: &std::sync::atomic::AtomicBool, message: &str) -> bool {
    let first = !flag.swap(true, std::sync::atomic::Ordering::Relaxed);
    if first {
        eprintln!("warning: {message}");
    }
    first
}

/// `cudnnGetVersion`'s number as (major, minor, patch): 9.x counts
/// `major·10000 + minor·100 + patch`, 8.x and older `major·1000 + minor·100 + patch`.
pub fn decode_version(v: usize) -> (usize, usize, usize) {
    if v >= 90000 {
        (v / 10000, v / 100 % 100, v % 100)
    } else {
        (v / 1000, v / 100 % 10, v % 100)
    }
}

#[cfg(feature = "cudnn")]
pub use device::Dnn;

#[cfg(feature = "cudnn")]
mod device {
    use super::super::compat::{self, Library, BUILT_CUDA_MAJOR};
    use super::super::device::Device;
    use super::*;
    use cudarc::cudnn::result::{self, CudnnError};
    use cudarc::cudnn::sys;
    use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
    use std::collections::hash_map::{Entry, HashMap};
    use std::ffi::c_void;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
    use sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS;

    fn dnn_err(what: &'static str) -> impl Fn(CudnnError) -> Error {
        move |e| Error::Backend(format!("cuDNN {what}: {e:?}"))
    }

    /// Raw cuDNN objects, destroyed when dropped (a failure to destroy only leaks).
    macro_rules! owned {
        ($name:ident, $raw:ty, $destroy:path) => {
            struct $name($raw);
            impl Drop for $name {
                fn drop(&mut self) {
                    // SAFETY: created by this wrapper's owner and destroyed only here.
                    let _ = unsafe { $destroy(self.0) };
                }
            }
        };
    }
    owned!(Handle, sys::cudnnHandle_t, result::destroy_handle);
    owned!(Tensor, sys::cudnnTensorDescriptor_t, result::destroy_tensor_descriptor);
    owned!(Filter, sys::cudnnFilterDescriptor_t, result::destroy_filter_descriptor);
    owned!(Conv, sys::cudnnConvolutionDescriptor_t, result::destroy_convolution_descriptor);

    fn tensor(dims: [i32; 4], strides: [i32; 4]) -> Result<Tensor> {
        let t = Tensor(result::create_tensor_descriptor().map_err(dnn_err("tensor descriptor"))?);
        // SAFETY: a descriptor just created.
        unsafe { result::set_tensor4d_descriptor_ex(t.0, CUDNN_DATA_FLOAT, dims, strides) }.map_err(dnn_err("tensor descriptor"))?;
        Ok(t)
    }

    /// One shape's descriptors and, per direction, the algorithms still to
    /// try, best first (empty: none fits the cap, or all failed).
    struct Plan {
        x: Tensor,
        y: Tensor,
        w: Filter,
        conv: Conv,
        forward: Vec<Candidate<sys::cudnnConvolutionFwdAlgo_t>>,
        data: Vec<Candidate<sys::cudnnConvolutionBwdDataAlgo_t>>,
        filter: Vec<Candidate<sys::cudnnConvolutionBwdFilterAlgo_t>>,
    }

    /// Asks cuDNN's `_v7` heuristics for up to `N` ranked algorithms.
    fn ranked<P: Copy, A>(
        query: impl FnOnce(i32, *mut i32, *mut P) -> std::result::Result<(), CudnnError>,
        fields: impl Fn(&P) -> Candidate<A>,
    ) -> Result<Vec<Candidate<A>>> {
        const N: usize = 8;
        // SAFETY: the perf structs are plain C data, for which all-zero bytes are valid (algorithm 0, success).
        let mut perf = [unsafe { std::mem::zeroed::<P>() }; N];
        let mut returned = 0i32;
        query(N as i32, &mut returned, perf.as_mut_ptr()).map_err(dnn_err("algorithm heuristics"))?;
        Ok(perf[..(returned.max(0) as usize).min(N)].iter().map(fields).collect())
    }

    impl Plan {
        fn new(handle: sys::cudnnHandle_t, g: &Window, c_out: usize, cap: usize) -> Result<Plan> {
            let d = describe(g, c_out)?;
            let (x, y) = (tensor(d.x, d.x_strides)?, tensor(d.y, d.y_strides)?);
            let w = Filter(result::create_filter_descriptor().map_err(dnn_err("filter descriptor"))?);
            let conv = Conv(result::create_convolution_descriptor().map_err(dnn_err("convolution descriptor"))?);
            // SAFETY: descriptors just created; dims as `describe` derived them.
            unsafe {
                result::set_filter4d_descriptor(w.0, CUDNN_DATA_FLOAT, sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, d.w)
                    .map_err(dnn_err("filter descriptor"))?;
                let ([ph, pw], [sh, sw]) = (d.pad, d.stride);
                let mode = sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION;
                result::set_convolution2d_descriptor(conv.0, ph, pw, sh, sw, 1, 1, mode, CUDNN_DATA_FLOAT)
                    .map_err(dnn_err("convolution descriptor"))?;
                result::set_convolution_math_type(conv.0, sys::cudnnMathType_t::CUDNN_FMA_MATH).map_err(dnn_err("math type"))?;
            }
            // SAFETY (the three queries): live handle and descriptors; the
            // output arrays hold the N entries requested.
            let forward = ranked(
                |n, ret, perf| unsafe { result::get_convolution_forward_algorithm(handle, x.0, w.0, conv.0, y.0, n, ret, perf) },
                |p: &sys::cudnnConvolutionFwdAlgoPerf_t| Candidate {
                    algo: p.algo,
                    supported: p.status == CUDNN_STATUS_SUCCESS,
                    workspace: p.memory,
                },
            )?;
            let data = ranked(
                |n, ret, perf| unsafe { result::get_convolution_backward_data_algorithm(handle, w.0, y.0, conv.0, x.0, n, ret, perf) },
                |p: &sys::cudnnConvolutionBwdDataAlgoPerf_t| Candidate {
                    algo: p.algo,
                    supported: p.status == CUDNN_STATUS_SUCCESS,
                    workspace: p.memory,
                },
            )?;
            let filter = ranked(
                |n, ret, perf| unsafe { result::get_convolution_backward_filter_algorithm(handle, x.0, y.0, conv.0, w.0, n, ret, perf) },
                |p: &sys::cudnnConvolutionBwdFilterAlgoPerf_t| Candidate {
                    algo: p.algo,
                    supported: p.status == CUDNN_STATUS_SUCCESS,
                    workspace: p.memory,
                },
            )?;
            Ok(Plan { forward: usable(forward, cap), data: usable(data, cap), filter: usable(filter, cap), x, y, w, conv })
        }
    }

    struct State {
        handle: Handle,
        plans: HashMap<[usize; 9], Plan>,
        /// One workspace, grown to the largest chosen algorithm's need and
        /// reused: every call runs on the one stream, in order.
        workspace: Option<CudaSlice<u8>>,
    }

    // SAFETY: cuDNN handles and descriptors may be used from any thread, one
    // thread at a time (cuDNN's thread-safety rule); State is only reached
    // through Dnn's mutex, with the device's context bound first.
    unsafe impl Send for State {}

    /// The cuDNN handle of one device, its plans and workspace.
    pub struct Dnn {
        state: Mutex<State>,
        cap: usize,
        pub version: (usize, usize, usize),
        /// Set once a shape has fallen back to im2col (one warning per device).
        warned: AtomicBool,
    }

    const ONE: f32 = 1.0;
    const ZERO: f32 = 0.0;

    impl Dnn {
        /// Probes libcudnn (a typed error naming it when missing or older
        /// than the bindings), then creates a handle on `stream`.
        pub fn new(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>, total_mem: usize) -> Result<Self> {
            // SAFETY: only checks whether the shared library can be opened.
            if !unsafe { sys::is_culib_present() } {
                return Err(Error::CudaUnavailable(compat::missing_library(Library::Cudnn, BUILT_CUDA_MAJOR)));
            }
            let version = decode_version(result::get_version());
            if version.0 < 9 {
                return Err(Error::CudaUnavailable(format!(
                    "libcudnn {}.{}.{} was found, but this build's cuDNN bindings need cuDNN 9",
                    version.0, version.1, version.2
                )));
            }
            ctx.bind_to_thread().map_err(|e| Error::CudaUnavailable(format!("cuDNN: {e}")))?;
            let handle = Handle(result::create_handle().map_err(|e| Error::CudaUnavailable(format!("cuDNN handle: {e:?}")))?);
            // SAFETY: a live handle and this device's stream, which outlives it (the Device owns both).
            unsafe { result::set_stream(handle.0, stream.cu_stream() as sys::cudaStream_t) }.map_err(dnn_err("set stream"))?;
            let state = State { handle, plans: HashMap::new(), workspace: None };
            Ok(Dnn { state: Mutex::new(state), cap: workspace_cap(total_mem), version, warned: AtomicBool::new(false) })
        }

        /// Runs `f` with the handle, the plan of `(g, c_out)` (made on first
        /// use), the first algorithm left in the list `pick` selects and a
        /// workspace of the bytes it needs, dropping algorithms that fail;
        /// false when none is left (the caller falls back to im2col + cuBLAS,
        /// warned about once per device).
        fn with_plan<A: Copy + std::fmt::Debug>(
            &self,
            dev: &Device,
            (g, c_out): (Window, usize),
            pick: impl Fn(&mut Plan) -> &mut Vec<Candidate<A>>,
            mut f: impl FnMut(sys::cudnnHandle_t, &Plan, Candidate<A>, *mut c_void) -> Result<()>,
        ) -> Result<bool> {
            let mut state = self.state.lock().map_err(|_| Error::Backend("cuDNN state poisoned by an earlier panic".into()))?;
            let State { handle, plans, workspace } = &mut *state;
            dev.ctx.bind_to_thread().map_err(|e| dev.error("cuDNN", e))?;
            let key = [g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, c_out];
            let plan = match plans.entry(key) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(Plan::new(handle.0, &g, c_out, self.cap)?),
            };
            let mut left = std::mem::take(pick(plan));
            let had_any = !left.is_empty();
            let mut errors = Vec::new();
            let ran = first_success(
                &mut left,
                |algo| {
                    if algo.workspace > workspace.as_ref().map_or(0, |w| w.len()) {
                        *workspace = None; // freed before its successor is allocated
                        *workspace = Some(dev.stream.alloc_zeros::<u8>(algo.workspace).map_err(|e| dev.error("cuDNN workspace", e))?);
                    }
                    match workspace.as_mut().filter(|_| algo.workspace > 0) {
                        Some(ws) => {
                            let (p, _record) = ws.device_ptr_mut(&dev.stream);
                            f(handle.0, plan, algo, p as *mut c_void)
                        }
                        None => f(handle.0, plan, algo, std::ptr::null_mut()),
                    }
                },
                |algo, e| errors.push(format!("{:?}: {e}", algo.algo)),
            );
            *pick(plan) = left;
            if ran.is_none() {
                let why = match had_any {
                    true => format!("every algorithm failed ({})", errors.join("; ")),
                    false => format!("no algorithm fits the {} MiB workspace cap", self.cap >> 20),
                };
                warn_once(
                    &self.warned,
                    &format!(
                        "cuDNN cannot run a convolution of {g:?} with {c_out} output channels: {why}; such shapes run as im2col + cuBLAS"
                    ),
                );
            }
            Ok(ran.is_some())
        }

        /// `y = conv(x, w)`; false when no algorithm fits the cap.
        pub fn forward(
            &self,
            dev: &Device,
            x: &CudaSlice<f32>,
            w: &CudaSlice<f32>,
            y: &mut CudaSlice<f32>,
            g: Window,
            c_out: usize,
        ) -> Result<bool> {
            self.with_plan(
                dev,
                (g, c_out),
                |p| &mut p.forward,
                |h, p, c, ws| {
                    let s = &dev.stream;
                    let ((px, _rx), (pw, _rw), (py, _ry)) = (x.device_ptr(s), w.device_ptr(s), y.device_ptr_mut(s));
                    // SAFETY: the descriptors describe these buffers (the caller checked their
                    // lengths against the same window); the workspace holds c.workspace bytes.
                    unsafe {
                        result::convolution_forward(
                            h,
                            &ONE as *const f32 as *const c_void,
                            p.x.0,
                            px as *const c_void,
                            p.w.0,
                            pw as *const c_void,
                            p.conv.0,
                            c.algo,
                            ws,
                            c.workspace,
                            &ZERO as *const f32 as *const c_void,
                            p.y.0,
                            py as *mut c_void,
                        )
                    }
                    .map_err(dnn_err("convolution forward"))
                },
            )
        }

        /// `dx` of the conv from `dy`; false when no algorithm fits the cap.
        pub fn backward_data(
            &self,
            dev: &Device,
            dy: &CudaSlice<f32>,
            w: &CudaSlice<f32>,
            dx: &mut CudaSlice<f32>,
            g: Window,
            c_out: usize,
        ) -> Result<bool> {
            self.with_plan(
                dev,
                (g, c_out),
                |p| &mut p.data,
                |h, p, c, ws| {
                    let s = &dev.stream;
                    let ((pdy, _rdy), (pw, _rw), (pdx, _rdx)) = (dy.device_ptr(s), w.device_ptr(s), dx.device_ptr_mut(s));
                    // SAFETY: as in `forward`.
                    unsafe {
                        result::convolution_backward_data(
                            h,
                            &ONE as *const f32 as *const c_void,
                            p.w.0,
                            pw as *const c_void,
                            p.y.0,
                            pdy as *const c_void,
                            p.conv.0,
                            c.algo,
                            ws,
                            c.workspace,
                            &ZERO as *const f32 as *const c_void,
                            p.x.0,
                            pdx as *mut c_void,
                        )
                    }
                    .map_err(dnn_err("convolution backward data"))
                },
            )
        }

        /// `dw` of the conv from `dy` and `x`; false when no algorithm fits the cap.
        pub fn backward_filter(
            &self,
            dev: &Device,
            dy: &CudaSlice<f32>,
            x: &CudaSlice<f32>,
            dw: &mut CudaSlice<f32>,
            g: Window,
            c_out: usize,
        ) -> Result<bool> {
            self.with_plan(
                dev,
                (g, c_out),
                |p| &mut p.filter,
                |h, p, c, ws| {
                    let s = &dev.stream;
                    let ((pdy, _rdy), (px, _rx), (pdw, _rdw)) = (dy.device_ptr(s), x.device_ptr(s), dw.device_ptr_mut(s));
                    // SAFETY: as in `forward`.
                    unsafe {
                        result::convolution_backward_filter(
                            h,
                            &ONE as *const f32 as *const c_void,
                            p.x.0,
                            px as *const c_void,
                            p.y.0,
                            pdy as *const c_void,
                            p.conv.0,
                            c.algo,
                            ws,
                            c.workspace,
                            &ZERO as *const f32 as *const c_void,
                            p.w.0,
                            pdw as *mut c_void,
                        )
                    }
                    .map_err(dnn_err("convolution backward filter"))
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_address_the_nchw_buffers_the_trait_uses() {
        let g = Window { n: 3, c: 5, h: 7, w: 6, kh: 3, kw: 2, stride: 2, pad: 1 };
        let d = describe(&g, 4).unwrap();
        assert_eq!((d.x, d.w, d.y), ([3, 5, 7, 6], [4, 5, 3, 2], [3, 4, 4, 4]));
        assert_eq!((d.pad, d.stride), ([1, 1], [2, 2]));
        // Element (n, c, h, w) at the flat NCHW index, for every element.
        for (dims, strides) in [(d.x, d.x_strides), (d.y, d.y_strides)] {
            let mut flat = 0;
            for n in 0..dims[0] {
                for c in 0..dims[1] {
                    for h in 0..dims[2] {
                        for w in 0..dims[3] {
                            assert_eq!(n * strides[0] + c * strides[1] + h * strides[2] + w * strides[3], flat);
                            flat += 1;
                        }
                    }
                }
            }
        }
        let (oh, ow) = g.out("test").unwrap();
        assert_eq!((d.y[2] as usize, d.y[3] as usize), (oh, ow));
    }

    #[test]
    fn tensors_beyond_32_bit_indexing_are_shape_errors() {
        let g = Window { n: 1 << 12, c: 64, h: 128, w: 128, kh: 3, kw: 3, stride: 1, pad: 1 };
        assert!(describe(&g, 64).unwrap_err().to_string().contains("32-bit"));
        assert!(describe(&Window { n: 1, ..g }, 64).is_ok());
        assert!(describe(&Window { kh: 200, ..g }, 1).is_err(), "a window that does not fit");
    }

    #[test]
    fn the_workspace_cap_scales_with_memory_up_to_a_ceiling() {
        assert_eq!(workspace_cap(4 << 30), 256 << 20);
        assert_eq!(workspace_cap(80 << 30), WORKSPACE_MAX);
        assert_eq!(workspace_cap(0), 0);
    }

    fn c(algo: u8, supported: bool, workspace: usize) -> Candidate<u8> {
        Candidate { algo, supported, workspace }
    }

    #[test]
    fn the_candidates_are_the_supported_ones_within_the_cap_in_cudnns_order() {
        let ranked = [c(6, true, 900), c(1, false, 0), c(2, true, 100), c(0, true, 0)];
        let algos = |cap| usable(ranked, cap).iter().map(|c| c.algo).collect::<Vec<_>>();
        assert_eq!(algos(1000), [6, 2, 0]);
        assert_eq!(algos(500), [2, 0]);
        assert_eq!(algos(0), [0]);
        assert!(usable([c(1, false, 0), c(2, true, 10)], 5).is_empty());
    }

    #[test]
    fn failing_algorithms_fall_through_to_the_next_then_to_none() {
        let mut left = vec![c(6, true, 0), c(2, true, 0), c(0, true, 0)];
        let mut failed = Vec::new();
        let ran = first_success(&mut left, |c| if c.algo == 0 { Ok(c.algo) } else { Err("bad") }, |c, e| failed.push((c.algo, e)));
        assert_eq!(ran, Some(0));
        assert_eq!(failed, [(6, "bad"), (2, "bad")]);
        assert_eq!(left, [c(0, true, 0)], "the failures are dropped for good, the success kept");
        // Next call: straight to the algorithm that worked.
        let mut calls = 0;
        assert_eq!(
            first_success(
                &mut left,
                |c| {
                    calls += 1;
                    Ok::<_, ()>(c.algo)
                },
                |_, _| ()
            ),
            Some(0)
        );
        assert_eq!(calls, 1);
        let ran = first_success(&mut left, |_| Err::<u8, _>("device"), |_, _| ());
        assert_eq!((ran, left.len()), (None, 0), "all failed: the caller falls back");
    }

    #[test]
    fn the_fallback_warning_is_printed_once() {
        let flag = std::sync::atomic::AtomicBool::new(false);
        assert!(warn_once(&flag, "first"));
        assert!(!warn_once(&flag, "second"));
    }

    #[test]
    fn versions_decode_in_both_numbering_schemes() {
        assert_eq!(decode_version(90201), (9, 2, 1));
        assert_eq!(decode_version(91000), (9, 10, 0));
        assert_eq!(decode_version(8907), (8, 9, 7));
    }
}
