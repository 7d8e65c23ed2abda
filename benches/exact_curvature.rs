//! The exact curvature of the paper's case (Fig. 1, 2): 8 linear layers of 24
//! units on 12×12 inputs, N = 1024, F and M with every block, Plain and BN, in
//! f32 and f64. Prints each case's table once, then times it.

use criterion::{criterion_group, criterion_main, Criterion};
use kappa::analysis::exact::{self, ExactOptions};
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::data::{self, Batch, LoadOptions, Loader};
use kappa::train::{TrainConfig, Trainer};

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn paper_case<B: Backend>(c: &mut Criterion, be: &B, batch: &Batch, dims: &[usize], classes: usize) {
    let opts = ExactOptions { examples: 1024, kappa_p: vec![50.0, 80.0, 100.0], seed: 0 };
    let elem = std::any::type_name::<B::Elem>();
    for bn in [false, true] {
        let cfg = TrainConfig { depth: 8, width: 24, bn, seed: 7, out: "unused".into(), ..TrainConfig::default() };
        let mut t = Trainer::new(be, &cfg, dims, classes).unwrap();
        let name = format!("exact_{}_{elem}", if bn { "bn" } else { "plain" });
        println!("{name}\n{}", exact::print_table(&exact::exact_curvature(&mut t, batch, &opts).unwrap()));
        c.bench_function(&name, |b| b.iter(|| exact::exact_curvature(&mut t, batch, &opts).unwrap()));
    }
}

fn exact_curvature(c: &mut Criterion) {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    let opts = LoadOptions { crop_resize: Some((20, 12)), limit_train: Some(1024), limit_test: Some(1) };
    let split = data::load("synthetic", None, &opts).unwrap();
    let batch = Loader::new(&split.train, 1024, 0, false, false).unwrap().epoch(0).next().unwrap();
    let dims = [split.train.dim()];
    paper_case(c, &Cpu::<f32>::new(), &batch, &dims, split.train.classes);
    paper_case(c, &Cpu::<f64>::new(), &batch, &dims, split.train.classes);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = exact_curvature
}
criterion_main!(benches);
