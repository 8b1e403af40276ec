//! Explanations (`src/explain/`, `mnist-wgpu explain`) on the CPU path: the input gradient of a
//! logit against finite differences, the completeness of integrated gradients, the model
//! randomisation sanity check of Adebayo et al. (2018), and the command end to end. The trained
//! model is the committed 2-epoch seed model of `tests/fixtures/`.

mod common;

use std::path::{Path, PathBuf};

use common::run_cli_ok;
use image::GenericImageView;
use mnist_wgpu::checkpoint::{load_checkpoint, Checkpoint};
use mnist_wgpu::cpu::input_gradient::logit_gradients;
use mnist_wgpu::cpu::network::{logits, Workspace};
use mnist_wgpu::data::{load_bundled_mnist, pixel_value, IMAGE_PIXELS};
use mnist_wgpu::explain::{explain, Method, Settings};
use mnist_wgpu::model::{init_params, Arch, Params, Plan, Shape, MNIST_INPUT};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn seed_model() -> Checkpoint {
    load_checkpoint(&fixture("seed-model.safetensors")).unwrap()
}

/// The first `n` test digits, as the model sees them.
fn test_digits(n: usize) -> Vec<f32> {
    let test = load_bundled_mnist().unwrap().test;
    (0..n)
        .flat_map(|i| {
            test.image(i)
                .iter()
                .map(|&p| pixel_value(p))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn predicted(plan: &Plan, params: &Params<f32>, x: &[f32]) -> Vec<usize> {
    let classes = plan.output().len();
    logits(plan, params, x, &Workspace::new(plan))
        .chunks_exact(classes)
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap()
        })
        .collect()
}

fn random(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// The input gradient of `sum_k seed[i][k] * logit[i][k]` against central differences of the
/// inference-mode logits, in f64, at every `stride`-th input element.
fn check_logit_gradient(plan: &Plan, params: &Params<f64>, n: usize, stride: usize) {
    let classes = plan.output().len();
    let x = random(n * plan.input.len(), 11, 0.0, 1.0);
    let seed = random(n * classes, 12, -1.0, 1.0);
    let analytic = logit_gradients(plan, params, &x, &seed, None).input;
    let ws = Workspace::new(plan);
    let objective = |x: &[f64]| -> f64 {
        let l = logits(plan, params, x, &ws);
        l.iter().zip(&seed).map(|(a, b)| a * b).sum()
    };
    let h = 1e-5;
    let mut probe = x.clone();
    let mut checked = 0;
    for i in (0..x.len()).step_by(stride) {
        probe[i] = x[i] + h;
        let up = objective(&probe);
        probe[i] = x[i] - h;
        let down = objective(&probe);
        probe[i] = x[i];
        let numeric = (up - down) / (2.0 * h);
        let err = (analytic[i] - numeric).abs();
        assert!(
            err <= 1e-8 + 1e-6 * numeric.abs(),
            "{}: dx[{i}]: analytic {} vs numeric {numeric} (error {err:e})",
            plan.arch,
            analytic[i]
        );
        checked += usize::from(numeric != 0.0);
    }
    // A gradient that is zero everywhere would pass trivially.
    assert!(
        checked > x.len() / stride / 2,
        "{}: too few non-zero",
        plan.arch
    );
}

#[test]
fn logit_input_gradients_match_finite_differences_in_f64() {
    // The seed model's layers on MNIST-sized inputs, six images (two chunks, one partial).
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    check_logit_gradient(&plan, &init_params(&plan, 3).map(f64::from), 6, 7);
    // Every layer kind in inference mode: batch norm on perturbed running statistics, dropout
    // as the identity, a strided padded convolution, average pooling, sigmoid and tanh.
    let arch = Arch::parse(
        "conv3k3s2same-bn-tanh-conv4k2-sigmoid-avgpool2-dropout0.3-flatten-dense6-bn-relu-dense10",
    )
    .unwrap();
    let plan = Plan::new(&arch, Shape::new(1, 10, 9)).unwrap();
    let mut params = init_params(&plan, 5).map(f64::from);
    for (t, spec) in plan.params.iter().enumerate() {
        if spec.name.starts_with("bn") {
            let noise = random(spec.len(), 40 + t as u64, 0.0, 0.5);
            let tensor = params.tensors[t].data.iter_mut().zip(noise);
            // Positive shifts keep the running variances positive.
            tensor.for_each(|(p, v)| *p += v);
        }
    }
    check_logit_gradient(&plan, &params, 5, 1);
}

#[test]
fn a_tapped_layer_leaves_the_input_gradient_unchanged_and_reports_its_activations() {
    let checkpoint = seed_model();
    let (plan, params) = (&checkpoint.plan, &checkpoint.params);
    let x = test_digits(5);
    let seed: Vec<f32> = (0..5 * 10)
        .map(|i| if i % 11 == 0 { 1.0 } else { 0.0 })
        .collect();
    let plain = logit_gradients(plan, params, &x, &seed, None);
    let tapped = logit_gradients(plan, params, &x, &seed, Some(3));
    assert_eq!(plain.input, tapped.input);
    assert_eq!(plain.logits, tapped.logits);
    let (maps, grads) = tapped.tap.unwrap();
    assert_eq!(maps.len(), 5 * 64 * 11 * 11);
    assert!(maps.iter().any(|&v| v != 0.0) && grads.iter().any(|&g| g != 0.0));
}

#[test]
fn integrated_gradients_are_complete_within_one_percent_on_20_test_digits() {
    let checkpoint = seed_model();
    let (plan, params) = (&checkpoint.plan, &checkpoint.params);
    let x = test_digits(20);
    let targets = predicted(plan, params, &x);
    let settings = Settings::defaults(plan);
    assert_eq!(settings.steps, 64);
    let results = explain(
        plan,
        params,
        &x,
        &targets,
        Method::IntegratedGradients,
        &settings,
    )
    .unwrap();
    let mut worst: f64 = 0.0;
    for (i, e) in results.iter().enumerate() {
        let (err, diff) = (e.completeness_error.unwrap(), e.path_difference.unwrap());
        // The error is the sum of the attributions against the logits' own difference.
        let total: f64 = e.attribution.iter().map(|&a| a as f64).sum();
        assert!((total - diff - err).abs() <= 1e-9 * diff.abs().max(1.0));
        let relative = (err / diff).abs();
        assert!(
            relative <= 0.01,
            "test digit {i}: error {err:e} of F(x) - F(b) = {diff}"
        );
        worst = worst.max(relative);
    }
    eprintln!(
        "integrated gradients, 64 steps, 20 test digits: worst completeness error {:.4}%",
        100.0 * worst
    );
}

#[test]
fn the_completeness_error_falls_geometrically_with_steps_on_a_smooth_model() {
    // tanh makes the path integrand analytic, so Gauss–Legendre's error falls faster than any
    // power of the steps (on a ReLU network the integrand jumps, and it falls as 1 / steps).
    let arch = Arch::parse("flatten-dense16-tanh-dense10").unwrap();
    let plan = Plan::new(&arch, MNIST_INPUT).unwrap();
    // Larger weights than Glorot's put the tanh units well into their curve.
    let params = init_params(&plan, 9).map(|w| 4.0 * w);
    let x = test_digits(3);
    let targets = vec![0, 3, 7];
    let mut settings = Settings::defaults(&plan);
    let mut errors = Vec::new();
    for steps in [1, 2, 4, 8] {
        settings.steps = steps;
        let worst = explain(
            &plan,
            &params,
            &x,
            &targets,
            Method::IntegratedGradients,
            &settings,
        )
        .unwrap()
        .iter()
        .map(|e| (e.completeness_error.unwrap() / e.path_difference.unwrap()).abs())
        .fold(0.0, f64::max);
        errors.push(worst);
    }
    eprintln!("smooth model: worst relative completeness error at 1, 2, 4, 8 steps: {errors:?}");
    assert!(
        errors[0] > 1e-2,
        "the model is too linear to test anything: {errors:?}"
    );
    // A Riemann sum's error would halve with each doubling of the steps, the trapezoid rule's
    // quarter; Gauss–Legendre's gains a factor of 50 or more, and a growing one (geometric
    // convergence: the gain squares with each doubling), once past the first node or two.
    let gains: Vec<f64> = errors.windows(2).map(|p| p[0] / p[1]).collect();
    assert!(gains[1] >= 50.0 && gains[2] >= 50.0, "{errors:?}");
    assert!(gains[2] > gains[1], "{errors:?}");
    assert!(errors[3] < 1e-4, "{errors:?}");
}

/// On a linear model (one dense layer) the methods have closed forms: the gradient of logit t
/// is row t of the weights, so input x gradient is `x * w_t`, integrated gradients from black
/// is the same for any number of steps, and occluding one pixel drops the logit by `x_p w_tp`.
#[test]
fn on_a_linear_model_the_methods_agree_with_their_closed_forms() {
    let plan = Plan::new(&Arch::parse("flatten-dense10").unwrap(), MNIST_INPUT).unwrap();
    let params = init_params(&plan, 4);
    let weights = &params.tensors[0].data;
    let x = test_digits(2);
    let targets = vec![3, 8];
    let mut settings = Settings::defaults(&plan);
    settings.steps = 3;
    settings.window = 1;
    settings.stride = 1;
    let run = |method| explain(&plan, &params, &x, &targets, method, &settings).unwrap();
    let (ixg, ig, occlusion, saliency) = (
        run(Method::InputXGradient),
        run(Method::IntegratedGradients),
        run(Method::Occlusion),
        run(Method::Saliency),
    );
    for (i, &t) in targets.iter().enumerate() {
        let w = &weights[t * IMAGE_PIXELS..][..IMAGE_PIXELS];
        let image = &x[i * IMAGE_PIXELS..][..IMAGE_PIXELS];
        for p in 0..IMAGE_PIXELS {
            let exact = image[p] * w[p];
            let close = |a: f32, what: &str| {
                assert!(
                    (a - exact).abs() <= 1e-5 * exact.abs() + 1e-6,
                    "{what}, image {i}, pixel {p}: {a} vs {exact}"
                )
            };
            close(ixg[i].attribution[p], "input x gradient");
            close(ig[i].attribution[p], "integrated gradients");
            close(occlusion[i].attribution[p], "occlusion");
            assert_eq!(saliency[i].attribution[p], w[p].abs());
        }
        assert!(ig[i].completeness_error.unwrap().abs() < 1e-4);
    }
}

#[test]
fn smoothgrad_without_noise_is_saliency_and_with_noise_depends_on_the_seed_alone() {
    let checkpoint = seed_model();
    let (plan, params) = (&checkpoint.plan, &checkpoint.params);
    let x = test_digits(3);
    let targets = predicted(plan, params, &x);
    let mut settings = Settings::defaults(plan);
    settings.samples = 4;
    let run = |settings: &Settings, x: &[f32], targets: &[usize], method| {
        explain(plan, params, x, targets, method, settings).unwrap()
    };
    let saliency = run(&settings, &x, &targets, Method::Saliency);
    settings.noise = 0.0;
    assert_eq!(run(&settings, &x, &targets, Method::SmoothGrad), saliency);
    settings.noise = 0.15;
    let noisy = run(&settings, &x, &targets, Method::SmoothGrad);
    assert_ne!(noisy, saliency);
    // The same seed gives the same map, whichever images come with it; another seed another.
    let alone = run(
        &settings,
        &x[IMAGE_PIXELS..2 * IMAGE_PIXELS],
        &targets[1..2],
        Method::SmoothGrad,
    );
    assert_eq!(alone[0], noisy[1]);
    settings.seed += 1;
    assert_ne!(run(&settings, &x, &targets, Method::SmoothGrad), noisy);
}

/// Spearman's rank correlation, ties ranked by their mean rank; 0 where either has no spread.
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let ranks = |v: &[f32]| -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut ranks = vec![0.0; v.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && v[order[end + 1]] == v[order[start]] {
                end += 1;
            }
            let mean = (start + end) as f64 / 2.0;
            order[start..=end].iter().for_each(|&k| ranks[k] = mean);
            start = end + 1;
        }
        ranks
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (ra.len() as f64 - 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean).powi(2);
        vb += (y - mean).powi(2);
    }
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

#[test]
fn spearman_ranks_ties_by_their_mean_and_sees_order_not_scale() {
    assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 200.0, 3000.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    // Ranks (0.5, 0.5, 2) against (0, 1, 2): 0.866.
    assert!((spearman(&[5.0, 5.0, 7.0], &[1.0, 2.0, 3.0]) - 0.75f64.sqrt()).abs() < 1e-12);
}

/// Adebayo et al. (2018): a map that explains the model must change when the model's weights
/// are re-drawn from their initialisation (a fresh draw, not the trained run's own start). The
/// mean Spearman correlation between the absolute maps of the trained and the randomised seed
/// model over 50 test digits must be below 0.5.
fn randomisation_correlation(method: Method) -> f64 {
    let checkpoint = seed_model();
    let (plan, trained) = (&checkpoint.plan, &checkpoint.params);
    let random = init_params(plan, 1234);
    assert_ne!(&random, trained);
    let n = 50;
    let x = test_digits(n);
    let targets = predicted(plan, trained, &x);
    let settings = Settings::defaults(plan);
    let maps = |params: &Params<f32>| explain(plan, params, &x, &targets, method, &settings);
    let (a, b) = (maps(trained).unwrap(), maps(&random).unwrap());
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let correlations: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| spearman(&abs(&a.attribution), &abs(&b.attribution)))
        .collect();
    assert_eq!(correlations.len(), n);
    let mean = correlations.iter().sum::<f64>() / n as f64;
    eprintln!(
        "{}: mean Spearman correlation of |maps|, trained vs randomised, {n} test digits: {mean:.3}",
        method.name()
    );
    mean
}

