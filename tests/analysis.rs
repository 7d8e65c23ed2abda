//! Conditioning analysis: the second moments against direct computation,
//! Prop. 1 against an explicit Kronecker product, robust spectra, and the
//! guarantee that analysing never changes the training trajectory.

use kappa::analysis::{AnalysisConfig, Analyzer, Kronecker, Mode, Moments, Spectrum, TrainingBatch};
use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::data::{self, LoadOptions, Loader};
use kappa::rng::Rng;
use kappa::train::{Labels, TrainConfig, Trainer};

mod common;

fn config(bn: bool) -> TrainConfig {
    TrainConfig {
        depth: 4,
        width: 24,
        bn,
        crop_resize: Some((20, 12)),
        limit_train: Some(512),
        epochs: Some(1),
        batch_size: 64,
        seed: 11,
        out: "unused".into(),
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn split() -> data::Split {
    data::load("synthetic", None, &LoadOptions { crop_resize: Some((20, 12)), limit_train: Some(512), limit_test: Some(64) }).unwrap()
}

/// Symmetric matrix from a lower triangle (row-major, j ≤ i).
fn full_from_lower(lower: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|k| if k % n <= k / n { lower[k] } else { lower[(k % n) * n + k / n] }).collect()
}

#[test]
fn second_moments_match_a_direct_computation_from_x_and_g() {
    let be = Cpu::<f64>::new();
    let split = split();
    let cfg = config(true);
    let mut t = Trainer::new(&be, &cfg, &split.train.dims, split.train.classes).unwrap();
    let loader = Loader::new(&split.train, 48, 0, true, false).unwrap();
    let batches: Vec<_> = loader.epoch(0).take(2).collect();
    let mut moments = Moments::new(&be, false, Default::default());
    let mut probes = Vec::new();
    for b in &batches {
        let (_, grads) = t.gradients(b, Labels::True, true).unwrap();
        moments.add(grads.probes()).unwrap();
        probes.push(grads.probes().to_vec());
    }
    let matrices = moments.finish().unwrap();
    assert_eq!(matrices.len(), cfg.depth);
    for (k, m) in matrices.iter().enumerate() {
        let (dx, dg) = (m.sigma_x.1, m.sigma_grad.1);
        let (mut sx, mut sg, mut count) = (vec![0.0; dx * dx], vec![0.0; dg * dg], 0.0);
        for batch_probes in &probes {
            let p = &batch_probes[k];
            let (n, _) = p.x.rows_cols();
            let (x, g) = (p.x.to_f64s(&be).unwrap(), p.grad_h.to_f64s(&be).unwrap());
            for r in 0..n {
                for i in 0..dx {
                    for j in 0..dx {
                        sx[i * dx + j] += x[r * dx + i] * x[r * dx + j];
                    }
                }
                // The tape holds g_i/N for the batch-mean loss: undo it.
                for i in 0..dg {
                    for j in 0..dg {
                        sg[i * dg + j] += (n as f64 * g[r * dg + i]) * (n as f64 * g[r * dg + j]);
                    }
                }
            }
            count += n as f64;
        }
        let got_x = full_from_lower(&be.download(&m.sigma_x.0).unwrap(), dx);
        let got_g = full_from_lower(&be.download(&m.sigma_grad.0).unwrap(), dg);
        for (got, want) in got_x.iter().zip(&sx).chain(got_g.iter().zip(&sg)) {
            let want = want / count;
            assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "layer {k}: {got} vs {want}");
        }
    }
}

#[test]
fn centred_moments_subtract_the_mean() {
    let be = Cpu::<f64>::new();
    let split = split();
    let mut t = Trainer::new(&be, &config(false), &split.train.dims, split.train.classes).unwrap();
    let b = Loader::new(&split.train, 40, 0, false, false).unwrap().epoch(0).next().unwrap();
    let (_, grads) = t.gradients(&b, Labels::True, true).unwrap();
    let p = &grads.probes()[1];
    let (n, d) = p.x.rows_cols();
    let mut m = Moments::new(&be, true, Default::default());
    m.add(grads.probes()).unwrap();
    let got = full_from_lower(&be.download(&m.finish().unwrap()[1].sigma_x.0).unwrap(), d);
    let x = p.x.to_f64s(&be).unwrap();
    let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|r| x[r * d + j]).sum::<f64>() / n as f64).collect();
    for i in 0..d {
        for j in 0..d {
            let want = (0..n).map(|r| (x[r * d + i] - mean[i]) * (x[r * d + j] - mean[j])).sum::<f64>() / n as f64;
            assert!((got[i * d + j] - want).abs() < 1e-12 * (1.0 + want.abs()));
        }
    }
}

