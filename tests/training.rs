//! Training behaviour: determinism, freezing, probes, BN running statistics,
//! optimiser arithmetic, divergence.

use kappa::autograd::Tape;
use kappa::backend::cpu::Cpu;
use kappa::backend::{Backend, Gemm};
use kappa::data::{self, Batch, LoadOptions, Loader};
use kappa::models::{Mlp, MlpConfig, Model};
use kappa::nn::{BatchNorm, Init, Weights};
use kappa::optim::{Adam, Optimizer, Sgd};
use kappa::param::ParamStore;
use kappa::tensor::Tensor;
use kappa::train::{Labels, TrainConfig, Trainer};

mod common;

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        depth: 5,
        width: 32,
        bn: true,
        limit_train: Some(512),
        nesterov: true,
        weight_decay: 1e-4,
        epochs: Some(1),
        batch_size: 64,
        seed,
        out: "unused".into(),
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn synthetic() -> data::Split {
    data::load("synthetic", None, &LoadOptions { limit_train: Some(512), limit_test: Some(256), ..Default::default() }).unwrap()
}

/// Trains for `steps` on the test device and returns every parameter's values.
fn train(cfg: &TrainConfig, split: &data::Split, steps: usize) -> Vec<Vec<f64>> {
    on_test_device!(be => {
        let mut t = Trainer::new(be, cfg, &split.train.dims, split.train.classes).unwrap();
        let loader = Loader::new(&split.train, cfg.batch_size, cfg.seed, true, false).unwrap();
        for (i, batch) in (0..).flat_map(|e| loader.epoch(e)).take(steps).enumerate() {
            let s = t.step(&batch, cfg.lr).unwrap();
            assert!(s.loss.is_finite(), "step {i}");
        }
        t.model().store().params().iter().map(|p| p.value.to_f64s(be).unwrap()).collect()
    })
}

#[test]
fn same_seed_same_trajectory_bit_for_bit() {
    let split = synthetic();
    let a = train(&config(7), &split, 12);
    let b = train(&config(7), &split, 12);
    assert_eq!(a, b, "two runs with one seed diverged");
    let c = train(&config(8), &split, 12);
    assert_ne!(a, c, "a different seed gave the same weights");
}

#[test]
fn frozen_layers_keep_their_initial_weights() {
    let split = synthetic();
    let initial = train(&config(3), &split, 0);
    let mut cfg = config(3);
    cfg.freeze = vec![2, 4];
    let trained = train(&cfg, &split, 6);
    let be = Cpu::<f32>::new();
    let t = Trainer::new(&be, &cfg, &split.train.dims, split.train.classes).unwrap(); // for the names and layers only
    for ((p, before), after) in t.model().store().params().iter().zip(&initial).zip(&trained) {
        if [2, 4].contains(&p.layer) {
            assert_eq!(before, after, "{} (layer {}) moved while frozen", p.name, p.layer);
        } else {
            assert_ne!(before, after, "{} (layer {}) did not train", p.name, p.layer);
        }
    }
}

#[test]
fn probes_expose_layer_inputs_and_output_gradients() {
    on_test_device!(be => {
        let split = synthetic();
        let cfg = config(1);
        let mut t = Trainer::new(be, &cfg, &split.train.dims, split.train.classes).unwrap();
        let batch = Loader::new(&split.train, 32, 0, false, false).unwrap().epoch(0).next().unwrap();
        let (_, grads) = t.gradients(&batch, Labels::True, true).unwrap();
        let probes = grads.probes();
        assert_eq!(probes.len(), cfg.depth, "one probe per linear layer");
        // The first layer's input is the batch itself.
        let x0 = probes[0].x.to_f64s(be).unwrap();
        assert!(x0.iter().zip(&batch.images).all(|(a, &b)| *a == b as f64));
        // For h = x·Wᵀ, ∂L/∂W = (∂L/∂h)ᵀ·x: the probes must reproduce each weight gradient.
        let store = t.model().store();
        for (probe, p) in probes.iter().zip(store.params().iter().filter(|p| p.name.ends_with(".weight") && p.value.shape().len() == 2)) {
            let id = store.ids().find(|&id| store.param(id).name == p.name).unwrap();
            let (n, din) = probe.x.rows_cols();
            let dout = probe.grad_h.rows_cols().1;
            let dw = be.matmul(probe.grad_h.buf(), probe.x.buf(), Gemm::new(dout, din, n, true, false)).unwrap();
            let dw = be.download(&dw).unwrap();
            let want = grads.param(id).unwrap().to_f64s(be).unwrap();
            for (a, b) in dw.iter().zip(&want) {
                assert!((*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()), "{}: {a} vs {b}", probe.layer);
            }
        }
        // Without probing nothing is retained.
        let (_, grads) = t.gradients(&batch, Labels::True, false).unwrap();
        assert!(grads.probes().is_empty());
    })
}

