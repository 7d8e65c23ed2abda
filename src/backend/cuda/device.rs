//! Finding a device and its libraries without panicking, and loading the
//! embedded kernels into it lazily (a file's PTX is JIT-compiled by the
//! driver the first time one of its kernels runs). Also how the context is
//! set up for one stream (no per-allocation events, a memory pool that keeps
//! what it frees) and torn down after a device fault (no panic).

use super::compat::{self, Library, BUILT_CUDA_MAJOR};
use super::conv::ConvPath;
use super::kernels::{self, Module};
use super::solver::Solver;
use super::trace::Trace;
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{self, CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, OnceLock};

/// What the driver reports about one device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_mem: usize,
    pub multiprocessors: usize,
    /// The driver's CUDA version as (major, minor).
    pub driver_version: (i32, i32),
}

fn driver_present() -> Result<()> {
    // SAFETY: only checks whether the shared library can be opened.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::CudaUnavailable(compat::missing_library(Library::Driver, BUILT_CUDA_MAJOR)))
    }
}

/// The driver's CUDA version, e.g. (12, 4).
pub fn driver_version() -> Result<(i32, i32)> {
    driver_present()?;
    let mut v = 0;
    // SAFETY: the library is present; v is a plain out-parameter.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    if r != CUresult::CUDA_SUCCESS {
        return Err(Error::CudaUnavailable(format!("cuDriverGetVersion: {r:?}")));
    }
    Ok((v / 1000, (v % 1000) / 10))
}

/// Whether the libcuda in use is kappa's CPU stand-in (tests/standin, a
/// test double that runs kernels on the host), told by a symbol only it
/// exports, so the doctor never lets it pass for a GPU.
pub fn standin() -> bool {
    // SAFETY: the library is present (checked first); only a symbol lookup, never called.
    driver_present().is_ok() && unsafe { cudarc::driver::sys::culib().get::<unsafe extern "C" fn()>(b"kappa_standin_in_bounds\0").is_ok() }
}

/// Which of the run-time libraries this backend opens are present, by name.
pub fn libraries() -> Vec<(&'static str, bool)> {
    // SAFETY: each only checks whether a shared library can be opened.
    unsafe {
        vec![
            ("libcuda (driver)", cudarc::driver::sys::is_culib_present()),
            ("libcublas (gemm)", cudarc::cublas::sys::is_culib_present()),
            ("libcusolver (eigvalsh)", cudarc::cusolver::sys::is_culib_present()),
            #[cfg(feature = "cudnn")]
            ("libcudnn (convolutions)", cudarc::cudnn::sys::is_culib_present()),
        ]
    }
}

/// Memory the default pool keeps after a stream sync instead of handing it
/// back to the driver (its default, 0, returns everything at every sync, so
/// each training step would allocate its activations from the driver again).
/// Keeping all of it is what a caching allocator does; one process per GPU.
pub const RELEASE_THRESHOLD: u64 = u64::MAX;

/// Sets a u64 attribute of the device's default memory pool (the one
/// stream-ordered allocations come from).
fn set_pool_attribute(ctx: &CudaContext, attr: sys::CUmemPool_attribute, mut value: u64) -> std::result::Result<(), DriverError> {
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: a plain out-parameter, then a u64 attribute of the pool just returned.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        sys::cuMemPoolSetAttribute(pool, attr, &mut value as *mut u64 as *mut std::ffi::c_void).result()
    }
}

fn pool_attribute(ctx: &CudaContext, attr: sys::CUmemPool_attribute) -> std::result::Result<u64, DriverError> {
    let (mut pool, mut value): (sys::CUmemoryPool, u64) = (std::ptr::null_mut(), 0);
    // SAFETY: as in set_pool_attribute.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        sys::cuMemPoolGetAttribute(pool, attr, &mut value as *mut u64 as *mut std::ffi::c_void).result()?;
    }
    Ok(value)
}

/// Sets up a fresh context for this backend's single stream.
fn configure(ctx: &CudaContext) -> std::result::Result<(), DriverError> {
    // SAFETY: every buffer is used on the one stream the Device owns, so
    // cudarc's cross-stream events (two per allocation) have nothing to order.
    // Called before the first allocation, so no buffer is half-tracked.
    unsafe { ctx.disable_event_tracking() };
    set_pool_attribute(ctx, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, RELEASE_THRESHOLD)
}

