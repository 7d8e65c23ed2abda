//! Which numbers each figure of the report shows, following the paper's
//! figures; every run (and analysis mode) is one labelled series.

use super::plots::{Figure, Panel, Series, XAxis};
use super::read::{Analysis, Run, Spectrum};

/// A figure and what it needs, for the markdown when it has no data.
pub struct Plot {
    pub figure: Figure,
    pub needs: &'static str,
}

pub fn build(runs: &[Run], iterations: &[usize]) -> Vec<Plot> {
    vec![
        Plot { figure: layer_lambda(runs, iterations), needs: "analysis records" },
        Plot { figure: layer_kappa(runs, iterations), needs: "analysis records with κ_p values" },
        Plot { figure: train_loss(runs), needs: "train records with a finite loss" },
        Plot { figure: last_layer(runs), needs: "analysis records of the last linear layer" },
        Plot { figure: exact_bars(runs), needs: "exact-curvature records" },
    ]
}

/// The analysis iterations to show: the requested ones (each snapped to the
/// nearest analysed iteration), or the first, middle and last.
fn chosen_iterations(records: &[&Analysis], wanted: &[usize]) -> Vec<usize> {
    let mut available: Vec<usize> = records.iter().map(|a| a.iteration).collect();
    available.sort_unstable();
    available.dedup();
    let mut chosen: Vec<usize> = if available.is_empty() {
        vec![]
    } else if wanted.is_empty() {
        vec![available[0], available[available.len() / 2], available[available.len() - 1]]
    } else {
        wanted.iter().filter_map(|&w| available.iter().copied().min_by_key(|&a| a.abs_diff(w))).collect()
    };
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// One series per (run, mode, chosen iteration) of `value` against layer index.
fn per_layer(runs: &[Run], iterations: &[usize], value: impl Fn(&Analysis) -> Option<f64>) -> Vec<Series> {
    let mut series = vec![];
    for run in runs {
        for (label, records) in run.analysis_by_mode() {
            for it in chosen_iterations(&records, iterations) {
                let mut layer: Vec<&&Analysis> = records.iter().filter(|a| a.iteration == it).collect();
                layer.sort_by_key(|a| a.index);
                let points = layer.iter().map(|a| (a.index as f64, value(a).unwrap_or(f64::NAN))).collect();
                series.push(Series { label: format!("{label} @ {it}"), points });
            }
        }
    }
    series
}

fn layer_lambda(runs: &[Run], iterations: &[usize]) -> Figure {
    let panel = |title: &str, value: fn(&Analysis) -> Option<f64>| Panel {
        title: title.into(),
        x: XAxis::Layer,
        y_desc: title.into(),
        series: per_layer(runs, iterations, value),
    };
    Figure {
        stem: "layer_lambda_max",
        title: "Magnitude of layer input and output-gradient, per layer (Fig. 3)".into(),
        columns: 2,
        panels: vec![panel("λmax(Σx)", |a| a.sigma_x.lambda_max), panel("λmax(Σ∇h)", |a| a.sigma_grad.lambda_max)],
    }
}

/// A κ value on a log axis: an infinite κ (JSON null) or a missing one is a gap.
fn kappa(spectrum: &Spectrum, p: &str) -> Option<f64> {
    spectrum.kappa.get(p).copied().flatten()
}

fn layer_kappa(runs: &[Run], iterations: &[usize]) -> Figure {
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
            let value = |a: &Analysis| kappa(if of_grad { &a.sigma_grad } else { &a.sigma_x }, p);
            panels.push(Panel {
                title: format!("κ_{p}({name}), p = {p}%"),
                x: XAxis::Layer,
                y_desc: format!("κ_{p}({name})"),
                series: per_layer(runs, iterations, value),
            });
        }
    }
    Figure {
        stem: "layer_kappa",
        title: "Generalised condition number κ_p = λmax / λ_p, per layer (Fig. 5)".into(),
        columns: ps.len(),
        panels,
    }
}

fn train_loss(runs: &[Run]) -> Figure {
    let series = runs
        .iter()
        .map(|run| Series {
            label: run.name.clone(),
            points: run.train.iter().map(|t| (t.iteration as f64, t.loss.unwrap_or(f64::NAN))).collect(),
        })
        .collect();
    Figure {
        stem: "train_loss",
        title: "Training loss (Fig. 6a)".into(),
        columns: 1,
        panels: vec![Panel { title: "training loss".into(), x: XAxis::Iteration, y_desc: "loss".into(), series }],
    }
}

fn last_layer(runs: &[Run]) -> Figure {
    let panel = |title: &str, value: fn(&Analysis) -> Option<f64>| {
        let mut series = vec![];
        for run in runs {
            for (label, records) in run.analysis_by_mode() {
                let mut last: Vec<&&Analysis> = records.iter().filter(|a| a.last).collect();
                last.sort_by_key(|a| a.iteration);
                let points = last.iter().map(|a| (a.iteration as f64, value(a).unwrap_or(f64::NAN))).collect();
                series.push(Series { label, points });
            }
        }
        Panel { title: title.into(), x: XAxis::Iteration, y_desc: title.into(), series }
    };
    Figure {
        stem: "last_layer",
        title: "Last linear layer over training (Figs. 6, 7, 9)".into(),
        columns: 3,
        panels: vec![
            panel("λmax(Σx)", |a| a.sigma_x.lambda_max),
            panel("λmax(Σ∂L/∂W)", |a| a.fim.as_ref()?.lambda_max),
            panel("‖W‖₂", |a| a.weight.as_ref()?.sigma_max),
        ],
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
    let mut panels = vec![];
    for matrix in matrices {
        let mut blocks: Vec<String> = vec![];
        for e in runs.iter().flat_map(|r| &r.exact).filter(|e| e.matrix == matrix) {
            if !blocks.contains(&e.block) {
                blocks.push(e.block.clone());
            }
        }
        let name = match matrix {
            "fim" => "F (FIM)".to_string(),
            "m" => "M (second moment)".to_string(),
            other => other.to_string(),
        };
        for (quantity, value) in
            [("λmax", (|s: &Spectrum| s.lambda_max) as fn(&Spectrum) -> Option<f64>), ("κ (nonzero)", |s: &Spectrum| s.kappa_nonzero)]
        {
            let mut series = vec![];
            for run in runs {
                let records: Vec<_> = run.exact.iter().filter(|e| e.matrix == matrix).collect();
                let Some(first) = records.iter().map(|e| e.iteration).min() else { continue };
                for (kind, exact) in [("exact", true), ("Kronecker", false)] {
                    let points = records
                        .iter()
                        .filter(|e| e.iteration == first)
                        .filter_map(|e| {
                            let block = blocks.iter().position(|b| *b == e.block)?;
                            Some((block as f64, value(if exact { &e.exact } else { &e.kronecker }).unwrap_or(f64::NAN)))
                        })
                        .collect();
                    series.push(Series { label: format!("{} {kind} @ {first}", run.name), points });
                }
            }
            panels.push(Panel {
                title: format!("{quantity} of {name}"),
                x: XAxis::Categories(blocks.clone()),
                y_desc: quantity.into(),
                series,
            });
        }
    }
    Figure {
        stem: "exact_vs_kronecker",
        title: "Exact curvature vs its Kronecker approximation, per block (Fig. 2)".into(),
        columns: 2,
        panels,
    }
}
