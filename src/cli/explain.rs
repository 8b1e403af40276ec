//! `explain`: which pixels moved a saved model's answer, by saliency, input x gradient,
//! integrated gradients, SmoothGrad, Grad-CAM or occlusion, on image files (prepared as
//! `predict` prepares them) or test-set digits. Runs on the CPU path: the GPU kernels for the
//! backward pass to the input are not written yet.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::args::{check_output_dir, check_output_file, data_dir, load_mnist_from};
use super::explain_evaluate::{evaluate, Evaluation};
use mnist_wgpu::checkpoint::{load_checkpoint, Checkpoint};
use mnist_wgpu::cpu::network::{logits, Workspace};
use mnist_wgpu::data::{pixel_value, IMAGE_PIXELS, IMAGE_SIDE};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::explain::figure::{draw_explanation, draw_grid, GridRow};
use mnist_wgpu::explain::{
    convolution_step, convolutions, explain as run_method, mean_image, Baseline, Explanation,
    Method, Settings,
};
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::model::{Params, Plan};
use mnist_wgpu::predict::{mnist_input, softmax};
use mnist_wgpu::text::count;

/// With `--method all`, the grid of every image by every method, beside the single figures
/// (whose names always end in `-<method>`, so they never take this one).
const GRID_FILE: &str = "all-methods.png";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum MethodChoice {
    /// |d logit / d pixel| (Captum's Saliency, abs=True).
    Saliency,
    /// pixel x d logit / d pixel.
    InputXGradient,
    /// (x - baseline) x the mean gradient along the straight path, by Gauss-Legendre.
    IntegratedGradients,
    /// The mean saliency over noisy copies of the image.
    Smoothgrad,
    /// ReLU of a convolution's channels weighted by their mean gradient, upsampled.
    Gradcam,
    /// The mean drop of the logit when a window over the pixel is blacked out.
    Occlusion,
    /// Every method above.
    All,
}

impl MethodChoice {
    pub(super) fn methods(self) -> Vec<Method> {
        match self {
            MethodChoice::Saliency => vec![Method::Saliency],
            MethodChoice::InputXGradient => vec![Method::InputXGradient],
            MethodChoice::IntegratedGradients => vec![Method::IntegratedGradients],
            MethodChoice::Smoothgrad => vec![Method::SmoothGrad],
            MethodChoice::Gradcam => vec![Method::GradCam],
            MethodChoice::Occlusion => vec![Method::Occlusion],
            MethodChoice::All => Method::ALL.to_vec(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BaselineChoice {
    /// All zeros: no ink.
    Black,
    /// The image blurred by a Gaussian of 4 pixels.
    Blur,
    /// The mean training image (from --data-dir or the built-in MNIST).
    Mean,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A checkpoint written by `train`.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Images of one digit each, prepared as `predict` prepares them.
    #[arg(
        value_name = "IMAGE",
        required_unless_present_any = ["test_index", "evaluate"],
        conflicts_with_all = ["test_index", "evaluate"]
    )]
    images: Vec<PathBuf>,
    /// Test-set digits by index (0-based), e.g. `--test-index 0,1,2` or `--test-index 0 1 2`.
    #[arg(long, value_name = "I", num_args = 1.., value_delimiter = ',', conflicts_with = "evaluate")]
    test_index: Vec<usize>,
    /// Score the maps of the first N test digits by deletion and insertion curves against a
    /// random pixel order, and time each method; instead of images.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    evaluate: Option<u64>,
    /// The explanation method.
    #[arg(long, value_enum)]
    method: MethodChoice,
    /// The class whose logit is explained, by label [default: the predicted class].
    #[arg(long, value_name = "CLASS", conflicts_with = "evaluate")]
    target: Option<usize>,
    /// Integrated gradients: quadrature nodes on the path.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    steps: u64,
    /// Integrated gradients: where the path starts.
    #[arg(long, value_enum, default_value_t = BaselineChoice::Black)]
    baseline: BaselineChoice,
    /// SmoothGrad: noisy copies per image.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    samples: u64,
    /// SmoothGrad: the noise's standard deviation (pixels are in [0, 1]).
    #[arg(long, value_name = "SIGMA", default_value_t = 0.15, allow_negative_numbers = true, value_parser = noise_sigma)]
    noise: f32,
    /// SmoothGrad: the seed of the noise; --evaluate: the seed of the random order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Occlusion: the side of the square window blacked out, in pixels.
    #[arg(long, value_name = "W", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=28))]
    window: u64,
    /// Occlusion: pixels between windows.
    #[arg(long, value_name = "S", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=28))]
    stride: u64,
    /// Grad-CAM: the convolution (conv1, conv2, ...) [default: the last one].
    #[arg(long, value_name = "convK")]
    layer: Option<String>,
    /// Write a PNG figure per image and method into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write one JSON object per image and method, a line each, to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Where --test-index and --baseline mean read MNIST [default: the built-in copy].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn noise_sigma(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() && (0.0..=10.0).contains(&x) => Ok(x),
        _ => Err(format!("'{text}' is not a number in [0, 10]")),
    }
}

/// An explained input: its name in the output, the JSON's identifying field, and its pixels.
pub(super) struct Input {
    pub name: String,
    pub source: Source,
    pub pixels: Vec<f32>,
}

#[derive(Clone, Serialize)]
#[serde(untagged)]
pub(super) enum Source {
    File { file: String },
    Index { index: usize },
}

/// One line of `--json`.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(flatten)]
    source: Source,
    target: usize,
    predicted: usize,
    probability: f64,
    method: &'static str,
    attribution: &'a [f32],
    completeness_error: Option<f64>,
}

