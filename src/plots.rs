//! `train --plots DIR`: PNG pictures of a run, drawn with plotters: loss and accuracy per epoch
//! (training and validation), the test confusion matrix as a heatmap, a grid of the most
//! confidently misclassified test digits, and with augmentation a grid of training digits as
//! the first steps warped them. Text uses the bundled DejaVu Sans, so the pictures
//! look the same on every machine. Each picture is drawn in memory, encoded as PNG by the
//! `image` crate and written atomically.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::config::Augment;
use crate::cpu::augment::Transform;
use crate::data::{pixel_value, Split, IMAGE_PIXELS};
use crate::fsutil::write_atomic;
use crate::rng::seed32;
use crate::train::{EpochStats, Evaluation};

pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// Pixels per MNIST pixel in the mistakes grid.
const DIGIT_SCALE: u32 = 4;
const GRID_COLUMNS: usize = 4;
/// The augmentation picture: training digits (rows) and the steps that warp them (columns).
const AUGMENTED_DIGITS: usize = 6;
const AUGMENTED_STEPS: u32 = 5;

/// The files [`write_plots`] may write: the curves, the confusion matrix, the mistakes and the
/// augmentation.
pub const PLOT_FILES: [&str; 4] = [
    "curves.png",
    "confusion.png",
    "mistakes.png",
    "augmented.png",
];
const CURVES: &str = PLOT_FILES[0];
const CONFUSION: &str = PLOT_FILES[1];
const MISTAKES: &str = PLOT_FILES[2];
const AUGMENTED: &str = PLOT_FILES[3];

/// A run's augmentation, for its picture: the setting, the run's seed and its training images.
pub struct AugmentedRun<'a> {
    pub augment: Augment,
    pub seed: u64,
    pub train: &'a Split,
}

pub(crate) fn register_bundled_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled file is a valid font (the plots test draws with it).
        if register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            log::warn!("the bundled font did not load; plots will have no text");
        }
    });
}

