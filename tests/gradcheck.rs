//! Finite-difference gradient checks, in f64, of every autograd op's backward
//! rule and of whole models.
//!
//! Each op check builds a graph on a `Tape<Cpu<f64>>` from leaf inputs,
//! reduces its output to a scalar with a fixed random projection
//! `L = Σ r ⊙ out` (so every output element's gradient path is exercised with
//! a distinct weight), and compares the tape's gradients of `L` with central
//! differences `(L(x + h) − L(x − h)) / 2h` (h = 1e-5, see [`STENCIL`]),
//! recomputed on a fresh tape for every perturbed element. The model checks
//! do the same for every parameter element of small MLPs.
//!
//! # Error metric
//!
//! For every element j of an input's gradient, with analytic value `a_j` and
//! numeric value `n_j`,
//!
//! ```text
//! err_j = |a_j − n_j| / max(|a_j|, |n_j|, floor),   floor = 1e-3 · max_k |n_k|
//! ```
//!
//! where the max over k runs over the same input tensor. The test fails when
//! any `err_j > 1e-6`. Dividing by the larger magnitude makes the error
//! relative (scale-free, and symmetric in a and n); the floor stops elements
//! whose true gradient is (nearly) zero from turning the finite-difference
//! round-off — about `ε_mach · |L| / h ≈ 1e-11 · |L|` in absolute terms —
//! into a large relative error. Tying the floor to the tensor's own largest
//! gradient keeps the check strict: an element is only judged against an
//! absolute scale that is a thousandth of the gradients it sits among, so a
//! wrong rule still shows up as an error many orders above 1e-6. (A purely
//! absolute floor would instead let a wrong gradient pass on any tensor whose
//! gradients are all small.)

use kappa::autograd::{Tape, Var};
use kappa::backend::cpu::Cpu;
use kappa::models::{Family, Mlp, MlpConfig, Model, ResNet, ResNetConfig, ShortcutKind, Variant};
use kappa::nn::{Init, Weights};
use kappa::rng::Rng;
use kappa::tensor::Tensor;

type B = Cpu<f64>;

/// Largest relative error accepted.
const TOL: f64 = 1e-6;
/// The error floor as a fraction of the tensor's largest numeric gradient.
const FLOOR_FRACTION: f64 = 1e-3;
/// Seed of the output projections `r` (the stream is derived from the op name).
const PROJECTION_SEED: u64 = 0x5eed_0f12;
/// Batch-norm ε used throughout (the layer's default).
const BN_EPS: f64 = 1e-5;

fn backend() -> B {
    Cpu::new()
}

fn tensor(shape: &[usize], data: Vec<f64>) -> Tensor<B> {
    Tensor::from_f64s(&backend(), shape, data).expect("tensor")
}