/// A random SPD n×n matrix with known spread, as a full row-major buffer.
fn random_spd(r: &mut Rng, n: usize) -> Vec<f64> {
    let a: Vec<f64> = (0..n * n).map(|_| r.normal()).collect();
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = (0..n).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>() + if i == j { 0.1 } else { 0.0 };
        }
    }
    m
}

#[test]
fn proposition_1_matches_an_explicit_kronecker_product() {
    let be = Cpu::<f64>::new();
    let mut r = Rng::new(4, 0);
    let (p, q) = (4, 5);
    let (a, b) = (random_spd(&mut r, p), random_spd(&mut r, q));
    let mut kron = vec![0.0; p * q * p * q];
    for (i, j, k, l) in (0..p).flat_map(|i| (0..p).flat_map(move |j| (0..q).flat_map(move |k| (0..q).map(move |l| (i, j, k, l))))) {
        kron[(i * q + k) * p * q + (j * q + l)] = a[i * p + j] * b[k * q + l];
    }
    let ev = be.eigvalsh(&[(&a, p), (&b, q), (&kron, p * q)]).unwrap();
    let ps = [100.0];
    let (sa, sb, sk) = (
        Spectrum::from_descending(&ev[0], f64::EPSILON, &ps),
        Spectrum::from_descending(&ev[1], f64::EPSILON, &ps),
        Spectrum::from_descending(&ev[2], f64::EPSILON, &ps),
    );
    let prop = Kronecker::of(&sa, &sb);
    approx::assert_relative_eq!(prop.lambda_max, sk.lambda_max, max_relative = 1e-10);
    approx::assert_relative_eq!(prop.kappa_full.unwrap(), sk.kappa["100"].unwrap(), max_relative = 1e-8);
    approx::assert_relative_eq!(prop.kappa_nonzero.unwrap(), sk.kappa_nonzero.unwrap(), max_relative = 1e-8);
}

#[test]
fn degenerate_spectra_never_fail_and_report_the_right_rank() {
    let n = 6;
    let v: Vec<f64> = (0..n).map(|i| i as f64 - 2.5).collect();
    let rank1: Vec<f64> = (0..n * n).map(|k| v[k / n] * v[k % n]).collect();
    let zero = vec![0.0; n * n];
    let mut r = Rng::new(9, 0);
    let tiny: Vec<f64> = random_spd(&mut r, n).iter().map(|x| x * 1e-30).collect();
    let huge: Vec<f64> = random_spd(&mut r, n).iter().map(|x| x * 1e30).collect();
    let mut rank3 = vec![0.0; n * n];
    for _ in 0..3 {
        let u: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        rank3.iter_mut().enumerate().for_each(|(k, m)| *m += 1e-20 * u[k / n] * u[k % n]);
    }
    let f32_cpu = Cpu::<f32>::new();
    let be = Cpu::<f64>::new();
    let cases: [(&Vec<f64>, usize); 5] = [(&rank1, 1), (&zero, 0), (&tiny, n), (&huge, n), (&rank3, 3)];
    let ev = be.eigvalsh(&cases.iter().map(|(m, _)| (*m, n)).collect::<Vec<_>>()).unwrap();
    for ((m, rank), e) in cases.iter().zip(&ev) {
        let s = Spectrum::from_descending(e, f64::EPSILON, &[50.0, 100.0]);
        assert_eq!(s.rank, *rank, "{e:?}");
        assert!(e.iter().all(|x| x.is_finite()));
        let trace: f64 = (0..n).map(|i| m[i * n + i]).sum();
        approx::assert_relative_eq!(e.iter().sum::<f64>(), trace, max_relative = 1e-9, epsilon = 1e-300);
    }
    // The same in f32 storage: 1e-30-scaled entries are still fine.
    let tiny32: Vec<f32> = tiny.iter().map(|&x| x as f32).collect();
    let e = &f32_cpu.eigvalsh(&[(&tiny32, n)]).unwrap()[0];
    assert_eq!(Spectrum::from_descending(e, f32::EPSILON as f64, &[100.0]).rank, n);
    // A non-finite entry gives NaNs, not an error (a diverged run is a result).
    let mut bad = rank1.clone();
    bad[3 * n] = f64::NAN; // row 3, column 0: in the lower triangle eigvalsh reads
    assert!(be.eigvalsh(&[(&bad, n)]).unwrap()[0].iter().all(|x| x.is_nan()));
    bad[3 * n] = f64::NEG_INFINITY;
    assert!(be.eigvalsh(&[(&bad, n)]).unwrap()[0].iter().all(|x| x.is_nan()));
    // The upper triangle is never read: a NaN there changes nothing.
    let mut upper = rank1.clone();
    upper[3] = f64::NAN; // row 0, column 3
    assert_eq!(be.eigvalsh(&[(&upper, n)]).unwrap(), be.eigvalsh(&[(&rank1, n)]).unwrap());
}

