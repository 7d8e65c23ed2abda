//! Reduction of a symmetric matrix to tridiagonal form by Householder
//! similarities, for eigenvalues only, in f64 or f32: LAPACK's blocked
//! `dsytrd` with `dlatrd` (lower triangle; Golub & Van Loan, §8.3.1 and
//! §5.1.7).
//!
//! Why not faer's `tridiag_in_place`: it applies each reflector to the
//! trailing matrix at once, so every one of the n steps reads and writes the
//! whole trailing matrix. Here a panel of `PANEL` reflectors is built
//! against the trailing matrix as it stood at the panel's start (each
//! product with it corrected by the panel's earlier reflectors), so a step
//! only reads the matrix, and the panel's updates land together as one
//! rank-2·`PANEL` update. No reflector is kept: eigenvalues need none.
//!
//! One solve runs on one task (the caller runs a step's solves side by
//! side), in a summation order fixed by the sizes alone, so the result does
//! not depend on the thread count; fused multiply-adds keep it the same with
//! or without the x86 FMA unit.
//!
//! Why not split one solve across threads: tried with each step's symv in
//! two column chunks (split at (1 − 1/√2)·m, from m = 384) and the trailing
//! update's column blocks side by side, both joined by rayon. 576² f32 on 2
//! idle cores, median of criterion, alternating builds: 11.56/11.60 ms
//! sequential against 13.25/13.14 ms split and 12.88/13.05 ms with only the
//! update split; under load ~3 the split was 13.5–15.8 ms against 11.4–12.2.
//! A step's symv (tens of µs) is too short for a fork and join per step.

#[cfg(target_arch = "x86_64")]
use super::lanes;
use super::lanes::{as_elements_mut, into_scalars, Element, Lanes};
use super::microkernel::{self, NR};

/// Reflectors per panel: the inner dimension of the trailing update is twice this.
/// Why 16 rather than 32: each of a panel's columns is first brought up to
/// date with the panel's earlier reflectors, work that grows with the width,
/// and at n = 256 that outweighs the GEMM's better efficiency at k = 64.
/// One thread, 38 matrices of 256², under load ~3.5 on 2 cores: 34.1–34.3 →
/// 29.4–29.8 ms; 784² unchanged (16.3–17.4 against 16.4–17.7 ms, its symv
/// bound by memory); f32 results move within rounding (see eigen.rs).
const PANEL: usize = 16;

/// Reduces the symmetric `n × n` matrix whose lower triangle `a` holds in
/// column-major order (element `(i, j)`, `i ≥ j`, at `a[j·n + i]`; the
/// upper triangle is scratch) and returns its diagonal and off-diagonal.
/// `a` is overwritten. The caller checks `a.len() == n²`.
pub fn tridiagonalise<E: Element>(a: &mut [E], n: usize) -> (Vec<E>, Vec<E>) {
    debug_assert_eq!(a.len(), n * n);
    match as_elements_mut::<f32, E>(a) {
        Some(a) => same_type(tridiagonalise_f32(a, n)),
        None => same_type(tridiagonalise_f64(as_elements_mut(a).expect("f32 and f64 are the only elements"), n)),
    }
}

/// A kernel's `(d, e)` in `F` back as `E`, the same type.
fn same_type<E: 'static, F: 'static>((d, e): (Vec<F>, Vec<F>)) -> (Vec<E>, Vec<E>) {
    (into_scalars(d).expect("F is E"), into_scalars(e).expect("F is E"))
}

