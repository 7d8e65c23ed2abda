//! Lanes for hand-vectorised kernels, over f64 (four lanes) or f32 (eight):
//! one AVX2 register where the CPU has AVX2 and FMA, an array of fused
//! multiply-adds otherwise. Both round identically (each lane one fused
//! multiply-add; sums in the same fixed order), so a kernel's result does
//! not depend on which one runs. Loops left to the compiler get the same
//! AVX2 through `wide!`, which runs them in a twin compiled for it.
//!
//! AVX-512 lanes (twice as many) serve only kernels whose lanes never meet,
//! each holding a sum of its own (the Gram, the direct conv and its filter
//! gradient): there the width cannot change a bit. A kernel that adds its
//! lanes together (a dot product's [`Lanes::sum`]) would sum in another
//! order on them, so it keeps to AVX2.
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
use std::mem::MaybeUninit;

/// A float the lanes hold: its scalar operations beyond [`Scalar`]'s and its two lane types.
pub trait Element: Scalar {
    /// Lanes as an array, for any CPU.
    type Portable: Lanes<Self>;
    /// Lanes in one AVX2 register.
    #[cfg(target_arch = "x86_64")]
    type Avx2: Lanes<Self>;
    /// Lanes in one AVX-512 register.
    #[cfg(target_arch = "x86_64")]
    type Avx512: Lanes<Self>;
    /// Below this a vector's largest entry is small enough that the squares
    /// of entries ε times smaller near underflow (√MIN_POSITIVE / ε is 7e-139
    /// in f64 and 9e-13 in f32, so both leave a wide margin).
    const TINY: Self;
    fn abs(self) -> Self;
    fn hypot(self, other: Self) -> Self;
    fn copysign(self, sign: Self) -> Self;
}