fn values(t: &Tensor<B>) -> Vec<f64> {
    t.to_f64s(&backend()).expect("download")
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// `scale · N(0, 1)` entries.
fn normal(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor<B> {
    tensor(shape, (0..numel(shape)).map(|_| scale * rng.normal()).collect())
}

/// Uniform entries in `[lo, hi)`.
fn uniform(rng: &mut Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor<B> {
    tensor(shape, (0..numel(shape)).map(|_| rng.uniform_in(lo, hi)).collect())
}

/// Normal-ish entries with `|x| ≥ margin`, so a kink at 0 is never within ±h.
fn away_from_zero(rng: &mut Rng, shape: &[usize], margin: f64) -> Tensor<B> {
    tensor(
        shape,
        (0..numel(shape))
            .map(|_| {
                let v = rng.normal();
                v.signum() * (margin + v.abs())
            })
            .collect(),
    )
}

/// Row-major multi-index of flat index `j`.
fn unravel(shape: &[usize], mut j: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        idx[d] = j % n.max(1);
        j /= n.max(1);
    }
    idx
}

/// All of `0..n`, or `max` distinct ones drawn by `rng` (sorted) when n is larger.
fn pick(n: usize, max: usize, rng: &mut Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if n > max {
        rng.shuffle(&mut all);
        all.truncate(max);
        all.sort_unstable();
    }
    all
}

/// A finite-difference formula for a derivative.
#[derive(Clone, Copy, Debug)]
enum Stencil {
    /// `(f(x+h) − f(x−h)) / 2h`: error O(h²) from truncation plus about
    /// `ε_mach·|L|/h` from round-off.
    Central { h: f64 },
    /// Richardson-extrapolated central difference `(4·D(h) − D(2h)) / 3`:
    /// truncation O(h⁴), so a larger h can beat the round-off. Only for smooth
    /// graphs (no ReLU), since it probes x ± 2h.
    Central4 { h: f64 },
}

/// The stencil of every check unless a test says otherwise. h = 1e-5 rather
/// than 1e-6: at 1e-6 the round-off term alone reached 3e-7 relative on the
/// MLP checks (a thin margin under the 1e-6 tolerance), while at 1e-5 both
/// error terms are ~1e-10 absolute and the worst element of any test is below
/// 1e-7. In the op tests every ReLU input is ≥ 1e-3 from the kink (drawn so,
/// or asserted), far beyond ±h; in the model tests a pre-activation within h
/// of 0 would show as one grossly wrong element, and none is with these seeds.
const STENCIL: Stencil = Stencil::Central { h: 1e-5 };

/// Numeric derivative of `f` at `x0`, dividing by the steps actually taken
/// (`(x0 + h) − (x0 − h)` as rounded, not 2h).
fn derivative(stencil: Stencil, x0: f64, mut f: impl FnMut(f64) -> f64) -> f64 {
    let mut central = |h: f64| {
        let (up, down) = (x0 + h, x0 - h);
        (f(up) - f(down)) / (up - down)
    };
    match stencil {
        Stencil::Central { h } => central(h),
        Stencil::Central4 { h } => (4.0 * central(h) - central(2.0 * h)) / 3.0,
    }
}

/// [`derivative`] in element `j` of a tensor, holding the others fixed.
fn element_derivative(stencil: Stencil, x: &Tensor<B>, j: usize, mut f: impl FnMut(Tensor<B>) -> f64) -> f64 {
    let mut buf = values(x);
    let x0 = buf[j];
    derivative(stencil, x0, |v| {
        buf[j] = v;
        f(tensor(x.shape(), buf.clone()))
    })
}

/// [`element_derivative`] for deep ReLU nets, where some unit among
/// thousands may sit within ±h of its kink, making the central difference
/// meaningless there. Compares the differences at h and h/2: on a smooth
/// path they agree to O(h²), across a kink they do not. `None` for a kinked
/// element, which the caller skips (and counts).
fn smooth_element_derivative(x: &Tensor<B>, j: usize, mut f: impl FnMut(Tensor<B>) -> f64) -> Option<f64> {
    let Stencil::Central { h } = STENCIL else { unreachable!("model checks use the central stencil") };
    let d = element_derivative(STENCIL, x, j, &mut f);
    let d_half = element_derivative(Stencil::Central { h: h / 2.0 }, x, j, &mut f);
    ((d - d_half).abs() <= KINK_AGREEMENT * d.abs().max(d_half.abs()).max(1e-6)).then_some(d)
}

/// Relative disagreement of the h and h/2 differences that marks a kink:
/// far above their O(h²) and round-off gaps, far below what crossing a kink does.
const KINK_AGREEMENT: f64 = 1e-4;

/// One tensor's gradients: analytic for every element, numeric for those checked.
struct GradPair {
    label: String,
    shape: Vec<usize>,
    analytic: Vec<f64>,
    numeric: Vec<(usize, f64)>,
    /// An absolute floor besides the relative one (0 for the op checks); see [`round_off_floor`].
    abs_floor: f64,
}

/// The model checks' absolute floor: a deep net's loss carries round-off of
/// some 10·ε_mach·|L|, which a central difference divides by h, so below
/// `10·ε·|L| / (h·TOL)` a gradient element cannot be resolved to TOL
/// relative; it is judged by its absolute error instead (≤ 10·ε·|L|/h, about
/// 2e-10 for |L| ≈ 1 — still far below what a wrong rule produces).
fn round_off_floor(loss: f64) -> f64 {
    let Stencil::Central { h } = STENCIL else { unreachable!("model checks use the central stencil") };
    10.0 * f64::EPSILON * loss.abs() / (h * TOL)
}

/// The worst element over all tensors, by the metric in the module docs.
struct Worst {
    err: f64,
    label: String,
    shape: Vec<usize>,
    index: usize,
    analytic: f64,
    numeric: f64,
    floor: f64,
}

fn rel_err(a: f64, n: f64, floor: f64) -> f64 {
    let denom = a.abs().max(n.abs()).max(floor);
    if denom == 0.0 {
        0.0 // a = n = 0 exactly
    } else {
        (a - n).abs() / denom
    }
}

/// Asserts every checked element of every pair is within [`TOL`]; reports the worst.
fn assert_grads_close(op: &str, pairs: &[GradPair]) {
    let mut worst: Option<Worst> = None;
    let mut failures = 0usize;
    let mut checked = 0usize;
    for p in pairs {
        assert!(p.numeric.iter().all(|(_, n)| n.is_finite()), "{op}: non-finite numeric gradient for {}", p.label);
        assert!(p.analytic.iter().all(|a| a.is_finite()), "{op}: non-finite analytic gradient for {}", p.label);
        let floor = (FLOOR_FRACTION * p.numeric.iter().fold(0.0f64, |m, &(_, n)| m.max(n.abs()))).max(p.abs_floor);
        for &(j, n) in &p.numeric {
            let a = p.analytic[j];
            let err = rel_err(a, n, floor);
            checked += 1;
            if err > TOL {
                failures += 1;
            }
            if worst.as_ref().is_none_or(|w| err > w.err) {
                worst = Some(Worst { err, label: p.label.clone(), shape: p.shape.clone(), index: j, analytic: a, numeric: n, floor });
            }
        }
    }
    let w = worst.unwrap_or_else(|| panic!("{op}: nothing was checked"));
    let at = format!(
        "{} {:?} element {} {:?}: analytic {:+.12e}, numeric {:+.12e}, floor {:.3e}",
        w.label,
        w.shape,
        w.index,
        unravel(&w.shape, w.index),
        w.analytic,
        w.numeric,
        w.floor
    );
    println!("gradcheck {op}: {checked} elements, max rel err {:.3e} at {at}", w.err);
    assert!(failures == 0, "gradcheck {op} FAILED: {failures} of {checked} elements exceed {TOL:e}; worst rel err {:.3e} at {at}", w.err);
}

/// Checks the gradients of `build` with respect to all of `inputs` (see the module docs).
fn gradcheck<F>(op: &str, inputs: &[Tensor<B>], build: F)
where
    F: Fn(&mut Tape<B>, &[Var]) -> kappa::Result<Var>,
{
    gradcheck_with(op, inputs, usize::MAX, STENCIL, build)
}

/// As [`gradcheck`], but checks at most `max_per_input` randomly chosen elements
/// of each input (for tensors big enough to take the backend's parallel paths),
/// with the given stencil.
fn gradcheck_with<F>(op: &str, inputs: &[Tensor<B>], max_per_input: usize, stencil: Stencil, build: F)
where
    F: Fn(&mut Tape<B>, &[Var]) -> kappa::Result<Var>,
{
    let be = backend();
    let leaves = |tape: &mut Tape<B>, xs: &[Tensor<B>]| -> Vec<Var> { xs.iter().map(|x| tape.leaf(x.clone())).collect() };

    // The projection r has the output's shape; none when the output is a scalar.
    let out_shape = {
        let mut tape = Tape::new(&be);
        let vars = leaves(&mut tape, inputs);
        let out = build(&mut tape, &vars).unwrap_or_else(|e| panic!("{op}: forward failed: {e}"));
        tape.shape(out).to_vec()
    };
    let projection = (numel(&out_shape) != 1).then(|| normal(&mut Rng::named(PROJECTION_SEED, op), &out_shape, 1.0));
    let objective = |tape: &mut Tape<B>, vars: &[Var]| -> Var {
        let out = build(tape, vars).unwrap_or_else(|e| panic!("{op}: forward failed: {e}"));
        match &projection {
            None => out,
            Some(r) => {
                let r = tape.constant(r.clone());
                let weighted = tape.mul(out, r).expect("projection mul");
                tape.sum(weighted).expect("projection sum")
            }
        }
    };
    let loss_at = |xs: &[Tensor<B>]| -> f64 {
        let mut tape = Tape::new(&be);
        let vars = leaves(&mut tape, xs);
        let l = objective(&mut tape, &vars);
        tape.value(l).scalar(&be).expect("scalar loss")
    };

    let mut tape = Tape::new(&be);
    let vars = leaves(&mut tape, inputs);
    let l = objective(&mut tape, &vars);
    let grads = tape.backward(l).unwrap_or_else(|e| panic!("{op}: backward failed: {e}"));

    let mut rng = Rng::named(PROJECTION_SEED ^ 1, op);
    let pairs: Vec<GradPair> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let g = grads.var(vars[i]).unwrap_or_else(|| panic!("{op}: no gradient for input {i}"));
            assert_eq!(g.shape(), x.shape(), "{op}: gradient shape of input {i}");
            let mut xs = inputs.to_vec();
            let numeric = pick(x.numel(), max_per_input, &mut rng)
                .into_iter()
                .map(|j| {
                    let n = element_derivative(stencil, x, j, |xj| {
                        xs[i] = xj;
                        loss_at(&xs)
                    });
                    (j, n)
                })
                .collect();
            GradPair { label: format!("input {i}"), shape: x.shape().to_vec(), analytic: values(g), numeric, abs_floor: 0.0 }
        })
        .collect();
    assert_grads_close(op, &pairs);
}