// Not generic, so the library compiles each once and every caller runs that
// machine code (lanes.rs, "One compiled copy").
fn tridiagonalise_f32(a: &mut [f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    reduce_fastest(a, n)
}

fn tridiagonalise_f64(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    reduce_fastest(a, n)
}

/// The reduction in the widest copy the CPU has, else the portable one.
///
/// On AVX-512 only the trailing update takes the wide lanes: a lane there
/// holds one element's sum, so the width cannot move a bit, while symv's
/// and dot's lanes are added together and keep to AVX2 (lanes.rs). Both
/// copies alternated call by call in one binary, one thread, f32, best of
/// 300 (256²) and 40 (576², 784²) on the 2-core Intel Xeon (2026-12-07):
/// 0.503 against 0.527 ms, 3.91 against 4.19 ms and 9.32 against 10.11 ms,
/// same bits; the MLP analysis step 48.9–49.1 against 49.4–49.9 ms.
#[inline(always)]
fn reduce_fastest<E: Element>(a: &mut [E], n: usize) -> (Vec<E>, Vec<E>) {
    #[cfg(target_arch = "x86_64")]
    if lanes::avx512() {
        // SAFETY: the feature was just detected, as the Gram's AVX-512 copy takes it.
        return unsafe { reduce_avx512(a, n) };
    }
    #[cfg(target_arch = "x86_64")]
    if lanes::avx2_fma() {
        // SAFETY: both features were just detected.
        return unsafe { reduce_avx2(a, n) };
    }
    reduce::<E, E::Portable, E::Portable>(a, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn reduce_avx2<E: Element>(a: &mut [E], n: usize) -> (Vec<E>, Vec<E>) {
    reduce::<E, E::Avx2, E::Avx2>(a, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn reduce_avx512<E: Element>(a: &mut [E], n: usize) -> (Vec<E>, Vec<E>) {
    reduce::<E, E::Avx2, E::Avx512>(a, n)
}

/// The reduction, its sums on lanes `S` and its trailing update's tiles on
/// lanes `T`; inlined into [`reduce_avx2`] and [`reduce_avx512`] so its
/// kernels compile for their features there.
#[inline(always)]
fn reduce<E: Element, S: Lanes<E>, T: Lanes<E>>(a: &mut [E], n: usize) -> (Vec<E>, Vec<E>) {
    let mut d = vec![E::ZERO; n];
    let mut e = vec![E::ZERO; n.saturating_sub(1)];
    if n == 0 {
        return (d, e);
    }
    // Per panel, columns [V | W | V] of length n (matrix row indices): the
    // reflectors and their w vectors, laid out so the update is U·Zᵀ with
    // U = [V | W] and Z = [W | V], both contiguous.
    let mut p = vec![E::ZERO; n * 3 * PANEL];
    let mut y = vec![E::ZERO; n];
    let mut k = 0;
    while k + 1 < n {
        let nb = PANEL.min(n - 1 - k);
        panel::<E, S>(a, n, k, nb, &mut p, &mut d, &mut e, &mut y);
        trailing_update::<E, T>(a, n, k + nb, nb, &p);
        k += nb;
    }
    d[n - 1] = a[n * n - 1];
    (d, e)
}

/// Reflectors for columns `k..k + nb` (`dlatrd`): column `k + j` is first
/// brought up to date with the panel's earlier reflectors, then reduced by
/// `H = I − τvvᵀ`, and `w = τA'v − ½τ²(vᵀA'v)v` (A' the trailing matrix as
/// updated so far) is stored so that `A' − vwᵀ − wvᵀ = HA'H`.
///
/// The corrections by earlier reflectors take a pass over the vector each;
/// four reflectors' dots and updates fused per pass (same bits) gained
/// nothing at 256² or 784² (2026-12-05): the symv dominates.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel<E: Element, S: Lanes<E>>(a: &mut [E], n: usize, k: usize, nb: usize, p: &mut [E], d: &mut [E], e: &mut [E], y: &mut [E]) {
    for j in 0..nb {
        let c = k + j;
        for i in 0..j {
            let (vc, wc) = (p[i * n + c], p[(nb + i) * n + c]);
            let col = &mut a[c * n + c..(c + 1) * n];
            let (v, w) = (&p[i * n + c..(i + 1) * n], &p[(nb + i) * n + c..(nb + i + 1) * n]);
            for ((x, &vr), &wr) in col.iter_mut().zip(v).zip(w) {
                *x -= vr.mul_add(wc, wr * vc);
            }
        }
        d[c] = a[c * n + c];
        let m = n - c - 1;
        let x = &mut a[c * n + c + 1..(c + 1) * n];
        let (beta, tau) = reflector::<E, S>(x);
        e[c] = beta;
        p[j * n + c + 1..(j + 1) * n].copy_from_slice(x);
        p[(2 * nb + j) * n + c + 1..(2 * nb + j + 1) * n].copy_from_slice(x);
        let y = &mut y[..m];
        let v = &p[j * n + c + 1..(j + 1) * n];
        symv::<E, S>(&a[(c + 1) * (n + 1)..], n, m, v, y);
        for i in 0..j {
            let (vi, wi) = (&p[i * n + c + 1..(i + 1) * n], &p[(nb + i) * n + c + 1..(nb + i + 1) * n]);
            let (vv, wv) = (dot::<E, S>(vi, v), dot::<E, S>(wi, v));
            for ((yr, &a), &b) in y.iter_mut().zip(vi).zip(wi) {
                *yr -= a.mul_add(wv, b * vv);
            }
        }
        y.iter_mut().for_each(|yr| *yr *= tau);
        let half = -E::from_f64(0.5) * tau * dot::<E, S>(y, v);
        let (vs, ws) = p.split_at_mut(nb * n);
        let (v, w) = (&vs[j * n + c + 1..(j + 1) * n], &mut ws[j * n + c + 1..(j + 1) * n]);
        for ((wr, &yr), &vr) in w.iter_mut().zip(y.iter()).zip(v) {
            *wr = half.mul_add(vr, yr);
        }
    }
}

/// `dlarfg`: turns `x` into `v` (with `v[0] = 1`) and returns `(β, τ)` such
/// that `(I − τvvᵀ)x = βe₁`. `τ = 0` (the identity) when `x[1..]` is zero.
#[inline(always)]
fn reflector<E: Element, S: Lanes<E>>(x: &mut [E]) -> (E, E) {
    let alpha = x[0];
    let tail = &mut x[1..];
    let big = tail.iter().fold(E::ZERO, |m, v| m.max(v.abs()));
    if big == E::ZERO {
        x[0] = E::ONE;
        return (alpha, E::ZERO);
    }
    // Far below 1 (the caller scales the matrix to a unit largest entry) the
    // squares could underflow: measure in units of the largest entry instead.
    let norm =
        if big < E::TINY { big * tail.iter().map(|&v| (v / big) * (v / big)).sum::<E>().sqrt() } else { dot::<E, S>(tail, tail).sqrt() };
    let beta = -alpha.hypot(norm).copysign(alpha);
    let tau = (beta - alpha) / beta;
    let pivot = alpha - beta;
    tail.iter_mut().for_each(|v| *v = *v / pivot);
    x[0] = E::ONE;
    (beta, tau)
}

/// `y = A·x` for the symmetric `m × m` block whose lower triangle starts at
/// `a[0]` with column stride `ld`. Each stored entry is read once and used
/// twice (its row's axpy and its column's dot), four columns at a time,
/// in whole vectors from the columns' top row (their 4×4 triangle) to
/// their last: a vector's lanes a column must not take are masked off,
/// above its diagonal (the upper triangle, scratch: read, never used) and
/// rows an earlier vector took.
///
/// Why: the triangle and the last rows went element by element before;
/// with the horizontal sums, a third of the reduction's time at 256² by
/// profile. The gain measured depends on the build as much as on the code
/// (2026-12-05, one thread, alternated call by call, best of 400 at 256²
/// and 40 at 784²). Against the previous version, each a module of one
/// binary: f32 256² 0.718 against 0.753–0.759 ms, 784² 15.0–15.5 against
/// 14.3–15.1 ms (2–5% slower), f64 256² 1.24–1.26 against 1.12–1.15 ms
/// (10% slower; f64 runs only in gradient checks and f64 runs). In
/// another binary, beside panel changes not kept: f32 256² 0.658–0.663
/// against 0.766–0.775 ms, 784² 13.1–13.3 against 14.3–14.4 ms. The f32
/// analysis step, the previous symv behind a switch: 2.5–3% faster. The
/// sums run in another order; f32 eigenvalues move within rounding (see
/// eigen.rs). Two accumulators per column's dot (against the FMA latency)
/// gained nothing.
///
/// Why not row blocks across the columns, which spares each column its
/// horizontal sum: tried with 16-row blocks, each column's dot kept as a
/// vector of partial sums and added across once at the end (and [`dot`]'s
/// tail as one masked vector, which alone was 2% slower). The whole
/// reduction, alternated with this one in one binary, best of 19, matrices
/// at four alignments: 256² 1.58–1.66 against 1.61 ms, 784² 30.2–35.7
/// against 28.9–29.7 ms (at 784² the matrix outgrows L2, and a block
/// crosses the columns at a stride of n instead of running down them).
#[inline(always)]
fn symv<E: Element, S: Lanes<E>>(a: &[E], ld: usize, m: usize, x: &[E], y: &mut [E]) {
    let w = S::WIDTH;
    y.fill(E::ZERO);
    let mut q = 0;
    while q + 4 <= m && m - q >= w {
        // Columns q..q + 4 from row q down, whole vectors from the top; the
        // rows above a column's diagonal are the upper triangle (scratch).
        let rows = m - q;
        let four: [&[E]; 4] = std::array::from_fn(|i| &a[(q + i) * ld + q..(q + i) * ld + m]);
        let xq: [S; 4] = std::array::from_fn(|i| S::splat(x[q + i]));
        let (xs, ys) = (&x[q..m], &mut y[q..m]);
        let mut acc = [S::zero(); 4];
        // The top vector: column i's axpy from its diagonal on, its dot
        // from below the diagonal.
        four_rows::<E, S>(&four, 0, &xq, xs, ys, &mut acc, |i, v| (v.keep_from(i), v.keep_from(i + 1)));
        let whole = rows / w;
        for r0 in (w..whole * w).step_by(w) {
            four_rows::<E, S>(&four, r0, &xq, xs, ys, &mut acc, |_, v| (v, v));
        }
        // A last, partial vector ends at row m, its rows already done masked off.
        if whole * w < rows {
            let done = w - rows % w;
            four_rows::<E, S>(&four, rows - w, &xq, xs, ys, &mut acc, |_, v| (v.keep_from(done), v.keep_from(done)));
        }
        for i in 0..4 {
            ys[i] += acc[i].sum();
        }
        q += 4;
    }
    // The last columns, one at a time.
    for q in q..m {
        let col = &a[q * ld + q..q * ld + m];
        let mut s = col[0] * x[q];
        for r in 1..col.len() {
            y[q + r] = col[r].mul_add(x[q], y[q + r]);
            s = col[r].mul_add(x[q + r], s);
        }
        y[q] += s;
    }
}

/// One vector of rows `r0..` of four columns: `y`'s rows get the columns'
/// axpy, each column's dot in `acc` the rows' `x`; `mask(i, column i's
/// vector)` gives what column i's axpy and dot take of it.
#[inline(always)]
fn four_rows<E: Element, S: Lanes<E>>(
    four: &[&[E]; 4],
    r0: usize,
    xq: &[S; 4],
    x: &[E],
    y: &mut [E],
    acc: &mut [S; 4],
    mask: impl Fn(usize, S) -> (S, S),
) {
    let xr = S::load(&x[r0..]);
    let mut yr = S::load(&y[r0..]);
    for i in 0..4 {
        let (axpy, dot) = mask(i, S::load(&four[i][r0..]));
        yr = axpy.mul_add(xq[i], yr);
        acc[i] = dot.mul_add(xr, acc[i]);
    }
    yr.store(&mut y[r0..]);
}

/// `Σ aᵢbᵢ` in two lane groups (two chains of FMA latency), added in a fixed order.
#[inline(always)]
fn dot<E: Element, S: Lanes<E>>(a: &[E], b: &[E]) -> E {
    let w = S::WIDTH;
    let len = a.len() / (2 * w) * (2 * w);
    let (mut even, mut odd) = (S::zero(), S::zero());
    for (ac, bc) in a[..len].chunks_exact(2 * w).zip(b[..len].chunks_exact(2 * w)) {
        even = S::load(&ac[..w]).mul_add(S::load(&bc[..w]), even);
        odd = S::load(&ac[w..]).mul_add(S::load(&bc[w..]), odd);
    }
    let tail = a[len..].iter().zip(&b[len..]).fold(E::ZERO, |s, (x, y)| x.mul_add(*y, s));
    even.sum() + odd.sum() + tail
}

/// `A[t.., t..] −= V·Wᵀ + W·Vᵀ` on the lower triangle, as `U·Zᵀ` with
/// U = [V | W] and Z = [W | V], in tiles of two vectors of rows by [`NR`]
/// columns. Each column panel's tiles are laid from the bottom row up, so
/// only the top one can be partial, and it is computed whole: the rows it
/// adds above the panel's first column lie in the upper triangle, scratch.
/// Each element's sum runs over Z's columns in order and is then taken from
/// A, so the result depends on the sizes alone.
///
/// Why not the gemm crate, which ran it as one product per 64-column block:
/// that computed each diagonal block whole, packed its operands per block
/// and paid a call's setup 4–13 times per panel. One thread, all three
/// alternated call by call in one binary, best of 400 (256²) and 60 (784²)
/// over two runs: 256² 0.773–0.788 against 0.798–0.814 ms, 784² 15.35–15.69
/// against 16.00–16.39 ms. U packed per tile, as the crate packs it, was no
/// faster (0.769–0.792 and 15.30–15.48 ms). The crate's sums ran in another
/// order on some shapes: on the 40 matrices of the MLP analysis step every
/// eigenvalue moved by at most 7e-8·λmax (f32's ε is 1.2e-7), λmax by at
/// most 5e-12 of itself.
///
/// Why not [`super::gram`]'s kernel: its tiles run along A's rows, so it
/// adds them into this column-major A one element at a time; with an inner
/// dimension of only 32 those adds outweighed the flops saved (256² 1.63
/// against the crate's 1.38 ms, 784² 40.4 against 29.8 ms, 2026-12-04).
#[inline(always)]
fn trailing_update<E: Element, S: Lanes<E>>(a: &mut [E], n: usize, t: usize, nb: usize, p: &[E]) {
    let mr = 2 * S::WIDTH;
    let mut z = [[E::ZERO; NR]; 2 * PANEL];
    let z = &mut z[..2 * nb];
    for j0 in (t..n).step_by(NR) {
        // The panel's rows of Z, zero-padded to NR columns.
        let cols = NR.min(n - j0);
        for (s, zs) in z.iter_mut().enumerate() {
            zs[..cols].copy_from_slice(&p[(nb + s) * n + j0..][..cols]);
            zs[cols..].fill(E::ZERO);
        }
        let mut end = n;
        while end > j0 {
            if end < mr {
                // A matrix too small for a whole tile above the panel.
                element_wise(a, n, p, j0..end, j0, cols, z);
                break;
            }
            tile::<E, S>(a, n, p, end - mr, j0, cols, z);
            end -= mr;
        }
    }
}

/// Rows `i0..i0 + 2w` of columns `j0..j0 + cols`: `A −= U·Zᵀ`, with Z's
/// rows for these columns in `z`.
#[inline(always)]
fn tile<E: Element, S: Lanes<E>>(a: &mut [E], n: usize, p: &[E], i0: usize, j0: usize, cols: usize, z: &[[E; NR]]) {
    let w = S::WIDTH;
    let mut acc = [[S::zero(); 2]; NR];
    assert!(!z.is_empty() && (z.len() - 1) * n + i0 + 2 * w <= p.len(), "U's rows of the tile");
    // SAFETY: U's z.len() rows hold the tile's rows at stride n (asserted);
    // z holds z.len() rows of NR.
    unsafe { microkernel::accumulate::<E, S>(&mut acc, (p[i0..].as_ptr(), n), (z.as_ptr().cast(), NR), z.len()) };
    let minus = S::splat(-E::ONE);
    for (c, ac) in acc.iter().enumerate().take(cols) {
        let (lo, hi) = a[(j0 + c) * n + i0..(j0 + c) * n + i0 + 2 * w].split_at_mut(w);
        ac[0].mul_add(minus, S::load(lo)).store(lo);
        ac[1].mul_add(minus, S::load(hi)).store(hi);
    }
}

/// [`tile`]'s sums one element at a time, for `rows` of columns `j0..j0 + cols`.
fn element_wise<E: Element>(a: &mut [E], n: usize, p: &[E], rows: std::ops::Range<usize>, j0: usize, cols: usize, z: &[[E; NR]]) {
    for c in 0..cols {
        for i in rows.clone() {
            let s = z.iter().enumerate().fold(E::ZERO, |s, (q, zs)| p[q * n + i].mul_add(zs[c], s));
            let x = &mut a[(j0 + c) * n + i];
            *x = s.mul_add(-E::ONE, *x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Column-major copy of a random symmetric matrix, lower triangle valid.
    fn random_symmetric<E: Element>(r: &mut Rng, n: usize) -> Vec<E> {
        let mut a = vec![E::ZERO; n * n];
        for j in 0..n {
            for i in j..n {
                a[j * n + i] = E::from_f64(r.normal());
            }
        }
        a
    }

    /// Σλ² = ‖A‖²_F and Σλ = tr A are kept by any orthogonal similarity, to
    /// `tol`·n·‖A‖ (a fixed multiple of ε, 4504ε, in either precision).
    fn keeps_trace_and_frobenius_norm<E: Element>() {
        let tol = 1e-12 / f64::EPSILON * E::EPSILON;
        let mut r = Rng::new(31, 0);
        for n in [1, 2, 3, 5, 33, 70, 130] {
            let a = random_symmetric::<E>(&mut r, n);
            let at = |i: usize, j: usize| if i >= j { a[j * n + i] } else { a[i * n + j] }.to_f64();
            let trace: f64 = (0..n).map(|i| at(i, i)).sum();
            let frob: f64 = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| at(i, j) * at(i, j)).sum();
            let (d, e) = tridiagonalise(&mut a.clone(), n);
            let got_trace: f64 = d.iter().map(|x| x.to_f64()).sum();
            let got_frob: f64 = d.iter().map(|x| x.to_f64().powi(2)).sum::<f64>() + 2.0 * e.iter().map(|x| x.to_f64().powi(2)).sum::<f64>();
            assert!((got_trace - trace).abs() < tol * n as f64 * frob.sqrt(), "{n}: trace {got_trace} vs {trace}");
            assert!((got_frob - frob).abs() < tol * n as f64 * frob, "{n}: ‖A‖² {got_frob} vs {frob}");
        }
    }

    #[test]
    fn keeps_trace_and_frobenius_norm_in_f64() {
        keeps_trace_and_frobenius_norm::<f64>();
    }

    #[test]
    fn keeps_trace_and_frobenius_norm_in_f32() {
        keeps_trace_and_frobenius_norm::<f32>();
    }

    /// `symv` is A·x to within the rounding of its sums (|error| ≤ 2mε·Σ|a||x|
    /// per row) and never reads the upper triangle, here NaN: in both copies,
    /// which give the same bits, at sizes around whole and partial vectors.
    #[test]
    fn symv_is_the_product_and_leaves_the_upper_triangle_alone() {
        fn check<E: Element>(symv: impl Fn(&[E], usize, usize, &[E], &mut [E]), portable: &[Vec<E>]) -> Vec<Vec<E>> {
            let mut r = Rng::new(8, 0);
            let mut got = vec![];
            for m in [1, 3, 4, 5, 7, 8, 9, 12, 16, 17, 31, 40, 67] {
                let ld = m + 3;
                let mut a = vec![E::from_f64(f64::NAN); ld * m];
                for j in 0..m {
                    for i in j..m {
                        a[j * ld + i] = E::from_f64(r.normal());
                    }
                }
                let x: Vec<E> = (0..m).map(|_| E::from_f64(r.normal())).collect();
                let mut y = vec![E::from_f64(f64::NAN); m];
                symv(&a, ld, m, &x, &mut y);
                let at = |i: usize, j: usize| a[i.min(j) * ld + i.max(j)].to_f64();
                for (i, yi) in y.iter().enumerate() {
                    let want: f64 = (0..m).map(|j| at(i, j) * x[j].to_f64()).sum();
                    let bound: f64 = (0..m).map(|j| (at(i, j) * x[j].to_f64()).abs()).sum::<f64>() * 2.0 * m as f64 * E::EPSILON;
                    assert!((yi.to_f64() - want).abs() <= bound, "m = {m}, row {i}: {} against {want}", yi.to_f64());
                }
                if let Some(p) = portable.get(got.len()) {
                    assert!(y.iter().zip(p).all(|(g, p)| g.to_f64().to_bits() == p.to_f64().to_bits()), "m = {m}: copies differ");
                }
                got.push(y);
            }
            got
        }
        // The portable copies' results, which only x86_64 has other copies to compare with.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
        let (p64, p32) =
            (check::<f64>(symv::<f64, <f64 as Element>::Portable>, &[]), check::<f32>(symv::<f32, <f32 as Element>::Portable>, &[]));
        #[cfg(target_arch = "x86_64")]
        if lanes::avx2_fma() {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<E: Element>(a: &[E], ld: usize, m: usize, x: &[E], y: &mut [E]) {
                symv::<E, E::Avx2>(a, ld, m, x, y)
            }
            // SAFETY: both features were just detected.
            check::<f64>(|a, ld, m, x, y| unsafe { avx2(a, ld, m, x, y) }, &p64);
            check::<f32>(|a, ld, m, x, y| unsafe { avx2(a, ld, m, x, y) }, &p32);
        }
    }

    /// The tiles give the bits of the plain formula, `a − Σ_q U(i, q)·Z(j, q)`
    /// summed in order, on the trailing lower triangle, and leave the columns
    /// before it alone; in every copy, at sizes with partial tiles and panels.
    fn tiles_are_the_plain_formula<E: Element>(update: impl Fn(&mut [E], usize, usize, usize, &[E])) {
        let mut r = Rng::new(17, 0);
        for (n, t, nb) in [(1, 0, 1), (5, 4, 4), (23, 16, 16), (70, 33, 16), (131, 17, 7)] {
            let a: Vec<E> = (0..n * n).map(|_| E::from_f64(r.normal())).collect();
            let p: Vec<E> = (0..n * 3 * PANEL).map(|_| E::from_f64(r.normal())).collect();
            let mut got = a.clone();
            update(&mut got, n, t, nb, &p);
            for j in 0..n {
                for i in j..n {
                    let want = if j < t {
                        a[j * n + i]
                    } else {
                        let s = (0..2 * nb).fold(E::ZERO, |s, q| p[q * n + i].mul_add(p[(nb + q) * n + j], s));
                        s.mul_add(-E::ONE, a[j * n + i])
                    };
                    assert_eq!(got[j * n + i].to_f64().to_bits(), want.to_f64().to_bits(), "{n}, t {t}: ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn the_trailing_update_is_the_plain_formula() {
        tiles_are_the_plain_formula::<f64>(trailing_update::<f64, <f64 as Element>::Portable>);
        tiles_are_the_plain_formula::<f32>(trailing_update::<f32, <f32 as Element>::Portable>);
        #[cfg(target_arch = "x86_64")]
        if lanes::avx2_fma() {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<E: Element>(a: &mut [E], n: usize, t: usize, nb: usize, p: &[E]) {
                trailing_update::<E, E::Avx2>(a, n, t, nb, p)
            }
            // SAFETY: both features were just detected.
            tiles_are_the_plain_formula::<f64>(|a, n, t, nb, p| unsafe { avx2(a, n, t, nb, p) });
            tiles_are_the_plain_formula::<f32>(|a, n, t, nb, p| unsafe { avx2(a, n, t, nb, p) });
        }
        #[cfg(target_arch = "x86_64")]
        if lanes::avx512() {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512<E: Element>(a: &mut [E], n: usize, t: usize, nb: usize, p: &[E]) {
                trailing_update::<E, E::Avx512>(a, n, t, nb, p)
            }
            // SAFETY: the feature was just detected.
            tiles_are_the_plain_formula::<f64>(|a, n, t, nb, p| unsafe { avx512(a, n, t, nb, p) });
            tiles_are_the_plain_formula::<f32>(|a, n, t, nb, p| unsafe { avx512(a, n, t, nb, p) });
        }
    }
}
