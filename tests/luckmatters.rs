//! LuckMatters teacher–student experiments: the teacher's construction, the
//! correlation metric, the matrix version's closed-form step against finite
//! differences, the flags, and the two published effects on the CI settings.

use clap::Parser;
use kappa::backend::cpu::Cpu;
use kappa::cli::{MatrixArgs, ReconArgs};
use kappa::luckmatters::correlation::{best_match, layer_stats, pearson};
use kappa::luckmatters::dense::Mat;
use kappa::luckmatters::matrix::{self, MatrixConfig};
use kappa::luckmatters::recon::{self, ReconConfig, ReconLoss};
use kappa::luckmatters::student::Student;
use kappa::luckmatters::teacher::{separable_rows, Teacher, CHOICES};
use kappa::rng::Rng;
use std::collections::HashSet;
use std::path::PathBuf;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kappa-luckmatters-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn separable_rows_are_distinct_nonzero_and_from_the_choices() {
    let mut rng = Rng::new(5, 0);
    let rows = separable_rows(&mut rng, 25, 20).unwrap();
    assert!(rows.iter().all(|v| CHOICES.contains(v)));
    let distinct: HashSet<Vec<u64>> = rows.chunks(20).map(|r| r.iter().map(|v| v.to_bits()).collect()).collect();
    assert_eq!(distinct.len(), 25);
    assert!(rows.chunks(20).all(|r| r.iter().any(|&v| v != 0.0)));
    // Two columns allow exactly 5² − 1 = 24 non-zero rows: all of them, then no more.
    let all = separable_rows(&mut rng, 24, 2).unwrap();
    let distinct: HashSet<Vec<u64>> = all.chunks(2).map(|r| r.iter().map(|v| v.to_bits()).collect()).collect();
    assert_eq!(distinct.len(), 24);
    assert!(separable_rows(&mut rng, 25, 2).is_err());
}

#[test]
fn teacher_rows_are_unique_low_precision_and_unit_norm_with_bias() {
    let sizes = ReconConfig::default().teacher_sizes();
    assert_eq!(sizes, [20, 10, 15, 20, 25, 100]);
    let t = Teacher::new(124, &sizes).unwrap();
    assert_eq!(t.layers.len(), 5);
    assert_eq!(t.hidden_widths(), [10, 15, 20, 25]);
    for (l, layer) in t.layers.iter().enumerate() {
        assert_eq!((layer.inputs, layer.outputs), (sizes[l], sizes[l + 1]));
        let mut seen = HashSet::new();
        for (row, b) in layer.w.chunks(layer.inputs).zip(&layer.b) {
            let norm = (row.iter().map(|v| v * v).sum::<f64>() + b * b).sqrt();
            assert!(close(norm, 1.0, 1e-12), "layer {l}: row norm {norm}");
            // One common scale maps the row back onto {0, ±0.25, ±0.5}: relative
            // to its largest entry every entry is 0, ±½ or ±1.
            let top = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(top > 0.0);
            for v in row {
                let r = v / top;
                assert!([-1.0, -0.5, 0.0, 0.5, 1.0].iter().any(|c| close(r, *c, 1e-12)), "layer {l}: entry ratio {r}");
            }
            let shape: Vec<i64> = row.iter().map(|v| (v / top * 2.0).round() as i64).collect();
            assert!(seen.insert(shape), "layer {l}: two rows share a direction");
        }
        assert!(layer.b.iter().any(|&b| b > 0.0) && layer.b.iter().any(|&b| b < 0.0), "layer {l}: biases all of one sign");
    }
    assert_eq!(Teacher::new(124, &sizes).unwrap(), t);
    assert_ne!(Teacher::new(125, &sizes).unwrap(), t);
}

