//! `search.png`: each trial's score against the trial order (with the best so far), and
//! against a drawn setting (the learning rate where the space draws it, on a log axis when
//! its draws span more than a decade), coloured by another setting the space varies.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::{Metric, TrialResult, Value};
use crate::plots::{
    nice_ticks, plot_error, register_bundled_font, render_png, tick_label, value_range, Area,
    Ticked, FONT,
};

/// Colours of the values of the colouring setting, in order of first appearance.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// A trial as plotted: its number, its score (a percentage for accuracy) and settings.
struct Point<'a> {
    trial: usize,
    score: f64,
    result: &'a TrialResult,
}

/// Writes the picture of `results` (each trial at the highest rung it reached) to `path`.
pub fn write_search_plot(path: &Path, results: &[TrialResult], metric: Metric) -> Result<()> {
    register_bundled_font();
    let scale = match metric {
        Metric::ValAccuracy => 100.0,
        Metric::ValLoss => 1.0,
    };
    let points: Vec<Point> = results
        .iter()
        .filter(|r| {
            !results
                .iter()
                .any(|o| o.trial == r.trial && o.rung > r.rung)
        })
        .filter_map(|r| {
            let score = r.score(metric)? * scale;
            Some(Point {
                trial: r.trial,
                score,
                result: r,
            })
        })
        .collect();
    let label = match metric {
        Metric::ValAccuracy => "validation accuracy (%)",
        Metric::ValLoss => "validation loss",
    };
    render_png(path, (1000, 420), |root| {
        let (left, right) = root.split_horizontally(500);
        draw_by_trial(&left, &points, metric, label)?;
        draw_by_setting(&right, &points, label)
    })
}

fn score_axis(points: &[Point], label: &str) -> (f64, f64, Vec<f64>, usize) {
    let limits = match label.ends_with("(%)") {
        true => (0.0, 100.0),
        false => (0.0, f64::INFINITY),
    };
    let (lo, hi) = value_range(points.iter().map(|p| p.score), limits);
    let (ticks, decimals) = nice_ticks(lo, hi, 8);
    (lo, hi, ticks, decimals)
}

fn draw_by_trial(area: &Area, points: &[Point], metric: Metric, label: &str) -> Result<()> {
    let trials = points.iter().map(|p| p.trial).max().map_or(1, |t| t + 1);
    let (lo, hi, ticks, decimals) = score_axis(points, label);
    let (x_ticks, _) = nice_ticks(0.0, trials as f64 - 1.0, 10);
    let mut chart = ChartBuilder::on(area)
        .caption("by trial", (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            Ticked::new(-0.5..trials as f64 - 0.5, x_ticks),
            Ticked::new(lo..hi, ticks),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc(label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick_label(*y, decimals))
        .label_style((FONT, 13))
        .draw()
        .map_err(plot_error)?;
    let mut best: Vec<(f64, f64)> = Vec::new();
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| p.trial);
    for p in sorted {
        let score = match best.last() {
            Some(&(_, b)) if !better(metric, p.score, b) => b,
            _ => p.score,
        };
        best.push((p.trial as f64, score));
    }
    chart
        .draw_series(LineSeries::new(best, RED.stroke_width(2)))
        .map_err(plot_error)?
        .label("best so far")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.trial as f64, p.score), 4, PALETTE[0].filled())),
        )
        .map_err(plot_error)?;
    draw_labels(&mut chart)
}

fn better(metric: Metric, a: f64, b: f64) -> bool {
    metric.better(a, b)
}

/// The setting on the x axis: `lr` when drawn, else the first numeric setting that varies;
/// and the setting that colours the points: the first other one that varies.
fn axes<'a>(points: &[Point<'a>]) -> (Option<&'a str>, Option<&'a str>) {
    let varies = |key: &str| {
        let mut values = points.iter().filter_map(|p| p.result.params.get(key));
        let first = values.next();
        values.any(|v| Some(v) != first)
    };
    let keys: Vec<&'a str> = points.first().map_or(Vec::new(), |p| {
        p.result.params.keys().map(String::as_str).collect()
    });
    let numeric = |key: &str| {
        points
            .iter()
            .all(|p| p.result.params.get(key).and_then(Value::as_f64).is_some())
    };
    let x = keys
        .iter()
        .copied()
        .filter(|k| varies(k) && numeric(k))
        .min_by_key(|k| *k != "lr");
    let colour = keys.iter().copied().find(|k| varies(k) && Some(*k) != x);
    (x, colour)
}

