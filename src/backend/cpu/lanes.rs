//! Lanes for hand-vectorised kernels, over f64 (four lanes) or f32 (eight):
//! one AVX2 register where the CPU has AVX2 and FMA, an array of fused
//! multiply-adds otherwise. Both round identically (each lane one fused
//! multiply-add; sums in the same fixed order), so a kernel's result does
//! not depend on which one runs. Loops left to the compiler get the same
//! AVX2 through [`wide!`], which runs them in a twin compiled for it.
//!
//! # One compiled copy
//! A generic kernel is compiled anew in every crate that instantiates it:
//! the benches call `Cpu<f32>` themselves, so they ran their own copy, and
//! the binary ran the library's. Once the binary's f32 direct conv tile
//! came out 128 bits wide, with spills, at 0.6× the speed, while every bench
//! copy was full width, and the benches could not see it. So the hottest
//! kernels enter through non-generic f32 and f64 functions (`conv2d_f32`,
//! `filter_f32`, the Gram's `many_f32`, `tridiagonalise_f32`, ...): the
//! library compiles those once, and the binary, the benches and the
//! integration tests all run that machine code.

use crate::scalar::Scalar;

/// A float the lanes hold: its scalar operations beyond [`Scalar`]'s and its two lane types.
pub trait Element: Scalar {
    /// Lanes as an array, for any CPU.
    type Portable: Lanes<Self>;
    /// Lanes in one AVX2 register.
    #[cfg(target_arch = "x86_64")]
    type Avx2: Lanes<Self>;
    /// Below this a vector's largest entry is small enough that the squares
    /// of entries ε times smaller near underflow (√MIN_POSITIVE / ε is 7e-139
    /// in f64 and 9e-13 in f32, so both leave a wide margin).
    const TINY: Self;
    fn abs(self) -> Self;
    fn hypot(self, other: Self) -> Self;
    fn copysign(self, sign: Self) -> Self;
}

macro_rules! impl_element {
    ($t:ty, $width:literal, $avx2:ident, $tiny:literal) => {
        impl Element for $t {
            type Portable = Portable<$t, $width>;
            #[cfg(target_arch = "x86_64")]
            type Avx2 = $avx2;
            const TINY: Self = $tiny;
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn hypot(self, other: Self) -> Self {
                <$t>::hypot(self, other)
            }
            #[inline(always)]
            fn copysign(self, sign: Self) -> Self {
                <$t>::copysign(self, sign)
            }
        }
    };
}

impl_element!(f64, 4, Avx2F64, 1e-100);
impl_element!(f32, 8, Avx2F32, 1e-10);

/// Lane-wise operations on [`Lanes::WIDTH`] elements.
pub trait Lanes<E>: Copy {
    const WIDTH: usize;
    fn zero() -> Self;
    fn splat(v: E) -> Self;
    /// The first `WIDTH` elements of `s`.
    fn load(s: &[E]) -> Self;
    /// Into the first `WIDTH` elements of `s`.
    fn store(self, s: &mut [E]);
    /// `self·b + c` per lane, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `((l₀ + l₁) + l₂) + …`, left to right.
    fn sum(self) -> E;
    /// The lanes from `first` on; those before it +0, whatever they held
    /// (NaN included). `first ≤ WIDTH`.
    fn keep_from(self, first: usize) -> Self;
}

/// Portable lanes.
#[derive(Clone, Copy)]
pub struct Portable<E, const W: usize>([E; W]);

impl<E: Element, const W: usize> Lanes<E> for Portable<E, W> {
    const WIDTH: usize = W;
    #[inline(always)]
    fn zero() -> Self {
        Portable([E::ZERO; W])
    }
    #[inline(always)]
    fn splat(v: E) -> Self {
        Portable([v; W])
    }
    #[inline(always)]
    fn load(s: &[E]) -> Self {
        Portable(s[..W].try_into().unwrap())
    }
    #[inline(always)]
    fn store(self, s: &mut [E]) {
        s[..W].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|l| self.0[l].mul_add(b.0[l], c.0[l])))
    }
    #[inline(always)]
    fn sum(self) -> E {
        self.0[1..].iter().fold(self.0[0], |s, &v| s + v)
    }
    #[inline(always)]
    fn keep_from(self, first: usize) -> Self {
        Portable(std::array::from_fn(|l| if l < first { E::ZERO } else { self.0[l] }))
    }
}

