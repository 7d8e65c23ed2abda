//! The CPU eigen-solver (kappa's blocked Householder tridiagonalisation,
//! then the root-free QL iteration) against closed forms, constructed
//! spectra and faer's own solver; and the batched solve's independence from
//! the thread count.
//!
//! Tolerance: Householder tridiagonalisation and the QL iteration are both
//! backward stable, so each computed eigenvalue is an exact eigenvalue of
//! A + E with ‖E‖ ≤ c·n·ε·‖A‖ (c a small constant), and by Weyl's theorem
//! moves by at most that much. Against a known spectrum the tests allow
//! n·ε·λmax (c = 1 on the positive semi-definite matrices here, where
//! ‖A‖ = λmax: 5.7e-14·λmax at n = 256); against faer, whose error counts
//! too, twice that. Measured: 0.01–0.05 n·ε·λmax from the truth (faer's
//! own solver: 0.15–0.18 on the same constructed spectra), and up to 0.96
//! from faer on second moments.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd;
use kappa::analysis::Spectrum;
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::rng::Rng;

fn cpu() -> Cpu<f64> {
    Cpu::new()
}

/// The larger of the entries' gaps, as a multiple of n·ε·scale.
fn worst_gap(got: &[f64], want: &[f64], scale: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let unit = got.len() as f64 * f64::EPSILON * scale;
    got.iter().zip(want).map(|(g, w)| (g - w).abs() / unit).fold(0.0, f64::max)
}

fn descending(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

/// Q·diag(d)·Qᵀ for Q a product of three random Householder reflections,
/// as a full row-major matrix: a symmetric matrix whose spectrum is `d`.
fn with_spectrum(r: &mut Rng, d: &[f64]) -> Vec<f64> {
    let n = d.len();
    let mut a: Vec<f64> = (0..n * n).map(|k| if k % n == k / n { d[k / n] } else { 0.0 }).collect();
    for _ in 0..3 {
        let v: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        // H·A·H with H = I − 2vvᵀ/vᵀv, applied as a rank-2 update.
        let av: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a[i * n + j] * v[j]).sum()).collect();
        let vav: f64 = v.iter().zip(&av).map(|(x, y)| x * y).sum();
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] += -2.0 * (v[i] * av[j] + av[i] * v[j]) / vv + 4.0 * vav * v[i] * v[j] / (vv * vv);
            }
        }
    }
    a
}

/// XᵀX/rows of a standard normal rows×n X: a second moment like the analysis's.
fn second_moment(r: &mut Rng, rows: usize, n: usize) -> Vec<f64> {
    let x: Vec<f64> = (0..rows * n).map(|_| r.normal()).collect();
    let mut m = vec![0.0; n * n];
    for row in x.chunks(n) {
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] += row[i] * row[j] / rows as f64;
            }
        }
    }
    m
}

/// faer's own eigenvalues-only solve, descending.
fn faer_eigenvalues(m: &[f64], n: usize) -> Vec<f64> {
    let a = faer::Mat::<f64>::from_fn(n, n, |i, j| m[i * n + j]);
    let par = faer::Par::Seq;
    let scratch = evd::self_adjoint_evd_scratch::<f64>(n, evd::ComputeEigenvectors::No, par, Default::default());
    let mut values = faer::diag::Diag::<f64>::zeros(n);
    evd::self_adjoint_evd(a.as_ref(), values.as_mut(), None, par, MemStack::new(&mut MemBuffer::new(scratch)), Default::default()).unwrap();
    descending(values.column_vector().iter().copied().collect())
}

#[test]
fn the_second_difference_matrix_has_its_closed_form_spectrum() {
    // tridiag(−1, 2, −1): λ_k = 2 − 2cos(kπ/(n+1)), already tridiagonal, so
    // this isolates the QL iteration.
    let n: usize = 200;
    let m: Vec<f64> = (0..n * n)
        .map(|k| match (k / n).abs_diff(k % n) {
            0 => 2.0,
            1 => -1.0,
            _ => 0.0,
        })
        .collect();
    let got = cpu().eigvalsh(&[(&m, n)]).unwrap().remove(0);
    let want = descending((1..=n).map(|k| 2.0 - 2.0 * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos()).collect());
    let gap = worst_gap(&got, &want, 4.0);
    eprintln!("second difference, n = {n}: worst gap {gap:.3} n·ε·λmax");
    assert!(gap <= 1.0, "{gap}");
}

#[test]
fn constructed_spectra_come_back_clusters_grading_and_zeros_included() {
    let mut r = Rng::new(21, 0);
    for n in [120, 256] {
        // A 10-fold eigenvalue, a geometric grading over 12 decades, then a quarter zeros.
        let graded = n * 3 / 4;
        let d: Vec<f64> = (0..n)
            .map(|i| match i {
                0..10 => 3.0,
                _ if i < graded => 10f64.powf(-12.0 * (i - 10) as f64 / (graded - 10) as f64),
                _ => 0.0,
            })
            .collect();
        let a = with_spectrum(&mut r, &d);
        let got = cpu().eigvalsh(&[(&a, n)]).unwrap().remove(0);
        let gap = worst_gap(&got, &descending(d), 3.0);
        eprintln!("constructed spectrum, n = {n}: worst gap {gap:.3} n·ε·λmax");
        assert!(gap <= 1.0, "{n}: {gap}");
    }
}

