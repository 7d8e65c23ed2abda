//! The matrix version (the original `test_multilayer.py`): teacher and student
//! as plain weight matrices with the bias as an extra input row, ReLU after
//! every layer, trained by projected gradient steps in closed form
//!
//! ```text
//! ΔW_l = L*_l W*_l H*_lᵀ − L_l W_l H_lᵀ,   then every column of W_l to unit norm,
//! ```
//!
//! where, with f_l the student's input to layer l (ones column appended), f*_l
//! the teacher's, and g_l, g*_l the ReLU gates of layer l's outputs (a one
//! appended), all averaged over the batch:
//! `L_l = E[f_l f_lᵀ]`, `L*_l = E[f_l f*_lᵀ]`; at the top `H = H* = I`, and
//! below `H_l = (W_{l+1} H_{l+1} W_{l+1}ᵀ ∘ E[g_l g_lᵀ])` and
//! `H*_l = (W_{l+1} H*_{l+1} W*_{l+1}ᵀ ∘ E[g_l g*_lᵀ])`, each without its bias
//! row and column. This factorises the batch average of the back-propagated
//! MSE gradient (output gate and upper biases left out, as in the original);
//! `per_sample` forms L and H per sample instead and averages the steps.
//!
//! With the student started at the teacher (`perturb`) and twice as wide, the
//! rows of the upper weight fed by unmatched student nodes decay to ~1e-4
//! while the matched ones stay ~1.1–1.5: over-parameterised nodes switch off.

use super::correlation::{best_match, pearson};
use super::dense::Mat;
use super::teacher::{separable, separable_rows};
use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixConfig {
    /// Teacher widths, input first; the student widens every hidden one.
    pub sizes: Vec<usize>,
    pub node_multi: usize,
    /// Start the student at the teacher plus N(0, init_std²) noise.
    pub perturb: bool,
    /// Standard deviation of the student's initial weights (the noise, with `perturb`).
    pub init_std: f64,
    pub lr: f64,
    pub batch_size: usize,
    pub iterations: usize,
    /// Measure and log every this many iterations (and before the first).
    pub log_every: usize,
    pub eval_samples: usize,
    /// The original's `--use_accurate_grad`: L and H per sample, steps averaged.
    pub per_sample: bool,
    pub seed: u64,
}

impl Default for MatrixConfig {
    /// The published over-parameterisation run: `test_multilayer.py --perturb
    /// --node_multi 2 --lr 0.05 --init_std 0.1 --batchsize 64 --seed 232`
    /// (20,000 iterations, logged every 100).
    fn default() -> Self {
        MatrixConfig {
            sizes: vec![10, 20, 30],
            node_multi: 2,
            perturb: true,
            init_std: 0.1,
            lr: 0.05,
            batch_size: 64,
            iterations: 20_000,
            log_every: 100,
            eval_samples: 1024,
            per_sample: false,
            seed: 232,
        }
    }
}

impl MatrixConfig {
    /// A reduced run for CI (seconds): half the iterations, after which most
    /// rows fed by unmatched student nodes are already below 1e-2 while the
    /// matched ones stay above 1.
    pub fn ci() -> Self {
        MatrixConfig { iterations: 40_000, log_every: 2000, ..MatrixConfig::default() }
    }