#[test]
fn pearson_matches_a_hand_computed_case() {
    // a = (1, 2, 3, 4) against: 2a, reversed a, (1, 3, 2, 5), a constant, 10·(1, 3, 2, 5) + 7.
    // For (1, 3, 2, 5): centred a = (−1.5, −.5, .5, 1.5), centred b = (−1.75, .25, −.75, 2.25),
    // Σab = 5.5, Σa² = 5, Σb² = 8.75, r = 5.5 / √43.75.
    let a = [1.0, 2.0, 3.0, 4.0];
    let cols = [[2.0, 4.0, 6.0, 8.0], [4.0, 3.0, 2.0, 1.0], [1.0, 3.0, 2.0, 5.0], [3.0; 4], [17.0, 37.0, 27.0, 57.0]];
    let b: Vec<f64> = (0..4).flat_map(|r| cols.iter().map(move |c| c[r])).collect();
    let c = pearson(&a, 1, &b, 5);
    let r = 5.5 / 43.75f64.sqrt();
    for (got, want) in c.iter().zip([1.0, -1.0, r, 0.0, r]) {
        assert!(close(*got, want, 1e-12), "{c:?}");
    }
    assert!(close(r, 0.831522, 1e-6));
    // Two teacher nodes (a and −a) against those five student nodes: a is matched
    // perfectly by column 0, −a by column 1.
    let t: Vec<f64> = a.iter().flat_map(|&v| [v, -v]).collect();
    let m = best_match(&pearson(&t, 2, &b, 5), 5);
    assert_eq!(m.iter().map(|x| x.1).collect::<Vec<_>>(), [0, 1]);
    let s = layer_stats(&t, 2, &b, 5);
    assert!(close(s.min, 1.0, 1e-12) && close(s.mean, 1.0, 1e-12) && close(s.max, 1.0, 1e-12));
    // Without the perfect matches, the best for a is r and for −a it is 0.
    let b2: Vec<f64> = (0..4).flat_map(|r| [cols[2][r], cols[3][r]]).collect();
    let s = layer_stats(&t, 2, &b2, 2);
    assert!(close(s.min, 0.0, 1e-12) && close(s.max, r, 1e-12) && close(s.mean, r / 2.0, 1e-12), "{s:?}");
}

/// ½·mean over samples of ‖output − teacher output‖² with a linear top layer,
/// the objective whose negative gradient the closed form is.
fn half_mse(x: &Mat, ws: &[Mat], ts: &[Mat]) -> f64 {
    let forward = |ws: &[Mat]| {
        let mut f = x.clone();
        for w in &ws[..ws.len() - 1] {
            let h = f.matmul(w);
            f = Mat::from_fn(h.rows, h.cols + 1, |r, c| if c < h.cols { h.at(r, c).max(0.0) } else { 1.0 });
        }
        f.matmul(&ws[ws.len() - 1])
    };
    let (o, o_t) = (forward(ws), forward(ts));
    o.data.iter().zip(&o_t.data).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / (2.0 * x.rows as f64)
}

fn numeric_grad(x: &Mat, ws: &[Mat], ts: &[Mat], layer: usize) -> Mat {
    let h = 1e-6;
    let w = &ws[layer];
    Mat::from_fn(w.rows, w.cols, |r, c| {
        let mut plus = ws.to_vec();
        plus[layer].data[r * w.cols + c] += h;
        let mut minus = ws.to_vec();
        minus[layer].data[r * w.cols + c] -= h;
        (half_mse(x, &plus, ts) - half_mse(x, &minus, ts)) / (2.0 * h)
    })
}

fn assert_descent_direction(delta: &Mat, grad: &Mat) {
    let scale = grad.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "degenerate case");
    for (d, g) in delta.data.iter().zip(&grad.data) {
        assert!(close(*d, -g, 1e-6 * scale.max(1.0)), "ΔW {d} vs −∂J/∂W {}", -g);
    }
}

#[test]
fn closed_form_step_is_the_negative_gradient_where_it_is_exact() {
    let cfg = MatrixConfig { sizes: vec![3, 4, 5], node_multi: 2, perturb: false, init_std: 1.0, seed: 9, ..MatrixConfig::default() };
    let ts = matrix::teacher_weights(cfg.seed, &cfg.sizes).unwrap();
    let mut ws = matrix::student_weights(&cfg, &ts).unwrap();
    assert_eq!((ws[0].rows, ws[0].cols, ws[1].rows, ws[1].cols), (4, 8, 9, 5));
    assert!(ts.iter().chain(&ws).all(|w| w.col_norms().iter().all(|n| close(*n, 1.0, 1e-12))));
    let mut rng = Rng::new(3, 1);
    let x = Mat::from_fn(16, 4, |_, c| if c < 3 { 2.0 * rng.normal() } else { 1.0 });
    // The top layer: exact on a whole batch.
    let step = matrix::closed_form_step(&x, &ws, &ts);
    assert_descent_direction(&step[1], &numeric_grad(&x, &ws, &ts, 1));
    // Lower layers: exact on one sample once the top layer's bias path (which
    // the closed form leaves out) is zero in both nets.
    let zero_bias_row = |w: &mut Mat| {
        let start = (w.rows - 1) * w.cols;
        w.data[start..].iter_mut().for_each(|v| *v = 0.0);
    };
    zero_bias_row(&mut ws[1]);
    let mut ts0 = ts.clone();
    zero_bias_row(&mut ts0[1]);
    for r in 0..3 {
        let one = Mat { rows: 1, cols: 4, data: x.row(r).to_vec() };
        let step = matrix::closed_form_step(&one, &ws, &ts0);
        assert_descent_direction(&step[0], &numeric_grad(&one, &ws, &ts0, 0));
    }
    // per_sample averages the one-sample steps.
    let two = Mat { rows: 2, cols: 4, data: x.data[..8].to_vec() };
    let avg = matrix::per_sample_step(&two, &ws, &ts0);
    let (a, b) = (
        matrix::closed_form_step(&Mat { rows: 1, cols: 4, data: x.row(0).to_vec() }, &ws, &ts0),
        matrix::closed_form_step(&Mat { rows: 1, cols: 4, data: x.row(1).to_vec() }, &ws, &ts0),
    );
    for l in 0..2 {
        for k in 0..avg[l].data.len() {
            assert!(close(avg[l].data[k], (a[l].data[k] + b[l].data[k]) / 2.0, 1e-12));
        }
    }
}

