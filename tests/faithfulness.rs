//! Faithfulness of explanations (`src/explain/faithfulness.rs`, `explain --evaluate`): the
//! deletion curve of RISE (Petsiuk et al. 2018) under a method's map must fall faster than under
//! a random pixel order, on the committed 2-epoch seed model of `tests/fixtures/`.

mod common;

use std::path::{Path, PathBuf};

use common::run_cli_ok;
use mnist_wgpu::checkpoint::load_checkpoint;
use mnist_wgpu::cpu::network::{logits, Workspace};
use mnist_wgpu::data::{load_bundled_mnist, pixel_value, IMAGE_PIXELS};
use mnist_wgpu::explain::faithfulness::{area, attribution_order, curves, random_order};
use mnist_wgpu::explain::{explain, Method, Settings};

fn seed_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-model.safetensors")
}

/// The share of the first 100 test digits whose deletion area under `method`'s map (explaining
/// the predicted class) is below the area under a random order (seed 42, one per image).
fn deletion_beats_random(method: Method) -> f64 {
    let checkpoint = load_checkpoint(&seed_model()).unwrap();
    let (plan, params) = (&checkpoint.plan, &checkpoint.params);
    let n = 100;
    let test = load_bundled_mnist().unwrap().test;
    let x: Vec<f32> = (0..n)
        .flat_map(|i| {
            test.image(i)
                .iter()
                .map(|&p| pixel_value(p))
                .collect::<Vec<_>>()
        })
        .collect();
    let ws = Workspace::new(plan);
    let targets: Vec<usize> = logits(plan, params, &x, &ws)
        .chunks_exact(10)
        .map(|row| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap())
        .collect();
    let maps = explain(
        plan,
        params,
        &x,
        &targets,
        method,
        &Settings::defaults(plan),
    )
    .unwrap();
    let wins = x
        .chunks_exact(IMAGE_PIXELS)
        .enumerate()
        .filter(|&(k, image)| {
            let t = targets[k];
            let ranked = attribution_order(&maps[k].attribution);
            let by_map = area(&curves(plan, params, &ws, image, t, &ranked).deletion);
            let shuffled = random_order(IMAGE_PIXELS, 42, k);
            let by_chance = area(&curves(plan, params, &ws, image, t, &shuffled).deletion);
            by_map < by_chance
        })
        .count();
    let share = wins as f64 / n as f64;
    eprintln!(
        "{}: deletion area below the random order's on {:.0}% of {n} test digits",
        method.name(),
        100.0 * share
    );
    share
}

#[test]
fn saliency_deletes_the_answer_faster_than_a_random_order() {
    let share = deletion_beats_random(Method::Saliency);
    assert!(share >= 0.9, "saliency beats random on {share:.2}");
}

#[test]
fn integrated_gradients_delete_the_answer_faster_than_a_random_order() {
    let share = deletion_beats_random(Method::IntegratedGradients);
    assert!(
        share >= 0.9,
        "integrated gradients beat random on {share:.2}"
    );
}

// A finding, not a pass: Grad-CAM beats the random order on 69% of the images (2026-12-07), its
// mean deletion area 0.52 against the random order's 0.61. Its map is conv2's 11x11 grid
// upsampled and rectified: a blob over the digit, flat inside, zero elsewhere, so its order
// cannot say which stroke pixels matter, and the zero pixels are taken in index order. Run with
// `cargo test --release --test faithfulness -- --ignored`.
#[test]
#[ignore = "fails: Grad-CAM beats random on 69% of 100 test digits (see docs/cli.md#explain)"]
fn grad_cam_deletes_the_answer_faster_than_a_random_order() {
    let share = deletion_beats_random(Method::GradCam);
    assert!(share >= 0.9, "Grad-CAM beats random on {share:.2}");
}

#[test]
fn evaluate_writes_a_table_a_json_report_and_a_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let (json, out) = (tmp.path().join("f.json"), tmp.path().join("plots"));
    let stdout = run_cli_ok(&[
        "explain",
        "--model",
        seed_model().to_str().unwrap(),
        "--evaluate",
        "6",
        "--method",
        "all",
        "--steps",
        "8",
        "--samples",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["images"], 6);
    let methods = report["methods"].as_array().unwrap();
    assert_eq!(methods.len(), Method::ALL.len());
    for (row, method) in methods.iter().zip(Method::ALL) {
        assert_eq!(row["method"], method.name());
        assert!(stdout.contains(method.name()), "{stdout}");
        let curve = row["deletion_curve"].as_array().unwrap();
        // 784 pixels at 28 a step: the start and 28 steps.
        assert_eq!(curve.len(), 29);
        // The start is the untouched image, the end the all-deleted one, for every method.
        assert_eq!(curve[0], report["random"]["deletion_curve"][0]);
        assert_eq!(curve[28], row["insertion_curve"][0]);
        let auc = row["deletion_auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{row}");
        assert!(row["explanations_per_second"].as_f64().unwrap() > 0.0);
    }
    let plot = image::open(out.join("faithfulness.png")).unwrap();
    assert!(plot.width() >= 800, "{}", plot.width());
}