    /// Checks every field, naming the command-line flag that sets it.
    pub fn validate(&self) -> Result<()> {
        // Only hidden nodes are matched to the teacher's: without one the run measures nothing.
        if self.sizes.len() < 3 || self.sizes.contains(&0) {
            let detail = format!(
                "{:?}: need an input, at least one hidden layer (whose nodes the run matches) and an output, none of width 0",
                self.sizes
            );
            return Err(Error::arg("--sizes", detail));
        }
        if let Some(p) = self.sizes.windows(2).find(|p| !separable(p[1], p[0])) {
            return Err(Error::arg("--sizes", format!("a teacher layer of {} nodes on {} inputs cannot have distinct rows", p[1], p[0])));
        }
        for (flag, v) in [("--node-multi", self.node_multi), ("--batch-size", self.batch_size), ("--iterations", self.iterations)] {
            if v == 0 {
                return Err(Error::arg(flag, "must be at least 1"));
            }
        }
        if self.log_every == 0 {
            return Err(Error::arg("--log-every", "must be at least 1"));
        }
        if self.eval_samples < 2 {
            return Err(Error::arg("--eval-samples", "a correlation needs at least 2 samples"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::arg("--lr", format!("{} is not a positive learning rate", self.lr)));
        }
        if !(self.init_std.is_finite() && (self.init_std > 0.0 || self.perturb && self.init_std == 0.0)) {
            return Err(Error::arg(
                "--init-std",
                format!(
                    "{} is not a positive standard deviation (0 only without --no-perturb, the student then being the teacher)",
                    self.init_std
                ),
            ));
        }
        let samples = self.eval_samples.max(self.batch_size);
        super::student_fits(&self.sizes, self.node_multi, samples, "--sizes, --node-multi, --eval-samples or --batch-size")
    }
}

/// The teacher's matrices: for every layer (inputs+1)×outputs, rows from
/// [`separable_rows`] as columns, a zero bias row, unit-norm columns.
pub fn teacher_weights(seed: u64, sizes: &[usize]) -> Result<Vec<Mat>> {
    let mut rng = Rng::named(seed, "luckmatters/matrix-teacher");
    sizes
        .windows(2)
        .map(|p| {
            let (n_in, n_out) = (p[0], p[1]);
            let rows = separable_rows(&mut rng, n_out, n_in)?;
            let mut w = Mat::from_fn(n_in + 1, n_out, |r, c| if r < n_in { rows[c * n_in + r] } else { 0.0 });
            w.unit_cols();
            Ok(w)
        })
        .collect()
}

/// The student's matrices: every hidden width times `node_multi`, N(0, init_std²)
/// entries, the teacher added into the leading block with `perturb`, unit-norm
/// columns; an error naming `--init-std` where a column's norm leaves f64's
/// range (its entries ~1e154 or more), which would normalise it to zeros.
pub fn student_weights(cfg: &MatrixConfig, teacher: &[Mat]) -> Result<Vec<Mat>> {
    let mut rng = Rng::named(cfg.seed, "luckmatters/matrix-student");
    let layers = teacher.len();
    teacher
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n_in = (t.rows - 1) * if i > 0 { cfg.node_multi } else { 1 };
            let n_out = t.cols * if i + 1 < layers { cfg.node_multi } else { 1 };
            let mut w = Mat::from_fn(n_in + 1, n_out, |_, _| cfg.init_std * rng.normal());
            if cfg.perturb {
                for c in 0..t.cols {
                    for r in 0..t.rows - 1 {
                        w.data[r * n_out + c] += t.at(r, c);
                    }
                    w.data[n_in * n_out + c] += t.at(t.rows - 1, c);
                }
            }
            match w.unit_cols() {
                true => Ok(w),
                false => {
                    let detail = format!("{}: a column of the initial student has a norm past f64's range", cfg.init_std);
                    Err(Error::arg("--init-std", detail))
                }
            }
        })
        .collect()
}

/// `n` Gaussian samples of dimension `d` with a ones column appended.
fn samples(rng: &mut Rng, n: usize, d: usize) -> Mat {
    Mat::from_fn(n, d + 1, |_, c| if c < d { rng.normal() } else { 1.0 })
}

/// One layer: `[relu(x·W), 1]` and its gate `[1{x·W > 0}, 1]`.
fn layer(x: &Mat, w: &Mat) -> (Mat, Mat) {
    let h = x.matmul(w);
    let f = Mat::from_fn(h.rows, h.cols + 1, |r, c| if c < h.cols { h.at(r, c).max(0.0) } else { 1.0 });
    let g = Mat::from_fn(h.rows, h.cols + 1, |r, c| if c == h.cols || h.at(r, c) > 0.0 { 1.0 } else { 0.0 });
    (f, g)
}