#[test]
fn student_starts_at_the_teacher_and_normalises_rows() {
    let be = Cpu::<f64>::new();
    let cfg = ReconConfig { node_multi: 2, ..ReconConfig::default() };
    let teacher = Teacher::new(1, &cfg.teacher_sizes()).unwrap();
    let mut s = Student::new(&be, &cfg.student_sizes(), false, 1).unwrap();
    s.start_at_teacher(&teacher, 0.0, 1).unwrap();
    for (l, t) in teacher.layers.iter().enumerate() {
        let d = s.layer(l).unwrap();
        for r in 0..d.outputs {
            for c in 0..d.inputs {
                let want = if r < t.outputs && c < t.inputs { t.w[r * t.inputs + c] } else { 0.0 };
                assert_eq!(d.w[r * d.inputs + c], want, "layer {l} ({r}, {c})");
            }
            assert_eq!(d.b[r], if r < t.outputs { t.b[r] } else { 0.0 });
        }
    }
    s.start_at_teacher(&teacher, 0.5, 1).unwrap();
    s.normalize_rows().unwrap();
    for l in 0..s.depth() {
        let d = s.layer(l).unwrap();
        for (row, b) in d.w.chunks(d.inputs).zip(&d.b) {
            assert!(close(row.iter().map(|v| v * v).sum::<f64>() + b * b, 1.0, 1e-12));
        }
    }
}

#[test]
fn a_student_started_at_the_teacher_matches_it_and_runs_are_deterministic() {
    let tiny = ReconConfig { train_samples: 640, eval_samples: 256, epochs: 2, node_multi: 2, ..ReconConfig::default() };
    let at_teacher = ReconConfig { perturb: Some(0.0), ..tiny.clone() };
    let dir = out_dir("at-teacher");
    let o = recon::run(&at_teacher, &dir).unwrap();
    let first = &records(&dir)[0];
    assert_eq!(first["epoch"], 0);
    assert!(first["eval_loss"].as_f64().unwrap() < 1e-9, "{first}");
    assert!(first["corr"][0]["mean"].as_f64().unwrap() > 0.99999, "{first}");
    assert_eq!(o.layers.len(), 4);

    let run = |cfg: &ReconConfig, name: &str| {
        let mut o = recon::run(cfg, &out_dir(name)).unwrap();
        o.seconds = 0.0;
        o
    };
    assert_eq!(run(&tiny, "det-a"), run(&tiny, "det-b"));
    assert_ne!(run(&tiny, "det-a2"), run(&ReconConfig { regenerate: true, ..tiny.clone() }, "det-regen"));
    let ce = run(&ReconConfig { loss: ReconLoss::Ce, bn: true, normalize: true, ..tiny.clone() }, "ce");
    assert!(!ce.diverged && ce.eval_loss.is_finite() && ce.epochs == 2);
    // A run never overwrites another's metrics.
    let err = recon::run(&tiny, &dir).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl"), "{err}");
}

/// A batch larger than the training samples is kept as given and said once, as `kappa train` says it.
#[test]
fn a_recon_batch_larger_than_its_samples_is_said() {
    let dir = out_dir("recon-wide-batch");
    let args = ["luckmatters", "recon", "--epochs", "1", "--train-samples", "10", "--batch-size", "64", "--out"];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("--batch-size 64: there are 10 training samples, so each step sees those 10"),
        "{stdout}"
    );
}

