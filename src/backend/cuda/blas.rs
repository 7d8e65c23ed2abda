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

/// Strides between consecutive matrices of a strided-batched call of `g`
/// over contiguous row-major batches: (first = B, second = A, C).
pub fn batch_strides(g: &Gemm) -> (i64, i64, i64) {
    ((g.k * g.n) as i64, (g.m * g.k) as i64, (g.m * g.n) as i64)
}

#[cfg(feature = "cuda-backend")]
pub use device::{gemm, gemm_strided_batched};

#[cfg(feature = "cuda-backend")]
mod device {
    use super::*;
    use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
    use cudarc::driver::CudaSlice;

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

    /// Row-major `C = alpha·op(A)·op(B) + beta·C`; the caller has checked lengths.
    pub fn gemm(blas: &CudaBlas, a: &CudaSlice<f32>, b: &CudaSlice<f32>, c: &mut CudaSlice<f32>, g: &Gemm) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let cfg = config(g)?;
        // SAFETY: lengths were checked against m, n, k, and the derived
        // leading dimensions address exactly those row-major buffers.
        unsafe { blas.gemm(cfg, b, a, c) }.map_err(blas_err)
    }

    /// `batch` independent row-major products over contiguous batches.
    pub fn gemm_strided_batched(
        blas: &CudaBlas,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
        g: &Gemm,
        batch: usize,
    ) -> Result<()> {
        if g.m == 0 || g.n == 0 || batch == 0 {
            return Ok(());
        }
        if a.len() != batch * g.m * g.k || b.len() != batch * g.k * g.n || c.len() != batch * g.m * g.n {
            return Err(Error::shape("gemm_strided_batched", format!("{batch} batches of {g:?}")));
        }
        let (stride_b, stride_a, stride_c) = batch_strides(g);
        let cfg =
            StridedBatchedConfig { gemm: config(g)?, batch_size: int("gemm", batch)?, stride_a: stride_b, stride_b: stride_a, stride_c };
        // SAFETY: as `gemm`, with every batch inside the checked lengths.
        unsafe { blas.gemm_strided_batched(cfg, b, a, c) }.map_err(blas_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::gemm::gemm_reference;
    use crate::rng::Rng;

    /// Column-major BLAS semantics, executed literally: what cuBLAS would do
    /// with these arguments.
    fn col_major_reference(c: &ColMajorGemm, first: &[f64], second: &[f64], out: &mut [f64], alpha: f64, beta: f64) {
        let (m, n, k) = (c.m as usize, c.n as usize, c.k as usize);
        let at = |i: usize, p: usize| if c.trans_first { first[p + i * c.ld_first as usize] } else { first[i + p * c.ld_first as usize] };
        let bt =
            |p: usize, j: usize| if c.trans_second { second[j + p * c.ld_second as usize] } else { second[p + j * c.ld_second as usize] };
        for j in 0..n {
            for i in 0..m {
                let acc: f64 = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
                let o = &mut out[i + j * c.ldc as usize];
                *o = alpha * acc + beta * *o;
            }
        }
    }

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
                    let call = col_major(&g).unwrap();
                    let mut got = c0.clone();
                    col_major_reference(&call, &b, &a, &mut got, g.alpha, g.beta);
                    for (x, y) in got.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-12, "{m}x{n}x{k} ta={ta} tb={tb}: {call:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strided_batches_follow_the_swapped_operands() {
        let g = Gemm::new(3, 4, 5, false, true);
        assert_eq!(batch_strides(&g), (20, 15, 12));
        let mut r = Rng::new(2, 0);
        let batch = 3;
        let a: Vec<f64> = (0..batch * 15).map(|_| r.normal()).collect();
        let b: Vec<f64> = (0..batch * 20).map(|_| r.normal()).collect();
        let call = col_major(&g).unwrap();
        let (sb, sa, sc) = batch_strides(&g);
        for i in 0..batch {
            let (a, b) = (&a[i * sa as usize..][..15], &b[i * sb as usize..][..20]);
            let (mut want, mut got) = (vec![0.0; sc as usize], vec![0.0; sc as usize]);
            gemm_reference(a, b, &mut want, g);
            col_major_reference(&call, b, a, &mut got, 1.0, 0.0);
            assert!(got.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12));
        }
    }

    #[test]
    fn empty_and_oversized_dimensions() {
        let c = col_major(&Gemm::new(0, 0, 0, false, false)).unwrap();
        assert!(c.ld_first >= 1 && c.ld_second >= 1 && c.ldc >= 1);
        assert!(col_major(&Gemm::new(1 << 31, 1, 1, false, false)).unwrap_err().to_string().contains("32-bit"));
    }
}
