//! cuDNN convolutions (feature `cudnn`): forward, backward-data and
//! backward-filter through cuDNN's legacy API in f32 with FMA math (no TF32,
//! so results stay within the CPU comparison's tolerance). Each direction's
//! algorithm is the first that `cudnnGet*Algorithm_v7`'s heuristics rank
//! among those whose workspace fits a cap; it is chosen once per shape and
//! cached with the shape's descriptors, keyed by the window and `c_out`. When
//! nothing fits, the caller runs the im2col + cuBLAS path instead.
//!
//! The descriptor dimensions and strides, the workspace cap, the choice and
//! the version decoding are pure functions, tested without a GPU.

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

/// The first of `ranked` (cuDNN lists the expected fastest first) that
/// supports the shape and whose workspace fits `cap`.
pub fn choose<A: Copy>(ranked: impl IntoIterator<Item = Candidate<A>>, cap: usize) -> Option<Candidate<A>> {
    ranked.into_iter().find(|c| c.supported && c.workspace <= cap)
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
    use super::super::device::Device;
    use super::*;
    use cudarc::cudnn::result::{self, CudnnError};
    use cudarc::cudnn::sys;
    use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
    use std::collections::HashMap;
    use std::ffi::c_void;
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

    /// One shape's descriptors and, per direction, the chosen algorithm
    /// (None: none fits the workspace cap).
    struct Plan {
        x: Tensor,
        y: Tensor,
        w: Filter,
        conv: Conv,
        forward: Option<Candidate<sys::cudnnConvolutionFwdAlgo_t>>,
        data: Option<Candidate<sys::cudnnConvolutionBwdDataAlgo_t>>,
        filter: Option<Candidate<sys::cudnnConvolutionBwdFilterAlgo_t>>,
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
            Ok(Plan { forward: choose(forward, cap), data: choose(data, cap), filter: choose(filter, cap), x, y, w, conv })
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
    }

    const ONE: f32 = 1.0;
    const ZERO: f32 = 0.0;

    impl Dnn {
        /// Probes libcudnn (a typed error naming it when missing or older
        /// than the bindings), then creates a handle on `stream`.
        pub fn new(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>, total_mem: usize) -> Result<Self> {
            // SAFETY: only checks whether the shared library can be opened.
            if !unsafe { sys::is_culib_present() } {
                return Err(Error::CudaUnavailable(
                    "libcudnn (cuDNN, for convolutions) was not found; install cuDNN 9, or build without the `cudnn` feature".into(),
                ));
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
            Ok(Dnn { state: Mutex::new(state), cap: workspace_cap(total_mem), version })
        }

        /// Runs `f` with the handle, the plan of `(g, c_out)` (made on first
        /// use), the algorithm `pick` takes from it and a workspace of the
        /// bytes that algorithm needs; false when `pick` finds none (no
        /// algorithm fits the cap).
        fn with_plan<A: Copy>(
            &self,
            dev: &Device,
            (g, c_out): (Window, usize),
            pick: impl Fn(&Plan) -> Option<Candidate<A>>,
            f: impl FnOnce(sys::cudnnHandle_t, &Plan, Candidate<A>, *mut c_void) -> Result<()>,
        ) -> Result<bool> {
            let mut state = self.state.lock().map_err(|_| Error::Backend("cuDNN state poisoned by an earlier panic".into()))?;
            let state = &mut *state;
            dev.ctx.bind_to_thread().map_err(|e| dev.error("cuDNN", e))?;
            let key = [g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, c_out];
            if !state.plans.contains_key(&key) {
                let plan = Plan::new(state.handle.0, &g, c_out, self.cap)?;
                state.plans.insert(key, plan);
            }
            let plan = &state.plans[&key];
            let Some(algo) = pick(plan) else { return Ok(false) };
            if algo.workspace > state.workspace.as_ref().map_or(0, |w| w.len()) {
                state.workspace = None; // freed before its successor is allocated
                state.workspace = Some(dev.stream.alloc_zeros::<u8>(algo.workspace).map_err(|e| dev.error("cuDNN workspace", e))?);
            }
            match state.workspace.as_mut().filter(|_| algo.workspace > 0) {
                Some(ws) => {
                    let (p, _record) = ws.device_ptr_mut(&dev.stream);
                    f(state.handle.0, plan, algo, p as *mut c_void)?
                }
                None => f(state.handle.0, plan, algo, std::ptr::null_mut())?,
            }
            Ok(true)
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
                |p| p.forward,
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
                |p| p.data,
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
                |p| p.filter,
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

    #[test]
    fn the_choice_is_the_first_supported_candidate_within_the_cap() {
        let c = |algo: u8, supported, workspace| Candidate { algo, supported, workspace };
        let ranked = [c(6, true, 900), c(1, false, 0), c(2, true, 100), c(0, true, 0)];
        assert_eq!(choose(ranked, 1000).map(|c| c.algo), Some(6));
        assert_eq!(choose(ranked, 500).map(|c| c.algo), Some(2));
        assert_eq!(choose(ranked, 0).map(|c| c.algo), Some(0));
        assert_eq!(choose([c(1, false, 0), c(2, true, 10)], 5), None);
    }

    #[test]
    fn versions_decode_in_both_numbering_schemes() {
        assert_eq!(decode_version(90201), (9, 2, 1));
        assert_eq!(decode_version(91000), (9, 10, 0));
        assert_eq!(decode_version(8907), (8, 9, 7));
    }
}