macro_rules! impl_element {
    ($t:ty, $width:literal, $avx2:ident, $avx512:ident, $tiny:literal) => {
        impl Element for $t {
            type Portable = Portable<$t, $width>;
            #[cfg(target_arch = "x86_64")]
            type Avx2 = $avx2;
            #[cfg(target_arch = "x86_64")]
            type Avx512 = $avx512;
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

impl_element!(f64, 4, Avx2F64, Avx512F64, 1e-100);
impl_element!(f32, 8, Avx2F32, Avx512F32, 1e-10);

/// Lane-wise operations on [`Lanes::WIDTH`] elements.
pub trait Lanes<E>: Copy {
    const WIDTH: usize;
    fn zero() -> Self;
    fn splat(v: E) -> Self;
    /// The first `WIDTH` elements of `s`.
    fn load(s: &[E]) -> Self;
    /// Into the first `WIDTH` elements of `s`.
    fn store(self, s: &mut [E]);
    /// Into the first `WIDTH` places of `s`, fresh memory written once.
    fn store_uninit(self, s: &mut [MaybeUninit<E>]);
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
    fn store_uninit(self, s: &mut [MaybeUninit<E>]) {
        s[..W].iter_mut().zip(self.0).for_each(|(d, v)| _ = d.write(v));
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

/// Whether this CPU runs the AVX-512 lanes.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU runs the AVX2 lanes.
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The copy of a kernel a call runs. A kernel's copies round alike, so the
/// choice is one of speed alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Path {
    Portable,
    Avx2,
    Avx512,
}

impl Path {
    /// The widest copy this CPU runs.
    pub fn widest() -> Path {
        match (avx512(), avx2_fma()) {
            (true, _) => Path::Avx512,
            (false, true) => Path::Avx2,
            (false, false) => Path::Portable,
        }
    }

    /// Every copy this CPU runs, for tests that check they round alike.
    #[cfg(test)]
    pub fn all() -> Vec<Path> {
        [(true, Path::Portable), (avx2_fma(), Path::Avx2), (avx512(), Path::Avx512)]
            .into_iter()
            .filter_map(|(has, p)| has.then_some(p))
            .collect()
    }
}

/// `body()`, inlined into a twin compiled for AVX2 where the CPU has it, so
/// its loops vectorise 256 bits wide instead of 128. Only for bodies whose
/// bits do not depend on the width: element-wise maps, and sums whose order
/// the code fixes (Rust never contracts a multiply and an add into an FMA,
/// and never reorders a float sum, at any width). Call it through `wide!`.
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

/// Eight f64 lanes of AVX-512. Only code running after [`avx512`] returned
/// true may use them (or [`Avx512F32`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512F64(std::arch::x86_64::__m512d);

/// Sixteen f32 lanes of AVX-512.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512F32(std::arch::x86_64::__m512);

/// The lanes of one register type over one element type, from its
/// intrinsics; `keep_from` is the one operation whose intrinsics differ
/// in kind between AVX2 (an AND with a mask read from a table) and
/// AVX-512 (a mask register).
macro_rules! impl_simd {
    ($lanes:ident, $t:ty, $width:literal, $setzero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident,
     keep_from($v:ident, $first:ident) $keep:block) => {
        // SAFETY (every block below): the type is only used once its
        // features were detected, and loads and stores stay inside the
        // slice (indexing it to `WIDTH` first).
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
            fn store_uninit(self, s: &mut [MaybeUninit<$t>]) {
                // Through a raw pointer: no reference to the uninitialised values is made.
                unsafe { std::arch::x86_64::$storeu(s[..$width].as_mut_ptr().cast::<$t>(), self.0) }
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
                let ($v, $first) = (self.0, first);
                $lanes($keep)
            }
        }
    };
}

/// The AVX2 lanes: lane l of the mask read from `first` lanes before the
/// table's middle is all ones exactly when l ≥ first.
macro_rules! impl_avx2 {
    ($lanes:ident, $t:ty, $bits:ty, $width:literal, $setzero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $and:ident) => {
        impl_simd!($lanes, $t, $width, $setzero, $set1, $loadu, $storeu, $fmadd, keep_from(v, first) {
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
            unsafe { std::arch::x86_64::$and(v, std::arch::x86_64::$loadu(mask.as_ptr().cast())) }
        });
    };
}

/// The AVX-512 lanes: a mask register with bit l set exactly when l ≥ first.
macro_rules! impl_avx512 {
    ($lanes:ident, $t:ty, $mask:ty, $width:literal, $setzero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $maskz_mov:ident) => {
        impl_simd!($lanes, $t, $width, $setzero, $set1, $loadu, $storeu, $fmadd, keep_from(v, first) {
            let keep = (((1u32 << $width) - 1) & !((1u32 << first) - 1)) as $mask;
            unsafe { std::arch::x86_64::$maskz_mov(keep, v) }
        });
    };
}

impl_avx2!(Avx2F64, f64, u64, 4, _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_and_pd);
impl_avx2!(Avx2F32, f32, u32, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_and_ps);
impl_avx512!(
    Avx512F64,
    f64,
    u8,
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_fmadd_pd,
    _mm512_maskz_mov_pd
);
impl_avx512!(
    Avx512F32,
    f32,
    u16,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_maskz_mov_ps
);

#[cfg(test)]
mod tests {
    use super::*;

    fn bits<E: Element>(s: &[E]) -> Vec<u64> {
        s.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    /// `S` computes `a·b + c` as one fused multiply-add per lane, sums its
    /// lanes left to right, and `keep_from` zeroes the lanes before its
    /// argument (NaN and -0 included) and keeps the rest bit for bit: what
    /// every lane type of `E` must do for them all to round alike. The
    /// inputs repeat to fill the lanes.
    fn behaves_as_the_scalars<E: Element, S: Lanes<E>>(a: &[f64], b: &[f64], c: &[f64]) {
        let fill = |v: &[f64]| -> Vec<E> { (0..S::WIDTH).map(|l| E::from_f64(v[l % v.len()])).collect() };
        let (a, b, c) = (fill(a), fill(b), fill(c));
        let mut got = vec![E::ZERO; S::WIDTH];
        let r = S::load(&a).mul_add(S::load(&b), S::load(&c));
        r.store(&mut got);
        let want: Vec<E> = (0..S::WIDTH).map(|l| a[l].mul_add(b[l], c[l])).collect();
        assert_eq!(bits(&got), bits(&want), "{} lanes of a·b + c", S::WIDTH);
        assert_eq!(r.sum().to_f64().to_bits(), want[1..].iter().fold(want[0], |s, &v| s + v).to_f64().to_bits());

        let v: Vec<E> = (0..S::WIDTH).map(|l| E::from_f64([f64::NAN, -0.0, 1.5, -3.25][l % 4])).collect();
        for first in 0..=S::WIDTH {
            let want: Vec<E> = v.iter().enumerate().map(|(l, &x)| if l < first { E::ZERO } else { x }).collect();
            S::load(&v).keep_from(first).store(&mut got);
            assert_eq!(bits(&got), bits(&want), "{} lanes, kept from {first}", S::WIDTH);
        }

        // Into fresh memory, past a place left as it was.
        let mut fresh = vec![MaybeUninit::<E>::uninit(); S::WIDTH + 2];
        fresh[0].write(E::from_f64(7.0));
        S::load(&v).store_uninit(&mut fresh[1..]);
        // SAFETY: place 0 was written above, and the store wrote 1..=WIDTH.
        let written: Vec<E> = fresh[..=S::WIDTH].iter().map(|x| unsafe { x.assume_init() }).collect();
        assert_eq!(bits(&written), bits(&[&[E::from_f64(7.0)], &v[..]].concat()), "{} lanes into fresh memory", S::WIDTH);
    }

    /// Every lane type of `E` this CPU runs.
    fn every_lane_type<E: Element>(a: &[f64], b: &[f64], c: &[f64]) {
        behaves_as_the_scalars::<E, E::Portable>(a, b, c);
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2_lanes<E: Element>(a: &[f64], b: &[f64], c: &[f64]) {
                behaves_as_the_scalars::<E, E::Avx2>(a, b, c)
            }
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512_lanes<E: Element>(a: &[f64], b: &[f64], c: &[f64]) {
                behaves_as_the_scalars::<E, E::Avx512>(a, b, c)
            }
            // SAFETY: each runs only where the CPU has its features.
            if avx2_fma() {
                unsafe { avx2_lanes::<E>(a, b, c) }
            }
            if avx512() {
                unsafe { avx512_lanes::<E>(a, b, c) }
            }
        }
    }

    #[test]
    fn every_lane_type_rounds_as_the_scalars() {
        // Lane 0 tells a fused multiply-add from a rounded product and sum:
        // 0.1·10 rounds to 1 in either precision, so the two-rounding value is 0.
        let (a, b, c) =
            ([0.1, -3.0, 1e-30, 7.0, 0.3, 1e8, -2.5, 1.0 / 7.0], [10.0, 1.0 / 3.0, 1e30, -0.7, 0.7, 1e-8, 4.0, 7.0], [-1.0, 1.6e-8]);
        assert_ne!(0.1f64.mul_add(10.0, -1.0), 0.1 * 10.0 - 1.0);
        assert_ne!(0.1f32.mul_add(10.0, -1.0), 0.1f32 * 10.0 - 1.0);
        every_lane_type::<f64>(&a, &b, &c);
        every_lane_type::<f32>(&a, &b, &c);
    }
}