// A finding, not a pass: on the seed model the maps keep a mean correlation of 0.642 (2026-12-07).
// A randomised model with zero biases passes no gradient through ReLUs that see only background,
// so its gradient is zero away from the ink, where the trained model's is small: both maps rank
// the pixels near the strokes first. Run with `cargo test --release --test explain -- --ignored`.
#[test]
#[ignore = "fails: mean Spearman 0.642 (see the README's Explanations section)"]
fn saliency_changes_when_the_weights_are_randomised() {
    let r = randomisation_correlation(Method::Saliency);
    assert!(
        r < 0.5,
        "saliency survives randomisation: mean Spearman {r:.3}"
    );
}

// A finding, not a pass: 0.993 (2026-12-07). From a black baseline an attribution is
// `x * mean gradient`, exactly zero on the ~80% of pixels without ink for any weights, so the
// ranks of both maps are dominated by the digit's shape (as Adebayo et al. found for
// input-times-gradient methods).
#[test]
#[ignore = "fails: mean Spearman 0.993 (see the README's Explanations section)"]
fn integrated_gradients_change_when_the_weights_are_randomised() {
    let r = randomisation_correlation(Method::IntegratedGradients);
    assert!(
        r < 0.5,
        "integrated gradients survive randomisation: mean Spearman {r:.3}"
    );
}

