//! Whether this build can run on the machine it finds: the CUDA major version
//! its bindings target, the driver the embedded PTX needs, and what to install
//! when a library is missing. Pure functions of version numbers, so every
//! message is derived and tested without a GPU; the device code turns them
//! into one-line errors before anything is loaded that could panic.

/// The CUDA major version of the cudarc bindings this binary was built with.
pub const BUILT_CUDA_MAJOR: i32 = if cfg!(feature = "cuda-13") { 13 } else { 12 };

/// The feature that selects each major version's bindings.
fn feature_of(major: i32) -> &'static str {
    if major >= 13 {
        "cuda-13"
    } else {
        "cuda"
    }
}

/// The oldest Linux driver branch for each CUDA major version (NVIDIA's
/// compatibility table): the driver API a build binds to must exist.
fn driver_branch(major: i32) -> &'static str {
    if major >= 13 {
        "580"
    } else {
        "525"
    }
}

/// A driver older than the bindings' major version lacks symbols the
/// bindings resolve, so it is refused up front; a newer driver runs older
/// builds (the driver API is backward compatible).
pub fn check_driver(built_major: i32, driver: (i32, i32)) -> std::result::Result<(), String> {
    if driver.0 >= built_major {
        return Ok(());
    }
    Err(format!(
        "this kappa was built for CUDA {built_major} (--features {}), but the NVIDIA driver supports CUDA {}.{} only: install driver {} or newer, or rebuild with --features {}",
        feature_of(built_major),
        driver.0,
        driver.1,
        driver_branch(built_major),
        feature_of(driver.0)
    ))
}

/// (major, minor) from `nvcc --version`'s "release 13.0, V13.0.88" line.
pub fn nvcc_release(version: &str) -> Option<(i32, i32)> {
    let rest = &version[version.find("release ")? + "release ".len()..];
    let number = rest.split([',', ' ', '\n']).next()?;
    let (major, minor) = number.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// PTX written by nvcc X.Y carries an ISA version only a driver for CUDA X.Y
/// or newer JIT-compiles; older ones fail with CUDA_ERROR_UNSUPPORTED_PTX_VERSION
/// at the first kernel, so the check runs when the device opens.
pub fn check_ptx(nvcc: Option<(i32, i32)>, driver: (i32, i32)) -> std::result::Result<(), String> {
    match nvcc {
        Some(n) if n > driver => Err(format!(
            "the kernels were compiled to PTX by nvcc {}.{}, which needs a driver for CUDA {}.{} or newer, but this driver supports CUDA {}.{}: update the driver, or rebuild with an nvcc no newer than {}.{} (set NVCC or CUDA_HOME)",
            n.0, n.1, n.0, n.1, driver.0, driver.1, driver.0, driver.1
        )),
        _ => Ok(()),
    }
}

/// A run-time library the backend opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    Driver,
    Cublas,
    Cusolver,
    Cudnn,
}

/// What is missing and how to get it, for a build whose bindings target `major`.
pub fn missing_library(lib: Library, major: i32) -> String {
    // The PyPI wheels: CUDA 12's carry a -cu12 suffix, CUDA 13's cuBLAS and
    // cuSOLVER none; cuDNN names its CUDA major in both.
    let wheel = |base: &str| if major >= 13 { base.to_string() } else { format!("{base}-cu12") };
    let (what, install) = match lib {
        Library::Driver => {
            return format!(
            "libcuda.so.1 (the NVIDIA driver) was not found: install driver {} or newer; a container needs the GPU and its driver mounted",
            driver_branch(major)
        )
        }
        Library::Cublas => (format!("libcublas.so.{major} (cuBLAS, for matrix products)"), wheel("nvidia-cublas")),
        // cuSOLVER's soname runs one behind: CUDA 12 ships libcusolver.so.11, 13 .so.12.
        Library::Cusolver => (format!("libcusolver.so.{} (cuSOLVER, for eigenvalues)", major - 1), wheel("nvidia-cusolver")),
        Library::Cudnn => ("libcudnn.so.9 (cuDNN 9, for convolutions)".to_string(), format!("nvidia-cudnn-cu{major}")),
    };
    format!(
        "{what} was not found: install the CUDA {major} toolkit's library or `pip install {install}`, and put its lib folder on LD_LIBRARY_PATH (scripts/gpu/run does this for the wheels)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_older_than_the_bindings_is_refused_with_the_fix() {
        assert_eq!(check_driver(12, (12, 2)), Ok(()));
        assert_eq!(check_driver(12, (13, 0)), Ok(()), "newer drivers run older builds");
        let e = check_driver(13, (12, 8)).unwrap_err();
        for needle in ["built for CUDA 13", "--features cuda-13", "CUDA 12.8", "driver 580", "rebuild with --features cuda"] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        assert!(!e.contains('\n'));
    }

    #[test]
    fn nvcc_releases_parse_from_the_version_banner() {
        let banner = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0";
        assert_eq!(nvcc_release(banner), Some((13, 0)));
        assert_eq!(nvcc_release("Cuda compilation tools, release 12.4, V12.4.131"), Some((12, 4)));
        assert_eq!(nvcc_release("no version here"), None);
        assert_eq!(nvcc_release("release x.y"), None);
    }

    #[test]
    fn ptx_newer_than_the_driver_names_both_versions() {
        assert_eq!(check_ptx(Some((13, 0)), (13, 0)), Ok(()));
        assert_eq!(check_ptx(Some((12, 4)), (13, 0)), Ok(()));
        assert_eq!(check_ptx(None, (11, 0)), Ok(()), "an unknown nvcc is left to the JIT's own error");
        let e = check_ptx(Some((13, 0)), (12, 9)).unwrap_err();
        assert!(e.contains("nvcc 13.0") && e.contains("supports CUDA 12.9") && e.contains("update the driver"), "{e}");
        // Minor versions count too: 12.9 PTX on a 12.4 driver.
        assert!(check_ptx(Some((12, 9)), (12, 4)).is_err());
    }

    #[test]
    fn missing_libraries_say_what_to_install_for_the_build() {
        let e = missing_library(Library::Cublas, 13);
        assert!(e.contains("libcublas.so.13") && e.contains("pip install nvidia-cublas`") && e.contains("LD_LIBRARY_PATH"), "{e}");
        let e = missing_library(Library::Cusolver, 12);
        assert!(e.contains("libcusolver.so.11") && e.contains("pip install nvidia-cusolver-cu12"), "{e}");
        assert!(missing_library(Library::Cudnn, 13).contains("nvidia-cudnn-cu13"));
        assert!(missing_library(Library::Driver, 13).contains("driver 580"));
    }
}
