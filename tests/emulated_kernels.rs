//! Every CUDA kernel in kernels/*.cu, compiled for the host with
//! kernels/emulate.h and run with the same launch shapes a GPU gets (small
//! grids, so grid-stride loops wrap and tiles are partial), compared with its
//! CPU twin on random inputs. Outputs start as NaN, so an element a kernel
//! forgets to write fails the comparison.

mod emulated;

use emulated::{cptr, module, ptr, Module, Ptr};
use kappa::backend::cpu::Cpu;
use kappa::backend::{AdamHyper, Backend, ChannelShape, SgdHyper, Window};
use kappa::rng::Rng;

fn cpu() -> Cpu<f32> {
    Cpu::new()
}

fn normal(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| r.normal() as f32).collect()
}

fn poisoned<T: Copy>(n: usize, nan: T) -> Vec<T> {
    vec![nan; n]
}

/// |got − want| ≤ tol·(1 + |want|) everywhere; NaN only where want is NaN.
fn assert_close<T: Into<f64> + Copy>(what: &str, got: &[T], want: &[T], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.into(), w.into());
        let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= tol * (1.0 + w.abs()) };
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

const SIZES: [usize; 4] = [1, 37, 1000, 4099];
/// A grid smaller than the data, so every grid-stride loop wraps.
const GRID: (u32, u32, u32) = (3, 1, 1);
const BLOCK: (u32, u32, u32) = (64, 1, 1);

type Binary = unsafe extern "C" fn(Ptr, Ptr, Ptr, usize);

