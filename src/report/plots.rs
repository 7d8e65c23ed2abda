//! Drawing a figure (a titled grid of panels, each a log-y chart of labelled
//! series) to PNG and SVG with plotters. What each figure shows is decided
//! in `figures.rs`; this file only knows about axes, lines, bars and keys.

use super::{font, Format};
use crate::error::{Error, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;
use std::path::{Path, PathBuf};

pub struct Figure {
    /// File name without extension.
    pub stem: &'static str,
    pub title: String,
    pub columns: usize,
    /// One entry per series, shared by all panels: the figure's one key.
    pub legend: Vec<String>,
    pub panels: Vec<Panel>,
}

pub struct Panel {
    pub title: String,
    pub x: XAxis,
    pub y_desc: String,
    /// `series[i]` is the points of `legend[i]`. The y axis is logarithmic,
    /// so a y that is not finite and positive (an infinite κ) is a gap.
    pub series: Vec<Vec<(f64, f64)>>,
}

pub enum XAxis {
    /// 1-based layer index: integer ticks.
    Layer,
    /// 1-based epoch: integer ticks.
    Epoch,
    /// Training iteration: logarithmic when no point sits at iteration 0.
    Iteration,
    /// Named groups at x = 0, 1, ...; series are drawn as grouped bars.
    Categories(Vec<String>),
}

const PANEL_SIZE: (u32, u32) = (620, 440);
const TITLE_HEIGHT: u32 = 40;
const KEY_ROW: i32 = 22;
const FONT: &str = "sans-serif";
/// Distinct, colour-blind-friendly hues; series take them in order.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(series: usize) -> RGBColor {
    COLORS[series % COLORS.len()]
}

fn plottable(y: f64) -> bool {
    y.is_finite() && y > 0.0
}

impl Panel {
    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series.iter().flatten().copied().filter(|&(x, y)| x.is_finite() && plottable(y))
    }

    fn has_data(&self) -> bool {
        self.points().next().is_some()
    }

    fn bars(&self) -> bool {
        matches!(self.x, XAxis::Categories(_))
    }
}

impl Figure {
    pub fn has_data(&self) -> bool {
        self.panels.iter().any(Panel::has_data)
    }