/// The published effect: the lowest layer's teacher nodes are all matched
/// (correlation ≈0.999) within a few epochs, and the second layer follows.
#[test]
fn recon_ci_recovers_the_lowest_layer() {
    let cfg = ReconConfig::ci();
    let dir = out_dir("recon-ci");
    let o = recon::run(&cfg, &dir).unwrap();
    println!("{}", o.summary());
    assert!(!o.diverged && o.epochs == cfg.epochs);
    let recs = records(&dir);
    assert_eq!(recs.len(), cfg.epochs + 1);
    let start = recs[0]["corr"][0]["mean"].as_f64().unwrap();
    // At random init the best match is a mediocre ~0.5; after training, above 0.99
    // (the original reports 0.999; the CI run measures ≈0.999 on seeds 1, 2, 124).
    assert!(start < 0.8, "epoch 0 already matched: {start}");
    assert!(o.layers[0].last.mean > 0.99 && o.layers[0].last.min > 0.98, "{}", o.summary());
    // The second layer lags but reaches the published ≈0.95 (0.961–0.970 on seeds 2 and 124).
    assert!(o.layers[1].last.mean > 0.94, "{}", o.summary());
    assert!(o.layers[0].last.mean > o.layers[1].last.mean);
    let saved: ReconConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved, cfg);
}

/// The over-parameterisation effect: started at the teacher with twice the
/// hidden nodes, the weights out of the unmatched student nodes decay while
/// the matched ones stay of order 1.
#[test]
fn matrix_ci_switches_off_unmatched_nodes() {
    let cfg = MatrixConfig::ci();
    let dir = out_dir("matrix-ci");
    let o = matrix::run(&cfg, &dir).unwrap();
    println!("{}", o.summary());
    assert!(o.corr_mean[0] > 0.999, "{}", o.summary());
    let split = &o.splits[0];
    assert_eq!((split.aligned.len(), split.others.len()), (20, 20));
    assert!(split.aligned.iter().all(|&n| n > 0.9), "{}", o.summary());
    let mut others = split.others.clone();
    others.sort_by(f64::total_cmp);
    // At init every row has norm ~1 (the extra nodes' outgoing weights start as
    // N(0, 0.1²) before the unit-column projection, ~0.2–0.6); after the CI run's
    // 40,000 iterations the median is 5e-4, the least 1e-4 (the published run:
    // 1e-4). A pair can linger longer (a cancelling duplicate; the published
    // output shows one too).
    assert!(others[0] < 5e-4 && others[10] < 2e-3 && others[15] < 2e-2, "{others:?}");
    assert!(split.bias < 1e-2);
    let recs = records(&dir);
    assert_eq!(recs.len(), cfg.iterations / cfg.log_every + 1);
    let first: Vec<f64> = recs[0]["W_row_norm"][1].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(first.len(), 41);
    assert!(first[20..40].iter().filter(|&&n| n > 0.1).count() >= 10, "{first:?}");
}

/// A step that leaves f64's range stops the run and is said, rather than
/// normalised into columns of zeros that look like a result.
#[test]
fn matrix_divergence_is_recorded_and_stops_the_run() {
    let cfg = MatrixConfig { iterations: 10, log_every: 5, lr: 1e300, ..MatrixConfig::ci() };
    let dir = out_dir("matrix-diverges");
    let o = matrix::run(&cfg, &dir).unwrap();
    assert_eq!((o.diverged_at, o.iterations), (Some(1), 0), "{}", o.summary());
    assert!(o.summary().contains("DIVERGED at iteration 1"), "{}", o.summary());
    assert!(o.row_norms.iter().flatten().all(|n| n.is_finite() && *n > 0.0), "the figures are those before it: {}", o.summary());
    let recs = records(&dir);
    assert_eq!((recs.len(), &recs[1]["kind"], &recs[1]["iteration"]), (2, &serde_json::json!("diverged"), &serde_json::json!(1)));

    // A student whose initial columns overflow f64 cannot start: named, nothing written.
    let cfg = MatrixConfig { perturb: false, init_std: 1e300, ..MatrixConfig::ci() };
    let dir = out_dir("matrix-init-overflows");
    let err = matrix::run(&cfg, &dir).unwrap_err().to_string();
    assert!(err.contains("--init-std") && err.contains("past f64's range"), "{err}");
    assert!(!dir.exists(), "{} was written", dir.display());
}

#[derive(Parser)]
struct ReconCli {
    #[command(flatten)]
    args: ReconArgs,
}

#[derive(Parser)]
struct MatrixCli {
    #[command(flatten)]
    args: MatrixArgs,
}