#[test]
fn grad_cam_changes_when_the_weights_are_randomised() {
    let r = randomisation_correlation(Method::GradCam);
    assert!(
        r < 0.5,
        "Grad-CAM survives randomisation: mean Spearman {r:.3}"
    );
}

#[test]
fn explain_writes_a_json_line_and_a_figure_per_image_and_method() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("seed-model.safetensors");
    let digit = fixture("digits/7_pen.png");
    let (json, out) = (tmp.path().join("e.json"), tmp.path().join("figures"));
    let stdout = run_cli_ok(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--test-index",
        "0,1",
        "--method",
        "all",
        "--steps",
        "16",
        "--samples",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * Method::ALL.len(), "{stdout}");
    for line in &lines {
        let method = line["method"].as_str().unwrap();
        let attribution = line["attribution"].as_array().unwrap();
        assert_eq!(attribution.len(), IMAGE_PIXELS);
        assert!(attribution.iter().all(|a| a.as_f64().unwrap().is_finite()));
        assert!(
            attribution.iter().any(|a| a.as_f64().unwrap() != 0.0),
            "{method}"
        );
        let index = line["index"].as_u64().unwrap();
        // The first two test digits are a 7 and a 2, which the model gets right.
        assert_eq!(line["target"], [7, 2][index as usize]);
        assert_eq!(line["predicted"], line["target"]);
        assert!(line["probability"].as_f64().unwrap() > 0.5);
        assert_eq!(
            line["completeness_error"].is_null(),
            method != "integrated-gradients",
            "{line}"
        );
        let figure = out.join(format!("test-{index}-{method}.png"));
        let picture = image::open(&figure).unwrap();
        assert!(picture.width() > 400 && picture.height() > 250);
    }
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("test-")).count(),
        12
    );
    // The grid: a row per image, a column per method and one for the digit.
    let grid = image::open(out.join("all-methods.png")).unwrap();
    assert!(
        grid.width() > 7 * 112 && grid.height() > 2 * 112,
        "{:?}",
        grid.dimensions()
    );

    // An image file, explained for a class other than the one predicted.
    let stdout = run_cli_ok(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        digit.to_str().unwrap(),
        "--method",
        "saliency",
        "--target",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(line["file"], digit.to_str().unwrap());
    assert_eq!(
        (line["target"].as_u64(), line["predicted"].as_u64()),
        (Some(3), Some(7))
    );
    assert!(
        stdout.contains("predicted 7") && stdout.contains("target 3"),
        "{stdout}"
    );
}