    /// Writes `out/<stem>.<ext>` for each format; returns the files written.
    pub fn write(&self, out: &Path, formats: &[Format]) -> Result<Vec<PathBuf>> {
        font::register()?;
        let columns = self.columns.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(columns).max(1);
        // The key sits right of the panels, so it never hides data.
        let longest = self.legend.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
        let key_width = (56 + 8 * longest).clamp(140, 420);
        let key_height = TITLE_HEIGHT + 40 + KEY_ROW as u32 * self.legend.len() as u32;
        let size = (PANEL_SIZE.0 * columns as u32 + key_width, (PANEL_SIZE.1 * rows as u32 + TITLE_HEIGHT).max(key_height));
        let mut files = vec![];
        for format in formats {
            let path = out.join(format!("{}.{}", self.stem, format.extension()));
            let layout = (rows, columns, key_width);
            let drawn = match format {
                Format::Png => self.draw(BitMapBackend::new(&path, size).into_drawing_area(), layout).map_err(|e| e.to_string()),
                Format::Svg => self.draw(SVGBackend::new(&path, size).into_drawing_area(), layout).map_err(|e| e.to_string()),
            };
            drawn.map_err(|e| Error::data(&path, format!("cannot draw the plot: {e}")))?;
            files.push(path);
        }
        Ok(files)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>, (rows, columns, key_width): (usize, usize, u32)) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = root.titled(&self.title, (FONT, 24))?;
        let (grid, key) = body.split_horizontally(body.dim_in_pixel().0 - key_width);
        for (area, panel) in grid.split_evenly((rows, columns)).iter().zip(&self.panels) {
            panel.draw(area)?;
        }
        let bars = self.panels.first().is_some_and(Panel::bars);
        let text = TextStyle::from((FONT, 15)).pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center));
        for (i, label) in self.legend.iter().enumerate() {
            let (y, c) = (40 + KEY_ROW * i as i32, color(i));
            if bars {
                key.draw(&Rectangle::new([(8, y - 6), (26, y + 6)], c.filled()))?;
            } else {
                key.draw(&PathElement::new([(4, y), (30, y)], c.stroke_width(3)))?;
            }
            key.draw_text(label, &text, (38, y))?;
        }
        root.present()
    }
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl Panel {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let ys: Vec<f64> = self.points().map(|p| p.1).collect();
        let Some(y) = log_range(&ys) else {
            let area = area.titled(&self.title, (FONT, 18))?;
            let (w, h) = area.dim_in_pixel();
            let style = TextStyle::from((FONT, 16)).pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Center));
            return area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2));
        };
        // The x range covers gaps too, so e.g. a layer whose κ is infinite keeps its place.
        let xs = self.series.iter().flatten().map(|p| p.0).filter(|x| x.is_finite());
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
        match &self.x {
            // Asking for at most one label per unit over a range padded by ½
            // makes plotters' 1-2-5 tick steps land on whole numbers only.
            XAxis::Layer | XAxis::Epoch => {
                let labels = ((hi - lo) as usize).saturating_add(1).min(12);
                let desc = if matches!(self.x, XAxis::Layer) { "layer index" } else { "epoch" };
                self.chart(area, (lo - 0.5..hi + 0.5, labels), y, desc, &|v| format!("{v:.0}"))
            }
            // Few labels on a log axis: plotters then ticks decades only, not 2..9 between.
            XAxis::Iteration if lo > 0.0 => self.chart(area, ((lo / 1.3..hi * 1.3).log_scale(), 5), y, "iteration", &|v| tick(*v)),
            XAxis::Iteration => self.chart(area, (lo..hi + (hi - lo).max(1.0) * 0.03, 10), y, "iteration", &|v| tick(*v)),
            XAxis::Categories(names) => {
                let name = |v: &f64| names.get(v.round() as usize).cloned().unwrap_or_default();
                self.chart(area, (-0.5..names.len() as f64 - 0.5, names.len()), y, "", &name)
            }
        }
    }

    fn chart<DB, X>(
        &self,
        area: &DrawingArea<DB, Shift>,
        (x, x_labels): (X, usize),
        y: std::ops::Range<f64>,
        x_desc: &str,
        x_fmt: &dyn Fn(&f64) -> String,
    ) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let y_floor = y.start;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(if x_desc.is_empty() { 30 } else { 48 })
            .y_label_area_size(78)
            .build_cartesian_2d(x, y.log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(x_fmt)
            .x_labels(x_labels)
            .y_label_formatter(&|v| tick(*v))
            .y_labels(8)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let width = 0.8 / self.series.len().max(1) as f64;
        for (s, points) in self.series.iter().enumerate() {
            let c = color(s);
            if self.bars() {
                let rects = points.iter().filter(|p| plottable(p.1)).map(|&(i, v)| {
                    let left = i - 0.4 + s as f64 * width;
                    Rectangle::new([(left, y_floor), (left + width, v)], c.filled())
                });
                chart.draw_series(rects)?;
                continue;
            }
            for segment in points.split(|p| !plottable(p.1)).filter(|seg| !seg.is_empty()) {
                chart.draw_series(LineSeries::new(segment.iter().copied(), c.stroke_width(2)))?;
                // Markers show where the measurements are, until they would blot out the line.
                if segment.len() <= 60 {
                    chart.draw_series(segment.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
            }
        }
        Ok(())
    }
}

/// A log-axis range around the values, at least two decades wide since
/// plotters labels a log axis at powers of ten only, and inside
/// 1e±[`DECADES`]: plotters' tick search divides the axis' ends and never
/// ends when their ratio overflows, as a diverged run's 1e308 loss over a
/// first loss of 2 or a subnormal λmax made it. Values beyond are clipped at
/// the frame.
fn log_range(ys: &[f64]) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| (lo.min(y), hi.max(y)));
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = (lo.log10().clamp(-DECADES, DECADES), hi.log10().clamp(-DECADES, DECADES));
    let pad = ((2.0 - (hi - lo)) / 2.0).max(0.0);
    let (lo, hi) = (lo - pad, hi + pad);
    let (lo, hi) = ((lo - 0.08 * (hi - lo)).max(-DECADES), (hi + 0.08 * (hi - lo)).min(DECADES));
    Some(10f64.powf(lo)..10f64.powf(hi))
}

/// The log axis' reach, in decades either side of 1: the ratio of its ends
/// stays inside f64's range (1e300 at most).
const DECADES: f64 = 150.0;

/// Tick labels: plain numbers in a readable range, scientific outside it.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-3..1e5).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.2e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
    }
}