/// Every `extern "C" __global__` kernel in kernels/*.cu is named by a test in
/// this file, so a kernel added without a comparison with its CPU twin fails here.
#[test]
fn every_kernel_is_compared_here() {
    let here = include_str!("emulated_kernels.rs");
    let mut seen = 0;
    for file in emulated::kernel_files() {
        let path = emulated::kernels_dir().join(format!("{file}.cu"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in text.lines().filter_map(|l| l.strip_prefix("extern \"C\" __global__ void ")) {
            let name = line.split('(').next().unwrap_or_default();
            assert!(here.contains(&format!("\"{name}\"")), "{file}.cu's kernel {name} is not compared with its CPU twin in this file");
            seen += 1;
        }
    }
    assert!(seen > 0, "no kernel found in kernels/*.cu");
}

#[test]
fn elementwise_binary_and_unary_ops_match_the_cpu() {
    let m = module("elementwise");
    let mut r = Rng::new(1, 0);
    for n in SIZES {
        let (a, b) = (normal(&mut r, n), normal(&mut r, n));
        let (av, bv) = (a.clone(), b.clone());
        let wants = [
            ("add_f32", cpu().add(&av, &bv).unwrap()),
            ("sub_f32", cpu().sub(&av, &bv).unwrap()),
            ("mul_f32", cpu().mul(&av, &bv).unwrap()),
            ("relu_backward_f32", cpu().relu_backward(&av, &bv).unwrap()),
        ];
        for (name, want) in wants {
            let k: Binary = m.kernel(name);
            let mut y = poisoned(n, f32::NAN);
            let (pa, pb, py) = (cptr(&a), cptr(&b), ptr(&mut y));
            m.launch(GRID, BLOCK, || unsafe { k(pa, pb, py, n) });
            assert_close(name, &y, &want, 0.0);
        }

        let relu: unsafe extern "C" fn(Ptr, Ptr, usize) = m.kernel("relu_f32");
        let mut y = poisoned(n, f32::NAN);
        let (pa, py) = (cptr(&a), ptr(&mut y));
        m.launch(GRID, BLOCK, || unsafe { relu(pa, py, n) });
        assert_close("relu", &y, &cpu().relu(&av).unwrap(), 0.0);

        let scale: unsafe extern "C" fn(Ptr, f32, Ptr, usize) = m.kernel("scale_f32");
        let mut y = poisoned(n, f32::NAN);
        let py = ptr(&mut y);
        m.launch(GRID, BLOCK, || unsafe { scale(pa, -0.37, py, n) });
        assert_close("scale", &y, &cpu().scale(&av, -0.37f32 as f64).unwrap(), 0.0);

        let axpy: unsafe extern "C" fn(Ptr, f32, Ptr, usize) = m.kernel("axpy_f32");
        let mut y = b.clone();
        let py = ptr(&mut y);
        m.launch(GRID, BLOCK, || unsafe { axpy(py, 1.5, pa, n) });
        let mut want = bv.clone();
        cpu().axpy(&mut want, 1.5, &av).unwrap();
        assert_close("axpy", &y, &want, 0.0);

        let fill: unsafe extern "C" fn(Ptr, f32, usize) = m.kernel("fill_f32");
        let mut y = poisoned(n, f32::NAN);
        let py = ptr(&mut y);
        m.launch(GRID, BLOCK, || unsafe { fill(py, 2.5, n) });
        assert_close("fill", &y, &cpu().full(n, 2.5).unwrap(), 0.0);

        let cast: unsafe extern "C" fn(Ptr, Ptr, usize) = m.kernel("f64_to_f32");
        let x64: Vec<f64> = (0..n).map(|_| r.normal() * 1e3).collect();
        let mut y = poisoned(n, f32::NAN);
        let (px, py) = (cptr(&x64), ptr(&mut y));
        m.launch(GRID, BLOCK, || unsafe { cast(px, py, n) });
        assert_close("f64_to_f32", &y, &x64.iter().map(|&v| v as f32).collect::<Vec<_>>(), 0.0);
    }
}

#[test]
fn dropout_mask_reproduces_the_cpu_bit_for_bit() {
    let m = module("elementwise");
    let k: unsafe extern "C" fn(Ptr, usize, f64, f32, u64, u64) = m.kernel("dropout_mask_f32");
    for (n, p, seed, stream) in [(1000usize, 0.5, 7u64, 3u64), (4099, 0.1, u64::MAX, 0), (37, 0.0, 1, 1)] {
        let mut y = poisoned(n, f32::NAN);
        let py = ptr(&mut y);
        let keep = (1.0 / (1.0 - p)) as f32;
        m.launch(GRID, BLOCK, || unsafe { k(py, n, p, keep, seed, stream) });
        let want = cpu().dropout_mask(n, p, seed, stream).unwrap();
        assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "dropout n={n} p={p}");
    }
}

/// What the CUDA backend launches for one per-channel reduction.
fn channel_dots(a: &[f32], b: Option<&[f32]>, s: ChannelShape) -> (Vec<f64>, Vec<f64>) {
    let m = module("channel");
    let (mut sa, mut sab) = (vec![0.0f64; s.channels], vec![0.0f64; s.channels]);
    let (pa, pb, psa, psab) = (cptr(a), b.map_or(Ptr::NULL, cptr), ptr(&mut sa), ptr(&mut sab));
    if s.inner == 1 {
        let k: unsafe extern "C" fn(Ptr, Ptr, usize, usize, Ptr, Ptr) = m.kernel("channel_dots_rows");
        m.launch((s.channels.div_ceil(32) as u32, 2, 1), (32, 8, 1), || unsafe { k(pa, pb, s.outer, s.channels, psa, psab) });
    } else {
        let k: unsafe extern "C" fn(Ptr, Ptr, usize, usize, usize, Ptr, Ptr) = m.kernel("channel_dots_planes");
        m.launch((s.channels as u32, 2, 1), (64, 1, 1), || unsafe { k(pa, pb, s.outer, s.channels, s.inner, psa, psab) });
    }
    (sa, sab)
}

type Affine = unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, usize, usize, usize);

fn channel_affine(x: &[f32], scale: Option<&[f32]>, shift: &[f32], z: Option<(&[f32], &[f32])>, s: ChannelShape) -> Vec<f32> {
    let m = module("channel");
    let k: Affine = m.kernel("channel_affine");
    let mut out = poisoned(x.len(), f32::NAN);
    let (px, psc, psh, po) = (cptr(x), scale.map_or(Ptr::NULL, cptr), cptr(shift), ptr(&mut out));
    let (pz, pzs) = z.map_or((Ptr::NULL, Ptr::NULL), |(z, zs)| (cptr(z), cptr(zs)));
    m.launch(GRID, BLOCK, || unsafe { k(px, psc, psh, pz, pzs, po, s.len(), s.channels, s.inner) });
    out
}