/// The closed-form step ΔW_l for every layer (see the module docs) on the
/// batch `x` (rows are samples with the ones column).
pub fn closed_form_step(x: &Mat, student: &[Mat], teacher: &[Mat]) -> Vec<Mat> {
    let depth = student.len();
    let (mut fs, mut ft) = (x.clone(), x.clone());
    let (mut ls, mut ls_t) = (vec![fs.moment(&fs)], vec![fs.moment(&ft)]);
    let (mut gates, mut gates_t) = (Vec::new(), Vec::new());
    for l in 0..depth - 1 {
        let (f, g) = layer(&fs, &student[l]);
        let (f_t, g_t) = layer(&ft, &teacher[l]);
        (fs, ft) = (f, f_t);
        ls.push(fs.moment(&fs));
        ls_t.push(fs.moment(&ft));
        gates.push(g);
        gates_t.push(g_t);
    }
    let top = student[depth - 1].cols;
    let mut hs = vec![Mat::identity(top); depth];
    let mut hs_t = vec![Mat::identity(top); depth];
    for l in (1..depth).rev() {
        let (w, w_t, g, g_t) = (&student[l], &teacher[l], &gates[l - 1], &gates_t[l - 1]);
        let h = w.matmul(&hs[l]).matmul(&w.t()).hadamard(&g.moment(g));
        let h_t = w.matmul(&hs_t[l]).matmul(&w_t.t()).hadamard(&g.moment(g_t));
        hs[l - 1] = h.top_left(h.rows - 1, h.cols - 1);
        hs_t[l - 1] = h_t.top_left(h_t.rows - 1, h_t.cols - 1);
    }
    (0..depth)
        .map(|l| {
            let mut d = ls_t[l].matmul(&teacher[l]).matmul(&hs_t[l].t());
            d.axpy(-1.0, &ls[l].matmul(&student[l]).matmul(&hs[l].t()));
            d
        })
        .collect()
}

/// [`closed_form_step`] taken on every sample alone, averaged.
pub fn per_sample_step(x: &Mat, student: &[Mat], teacher: &[Mat]) -> Vec<Mat> {
    let mut total: Vec<Mat> = student.iter().map(|w| Mat::zeros(w.rows, w.cols)).collect();
    for r in 0..x.rows {
        let one = Mat { rows: 1, cols: x.cols, data: x.row(r).to_vec() };
        for (t, d) in total.iter_mut().zip(closed_form_step(&one, student, teacher)) {
            t.axpy(1.0 / x.rows as f64, &d);
        }
    }
    total
}

/// Row norms of one upper layer, split by the student node feeding each row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowNormSplit {
    /// Index of the weight matrix (1 = the one above the first hidden layer).
    pub layer: usize,
    /// Rows fed by a student node that is some teacher node's best match.
    pub aligned: Vec<f64>,
    /// Rows fed by the other student nodes.
    pub others: Vec<f64>,
    /// The bias row.
    pub bias: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixOutcome {
    /// Iterations done: all asked for, or up to the one that diverged.
    pub iterations: usize,
    /// The iteration whose step left f64's range, after which the run stopped.
    pub diverged_at: Option<usize>,
    pub eval_loss: f64,
    /// Per hidden layer: mean over teacher nodes of the best correlation.
    pub corr_mean: Vec<f64>,
    /// `W_row_norm` of every layer at the end.
    pub row_norms: Vec<Vec<f64>>,
    /// For every layer above a hidden one.
    pub splits: Vec<RowNormSplit>,
    pub seconds: f64,
}

impl MatrixOutcome {
    pub fn summary(&self) -> String {
        // A few duplicated student nodes can keep large norms that cancel, so
        // the median says more about the bulk of the rows than the range.
        let range = |v: &[f64]| {
            let mut sorted = v.to_vec();
            sorted.sort_by(f64::total_cmp);
            match (sorted.first(), sorted.last()) {
                (Some(lo), Some(hi)) => format!("{lo:.3e}–{hi:.3e} (median {:.3e})", sorted[sorted.len() / 2]),
                _ => "-".to_string(),
            }
        };
        let diverged = self.diverged_at.map_or(String::new(), |at| format!(", DIVERGED at iteration {at} (figures before it)"));
        let mut s = format!(
            "matrix: {} iterations in {:.1}s{diverged}, eval loss {:.4e}, corr mean {:?}\n",
            self.iterations, self.seconds, self.eval_loss, self.corr_mean
        );
        for sp in &self.splits {
            s += &format!(
                "  W[{}] row norms: {} aligned rows {}, {} other rows {}, bias row {:.3e}\n",
                sp.layer,
                sp.aligned.len(),
                range(&sp.aligned),
                sp.others.len(),
                range(&sp.others),
                sp.bias
            );
        }
        s
    }
}

/// What one measurement on the evaluation set gives.
#[derive(Serialize)]
struct Record {
    kind: &'static str,
    iteration: usize,
    eval_loss: f64,
    corr_mean: Vec<f64>,
    #[serde(rename = "W_row_norm")]
    row_norms: Vec<Vec<f64>>,
    seconds: f64,
    #[serde(skip)]
    matches: Vec<Vec<usize>>,
}