fn recon_flags(flags: &[&str]) -> kappa::Result<(ReconConfig, PathBuf)> {
    ReconCli::try_parse_from(std::iter::once("x").chain(flags.iter().copied())).expect("clap parse").args.into_config()
}

fn matrix_flags(flags: &[&str]) -> kappa::Result<(MatrixConfig, PathBuf)> {
    MatrixCli::try_parse_from(std::iter::once("x").chain(flags.iter().copied())).expect("clap parse").args.into_config()
}

#[test]
fn flags_build_configs_and_bad_values_name_their_flag() {
    let (c, out) = recon_flags(&[]).unwrap();
    assert_eq!((c, out), (ReconConfig::default(), PathBuf::from("runs/luckmatters-recon")));
    assert_eq!(recon_flags(&["--ci"]).unwrap().0, ReconConfig::ci());
    let (c, out) = recon_flags(&[
        "--node-multi",
        "3",
        "--bn",
        "--loss",
        "ce",
        "--perturb",
        "0.01",
        "--normalize",
        "--epochs",
        "2",
        "--lr",
        "0.1",
        "--batch-size",
        "32",
        "--train-samples",
        "1000",
        "--eval-samples",
        "300",
        "--regenerate",
        "--seed",
        "7",
        "--hidden",
        "4,5",
        "--out",
        "r",
    ])
    .unwrap();
    let want = ReconConfig {
        node_multi: 3,
        bn: true,
        loss: ReconLoss::Ce,
        perturb: Some(0.01),
        normalize: true,
        epochs: 2,
        lr: 0.1,
        batch_size: 32,
        train_samples: 1000,
        eval_samples: 300,
        regenerate: true,
        seed: 7,
        hidden: vec![4, 5],
        ..ReconConfig::default()
    };
    assert_eq!((c, out), (want, PathBuf::from("r")));
    for (flags, named) in [
        (&["--bn", "--batch-size", "1"][..], "one example leaves all zeros"),
        (&["--bn", "--batch-size", "64", "--train-samples", "129"], "129 samples in batches of 64 leave a last batch of one"),
        (&["--lr", "-1"][..], "--lr"),
        (&["--node-multi", "0"], "--node-multi"),
        (&["--eval-samples", "100"], "--eval-samples"),
        (&["--perturb", "-0.1"], "--perturb"),
        (&["--perturb", "NaN"], "--perturb"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--hidden", "3,0"], "--hidden"),
        (&["--data-std", "0"], "--data-std"),
        (&["--hidden", "30", "--input-dim", "2"], "--hidden"),
        (&["--hidden", "2", "--output-dim", "30"], "--output-dim"),
        // Sizes past usize or memory.
        (&["--node-multi", "18446744073709551615"], "student nodes overflow"),
        (&["--input-dim", "18446744073709551615"], "would not fit in"),
        (&["--node-multi", "100000000000"], "would not fit in"),
        (&["--train-samples", "1000000000000"], "--train-samples"),
        (&["--loss", "ce", "--output-dim", "1"], "--output-dim"),
    ] {
        let err = recon_flags(flags).unwrap_err().to_string();
        assert!(err.contains(named), "{flags:?}: {err}");
    }
    assert!(ReconCli::try_parse_from(["x", "--loss", "l1"]).is_err());

    assert_eq!(matrix_flags(&[]).unwrap().0, MatrixConfig::default());
    let (c, _) = matrix_flags(&["--ci", "--no-perturb", "--per-sample", "--init-std", "0.3", "--sizes", "5,6,7"]).unwrap();
    assert_eq!(c, MatrixConfig { perturb: false, per_sample: true, init_std: 0.3, sizes: vec![5, 6, 7], ..MatrixConfig::ci() });
    for (flags, named) in [
        (&["--no-perturb", "--init-std", "0"][..], "--init-std"),
        (&["--log-every", "0"], "--log-every"),
        (&["--sizes", "10"], "--sizes"),
        (&["--sizes", "1,1"], "at least one hidden layer (whose nodes the run matches)"),
        (&["--sizes", "1,30,2"], "30 nodes on 1 inputs cannot have distinct rows"),
        (&["--lr", "inf"], "--lr"),
        (&["--sizes", "18446744073709551615,3,3"], "would not fit in"),
        (&["--eval-samples", "1000000000000"], "--eval-samples"),
        (&["--eval-samples", "100000000"], "the widest layer's activations"),
        (&["--sizes", "3,3,3", "--node-multi", "18446744073709551615"], "student nodes overflow"),
    ] {
        let err = matrix_flags(flags).unwrap_err().to_string();
        assert!(err.contains(named), "{flags:?}: {err}");
    }
}