pub fn explain(args: ExplainArgs) -> Result<()> {
    // Every output path is checked before any work.
    if let Some(dir) = &args.out {
        check_output_dir("--out", dir)?;
    }
    if let Some(path) = &args.json {
        check_output_file("--json", path, path)?;
    }
    let checkpoint = load_checkpoint(&args.model)?;
    let (plan, params, labels) = (&checkpoint.plan, &checkpoint.params, &checkpoint.labels);
    let methods = args.method.methods();
    let mut settings = Settings::defaults(plan);
    if let Some(name) = &args.layer {
        settings.layer =
            convolution_step(plan, name).map_err(|why| bad_input(format!("--layer {why}")))?;
    } else {
        check_grad_cam(plan, &methods, "--method")?;
    }
    let target = match args.target {
        Some(label) => Some(labels.iter().position(|&l| l == label).ok_or_else(|| {
            bad_input(format!(
                "--target {label}: not a class of the model; its classes are {}",
                class_list(labels)
            ))
        })?),
        None => None,
    };
    settings.steps = args.steps as usize;
    settings.samples = args.samples as usize;
    settings.noise = args.noise;
    settings.seed = args.seed;
    settings.window = args.window as usize;
    settings.stride = args.stride as usize;
    let inputs = read_inputs(&args)?;
    let uses_mean =
        args.baseline == BaselineChoice::Mean && methods.contains(&Method::IntegratedGradients);
    settings.baseline = match args.baseline {
        BaselineChoice::Black => Baseline::Black,
        BaselineChoice::Blur => Baseline::Blur,
        BaselineChoice::Mean if uses_mean => {
            let train = load_mnist_from(data_dir(args.data_dir.as_deref())?.as_deref())?.train;
            let pixels: Vec<f32> = train.images.iter().map(|&p| pixel_value(p)).collect();
            Baseline::Image(mean_image(&pixels))
        }
        BaselineChoice::Mean => Baseline::Black,
    };

    let x: Vec<f32> = inputs.iter().flat_map(|i| i.pixels.clone()).collect();
    if args.evaluate.is_some() {
        return evaluate(Evaluation {
            plan,
            params,
            x: &x,
            methods: &methods,
            settings: &settings,
            seed: args.seed,
            out: args.out.as_deref(),
            json: args.json.as_deref(),
        });
    }
    let Answers {
        probabilities,
        predicted,
    } = Answers::of(plan, params, &x);
    let targets: Vec<usize> = predicted.iter().map(|&p| target.unwrap_or(p)).collect();

    let mut json = String::new();
    let mut figures = 0;
    let mut all = Vec::new();
    for &method in &methods {
        let explanations = run_method(plan, params, &x, &targets, method, &settings)
            .map_err(|why| bad_input(format!("--method {}: {why}", method.name())))?;
        for (k, (input, e)) in inputs.iter().zip(&explanations).enumerate() {
            let (p, t) = (predicted[k], targets[k]);
            let summary = Summary {
                predicted: (labels[p], probabilities[k][p]),
                target: (labels[t], probabilities[k][t]),
                method,
            };
            outln!("{}: {}", input.name, summary.line(e));
            if let Some(dir) = &args.out {
                let path = dir.join(format!("{}-{}.png", input.name, method.name()));
                let title = format!("{}: {}", input.name, summary.title());
                draw_explanation(&path, &input.pixels, &e.attribution, IMAGE_SIDE, &title)?;
                figures += 1;
            }
            if args.json.is_some() {
                let line = JsonLine {
                    source: input.source.clone(),
                    target: labels[t],
                    predicted: labels[p],
                    probability: probabilities[k][t],
                    method: method.name(),
                    attribution: &e.attribution,
                    completeness_error: e.completeness_error,
                };
                json += &serde_json::to_string(&line).context("serialising an explanation")?;
                json.push('\n');
            }
        }
        all.push(explanations);
    }
    if let (Some(dir), true) = (&args.out, methods.len() > 1) {
        let answers = Answers {
            probabilities,
            predicted,
        };
        write_grid(dir, &methods, &inputs, labels, &answers, &all)?;
        figures += 1;
    }
    if let Some(path) = &args.json {
        write_atomic(path, json.as_bytes())?;
        outln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.out {
        outln!("wrote {} to {}", count(figures, "figure"), dir.display());
    }
    Ok(())
}

/// A model's answers for a batch: each image's class probabilities and its most probable class
/// (output indices).
struct Answers {
    probabilities: Vec<Vec<f64>>,
    predicted: Vec<usize>,
}

impl Answers {
    fn of(plan: &Plan, params: &Params<f32>, x: &[f32]) -> Answers {
        let classes = plan.output().len();
        let all_logits = logits(plan, params, x, &Workspace::new(plan));
        let probabilities: Vec<Vec<f64>> = all_logits.chunks_exact(classes).map(softmax).collect();
        let predicted = probabilities.iter().map(|p| argmax(p)).collect();
        Answers {
            probabilities,
            predicted,
        }
    }
}

/// A bad-input error naming `flag` if `methods` take Grad-CAM's default layer, the last
/// convolution, from a model without one.
pub(super) fn check_grad_cam(plan: &Plan, methods: &[Method], flag: &str) -> Result<()> {
    if methods.contains(&Method::GradCam) && convolutions(plan).is_empty() {
        return Err(bad_input(format!(
            "{flag} {}: Grad-CAM needs a convolution, and the model has none",
            Method::GradCam.name()
        )));
    }
    Ok(())
}

/// `DIR/all-methods.png`: a row per input, captioned with its answer, and a column per method.
fn write_grid(
    dir: &Path,
    methods: &[Method],
    inputs: &[Input],
    labels: &[usize],
    answers: &Answers,
    all: &[Vec<Explanation>],
) -> Result<()> {
    let rows: Vec<GridRow> = inputs
        .iter()
        .enumerate()
        .map(|(k, input)| {
            let p = answers.predicted[k];
            GridRow {
                caption: format!(
                    "{}: {} ({:.1}%)",
                    input.name,
                    labels[p],
                    100.0 * answers.probabilities[k][p]
                ),
                image: &input.pixels,
                maps: all.iter().map(|e| e[k].attribution.as_slice()).collect(),
            }
        })
        .collect();
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    draw_grid(&dir.join(GRID_FILE), &names, &rows, IMAGE_SIDE)
}

/// `predict --explain`: the figures `explain --out` draws, one per input and method (and with
/// several methods the grid), each explaining the predicted class with the default settings.
/// Returns how many it wrote.
pub(super) fn draw_figures(
    checkpoint: &Checkpoint,
    inputs: &[Input],
    choice: MethodChoice,
    dir: &Path,
) -> Result<usize> {
    let (plan, params, labels) = (&checkpoint.plan, &checkpoint.params, &checkpoint.labels);
    let methods = choice.methods();
    check_grad_cam(plan, &methods, "--explain")?;
    let settings = Settings::defaults(plan);
    let x: Vec<f32> = inputs.iter().flat_map(|i| i.pixels.clone()).collect();
    let answers = Answers::of(plan, params, &x);
    let mut figures = 0;
    let mut all = Vec::new();
    for &method in &methods {
        let explanations = run_method(plan, params, &x, &answers.predicted, method, &settings)
            .map_err(|why| bad_input(format!("--explain {}: {why}", method.name())))?;
        for (k, (input, e)) in inputs.iter().zip(&explanations).enumerate() {
            let p = answers.predicted[k];
            let answer = (labels[p], answers.probabilities[k][p]);
            let summary = Summary {
                predicted: answer,
                target: answer,
                method,
            };
            let path = dir.join(format!("{}-{}.png", input.name, method.name()));
            let title = format!("{}: {}", input.name, summary.title());
            draw_explanation(&path, &input.pixels, &e.attribution, IMAGE_SIDE, &title)?;
            figures += 1;
        }
        all.push(explanations);
    }
    if methods.len() > 1 {
        write_grid(dir, &methods, inputs, labels, &answers, &all)?;
        figures += 1;
    }
    Ok(figures)
}

/// What one line of output and a figure's title say.
struct Summary {
    /// Labels and probabilities.
    predicted: (usize, f64),
    target: (usize, f64),
    method: Method,
}

impl Summary {
    fn title(&self) -> String {
        let (p, pp) = self.predicted;
        let mut title = format!("predicted {p} ({:.1}%)", 100.0 * pp);
        if self.target.0 != p {
            let (t, tp) = self.target;
            title += &format!(", target {t} ({:.1}%)", 100.0 * tp);
        }
        format!("{title}, {}", self.method.name())
    }

    fn line(&self, e: &Explanation) -> String {
        let mut line = self.title();
        if let (Some(err), Some(diff)) = (e.completeness_error, e.path_difference) {
            let share = if diff != 0.0 {
                format!(" ({:.3}% of it)", 100.0 * (err / diff).abs())
            } else {
                String::new()
            };
            line +=
                &format!(": F(x) - F(baseline) = {diff:.4}, completeness error {err:.2e}{share}");
        }
        line
    }
}

fn argmax(values: &[f64]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

fn class_list(labels: &[usize]) -> String {
    let contiguous = labels.windows(2).all(|w| w[1] == w[0] + 1);
    match (labels.first(), labels.last()) {
        (Some(first), Some(last)) if contiguous && labels.len() > 2 => format!("{first}-{last}"),
        _ => labels
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Figure names, each given once: two files of the same name in different directories get
/// distinct names (`digit`, `digit-2`).
#[derive(Default)]
pub(super) struct Names(HashSet<String>);

impl Names {
    pub(super) fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 2;
        while !self.0.insert(name.clone()) {
            name = format!("{base}-{k}");
            k += 1;
        }
        name
    }

    /// The name of a file's figures: its stem, made unique.
    pub(super) fn of_file(&mut self, path: &Path) -> String {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        self.unique(stem)
    }
}

/// The images to explain, all read before any work: an unreadable file is a one-line error
/// naming it, as is an index past the test set.
fn read_inputs(args: &ExplainArgs) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut names = Names::default();
    for path in &args.images {
        let pixels =
            read_image(path).map_err(|why| bad_input(format!("{}: {why}", path.display())))?;
        inputs.push(Input {
            name: names.of_file(path),
            source: Source::File {
                file: path.display().to_string(),
            },
            pixels,
        });
    }
    // --evaluate N takes the first N test digits.
    let indices: Vec<usize> = match args.evaluate {
        Some(n) => (0..n as usize).collect(),
        None => args.test_index.clone(),
    };
    if !indices.is_empty() {
        let test = load_mnist_from(data_dir(args.data_dir.as_deref())?.as_deref())?.test;
        if let Some(n) = args.evaluate.filter(|&n| n as usize > test.len()) {
            return Err(bad_input(format!(
                "--evaluate {n}: the test set has {}",
                count(test.len(), "image")
            )));
        }
        for &index in &indices {
            if index >= test.len() {
                return Err(bad_input(format!(
                    "--test-index {index}: the test set has {} (0-{})",
                    count(test.len(), "image"),
                    test.len().saturating_sub(1)
                )));
            }
            let pixels = test.image(index).iter().map(|&p| pixel_value(p)).collect();
            inputs.push(Input {
                name: names.unique(format!("test-{index}")),
                source: Source::Index { index },
                pixels,
            });
        }
    }
    Ok(inputs)
}

fn read_image(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read ({e})"))?;
    let input = mnist_input(&bytes).map_err(|e| e.to_string())?;
    debug_assert_eq!(input.len(), IMAGE_PIXELS);
    Ok(input.iter().map(|&p| pixel_value(p)).collect())
}
