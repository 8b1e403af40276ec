//! The PNG figures of explanations: one explanation (the digit, and its attribution over it in a
//! diverging colour map: blue for negative, white for zero, red for positive, symmetric about
//! zero so the colour of zero never moves, with a colour bar and a title), and a grid of images
//! by methods. Drawn like the training plots ([`crate::plots`]): plotters, the bundled font,
//! written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::plots::{plot_error, register_bundled_font, render_png, Area, FONT};

/// Screen pixels per input pixel.
const SCALE: u32 = 9;
/// The ends and the middle of the colour map (close to matplotlib's `coolwarm` ends).
const NEGATIVE: (f64, f64, f64) = (59.0, 76.0, 192.0);
const POSITIVE: (f64, f64, f64) = (180.0, 4.0, 38.0);
/// How much of the digit shows through the heatmap.
const DIGIT_SHOW: f64 = 0.35;

/// The colour of `v` in [-1, 1].
fn diverging(v: f64) -> (f64, f64, f64) {
    let v = v.clamp(-1.0, 1.0);
    let end = if v < 0.0 { NEGATIVE } else { POSITIVE };
    let a = v.abs();
    let mix = |e: f64| 255.0 + a * (e - 255.0);
    (mix(end.0), mix(end.1), mix(end.2))
}

fn rgb((r, g, b): (f64, f64, f64)) -> RGBColor {
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    RGBColor(c(r), c(g), c(b))
}

/// Draws `image` (values in [0, 1], `side` wide, dark ink on white) and `attribution` over it to
/// `path`, titled `title`.
pub fn draw_explanation(
    path: &Path,
    image: &[f32],
    attribution: &[f32],
    side: usize,
    title: &str,
) -> Result<()> {
    register_bundled_font();
    let panel = side as u32 * SCALE;
    let size = (2 * panel + 150, panel + 70);
    render_png(path, size, |root| {
        let (heading, body) = root.split_vertically(44);
        heading.titled(title, (FONT, 16)).map_err(plot_error)?;
        draw_panels(&body, image, attribution, side)
    })
    .with_context(|| format!("{}: cannot draw", path.display()))
}

fn draw_panels(area: &Area, image: &[f32], attribution: &[f32], side: usize) -> Result<()> {
    let panel = (side as u32 * SCALE) as i32;
    draw_map(area, (10, 10), SCALE, image, None, side)?;
    let range = symmetric_range(attribution);
    draw_map(
        area,
        (panel + 30, 10),
        SCALE,
        image,
        Some((attribution, range)),
        side,
    )?;
    draw_colour_bar(area, (2 * panel + 50, 10), panel, range)
}

/// The largest |value|: the colour map is symmetric about zero. An all-zero map gets a unit
/// range rather than a division by zero.
fn symmetric_range(attribution: &[f32]) -> f64 {
    let largest = attribution
        .iter()
        .fold(0.0f64, |m, &a| m.max((a as f64).abs()));
    if largest > 0.0 {
        largest
    } else {
        1.0
    }
}

