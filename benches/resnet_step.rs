//! One SGD step (forward, backward, update; momentum 0.9, weight decay 1e-4)
//! of the CIFAR ResNets 20/56/110 (type-A shortcuts) at batch 128 on 3×32×32
//! inputs: the workload `../shared/tools/anchor_torch.py` times for PyTorch as
//! `resnet{20,56,110}_cifar_b128_step`. Prints images per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kappa::autograd::Tape;
use kappa::backend::cpu::Cpu;
use kappa::models::{Family, Model, ResNet, ResNetConfig, Variant};
use kappa::nn::Weights;
use kappa::optim::{Optimizer, Sgd};
use kappa::rng::Rng;
use kappa::tensor::Tensor;

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn resnet_step(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let be = Cpu::<f32>::new();
    let (n, classes) = (128, 10);
    let mut r = Rng::new(0, 0);
    let x = Tensor::from_f64s(&be, &[n, 3, 32, 32], (0..n * 3 * 32 * 32).map(|_| r.normal())).unwrap();
    let labels: Vec<u32> = (0..n).map(|_| r.below(classes) as u32).collect();
    let depths: Vec<usize> = match std::env::var("KAPPA_BENCH_DEPTHS") {
        Ok(v) => v.split(',').filter_map(|d| d.trim().parse().ok()).collect(),
        Err(_) => vec![20, 56, 110],
    };
    let mut g = c.benchmark_group("resnet_cifar_b128_step");
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    for depth in depths {
        let config = ResNetConfig::new(Variant::Resnet, Family::Cifar, depth, classes);
        let mut model = ResNet::new(&be, config, 0, Weights::Drawn).unwrap();
        let mut opt = Sgd::new(&be, 0.9, 1e-4, false);
        g.bench_function(format!("resnet{depth}"), |b| {
            b.iter(|| {
                let mut tape = Tape::new(&be);
                let xv = tape.constant(x.clone());
                let logits = model.forward(&mut tape, xv, true).unwrap();
                let loss = tape.cross_entropy(logits, &labels).unwrap();
                let grads = tape.backward(loss).unwrap();
                opt.step(model.store_mut(), &grads, 0.1).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, resnet_step);
criterion_main!(benches);