#[test]
fn agrees_with_faers_solver_on_second_moments() {
    let mut r = Rng::new(22, 0);
    // Full rank (1024 samples) and rank 64 of 256, as at a narrow layer.
    for (rows, n) in [(1024, 256), (64, 256), (300, 97)] {
        let m = second_moment(&mut r, rows, n);
        let want = faer_eigenvalues(&m, n);
        let got = cpu().eigvalsh(&[(&m, n)]).unwrap().remove(0);
        let gap = worst_gap(&got, &want, want[0]);
        eprintln!("{rows}×{n} second moment: worst gap to faer {gap:.3} n·ε·λmax");
        assert!(gap <= 2.0, "{rows}×{n}: {gap}");
    }
}

#[test]
fn a_batch_is_bit_identical_whatever_the_thread_count() {
    let mut r = Rng::new(23, 0);
    // Equal sizes are solved two to a task: 130, 7 and 1 come twice.
    let mats: Vec<(Vec<f64>, usize)> = [40, 7, 130, 1, 300, 64, 90, 130, 7, 1].iter().map(|&n| (second_moment(&mut r, 50, n), n)).collect();
    let refs: Vec<(&Vec<f64>, usize)> = mats.iter().map(|(m, n)| (m, *n)).collect();
    let solve = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| cpu().eigvalsh(&refs).unwrap())
    };
    let one = solve(1);
    for threads in [2, 3] {
        let many = solve(threads);
        for (a, b) in one.iter().zip(&many) {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{threads} threads");
        }
    }
    // Each matrix's spectrum is the one it gets when solved alone.
    for ((m, n), batch) in mats.iter().zip(&one) {
        assert_eq!(&cpu().eigvalsh(&[(m, *n)]).unwrap()[0], batch);
    }
}

/// The lower triangle (row-major, upper half zero) of XᵀX/rows, computed in
/// f64 and rounded to f32, for X `rows × n` with entries `x(row, col)`.
fn gram32(rows: usize, n: usize, x: impl Fn(usize, usize) -> f64) -> Vec<f32> {
    let x: Vec<f64> = (0..rows * n).map(|k| x(k / n, k % n)).collect();
    let mut acc = vec![0.0; n * n];
    cpu().gram_lower(&mut acc, &x, rows, n, 1.0 / rows as f64).unwrap();
    acc.iter().map(|&v| v as f32).collect()
}

#[test]
fn an_f32_matrix_reduced_in_f32_stays_far_inside_the_rank_tolerance() {
    // The f32 path against the f64 path on the very same (f32) matrix, so
    // the gap is the f32 reduction's error alone. spectrum.rs calls
    // eigenvalues below its tolerance, max(dim, √samples)·ε₃₂·λmax,
    // rounding; the f32 reduction must move none by more than a quarter of
    // that (measured: at most 0.12 of it at n = 10, 0.008 from n = 256 on;
    // see src/backend/cpu/eigen.rs).
    let cpu32 = Cpu::<f32>::new();
    for n in [10, 256, 576, 784] {
        let mut r = Rng::new(24, n as u64);
        let normal: Vec<f64> = (0..1024 * n).map(|_| r.normal()).collect();
        let z = |row: usize, col: usize| normal[row * n + col];
        let cases: [(&str, usize, Vec<f32>); 4] = [
            ("gaussian", 1024, gram32(1024, n, z)),
            ("relu", 1024, gram32(1024, n, |i, j| z(i, j).max(0.0))),
            // Rank n/4 (plus the f32 rounding's noise).
            ("rank-deficient relu", n.div_ceil(4), gram32(n.div_ceil(4), n, |i, j| z(i, j).max(0.0))),
            // λ falling over ten decades.
            ("decaying", 1024, gram32(1024, n, |i, j| z(i, j) * 10f64.powf(-5.0 * j as f64 / n as f64))),
        ];
        for (what, samples, m32) in cases {
            let m64: Vec<f64> = m32.iter().map(|&v| v as f64).collect();
            let got = cpu32.eigvalsh(&[(&m32, n)]).unwrap().remove(0);
            let want = cpu().eigvalsh(&[(&m64, n)]).unwrap().remove(0);
            let [s32, s64] = [&got, &want].map(|e| Spectrum::of_second_moment(e, f32::EPSILON as f64, samples, &[]));
            let gap = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
            let unit = f32::EPSILON as f64 * want[0];
            eprintln!(
                "{what} n = {n}: f32 vs f64 path {:.3} ε₃₂·λmax = {:.5} of the tolerance; ranks {} {}",
                gap / unit,
                gap / s64.tolerance,
                s32.rank,
                s64.rank
            );
            assert!(gap <= 0.25 * s64.tolerance, "{what} n = {n}: {} ε₃₂·λmax", gap / unit);
            if samples < n {
                assert_eq!([s32.rank, s64.rank], [samples; 2], "{what} n = {n}");
            }
        }
    }
}