fn context(ordinal: usize) -> Result<(Arc<CudaContext>, DeviceInfo)> {
    driver_present()?;
    compat::check_driver(BUILT_CUDA_MAJOR, driver_version()?).map_err(Error::CudaUnavailable)?;
    let err = |e: DriverError| Error::CudaUnavailable(format!("cuda:{ordinal}: {e}"));
    let count = CudaContext::device_count().map_err(err)?;
    if ordinal >= count.max(0) as usize {
        return Err(Error::CudaUnavailable(format!("cuda:{ordinal} requested, but the driver sees {count} device(s)")));
    }
    let ctx = CudaContext::new(ordinal).map_err(err)?;
    configure(&ctx).map_err(err)?;
    let info = DeviceInfo {
        ordinal,
        name: ctx.name().map_err(err)?,
        compute_capability: ctx.compute_capability().map_err(err)?,
        total_mem: ctx.total_mem().map_err(err)?,
        multiprocessors: ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(err)?.max(1) as usize,
        driver_version: driver_version()?,
    };
    Ok((ctx, info))
}

/// Looks up device `ordinal`, returning an error (never panicking) when the
/// driver library is missing or the device does not exist.
pub fn probe(ordinal: usize) -> Result<DeviceInfo> {
    context(ordinal).map(|(_, info)| info)
}

/// One device's context, stream, library handles and loaded kernels. The
/// library handles are dropped by hand (see `Drop`).
pub struct Device {
    pub info: DeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: ManuallyDrop<CudaBlas>,
    /// What runs the convolutions (see [`ConvPath`]); without cuDNN, im2col always.
    #[cfg(feature = "cudnn")]
    pub conv: ConvPath,
    /// cuDNN, loaded on first use, or why it did not load (warned once).
    #[cfg(feature = "cudnn")]
    dnn: OnceLock<std::result::Result<super::dnn::Dnn, String>>,
    solver: ManuallyDrop<OnceLock<Solver>>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// The stream's timeline while `kappa profile gpu` traces a step.
    pub trace: Trace,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda:{} ({})", self.info.ordinal, self.info.name)
    }
}

/// What to do with the library handles when the device closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// The stream drained cleanly: destroy them.
    Release,
    /// The context holds a sticky fault (an illegal address, a failed
    /// launch): their destroy calls fail, and cudarc's destructors unwrap
    /// that failure, a panic at exit. Leak them; the process is ending or
    /// the context is unusable anyway.
    Leak,
}

/// The teardown after the final synchronisation returned `sync`.
pub fn teardown(sync: std::result::Result<(), CUresult>) -> Teardown {
    match sync {
        Ok(()) => Teardown::Release,
        Err(_) => Teardown::Leak,
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let sync = self.ctx.bind_to_thread().and_then(|()| self.stream.synchronize()).map_err(|e| e.0);
        if teardown(sync) == Teardown::Release {
            // SAFETY: each handle is dropped once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.blas);
                ManuallyDrop::drop(&mut self.solver);
            }
        }
    }
}

