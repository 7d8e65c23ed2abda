//! The CPU convolutions of a CIFAR ResNet at batch 128, f32, in each of the
//! three directions the training step runs: forward, backward-data and
//! backward-filter. Shapes: the 3×3 stride-1 convs of the three stages, the
//! 3×3 stride-2 convs that enter stages 2 and 3, and the 1×1 stride-2
//! projections of type-B shortcuts.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kappa::backend::cpu::Cpu;
use kappa::backend::{Backend, Window};
use kappa::rng::Rng;

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

/// (name, input channels, input side, output channels, kernel, stride, pad).
const SHAPES: [(&str, usize, usize, usize, usize, usize, usize); 7] = [
    ("3x3s1_16c32", 16, 32, 16, 3, 1, 1),
    ("3x3s1_32c16", 32, 16, 32, 3, 1, 1),
    ("3x3s1_64c8", 64, 8, 64, 3, 1, 1),
    ("3x3s2_16to32", 16, 32, 32, 3, 2, 1),
    ("3x3s2_32to64", 32, 16, 64, 3, 2, 1),
    ("1x1s2_16to32", 16, 32, 32, 1, 2, 0),
    ("1x1s2_32to64", 32, 16, 64, 1, 2, 0),
];

fn conv(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let cpu = Cpu::<f32>::new();
    let n = 128;
    let mut g = c.benchmark_group("conv_b128");
    g.sample_size(10);
    for (name, ch, side, c_out, k, stride, pad) in SHAPES {
        let win = Window { n, c: ch, h: side, w: side, kh: k, kw: k, stride, pad };
        let mut r = Rng::new(0, 0);
        let mut rand = |len: usize| (0..len).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        let x = rand(n * win.image_len());
        let w = rand(c_out * win.patch_len());
        let dy = rand(n * c_out * win.out_area());
        g.throughput(Throughput::Elements((2 * n * c_out * win.out_area() * win.patch_len()) as u64));
        g.bench_function(format!("{name}_forward"), |b| b.iter(|| cpu.conv2d(&x, &w, win, c_out).unwrap()));
        g.bench_function(format!("{name}_backward_data"), |b| b.iter(|| cpu.conv2d_backward_data(&dy, &w, win, c_out).unwrap()));
        g.bench_function(format!("{name}_backward_filter"), |b| b.iter(|| cpu.conv2d_backward_filter(&dy, &x, win, c_out).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
