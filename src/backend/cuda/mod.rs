//! The CUDA backend: the [`Backend`](super::Backend) op set on an NVIDIA GPU
//! through cudarc (dynamic loading: a machine without CUDA still builds and
//! runs the CPU path, and asking for a GPU there is an error, not a panic).
//!
//! Kernels live in kernels/*.cu (each names its CPU twin), compiled to PTX by
//! build.rs; matrix products go to cuBLAS, eigenvalues to cuSOLVER, and
//! convolutions to im2col + cuBLAS or, with the `cudnn` feature, to cuDNN.
//! The pure host logic (launch geometry, cuBLAS, cuSOLVER and cuDNN argument
//! derivation) is compiled and unit-tested in every build; the device code
//! only with the `cuda` (or `cuda-13`) feature.

/// A null pointer for a kernel's optional argument.
#[cfg(feature = "cuda-backend")]
pub(crate) const NULL: u64 = 0;

#[cfg(feature = "cuda-backend")]
pub(crate) fn config(g: launch::Geometry) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig { grid_dim: g.grid, block_dim: g.block, shared_mem_bytes: 0 }
}

/// Launches kernel `$name` with the listed arguments, each a reference to a
/// live place (never a temporary: the builder keeps the pointers until launch).
#[cfg(feature = "cuda-backend")]
macro_rules! launch {
    ($be:expr, $name:expr, $geometry:expr, [$($arg:expr),* $(,)?]) => {{
        let func = $be.dev.function($name)?;
        let mut builder = $be.dev.stream.launch_builder(&func);
        $( builder.arg($arg); )*
        let run = || {
            // SAFETY: the argument list mirrors the kernel's C signature in
            // kernels/*.cu, and every buffer holds the lengths the caller checked.
            unsafe { builder.launch($crate::backend::cuda::config($geometry)) }.map(drop).map_err(|e| $be.dev.error($name, e))
        };
        $be.span($name, run)
    }};
}

pub mod blas;
pub mod compat;
pub mod conv;
pub mod dnn;
pub mod launch;
pub mod solver;

#[cfg(feature = "cuda-backend")]
mod backend;
#[cfg(feature = "cuda-backend")]
mod batch_norm;
#[cfg(feature = "cuda-backend")]
mod channel;
#[cfg(feature = "cuda-backend")]
mod device;
#[cfg(feature = "cuda-backend")]
pub mod kernels;
#[cfg(feature = "cuda-backend")]
mod mem;
#[cfg(feature = "cuda-backend")]
mod pool;
#[cfg(feature = "cuda-backend")]
pub mod trace;

#[cfg(feature = "cuda-backend")]
pub use backend::{Cuda, CudaBuf};
#[cfg(feature = "cuda-backend")]
pub use device::{driver_version, libraries, probe, standin, DeviceInfo};
