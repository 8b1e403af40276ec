//! `explain --evaluate N`: how faithful each method's maps are, by the deletion and insertion
//! curves of RISE ([`mnist_wgpu::explain::faithfulness`]) on the first N test digits against a
//! random pixel order, and how fast each method explains.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use mnist_wgpu::cpu::network::{logits, Workspace};
use mnist_wgpu::explain::faithfulness::{
    area, attribution_order, curves, mean_curve, random_order, Curves, DELETED, PIXELS_PER_STEP,
};
use mnist_wgpu::explain::figure::{draw_faithfulness, CurveSeries};
use mnist_wgpu::explain::{explain as run_method, Method, Settings};
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::model::{Params, Plan};
use mnist_wgpu::text::count;

/// The plot `--out` gets.
pub const FAITHFULNESS_FILE: &str = "faithfulness.png";

/// What `--evaluate` runs on and writes.
pub struct Evaluation<'a> {
    pub plan: &'a Plan,
    pub params: &'a Params<f32>,
    /// The first N test digits, `N x 784`.
    pub x: &'a [f32],
    pub methods: &'a [Method],
    pub settings: &'a Settings,
    /// Seeds the random order (one per image, shared by every method).
    pub seed: u64,
    pub out: Option<&'a Path>,
    pub json: Option<&'a Path>,
}

/// One row of the table, and of `--json`'s `methods`.
#[derive(Serialize)]
struct Row {
    method: &'static str,
    deletion_auc: f64,
    insertion_auc: f64,
    /// The share of images whose deletion area is below the random order's (insertion: above).
    deletion_beats_random: f64,
    insertion_beats_random: f64,
    explanations_per_second: f64,
    deletion_curve: Vec<f64>,
    insertion_curve: Vec<f64>,
}

#[derive(Serialize)]
struct RandomRow {
    deletion_auc: f64,
    insertion_auc: f64,
    deletion_curve: Vec<f64>,
    insertion_curve: Vec<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    images: usize,
    pixels_per_step: usize,
    deleted_value: f32,
    seed: u64,
    random: &'a RandomRow,
    methods: &'a [Row],
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

pub fn evaluate(e: Evaluation) -> Result<()> {
    let (plan, params) = (e.plan, e.params);
    let pixels = plan.input.len();
    let n = e.x.len() / pixels;
    let ws = Workspace::new(plan);
    let classes = plan.output().len();
    // Each image's map explains its predicted class, as RISE scores a classifier's answer.
    let targets: Vec<usize> = logits(plan, params, e.x, &ws)
        .chunks_exact(classes)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect();
    let images = || e.x.chunks_exact(pixels).zip(&targets).enumerate();
    let random: Vec<Curves> = images()
        .map(|(k, (image, &t))| {
            curves(
                plan,
                params,
                &ws,
                image,
                t,
                &random_order(pixels, e.seed, k),
            )
        })
        .collect();
    let random_areas: Vec<(f64, f64)> = random
        .iter()
        .map(|c| (area(&c.deletion), area(&c.insertion)))
        .collect();
    let random_row = RandomRow {
        deletion_auc: mean(random_areas.iter().map(|a| a.0)),
        insertion_auc: mean(random_areas.iter().map(|a| a.1)),
        deletion_curve: mean_curve(random.iter().map(|c| c.deletion.as_slice())),
        insertion_curve: mean_curve(random.iter().map(|c| c.insertion.as_slice())),
    };
    let mut rows = Vec::new();
    for &method in e.methods {
        let start = Instant::now();
        let maps = run_method(plan, params, e.x, &targets, method, e.settings).map_err(|why| {
            mnist_wgpu::error::bad_input(format!("--method {}: {why}", method.name()))
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let scored: Vec<Curves> = images()
            .map(|(k, (image, &t))| {
                curves(
                    plan,
                    params,
                    &ws,
                    image,
                    t,
                    &attribution_order(&maps[k].attribution),
                )
            })
            .collect();
        let areas: Vec<(f64, f64)> = scored
            .iter()
            .map(|c| (area(&c.deletion), area(&c.insertion)))
            .collect();
        // The share of images where the map's (deletion, insertion) areas beat the random
        // order's, by the curve `pick` chooses and the comparison `better` makes.
        let share = |pick: fn(&(f64, f64)) -> f64, better: fn(f64, f64) -> bool| {
            areas
                .iter()
                .zip(&random_areas)
                .filter(|(a, r)| better(pick(a), pick(r)))
                .count() as f64
                / n.max(1) as f64
        };
        rows.push(Row {
            method: method.name(),
            deletion_auc: mean(areas.iter().map(|a| a.0)),
            insertion_auc: mean(areas.iter().map(|a| a.1)),
            deletion_beats_random: share(|a| a.0, |map, random| map < random),
            insertion_beats_random: share(|a| a.1, |map, random| map > random),
            explanations_per_second: n as f64 / seconds.max(1e-9),
            deletion_curve: mean_curve(scored.iter().map(|c| c.deletion.as_slice())),
            insertion_curve: mean_curve(scored.iter().map(|c| c.insertion.as_slice())),
        });
    }
    print_table(n, &rows, &random_row, e.settings);
    if let Some(path) = e.json {
        let report = Report {
            images: n,
            pixels_per_step: PIXELS_PER_STEP,
            deleted_value: DELETED,
            seed: e.seed,
            random: &random_row,
            methods: &rows,
        };
        let mut text = serde_json::to_string(&report).context("serialising the evaluation")?;
        text.push('\n');
        write_atomic(path, text.as_bytes())?;
        outln!("wrote {}", path.display());
    }
    if let Some(dir) = e.out {
        let series: Vec<CurveSeries> = rows
            .iter()
            .map(|r| CurveSeries {
                name: r.method,
                deletion: &r.deletion_curve,
                insertion: &r.insertion_curve,
            })
            .collect();
        let random = CurveSeries {
            name: "random order",
            deletion: &random_row.deletion_curve,
            insertion: &random_row.insertion_curve,
        };
        let path = dir.join(FAITHFULNESS_FILE);
        draw_faithfulness(&path, &series, &random, n)?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(n: usize, rows: &[Row], random: &RandomRow, settings: &Settings) {
    outln!(
        "faithfulness on the first {} (RISE: {PIXELS_PER_STEP} pixels a step, deleted pixels set to {DELETED}; areas under the target's probability, x from 0 to 1)",
        count(n, "test image")
    );
    outln!(
        "{:<22} {:>12} {:>14} {:>13} {:>14} {:>15}",
        "method",
        "deletion AUC",
        "below random",
        "insertion AUC",
        "above random",
        "explanations/s"
    );
    for r in rows {
        outln!(
            "{:<22} {:>12.4} {:>13.0}% {:>13.4} {:>13.0}% {:>15.1}",
            r.method,
            r.deletion_auc,
            100.0 * r.deletion_beats_random,
            r.insertion_auc,
            100.0 * r.insertion_beats_random,
            r.explanations_per_second
        );
    }
    outln!(
        "{:<22} {:>12.4} {:>14} {:>13.4} {:>14} {:>15}",
        "random order",
        random.deletion_auc,
        "",
        random.insertion_auc,
        "",
        ""
    );
    outln!(
        "(integrated gradients: {} steps; SmoothGrad: {} samples; explanations/s on this machine's CPU path, all {n} images in one call)",
        settings.steps, settings.samples
    );
}