fn draw_by_setting(area: &Area, points: &[Point], label: &str) -> Result<()> {
    let (Some(x_key), colour_key) = axes(points) else {
        // Nothing numeric varies (a grid of names, say): the left chart says it all.
        return Ok(());
    };
    let xs: Vec<f64> = points
        .iter()
        .map(|p| p.result.params[x_key].as_f64().unwrap_or(0.0))
        .collect();
    let (x_lo, x_hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let (lo, hi, ticks, decimals) = score_axis(points, label);
    let colours: Vec<String> = colour_key.map_or(Vec::new(), |key| {
        let mut seen: Vec<String> = Vec::new();
        for p in points {
            let v = p
                .result
                .params
                .get(key)
                .map_or(String::new(), ToString::to_string);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen
    });
    let colour_of = |p: &Point| -> RGBColor {
        let value = colour_key
            .and_then(|k| p.result.params.get(k))
            .map_or(String::new(), ToString::to_string);
        let at = colours.iter().position(|c| *c == value).unwrap_or(0);
        PALETTE[at % PALETTE.len()]
    };
    let caption = format!("by {x_key}");
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(&caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56);
    let draw_points = |points: &[Point], xs: &[f64]| -> Vec<Circle<(f64, f64), i32>> {
        points
            .iter()
            .zip(xs)
            .map(|(p, &x)| Circle::new((x, p.score), 4, colour_of(p).filled()))
            .collect()
    };
    // Where the values span more than a decade (learning rates), the axis is log10 of the
    // value, ticked at 1, 2 and 5 times each power of ten and labelled with the value.
    let log = x_lo > 0.0 && x_hi / x_lo > 10.0;
    let xs: Vec<f64> = match log {
        true => xs.iter().map(|x| x.log10()).collect(),
        false => xs,
    };
    let (x_lo, x_hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let pad = ((x_hi - x_lo) * 0.05).max(x_hi.abs() * 0.05).max(1e-9);
    let (x_lo, x_hi) = (x_lo - pad, x_hi + pad);
    let (x_ticks, x_decimals) = match log {
        true => (log_ticks(x_lo, x_hi), 0),
        false => nice_ticks(x_lo, x_hi, 8),
    };
    let mut chart = chart
        .build_cartesian_2d(Ticked::new(x_lo..x_hi, x_ticks), Ticked::new(lo..hi, ticks))
        .map_err(plot_error)?;
    let x_desc = match log {
        true => format!("{x_key} (log scale)"),
        false => x_key.to_string(),
    };
    let x_label = |x: &f64| match log {
        true => format!("{:.0e}", 10f64.powf(*x)),
        false => tick_label(*x, x_decimals),
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_label_formatter(&|y| tick_label(*y, decimals))
        .x_label_formatter(&x_label)
        .label_style((FONT, 13))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(draw_points(points, &xs))
        .map_err(plot_error)?;
    legend(&mut chart, colour_key, &colours)
}

/// log10 of 1, 2 and 5 times each power of ten in [10^lo, 10^hi]; only the powers where that
/// would be more than eight.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.floor() as i32..=hi.ceil() as i32;
    let all: Vec<f64> = decades
        .clone()
        .flat_map(|d| [1.0f64, 2.0, 5.0].map(|m| d as f64 + m.log10()))
        .filter(|t| (lo..=hi).contains(t))
        .collect();
    match all.len() > 8 {
        true => decades
            .map(f64::from)
            .filter(|t| (lo..=hi).contains(t))
            .collect(),
        false => all,
    }
}

/// The colouring setting's values as a legend (one invisible series each).
fn legend<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<Ticked, Ticked>>,
    key: Option<&str>,
    values: &[String],
) -> Result<()> {
    let Some(key) = key else {
        return Ok(());
    };
    for (i, value) in values.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(plot_error)?
            .label(format!("{key} {value}"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    draw_labels(chart)
}

/// The chart's series labels, in its lower right corner (where accuracy rarely is).
fn draw_labels<'a>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<Ticked, Ticked>>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}
