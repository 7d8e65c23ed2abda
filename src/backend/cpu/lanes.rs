//! Four f64 lanes for hand-vectorised kernels: one AVX2 register where the
//! CPU has AVX2 and FMA, an array of fused multiply-adds otherwise. Both
//! round identically (each lane one fused multiply-add; sums in the same
//! fixed order), so a kernel's result does not depend on which one runs.

/// Lane-wise operations on four f64.
pub trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(v: f64) -> Self;
    fn load(s: &[f64; 4]) -> Self;
    fn store(self, s: &mut [f64; 4]);
    /// `self·b + c` per lane, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `((l₀ + l₁) + l₂) + l₃`.
    fn sum(self) -> f64;
}

/// Portable lanes.
#[derive(Clone, Copy)]
pub struct Scalar([f64; 4]);

impl Lanes for Scalar {
    #[inline(always)]
    fn zero() -> Self {
        Scalar([0.0; 4])
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Scalar([v; 4])
    }
    #[inline(always)]
    fn load(s: &[f64; 4]) -> Self {
        Scalar(*s)
    }
    #[inline(always)]
    fn store(self, s: &mut [f64; 4]) {
        *s = self.0;
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Scalar(std::array::from_fn(|l| self.0[l].mul_add(b.0[l], c.0[l])))
    }
    #[inline(always)]
    fn sum(self) -> f64 {
        self.0[0] + self.0[1] + self.0[2] + self.0[3]
    }
}

/// AVX2 lanes. Only code running after [`avx2_fma`] returned true may use
/// them: callers reach them through a `#[target_feature(enable = "avx2,fma")]`
/// function that inlines the kernel.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2(std::arch::x86_64::__m256d);

/// Whether this CPU runs [`Avx2`] lanes.
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

// SAFETY (every block below): the type is only used once AVX2 and FMA were detected.
#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    #[inline(always)]
    fn zero() -> Self {
        unsafe { Avx2(std::arch::x86_64::_mm256_setzero_pd()) }
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        unsafe { Avx2(std::arch::x86_64::_mm256_set1_pd(v)) }
    }
    #[inline(always)]
    fn load(s: &[f64; 4]) -> Self {
        unsafe { Avx2(std::arch::x86_64::_mm256_loadu_pd(s.as_ptr())) }
    }
    #[inline(always)]
    fn store(self, s: &mut [f64; 4]) {
        unsafe { std::arch::x86_64::_mm256_storeu_pd(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        unsafe { Avx2(std::arch::x86_64::_mm256_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn sum(self) -> f64 {
        let mut l = [0.0; 4];
        self.store(&mut l);
        l[0] + l[1] + l[2] + l[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lane_kinds_round_alike() {
        let (a, b, c) = ([0.1, -3.0, 1e-300, 7.0], [3.0, 1.0 / 3.0, 1e300, -0.7], [1e-17, 1.0, -1.0, 4.9]);
        let s = Scalar::load(&a).mul_add(Scalar::load(&b), Scalar::load(&c));
        // A fused multiply-add: 0.1·3 + 1e-17 differs from its two-rounding value.
        assert_eq!(s.0[0], 0.1f64.mul_add(3.0, 1e-17));
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            let mut v = [0.0; 4];
            Avx2::load(&a).mul_add(Avx2::load(&b), Avx2::load(&c)).store(&mut v);
            assert_eq!(v.map(f64::to_bits), s.0.map(f64::to_bits));
            assert_eq!(Avx2::load(&v).sum().to_bits(), s.sum().to_bits());
        }
    }
}
