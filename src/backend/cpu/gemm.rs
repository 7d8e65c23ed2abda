//! Row-major GEMM through the `gemm` crate (packed SIMD micro-kernels, rayon).

use super::super::Gemm;
use super::parallel::SharedPtr;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Products smaller than this many multiply-adds run on one thread.
const PARALLEL_FLOPS: usize = 1 << 18;

/// Rows of C a thread must get for a product to be cut into row blocks of
/// C, one single-threaded product per thread, instead of threaded by the
/// crate. On the 2-core host the crate's own split ran the MLP's X·Wᵀ
/// (1024×256×256) at 185 GFLOP/s and dYᵀ·X (256×256×1024) at 193, row
/// halves at 211 and 211 (dY·W: 225 both ways). Below this many rows a
/// thread's copy of op(B) costs more than its share of the product.
const ROWS_PER_THREAD: usize = 128;

/// Row strides of A, B and C as stored (row-major), for operands that are
/// column blocks of wider matrices.
#[derive(Clone, Copy, Debug)]
pub struct Leading {
    pub a: usize,
    pub b: usize,
    pub c: usize,
}

impl Leading {
    /// The strides of densely stored operands.
    fn dense(g: &Gemm) -> Self {
        let a = if g.trans_a { g.m } else { g.k };
        let b = if g.trans_b { g.k } else { g.n };
        Leading { a, b, c: g.n }
    }
}

/// Checks that `a`, `b` and `c_len` elements hold op(A) (m×k), op(B) (k×n)
/// and C (m×n) with row strides `ld`. Densely stored operands must fill
/// their slices exactly: a longer slice is a caller's shape error, not a
/// prefix to use silently.
fn check<T>(a: &[T], b: &[T], c_len: usize, g: &Gemm, ld: Leading, exact: bool) -> Result<()> {
    let Gemm { m, n, k, trans_a, trans_b, .. } = *g;
    let a_dims = if trans_a { (k, m) } else { (m, k) };
    let b_dims = if trans_b { (n, k) } else { (k, n) };
    let holds = |len: usize, (rows, cols): (usize, usize), ld: usize| match exact {
        true => len == rows * cols,
        false => rows == 0 || cols == 0 || (ld >= cols && len >= (rows - 1) * ld + cols),
    };
    if !holds(a.len(), a_dims, ld.a) || !holds(b.len(), b_dims, ld.b) || !holds(c_len, (m, n), ld.c) {
        let strides = if exact { String::new() } else { format!(" with strides {ld:?}") };
        return Err(Error::shape("gemm", format!("m={m} n={n} k={k}{strides} but |A|={} |B|={} |C|={c_len}", a.len(), b.len())));
    }
    Ok(())
}

/// `C = alpha·op(A)·op(B) + beta·C` into an initialised `c`.
pub fn gemm<T: Scalar>(a: &[T], b: &[T], c: &mut [T], g: Gemm) -> Result<()> {
    dense(a, b, c, g, true)
}

/// [`gemm`](fn@gemm) on the calling thread, for callers that already run one product per core.
pub fn gemm_on_thread<T: Scalar>(a: &[T], b: &[T], c: &mut [T], g: Gemm) -> Result<()> {
    dense(a, b, c, g, false)
}

fn dense<T: Scalar>(a: &[T], b: &[T], c: &mut [T], g: Gemm, may_parallelize: bool) -> Result<()> {
    let ld = Leading::dense(&g);
    check(a, b, c.len(), &g, ld, true)?;
    // SAFETY: `check` bounds every index; `c` is exclusively borrowed.
    unsafe { raw(a, b, c.as_mut_ptr(), g, ld, may_parallelize) };
    Ok(())
}

/// [`gemm_on_thread`] on operands stored with row strides `ld`.
pub fn gemm_on_thread_strided<T: Scalar>(a: &[T], b: &[T], c: &mut [T], g: Gemm, ld: Leading) -> Result<()> {
    check(a, b, c.len(), &g, ld, false)?;
    // SAFETY: `check` bounds every addressed element; `c` is exclusively borrowed.
    unsafe { raw(a, b, c.as_mut_ptr(), g, ld, false) };
    Ok(())
}