/// Trains `steps` on the test device with analysis per `analysis` (None: off); returns all parameters.
fn train(bn: bool, analysis: Option<AnalysisConfig>, steps: usize) -> (Vec<Vec<f64>>, usize) {
    on_test_device!(be => {
        let split = split();
        let cfg = config(bn);
        let mut t = Trainer::new(be, &cfg, &split.train.dims, split.train.classes).unwrap();
        let loader = Loader::new(&split.train, cfg.batch_size, cfg.seed, true, false).unwrap();
        let extra_loader = Loader::new(&split.train, cfg.batch_size, 99, true, false).unwrap();
        let mut analyzer = analysis.map(|a| Analyzer::new(a, cfg.seed, None).unwrap());
        let mut records = 0;
        for (i, batch) in loader.epoch(0).take(steps).enumerate() {
            match analyzer.as_mut().filter(|a| a.config().due(i)) {
                Some(a) => {
                    let (_, grads) = t.gradients(&batch, Labels::True, a.config().mode == Mode::Empirical).unwrap();
                    let extra: Vec<_> = extra_loader.epoch(i).take(a.config().batches - 1).collect();
                    records += a.analyze(&mut t, TrainingBatch { batch: &batch, grads: &grads }, &extra, i, 0).unwrap().0.len();
                    t.apply(&grads, cfg.lr).unwrap();
                }
                None => {
                    t.step(&batch, cfg.lr).unwrap();
                }
            }
        }
        let store = t.model().store();
        let values =
            store.params().iter().map(|p| p.value.to_f64s(be).unwrap()).chain(store.buffers().iter().map(|(_, b)| b.to_f64s(be).unwrap()));
        (values.collect(), records)
    })
}

#[test]
fn analysis_on_or_off_leaves_the_weights_bit_identical() {
    for bn in [false, true] {
        let (plain, _) = train(bn, None, 6);
        for mode in [Mode::Empirical, Mode::Fisher] {
            let cfg = AnalysisConfig { every: 2, mode, batches: 3, ..Default::default() };
            let (analysed, records) = train(bn, Some(cfg), 6);
            assert_eq!(records, 3 * 4, "3 analyses of 4 layers");
            assert!(plain == analysed, "bn={bn} {mode:?}: analysis changed the trajectory");
        }
    }
}

#[test]
fn fisher_and_empirical_modes_differ_and_diagnostics_are_sane() {
    on_test_device!(be => {
        let split = split();
        let cfg = config(true);
        let mut t = Trainer::new(be, &cfg, &split.train.dims, split.train.classes).unwrap();
        let batch = Loader::new(&split.train, 128, 0, true, false).unwrap().epoch(0).next().unwrap();
        let mut run = |mode| {
            let mut a = Analyzer::new(AnalysisConfig { every: 1, mode, ..Default::default() }, 5, None).unwrap();
            let (_, grads) = t.gradients(&batch, Labels::True, true).unwrap();
            a.analyze(&mut t, TrainingBatch { batch: &batch, grads: &grads }, &[], 0, 0).unwrap().0
        };
        let (emp, fis) = (run(Mode::Empirical), run(Mode::Fisher));
        for (e, f) in emp.iter().zip(&fis) {
            // Σx does not depend on the labels; Σ∇h does.
            approx::assert_relative_eq!(e.sigma_x.lambda_max, f.sigma_x.lambda_max, max_relative = 1e-6);
            assert_ne!(e.sigma_grad.lambda_max, f.sigma_grad.lambda_max);
            let w = e.weight.as_ref().unwrap();
            assert!(w.sigma_max > 0.0 && w.grad_sigma_max > 0.0 && w.frobenius >= w.sigma_max);
            assert!(e.sigma_x.rank <= 128 && e.sigma_x.lambda_max >= e.sigma_x.lambda_min);
        }
        assert!(emp.last().unwrap().last && emp.last().unwrap().neurons.is_none());
        let n = emp[0].neurons.as_ref().unwrap();
        assert!(n.units == cfg.width && n.dead_fraction + n.full_fraction <= 1.0);
    })
}