/// The digit (dark ink on white), or with `heat` its attribution over it, `scale` screen pixels
/// per input pixel, from `origin`.
fn draw_map(
    area: &Area,
    origin: (i32, i32),
    scale: u32,
    image: &[f32],
    heat: Option<(&[f32], f64)>,
    side: usize,
) -> Result<()> {
    for (p, &v) in image.iter().enumerate() {
        let ink = 255.0 * (1.0 - v.clamp(0.0, 1.0) as f64);
        let colour = match heat {
            None => (ink, ink, ink),
            Some((attribution, range)) => {
                let (r, g, b) = diverging(attribution[p] as f64 / range);
                let blend = |c: f64| (1.0 - DIGIT_SHOW) * c + DIGIT_SHOW * ink;
                (blend(r), blend(g), blend(b))
            }
        };
        let (x, y) = ((p % side) as i32, (p / side) as i32);
        let s = scale as i32;
        let top_left = (origin.0 + x * s, origin.1 + y * s);
        let square = [top_left, (top_left.0 + s, top_left.1 + s)];
        area.draw(&Rectangle::new(square, rgb(colour).filled()))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// One row of the grid: the row's caption, its digit, and one map per column.
pub struct GridRow<'a> {
    pub caption: String,
    pub image: &'a [f32],
    pub maps: Vec<&'a [f32]>,
}

/// Screen pixels per input pixel in the grid.
const GRID_SCALE: u32 = 4;

/// A grid of one row per image and one column per method (`columns` names them), the digit
/// first; each map scaled to its own largest |value|, as the maps of different methods differ in
/// units.
pub fn draw_grid(path: &Path, columns: &[&str], rows: &[GridRow], side: usize) -> Result<()> {
    register_bundled_font();
    let panel = side as u32 * GRID_SCALE;
    let cell = (panel + 24, panel + 30);
    let size = (
        cell.0 * (columns.len() as u32 + 1) + 10,
        cell.1 * rows.len() as u32 + 70,
    );
    render_png(path, size, |root| {
        let (heading, body) = root.split_vertically(44);
        let title = "explanations (blue negative, red positive; each map scaled to its own largest |value|)";
        heading.titled(title, (FONT, 15)).map_err(plot_error)?;
        let font = || (FONT, 13).into_font();
        for (c, name) in std::iter::once(&"digit").chain(columns).enumerate() {
            let at = (10 + c as i32 * cell.0 as i32, 4);
            body.draw(&Text::new(name.to_string(), at, font()))
                .map_err(plot_error)?;
        }
        for (r, row) in rows.iter().enumerate() {
            let y = 22 + r as i32 * cell.1 as i32;
            draw_map(&body, (10, y), GRID_SCALE, row.image, None, side)?;
            let caption = Text::new(row.caption.clone(), (10, y + panel as i32 + 4), font());
            body.draw(&caption).map_err(plot_error)?;
            for (c, map) in row.maps.iter().enumerate() {
                let x = 10 + (c as i32 + 1) * cell.0 as i32;
                let heat = Some((*map, symmetric_range(map)));
                draw_map(&body, (x, y), GRID_SCALE, row.image, heat, side)?;
            }
        }
        Ok(())
    })
    .with_context(|| format!("{}: cannot draw", path.display()))
}

/// A vertical bar from `-range` (bottom) to `+range` (top), labelled at both ends and zero.
fn draw_colour_bar(area: &Area, (x, y): (i32, i32), height: i32, range: f64) -> Result<()> {
    for row in 0..height {
        let v = 1.0 - 2.0 * (row as f64 + 0.5) / height as f64;
        area.draw(&Rectangle::new(
            [(x, y + row), (x + 18, y + row + 1)],
            rgb(diverging(v)).filled(),
        ))
        .map_err(plot_error)?;
    }
    let label = |v: f64| {
        let a = v.abs();
        if a == 0.0 {
            "0".to_string()
        } else if !(0.01..1000.0).contains(&a) {
            format!("{v:.1e}")
        } else {
            format!("{v:.3}")
        }
    };
    for (v, at) in [(range, y), (0.0, y + height / 2), (-range, y + height)] {
        let text = Text::new(label(v), (x + 24, at - 7), (FONT, 13).into_font());
        area.draw(&text).map_err(plot_error)?;
    }
    Ok(())
}

/// One line of the faithfulness chart: its name and mean deletion and insertion curves.
pub struct CurveSeries<'a> {
    pub name: &'a str,
    pub deletion: &'a [f64],
    pub insertion: &'a [f64],
}

/// Line colours for the methods in turn; the random order is drawn in grey, dashed.
const SERIES_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Two charts side by side, deletion and insertion: the mean target probability against the
/// fraction of pixels removed (or inserted), one line per method and the random order's.
pub fn draw_faithfulness(
    path: &Path,
    methods: &[CurveSeries],
    random: &CurveSeries,
    images: usize,
) -> Result<()> {
    register_bundled_font();
    render_png(path, (1000, 440), |root| {
        let (left, right) = root.split_horizontally(500);
        let pick = |s: &CurveSeries, deletion: bool| match deletion {
            true => s.deletion.to_vec(),
            false => s.insertion.to_vec(),
        };
        for (area, deletion) in [(&left, true), (&right, false)] {
            let title = match deletion {
                true => format!("deletion (lower is better), {images} images"),
                false => format!("insertion (higher is better), {images} images"),
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 17))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
                .map_err(plot_error)?;
            let x_desc = match deletion {
                true => "fraction of pixels deleted",
                false => "fraction of pixels inserted",
            };
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("target probability")
                .label_style((FONT, 13))
                .draw()
                .map_err(plot_error)?;
            let xy = |curve: Vec<f64>| -> Vec<(f64, f64)> {
                let last = (curve.len().max(2) - 1) as f64;
                curve
                    .into_iter()
                    .enumerate()
                    .map(|(k, v)| (k as f64 / last, v))
                    .collect()
            };
            for (k, series) in methods.iter().enumerate() {
                let colour = SERIES_COLOURS[k % SERIES_COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(
                        xy(pick(series, deletion)),
                        colour.stroke_width(2),
                    ))
                    .map_err(plot_error)?
                    .label(series.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            }
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    xy(pick(random, deletion)),
                    6,
                    4,
                    grey.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(random.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey));
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .position(match deletion {
                    true => SeriesLabelPosition::UpperRight,
                    false => SeriesLabelPosition::LowerRight,
                })
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        Ok(())
    })
    .with_context(|| format!("{}: cannot draw", path.display()))
}
