//! `eigvalsh` through cuSOLVER's `syevd`, with the CPU's semantics
//! (src/backend/cpu/eigen.rs): descending eigenvalues, solved in f64 after
//! dividing by the largest |entry| of the lower triangle, NaNs for a matrix
//! with a non-finite entry, zeros for the zero matrix. Only the eigenvalues
//! (and two scalars of the pre-check) reach the host. Matrices of order up
//! to [`HOST_MAX`] are instead copied to the host and solved there
//! ([`on_host`]).
//!
//! Layout: the trait's matrices are row-major lower triangles (entry (i, j),
//! j ≤ i, at `i·n + j`). Read column-major, index `i·n + j` is row j, column i:
//! the same numbers form the column-major *upper* triangle. So the buffer goes
//! to the solver untransposed, with the upper fill mode ([`fill_for_row_major`]).

/// The largest order solved on the host: the backend downloads such a
/// matrix (n² f32, 1.3 MiB at 576) and hands every one of a call to the CPU
/// backend's solver, which runs them side by side on the host's cores; a
/// larger one goes to `syevd` on the device.
///
/// Why: `syevd` on a small matrix is bound by its own launches and
/// synchronisations, not by the device's flops, and the calls run one after
/// another. On the H200 (2026-12-04) it took 1.96 ms at n = 256, 5.33 ms at
/// 576 and 12.0 ms at 1152. The CPU solver (f32 reduction, f64 QL; one core
/// of the 2-core Intel development machine, 2026-12-07) takes 1.24 ms at 256
/// and 6.7 ms at 576, so a lone 576 is a little slower on the host, but an
/// analysis step solves two matrices a layer, all in one call. ResNet-20's
/// forty, none of order above 576, went one after another through syevd in
/// an analysed step that cost the time of 12 training steps on the H200
/// (the solves' share was not measured apart). At 1152 one host core would
/// take about 8× the 576 time, several times `syevd`'s. Not yet measured on
/// a GPU machine: `kappa profile gpu` times both ways at every size
/// (`eigvalsh_paths`).
pub const HOST_MAX: usize = 576;

/// Whether an `n × n` matrix is solved on the host (see [`HOST_MAX`]).
pub fn on_host(n: usize) -> bool {
    n <= HOST_MAX
}

/// Which triangle cuSOLVER should read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Lower,
    Upper,
}

/// The column-major fill mode that reads a row-major triangle in place.
pub fn fill_for_row_major(row_major: Fill) -> Fill {
    match row_major {
        Fill::Lower => Fill::Upper,
        Fill::Upper => Fill::Lower,
    }
}

/// What the pre-check over the lower triangle decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prepared {
    /// A non-finite entry: every eigenvalue is NaN.
    NonFinite,
    /// All zeros: every eigenvalue is 0.
    Zero,
    /// Solve `matrix / scale`, then multiply the eigenvalues back.
    Scale(f64),
}

/// From `lower_max_abs`'s output: the bits of the largest |entry| and the
/// non-finite flag.
pub fn prepare(max_abs_bits: u32, non_finite: u32) -> Prepared {
    let max = f32::from_bits(max_abs_bits) as f64;
    if non_finite != 0 {
        Prepared::NonFinite
    } else if max == 0.0 {
        Prepared::Zero
    } else {
        Prepared::Scale(max)
    }
}

/// syevd's ascending eigenvalues of the scaled matrix, as the trait returns them.
pub fn finish(ascending: &[f64], scale: f64) -> Vec<f64> {
    ascending.iter().rev().map(|v| v * scale).collect()
}

#[cfg(feature = "cuda-backend")]
pub use device::Solver;

