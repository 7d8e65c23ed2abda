//! One symmetric eigenvalue solve at the analysis step's sizes (256: every
//! hidden layer's Σx and Σ∇h; 576: a 3×3 conv's patch Σx over 64 channels;
//! 784: the first layer's Σx), single-threaded as the analysis step runs
//! them: the tridiagonalisation alone (faer's `tridiag_in_place`, which kappa
//! used before, against kappa's blocked reduction in f64 and in f32), then
//! kappa's whole solve of an f64 and of an f32 matrix against faer's own
//! eigenvalues-only `self_adjoint_evd`.

use criterion::{criterion_group, criterion_main, Criterion};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd;
use kappa::backend::cpu::lanes::Element;
use kappa::backend::cpu::tridiagonalise::tridiagonalise;
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::rng::Rng;

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

/// XᵀX/rows of a standard normal rows×n X, as a full row-major matrix.
fn second_moment(rows: usize, n: usize) -> Vec<f64> {
    let mut r = Rng::new(1, 0);
    let x: Vec<f64> = (0..rows * n).map(|_| r.normal()).collect();
    let mut m = vec![0.0; n * n];
    for row in x.chunks(n) {
        for i in 0..n {
            for j in 0..=i {
                m[i * n + j] += row[i] * row[j] / rows as f64;
            }
        }
    }
    m
}

fn full(m: &[f64], n: usize) -> faer::Mat<f64> {
    faer::Mat::<f64>::from_fn(n, n, |i, j| if j <= i { m[i * n + j] } else { m[j * n + i] })
}

fn faer_eigenvalues(m: &[f64], n: usize) -> Vec<f64> {
    let a = full(m, n);
    let par = faer::Par::Seq;
    let scratch = evd::self_adjoint_evd_scratch::<f64>(n, evd::ComputeEigenvectors::No, par, Default::default());
    let mut values = faer::diag::Diag::<f64>::zeros(n);
    evd::self_adjoint_evd(a.as_ref(), values.as_mut(), None, par, MemStack::new(&mut MemBuffer::new(scratch)), Default::default()).unwrap();
    values.column_vector().iter().copied().collect()
}

/// faer's tridiagonalisation as kappa ran it before: sequential, one row of reflector factors.
fn faer_tridiagonal(m: &[f64], n: usize) -> f64 {
    let mut a = full(m, n);
    let par = faer::Par::Seq;
    let scratch = evd::tridiag::tridiag_in_place_scratch::<f64>(n, par, Default::default());
    let mut factors = faer::Mat::<f64>::zeros(1, n - 1);
    evd::tridiag::tridiag_in_place(a.as_mut(), factors.as_mut(), par, MemStack::new(&mut MemBuffer::new(scratch)), Default::default());
    a[(n - 1, n - 2)]
}

fn kappa_tridiagonal<E: Element>(m: &[f64], n: usize) -> E {
    // The row-major lower triangle read as column-major is the upper one: transpose, as eigvalsh does.
    let mut a: Vec<E> = (0..n * n).map(|k| E::from_f64(m[(k % n) * n + k / n])).collect();
    tridiagonalise(&mut a, n).1[n - 2]
}

fn eigen(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    // One thread, as each solve of the analysis step runs.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (cpu, cpu32) = (Cpu::<f64>::new(), Cpu::<f32>::new());
    let mut g = c.benchmark_group("eigen");
    g.sample_size(10);
    for n in [256, 576, 784] {
        let m = second_moment(1024, n);
        let m32: Vec<f32> = m.iter().map(|&v| v as f32).collect();
        g.bench_function(format!("faer_tridiag_{n}"), |b| b.iter(|| faer_tridiagonal(&m, n)));
        g.bench_function(format!("kappa_tridiag_{n}"), |b| b.iter(|| pool.install(|| kappa_tridiagonal::<f64>(&m, n))));
        g.bench_function(format!("kappa_tridiag32_{n}"), |b| b.iter(|| pool.install(|| kappa_tridiagonal::<f32>(&m, n))));
        g.bench_function(format!("faer_{n}"), |b| b.iter(|| faer_eigenvalues(&m, n)));
        g.bench_function(format!("kappa_{n}"), |b| b.iter(|| pool.install(|| cpu.eigvalsh(&[(&m, n)]).unwrap())));
        g.bench_function(format!("kappa32_{n}"), |b| b.iter(|| pool.install(|| cpu32.eigvalsh(&[(&m32, n)]).unwrap())));
    }
}

criterion_group!(benches, eigen);
criterion_main!(benches);