fn measure(x: &Mat, student: &[Mat], teacher: &[Mat], iteration: usize, seconds: f64) -> Record {
    let (mut fs, mut ft) = (x.clone(), x.clone());
    let (mut corr_mean, mut matches) = (Vec::new(), Vec::new());
    for (l, (w, w_t)) in student.iter().zip(teacher).enumerate() {
        (fs, ft) = (layer(&fs, w).0, layer(&ft, w_t).0);
        if l + 1 < student.len() {
            let (q, p) = (fs.cols - 1, ft.cols - 1);
            let s = Mat::from_fn(fs.rows, q, |r, c| fs.at(r, c));
            let t = Mat::from_fn(ft.rows, p, |r, c| ft.at(r, c));
            let best = best_match(&pearson(&t.data, p, &s.data, q), q);
            corr_mean.push(best.iter().map(|b| b.0).sum::<f64>() / p as f64);
            matches.push(best.into_iter().map(|b| b.1).collect());
        }
    }
    let cols = fs.cols - 1;
    let sq: f64 = (0..fs.rows).flat_map(|r| (0..cols).map(move |c| (r, c))).map(|(r, c)| (fs.at(r, c) - ft.at(r, c)).powi(2)).sum();
    let eval_loss = sq / (fs.rows * cols) as f64;
    Record { kind: "matrix", iteration, eval_loss, corr_mean, row_norms: student.iter().map(Mat::row_norms).collect(), seconds, matches }
}

/// Runs the matrix version in f64 on the host, writing `config.json` and
/// `metrics.jsonl` (one record per `log_every` iterations) to `out_dir`.
pub fn run(cfg: &MatrixConfig, out_dir: &Path) -> Result<MatrixOutcome> {
    cfg.validate()?;
    let start = Instant::now();
    // Before the run directory, so an initialisation that cannot be made leaves nothing written.
    let teacher = teacher_weights(cfg.seed, &cfg.sizes)?;
    let mut ws = student_weights(cfg, &teacher)?;
    let mut log = super::open_run(out_dir, cfg)?;
    let d = cfg.sizes[0];
    let eval_x = samples(&mut Rng::named(cfg.seed, "luckmatters/matrix-eval"), cfg.eval_samples, d);
    let mut data = Rng::named(cfg.seed, "luckmatters/matrix-train");
    let mut last = measure(&eval_x, &ws, &teacher, 0, 0.0);
    log.write(&last)?;
    let mut diverged_at = None;
    for it in 1..=cfg.iterations {
        let x = samples(&mut data, cfg.batch_size, d);
        let deltas = if cfg.per_sample { per_sample_step(&x, &ws, &teacher) } else { closed_form_step(&x, &ws, &teacher) };
        for (w, dw) in ws.iter_mut().zip(&deltas) {
            w.axpy(cfg.lr, dw);
            // A step past f64's range shows as a column norm that overflows.
            if !w.unit_cols() {
                diverged_at = Some(it);
            }
        }
        if let Some(at) = diverged_at {
            log.write(&serde_json::json!({ "kind": "diverged", "iteration": at }))?;
            break;
        }
        if it % cfg.log_every == 0 || it == cfg.iterations {
            last = measure(&eval_x, &ws, &teacher, it, start.elapsed().as_secs_f64());
            log.write(&last)?;
        }
    }
    let splits = (1..ws.len())
        .map(|l| {
            let norms = &last.row_norms[l];
            let (nodes, bias) = norms.split_at(norms.len() - 1);
            let matched = &last.matches[l - 1];
            let (mut aligned, mut others) = (Vec::new(), Vec::new());
            for (i, &n) in nodes.iter().enumerate() {
                if matched.contains(&i) {
                    aligned.push(n)
                } else {
                    others.push(n)
                }
            }
            RowNormSplit { layer: l, aligned, others, bias: bias[0] }
        })
        .collect();
    Ok(MatrixOutcome {
        iterations: diverged_at.map_or(cfg.iterations, |at| at - 1),
        diverged_at,
        eval_loss: last.eval_loss,
        corr_mean: last.corr_mean,
        row_norms: last.row_norms,
        splits,
        seconds: start.elapsed().as_secs_f64(),
    })
}