// ---------------------------------------------------------------- matrix products

#[test]
fn matmul() {
    let mut rng = Rng::new(1, 0);
    let a = normal(&mut rng, &[3, 4], 1.0);
    let b = normal(&mut rng, &[4, 5], 1.0);
    gradcheck("matmul", &[a, b], |t, v| t.matmul(v[0], v[1]));
}

#[test]
fn matmul_of_a_matrix_with_itself() {
    // Both operands are the same var: the two gradient contributions must add.
    let mut rng = Rng::new(2, 0);
    let a = normal(&mut rng, &[4, 4], 1.0);
    gradcheck("matmul(a, a)", &[a], |t, v| t.matmul(v[0], v[0]));
}

#[test]
fn linear_with_bias() {
    let mut rng = Rng::new(3, 0);
    let x = normal(&mut rng, &[5, 3], 1.0);
    let w = normal(&mut rng, &[4, 3], 1.0);
    let b = normal(&mut rng, &[4], 1.0);
    gradcheck("linear+bias", &[x, w, b], |t, v| t.linear(v[0], v[1], Some(v[2])));
}

#[test]
fn linear_without_bias() {
    let mut rng = Rng::new(4, 0);
    let x = normal(&mut rng, &[5, 3], 1.0);
    let w = normal(&mut rng, &[4, 3], 1.0);
    gradcheck("linear", &[x, w], |t, v| t.linear(v[0], v[1], None));
}

#[test]
fn linear_flattens_a_higher_rank_input() {
    // x [N, 2, 3] is used as N×6; its gradient must come back as [N, 2, 3].
    let mut rng = Rng::new(5, 0);
    let x = normal(&mut rng, &[4, 2, 3], 1.0);
    let w = normal(&mut rng, &[3, 6], 1.0);
    let b = normal(&mut rng, &[3], 1.0);
    gradcheck("linear(rank-3 x)", &[x, w, b], |t, v| t.linear(v[0], v[1], Some(v[2])));
}

// ---------------------------------------------------------------- element-wise

#[test]
fn add() {
    let mut rng = Rng::new(10, 0);
    let a = normal(&mut rng, &[3, 4], 1.0);
    let b = normal(&mut rng, &[3, 4], 1.0);
    gradcheck("add", &[a, b], |t, v| t.add(v[0], v[1]));
}

#[test]
fn sub() {
    let mut rng = Rng::new(11, 0);
    let a = normal(&mut rng, &[3, 4], 1.0);
    let b = normal(&mut rng, &[3, 4], 1.0);
    gradcheck("sub", &[a, b], |t, v| t.sub(v[0], v[1]));
}

#[test]
fn mul() {
    let mut rng = Rng::new(12, 0);
    let a = normal(&mut rng, &[3, 4], 1.0);
    let b = normal(&mut rng, &[3, 4], 1.0);
    gradcheck("mul", &[a, b], |t, v| t.mul(v[0], v[1]));
}

#[test]
fn scale() {
    let mut rng = Rng::new(13, 0);
    let a = normal(&mut rng, &[2, 3, 2], 1.0);
    gradcheck("scale", &[a], |t, v| t.scale(v[0], -1.7));
}

#[test]
fn bias_add_on_features() {
    let mut rng = Rng::new(14, 0);
    let x = normal(&mut rng, &[5, 3], 1.0);
    let b = normal(&mut rng, &[3], 1.0);
    gradcheck("bias_add [N,C]", &[x, b], |t, v| t.bias_add(v[0], v[1]));
}

#[test]
fn bias_add_on_images() {
    let mut rng = Rng::new(15, 0);
    let x = normal(&mut rng, &[2, 3, 2, 3], 1.0);
    let b = normal(&mut rng, &[3], 1.0);
    gradcheck("bias_add [N,C,H,W]", &[x, b], |t, v| t.bias_add(v[0], v[1]));
}

/// For graphs whose forward round-off is large: the ~2·10⁴-element tests
/// (above the CPU backend's 16 384-element parallel threshold), where L sums
/// that many terms, and batch norm of inputs with large means, where the
/// variance is a difference of large sums. There an h = 1e-5 central
/// difference loses 1e-7…1e-5 of relative accuracy to round-off, while these
/// graphs are smooth (no ReLU; batch norm's higher derivatives in one element
/// are O(1/M)), so a large step with the fourth-order stencil is exact to ~1e-8.
const SMOOTH_STENCIL: Stencil = Stencil::Central4 { h: 1e-2 };

#[test]
fn bias_add_large_enough_to_run_in_parallel() {
    let mut rng = Rng::new(16, 0);
    let x = normal(&mut rng, &[4, 3, 40, 40], 1.0);
    let b = normal(&mut rng, &[3], 1.0);
    gradcheck_with("bias_add (parallel)", &[x, b], 64, SMOOTH_STENCIL, |t, v| t.bias_add(v[0], v[1]));
}

#[test]
fn relu() {
    let mut rng = Rng::new(20, 0);
    let x = away_from_zero(&mut rng, &[4, 5], 0.05);
    let xs = values(&x);
    assert!(xs.iter().any(|&v| v < 0.0) && xs.iter().any(|&v| v > 0.0), "relu test needs both signs");
    gradcheck("relu", &[x], |t, v| t.relu(v[0]));
}

#[test]
fn add_relu() {
    let mut rng = Rng::new(23, 0);
    // Sums away from the kink, of both signs, split into two random parts.
    let sum = values(&away_from_zero(&mut rng, &[4, 5], 0.05));
    assert!(sum.iter().any(|&v| v < 0.0) && sum.iter().any(|&v| v > 0.0), "add_relu test needs both signs");
    let b = normal(&mut rng, &[4, 5], 1.0);
    let a = tensor(&[4, 5], sum.iter().zip(values(&b)).map(|(s, b)| s - b).collect());
    gradcheck("add_relu", &[a, b], |t, v| t.add_relu(v[0], v[1]));
}

#[test]
fn dropout() {
    let (p, seed, stream) = (0.3, 1234, 7);
    let mut rng = Rng::new(21, 0);
    let x = away_from_zero(&mut rng, &[6, 5], 0.05);
    // The check is only meaningful if the mask drops some elements and keeps others.
    let be = backend();
    let mut tape = Tape::new(&be);
    let xv = tape.leaf(x.clone());
    let y = tape.dropout(xv, p, seed, stream).unwrap();
    let ys = values(tape.value(y));
    let dropped = ys.iter().filter(|&&v| v == 0.0).count();
    assert!(dropped > 0 && dropped < ys.len(), "dropout dropped {dropped} of {}", ys.len());
    gradcheck("dropout", &[x], |t, v| t.dropout(v[0], p, seed, stream));
}

// ---------------------------------------------------------------- batch norm