const SHAPES: [ChannelShape; 3] = [
    ChannelShape { outer: 37, channels: 45, inner: 1 },
    ChannelShape { outer: 5, channels: 7, inner: 13 },
    ChannelShape { outer: 1, channels: 3, inner: 1 },
];

#[test]
fn channel_sums_and_bias_match_the_cpu() {
    let mut r = Rng::new(2, 0);
    for s in SHAPES {
        let x = normal(&mut r, s.len());
        let bias = normal(&mut r, s.channels);
        let (sum, _) = channel_dots(&x, None, s);
        let want = cpu().channel_sum(&x, s).unwrap();
        assert_close("channel_sum", &sum.iter().map(|&v| v as f32).collect::<Vec<_>>(), &want, 1e-6);
        let y = channel_affine(&x, None, &bias, None, s);
        assert_close("add_channel_bias", &y, &cpu().add_channel_bias(&x, &bias, s).unwrap(), 0.0);
    }
}

#[test]
fn batch_norm_forward_backward_and_eval_match_the_cpu() {
    let m = module("batch_norm");
    let mut r = Rng::new(3, 0);
    let eps = 1e-5;
    for s in SHAPES {
        let c = s.channels;
        let x: Vec<f32> = normal(&mut r, s.len()).iter().map(|v| 3.0 * v + 1.0).collect();
        let (gamma, beta, dy) = (normal(&mut r, c), normal(&mut r, c), normal(&mut r, s.len()));
        let mm = s.per_channel() as f64;

        // Training forward: sums → coefficients → affine map.
        let (sum, sum_sq) = channel_dots(&x, None, s);
        let k: unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, usize, f64, f64, Ptr, Ptr, Ptr, Ptr, Ptr) = m.kernel("batch_norm_train_coeffs");
        let [mut mean, mut var, mut inv_std, mut scale, mut shift] = [0; 5].map(|_| poisoned(c, f32::NAN));
        let ps = [ptr(&mut mean), ptr(&mut var), ptr(&mut inv_std), ptr(&mut scale), ptr(&mut shift)];
        let (pss, psq, pg, pb) = (cptr(&sum), cptr(&sum_sq), cptr(&gamma), cptr(&beta));
        m.launch((1, 1, 1), (32, 1, 1), || unsafe { k(pss, psq, pg, pb, c, mm, eps, ps[0], ps[1], ps[2], ps[3], ps[4]) });
        let y = channel_affine(&x, Some(&scale), &shift, None, s);
        let (want_y, stats) = cpu().batch_norm_train(&x, &gamma, &beta, s, eps).unwrap();
        assert_close("bn y", &y, &want_y, 1e-5);
        assert_close("bn mean", &mean, &stats.mean, 1e-6);
        assert_close("bn var", &var, &stats.var, 1e-6);
        assert_close("bn inv_std", &inv_std, &stats.inv_std, 1e-6);

        // Eval with the batch statistics as running averages.
        let k: unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, usize, f64, Ptr, Ptr) = m.kernel("batch_norm_eval_coeffs");
        let (mut escale, mut eshift) = (poisoned(c, f32::NAN), poisoned(c, f32::NAN));
        let (pm, pv, pes, peh) = (cptr(&stats.mean), cptr(&stats.var), ptr(&mut escale), ptr(&mut eshift));
        m.launch((1, 1, 1), (32, 1, 1), || unsafe { k(pg, pb, pm, pv, c, eps, pes, peh) });
        let y = channel_affine(&x, Some(&escale), &eshift, None, s);
        assert_close("bn eval", &y, &cpu().batch_norm_eval(&x, &gamma, &beta, &stats.mean, &stats.var, s, eps).unwrap(), 1e-5);

        // Backward: Σdy, Σdy·x → coefficients → affine map in (dy, x).
        let (sum_dy, sum_dy_x) = channel_dots(&dy, Some(&x), s);
        let k: unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, Ptr, usize, f64, Ptr, Ptr, Ptr, Ptr, Ptr) = m.kernel("batch_norm_backward_coeffs");
        let [mut dgamma, mut dbeta, mut dy_scale, mut x_scale, mut bshift] = [0; 5].map(|_| poisoned(c, f32::NAN));
        let ps = [ptr(&mut dgamma), ptr(&mut dbeta), ptr(&mut dy_scale), ptr(&mut x_scale), ptr(&mut bshift)];
        let (p1, p2, pis) = (cptr(&sum_dy), cptr(&sum_dy_x), cptr(&stats.inv_std));
        m.launch((1, 1, 1), (32, 1, 1), || unsafe { k(p1, p2, pg, pm, pis, c, mm, ps[0], ps[1], ps[2], ps[3], ps[4]) });
        let dx = channel_affine(&dy, Some(&dy_scale), &bshift, Some((&x, &x_scale)), s);
        let (want_dx, want_dg, want_db) = cpu().batch_norm_backward(&dy, &x, &gamma, &stats.mean, &stats.inv_std, s).unwrap();
        assert_close("bn dx", &dx, &want_dx, 1e-4);
        assert_close("bn dgamma", &dgamma, &want_dg, 1e-5);
        assert_close("bn dbeta", &dbeta, &want_db, 1e-5);
    }
}

