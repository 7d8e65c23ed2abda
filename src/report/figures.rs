//! Which numbers each figure of the report shows, following the paper's
//! figures; every run (and analysis mode) is one labelled series.

use super::plots::{Figure, Panel, XAxis};
use super::read::Run;
use crate::analysis::exact::ExactRecord;
use crate::analysis::LayerRecord;
use crate::lenient::known;

/// A figure and what it needs, for the markdown when it has no data.
pub struct Plot {
    pub figure: Figure,
    pub needs: &'static str,
}

pub fn build(runs: &[Run], iterations: &[usize]) -> Vec<Plot> {
    vec![
        Plot { figure: layer_lambda(runs, iterations), needs: "analysis records" },
        Plot { figure: layer_kappa(runs, iterations), needs: "analysis records with κ_p values" },
        Plot { figure: train_loss(runs), needs: "train records with a positive finite loss (the axis is logarithmic)" },
        Plot { figure: last_layer(runs), needs: "analysis records of the last linear layer" },
        Plot { figure: exact_bars(runs), needs: "exact-curvature records" },
        Plot { figure: top1_error(runs), needs: "records of two epochs or more" },
    ]
}

/// The iterations `records` analysed, ascending, each once.
fn analysed(records: &[&LayerRecord]) -> Vec<usize> {
    let mut available: Vec<usize> = records.iter().map(|a| a.iteration).collect();
    available.sort_unstable();
    available.dedup();
    available
}

/// The analysed iteration nearest `wanted` (the earlier on a tie).
fn nearest(available: &[usize], wanted: usize) -> Option<usize> {
    available.iter().copied().min_by_key(|&a| a.abs_diff(wanted))
}

/// Each requested iteration that a run (and mode) did not analyse, with
/// the nearest one its series show instead, said in a line.
pub fn snapped(runs: &[Run], wanted: &[usize]) -> Vec<String> {
    let mut said = vec![];
    for run in runs {
        for (label, records) in run.analysis_by_mode() {
            let available = analysed(&records);
            for near in wanted.iter().filter_map(|&w| nearest(&available, w).filter(|&a| a != w).map(|a| (w, a))) {
                said.push(format!(
                    "--iterations {}: {label} has no analysis there; its series show the nearest, iteration {}",
                    near.0, near.1
                ));
            }
        }
    }
    said
}

/// The analysis iterations to show: the requested ones (each snapped to the
/// nearest analysed iteration), or the first, middle and last.
fn chosen_iterations(records: &[&LayerRecord], wanted: &[usize]) -> Vec<usize> {
    let available = analysed(records);
    let mut chosen: Vec<usize> = if available.is_empty() {
        vec![]
    } else if wanted.is_empty() {
        vec![available[0], available[available.len() / 2], available[available.len() - 1]]
    } else {
        wanted.iter().filter_map(|&w| nearest(&available, w)).collect()
    };
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// Labelled sets of analysis records; each set becomes one series.
type Sets<'a> = Vec<(String, Vec<&'a LayerRecord>)>;

/// For the per-layer figures: each run (and mode) at each chosen iteration,
/// its layers in order.
fn layer_sets<'a>(runs: &'a [Run], iterations: &[usize]) -> Sets<'a> {
    let mut sets = vec![];
    for run in runs {
        for (label, records) in run.analysis_by_mode() {
            for it in chosen_iterations(&records, iterations) {
                let mut layers: Vec<&LayerRecord> = records.iter().copied().filter(|a| a.iteration == it).collect();
                layers.sort_by_key(|a| a.index);
                sets.push((format!("{label} @ {it}"), layers));
            }
        }
    }
    sets
}

/// A panel of `value` against `x` for each set's records; `y_desc` doubles
/// as the title when that is empty.
fn panel(
    sets: &Sets,
    (title, y_desc): (&str, &str),
    axis: XAxis,
    x: fn(&LayerRecord) -> usize,
    value: impl Fn(&LayerRecord) -> Option<f64>,
) -> Panel {
    let series = sets.iter().map(|(_, records)| records.iter().map(|a| (x(a) as f64, value(a).unwrap_or(f64::NAN))).collect()).collect();
    let title = if title.is_empty() { y_desc } else { title };
    Panel { title: title.into(), x: axis, y_desc: y_desc.into(), series }
}

fn labels<T>(sets: &[(String, T)]) -> Vec<String> {
    sets.iter().map(|(label, _)| label.clone()).collect()
}