#[test]
fn batch_norm_running_statistics_follow_momentum() {
    let be = Cpu::<f64>::new();
    let mut store = ParamStore::default();
    let bn = BatchNorm::new(&mut store, &be, "bn", 2, 1, 0.25).unwrap();
    // Channel 0: 1, 3, 5 (mean 3, unbiased var 4); channel 1: 2, 2, 8 (mean 4, unbiased var 12).
    let x = Tensor::from_f64s(&be, &[3, 2], [1.0, 2.0, 3.0, 2.0, 5.0, 8.0]).unwrap();
    let mut tape = Tape::new(&be);
    let xv = tape.constant(x.clone());
    bn.forward(&mut tape, &mut store, xv, true).unwrap();
    let mean = store.buffer(bn.running_mean).to_f64s(&be).unwrap();
    let var = store.buffer(bn.running_var).to_f64s(&be).unwrap();
    for (got, want) in mean.iter().chain(&var).zip([0.25 * 3.0, 0.25 * 4.0, 0.75 + 0.25 * 4.0, 0.75 + 0.25 * 12.0]) {
        approx::assert_relative_eq!(*got, want, max_relative = 1e-14);
    }
    // Eval mode normalises with the running statistics.
    let mut tape = Tape::new(&be);
    let xv = tape.constant(x);
    let y = bn.forward(&mut tape, &mut store, xv, false).unwrap();
    let y = tape.value(y).to_f64s(&be).unwrap();
    let want = (1.0 - mean[0]) / (var[0] + 1e-5).sqrt();
    assert!((y[0] - want).abs() < 1e-12, "{} vs {want}", y[0]);
}

/// One parameter w = [1, -2] with loss gradient g = [0.5, 0.25] both steps.
fn two_steps(opt: &mut dyn Optimizer<Cpu<f64>>, lr: f64) -> Vec<f64> {
    let be = Cpu::<f64>::new();
    let mut store = ParamStore::default();
    let id = store.add("w", Tensor::from_f64s(&be, &[2], [1.0, -2.0]).unwrap(), 1);
    for _ in 0..2 {
        let mut tape = Tape::new(&be);
        let w = tape.param(&store, id);
        let c = tape.constant(Tensor::from_f64s(&be, &[2], [0.5, 0.25]).unwrap());
        let l = tape.mul(w, c).unwrap();
        let l = tape.sum(l).unwrap();
        let grads = tape.backward(l).unwrap();
        opt.step(&mut store, &grads, lr).unwrap();
    }
    store.value(id).to_f64s(&be).unwrap()
}

#[test]
fn sgd_momentum_nesterov_and_weight_decay_match_hand_computation() {
    let be = Cpu::<f64>::new();
    let (lr, mu, wd) = (0.1, 0.9, 0.01);
    for nesterov in [false, true] {
        let got = two_steps(&mut Sgd::new(&be, mu, wd, nesterov), lr);
        for (i, (w0, g)) in [(1.0, 0.5), (-2.0, 0.25)].into_iter().enumerate() {
            let (mut w, mut v) = (w0, 0.0);
            for _ in 0..2 {
                let d = g + wd * w;
                v = mu * v + d;
                w -= lr * if nesterov { d + mu * v } else { v };
            }
            assert!((got[i] - w).abs() < 1e-15, "nesterov={nesterov}: {} vs {w}", got[i]);
        }
    }
}

#[test]
fn adam_matches_hand_computation() {
    let be = Cpu::<f64>::new();
    let got = two_steps(&mut Adam::new(&be, 0.0), 0.01);
    for (i, (w0, g)) in [(1.0f64, 0.5f64), (-2.0, 0.25)].into_iter().enumerate() {
        let (mut w, mut m, mut v) = (w0, 0.0, 0.0);
        for t in 1..=2 {
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let (mh, vh) = (m / (1.0 - 0.9f64.powi(t)), v / (1.0 - 0.999f64.powi(t)));
            w -= 0.01 * mh / (vh.sqrt() + 1e-8);
        }
        assert!((got[i] - w).abs() < 1e-15, "{} vs {w}", got[i]);
    }
}