/// `C = alpha·op(A)·op(B)` on the calling thread into possibly fresh memory,
/// operands stored with row strides `ld`: the product writes every element
/// of C's m rows of n and reads none. Needs `beta = 0` and `k > 0`.
pub fn gemm_on_thread_into<T: Scalar>(a: &[T], b: &[T], c: &mut [MaybeUninit<T>], g: Gemm, ld: Leading) -> Result<()> {
    if g.beta != 0.0 || g.k == 0 {
        return Err(Error::shape("gemm", format!("a product into fresh memory needs beta = 0 and k > 0, not {g:?}")));
    }
    check(a, b, c.len(), &g, ld, false)?;
    // SAFETY: `check` bounds every addressed element; `c` is exclusively
    // borrowed, and with beta = 0 it is written, never read.
    unsafe { raw(a, b, c.as_mut_ptr().cast(), g, ld, false) };
    Ok(())
}

/// `alpha·op(A)·op(B)` into fresh memory, with no zero-fill first.
pub fn matmul<T: Scalar>(a: &[T], b: &[T], g: Gemm) -> Result<Vec<T>> {
    let g = Gemm { beta: 0.0, ..g };
    check(a, b, g.m * g.n, &g, Leading::dense(&g), true)?;
    if g.k == 0 {
        return Ok(vec![T::ZERO; g.m * g.n]);
    }
    let mut c = Vec::with_capacity(g.m * g.n);
    // SAFETY: with beta = 0 the destination is write-only (`read_dst` false)
    // and a product with k > 0 writes all m·n elements.
    unsafe {
        raw(a, b, c.as_mut_ptr(), g, Leading::dense(&g), true);
        c.set_len(g.m * g.n);
    }
    Ok(c)
}

/// # Safety
/// `a`, `b` must hold op(A) (m×k) and op(B) (k×n) with row strides `ld`, and
/// `c` must point to m rows of n writable elements `ld.c` apart, not aliasing
/// them; `c` is read only when `beta != 0`.
unsafe fn raw<T: Scalar>(a: &[T], b: &[T], c: *mut T, g: Gemm, ld: Leading, may_parallelize: bool) {
    let Gemm { m, n, k, trans_a, trans_b, alpha, beta } = g;
    if m == 0 || n == 0 {
        return;
    }
    // Strides of op(A) (m×k) and op(B) (k×n) over row-major storage.
    let (a_rs, a_cs) = if trans_a { (1, ld.a as isize) } else { (ld.a as isize, 1) };
    let (b_rs, b_cs) = if trans_b { (1, ld.b as isize) } else { (ld.b as isize, 1) };
    // The crate's convention: dst = alpha·dst + beta·lhs·rhs.
    let product = |a: *const T, c: *mut T, m: usize, parallelism| {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ld.c as isize,
            beta != 0.0,
            a,
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::from_f64(beta),
            T::from_f64(alpha),
            false,
            false,
            false,
            parallelism,
        )
    };
    let threads = if may_parallelize && m * n * k >= PARALLEL_FLOPS { rayon::current_num_threads() } else { 1 };
    let rows = m.div_ceil(threads);
    if threads == 1 {
        product(a.as_ptr(), c, m, gemm::Parallelism::None);
    } else if rows >= ROWS_PER_THREAD {
        // The crate blocks k by k and the cache sizes alone, so each element
        // of C is summed in the same order however its rows are cut.
        let (a, c) = (SharedPtr(a.as_ptr().cast_mut()), SharedPtr(c));
        let (a, c) = (&a, &c);
        (0..m.div_ceil(rows)).into_par_iter().for_each(|t| {
            let first = t * rows;
            product(a.0.offset(first as isize * a_rs), c.0.add(first * ld.c), rows.min(m - first), gemm::Parallelism::None)
        });
    } else {
        product(a.as_ptr(), c, m, gemm::Parallelism::Rayon(threads));
    }
}