#[cfg(feature = "cuda-backend")]
mod device {
    use super::super::compat::{self, Library, BUILT_CUDA_MAJOR};
    use super::*;
    use crate::error::{Error, Result};
    use cudarc::cusolver::sys::{self, cublasFillMode_t, cusolverEigMode_t, cusolverStatus_t};
    use cudarc::cusolver::DnHandle;
    use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut};
    use std::sync::Arc;

    /// A cuSOLVER dense handle on the backend's stream.
    #[derive(Debug)]
    pub struct Solver {
        handle: DnHandle,
        stream: Arc<CudaStream>,
    }

    fn check(what: &str, s: cusolverStatus_t) -> Result<()> {
        match s {
            cusolverStatus_t::CUSOLVER_STATUS_SUCCESS => Ok(()),
            other => Err(Error::Backend(format!("cuSOLVER {what}: {other:?}"))),
        }
    }

    impl Solver {
        pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
            // SAFETY: only checks whether the shared library can be opened.
            if !unsafe { sys::is_culib_present() } {
                return Err(Error::CudaUnavailable(compat::missing_library(Library::Cusolver, BUILT_CUDA_MAJOR)));
            }
            let handle = DnHandle::new(stream.clone()).map_err(|e| Error::Backend(format!("cuSOLVER handle: {e:?}")))?;
            Ok(Solver { handle, stream })
        }

        /// Ascending eigenvalues of the symmetric n×n matrix whose column-major
        /// upper triangle is `a` (overwritten).
        pub fn syevd(&self, a: &mut CudaSlice<f64>, n: usize) -> Result<Vec<f64>> {
            let ni = i32::try_from(n).map_err(|_| Error::shape("eigvalsh", format!("{n}×{n} exceeds cuSOLVER's 32-bit range")))?;
            let uplo = match fill_for_row_major(Fill::Lower) {
                Fill::Lower => cublasFillMode_t::CUBLAS_FILL_MODE_LOWER,
                Fill::Upper => cublasFillMode_t::CUBLAS_FILL_MODE_UPPER,
            };
            let jobz = cusolverEigMode_t::CUSOLVER_EIG_MODE_NOVECTOR;
            let err = |e: cudarc::driver::DriverError| Error::Backend(format!("eigvalsh: {e}"));
            let mut w = self.stream.alloc_zeros::<f64>(n).map_err(err)?;
            let mut info = self.stream.alloc_zeros::<i32>(1).map_err(err)?;
            {
                let (pa, _ra) = a.device_ptr_mut(&self.stream);
                let (pw, _rw) = w.device_ptr_mut(&self.stream);
                let mut lwork = 0i32;
                // SAFETY: pa holds n·n f64 (lda = n) and pw n; lwork is a host out-parameter.
                check("syevd buffer size", unsafe {
                    sys::cusolverDnDsyevd_bufferSize(
                        self.handle.cu(),
                        jobz,
                        uplo,
                        ni,
                        pa as *const f64,
                        ni.max(1),
                        pw as *const f64,
                        &mut lwork,
                    )
                })?;
                let mut work = self.stream.alloc_zeros::<f64>(lwork.max(1) as usize).map_err(err)?;
                let (pwork, _rwork) = work.device_ptr_mut(&self.stream);
                let (pinfo, _rinfo) = info.device_ptr_mut(&self.stream);
                // SAFETY: work holds lwork f64 as queried; info one i32; all on this handle's stream.
                check("syevd", unsafe {
                    sys::cusolverDnDsyevd(
                        self.handle.cu(),
                        jobz,
                        uplo,
                        ni,
                        pa as *mut f64,
                        ni.max(1),
                        pw as *mut f64,
                        pwork as *mut f64,
                        lwork,
                        pinfo as *mut i32,
                    )
                })?;
            }
            let info = self.stream.clone_dtoh(&info).map_err(err)?[0];
            if info != 0 {
                return Err(Error::Backend(format!("eigvalsh of a {n}×{n} matrix: syevd info = {info} (did not converge)")));
            }
            self.stream.clone_dtoh(&w).map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_major_lower_triangle_is_the_column_major_upper_triangle() {
        let n = 4;
        // Row-major lower triangle of the symmetric S[i][j] = 10·max + min.
        let s = |i: usize, j: usize| (10 * i.max(j) + i.min(j)) as f64;
        let mut buf = vec![f64::NAN; n * n];
        for i in 0..n {
            for j in 0..=i {
                buf[i * n + j] = s(i, j);
            }
        }
        assert_eq!(fill_for_row_major(Fill::Lower), Fill::Upper);
        // Column-major (r, c) lives at r + c·n; the upper triangle is r ≤ c.
        for c in 0..n {
            for r in 0..=c {
                assert_eq!(buf[r + c * n], s(r, c), "({r}, {c})");
            }
        }
        assert_eq!(fill_for_row_major(Fill::Upper), Fill::Lower);
    }

    #[test]
    fn preparation_and_finishing_follow_the_cpu() {
        assert_eq!(prepare(2.5f32.to_bits(), 0), Prepared::Scale(2.5));
        assert_eq!(prepare(0, 0), Prepared::Zero);
        assert_eq!(prepare(2.5f32.to_bits(), 1), Prepared::NonFinite);
        assert_eq!(finish(&[-1.0, 0.5, 2.0], 4.0), vec![8.0, 2.0, -4.0]);
    }
}
