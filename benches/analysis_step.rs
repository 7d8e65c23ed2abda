//! One full analysis step of the 20×256 MLP at batch 1024, the workload
//! `../shared/tools/anchor_torch.py` times for PyTorch as
//! `mlp20x256_b1024_analysis_{plain,bn}`: forward, backward against labels
//! sampled from the softmax, Σx and Σ∇h of all 20 linear layers, and the
//! eigenvalues of all 40 matrices.

use criterion::{criterion_group, criterion_main, Criterion};
use kappa::analysis::Moments;
use kappa::autograd::Tape;
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::models::{Mlp, MlpConfig, Model};
use kappa::nn::{Init, Weights};
use kappa::rng::Rng;
use kappa::tensor::Tensor;

// The same allocator and thread pool, with the same settings, as the `kappa` binary.
#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn analysis_step(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let be = Cpu::<f32>::new();
    let (n, d, classes) = (1024, 784, 10);
    let mut r = Rng::new(0, 0);
    let x = Tensor::from_f64s(&be, &[n, d], (0..n * d).map(|_| r.normal())).unwrap();
    for bn in [false, true] {
        // The anchor's init: PyTorch's default Linear init is LeCun-uniform-like; LeCun here.
        let cfg = MlpConfig { inputs: d, depth: 20, width: 256, classes, bn, init: Init::Lecun, bn_momentum: 0.1 };
        let mut model = Mlp::new(&be, cfg, 0, Weights::Drawn).unwrap();
        let name = format!("mlp20x256_b1024_analysis_{}", if bn { "bn" } else { "plain" });
        let mut stream = 0;
        c.bench_function(&name, |b| {
            b.iter(|| {
                let mut tape = Tape::new(&be);
                tape.set_probes_only();
                let xv = tape.constant(x.clone());
                let logits = model.forward(&mut tape, xv, true).unwrap();
                stream += 1;
                let labels = be.sample_labels(tape.value(logits).buf(), classes, 1, stream).unwrap();
                let loss = tape.cross_entropy(logits, &labels).unwrap();
                let grads = tape.backward(loss).unwrap();
                let mut moments = Moments::new(&be, false, Default::default());
                moments.add(grads.probes()).unwrap();
                let matrices = moments.finish().unwrap();
                let solve: Vec<_> =
                    matrices.iter().flat_map(|m| [(&m.sigma_x.0, m.sigma_x.1), (&m.sigma_grad.0, m.sigma_grad.1)]).collect();
                be.eigvalsh(&solve).unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(10));
    targets = analysis_step
}
criterion_main!(benches);