#[test]
fn softmax_cross_entropy_and_label_sampling_match_the_cpu() {
    let m = module("softmax");
    let mut r = Rng::new(4, 0);
    for (rows, classes) in [(37usize, 10usize), (9, 45), (1, 1)] {
        let logits: Vec<f32> = normal(&mut r, rows * classes).iter().map(|v| 4.0 * v).collect();
        let labels: Vec<u32> = (0..rows).map(|_| r.below(classes) as u32).collect();
        let k: unsafe extern "C" fn(Ptr, Ptr, usize, usize, Ptr, Ptr) = m.kernel("softmax_xent_rows");
        let (mut probs, mut nll) = (poisoned(rows * classes, f32::NAN), poisoned(rows, f64::NAN));
        let (pz, pl, pp, pn) = (cptr(&logits), cptr(&labels), ptr(&mut probs), ptr(&mut nll));
        // Four rows (warps) per block; the last block is partial.
        m.launch((rows.div_ceil(4) as u32, 1, 1), (32, 4, 1), || unsafe { k(pz, pl, rows, classes, pp, pn) });
        let (want_p, want_nll) = cpu().softmax_xent(&logits, &labels, classes).unwrap();
        assert_close("softmax", &probs, &want_p, 1e-6);
        assert!((nll.iter().sum::<f64>() - want_nll).abs() <= 1e-9 * (1.0 + want_nll.abs()), "nll");

        let k: unsafe extern "C" fn(Ptr, Ptr, usize, usize, f32, Ptr) = m.kernel("softmax_xent_backward");
        let mut grad = poisoned(rows * classes, f32::NAN);
        let (pp, pg) = (cptr(&want_p), ptr(&mut grad));
        m.launch(GRID, BLOCK, || unsafe { k(pp, pl, rows * classes, classes, 0.25, pg) });
        assert_close("softmax backward", &grad, &cpu().softmax_xent_backward(&want_p, &labels, classes, 0.25).unwrap(), 0.0);

        let k: unsafe extern "C" fn(Ptr, usize, usize, u64, u64, Ptr) = m.kernel("sample_labels");
        for seed in 0..4u64 {
            let mut got = poisoned(rows, u32::MAX);
            let po = ptr(&mut got);
            m.launch((1, 1, 1), (32, 1, 1), || unsafe { k(pz, rows, classes, seed, 5, po) });
            assert_eq!(got, cpu().sample_labels(&logits, classes, seed, 5).unwrap(), "sample_labels {rows}x{classes}");
        }
    }
}

