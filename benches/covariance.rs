//! The Σx Gram accumulation and its eigenvalues for the paper's shapes:
//! dense 1024×256 and 1024×784 inputs, and a 3×3 conv layer's input of
//! 128×64×8×8 (576 patch columns, read straight from NCHW). With the
//! CUDA backend and a GPU present, the same on the device, as `kappa profile
//! covariance --device cuda:0` reports it (CUDA events, rates, fractions of
//! the device's bounds).

use criterion::{criterion_group, criterion_main, Criterion};
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::profile::Shape;
use kappa::rng::Rng;

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

const SHAPES: [Shape; 3] =
    [Shape { n: 1024, c: 256, h: 1, w: 1 }, Shape { n: 1024, c: 784, h: 1, w: 1 }, Shape { n: 128, c: 64, h: 8, w: 8 }];

fn covariance(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let cpu = Cpu::<f32>::new();
    let mut g = c.benchmark_group("covariance");
    g.sample_size(10);
    for s in SHAPES {
        let mut r = Rng::new(0, 0);
        let x: Vec<f32> = (0..s.n * s.c * s.h * s.w).map(|_| r.normal() as f32).collect();
        let (rows, k) = s.matrix();
        let mut acc = vec![0.0f32; k * k];
        g.bench_function(format!("cpu_gram_{rows}x{k}"), |b| {
            b.iter(|| match s.is_dense() {
                true => cpu.gram_lower(&mut acc, &x, rows, k, 1.0).unwrap(),
                false => cpu.gram_lower_patches(&mut acc, &x, s.window(), 1.0).unwrap(),
            })
        });
        g.bench_function(format!("cpu_eigvalsh_{k}"), |b| b.iter(|| cpu.eigvalsh(&[(&acc, k)]).unwrap()));
        if !s.is_dense() {
            // The anchor's workload in one: Σx of the patches, scaled, then its spectrum.
            g.bench_function(format!("cpu_patchcov_eigvalsh_{k}"), |b| {
                b.iter(|| {
                    let mut acc = vec![0.0f32; k * k];
                    cpu.gram_lower_patches(&mut acc, &x, s.window(), 1.0 / rows as f64).unwrap();
                    cpu.eigvalsh(&[(&acc, k)]).unwrap()
                })
            });
        }
        #[cfg(feature = "cuda-backend")]
        if kappa::backend::cuda::probe(0).is_ok() {
            // The device's own timing (CUDA events), rates and fractions of its bounds.
            kappa::profile::covariance(&format!("{},{},{},{}", s.n, s.c, s.h, s.w), "cuda:0", 10).unwrap();
        }
    }
    g.finish();
}

criterion_group!(benches, covariance);
criterion_main!(benches);
