//! The PTX of kernels/*.cu, compiled by build.rs with nvcc and embedded here,
//! and the lookup from a kernel's name to its file.

/// One kernels/*.cu file: its PTX and the kernels it defines.
#[derive(Debug)]
pub struct Module {
    pub name: &'static str,
    pub ptx: &'static str,
    pub kernels: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The file defining kernel `name`.
pub fn module_of(name: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.kernels.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_embedded_with_its_kernels() {
        for name in ["elementwise", "channel", "batch_norm", "softmax", "update", "covariance", "reduce", "im2col", "pool"] {
            let m = MODULES.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name}.cu not embedded"));
            assert!(m.ptx.contains(".entry") && !m.kernels.is_empty(), "{name}");
            for k in m.kernels {
                assert!(m.ptx.contains(&format!(".entry {k}(")), "{name}: {k} missing from the PTX");
            }
        }
        assert_eq!(module_of("gram_lower_rows").unwrap().name, "covariance");
        assert_eq!(module_of("max_pool2d_backward").unwrap().name, "pool");
        assert!(PTX_ARCH.starts_with("compute_"));
    }

    #[test]
    fn only_the_gram_kernels_contract_multiply_adds() {
        // build.rs: -fmad=false everywhere but covariance.cu, so the kernels
        // the emulation compares bit for bit round as the CPU does.
        let ptx = |name: &str| MODULES.iter().find(|m| m.name == name).unwrap().ptx;
        for name in ["elementwise", "update"] {
            assert!(!ptx(name).contains("fma.rn."), "{name}.cu contracts multiply-adds");
        }
        assert!(ptx("elementwise").contains("mul.rn.f32"), "axpy's product not pinned against contraction");
        assert!(ptx("covariance").contains("fma.rn.f32"), "covariance.cu lost its FMA");
    }
}