fn gamma_beta(rng: &mut Rng, c: usize) -> (Tensor<B>, Tensor<B>) {
    (uniform(rng, &[c], 0.5, 1.5), normal(rng, &[c], 0.5))
}

#[test]
fn batch_norm_train_on_features() {
    let mut rng = Rng::new(30, 0);
    let x = normal(&mut rng, &[6, 4], 1.5);
    let (g, b) = gamma_beta(&mut rng, 4);
    gradcheck("batch_norm_train [N,C]", &[x, g, b], |t, v| Ok(t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y));
}

#[test]
fn batch_norm_train_on_images() {
    let mut rng = Rng::new(31, 0);
    let x = normal(&mut rng, &[3, 4, 2, 3], 1.5);
    let (g, b) = gamma_beta(&mut rng, 4);
    gradcheck("batch_norm_train [N,C,H,W]", &[x, g, b], |t, v| Ok(t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y));
}

#[test]
fn batch_norm_train_large_enough_to_run_in_parallel() {
    let mut rng = Rng::new(32, 0);
    let x = normal(&mut rng, &[4, 3, 40, 40], 1.5);
    let (g, b) = gamma_beta(&mut rng, 3);
    gradcheck_with("batch_norm_train (parallel)", &[x, g, b], 48, SMOOTH_STENCIL, |t, v| {
        Ok(t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y)
    });
}

#[test]
fn batch_norm_train_on_many_rows() {
    // [N, C] with N·C > 16 384: the per-channel sums run over several row blocks.
    let mut rng = Rng::new(37, 0);
    let x = normal(&mut rng, &[2100, 8], 1.5);
    let (g, b) = gamma_beta(&mut rng, 8);
    gradcheck_with("batch_norm_train [N,C] (parallel)", &[x, g, b], 48, SMOOTH_STENCIL, |t, v| {
        Ok(t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y)
    });
}

/// `x` with channel c shifted by `offsets[c]` (channel axis 1).
fn shift_channels(x: &Tensor<B>, offsets: &[f64]) -> Tensor<B> {
    let s = x.channel_shape().unwrap();
    let xs = values(x);
    tensor(x.shape(), xs.iter().enumerate().map(|(i, v)| v + offsets[(i / s.inner) % s.channels]).collect())
}

#[test]
fn batch_norm_train_with_channel_means_far_from_zero() {
    // Per-channel means of different sizes and signs: checks that μ is taken
    // per channel and that the statistics and their gradients survive the
    // cancellation in terms like Σx² − Mμ² or Σdy·x − μΣdy. That cancellation
    // also makes L's round-off large, hence the smooth-graph stencil.
    let offsets = [30.0, -20.0, 5.0, 0.0];
    let mut rng = Rng::new(38, 0);
    for shape in [&[6, 4][..], &[3, 4, 2, 3][..]] {
        let x = shift_channels(&normal(&mut rng, shape, 1.5), &offsets);
        let (g, b) = gamma_beta(&mut rng, 4);
        gradcheck_with(&format!("batch_norm_train {shape:?} (offset means)"), &[x, g, b], usize::MAX, SMOOTH_STENCIL, |t, v| {
            Ok(t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y)
        });
    }
}

#[test]
fn batch_norm_train_feeding_relu() {
    // The usual pairing. Nothing keeps a normalised value off the kink, so the
    // test asserts that, for this seed, every pre-activation is ≥ 1e-3 from 0.
    let mut rng = Rng::new(33, 0);
    let x = normal(&mut rng, &[8, 3], 1.0);
    let g = tensor(&[3], vec![1.0, 0.7, 1.3]);
    let b = tensor(&[3], vec![0.0, 0.0, 0.0]);
    let be = backend();
    let mut tape = Tape::new(&be);
    let vars: Vec<Var> = [&x, &g, &b].iter().map(|t| tape.leaf((*t).clone())).collect();
    let y = tape.batch_norm_train(vars[0], vars[1], vars[2], BN_EPS).unwrap().y;
    let min_abs = values(tape.value(y)).iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    assert!(min_abs > 1e-3, "a pre-activation is {min_abs}, too close to the ReLU kink");
    gradcheck("relu(batch_norm_train)", &[x.clone(), g.clone(), b.clone()], |t, v| {
        let y = t.batch_norm_train(v[0], v[1], v[2], BN_EPS)?.y;
        t.relu(y)
    });
    // The same pair as one op, and on NCHW input.
    gradcheck("batch_norm_train_relu", &[x, g.clone(), b.clone()], |t, v| Ok(t.batch_norm_train_relu(v[0], v[1], v[2], BN_EPS)?.y));
    let x = normal(&mut rng, &[2, 3, 2, 3], 1.0);
    gradcheck("batch_norm_train_relu (NCHW)", &[x, g, b], |t, v| Ok(t.batch_norm_train_relu(v[0], v[1], v[2], BN_EPS)?.y));
}

#[test]
fn batch_norm_train_add_relu() {
    // A post-activation block's tail: relu(BN(x) + z), z the shortcut. As
    // above, the test asserts that every sum is off the kink for this seed.
    let mut rng = Rng::new(39, 0);
    let (x, z) = (normal(&mut rng, &[2, 3, 2, 3], 1.0), normal(&mut rng, &[2, 3, 2, 3], 1.0));
    let (g, b) = gamma_beta(&mut rng, 3);
    let be = backend();
    let mut tape = Tape::new(&be);
    let vars: Vec<Var> = [&x, &g, &b, &z].iter().map(|t| tape.leaf((*t).clone())).collect();
    let y = tape.batch_norm_train(vars[0], vars[1], vars[2], BN_EPS).unwrap().y;
    let sum = tape.add(y, vars[3]).unwrap();
    let min_abs = values(tape.value(sum)).iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    assert!(min_abs > 1e-3, "a sum is {min_abs}, too close to the ReLU kink");
    gradcheck("batch_norm_train_add_relu", &[x, g, b, z], |t, v| Ok(t.batch_norm_train_add_relu(v[0], v[1], v[2], v[3], BN_EPS)?.y));
}

#[test]
fn batch_norm_eval_on_features() {
    let mut rng = Rng::new(34, 0);
    let x = normal(&mut rng, &[6, 4], 1.5);
    let (g, b) = gamma_beta(&mut rng, 4);
    let mean = normal(&mut rng, &[4], 1.0);
    let var = uniform(&mut rng, &[4], 0.3, 2.0);
    gradcheck("batch_norm_eval [N,C]", &[x, g, b], |t, v| t.batch_norm_eval(v[0], v[1], v[2], &mean, &var, BN_EPS));
}

