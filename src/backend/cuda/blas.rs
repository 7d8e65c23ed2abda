//! cuBLAS SGEMM for the trait's row-major GEMM. cuBLAS is column-major, and a
//! row-major matrix read column-major is its transpose, so
//! `C = op(A)·op(B)` (row-major) is computed as `Cᵀ = op(B)ᵀ·op(A)ᵀ`
//! (column-major): the operands swap, and each keeps its own transpose flag.
//! [`col_major`] derives that call; the tests execute it with a
//! column-major reference GEMM.

use crate::backend::Gemm;
use crate::error::{Error, Result};

/// One column-major `C = alpha·op(first)·op(second) + beta·C` call, as cuBLAS
/// takes it: `first` is the trait's B and `second` its A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColMajorGemm {
    pub trans_first: bool,
    pub trans_second: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub ld_first: i32,
    pub ld_second: i32,
    pub ldc: i32,
}

fn int(op: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape(op, format!("dimension {v} exceeds cuBLAS's 32-bit range")))
}

/// The cuBLAS call computing the row-major product `g` (with leading
/// dimensions never below 1, as cuBLAS requires even for empty matrices).
pub fn col_major(g: &Gemm) -> Result<ColMajorGemm> {
    let Gemm { m, n, k, trans_a, trans_b, .. } = *g;
    Ok(ColMajorGemm {
        trans_first: trans_b,
        trans_second: trans_a,
        m: int("gemm", n)?,
        n: int("gemm", m)?,
        k: int("gemm", k)?,
        // Row-major B is k×n (n×k when transposed): its row length is the column-major leading dimension.
        ld_first: int("gemm", if trans_b { k } else { n }.max(1))?,
        ld_second: int("gemm", if trans_a { m } else { k }.max(1))?,
        ldc: int("gemm", n.max(1))?,
    })
}

/// A strided-batched product: `count` products of one shape, product i
/// reading A at element `i·stride_a` (likewise B and C). A stride of 0 shares
/// one matrix across the batch (a conv's filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub count: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Batch {
    /// Every operand stored batch after batch.
    pub fn contiguous(g: &Gemm, count: usize) -> Self {
        Batch { count, stride_a: g.m * g.k, stride_b: g.k * g.n, stride_c: g.m * g.n }
    }

    /// The elements A, B and C span.
    pub fn lens(&self, g: &Gemm) -> (usize, usize, usize) {
        let span = |stride: usize, size: usize| if self.count == 0 { 0 } else { (self.count - 1) * stride + size };
        (span(self.stride_a, g.m * g.k), span(self.stride_b, g.k * g.n), span(self.stride_c, g.m * g.n))
    }
}

/// cuBLAS's strides of `batch` (first = B, second = A, C, as [`col_major`]
/// swaps the operands); an error when the products would write over each other.
pub fn col_major_strides(g: &Gemm, batch: &Batch) -> Result<(i64, i64, i64)> {
    if batch.count > 1 && batch.stride_c < g.m * g.n {
        return Err(Error::shape("gemm_strided_batched", format!("C stride {} overlaps {}×{} products", batch.stride_c, g.m, g.n)));
    }
    let long = |v: usize| i64::try_from(v).map_err(|_| Error::shape("gemm_strided_batched", format!("stride {v} exceeds 64 bits")));
    Ok((long(batch.stride_b)?, long(batch.stride_a)?, long(batch.stride_c)?))
}

#[cfg(feature = "cuda-backend")]
pub use device::{gemm, gemm_strided_batched};

#[cfg(feature = "cuda-backend")]
mod device {
    use super::*;
    use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
    use cudarc::driver::{DevicePtr, DevicePtrMut};

    fn config(g: &Gemm) -> Result<GemmConfig<f32>> {
        let c = col_major(g)?;
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        Ok(GemmConfig {
            transa: op(c.trans_first),
            transb: op(c.trans_second),
            m: c.m,
            n: c.n,
            k: c.k,
            alpha: g.alpha as f32,
            lda: c.ld_first,
            ldb: c.ld_second,
            beta: g.beta as f32,
            ldc: c.ldc,
        })
    }