/// Four f64 lanes of AVX2. Only code running after [`avx2_fma`] returned
/// true may use them (or [`Avx2F32`]): callers reach them through a
/// `#[target_feature(enable = "avx2,fma")]` function that inlines the kernel.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2F64(std::arch::x86_64::__m256d);

/// Eight f32 lanes of AVX2.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2F32(std::arch::x86_64::__m256);

/// `x` as a slice of `E` when `T` is `E`: how a kernel over [`Element`]s
/// reads a backend's `T` in place.
pub fn as_elements<E: 'static, T: 'static>(x: &[T]) -> Option<&[E]> {
    // SAFETY: T and E are the same type.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<E>()).then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) })
}

/// [`as_elements`] for writing.
pub fn as_elements_mut<E: 'static, T: 'static>(x: &mut [T]) -> Option<&mut [E]> {
    // SAFETY: T and E are the same type.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<E>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) })
}

/// `v` as a `Vec<T>` when `E` is `T`: how such a kernel hands its result back.
pub fn into_scalars<T: 'static, E: 'static>(v: Vec<E>) -> Option<Vec<T>> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<E>() {
        return None;
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: T and E are the same type, so the allocation, length and capacity carry over.
    Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) })
}

/// Whether this CPU runs the AVX2 lanes.
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `body()`, inlined into a twin compiled for AVX2 where the CPU has it, so
/// its loops vectorise 256 bits wide instead of 128. Only for bodies whose
/// bits do not depend on the width: element-wise maps, and sums whose order
/// the code fixes (Rust never contracts a multiply and an add into an FMA,
/// and never reorders a float sum, at any width). Call it through [`wide!`].
#[inline(always)]
pub fn run_wide<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2(body) };
    }
    body()
}

/// `run_wide(|| { body })` with the closure marked `#[inline(always)]`:
/// called from both paths, a large closure is otherwise kept out of line,
/// where it runs 128 bits wide.
macro_rules! wide {
    ($($body:tt)*) => {
        $crate::backend::cpu::lanes::run_wide(#[inline(always)] || { $($body)* })
    };
}
pub(crate) use wide;

/// The AVX2 lanes over one element type, from its intrinsics.
macro_rules! impl_avx2 {
    ($lanes:ident, $t:ty, $bits:ty, $width:literal, $setzero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $and:ident) => {
        // SAFETY (every block below): the type is only used once AVX2 and
        // FMA were detected, and loads and stores stay inside the slice
        // (indexing it to `WIDTH` first).
        #[cfg(target_arch = "x86_64")]
        impl Lanes<$t> for $lanes {
            const WIDTH: usize = $width;
            #[inline(always)]
            fn zero() -> Self {
                unsafe { $lanes(std::arch::x86_64::$setzero()) }
            }
            #[inline(always)]
            fn splat(v: $t) -> Self {
                unsafe { $lanes(std::arch::x86_64::$set1(v)) }
            }
            #[inline(always)]
            fn load(s: &[$t]) -> Self {
                unsafe { $lanes(std::arch::x86_64::$loadu(s[..$width].as_ptr())) }
            }
            #[inline(always)]
            fn store(self, s: &mut [$t]) {
                unsafe { std::arch::x86_64::$storeu(s[..$width].as_mut_ptr(), self.0) }
            }
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                unsafe { $lanes(std::arch::x86_64::$fmadd(self.0, b.0, c.0)) }
            }
            #[inline(always)]
            fn sum(self) -> $t {
                let mut l = [0.0; $width];
                self.store(&mut l);
                l[1..].iter().fold(l[0], |s, &v| s + v)
            }
            #[inline(always)]
            fn keep_from(self, first: usize) -> Self {
                // Lane l of the mask read from `first` lanes before the
                // table's middle is all ones exactly when l ≥ first.
                const MASK: [$bits; 2 * $width] = {
                    let mut m = [0; 2 * $width];
                    let mut l = $width;
                    while l < 2 * $width {
                        m[l] = <$bits>::MAX;
                        l += 1;
                    }
                    m
                };
                let mask = &MASK[$width - first..][..$width];
                unsafe { $lanes(std::arch::x86_64::$and(self.0, std::arch::x86_64::$loadu(mask.as_ptr().cast()))) }
            }
        }
    };
}