/// Every patch (rows: image, oy, ox; columns: c, ky, kx) of an NCHW tensor, by the definition.
fn explicit_patches(x: &[f64], g: kappa::backend::Window) -> Vec<Vec<f64>> {
    let (oh, ow) = g.out("test").unwrap();
    let mut rows = Vec::new();
    for n in 0..g.n {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut p = Vec::new();
                for c in 0..g.c {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                            p.push(if inside { x[((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize] } else { 0.0 });
                        }
                    }
                }
                rows.push(p);
            }
        }
    }
    rows
}

fn mean_outer(rows: &[Vec<f64>], scale: f64) -> Vec<f64> {
    let d = rows[0].len();
    let mut m = vec![0.0; d * d];
    for r in rows {
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] += scale * scale * r[i] * r[j] / rows.len() as f64;
            }
        }
    }
    m
}

#[test]
fn conv_layers_take_patches_and_positions_as_samples() {
    use kappa::analysis::ConvStat;
    let be = Cpu::<f64>::new();
    let mut cfg = config(false);
    cfg.model = "resnet".into();
    cfg.depth = 8;
    let dims = [2, 6, 5];
    let mut t = Trainer::new(&be, &cfg, &dims, 3).unwrap();
    let mut rng = Rng::new(3, 3);
    let n = 3;
    let batch =
        kappa::data::Batch { images: (0..n * 60).map(|_| rng.normal() as f32).collect(), labels: vec![0, 1, 2], dims: vec![n, 2, 6, 5] };
    let (_, grads) = t.gradients(&batch, Labels::True, true).unwrap();
    // Stem, 3 blocks of 2 convs, fc: every conv and the last linear layer is probed.
    assert_eq!(grads.probes().len(), 8);
    for stat in [ConvStat::Patch, ConvStat::Channel] {
        let mut moments = Moments::new(&be, false, stat);
        moments.add(grads.probes()).unwrap();
        let matrices = moments.finish().unwrap();
        for (p, m) in grads.probes().iter().zip(&matrices) {
            let Some(g) = p.window else {
                assert_eq!((p.layer.as_str(), m.samples_x), ("fc", n));
                continue;
            };
            let gx = match stat {
                ConvStat::Patch => g,
                ConvStat::Channel => kappa::backend::Window { kh: 1, kw: 1, stride: 1, pad: 0, ..g },
            };
            let xs = explicit_patches(&p.x.to_f64s(&be).unwrap(), gx);
            let gs = explicit_patches(&p.grad_h.to_f64s(&be).unwrap(), g.pointwise_over_output(p.grad_h.shape()[1]).unwrap());
            assert_eq!((m.samples_x, m.samples_grad), (xs.len(), gs.len()), "{}", p.layer);
            assert_eq!((m.sigma_x.1, m.sigma_grad.1), (xs[0].len(), p.grad_h.shape()[1]), "{}", p.layer);
            let (want_x, want_g) = (mean_outer(&xs, 1.0), mean_outer(&gs, n as f64));
            let got_x = full_from_lower(&be.download(&m.sigma_x.0).unwrap(), m.sigma_x.1);
            let got_g = full_from_lower(&be.download(&m.sigma_grad.0).unwrap(), m.sigma_grad.1);
            for (got, want) in got_x.iter().zip(&want_x).chain(got_g.iter().zip(&want_g)) {
                assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "{} {stat:?}: {got} vs {want}", p.layer);
            }
        }
    }
}

#[test]
fn probing_alone_gives_the_same_probes_without_any_parameter_gradient() {
    let be = Cpu::<f32>::new();
    let mut rng = Rng::new(4, 4);
    for (model, bn, depth) in [("mlp", false, 4), ("mlp", true, 4), ("resnet", true, 8)] {
        let mut cfg = config(bn);
        (cfg.model, cfg.depth) = (model.into(), depth);
        let dims = [2, 6, 5];
        let mut t = Trainer::new(&be, &cfg, &dims, 3).unwrap();
        let n = 4;
        let batch = kappa::data::Batch {
            images: (0..n * 60).map(|_| rng.normal() as f32).collect(),
            labels: vec![0, 1, 2, 1],
            dims: vec![n, 2, 6, 5],
        };
        let labels = || Labels::Sampled { seed: 9, stream: 1 };
        let (_, full) = t.gradients(&batch, labels(), true).unwrap();
        let alone = t.probe_gradients(&batch, labels()).unwrap();
        assert_eq!(full.probes().len(), alone.probes().len(), "{model} bn={bn}");
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
        for (a, b) in full.probes().iter().zip(alone.probes()) {
            assert_eq!(bits(a.x.to_f64s(&be).unwrap()), bits(b.x.to_f64s(&be).unwrap()), "{model} bn={bn} {} x", a.layer);
            assert_eq!(bits(a.grad_h.to_f64s(&be).unwrap()), bits(b.grad_h.to_f64s(&be).unwrap()), "{model} bn={bn} {} ∇h", a.layer);
            assert!(full.param(a.weight).is_some() && alone.param(a.weight).is_none(), "{model} bn={bn} {}", a.layer);
        }
    }
}