/// Writes `curves.png`, `confusion.png`, (when there are mistakes) `mistakes.png` and (with
/// augmentation) `augmented.png` into `dir` and returns their paths.
pub fn write_plots(
    dir: &Path,
    history: &[EpochStats],
    test: &Evaluation,
    test_split: &Split,
    augmented: Option<AugmentedRun>,
    labels: &[usize],
) -> Result<Vec<PathBuf>> {
    // Classes are named by the data set's labels (`--classes 5,6,7,8,9`: 5 to 9, not 0 to 4).
    let label = |class: usize| labels.get(class).copied().unwrap_or(class);
    register_bundled_font();
    let mut written = Vec::new();
    let curves = dir.join(CURVES);
    draw_curves(&curves, history).with_context(|| format!("{}: cannot draw", curves.display()))?;
    written.push(curves);
    let confusion = dir.join(CONFUSION);
    draw_confusion(&confusion, &test.confusion.counts, &label)
        .with_context(|| format!("{}: cannot draw", confusion.display()))?;
    written.push(confusion);
    if !test.mistakes.is_empty() {
        let mistakes = dir.join(MISTAKES);
        draw_mistakes(&mistakes, test, test_split, &label)
            .with_context(|| format!("{}: cannot draw", mistakes.display()))?;
        written.push(mistakes);
    }
    if let Some(run) = augmented {
        let path = dir.join(AUGMENTED);
        draw_augmented(&path, &run, &label)
            .with_context(|| format!("{}: cannot draw", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

pub(crate) fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("{e:?}")
}

pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a `size` picture with `draw` and writes it to `path` as PNG, atomically.
pub(crate) fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    let mut pixels = vec![0u8; 3 * size.0 as usize * size.1 as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .ok_or_else(|| anyhow!("picture buffer has the wrong size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png)?;
    write_atomic(path, png.get_ref())
}

/// One series of a curve chart: its name, colour and (epoch, value) points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn draw_curves(path: &Path, history: &[EpochStats]) -> Result<()> {
    render_png(path, (1000, 420), |root| {
        let (left, right) = root.split_horizontally(500);
        draw_curve_charts(&left, &right, history)
    })
}

fn draw_curve_charts(left: &Area, right: &Area, history: &[EpochStats]) -> Result<()> {
    let points = |f: &dyn Fn(&EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|e| Some((e.epoch as f64, f(e)?)))
            .collect()
    };
    let loss = [
        ("train", BLUE, points(&|e| Some(e.train_loss))),
        ("validation", RED, points(&|e| e.val_loss)),
    ];
    let accuracy = [
        ("train", BLUE, points(&|e| Some(100.0 * e.train_accuracy))),
        (
            "validation",
            RED,
            points(&|e| e.val_accuracy.map(|a| 100.0 * a)),
        ),
    ];
    let epochs = history.len();
    draw_chart(left, "loss", &loss, epochs, (0.0, f64::INFINITY))?;
    draw_chart(right, "accuracy (%)", &accuracy, epochs, (0.0, 100.0))
}

/// A chart of `series` over `epochs` epochs, its values within `limits`.
fn draw_chart(
    area: &Area,
    title: &str,
    series: &[Series],
    epochs: usize,
    limits: (f64, f64),
) -> Result<()> {
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = value_range(values, limits);
    let (y_ticks, decimals) = nice_ticks(lo, hi, Y_TICKS);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            Ticked::new(0.5..epochs as f64 + 0.5, epoch_ticks(epochs)),
            Ticked::new(lo..hi, y_ticks),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick_label(*y, decimals))
        .label_style((FONT, 13))
        .draw()
        .map_err(plot_error)?;
    for (name, color, points) in series.iter().filter(|s| !s.2.is_empty()) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(plot_error)?;
        // A lone point (a one-epoch run) has no line: its value is written beside it.
        if let [point] = points.as_slice() {
            let text = tick_label(point.1, decimals + 2);
            let font = (FONT, 13).into_font().color(&color);
            chart
                .draw_series([EmptyElement::at(*point) + Text::new(text, (8, -16), font)])
                .map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// An axis over an f64 range with the ticks we chose (plotters' own choice puts epochs at
/// halves, and plotters' `with_key_points` cannot be labelled with a formatter).
pub(crate) struct Ticked {
    range: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    pub(crate) fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked {
            range: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.range.map(value, limit)
    }

    /// Our ticks for the labels and the bold mesh lines, and no light lines between them.
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.range()
    }
}

/// The most y-axis ticks of a curve chart.
const Y_TICKS: usize = 8;

/// The epochs labelled on an axis of `epochs` epochs: whole ones only, every one up to ten,
/// else every 2nd, 5th, 10th, 20th, ... so that at most ten are.
fn epoch_ticks(epochs: usize) -> Vec<f64> {
    let step = [1, 2, 5]
        .iter()
        .flat_map(|&m| (0..).map(move |p| m * 10usize.pow(p)).take(8))
        .filter(|step| epochs / step <= 10)
        .min()
        .unwrap_or(1);
    (step..=epochs).step_by(step).map(|e| e as f64).collect()
}

/// The y range of a chart of `values`: theirs, padded by a tenth of its span and by at least
/// 5 % of their magnitude (so that one value, or a flat curve, sits in a range of readable
/// ticks), kept within `limits` (what the values can be); (0, 1) when there are none.
pub(crate) fn value_range(values: impl Iterator<Item = f64>, limits: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let magnitude = lo.abs().max(hi.abs());
    let pad = (0.1 * (hi - lo)).max(0.05 * magnitude).max(1e-3);
    let (lo, hi) = ((lo - pad).max(limits.0), (hi + pad).min(limits.1));
    // A value at a limit (100 % accuracy) still gets a range to sit in.
    if hi - lo < pad {
        return ((hi - pad).max(limits.0), (lo + pad).min(limits.1));
    }
    (lo, hi)
}

/// At most `max` ticks in [lo, hi]: the multiples of a step of 1, 2 or 5 times a power of ten,
/// and the decimals that step needs (0.05: 2), so that every label is as short as it can be.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, usize) {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let mut power = 10f64.powf((span / max as f64).log10().floor());
    let step = loop {
        let fits = [1.0, 2.0, 5.0]
            .into_iter()
            .map(|m| m * power)
            .find(|&step| {
                let count = (hi / step).floor() - (lo / step).ceil() + 1.0;
                count <= max as f64
            });
        match fits {
            Some(step) => break step,
            None => power *= 10.0,
        }
    };
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, decimals)
}

/// `value` with `decimals` decimals, never as "-0".
pub(crate) fn tick_label(value: f64, decimals: usize) -> String {
    let label = format!("{value:.decimals$}");
    match label.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => label,
    }
}