#[test]
fn sgd_and_adam_updates_match_the_cpu() {
    let m = module("update");
    let mut r = Rng::new(5, 0);
    for n in SIZES {
        let (p0, g, v0) = (normal(&mut r, n), normal(&mut r, n), normal(&mut r, n));
        for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
            let h = SgdHyper { lr: 0.1, momentum, weight_decay: 1e-3, nesterov };
            let k: unsafe extern "C" fn(Ptr, Ptr, Ptr, usize, f32, f32, f32, i32, i32) = m.kernel("sgd_step");
            let (mut p, mut v) = (p0.clone(), v0.clone());
            let (pp, pg, pv) = (ptr(&mut p), cptr(&g), ptr(&mut v));
            m.launch(GRID, BLOCK, || unsafe {
                k(pp, pg, pv, n, h.lr as f32, h.momentum as f32, h.weight_decay as f32, (h.momentum != 0.0) as i32, h.nesterov as i32)
            });
            let (mut wp, mut wv) = (p0.clone(), v0.clone());
            cpu().sgd_step(&mut wp, &g, &mut wv, &h).unwrap();
            assert_close("sgd param", &p, &wp, 0.0);
            assert_close("sgd velocity", &v, &wv, 0.0);
        }
        let h = AdamHyper { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, step: 3 };
        let m0: Vec<f32> = normal(&mut r, n).iter().map(|x| 0.1 * x).collect();
        let v0: Vec<f32> = normal(&mut r, n).iter().map(|x| 0.01 * x * x).collect();
        let k: unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, usize, f32, f32, f32, f32, f32, f64, f64, f64, f64) = m.kernel("adam_step");
        let (mut p, mut mm, mut vv) = (p0.clone(), m0.clone(), v0.clone());
        let (pp, pg, pm, pv) = (ptr(&mut p), cptr(&g), ptr(&mut mm), ptr(&mut vv));
        let (c1, c2) = (1.0 - h.beta1.powi(h.step as i32), 1.0 - h.beta2.powi(h.step as i32));
        m.launch(GRID, BLOCK, || unsafe {
            let (b1, b2, wd) = (h.beta1 as f32, h.beta2 as f32, h.weight_decay as f32);
            k(pp, pg, pm, pv, n, b1, b2, (1.0 - h.beta1) as f32, (1.0 - h.beta2) as f32, wd, h.lr, h.eps, c1, c2)
        });
        let (mut wp, mut wm, mut wv) = (p0.clone(), m0.clone(), v0.clone());
        cpu().adam_step(&mut wp, &g, &mut wm, &mut wv, &h).unwrap();
        assert_close("adam param", &p, &wp, 0.0);
        assert_close("adam m", &mm, &wm, 0.0);
        assert_close("adam v", &vv, &wv, 0.0);
    }
}

/// The lower triangle of `acc` against `want`; the strict upper triangle must
/// keep its NaN poison (the kernels write the lower triangle only).
fn assert_lower(what: &str, acc: &[f32], want: &[f32], n: usize, tol: f64) {
    for i in 0..n {
        assert_close(what, &acc[i * n..i * n + i + 1], &want[i * n..i * n + i + 1], tol);
        assert!(acc[i * n + i + 1..(i + 1) * n].iter().all(|v| v.is_nan()), "{what}: row {i} written above the diagonal");
    }
}

/// A starting accumulator: random lower triangle, NaN above it.
fn start_acc(r: &mut Rng, n: usize) -> Vec<f32> {
    let mut acc = normal(r, n * n);
    for i in 0..n {
        acc[i * n + i + 1..(i + 1) * n].fill(f32::NAN);
    }
    acc
}

#[test]
fn gram_lower_rows_matches_the_cpu_for_partial_tiles_and_row_splits() {
    let m = module("covariance");
    let k: unsafe extern "C" fn(Ptr, Ptr, usize, usize, f32) = m.kernel("gram_lower_rows");
    let mut r = Rng::new(6, 0);
    for (rows, cols, splits) in [(70usize, 50usize, 1u32), (33, 130, 3), (5, 1, 2), (17, 64, 1)] {
        let x = normal(&mut r, rows * cols);
        let acc0 = start_acc(&mut r, cols);
        let tiles = cols.div_ceil(64);
        let mut acc = acc0.clone();
        let (pa, px) = (ptr(&mut acc), cptr(&x));
        m.launch(((tiles * (tiles + 1) / 2) as u32, splits, 1), (16, 16, 1), || unsafe { k(pa, px, rows, cols, 0.5) });
        let mut want = acc0.clone();
        cpu().gram_lower(&mut want, &x, rows, cols, 0.5).unwrap();
        assert_lower(&format!("gram {rows}x{cols}/{splits}"), &acc, &want, cols, 1e-5);
    }
}

