//! The report renderer on fake run directories: every plot in both formats,
//! the markdown summary, and clear errors for directories that are not runs.
//! The fake runs are written with the trainer's own types (the metrics
//! records, the summary, the configuration), so they follow the schema.

use kappa::analysis::exact::ExactRecord;
use kappa::analysis::{Alert, Kronecker, LayerRecord, Mode, NeuronStats, Spectrum, WeightStats};
use kappa::record::{EvalRecord, Headline, Record, TrainRecord};
use kappa::report::{render, Format, ReportOptions};
use kappa::train::{Summary, TrainConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const STEMS: [&str; 6] = ["layer_lambda_max", "layer_kappa", "train_loss", "last_layer", "exact_vs_kronecker", "top1_error"];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kappa-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 16-d spectrum with κ_50 = 3, κ_80 = 9 and the given κ_100 (`None`: infinite).
fn spectrum(lambda_max: f64, kappa_100: Option<f64>) -> Spectrum {
    let kappa = [("50", Some(3.0)), ("80", Some(9.0)), ("100", kappa_100)].map(|(p, k)| (p.to_string(), k)).into();
    Spectrum { dim: 16, lambda_max, lambda_min: 1e-3, rank: 16, tolerance: 1e-4, samples: 0, kappa, kappa_nonzero: kappa_100 }
}

/// Analysis records for 3 layers at iterations 0 and 100. `decay` < 1 makes
/// λmax shrink with depth, as in a plain net under LeCun init.
fn analysis(iteration: usize, decay: f64) -> Vec<Record> {
    (1..=3)
        .map(|index| {
            let scale = decay.powi(index as i32) * if iteration == 0 { 1.0 } else { 2.0 };
            Record::Analysis(Box::new(LayerRecord {
                iteration,
                epoch: 0,
                mode: Mode::Empirical,
                layer: format!("layers.{}", index - 1),
                index,
                last: index == 3,
                sigma_x: spectrum(10.0 * scale, Some(1e3 * index as f64)),
                // κ_100 of Σ∇h in the first layer is infinite.
                sigma_grad: spectrum(1e-3 * scale, if index == 1 { None } else { Some(50.0) }),
                fim: Kronecker { lambda_max: 0.5 * scale, kappa_nonzero: Some(1e7), kappa_full: None },
                weight: Some(WeightStats { sigma_max: 3.0 + scale, grad_sigma_max: 0.002, ratio: 0.00065, frobenius: 20.1 }),
                neurons: (index != 3).then_some(NeuronStats { units: 16, dead_fraction: 0.25, full_fraction: 0.05 }),
            }))
        })
        .collect()
}

fn exact(scale: f64) -> Vec<Record> {
    let mut records = vec![];
    for matrix in ["fim", "m"] {
        for (i, block) in ["full", "layers.0", "layers.1", "layers.2"].iter().enumerate() {
            let s = scale * (i + 1) as f64;
            // Rank 10 of an unstated size, with no tolerance (NaN, as a log without one reads).
            let kappa = [("100".to_string(), Some(1e4))].into();
            let exact = Spectrum {
                dim: 0,
                lambda_max: s,
                lambda_min: 1e-6,
                rank: 10,
                tolerance: f64::NAN,
                samples: 0,
                kappa,
                kappa_nonzero: Some(1e4 * s),
            };
            let kronecker = Some(Kronecker { lambda_max: 0.8 * s, kappa_nonzero: Some(2e4 * s), kappa_full: None });
            records.push(Record::Exact(Box::new(ExactRecord {
                iteration: 0,
                matrix: matrix.into(),
                block: block.to_string(),
                exact,
                kronecker,
            })));
        }
    }
    records
}

/// `config.json` as `kappa train` writes it: the run's configuration and the model's description.
fn write_config(out: &Path, train: TrainConfig, model: &str) {
    std::fs::write(out.join("config.json"), json!({"train": train, "model": model}).to_string()).unwrap();
}

/// `summary.json` of a run that ended at `iterations` with test accuracy `test_accuracy`.
fn summary(out: &Path, model: &str, data: &str, iterations: usize, diverged_at: Option<usize>, headline: Headline) -> Summary {
    let (seconds, examples_per_second) = (4.6, 7829.0);
    let (model, data, out) = (model.to_string(), data.to_string(), out.to_path_buf());
    Summary {
        model,
        data,
        iterations,
        epochs: 1,
        diverged: diverged_at.is_some(),
        diverged_at,
        headline,
        seconds,
        examples_per_second,
        out,
    }
}

struct FakeRun {
    analysed: bool,
    finished: bool,
    malformed: bool,
    decay: f64,
}

/// Writes `dir/name` as `kappa train` would; returns the run directory.
fn write_run(dir: &Path, name: &str, run: FakeRun) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let model = format!("mlp 3×16 {name}");
    write_config(&out, TrainConfig { data: "synthetic".into(), depth: 3, out: out.clone(), ..Default::default() }, &model);
    let mut records: Vec<Record> = (1..=10)
        .map(|i| {
            Record::Train(TrainRecord {
                iteration: 10 * i,
                epoch: Some((i - 1) / 5),
                loss: Some(2.3 / i as f64),
                accuracy: Some(0.08 * i as f64),
                lr: Some(0.05),
                examples_per_second: Some(7595.5),
                diverged: false,
            })
        })
        .collect();
    if run.analysed {
        records.extend(analysis(0, run.decay));
        records.extend(analysis(100, run.decay));
        records.extend(exact(run.decay));
        let (layer, alert, detail) = ("layers.2".into(), "weight-domination".into(), format!("{name} ratio 6.5e-4"));
        records.push(Record::Alert(Alert { iteration: 100, layer, alert, detail }));
    }
    if run.finished {
        let eval = |iteration, epoch, test_loss, test_accuracy| {
            let (epoch, test_loss, test_accuracy) = (Some(epoch), Some(test_loss), Some(test_accuracy));
            Record::Eval(EvalRecord { iteration, epoch, test_loss, test_accuracy, ..Default::default() })
        };
        records.extend([eval(50, 0, 0.6, 0.7), eval(100, 1, 0.38, 0.85)]);
        let headline = Headline {
            train_loss: Some(0.23),
            train_accuracy: Some(0.8),
            test_loss: Some(0.38),
            test_accuracy: Some(0.85),
            ..Default::default()
        };
        summary(&out, &model, "synthetic", 100, None, headline).save().unwrap();
    }
    let mut lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    if run.malformed {
        // A line cut short, as a killed run leaves it: raw text, as no record serialises to it.
        lines.insert(3, r#"{"kind":"train","iteration":35,"loss":"#.into());
    }
    std::fs::write(out.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    out
}

/// Plain and BN runs with analysis (BN's metrics have one broken line) and an unfinished run.
fn three_runs(dir: &Path) -> Vec<PathBuf> {
    vec![
        write_run(dir, "plain", FakeRun { analysed: true, finished: true, malformed: false, decay: 0.1 }),
        write_run(dir, "bn", FakeRun { analysed: true, finished: true, malformed: true, decay: 1.0 }),
        write_run(dir, "partial", FakeRun { analysed: false, finished: false, malformed: false, decay: 1.0 }),
    ]
}

/// The texts of an SVG from plotters, which puts each on a line of its own.
fn texts(svg: &str) -> Vec<&str> {
    svg.lines().filter(|l| !l.trim_start().starts_with('<')).map(str::trim).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rows of the markdown table under `heading` (header and separator excluded).
fn table_rows<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let start = md.find(heading).unwrap_or_else(|| panic!("no {heading:?} in report.md:\n{md}"));
    md[start..].lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).skip(2).collect()
}

#[test]
fn every_plot_is_drawn_in_both_formats() {
    let dir = scratch("formats");
    let out = dir.join("report");
    let summary = render(&three_runs(&dir), &out, &ReportOptions::default()).unwrap();
    assert_eq!(summary.plots.len(), 2 * STEMS.len(), "{:?}", summary.plots);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    for stem in STEMS {
        let png = out.join(format!("{stem}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{stem}.png: {} bytes", bytes.len());
        let mut reader = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert!(info.width >= 600 && info.height >= 400, "{stem}.png is {}×{}", info.width, info.height);
        // Text and series were rasterised: a good share of pixels are not white.
        let inked = pixels.chunks(3).filter(|p| p.iter().any(|&c| c < 200)).count();
        assert!(inked > 2_000, "{stem}.png has only {inked} non-white pixels");

        let svg = read(&out.join(format!("{stem}.svg")));
        assert!(svg.starts_with("<svg"), "{stem}.svg is not SVG");
        for run in ["plain", "bn"] {
            assert!(texts(&svg).iter().any(|t| *t == run || t.starts_with(&format!("{run} "))), "{stem}.svg has no legend label for {run}");
        }
    }
}

#[test]
fn each_series_is_drawn_and_labelled() {
    let dir = scratch("series");
    let out = dir.join("report");
    render(&three_runs(&dir), &out, &ReportOptions::default()).unwrap();
    // Per-layer plots: two runs × the first/middle/last analysis iterations
    // (here 0 and 100), in each of the two panels; legends add one more each.
    let svg = read(&out.join("layer_lambda_max.svg"));
    for label in ["plain @ 0", "plain @ 100", "bn @ 0", "bn @ 100"] {
        assert!(texts(&svg).contains(&label), "no series {label:?} in layer_lambda_max.svg");
    }
    assert!(svg.matches("<polyline").count() >= 2 * 4, "too few lines in layer_lambda_max.svg");
    // The loss plot has the unfinished run too.
    let svg = read(&out.join("train_loss.svg"));
    assert!(texts(&svg).contains(&"partial") && svg.matches("<polyline").count() >= 3, "train_loss.svg lacks a run");
    // Bars: 2 runs × (exact, Kronecker) × 4 blocks in each of 4 panels.
    let svg = read(&out.join("exact_vs_kronecker.svg"));
    assert!(svg.matches("<rect").count() >= 4 * 4 * 4, "too few bars in exact_vs_kronecker.svg");
    for label in ["plain exact @ 0", "bn Kronecker @ 0", "layers.2", "full"] {
        assert!(texts(&svg).contains(&label), "no {label:?} in exact_vs_kronecker.svg");
    }
    // One κ panel per p for each of Σx and Σ∇h.
    let svg = read(&out.join("layer_kappa.svg"));
    for p in ["50", "80", "100"] {
        assert!(svg.contains(&format!("κ_{p}(Σx)")) && svg.contains(&format!("κ_{p}(Σ∇h)")), "no κ_{p} panels");
    }
}

#[test]
fn chosen_iterations_select_the_per_layer_series() {
    let dir = scratch("iterations");
    let out = dir.join("report");
    // 90 snaps to the nearest analysed iteration, 100.
    let opts = ReportOptions { iterations: vec![90], formats: vec![Format::Svg], ..Default::default() };
    let summary = render(&three_runs(&dir), &out, &opts).unwrap();
    assert!(summary.plots.iter().all(|p| p.extension().is_some_and(|e| e == "svg")), "{:?}", summary.plots);
    assert!(!out.join("train_loss.png").exists());
    let svg = read(&out.join("layer_lambda_max.svg"));
    assert!(texts(&svg).contains(&"plain @ 100") && !texts(&svg).contains(&"plain @ 0"), "iteration 90 should show only iteration 100");
    // And it is said, for each run that analysed (the partial run did not).
    let said = |run: &str| format!("--iterations 90: {run} has no analysis there; its series show the nearest, iteration 100");
    assert_eq!(summary.snapped, [said("plain"), said("bn")]);
    let exact = ReportOptions { iterations: vec![0, 100], ..opts };
    assert!(render(&three_runs(&dir.join("exact")), &dir.join("exact-report"), &exact).unwrap().snapped.is_empty());
}

#[test]
fn markdown_summarises_runs_layers_and_alerts() {
    let dir = scratch("markdown");
    let out = dir.join("report");
    let summary = render(&three_runs(&dir), &out, &ReportOptions::default()).unwrap();
    let md = read(&summary.markdown);

    let runs = table_rows(&md, "## Runs");
    assert_eq!(runs.len(), 3, "{md}");
    assert!(runs[0].starts_with("| plain | mlp 3×16 plain | synthetic | 100 | no | 0.2300 | 80.00% | 85.00% | 4.6 |"), "{}", runs[0]);
    assert!(runs[1].starts_with("| bn |"), "{}", runs[1]);
    // The unfinished run falls back to config.json and its last train record.
    assert!(runs[2].starts_with("| partial | mlp 3×16 partial | synthetic | 100 | not finished | 0.2300 |"), "{}", runs[2]);

    for run in ["plain", "bn"] {
        let layers = table_rows(&md, &format!("### {run}: iteration 100"));
        assert_eq!(layers.len(), 3, "{md}");
        assert!(layers[0].starts_with("| 1 | layers.0 |") && layers[0].contains("| ∞ |"), "{}", layers[0]);
        assert!(layers[2].ends_with("| 6.500e-4 | - |"), "{}", layers[2]);
    }
    assert!(md.contains("### partial\n\nNo analysis records."), "{md}");
    // The κ_p the run measured, smallest p first; under the table, what † and ∞ mean.
    assert!(md.contains("| λmax Σ∇h | κ_50 Σx | κ_80 Σx | κ_100 Σx | κ_50 Σ∇h | κ_80 Σ∇h | κ_100 Σ∇h |"), "{md}");
    // Plain's Σ∇h λmax is 2e-4 with tolerance 1e-4: κ_50 = 3 has its eigenvalue within 10 tolerances.
    let plain = table_rows(&md, "### plain: iteration 100");
    assert!(plain[0].contains("| 3.000† |"), "{}", plain[0]);
    assert!(md.contains("\n† at the precision's limit"), "{md}");
    assert!(md.contains("\nκ_100 = ∞ in 1 of 6 matrices: rank deficient"), "{md}");

    assert!(md.contains("- plain, iteration 100, layers.2: **weight-domination**: plain ratio 6.5e-4"), "{md}");
    assert!(md.contains("- bn, iteration 100, layers.2: **weight-domination**"), "{md}");
    for stem in STEMS {
        assert!(md.contains("![") && md.contains(&format!("({stem}.png)")) && md.contains(&format!("({stem}.svg)")), "no link to {stem}");
    }
    assert!(md.contains("skipped 1 malformed line (line 4:"), "{md}");
    assert_eq!(summary.malformed_lines, 1);
    assert_eq!(summary.warnings.len(), 1);
    assert!(summary.warnings[0].contains("bn") && summary.warnings[0].contains("metrics.jsonl"), "{:?}", summary.warnings);
}

#[test]
fn plots_without_data_are_skipped_and_said_so() {
    let dir = scratch("skipped");
    let out = dir.join("report");
    let run = write_run(&dir, "partial", FakeRun { analysed: false, finished: false, malformed: false, decay: 1.0 });
    let summary = render(&[run], &out, &ReportOptions::default()).unwrap();
    // The loss, and the training error over its two epochs (it has no test error yet).
    assert_eq!(summary.plots.len(), 4, "{:?}", summary.plots);
    assert!(out.join("train_loss.png").exists() && out.join("train_loss.svg").exists() && out.join("top1_error.svg").exists());
    assert!(!out.join("layer_lambda_max.png").exists());
    assert_eq!(summary.skipped.len(), 4, "{:?}", summary.skipped);
    let md = read(&summary.markdown);
    assert!(md.contains("Skipped: the runs have no analysis records."), "{md}");
    assert!(md.contains("Skipped: the runs have no exact-curvature records."), "{md}");
    assert!(md.contains("## Alerts\n\nNone."), "{md}");
}

/// A diverged run's 1e308 and a subnormal 5e-324, in the loss and in λmax,
/// are plotted within f64's range. They once sent plotters' log-axis tick
/// search into an endless loop, so the render runs on a thread with a deadline.
#[test]
fn values_at_the_edges_of_f64_are_plotted() {
    let dir = scratch("edges");
    let run = write_run(&dir, "edges", FakeRun { analysed: true, finished: true, malformed: false, decay: 1.0 });
    let metrics = run.join("metrics.jsonl");
    let (mut losses, mut spectra) = ([1e308, 5e-324, 1.7e308].into_iter(), [1.7e308, 5e-324].into_iter());
    let lines: Vec<String> = read(&metrics)
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            match v["kind"].as_str() {
                Some("train") => losses.next().into_iter().for_each(|x| v["loss"] = json!(x)),
                Some("analysis") => spectra.next().into_iter().for_each(|x| v["sigma_x"]["lambda_max"] = json!(x)),
                _ => {}
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
    let out = dir.join("report");
    let (done, wait) = std::sync::mpsc::channel();
    let job = (run.clone(), out.clone());
    std::thread::spawn(move || done.send(render(&[job.0], &job.1, &ReportOptions::default()).map(|s| s.plots.len())));
    let plots = wait.recv_timeout(std::time::Duration::from_secs(120)).expect("the report still drawing after 2 minutes").unwrap();
    assert_eq!(plots, 2 * STEMS.len());
    for stem in ["train_loss", "layer_lambda_max"] {
        assert!(read(&out.join(format!("{stem}.svg"))).contains("<polyline"), "{stem}.svg draws no line");
    }
}

#[test]
fn a_directory_without_metrics_is_an_error_naming_it() {
    let dir = scratch("missing");
    let empty = dir.join("not-a-run");
    std::fs::create_dir_all(&empty).unwrap();
    let good = write_run(&dir, "plain", FakeRun { analysed: true, finished: true, malformed: false, decay: 0.1 });
    let file = dir.join("a-file");
    std::fs::write(&file, "not a run").unwrap();
    for (bad, why) in [(empty, "has no metrics.jsonl"), (dir.join("absent"), "does not exist"), (file.clone(), "a file, not a directory")] {
        let err = render(&[good.clone(), bad.clone()], &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
        assert!(err.contains(&bad.display().to_string()) && err.contains("metrics.jsonl") && err.contains(why), "{err}");
    }
    // A luckmatters run's log shares the name but none of the kinds.
    let luckmatters = dir.join("luckmatters");
    std::fs::create_dir_all(&luckmatters).unwrap();
    std::fs::write(luckmatters.join("metrics.jsonl"), "{\"kind\":\"recon\",\"epoch\":0,\"eval_loss\":3.3,\"corr\":[]}\n").unwrap();
    let err = render(std::slice::from_ref(&luckmatters), &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
    let named = luckmatters.join("metrics.jsonl").display().to_string();
    assert!(err.starts_with(&named) && err.contains("`kappa luckmatters` records (\"recon\")"), "{err}");
    let odd = dir.join("odd-metrics");
    std::fs::create_dir_all(odd.join("metrics.jsonl")).unwrap();
    let err = render(std::slice::from_ref(&odd), &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("its metrics.jsonl is a directory, not a file"), "{err}");
    // One run given twice would count as two seeds.
    let err = render(&[good.clone(), good.join(".")], &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("the same run directory") && err.contains(&good.display().to_string()), "{err}");
    let err = render(std::slice::from_ref(&good), &file, &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains("a-file") && err.contains("is a file, not a directory"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a run");
    assert!(!dir.join("report").exists(), "nothing is written when a run cannot be read");
}

#[test]
fn a_malformed_summary_is_an_error_naming_it() {
    let dir = scratch("bad-summary");
    let run = write_run(&dir, "plain", FakeRun { analysed: false, finished: true, malformed: false, decay: 1.0 });
    std::fs::write(run.join("summary.json"), "[1, 2").unwrap();
    let err = render(std::slice::from_ref(&run), &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains(&run.join("summary.json").display().to_string()) && err.contains("run summary"), "{err}");
    std::fs::write(run.join("summary.json"), "{}").unwrap();
    let err = render(std::slice::from_ref(&run), &dir.join("report"), &ReportOptions::default()).unwrap_err().to_string();
    assert!(err.contains(&run.join("summary.json").display().to_string()) && err.contains("none of the run summary's fields"), "{err}");
}

/// A CIFAR run of `model` at `depth` and `seed`: finished with `error` (%),
/// diverged, or unfinished (`None`).
fn table_run(dir: &Path, name: &str, model: &str, depth: usize, seed: u64, error: Option<f64>, diverged: bool) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let (data, preset) = ("cifar10".to_string(), Some("lca-cifar".to_string()));
    let train = TrainConfig { data, model: model.into(), depth, seed, out: out.clone(), weight_decay: 1e-4, preset, ..Default::default() };
    write_config(&out, train, model);
    let first = Record::Train(TrainRecord { iteration: 1, epoch: Some(0), loss: Some(2.0), ..Default::default() });
    std::fs::write(out.join("metrics.jsonl"), serde_json::to_string(&first).unwrap() + "\n").unwrap();
    if error.is_some() || diverged {
        let headline = Headline { test_accuracy: error.map(|e| 1.0 - e / 100.0), ..Default::default() };
        summary(&out, model, "cifar10", 10, diverged.then_some(2), headline).save().unwrap();
    }
    out
}

#[test]
fn seeds_aggregate_into_mean_and_std_against_the_published_error() {
    let dir = scratch("seeds");
    let runs = vec![
        table_run(&dir, "lastbn-1", "resnet-lastbn", 56, 1, Some(6.0), false),
        table_run(&dir, "plain-1", "resnet", 56, 1, None, false),
        table_run(&dir, "lastbn-2", "resnet-lastbn", 56, 2, Some(7.0), false),
        table_run(&dir, "lastbn-3", "resnet-lastbn", 56, 3, None, false),
        table_run(&dir, "lastbn-4", "resnet-lastbn", 56, 4, None, true),
        table_run(&dir, "deep-1", "resnet-lastbn", 110, 1, Some(6.1), false),
    ];
    let out = dir.join("report");
    let summary = render(&runs, &out, &ReportOptions { formats: vec![Format::Svg], ..Default::default() }).unwrap();
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    // Seeds 1 and 2 finished at 6 and 7: mean 6.5, sample std √0.5; published 6.50.
    let row = md.lines().find(|l| l.starts_with("| resnet-lastbn-56 cifar10")).expect(&md);
    assert!(row.contains("2 of 4 finished, 1 diverged, 1 not finished") && row.contains("6.50 ± 0.71"), "{row}");
    assert!(row.contains("| 6.50 | +0.00 | Table 1 (CIFAR-10) |"), "{row}");
    let plain = md.lines().find(|l| l.starts_with("| resnet-56 cifar10")).expect(&md);
    assert!(plain.contains("| not finished | 7.52 | - |"), "{plain}");
    let deep = md.lines().find(|l| l.starts_with("| resnet-lastbn-110 cifar10")).expect(&md);
    assert!(deep.contains("6.10 ± 0.00 | 6.10 | +0.00"), "{deep}");

    assert_eq!(summary.tables, vec![out.join("test_error.csv")]);
    let csv = std::fs::read_to_string(out.join("test_error.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(lines[1], "\"resnet-lastbn-56 cifar10 (lca-cifar)\",4,2,1,1,6.5000,0.7071,6.5000,0.0000,\"Table 1 (CIFAR-10)\"");
    assert_eq!(lines[2], "\"resnet-56 cifar10 (lca-cifar)\",1,0,0,1,,,7.5200,,\"Table 1 (CIFAR-10)\"");
}

#[test]
fn runs_that_never_train_are_left_out_of_the_test_error_table() {
    let dir = scratch("untrained");
    // What `kappa analyze` (and the at-initialisation presets such as fig1) write: no step, no evaluation.
    let at_init = dir.join("at-init");
    let args =
        ["analyze", "--depth", "3", "--width", "16", "--limit-train", "256", "--batch-size", "32", "--out", at_init.to_str().unwrap()];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = table_run(&dir, "lastbn-1", "resnet-lastbn", 56, 1, Some(6.0), false);
    let svg = || ReportOptions { formats: vec![Format::Svg], ..Default::default() };

    let summary = render(&[at_init.clone(), trained], &dir.join("both"), &svg()).unwrap();
    let md = read(&summary.markdown);
    let rows = table_rows(&md, "## Test error over seeds");
    assert_eq!(rows.len(), 1, "{md}");
    assert!(rows[0].starts_with("| resnet-lastbn-56 cifar10 (lca-cifar) | 1 of 1 finished |"), "{}", rows[0]);
    assert!(!md.contains("not finished"), "{md}");

    // Alone, it makes no table and no CSV.
    let summary = render(&[at_init], &dir.join("alone"), &svg()).unwrap();
    let md = read(&summary.markdown);
    assert!(!md.contains("Test error over seeds") && summary.tables.is_empty(), "{md}");
    assert!(!dir.join("alone/test_error.csv").exists());
}

/// A run directory as `kappa train` wrote it before the record schema was
/// one type (keys in alphabetical order, a resumed leg, alerts, a diverged run).
fn todays_format(run: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/todays-run-format").join(run)
}

#[test]
fn runs_written_in_todays_format_load_and_every_field_reads_back() {
    use kappa::record::Record;
    use kappa::report::read::Run;
    for name in ["run", "diverged"] {
        let dir = todays_format(name);
        // Every line is a record the schema knows, and nothing in it is lost.
        for line in read(&dir.join("metrics.jsonl")).lines() {
            let record: Record = serde_json::from_str(line).unwrap();
            assert!(!matches!(record, Record::Other), "{line}");
            assert_eq!(serde_json::to_value(&record).unwrap(), serde_json::from_str::<Value>(line).unwrap(), "{line}");
        }
    }
    let run = Run::load(&todays_format("run")).unwrap();
    assert!(run.malformed.is_empty(), "{:?}", run.malformed);
    // Resumed at 5 and taken to 7: the first leg's records past 5 are superseded.
    assert_eq!(run.train.iter().map(|r| r.iteration).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(run.eval.iter().map(|r| r.iteration).collect::<Vec<_>>(), [4, 5, 7]);
    assert_eq!(run.analysis.iter().map(|r| r.iteration).collect::<Vec<_>>(), [0, 0, 0, 2, 2, 2, 4, 4, 4, 6, 6, 6]);
    assert!(run.analysis.iter().all(|a| a.sigma_x.lambda_max > 0.0 && a.fim.lambda_max > 0.0 && a.weight.is_some()));
    let alerts: Vec<(usize, &str)> = run.alerts.iter().map(|a| (a.iteration, a.alert.as_str())).collect();
    assert_eq!(alerts[..3], [(0, "weight-domination"); 3]);
    assert!(run.alerts.iter().all(|a| !a.layer.is_empty() && !a.detail.is_empty()), "{:?}", run.alerts);
    let summary = run.summary.as_ref().unwrap();
    assert_eq!((summary.iterations, summary.headline.test_accuracy), (Some(7), Some(0.0625)));
    let diverged = Run::load(&todays_format("diverged")).unwrap();
    assert_eq!((diverged.diverged_at, diverged.train.last().map(|t| (t.loss, t.diverged))), (Some(2), Some((None, true))));
}

#[test]
fn a_log_of_negative_losses_is_skipped_as_off_the_log_axis() {
    let dir = scratch("negative-loss");
    let run = write_run(&dir, "negative", FakeRun { analysed: false, finished: false, malformed: false, decay: 1.0 });
    let log = run.join("metrics.jsonl");
    let text = read(&log);
    assert!(text.contains("\"loss\":"), "{text}");
    std::fs::write(&log, text.replace("\"loss\":", "\"loss\":-")).unwrap();
    let out = dir.join("report");
    let summary = render(&[run], &out, &ReportOptions::default()).unwrap();
    assert!(!out.join("train_loss.svg").exists());
    let md = read(&summary.markdown);
    assert!(md.contains("Skipped: the runs have no train records with a positive finite loss (the axis is logarithmic)."), "{md}");
}