/// A block of `acc += alpha·XᵀX`: rows `rows_of` and columns
/// `cols_of` of the `d×d` row-major result, from an `n×d` X whose element
/// `(p, i)` sits at `p·rs + i·cs`, on the calling thread.
///
/// # Safety
/// `acc` must point to `d·d` elements; no other thread may touch the block;
/// `x` must hold every element the strides address.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gram_block<T: Scalar>(
    acc: *mut T,
    x: &[T],
    (n, d): (usize, usize),
    (rs, cs): (usize, usize),
    rows_of: std::ops::Range<usize>,
    cols_of: std::ops::Range<usize>,
    alpha: f64,
) {
    let (m, k, w) = (rows_of.len(), n, cols_of.len());
    if m == 0 || w == 0 || k == 0 {
        return;
    }
    let dst = acc.add(rows_of.start * d + cols_of.start);
    let (rs, cs) = (rs as isize, cs as isize);
    // lhs = X[:, rows_of]ᵀ (m×n), rhs = X[:, cols_of] (n×w).
    gemm::gemm(
        m,
        w,
        k,
        dst,
        1,
        d as isize,
        true,
        x.as_ptr().add(rows_of.start * cs as usize),
        rs,
        cs,
        x.as_ptr().add(cols_of.start * cs as usize),
        cs,
        rs,
        T::ONE,
        T::from_f64(alpha),
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The textbook triple loop, as the reference the tests hold `gemm` to.
pub fn gemm_reference(a: &[f64], b: &[f64], c: &mut [f64], g: Gemm) {
    for i in 0..g.m {
        for j in 0..g.n {
            let mut acc = 0.0;
            for p in 0..g.k {
                let av = if g.trans_a { a[p * g.m + i] } else { a[i * g.k + p] };
                let bv = if g.trans_b { b[j * g.k + p] } else { b[p * g.n + j] };
                acc += av * bv;
            }
            c[i * g.n + j] = g.alpha * acc + g.beta * c[i * g.n + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn matches_reference_for_every_transpose_and_odd_sizes() {
        let mut r = Rng::new(5, 0);
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 70, 300)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a: Vec<f64> = (0..m * k).map(|_| r.normal()).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| r.normal()).collect();
                    let c0: Vec<f64> = (0..m * n).map(|_| r.normal()).collect();
                    let g = Gemm { m, n, k, trans_a: ta, trans_b: tb, alpha: 0.7, beta: -1.3 };
                    let mut want = c0.clone();
                    gemm_reference(&a, &b, &mut want, g);
                    let mut got = c0.clone();
                    gemm(&a, &b, &mut got, g).unwrap();
                    for (x, y) in got.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-10 * (1.0 + y.abs()), "{m}x{n}x{k} {ta} {tb}: {x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn strided_operands_are_column_blocks_of_wider_matrices() {
        let mut r = Rng::new(6, 0);
        let (m, n, k, pad) = (5, 7, 9, 3);
        for ta in [false, true] {
            for tb in [false, true] {
                let g = Gemm { m, n, k, trans_a: ta, trans_b: tb, alpha: 1.0, beta: 0.5 };
                let ld = Leading { a: if ta { m } else { k } + pad, b: if tb { k } else { n } + pad, c: n + pad };
                let a_rows = if ta { k } else { m };
                let b_rows = if tb { n } else { k };
                let a: Vec<f64> = (0..a_rows * ld.a).map(|_| r.normal()).collect();
                let b: Vec<f64> = (0..b_rows * ld.b).map(|_| r.normal()).collect();
                let c0: Vec<f64> = (0..m * ld.c).map(|_| r.normal()).collect();
                // The dense blocks the strided call must see.
                let dense = |x: &[f64], rows: usize, cols: usize, ld: usize| -> Vec<f64> {
                    (0..rows).flat_map(|i| x[i * ld..i * ld + cols].to_vec()).collect()
                };
                let mut want = dense(&c0, m, n, ld.c);
                let (a_cols, b_cols) = (if ta { m } else { k }, if tb { k } else { n });
                gemm_reference(&dense(&a, a_rows, a_cols, ld.a), &dense(&b, b_rows, b_cols, ld.b), &mut want, g);
                let mut got = c0.clone();
                gemm_on_thread_strided(&a, &b, &mut got, g, ld).unwrap();
                for i in 0..m {
                    for j in 0..ld.c {
                        let v = got[i * ld.c + j];
                        let expect = if j < n { want[i * n + j] } else { c0[i * ld.c + j] };
                        assert!((v - expect).abs() < 1e-12 * (1.0 + expect.abs()), "{ta} {tb} ({i},{j})");
                    }
                }
                assert!(gemm_on_thread_strided(&a[..(a_rows - 1) * ld.a + a_cols - 1], &b, &mut got, g, ld).is_err());
            }
        }
    }

    /// A product into fresh memory writes C's m rows of n, each element the
    /// bits of the same product over a zeroed C, and leaves the columns
    /// between rows alone; it refuses beta ≠ 0 (it would read C) and k = 0
    /// (nothing would write C).
    #[test]
    fn products_into_fresh_memory_write_every_element_of_c() {
        let mut r = Rng::new(8, 0);
        let (m, n, k, pad) = (37, 29, 11, 3);
        let g = Gemm::new(m, n, k, false, false);
        let a: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| r.normal() as f32).collect();
        let mut want = vec![0.0f32; m * n];
        gemm(&a, &b, &mut want, g).unwrap();
        // NaN stands for whatever fresh memory holds.
        let mut c = vec![MaybeUninit::new(f32::NAN); m * (n + pad)];
        let ld = Leading { a: k, b: n, c: n + pad };
        gemm_on_thread_into(&a, &b, &mut c, g, ld).unwrap();
        for i in 0..m {
            for j in 0..n + pad {
                // SAFETY: every element was initialised to NaN, then maybe overwritten.
                let v = unsafe { c[i * (n + pad) + j].assume_init() };
                match j < n {
                    true => assert_eq!(v.to_bits(), want[i * n + j].to_bits(), "({i}, {j})"),
                    false => assert!(v.is_nan(), "({i}, {j}) lies between rows"),
                }
            }
        }
        assert!(gemm_on_thread_into(&a, &b, &mut c, Gemm { beta: 1.0, ..g }, ld).is_err());
        assert!(gemm_on_thread_into(&[], &[], &mut c, Gemm::new(m, n, 0, false, false), ld).is_err());
    }

    /// A product cut into row blocks of C, one per thread, holds the bits of
    /// the same product on one thread: each transpose, and row counts that
    /// the thread counts do not divide.
    #[test]
    fn row_blocks_hold_the_bits_of_one_thread() {
        let mut r = Rng::new(7, 0);
        let (m, n, k) = (1000, 40, 300);
        let on = |threads: usize, a: &[f32], b: &[f32], c: &mut [f32], g: Gemm| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| gemm(a, b, c, g)).unwrap()
        };
        for ta in [false, true] {
            for tb in [false, true] {
                let a: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
                let b: Vec<f32> = (0..k * n).map(|_| r.normal() as f32).collect();
                let c0: Vec<f32> = (0..m * n).map(|_| r.normal() as f32).collect();
                let g = Gemm { m, n, k, trans_a: ta, trans_b: tb, alpha: 0.7, beta: 0.5 };
                let mut one = c0.clone();
                on(1, &a, &b, &mut one, g);
                for threads in [2, 3, 7] {
                    assert!(m.div_ceil(threads) >= ROWS_PER_THREAD, "{threads} threads take the row blocks");
                    let mut cut = c0.clone();
                    on(threads, &a, &b, &mut cut, g);
                    assert!(cut.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits()), "{ta} {tb}, {threads} threads");
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        let mut c = vec![0.0f32; 4];
        let e = gemm(&[1.0f32; 3], &[1.0; 4], &mut c, Gemm::new(2, 2, 2, false, false)).unwrap_err();
        assert!(e.to_string().contains("gemm"));
    }
}