const CONVS: [Window; 4] = [
    Window { n: 2, c: 3, h: 7, w: 6, kh: 3, kw: 3, stride: 2, pad: 1 },
    Window { n: 3, c: 8, h: 5, w: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
    Window { n: 2, c: 3, h: 8, w: 7, kh: 3, kw: 2, stride: 2, pad: 0 },
    // A 1×1 window is Σ∇h of an NCHW output gradient (rows = pixels, columns = channels).
    Window { n: 2, c: 70, h: 3, w: 4, kh: 1, kw: 1, stride: 1, pad: 0 },
];

#[test]
fn count_positive_matches_the_cpu() {
    let m = module("covariance");
    let k: unsafe extern "C" fn(Ptr, usize, usize, Ptr) = m.kernel("count_positive");
    let mut r = Rng::new(8, 0);
    for (rows, cols) in [(37usize, 45usize), (1, 1), (100, 33)] {
        let mut x = normal(&mut r, rows * cols);
        x[0] = 0.0; // zero is not positive
        let mut counts = vec![0u32; cols];
        let (px, pc) = (cptr(&x), ptr(&mut counts));
        m.launch((cols.div_ceil(32) as u32, 2, 1), (32, 8, 1), || unsafe { k(px, rows, cols, pc) });
        assert_eq!(counts, cpu().count_positive(&x, rows, cols).unwrap());
    }
}

#[test]
fn sum_and_dot_match_the_cpu() {
    let m = module("reduce");
    let k: unsafe extern "C" fn(Ptr, Ptr, usize, Ptr) = m.kernel("sum_f32");
    let mut r = Rng::new(9, 0);
    for n in SIZES {
        let (a, b) = (normal(&mut r, n), normal(&mut r, n));
        let (mut s, mut d) = ([0.0f64], [0.0f64]);
        let (pa, pb, ps, pd) = (cptr(&a), cptr(&b), ptr(&mut s), ptr(&mut d));
        m.launch(GRID, BLOCK, || unsafe { k(pa, Ptr::NULL, n, ps) });
        m.launch(GRID, BLOCK, || unsafe { k(pa, pb, n, pd) });
        assert_close("sum", &s, &[cpu().sum(&a).unwrap()], 1e-12);
        assert_close("dot", &d, &[cpu().dot(&a, &b).unwrap()], 1e-12);
    }
}

#[test]
fn eigvalsh_preparation_matches_the_cpu_scaling() {
    let m = module("reduce");
    let stats_k: unsafe extern "C" fn(Ptr, usize, Ptr) = m.kernel("lower_max_abs");
    let scale_k: unsafe extern "C" fn(Ptr, usize, f64, Ptr) = m.kernel("scale_to_f64");
    let mut r = Rng::new(10, 0);
    for n in [1usize, 7, 40] {
        let mut lower = normal(&mut r, n * n);
        // Above the diagonal lies junk the reduction must ignore.
        for i in 0..n {
            lower[i * n + i + 1..(i + 1) * n].fill(1e30);
        }
        let want = (0..n).flat_map(|i| (0..=i).map(move |j| (i, j))).map(|(i, j)| lower[i * n + j].abs()).fold(0.0f32, f32::max);
        let mut stats = [0u32; 2];
        let (pl, ps) = (cptr(&lower), ptr(&mut stats));
        m.launch((2, 1, 1), (64, 1, 1), || unsafe { stats_k(pl, n, ps) });
        assert_eq!((f32::from_bits(stats[0]), stats[1]), (want, 0), "max |lower| of {n}×{n}");
        let mut scaled = poisoned(n * n, f64::NAN);
        let po = ptr(&mut scaled);
        m.launch(GRID, BLOCK, || unsafe { scale_k(pl, n * n, want as f64, po) });
        assert_close("scaled", &scaled, &lower.iter().map(|&v| v as f64 / want as f64).collect::<Vec<_>>(), 0.0);

        lower[(n - 1) * n] = f32::INFINITY;
        let mut stats = [0u32; 2];
        let ps = ptr(&mut stats);
        m.launch((2, 1, 1), (64, 1, 1), || unsafe { stats_k(pl, n, ps) });
        assert_eq!(stats[1], 1, "non-finite entry of {n}×{n} not flagged");
    }
}

type Unfold = unsafe extern "C" fn(Ptr, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, Ptr);
type Fold = unsafe extern "C" fn(Ptr, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, Ptr);

#[test]
fn im2col_and_col2im_match_the_cpu_unfolding() {
    let m = module("im2col");
    // The 32-bit entries and the 64-bit ones share their bodies; both are checked.
    for (unfold, fold) in [("im2col", "col2im"), ("im2col_64", "col2im_64")] {
        let (fwd, adj): (Unfold, Fold) = (m.kernel(unfold), m.kernel(fold));
        unfoldings_match_the_cpu(m, fwd, adj, unfold);
    }
}

fn unfoldings_match_the_cpu(m: &Module, fwd: Unfold, adj: Fold, entry: &str) {
    let mut r = Rng::new(11, 0);
    for g in CONVS {
        let (oh, ow) = g.out("test").unwrap();
        let (k, area) = (g.patch_len(), oh * ow);
        let x = normal(&mut r, g.n * g.image_len());
        let want = cpu().im2col(&x, g).unwrap();
        // A block per image (the convolutions), then rows across the images (the patch Gram).
        for (image_stride, row_stride) in [(k * area, area), (area, g.n * area)] {
            let mut cols = poisoned(g.n * k * area, f32::NAN);
            let (px, pc) = (cptr(&x), ptr(&mut cols));
            m.launch(GRID, BLOCK, || unsafe {
                fwd(px, g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, image_stride, row_stride, pc)
            });
            let placed: Vec<f32> =
                (0..g.n * k * area).map(|e| cols[e / (k * area) * image_stride + e / area % k * row_stride + e % area]).collect();
            assert_close(&format!("{entry}, strides {image_stride}, {row_stride}"), &placed, &want, 0.0);
        }
        let cols = want;

        let dcols = normal(&mut r, cols.len());
        let mut dx = poisoned(x.len(), f32::NAN);
        let (pd, pdx) = (cptr(&dcols), ptr(&mut dx));
        m.launch(GRID, BLOCK, || unsafe { adj(pd, g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, pdx) });
        assert_close(&format!("{entry}'s adjoint"), &dx, &cpu().col2im(&dcols, g).unwrap(), 1e-6);
    }
}

/// Pooling windows: overlapping, strided, rectangular, wholly-padded border
/// windows (a 1×1 window with padding), the 1×1 strided subsample, and one
/// large enough that every grid-stride loop wraps several times.
const POOLS: [Window; 6] = [
    Window { n: 2, c: 3, h: 7, w: 6, kh: 3, kw: 3, stride: 2, pad: 1 },
    Window { n: 2, c: 4, h: 5, w: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
    Window { n: 3, c: 2, h: 8, w: 7, kh: 3, kw: 2, stride: 2, pad: 1 },
    Window { n: 1, c: 3, h: 2, w: 2, kh: 1, kw: 1, stride: 1, pad: 1 },
    Window { n: 2, c: 3, h: 7, w: 7, kh: 1, kw: 1, stride: 2, pad: 0 },
    Window { n: 4, c: 16, h: 14, w: 13, kh: 2, kw: 2, stride: 2, pad: 0 },
];

type Pool = unsafe extern "C" fn(Ptr, usize, usize, usize, usize, usize, usize, usize, usize, usize, Ptr);
type PoolBackward = unsafe extern "C" fn(Ptr, Ptr, Ptr, usize, usize, usize, usize, usize, usize, usize, usize, usize, Ptr);
type AvgPool = unsafe extern "C" fn(Ptr, usize, usize, usize, usize, usize, usize, usize, usize, usize, f32, Ptr);

#[test]
fn max_pooling_matches_the_cpu_including_ties_and_nan() {
    let m = module("pool");
    let (fwd, bwd): (Pool, PoolBackward) = (m.kernel("max_pool2d"), m.kernel("max_pool2d_backward"));
    let mut r = Rng::new(12, 0);
    for g in POOLS {
        let (oh, ow) = g.out("test").unwrap();
        // Values on a coarse grid, so windows often hold their maximum twice.
        let mut x: Vec<f32> = normal(&mut r, g.n * g.image_len()).iter().map(|v| (2.0 * v).round() / 2.0).collect();
        x[g.image_len() / 2] = f32::NAN;
        let mut y = poisoned(g.n * g.c * oh * ow, f32::NAN);
        let (px, py) = (cptr(&x), ptr(&mut y));
        m.launch(GRID, BLOCK, || unsafe { fwd(px, g.n * g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, py) });
        let want_y = cpu().max_pool2d(&x, g).unwrap();
        assert_close(&format!("max_pool2d {g:?}"), &y, &want_y, 0.0);

        let dy = normal(&mut r, y.len());
        let mut dx = poisoned(x.len(), f32::NAN);
        let (pdy, pwy, pdx) = (cptr(&dy), cptr(&want_y), ptr(&mut dx));
        m.launch(GRID, BLOCK, || unsafe { bwd(pdy, px, pwy, g.n * g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, pdx) });
        assert_close(&format!("max_pool2d_backward {g:?}"), &dx, &cpu().max_pool2d_backward(&dy, &x, &want_y, g).unwrap(), 0.0);
    }
}

#[test]
fn average_pooling_matches_the_cpu() {
    let m = module("pool");
    let (fwd, bwd): (AvgPool, AvgPool) = (m.kernel("avg_pool2d"), m.kernel("avg_pool2d_backward"));
    let mut r = Rng::new(13, 0);
    for g in POOLS {
        let (oh, ow) = g.out("test").unwrap();
        let inv = (1.0 / (g.kh * g.kw) as f64) as f32;
        let x = normal(&mut r, g.n * g.image_len());
        let mut y = poisoned(g.n * g.c * oh * ow, f32::NAN);
        let (px, py) = (cptr(&x), ptr(&mut y));
        m.launch(GRID, BLOCK, || unsafe { fwd(px, g.n * g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, inv, py) });
        assert_close(&format!("avg_pool2d {g:?}"), &y, &cpu().avg_pool2d(&x, g).unwrap(), 1e-6);

        let dy = normal(&mut r, y.len());
        let mut dx = poisoned(x.len(), f32::NAN);
        let (pdy, pdx) = (cptr(&dy), ptr(&mut dx));
        m.launch(GRID, BLOCK, || unsafe { bwd(pdy, g.n * g.c, g.h, g.w, g.kh, g.kw, g.stride, g.pad, oh, ow, inv, pdx) });
        assert_close(&format!("avg_pool2d_backward {g:?}"), &dx, &cpu().avg_pool2d_backward(&dy, g).unwrap(), 1e-6);
    }
}

#[test]
fn channel_padding_and_narrowing_match_the_cpu() {
    let m = module("channel");
    let k: unsafe extern "C" fn(Ptr, usize, usize, usize, usize, usize, usize, Ptr) = m.kernel("copy_channels");
    let mut r = Rng::new(14, 0);
    let copy = |x: &[f32], s: ChannelShape, out_channels: usize, before: usize, start: usize| {
        let mut y = poisoned(s.outer * out_channels * s.inner, f32::NAN);
        let (px, py) = (cptr(x), ptr(&mut y));
        m.launch(GRID, BLOCK, || unsafe { k(px, s.outer, s.channels, s.inner, out_channels, before, start, py) });
        y
    };
    for s in SHAPES {
        let x = normal(&mut r, s.len());
        for (before, after) in [(2, 3), (0, 1), (4, 0)] {
            let want = cpu().pad_channels(&x, s, before, after).unwrap();
            assert_close(&format!("pad_channels {s:?} {before}+{after}"), &copy(&x, s, before + s.channels + after, before, 0), &want, 0.0);
        }
        for (start, len) in [(0, s.channels), (1, s.channels - 1), (s.channels / 2, 1)] {
            let want = cpu().narrow_channels(&x, s, start, len).unwrap();
            assert_close(&format!("narrow_channels {s:?} {start}+{len}"), &copy(&x, s, len, 0, start), &want, 0.0);
        }
    }
}