fn layer_lambda(runs: &[Run], iterations: &[usize]) -> Figure {
    let sets = layer_sets(runs, iterations);
    Figure {
        stem: "layer_lambda_max",
        title: "Magnitude of layer input and output-gradient, per layer (Fig. 3)".into(),
        columns: 2,
        legend: labels(&sets),
        panels: vec![
            panel(&sets, ("", "λmax(Σx)"), XAxis::Layer, |a| a.index, |a| known(a.sigma_x.lambda_max)),
            panel(&sets, ("", "λmax(Σ∇h)"), XAxis::Layer, |a| a.index, |a| known(a.sigma_grad.lambda_max)),
        ],
    }
}

fn layer_kappa(runs: &[Run], iterations: &[usize]) -> Figure {
    let sets = layer_sets(runs, iterations);
    let mut ps: Vec<(f64, &str)> = runs
        .iter()
        .flat_map(|r| &r.analysis)
        .flat_map(|a| a.sigma_x.kappa.keys().chain(a.sigma_grad.kappa.keys()))
        .filter_map(|p| p.parse::<f64>().ok().map(|v| (v, p.as_str())))
        .collect();
    ps.sort_by(|a, b| a.0.total_cmp(&b.0));
    ps.dedup_by(|a, b| a.1 == b.1);
    let mut panels = vec![];
    for (name, of_grad) in [("Σx", false), ("Σ∇h", true)] {
        for &(_, p) in &ps {
            // An infinite κ (JSON null) or a missing one is a gap on the log axis.
            let value = |a: &LayerRecord| (if of_grad { &a.sigma_grad } else { &a.sigma_x }).kappa.get(p).copied().flatten();
            let (title, y_desc) = (format!("κ_{p}({name}), p = {p}%"), format!("κ_{p}({name})"));
            panels.push(panel(&sets, (&title, &y_desc), XAxis::Layer, |a| a.index, value));
        }
    }
    Figure {
        stem: "layer_kappa",
        title: "Generalised condition number κ_p = λmax / λ_p, per layer (Fig. 5)".into(),
        columns: ps.len(),
        legend: labels(&sets),
        panels,
    }
}

fn train_loss(runs: &[Run]) -> Figure {
    let series = runs.iter().map(|run| run.train.iter().map(|t| (t.iteration as f64, t.loss.unwrap_or(f64::NAN))).collect()).collect();
    Figure {
        stem: "train_loss",
        title: "Training loss (Fig. 6a)".into(),
        columns: 1,
        legend: runs.iter().map(|r| r.name.clone()).collect(),
        panels: vec![Panel { title: "training loss".into(), x: XAxis::Iteration, y_desc: "loss".into(), series }],
    }
}

/// Fig. A14: top-1 error per epoch (1-based), for runs of two epochs or
/// more (one point is no curve). The training error is the mean of the
/// epoch's training records, each the error over the steps since the one
/// before: the running error the fb.resnet scripts print.
fn top1_error(runs: &[Run]) -> Figure {
    let curve = |points: Vec<(f64, f64)>| if points.len() >= 2 { points } else { vec![] };
    let train = runs
        .iter()
        .map(|run| {
            let mut epochs: Vec<(usize, f64, usize)> = vec![];
            for (epoch, error) in run.train.iter().filter_map(|t| Some((t.epoch?, 1.0 - t.accuracy?))) {
                match epochs.last_mut() {
                    Some((e, sum, n)) if *e == epoch => (*sum, *n) = (*sum + error, *n + 1),
                    _ => epochs.push((epoch, error, 1)),
                }
            }
            curve(epochs.into_iter().map(|(e, sum, n)| (e as f64 + 1.0, sum / n as f64)).collect())
        })
        .collect();
    let test = runs
        .iter()
        .map(|run| curve(run.eval.iter().filter_map(|e| Some((e.epoch? as f64 + 1.0, 1.0 - e.test_accuracy?))).collect()))
        .collect();
    Figure {
        stem: "top1_error",
        title: "Top-1 training and test error per epoch (Fig. A14)".into(),
        columns: 2,
        legend: runs.iter().map(|r| r.name.clone()).collect(),
        panels: vec![
            Panel { title: "top-1 training error".into(), x: XAxis::Epoch, y_desc: "error".into(), series: train },
            Panel { title: "top-1 test error".into(), x: XAxis::Epoch, y_desc: "error".into(), series: test },
        ],
    }
}

