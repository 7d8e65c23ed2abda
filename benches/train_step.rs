//! One SGD step (forward, backward, update) of the paper's 20×256 MLP on
//! 784-dimensional inputs, batch 1024, plain and with BN: the workload
//! `../shared/tools/anchor_torch.py` times for PyTorch as
//! `mlp20x256_b1024_step_{plain,bn}`.

use criterion::{criterion_group, criterion_main, Criterion};
use kappa::autograd::Tape;
use kappa::backend::cpu::Cpu;
use kappa::models::{Mlp, MlpConfig, Model};
use kappa::nn::{Init, Weights};
use kappa::optim::{Optimizer, Sgd};
use kappa::rng::Rng;
use kappa::tensor::Tensor;

// The same allocator and thread pool, with the same settings, as the `kappa` binary.
#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn mlp_step(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let be = Cpu::<f32>::new();
    let (n, d, classes) = (1024, 784, 10);
    let mut r = Rng::new(0, 0);
    let x: Vec<f64> = (0..n * d).map(|_| r.normal()).collect();
    let labels: Vec<u32> = (0..n).map(|_| r.below(classes) as u32).collect();
    let x = Tensor::from_f64s(&be, &[n, d], x).unwrap();
    for bn in [false, true] {
        let cfg = MlpConfig { inputs: d, depth: 20, width: 256, classes, bn, init: Init::He, bn_momentum: 0.1 };
        let mut model = Mlp::new(&be, cfg, 0, Weights::Drawn).unwrap();
        let mut opt = Sgd::new(&be, 0.9, 0.0, false);
        let name = format!("mlp20x256_b1024_step_{}", if bn { "bn" } else { "plain" });
        c.bench_function(&name, |b| {
            b.iter(|| {
                let mut tape = Tape::new(&be);
                let xv = tape.constant(x.clone());
                let logits = model.forward(&mut tape, xv, true).unwrap();
                let loss = tape.cross_entropy(logits, &labels).unwrap();
                let grads = tape.backward(loss).unwrap();
                opt.step(model.store_mut(), &grads, 0.01).unwrap();
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(6));
    targets = mlp_step
}
criterion_main!(benches);