impl Device {
    pub fn open(ordinal: usize, conv: ConvPath) -> Result<Self> {
        #[cfg(not(feature = "cudnn"))]
        let _ = conv; // one path only: im2col + cuBLAS
        let (ctx, info) = context(ordinal)?;
        let nvcc = compat::nvcc_release(kernels::NVCC_VERSION);
        compat::check_ptx(nvcc, info.driver_version).map_err(Error::CudaUnavailable)?;
        // SAFETY: only checks whether the shared library can be opened.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::CudaUnavailable(compat::missing_library(Library::Cublas, BUILT_CUDA_MAJOR)));
        }
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::CudaUnavailable(format!("cuBLAS on cuda:{ordinal}: {e:?}")))?;
        Ok(Device {
            info,
            ctx,
            stream,
            blas: ManuallyDrop::new(blas),
            #[cfg(feature = "cudnn")]
            conv,
            #[cfg(feature = "cudnn")]
            dnn: OnceLock::new(),
            solver: ManuallyDrop::new(OnceLock::new()),
            modules: Mutex::default(),
            functions: Mutex::default(),
            trace: Trace::default(),
        })
    }

    /// The cuSOLVER handle, created (and its library probed) on first use.
    pub fn solver(&self) -> Result<&Solver> {
        if let Some(s) = self.solver.get() {
            return Ok(s);
        }
        let s = Solver::new(self.stream.clone())?;
        Ok(self.solver.get_or_init(|| s))
    }

    /// cuDNN, created (and its library probed) on first use, so a model
    /// without convolutions runs where libcudnn is missing; a failed load is
    /// kept with its reason, and warned about once.
    #[cfg(feature = "cudnn")]
    pub fn dnn(&self) -> std::result::Result<&super::dnn::Dnn, &str> {
        self.dnn
            .get_or_init(|| {
                super::dnn::Dnn::new(&self.ctx, &self.stream, self.info.total_mem)
                    .map_err(|e| e.to_string())
                    .inspect_err(|e| eprintln!("warning: {e}; convolutions run as im2col + cuBLAS"))
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// cuDNN for the convolutions, when the path asks for it and it loads;
    /// otherwise None, and im2col + cuBLAS runs.
    #[cfg(feature = "cudnn")]
    pub fn conv_dnn(&self) -> Option<&super::dnn::Dnn> {
        (self.conv == ConvPath::Cudnn).then(|| self.dnn().ok()).flatten()
    }

    /// Kernel `name`, loading its file's PTX into the context on first use.
    pub fn function(&self, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap().get(name) {
            return Ok(f.clone());
        }
        let module = kernels::module_of(name).ok_or_else(|| Error::Backend(format!("no kernel named {name} was compiled")))?;
        let loaded = self.module(module)?;
        let f = loaded.load_function(name).map_err(|e| self.error(name, e))?;
        self.functions.lock().unwrap().insert(name, f.clone());
        Ok(f)
    }

    fn module(&self, m: &'static Module) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(loaded) = modules.get(m.name) {
            return Ok(loaded.clone());
        }
        let loaded = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(m.ptx)).map_err(|e| self.load_error(m, e))?;
        modules.insert(m.name, loaded.clone());
        Ok(loaded)
    }

    fn load_error(&self, m: &Module, e: DriverError) -> Error {
        let (major, minor) = self.info.driver_version;
        match e.0 {
            CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION | CUresult::CUDA_ERROR_INVALID_PTX | CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU => {
                Error::CudaUnavailable(format!(
                    "the driver (CUDA {major}.{minor}) cannot load kernels/{}.cu, compiled by {} for {}: {e}. Rebuild with an nvcc no \
                     newer than the driver (set NVCC or CUDA_HOME), or update the driver",
                    m.name,
                    kernels::NVCC_VERSION,
                    kernels::PTX_ARCH
                ))
            }
            _ => self.error(m.name, e),
        }
    }

    /// Bytes in use at the peak since the last [`Device::reset_peak_memory`]
    /// (the pool's high-water mark: what the allocations needed at most).
    pub fn peak_memory(&self) -> Result<u64> {
        pool_attribute(&self.ctx, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH).map_err(|e| self.error("memory pool", e))
    }

    /// Starts a new peak (the driver accepts only 0 for the high-water mark).
    pub fn reset_peak_memory(&self) -> Result<()> {
        set_pool_attribute(&self.ctx, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0).map_err(|e| self.error("memory pool", e))
    }

    /// A device attribute, as the driver reports it.
    pub fn attribute(&self, attr: CUdevice_attribute) -> Result<i32> {
        self.ctx.attribute(attr).map_err(|e| self.error("attribute", e))
    }

    /// A driver error of operation `op` on this device.
    pub fn error(&self, op: &str, e: DriverError) -> Error {
        Error::Backend(format!("cuda:{} {op}: {e}", self.info.ordinal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_leaked_only_after_a_fault() {
        assert_eq!(teardown(Ok(())), Teardown::Release);
        for fault in [CUresult::CUDA_ERROR_ILLEGAL_ADDRESS, CUresult::CUDA_ERROR_LAUNCH_FAILED, CUresult::CUDA_ERROR_CONTEXT_IS_DESTROYED] {
            assert_eq!(teardown(Err(fault)), Teardown::Leak, "{fault:?}");
        }
    }
}