fn last_layer(runs: &[Run]) -> Figure {
    let mut sets: Sets = vec![];
    for run in runs {
        for (label, records) in run.analysis_by_mode() {
            let mut last: Vec<&LayerRecord> = records.into_iter().filter(|a| a.last).collect();
            last.sort_by_key(|a| a.iteration);
            sets.push((label, last));
        }
    }
    Figure {
        stem: "last_layer",
        title: "Last linear layer over training (Figs. 6, 7, 9)".into(),
        columns: 3,
        legend: labels(&sets),
        panels: vec![
            panel(&sets, ("", "λmax(Σx)"), XAxis::Iteration, |a| a.iteration, |a| known(a.sigma_x.lambda_max)),
            panel(&sets, ("", "λmax(Σ∂L/∂W)"), XAxis::Iteration, |a| a.iteration, |a| known(a.fim.lambda_max)),
            panel(&sets, ("", "‖W‖₂"), XAxis::Iteration, |a| a.iteration, |a| known(a.weight.as_ref()?.sigma_max)),
        ],
    }
}

/// A bar chart's quantity: its name and how to read it from a block's
/// (λmax, κ over the non-zero eigenvalues).
type Quantity = (&'static str, fn((f64, Option<f64>)) -> Option<f64>);

/// A block's (λmax, κ over the non-zero eigenvalues): of the exact matrix, or
/// of its Kronecker form (which the full matrix has not).
fn block_figures(e: &ExactRecord, exact: bool) -> Option<(f64, Option<f64>)> {
    match exact {
        true => Some((e.exact.lambda_max, e.exact.kappa_nonzero)),
        false => e.kronecker.as_ref().map(|k| (k.lambda_max, k.kappa_nonzero)),
    }
}

/// Fig. 2: per block, the exact curvature's λmax and κ against its Kronecker
/// approximation, at each run's first iteration with exact records (the
/// paper reports them at initialisation).
fn exact_bars(runs: &[Run]) -> Figure {
    let mut matrices: Vec<&str> = vec![];
    for e in runs.iter().flat_map(|r| &r.exact) {
        if !matrices.contains(&e.matrix.as_str()) {
            matrices.push(&e.matrix);
        }
    }
    // Each run's records at its first exact iteration, twice: exact, then Kronecker.
    let mut sets: Vec<(String, (Vec<&ExactRecord>, bool))> = vec![];
    for run in runs {
        let Some(first) = run.exact.iter().map(|e| e.iteration).min() else { continue };
        let records: Vec<&ExactRecord> = run.exact.iter().filter(|e| e.iteration == first).collect();
        sets.push((format!("{} exact @ {first}", run.name), (records.clone(), true)));
        sets.push((format!("{} Kronecker @ {first}", run.name), (records, false)));
    }
    let mut panels = vec![];
    for matrix in matrices {
        let mut blocks: Vec<&str> = vec![];
        for e in runs.iter().flat_map(|r| &r.exact).filter(|e| e.matrix == matrix) {
            if !blocks.contains(&e.block.as_str()) {
                blocks.push(&e.block);
            }
        }
        let name = match matrix {
            "fim" => "F (FIM)",
            "m" => "M (second moment)",
            other => other,
        };
        let quantities: [Quantity; 2] = [("λmax", |(l, _)| known(l)), ("κ (nonzero)", |(_, k)| k)];
        for (quantity, value) in quantities {
            let series = sets
                .iter()
                .map(|(_, (records, exact))| {
                    let of_matrix = records.iter().filter(|e| e.matrix == matrix);
                    of_matrix
                        .filter_map(|e| {
                            let block = blocks.iter().position(|b| *b == e.block)?;
                            Some((block as f64, block_figures(e, *exact).and_then(value).unwrap_or(f64::NAN)))
                        })
                        .collect()
                })
                .collect();
            let x = XAxis::Categories(blocks.iter().map(|b| b.to_string()).collect());
            panels.push(Panel { title: format!("{quantity} of {name}"), x, y_desc: quantity.into(), series });
        }
    }
    Figure {
        stem: "exact_vs_kronecker",
        title: "Exact curvature vs its Kronecker approximation, per block (Fig. 2)".into(),
        columns: 2,
        legend: labels(&sets),
        panels,
    }
}