impl_avx2!(Avx2F64, f64, u64, 4, _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_and_pd);
impl_avx2!(Avx2F32, f32, u32, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_and_ps);

#[cfg(test)]
mod tests {
    use super::*;

    /// Both lane kinds of `E` give the same bits for `a·b + c` and its sum.
    fn round_alike<E: Element>(a: &[E], b: &[E], c: &[E]) -> Vec<E> {
        let s = E::Portable::load(a).mul_add(E::Portable::load(b), E::Portable::load(c));
        let mut got = vec![E::ZERO; a.len()];
        s.store(&mut got);
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            let mut v = vec![E::ZERO; a.len()];
            E::Avx2::load(a).mul_add(E::Avx2::load(b), E::Avx2::load(c)).store(&mut v);
            assert_eq!(
                v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>(),
                got.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(E::Avx2::load(&v).sum().to_f64().to_bits(), s.sum().to_f64().to_bits());
        }
        got
    }

    #[test]
    fn both_lane_kinds_round_alike() {
        let (a, b, c) = ([0.1, -3.0, 1e-300, 7.0], [3.0, 1.0 / 3.0, 1e300, -0.7], [1e-17, 1.0, -1.0, 4.9]);
        // A fused multiply-add: 0.1·3 + 1e-17 differs from its two-rounding value.
        assert_eq!(round_alike::<f64>(&a, &b, &c)[0], 0.1f64.mul_add(3.0, 1e-17));
        let (a, b, c) =
            ([0.1f32, -3.0, 1e-30, 7.0, 0.3, 1e8, -2.5, 1.0 / 7.0], [3.0f32, 1.0 / 3.0, 1e30, -0.7, 0.7, 1e-8, 4.0, 7.0], [1.6e-8f32; 8]);
        assert_eq!(round_alike::<f32>(&a, &b, &c)[0], 0.1f32.mul_add(3.0, 1.6e-8));
        assert_ne!(0.1f32.mul_add(3.0, 1.6e-8), 0.1f32 * 3.0 + 1.6e-8);
    }

    /// `keep_from` zeroes the lanes before its argument, NaN and -0 included,
    /// and keeps the rest bit for bit, in both lane kinds.
    fn keeps_from<E: Element>() {
        let v: Vec<E> = (0..E::Portable::WIDTH).map(|l| E::from_f64([f64::NAN, -0.0, 1.5, -3.25][l % 4])).collect();
        let bits = |s: &[E]| s.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        for first in 0..=v.len() {
            let want: Vec<E> = v.iter().enumerate().map(|(l, &x)| if l < first { E::ZERO } else { x }).collect();
            let mut got = vec![E::ONE; v.len()];
            E::Portable::load(&v).keep_from(first).store(&mut got);
            assert_eq!(bits(&got), bits(&want), "portable, from {first}");
            #[cfg(target_arch = "x86_64")]
            if avx2_fma() {
                E::Avx2::load(&v).keep_from(first).store(&mut got);
                assert_eq!(bits(&got), bits(&want), "AVX2, from {first}");
            }
        }
    }

    #[test]
    fn keep_from_zeroes_the_lanes_before_it() {
        keeps_from::<f64>();
        keeps_from::<f32>();
    }
}
