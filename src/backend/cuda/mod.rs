//! CUDA device discovery through cudarc (dynamic loading, so a machine without
//! CUDA still builds and runs the CPU path). The device op set itself is
//! the CUDA backend's work and is not part of this build yet.

use crate::error::{Error, Result};

/// What the driver reports about one device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_mem: usize,
}

/// Looks up device `ordinal`, returning an error (never panicking) when the
/// driver library is missing or the device does not exist.
pub fn probe(ordinal: usize) -> Result<DeviceInfo> {
    // SAFETY: only checks whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::CudaUnavailable("libcuda (the NVIDIA driver library) was not found on this machine".into()));
    }
    let err = |e: cudarc::driver::DriverError| Error::CudaUnavailable(format!("cuda:{ordinal}: {e}"));
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(err)?;
    Ok(DeviceInfo {
        ordinal,
        name: ctx.name().map_err(err)?,
        compute_capability: ctx.compute_capability().map_err(err)?,
        total_mem: ctx.total_mem().map_err(err)?,
    })
}