/// Rows are true classes, columns predictions; each cell is shaded by its share of the row.
fn draw_confusion(path: &Path, counts: &[Vec<u64>], label: &dyn Fn(usize) -> usize) -> Result<()> {
    render_png(path, (560, 560), |root| draw_heatmap(root, counts, label))
}

fn draw_heatmap(root: &Area, counts: &[Vec<u64>], label: &dyn Fn(usize) -> usize) -> Result<()> {
    let n = counts.len();
    // Cell (col, row) spans col +- 0.5, so the ticks at whole numbers label the cells.
    let span = -0.5..n as f64 - 0.5;
    let mut chart = ChartBuilder::on(root)
        .caption("test confusion matrix", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(40)
        .build_cartesian_2d(span.clone(), span)
        .map_err(plot_error)?;
    let class = |v: f64| v.round() as usize;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&|x| label(class(*x)).to_string())
        // Row 0 at the top, as in the printed table.
        .y_label_formatter(&|y| label((n - 1).saturating_sub(class(*y))).to_string())
        .label_style((FONT, 13))
        .draw()
        .map_err(plot_error)?;
    for (row, cells) in counts.iter().enumerate() {
        let total = cells.iter().sum::<u64>().max(1) as f64;
        let y = (n - 1 - row) as f64;
        for (col, &count) in cells.iter().enumerate() {
            let (x, share) = (col as f64, count as f64 / total);
            let shade = (255.0 * (1.0 - share.sqrt())) as u8;
            chart
                .draw_series([Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    RGBColor(shade, shade, 255).filled(),
                )])
                .map_err(plot_error)?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            chart
                .draw_series([Text::new(
                    count.to_string(),
                    (x - 0.35, y + 0.15),
                    (FONT, 12).into_font().color(&ink),
                )])
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

/// One cell of a digit grid: its caption and 784 pixels, 0 (paper) to 1 (ink).
type DigitCell = (String, Vec<f32>);

/// The mistakes as a grid of enlarged digits, each captioned "true -> predicted (confidence)".
fn draw_mistakes(
    path: &Path,
    test: &Evaluation,
    split: &Split,
    label: &dyn Fn(usize) -> usize,
) -> Result<()> {
    let cells: Vec<DigitCell> = test
        .mistakes
        .iter()
        .map(|m| {
            let caption = format!(
                "{} -> {} ({:.0}%)",
                label(usize::from(m.label)),
                label(usize::from(m.predicted)),
                100.0 * m.confidence
            );
            (caption, pixels(split, m.index))
        })
        .collect();
    let title = "most confident test mistakes";
    draw_digit_grid(path, title, GRID_COLUMNS, &cells)
}

/// The first training digits (first column) and warps that training drew: digit `i` under the
/// maps of batch position `i` in steps 1, 2, ... of this run.
fn draw_augmented(path: &Path, run: &AugmentedRun, label: &dyn Fn(usize) -> usize) -> Result<()> {
    let columns = 1 + AUGMENTED_STEPS as usize;
    let mut cells: Vec<DigitCell> = Vec::new();
    for index in 0..AUGMENTED_DIGITS.min(run.train.len()) {
        let original = pixels(run.train, index);
        cells.push((
            format!("digit {}", label(usize::from(run.train.labels[index]))),
            original.clone(),
        ));
        for step in 1..=AUGMENTED_STEPS {
            let map = Transform::sample(&run.augment, (seed32(run.seed), step), index as u32);
            let mut warped = vec![0.0; IMAGE_PIXELS];
            map.warp(&original, &mut warped);
            cells.push((format!("step {step}"), warped));
        }
    }
    let title = "augmentation: training digits and their random warps";
    draw_digit_grid(path, title, columns, &cells)
}

fn pixels(split: &Split, index: usize) -> Vec<f32> {
    split.image(index).iter().map(|&p| pixel_value(p)).collect()
}

/// `cells` as a titled grid of enlarged digits, `columns` to a row, each with its caption.
fn draw_digit_grid(path: &Path, title: &str, columns: usize, cells: &[DigitCell]) -> Result<()> {
    let cell = (28 * DIGIT_SCALE + 16, 28 * DIGIT_SCALE + 30);
    let rows = cells.len().div_ceil(columns);
    let size = (cell.0 * columns as u32, cell.1 * rows as u32 + 30);
    render_png(path, size, |root| {
        let (heading, grid) = root.split_vertically(30);
        heading.titled(title, (FONT, 18)).map_err(plot_error)?;
        for (k, (caption, image)) in cells.iter().enumerate() {
            let x0 = (k % columns) as u32 * cell.0 + 8;
            let y0 = (k / columns) as u32 * cell.1 + 22;
            let at = (x0 as i32, y0 as i32 - 18);
            grid.draw(&Text::new(caption.as_str(), at, (FONT, 14).into_font()))
                .map_err(plot_error)?;
            draw_digit(&grid, (x0, y0), image)?;
        }
        Ok(())
    })
}

/// One digit, dark ink on white, each pixel a `DIGIT_SCALE` square from `origin`.
fn draw_digit(area: &Area, origin: (u32, u32), image: &[f32]) -> Result<()> {
    for (p, &value) in image.iter().enumerate() {
        let ink = 255 - (value.clamp(0.0, 1.0) * 255.0).round() as u8;
        let (px, py) = ((p % 28) as u32, (p / 28) as u32);
        let top_left = (
            (origin.0 + px * DIGIT_SCALE) as i32,
            (origin.1 + py * DIGIT_SCALE) as i32,
        );
        let bottom_right = (
            top_left.0 + DIGIT_SCALE as i32,
            top_left.1 + DIGIT_SCALE as i32,
        );
        area.draw(&Rectangle::new(
            [top_left, bottom_right],
            RGBColor(ink, ink, ink).filled(),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_axes_tick_at_whole_epochs_and_at_most_ten() {
        assert_eq!(epoch_ticks(1), [1.0]);
        assert_eq!(epoch_ticks(3), [1.0, 2.0, 3.0]);
        assert_eq!(epoch_ticks(10).len(), 10);
        assert_eq!(epoch_ticks(15), [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
        for epochs in 1..500 {
            let ticks = epoch_ticks(epochs);
            assert!(
                !ticks.is_empty() && ticks.len() <= 10,
                "{epochs}: {ticks:?}"
            );
            assert!(ticks
                .iter()
                .all(|t| t.fract() == 0.0 && *t <= epochs as f64));
        }
    }

    #[test]
    fn a_single_value_gets_a_padded_range_with_short_labels() {
        // One epoch: loss 2.1996, accuracy 29.67 %.
        for (value, limits) in [(2.1996, (0.0, f64::INFINITY)), (29.6667, (0.0, 100.0))] {
            let (lo, hi) = value_range([value].into_iter(), limits);
            assert!(lo < value && value < hi, "{value}: {lo}..{hi}");
            assert!(hi - lo > 0.05 * value, "{value}: {lo}..{hi} too narrow");
            let (ticks, decimals) = nice_ticks(lo, hi, Y_TICKS);
            assert!(ticks.len() >= 3 && ticks.len() <= Y_TICKS, "{ticks:?}");
            let labels: Vec<String> = ticks.iter().map(|&t| tick_label(t, decimals)).collect();
            assert!(labels.iter().all(|l| l.len() <= 5), "{labels:?}");
            // Distinct labels: the decimals suffice for the step.
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(unique, labels);
        }
        assert_eq!(value_range([100.0].into_iter(), (0.0, 100.0)).1, 100.0);
        assert_eq!(value_range([0.5, 0.5].into_iter(), (0.0, 1.0)).0, 0.475);
        assert_eq!(value_range(std::iter::empty(), (0.0, 100.0)), (0.0, 1.0));
    }

    #[test]
    fn ticks_are_round_numbers_with_the_decimals_their_step_needs() {
        let (ticks, decimals) = nice_ticks(17.4, 71.6, 8);
        assert_eq!(
            (ticks, decimals),
            (vec![20.0, 30.0, 40.0, 50.0, 60.0, 70.0], 0)
        );
        let (ticks, decimals) = nice_ticks(2.09, 2.31, 8);
        let labels: Vec<String> = ticks.iter().map(|&t| tick_label(t, decimals)).collect();
        assert_eq!(labels, ["2.10", "2.15", "2.20", "2.25", "2.30"]);
        assert_eq!(nice_ticks(-0.3, 0.3, 8).1, 1);
        assert_eq!(tick_label(-0.0001, 2), "0.00");
        assert_eq!(tick_label(-0.5, 1), "-0.5");
    }
}