#[test]
fn a_diverging_step_reports_a_non_finite_loss_and_leaves_weights_alone() {
    let split = synthetic();
    let be = Cpu::<f32>::new();
    let mut cfg = config(0);
    cfg.bn = false;
    cfg.lr = 1e9;
    let mut t = Trainer::new(&be, &cfg, &split.train.dims, split.train.classes).unwrap();
    let loader = Loader::new(&split.train, 64, 0, true, false).unwrap();
    let batches: Vec<Batch> = loader.epoch(0).collect();
    let mut diverged = None;
    for (i, b) in batches.iter().enumerate() {
        let before: Vec<Vec<f64>> = t.model().store().params().iter().map(|p| p.value.to_f64s(&be).unwrap()).collect();
        if !t.step(b, cfg.lr).unwrap().loss.is_finite() {
            let after: Vec<Vec<f64>> = t.model().store().params().iter().map(|p| p.value.to_f64s(&be).unwrap()).collect();
            assert_eq!(before, after);
            diverged = Some(i);
            break;
        }
    }
    assert!(diverged.is_some(), "lr 1e9 never produced a non-finite loss");
}

/// What a forward pass keeps, as the memory check counts it: each value an
/// op made that the tape holds, a buffer two values share once, and no
/// constant or value the tape has released.
#[test]
fn a_tape_counts_the_values_its_operations_hold_once() {
    let be = Cpu::<f32>::new();
    let mut tape = Tape::new(&be);
    let x = tape.constant(Tensor::zeros(&be, &[2, 3]).unwrap());
    assert_eq!(tape.held_elements(), 0, "a constant is the caller's");
    let y = tape.relu(x).unwrap();
    let flat = tape.reshape(y, &[6]).unwrap();
    assert_eq!(tape.held_elements(), 6, "a reshape shares its input's buffer");
    let z = tape.relu(flat).unwrap();
    assert_eq!(tape.held_elements(), 12);
    tape.release(z);
    assert_eq!(tape.held_elements(), 6);
}

/// A plain MLP's training forward keeps each hidden layer's ReLU output
/// for backward and lets its pre-activation go; a probing tape keeps that
/// too, for the probe's output-gradient.
#[test]
fn an_mlp_forward_keeps_only_what_backward_or_a_probe_reads() {
    let be = Cpu::<f32>::new();
    let (n, d, width, classes) = (4, 5, 6, 2);
    let cfg = MlpConfig { inputs: d, depth: 3, width, classes, bn: false, init: Init::He, bn_momentum: 0.1 };
    let mut model = Mlp::new(&be, cfg, 0, Weights::Drawn).unwrap();
    for probing in [false, true] {
        let mut tape = Tape::new(&be);
        tape.set_probing(probing);
        let x = tape.constant(Tensor::zeros(&be, &[n, d]).unwrap());
        model.forward(&mut tape, x, true).unwrap();
        // The input's reshape (sharing its buffer); per hidden layer (two)
        // the ReLU's output and, probing, the pre-activation; the logits.
        let per_layer = if probing { 2 } else { 1 };
        assert_eq!(tape.held_elements(), n * d + 2 * per_layer * n * width + n * classes, "probing {probing}");
    }
}

/// A batch is sized against the memory the run's values live in: a
/// device's own (the stand-in's 16 GiB on `cuda:0`), or else the host's.
#[test]
fn a_batch_is_sized_against_the_memory_of_its_device() {
    let (cfg, split) = (config(1), synthetic());
    let dims = &split.train.dims;
    let named = on_test_device!(be => {
        let mut t = Trainer::new(be, &cfg, dims, split.train.classes).unwrap();
        t.check_memory(dims, 64, &cfg).unwrap();
        let e = t.check_memory(dims, 1 << 40, &cfg).unwrap_err().to_string();
        assert!(e.contains("--batch-size") && e.contains("plus the activations of 1099511627776 examples"), "{e}");
        e
    });
    let limits = match common::test_device() {
        kappa::backend::Device::Cpu => {
            ["this machine's", "cgroup allows", "`ulimit -v` allows", "Rust can allocate"].map(String::from).to_vec()
        }
        d => vec![format!("{d}'s ")],
    };
    assert!(limits.iter().any(|l| named.contains(l.as_str())), "{named} names none of {limits:?}");
}