#[test]
fn batch_norm_eval_on_images() {
    let mut rng = Rng::new(35, 0);
    let x = normal(&mut rng, &[3, 4, 2, 3], 1.5);
    let (g, b) = gamma_beta(&mut rng, 4);
    let mean = normal(&mut rng, &[4], 1.0);
    let var = uniform(&mut rng, &[4], 0.3, 2.0);
    gradcheck("batch_norm_eval [N,C,H,W]", &[x, g, b], |t, v| t.batch_norm_eval(v[0], v[1], v[2], &mean, &var, BN_EPS));
}

#[test]
fn batch_norm_train_reports_the_batch_statistics() {
    // Not a gradient, but the running averages the layer keeps are built from
    // these: mean and biased variance per channel, against a two-pass reference,
    // with channel means near and far from zero.
    let mut rng = Rng::new(36, 0);
    for offsets in [[0.0, 0.0], [40.0, -25.0]] {
        let x = shift_channels(&normal(&mut rng, &[5, 2, 3], 2.0), &offsets);
        let (g, b) = gamma_beta(&mut rng, 2);
        let be = backend();
        let mut tape = Tape::new(&be);
        let (xv, gv, bv) = (tape.leaf(x.clone()), tape.leaf(g), tape.leaf(b));
        let out = tape.batch_norm_train(xv, gv, bv, BN_EPS).unwrap();
        let xs = values(&x);
        for c in 0..2 {
            let vals: Vec<f64> = (0..5).flat_map(|n| (0..3).map(move |i| (n, i))).map(|(n, i)| xs[(n * 2 + c) * 3 + i]).collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64;
            let close = |got: f64, want: f64| (got - want).abs() <= 1e-12 * (1.0 + want.abs());
            assert!(close(out.stats.mean[c], m), "mean of channel {c}: {} vs {m}", out.stats.mean[c]);
            assert!(close(out.stats.var[c], v), "biased variance of channel {c}: {} vs {v}", out.stats.var[c]);
            let inv_std = 1.0 / (v + BN_EPS).sqrt();
            assert!(close(out.stats.inv_std[c], inv_std), "inv_std of channel {c}: {} vs {inv_std}", out.stats.inv_std[c]);
        }
    }
}

// ---------------------------------------------------------------- losses and reductions

#[test]
fn cross_entropy() {
    let mut rng = Rng::new(40, 0);
    let logits = normal(&mut rng, &[6, 4], 2.0);
    let labels: Vec<u32> = (0..6).map(|_| rng.below(4) as u32).collect();
    gradcheck("cross_entropy", &[logits], |t, v| t.cross_entropy(v[0], &labels));
}

#[test]
fn cross_entropy_with_large_logits() {
    // Max-shifted softmax: logits in the hundreds must not overflow either pass.
    let mut rng = Rng::new(41, 0);
    let logits = normal(&mut rng, &[5, 3], 1.0);
    let shifted = tensor(&[5, 3], values(&logits).iter().map(|v| 300.0 + v).collect());
    let labels = [0u32, 1, 2, 1, 0];
    gradcheck("cross_entropy(large logits)", &[shifted], |t, v| t.cross_entropy(v[0], &labels));
}

#[test]
fn mse() {
    let mut rng = Rng::new(42, 0);
    let pred = normal(&mut rng, &[4, 3], 1.0);
    let target = normal(&mut rng, &[4, 3], 1.0);
    gradcheck("mse", &[pred, target], |t, v| t.mse(v[0], v[1]));
}

#[test]
fn sum() {
    let mut rng = Rng::new(43, 0);
    let x = normal(&mut rng, &[3, 2, 2], 1.0);
    gradcheck("sum", &[x], |t, v| t.sum(v[0]));
}

#[test]
fn mean() {
    let mut rng = Rng::new(44, 0);
    let x = normal(&mut rng, &[3, 2, 2], 1.0);
    gradcheck("mean", &[x], |t, v| t.mean(v[0]));
}

#[test]
fn reshape() {
    let mut rng = Rng::new(45, 0);
    let x = normal(&mut rng, &[2, 3, 4], 1.0);
    let b = normal(&mut rng, &[4], 1.0);
    // Reshape, then an op that depends on the layout (per-channel bias on [6, 4]).
    gradcheck("reshape", &[x, b], |t, v| {
        let y = t.reshape(v[0], &[6, 4])?;
        t.bias_add(y, v[1])
    });
}

#[test]
fn reused_var_accumulates() {
    // x·x + x: x feeds three edges; ∂/∂x = 2x + 1.
    let mut rng = Rng::new(46, 0);
    let x = normal(&mut rng, &[3, 4], 1.0);
    gradcheck("mul(x, x) + x", &[x], |t, v| {
        let sq = t.mul(v[0], v[0])?;
        t.add(sq, v[0])
    });
}

#[test]
fn a_small_graph_of_many_ops() {
    // mean(relu(x·Wᵀ + b) ⊙ y) − 0.5·Σy + Σ(x ⊙ x): x and y each feed two paths.
    let mut rng = Rng::new(47, 0);
    let x = normal(&mut rng, &[5, 3], 1.0);
    let w = normal(&mut rng, &[4, 3], 1.0);
    let b = normal(&mut rng, &[4], 1.0);
    let y = normal(&mut rng, &[5, 4], 1.0);
    let be = backend();
    let mut tape = Tape::new(&be);
    let vs: Vec<Var> = [&x, &w, &b].iter().map(|t| tape.leaf((*t).clone())).collect();
    let h = tape.linear(vs[0], vs[1], Some(vs[2])).unwrap();
    let min_abs = values(tape.value(h)).iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    assert!(min_abs > 1e-3, "pre-activation {min_abs} too close to the ReLU kink");
    gradcheck("graph", &[x, w, b, y], |t, v| {
        let h = t.linear(v[0], v[1], Some(v[2]))?;
        let a = t.relu(h)?;
        let p = t.mul(a, v[3])?;
        let m = t.mean(p)?;
        let s = t.scale(v[3], 0.5)?;
        let s = t.sum(s)?;
        let xx = t.mul(v[0], v[0])?;
        let xx = t.sum(xx)?;
        let l = t.sub(m, s)?;
        t.add(l, xx)
    });
}

// ---------------------------------------------------------------- conv nets

/// Entries of a shuffled grid spaced `gap` apart (plus jitter below gap/4),
/// so no two are within ±h of each other: a max never changes hands under
/// the finite-difference step.
fn distinct(rng: &mut Rng, shape: &[usize], gap: f64) -> Tensor<B> {
    let n = numel(shape);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    tensor(shape, order.into_iter().map(|k| (k as f64 - n as f64 / 2.0) * gap + rng.uniform_in(0.0, gap / 4.0)).collect())
}