/// λmax(Σx) of every layer's input of a Plain 20×256 ReLU net at
/// initialisation under `init`, on 1,024 synthetic digits (f64).
fn lambda_x_at_init(init: kappa::nn::Init) -> Vec<f64> {
    let be = Cpu::<f64>::new();
    let split = data::load("synthetic", None, &LoadOptions { crop_resize: None, limit_train: Some(1024), limit_test: Some(64) }).unwrap();
    let cfg = TrainConfig { depth: 20, width: 256, bn: false, init, seed: 3, batch_size: 1024, crop_resize: None, ..config(false) };
    let mut t = Trainer::new(&be, &cfg, &split.train.dims, split.train.classes).unwrap();
    let batch = Loader::new(&split.train, 1024, 0, false, false).unwrap().epoch(0).next().unwrap();
    let (_, grads) = t.gradients(&batch, Labels::True, true).unwrap();
    let mut moments = Moments::new(&be, false, Default::default());
    moments.add(grads.probes()).unwrap();
    let matrices = moments.finish().unwrap();
    let mats: Vec<(&Vec<f64>, usize)> = matrices.iter().map(|m| (&m.sigma_x.0, m.sigma_x.1)).collect();
    be.eigvalsh(&mats).unwrap().iter().map(|e| e.iter().copied().fold(f64::NEG_INFINITY, f64::max)).collect()
}

#[test]
fn a_plain_relu_net_shrinks_lambda_max_of_its_inputs_by_the_init_s_factor() {
    // With zero biases, a ReLU layer under weight variance c/fan_in keeps c/2
    // of its input's second moment: trace(Σx) shrinks by 2/c per layer, i.e.
    // 6 for Torch7's U(±1/√fan_in) (c = 1/3), 2 for LeCun (c = 1), 1 for He
    // (c = 2). λmax(Σx) = trace·ρ, where ρ = λmax/trace is how much of the
    // inputs' energy lies along one direction. ReLU's normalised kernel map
    // does not depend on the weight scale, so ρ evolves alike under every
    // init, and past the first layers (inputs already nearly aligned) it
    // hardly moves: λmax shrinks by 2/c per layer, like the trace.
    use kappa::nn::Init;
    let per_layer = |init: Init| {
        let l = lambda_x_at_init(init);
        // Layer 4's input to layer 20's: 16 layers past the data's own geometry.
        (l[3] / l[19]).powf(1.0 / 16.0)
    };
    let (uniform, lecun, he) = (per_layer(Init::UniformFanIn), per_layer(Init::Lecun), per_layer(Init::He));
    println!("λmax(Σx) shrinks per layer by {uniform:.3} (uniform-fan-in), {lecun:.3} (lecun), {he:.3} (he)");
    // LeCun and He draw the same normals, He's √2 times larger, and ReLU is
    // positively homogeneous: every λmax(Σx_k) differs by 2^(k−1) exactly.
    assert!((lecun / he / 2.0 - 1.0).abs() < 1e-9, "lecun vs he: {lecun} / {he}, expected 2");
    // The uniform net's draws are its own. Finite width: one unit's ReLU(z)²
    // has relative variance 5, so a 256-unit layer scales the second moment
    // with a relative spread of √(5/256) ≈ 0.14; over 16 layers the
    // per-layer factor's log spreads by 0.14·√16/16 ≈ 0.035 (seeds 3, 4, 11
    // gave 5.88, 6.06, 5.90 and He 1.03, 1.04, 0.96), a ratio of two nets'
    // by about 0.05. The tolerances, 15% and 20%, are four of those.
    assert!((uniform / 6.0 - 1.0).abs() < 0.15, "uniform-fan-in shrinks λmax(Σx) by {uniform} per layer, expected ≈ 6");
    assert!((uniform / he / 6.0 - 1.0).abs() < 0.2, "uniform-fan-in vs he: {uniform} / {he}, expected 6");
}