    fn blas_err(e: cudarc::cublas::result::CublasError) -> Error {
        Error::Backend(format!("cuBLAS SGEMM: {e:?}"))
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C`.
    pub fn gemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
        blas: &CudaBlas,
        a: &A,
        b: &B,
        c: &mut C,
        g: &Gemm,
    ) -> Result<()> {
        if a.len() != g.m * g.k || b.len() != g.k * g.n || c.len() != g.m * g.n {
            let (m, n, k) = (g.m, g.n, g.k);
            return Err(Error::shape("gemm", format!("m={m} n={n} k={k} but |A|={} |B|={} |C|={}", a.len(), b.len(), c.len())));
        }
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let cfg = config(g)?;
        // SAFETY: lengths were checked against m, n, k, and the derived
        // leading dimensions address exactly those row-major buffers.
        unsafe { blas.gemm(cfg, b, a, c) }.map_err(blas_err)
    }

    /// `batch.count` row-major products, operands placed by the batch's strides.
    pub fn gemm_strided_batched<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
        blas: &CudaBlas,
        a: &A,
        b: &B,
        c: &mut C,
        g: &Gemm,
        batch: &Batch,
    ) -> Result<()> {
        if (a.len(), b.len(), c.len()) != batch.lens(g) {
            return Err(Error::shape(
                "gemm_strided_batched",
                format!("{batch:?} of {g:?} with |A|={} |B|={} |C|={}", a.len(), b.len(), c.len()),
            ));
        }
        if g.m == 0 || g.n == 0 || batch.count == 0 {
            return Ok(());
        }
        let (stride_a, stride_b, stride_c) = col_major_strides(g, batch)?;
        let cfg = StridedBatchedConfig { gemm: config(g)?, batch_size: int("gemm", batch.count)?, stride_a, stride_b, stride_c };
        // SAFETY: as `gemm`, with every product inside the checked spans.
        unsafe { blas.gemm_strided_batched(cfg, b, a, c) }.map_err(blas_err)
    }
}

/// Executes the cuBLAS calls [`col_major`] and [`col_major_strides`] derive,
/// literally, with column-major BLAS semantics: what cuBLAS would compute.
#[cfg(test)]
pub(crate) fn batched_reference(g: &Gemm, batch: &Batch, a: &[f64], b: &[f64], c: &mut [f64]) {
    let call = col_major(g).unwrap();
    let (sf, ss, sc) = col_major_strides(g, batch).unwrap();
    let (m, n, k) = (call.m as usize, call.n as usize, call.k as usize);
    let (ldf, lds, ldc) = (call.ld_first as usize, call.ld_second as usize, call.ldc as usize);
    for i in 0..batch.count {
        let (first, second) = (&b[i * sf as usize..], &a[i * ss as usize..]);
        let out = &mut c[i * sc as usize..];
        let at = |r: usize, p: usize| if call.trans_first { first[p + r * ldf] } else { first[r + p * ldf] };
        let bt = |p: usize, j: usize| if call.trans_second { second[j + p * lds] } else { second[p + j * lds] };
        for j in 0..n {
            for r in 0..m {
                let acc: f64 = (0..k).map(|p| at(r, p) * bt(p, j)).sum();
                let o = &mut out[r + j * ldc];
                *o = g.alpha * acc + g.beta * *o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::gemm::gemm_reference;
    use crate::rng::Rng;

    #[test]
    fn derived_column_major_calls_compute_the_row_major_product_for_every_transpose() {
        let mut r = Rng::new(1, 0);
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (8, 2, 9), (1, 6, 4), (5, 1, 1)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let g = Gemm { m, n, k, trans_a: ta, trans_b: tb, alpha: 0.5, beta: -2.0 };
                    let a: Vec<f64> = (0..m * k).map(|_| r.normal()).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| r.normal()).collect();
                    let c0: Vec<f64> = (0..m * n).map(|_| r.normal()).collect();
                    let mut want = c0.clone();
                    gemm_reference(&a, &b, &mut want, g);
                    let mut got = c0.clone();
                    batched_reference(&g, &Batch::contiguous(&g, 1), &a, &b, &mut got);
                    for (x, y) in got.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-12, "{m}x{n}x{k} ta={ta} tb={tb}: {:?}", col_major(&g));
                    }
                }
            }
        }
    }

    #[test]
    fn strided_batches_follow_the_swapped_operands_and_share_a_zero_stride_operand() {
        let g = Gemm { beta: 0.5, ..Gemm::new(3, 4, 5, false, true) };
        let batch = Batch::contiguous(&g, 3);
        assert_eq!(col_major_strides(&g, &batch).unwrap(), (20, 15, 12));
        let mut r = Rng::new(2, 0);
        let mut normal = |n: usize| -> Vec<f64> { (0..n).map(|_| r.normal()).collect() };
        for shared_a in [false, true] {
            let batch = Batch { stride_a: if shared_a { 0 } else { 15 }, ..batch };
            let (la, lb, lc) = batch.lens(&g);
            assert_eq!((la, lb, lc), (if shared_a { 15 } else { 45 }, 60, 36));
            let (a, b, c0) = (normal(la), normal(lb), normal(lc));
            let mut got = c0.clone();
            batched_reference(&g, &batch, &a, &b, &mut got);
            for i in 0..3 {
                let a = &a[i * batch.stride_a..][..15];
                let mut want = c0[i * 12..][..12].to_vec();
                gemm_reference(a, &b[i * 20..][..20], &mut want, g);
                assert!(got[i * 12..][..12].iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12), "product {i}, shared A: {shared_a}");
            }
        }
        assert!(col_major_strides(&g, &Batch { stride_c: 0, ..batch }).unwrap_err().to_string().contains("overlaps"));
        assert_eq!(Batch { count: 0, ..batch }.lens(&g), (0, 0, 0));
    }

    #[test]
    fn empty_and_oversized_dimensions() {
        let c = col_major(&Gemm::new(0, 0, 0, false, false)).unwrap();
        assert!(c.ld_first >= 1 && c.ld_second >= 1 && c.ldc >= 1);
        assert!(col_major(&Gemm::new(1 << 31, 1, 1, false, false)).unwrap_err().to_string().contains("32-bit"));
    }
}