#[test]
fn conv2d_3x3_padded() {
    let mut rng = Rng::new(70, 0);
    let x = normal(&mut rng, &[2, 3, 5, 5], 1.0);
    let w = normal(&mut rng, &[4, 3, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s1 p1", &[x, w], |t, v| t.conv2d(v[0], v[1], 1, 1));
}

/// Planes 8 and more wide take the CPU's direct kernel (with AVX2 and FMA);
/// 5 output channels make its last block of 4 overlap the one before. Rows
/// a multiple of 8 wide also take its direct filter gradient: with 5 output
/// channels, a block of 4 and a single one; with 3, single ones.
#[test]
fn conv2d_3x3_padded_on_planes_for_the_direct_kernel() {
    let mut rng = Rng::new(71, 0);
    let x = normal(&mut rng, &[2, 3, 3, 9], 1.0);
    let w = normal(&mut rng, &[5, 3, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s1 p1, 9 wide", &[x.clone(), w.clone()], |t, v| t.conv2d(v[0], v[1], 1, 1));
    let x = normal(&mut rng, &[1, 2, 8, 8], 1.0);
    let w = normal(&mut rng, &[3, 2, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s1 p1, 8×8", &[x, w], |t, v| t.conv2d(v[0], v[1], 1, 1));
    let x = normal(&mut rng, &[2, 2, 3, 16], 1.0);
    let w = normal(&mut rng, &[5, 2, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s1 p1, 16 wide", &[x, w], |t, v| t.conv2d(v[0], v[1], 1, 1));
}

#[test]
fn conv2d_strided_on_a_non_square_image() {
    let mut rng = Rng::new(71, 0);
    let x = normal(&mut rng, &[2, 2, 7, 6], 1.0);
    let w = normal(&mut rng, &[3, 2, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s2 p1", &[x, w], |t, v| t.conv2d(v[0], v[1], 2, 1));
    // Outputs 9 wide: the direct kernel's forward (with AVX2 and FMA), an odd input side.
    let x = normal(&mut rng, &[1, 2, 3, 17], 1.0);
    let w = normal(&mut rng, &[5, 2, 3, 3], 0.5);
    gradcheck("conv2d 3x3 s2 p1, 9 wide", &[x, w], |t, v| t.conv2d(v[0], v[1], 2, 1));
}

#[test]
fn conv2d_pointwise_and_strided_pointwise() {
    let mut rng = Rng::new(72, 0);
    let x = normal(&mut rng, &[3, 4, 3, 5], 1.0);
    let w = normal(&mut rng, &[2, 4, 1, 1], 0.5);
    gradcheck("conv2d 1x1 s1", &[x.clone(), w.clone()], |t, v| t.conv2d(v[0], v[1], 1, 0));
    gradcheck("conv2d 1x1 s2", &[x, w], |t, v| t.conv2d(v[0], v[1], 2, 0));
}

#[test]
fn conv2d_large_kernel_stem() {
    let mut rng = Rng::new(73, 0);
    let x = normal(&mut rng, &[1, 3, 9, 8], 1.0);
    let w = normal(&mut rng, &[2, 3, 7, 7], 0.2);
    gradcheck("conv2d 7x7 s2 p3", &[x, w], |t, v| t.conv2d(v[0], v[1], 2, 3));
}

#[test]
fn max_pool2d() {
    let mut rng = Rng::new(74, 0);
    let x = distinct(&mut rng, &[2, 3, 7, 6], 0.01);
    gradcheck("max_pool2d 3x3 s2 p1", std::slice::from_ref(&x), |t, v| t.max_pool2d(v[0], 3, 2, 1));
    gradcheck("max_pool2d 2x2 s2", &[x], |t, v| t.max_pool2d(v[0], 2, 2, 0));
}

#[test]
fn avg_pool2d() {
    let mut rng = Rng::new(75, 0);
    let x = normal(&mut rng, &[2, 3, 7, 6], 1.0);
    gradcheck("avg_pool2d 3x3 s2 p1", std::slice::from_ref(&x), |t, v| t.avg_pool2d(v[0], 3, 2, 1));
    gradcheck("avg_pool2d 1x1 s2 (subsample)", &[x], |t, v| t.avg_pool2d(v[0], 1, 2, 0));
}

#[test]
fn global_avg_pool() {
    let mut rng = Rng::new(76, 0);
    let x = normal(&mut rng, &[3, 4, 3, 5], 1.0);
    gradcheck("global_avg_pool", &[x], |t, v| t.global_avg_pool(v[0]));
}

#[test]
fn type_a_shortcut() {
    let mut rng = Rng::new(77, 0);
    let x = normal(&mut rng, &[2, 4, 5, 6], 1.0);
    gradcheck("pad_channels", std::slice::from_ref(&x), |t, v| t.pad_channels(v[0], 1, 3));
    gradcheck("shortcut_a", &[x], |t, v| t.shortcut_a(v[0], 2, 8));
}

#[test]
fn learnable_scalars() {
    let mut rng = Rng::new(78, 0);
    let x = normal(&mut rng, &[2, 3, 4], 1.0);
    let s = normal(&mut rng, &[1], 1.0);
    gradcheck("scale_by", &[x.clone(), s.clone()], |t, v| t.scale_by(v[0], v[1]));
    gradcheck("add_scalar", &[x, s], |t, v| t.add_scalar(v[0], v[1]));
}

#[test]
fn residual_block_with_released_intermediates() {
    // conv → BN → ReLU → conv → BN → ·τ → + shortcut_a → ReLU, releasing every
    // value the forward pass no longer reads, as the ResNets do.
    let mut rng = Rng::new(79, 0);
    let x = normal(&mut rng, &[3, 2, 6, 6], 1.0);
    let w1 = normal(&mut rng, &[4, 2, 3, 3], 0.4);
    let w2 = normal(&mut rng, &[4, 4, 3, 3], 0.3);
    let (g, b) = gamma_beta(&mut rng, 4);
    let tau = tensor(&[1], vec![0.7]);
    gradcheck_with("residual block", &[x, w1, w2, g, b, tau], 40, STENCIL, |t, v| {
        let h = t.conv2d(v[0], v[1], 2, 1)?;
        let n = t.batch_norm_train(h, v[3], v[4], BN_EPS)?.y;
        let a = t.relu(n)?;
        t.release(n);
        let h2 = t.conv2d(a, v[2], 1, 1)?;
        let n2 = t.batch_norm_train(h2, v[3], v[4], BN_EPS)?.y;
        let r = t.scale_by(n2, v[5])?;
        t.release(n2);
        let s = t.shortcut_a(v[0], 2, 4)?;
        let y = t.add_relu(r, s)?;
        t.release(r);
        Ok(y)
    });
}

// ---------------------------------------------------------------- whole models

fn mlp_config(bn: bool) -> MlpConfig {
    MlpConfig { inputs: 6, depth: 4, width: 5, classes: 3, bn, init: Init::He, bn_momentum: 0.1 }
}

/// An MLP whose biases, γ and β are random (the initialiser leaves them 0 and 1).
fn random_mlp(bn: bool, seed: u64) -> Mlp<B> {
    let be = backend();
    let mut model = Mlp::new(&be, mlp_config(bn), seed, Weights::Drawn).expect("mlp");
    let mut rng = Rng::new(seed, 99);
    let ids: Vec<_> = model.store().ids().collect();
    for id in ids {
        let p = model.store_mut().param_mut(id);
        if p.value.shape().len() != 1 {
            continue;
        }
        let is_gamma = p.name.starts_with("bns.") && p.name.ends_with(".weight");
        for v in p.value.buf_mut().iter_mut() {
            *v = if is_gamma { rng.uniform_in(0.5, 1.5) } else { 0.3 * rng.normal() };
        }
    }
    model
}

/// Checks d(cross-entropy)/d(parameter elements) and d/d(input) of a model:
/// every element, or `max_per_tensor` drawn at random from each tensor.
fn check_model(op: &str, model: &mut dyn Model<B>, x: &Tensor<B>, labels: &[u32], train: bool, max_per_tensor: usize) {
    let be = backend();
    let loss_of = |model: &mut dyn Model<B>, x: &Tensor<B>| -> f64 {
        let mut tape = Tape::new(&be);
        let xv = tape.constant(x.clone());
        let logits = model.forward(&mut tape, xv, train).expect("forward");
        let l = tape.cross_entropy(logits, labels).expect("loss");
        tape.value(l).scalar(&be).expect("scalar")
    };

    let mut tape = Tape::new(&be);
    let xv = tape.leaf(x.clone());
    let logits = model.forward(&mut tape, xv, train).expect("forward");
    let l = tape.cross_entropy(logits, labels).expect("loss");
    // Sampled checks are the deep-net ones: an absolute round-off floor, and kinks skipped.
    let sampled = max_per_tensor != usize::MAX;
    let abs_floor = if sampled { round_off_floor(tape.value(l).scalar(&be).expect("loss")) } else { 0.0 };
    let mut kinked = 0;
    let grads = tape.backward(l).expect("backward");

    let mut rng = Rng::named(PROJECTION_SEED ^ 2, op);
    let mut pairs = Vec::new();
    let ids: Vec<_> = model.store().ids().collect();
    for id in ids {
        let (name, shape) = {
            let p = model.store().param(id);
            (p.name.clone(), p.value.shape().to_vec())
        };
        let g = grads.param(id).unwrap_or_else(|| panic!("{op}: no gradient for {name}"));
        assert_eq!(g.shape(), &shape[..], "{op}: gradient shape of {name}");
        let value = model.store().value(id).clone();
        let numeric = pick(numel(&shape), max_per_tensor, &mut rng)
            .into_iter()
            .filter_map(|j| {
                let mut at = |p| {
                    model.store_mut().param_mut(id).value = p;
                    loss_of(model, x)
                };
                match sampled {
                    false => Some((j, element_derivative(STENCIL, &value, j, at))),
                    true => {
                        let n = smooth_element_derivative(&value, j, &mut at);
                        kinked += n.is_none() as usize;
                        n.map(|n| (j, n))
                    }
                }
            })
            .collect();
        model.store_mut().param_mut(id).value = value;
        pairs.push(GradPair { label: name, shape, analytic: values(g), numeric, abs_floor });
    }
    let gx = grads.var(xv).expect("input gradient");
    let numeric = pick(x.numel(), max_per_tensor, &mut rng)
        .into_iter()
        .filter_map(|j| match sampled {
            false => Some((j, element_derivative(STENCIL, x, j, |xj| loss_of(model, &xj)))),
            true => {
                let n = smooth_element_derivative(x, j, |xj| loss_of(model, &xj));
                kinked += n.is_none() as usize;
                n.map(|n| (j, n))
            }
        })
        .collect();
    pairs.push(GradPair { label: "input".into(), shape: x.shape().to_vec(), analytic: values(gx), numeric, abs_floor });
    let total: usize = pairs.iter().map(|p| p.numeric.len()).sum();
    if sampled {
        println!("{op}: {kinked} elements skipped at a ReLU kink");
        assert!(kinked * 10 <= total, "{op}: {kinked} kinked elements of {}; the check is not representative", total + kinked);
    } else {
        assert_eq!(total, model.store().count() + x.numel(), "{op}: every parameter element is checked");
    }
    assert_grads_close(op, &pairs);
}

fn batch(seed: u64, n: usize) -> (Tensor<B>, Vec<u32>) {
    let mut rng = Rng::new(seed, 5);
    let x = normal(&mut rng, &[n, 6], 1.0);
    let labels = (0..n).map(|_| rng.below(3) as u32).collect();
    (x, labels)
}

#[test]
fn mlp_with_batch_norm_in_training_mode() {
    let mut model = random_mlp(true, 50);
    let (x, labels) = batch(50, 8);
    check_model("mlp bn (train)", &mut model, &x, &labels, true, usize::MAX);
}

#[test]
fn mlp_with_batch_norm_in_eval_mode() {
    let mut model = random_mlp(true, 51);
    // A few training forwards give the running statistics non-trivial values.
    let be = backend();
    for k in 0..3 {
        let (x, _) = batch(100 + k, 8);
        let mut tape = Tape::new(&be);
        let xv = tape.constant(x);
        model.forward(&mut tape, xv, true).unwrap();
    }
    let (x, labels) = batch(51, 8);
    check_model("mlp bn (eval)", &mut model, &x, &labels, false, usize::MAX);
}

#[test]
fn plain_mlp() {
    let mut model = random_mlp(false, 52);
    let (x, labels) = batch(52, 8);
    check_model("mlp plain", &mut model, &x, &labels, true, usize::MAX);
}

/// A depth-8 CIFAR-layout net (one block per stage) with random γ, β,
/// biases and scalars, on 6×6 images.
fn random_resnet(variant: Variant, shortcut: ShortcutKind, seed: u64) -> ResNet<B> {
    let config = ResNetConfig { in_channels: 2, shortcut, ..ResNetConfig::new(variant, Family::Cifar, 8, 3) };
    let mut model = ResNet::new(&backend(), config, seed, Weights::Drawn).expect("resnet");
    let mut rng = Rng::new(seed, 98);
    let ids: Vec<_> = model.store().ids().collect();
    for id in ids {
        let p = model.store_mut().param_mut(id);
        if p.value.shape().len() == 1 {
            let is_gamma = p.name.contains("bn") && p.name.ends_with(".weight");
            for v in p.value.buf_mut().iter_mut() {
                *v = if is_gamma { rng.uniform_in(0.5, 1.5) } else { 0.3 * rng.normal() };
            }
        }
    }
    model
}

#[test]
fn resnets_of_every_kind() {
    let cases = [
        (Variant::Resnet, ShortcutKind::A),
        (Variant::Resnet, ShortcutKind::B),
        (Variant::Preresnet, ShortcutKind::A),
        (Variant::ResnetLastbn, ShortcutKind::A),
        (Variant::Vgg, ShortcutKind::A),
        (Variant::TauResnet, ShortcutKind::A),
        (Variant::TauResnetNobn, ShortcutKind::A),
    ];
    for (k, (variant, shortcut)) in cases.into_iter().enumerate() {
        let mut model = random_resnet(variant, shortcut, 60 + k as u64);
        let mut rng = Rng::new(60 + k as u64, 5);
        // Four examples: with two, the last BN's outputs sit at ±1 where its
        // higher derivatives are huge and a finite difference is inaccurate.
        let x = normal(&mut rng, &[4, 2, 6, 6], 1.0);
        let labels = [0, 2, 1, 1];
        check_model(&format!("{} shortcut {shortcut:?} (train)", variant.name()), &mut model, &x, &labels, true, 6);
    }
}

#[test]
fn resnet_in_eval_mode() {
    let mut model = random_resnet(Variant::ResnetLastbn, ShortcutKind::A, 70);
    let be = backend();
    let mut rng = Rng::new(70, 5);
    for _ in 0..3 {
        let mut tape = Tape::new(&be);
        let xv = tape.constant(normal(&mut rng, &[2, 2, 6, 6], 1.0));
        model.forward(&mut tape, xv, true).unwrap();
    }
    let x = normal(&mut rng, &[2, 2, 6, 6], 1.0);
    check_model("resnet-lastbn (eval)", &mut model, &x, &[1, 0], false, 6);
}

#[test]
fn probes_match_the_weight_gradients() {
    // With probing on, each linear layer reports its input x and ∂L/∂h; for
    // h = x·Wᵀ + b these must give ∂L/∂W = (∂L/∂h)ᵀ·x and ∂L/∂b = Σ_rows ∂L/∂h,
    // which the model checks above verified against finite differences.
    for bn in [true, false] {
        let mut model = random_mlp(bn, 53);
        let (x, labels) = batch(53, 8);
        let be = backend();
        let mut tape = Tape::new(&be);
        tape.set_probing(true);
        let xv = tape.constant(x);
        let logits = model.forward(&mut tape, xv, true).unwrap();
        let l = tape.cross_entropy(logits, &labels).unwrap();
        let grads = tape.backward(l).unwrap();
        assert_eq!(grads.probes().len(), 4, "one probe per linear layer");
        let store = model.store();
        for probe in grads.probes() {
            let find = |suffix: &str| store.ids().find(|&id| store.param(id).name == format!("{}.{suffix}", probe.layer));
            let w_id = find("weight").unwrap_or_else(|| panic!("no weight for probe {}", probe.layer));
            let (xs, gh) = (values(&probe.x), values(&probe.grad_h));
            let (n, k) = probe.x.rows_cols();
            let out = store.value(w_id).shape()[0];
            assert_eq!(probe.grad_h.shape(), &[n, out]);
            let gw = values(grads.param(w_id).unwrap());
            for o in 0..out {
                for i in 0..k {
                    let expect: f64 = (0..n).map(|r| gh[r * out + o] * xs[r * k + i]).sum();
                    assert!((gw[o * k + i] - expect).abs() <= 1e-12 * (1.0 + expect.abs()), "{}: dW[{o},{i}]", probe.layer);
                }
            }
            if let Some(b_id) = find("bias") {
                let gb = values(grads.param(b_id).unwrap());
                for o in 0..out {
                    let expect: f64 = (0..n).map(|r| gh[r * out + o]).sum();
                    assert!((gb[o] - expect).abs() <= 1e-12 * (1.0 + expect.abs()), "{}: db[{o}]", probe.layer);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- shape errors

/// Asserts `r` is a shape error raised by `op`, whose message names `op`.
fn expect_shape_error<T>(r: kappa::Result<T>, op: &str) {
    match r {
        Ok(_) => panic!("{op}: mismatched shapes were accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(matches!(e, kappa::Error::Shape { op: o, .. } if o == op), "{op}: wrong error {e:?}");
            assert!(msg.contains(op), "{op}: message '{msg}' does not name the op");
        }
    }
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let be = backend();
    let mut tape = Tape::new(&be);
    let mut leaf = |shape: &[usize]| tape.leaf(Tensor::zeros(&be, shape).unwrap());
    let (a23, a32, a4, a3, x43, w25, img) =
        (leaf(&[2, 3]), leaf(&[3, 2]), leaf(&[4]), leaf(&[3]), leaf(&[4, 3]), leaf(&[2, 5]), leaf(&[2, 3, 2, 2]));
    expect_shape_error(tape.add(a23, a32), "add");
    expect_shape_error(tape.sub(a23, a32), "sub");
    expect_shape_error(tape.mul(a23, a32), "mul");
    expect_shape_error(tape.matmul(a23, a23), "matmul");
    expect_shape_error(tape.matmul(a23, a3), "matmul");
    expect_shape_error(tape.linear(x43, w25, None), "linear");
    expect_shape_error(tape.linear(x43, a23, Some(a4)), "linear");
    expect_shape_error(tape.bias_add(x43, a4), "bias_add");
    expect_shape_error(tape.bias_add(img, a4), "bias_add");
    expect_shape_error(tape.batch_norm_train(x43, a4, a3, BN_EPS).map(|o| o.y), "batch_norm");
    expect_shape_error(tape.batch_norm_train(img, a3, a4, BN_EPS).map(|o| o.y), "batch_norm");
    let (m3, v3) = (Tensor::zeros(&be, &[3]).unwrap(), Tensor::full(&be, &[3], 1.0).unwrap());
    expect_shape_error(tape.batch_norm_eval(x43, a4, a4, &m3, &v3, BN_EPS), "batch_norm");
    expect_shape_error(tape.cross_entropy(x43, &[0, 1, 2]), "cross_entropy");
    expect_shape_error(tape.reshape(a23, &[4, 2]), "reshape");
    expect_shape_error(tape.mse(a23, a32), "mse");
    let (w4, wrong_c) = (leaf_of(&mut tape, &be, &[4, 3, 3, 3]), leaf_of(&mut tape, &be, &[4, 2, 3, 3]));
    expect_shape_error(tape.conv2d(img, wrong_c, 1, 1), "conv2d");
    expect_shape_error(tape.conv2d(x43, w4, 1, 1), "conv2d");
    expect_shape_error(tape.conv2d(img, w4, 1, 0), "conv2d");
    expect_shape_error(tape.max_pool2d(img, 5, 1, 0), "window");
    expect_shape_error(tape.avg_pool2d(x43, 1, 2, 0), "window");
    expect_shape_error(tape.global_avg_pool(a4), "channel op");
    expect_shape_error(tape.shortcut_a(img, 2, 4), "shortcut_a");
    expect_shape_error(tape.scale_by(img, a4), "scale_by");
}

fn leaf_of(tape: &mut Tape<B>, be: &B, shape: &[usize]) -> Var {
    tape.leaf(Tensor::zeros(be, shape).unwrap())
}
