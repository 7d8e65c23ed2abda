//! Finding a device and its libraries without panicking, and loading the
//! embedded kernels into it lazily (a file's PTX is JIT-compiled by the
//! driver the first time one of its kernels runs).

use super::kernels::{self, Module};
use super::solver::Solver;
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use std::collections::HashMap;
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
        Err(Error::CudaUnavailable("libcuda (the NVIDIA driver library) was not found on this machine".into()))
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

fn context(ordinal: usize) -> Result<(Arc<CudaContext>, DeviceInfo)> {
    driver_present()?;
    let err = |e: DriverError| Error::CudaUnavailable(format!("cuda:{ordinal}: {e}"));
    let count = CudaContext::device_count().map_err(err)?;
    if ordinal >= count.max(0) as usize {
        return Err(Error::CudaUnavailable(format!("cuda:{ordinal} requested, but the driver sees {count} device(s)")));
    }
    let ctx = CudaContext::new(ordinal).map_err(err)?;
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

/// One device's context, stream, library handles and loaded kernels.
pub struct Device {
    pub info: DeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    #[cfg(feature = "cudnn")]
    dnn: OnceLock<super::dnn::Dnn>,
    solver: OnceLock<Solver>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda:{} ({})", self.info.ordinal, self.info.name)
    }
}

impl Device {
    pub fn open(ordinal: usize) -> Result<Self> {
        let (ctx, info) = context(ordinal)?;
        // SAFETY: only checks whether the shared library can be opened.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::CudaUnavailable(
                "libcublas (cuBLAS, for matrix products) was not found; install the CUDA toolkit's cuBLAS".into(),
            ));
        }
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::CudaUnavailable(format!("cuBLAS on cuda:{ordinal}: {e:?}")))?;
        Ok(Device {
            info,
            ctx,
            stream,
            blas,
            #[cfg(feature = "cudnn")]
            dnn: OnceLock::new(),
            solver: OnceLock::new(),
            modules: Mutex::default(),
            functions: Mutex::default(),
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

    /// The cuDNN handle, created (and its library probed) on first use, so a
    /// model without convolutions runs where libcudnn is missing.
    #[cfg(feature = "cudnn")]
    pub fn dnn(&self) -> Result<&super::dnn::Dnn> {
        if let Some(d) = self.dnn.get() {
            return Ok(d);
        }
        let d = super::dnn::Dnn::new(&self.ctx, &self.stream, self.info.total_mem)?;
        Ok(self.dnn.get_or_init(|| d))
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

    /// A driver error of operation `op` on this device.
    pub fn error(&self, op: &str, e: DriverError) -> Error {
        Error::Backend(format!("cuda:{} {op}: {e}", self.info.ordinal))
    }
}
