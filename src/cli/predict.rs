//! `predict`: classify image files with a saved model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::{check_output_dir, inference_backend, DeviceArgs};
use super::explain::{check_grad_cam, draw_figures, Input, MethodChoice, Names, Source};
use mnist_wgpu::checkpoint::Checkpoint;
use mnist_wgpu::checkpoint_int8::{load_any_checkpoint, AnyCheckpoint};
use mnist_wgpu::data::pixel_value;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::predict::{mnist_input, top_classes, ClassProbability};
use mnist_wgpu::text::count;

/// How many classes each image reports.
const TOP: usize = 3;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `train`, or by `quantize` (int8, run on the CPU).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Images of one digit each (PNG, JPEG, GIF, BMP, WebP), any size and colours.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Print one JSON object per image and line.
    #[arg(long)]
    json: bool,
    /// Also explain each prediction by this method (as `explain --method`), a figure per
    /// image in --out, on the CPU path.
    #[arg(long, value_enum, value_name = "METHOD")]
    explain: Option<MethodChoice>,
    /// With --explain: the directory of the figures.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The top classes of one file, or why it has none.
type Outcome = Result<Vec<ClassProbability>, String>;

/// Prints a line per image, in the order given; a file that fails does not stop the others, but
/// makes the command fail (exit code 2) once every line is out. A single failure is the error
/// itself (one line); several are each printed, then counted.
pub fn predict(args: PredictArgs) -> Result<()> {
    // The figures' flags go together, and their directory is checked before any work.
    match (&args.explain, &args.out) {
        (Some(_), None) => return Err(bad_input("--explain needs --out DIR for its figures")),
        (None, Some(_)) => {
            return Err(bad_input(
                "--out: predict writes figures only with --explain METHOD",
            ))
        }
        (Some(_), Some(dir)) => check_output_dir("--out", dir)?,
        (None, None) => {}
    }
    let checkpoint = load_any_checkpoint(&args.model)?;
    // Explanations run on the CPU path from a float checkpoint's weights, kept before the
    // backend takes them.
    let explained = match (args.explain, &checkpoint) {
        (None, _) => None,
        (Some(choice), AnyCheckpoint::Float(c)) => {
            check_grad_cam(&c.plan, &choice.methods(), "--explain")?;
            Some(Checkpoint {
                plan: c.plan.clone(),
                params: c.params.clone(),
                metadata: c.metadata.clone(),
                labels: c.labels.clone(),
            })
        }
        (Some(_), AnyCheckpoint::Int8(_)) => {
            return Err(bad_input(format!(
                "{}: an int8 checkpoint; --explain needs the float model",
                args.model.display()
            )))
        }
    };
    let inputs: Vec<Result<Vec<u8>, String>> =
        args.images.iter().map(|path| read_input(path)).collect();
    let batch: Vec<u8> = inputs.iter().flatten().flatten().copied().collect();
    let classes = checkpoint.plan().classes();
    // A model trained with --classes names its outputs by the data set's labels.
    let labels = checkpoint.labels().to_vec();
    let logits = if batch.is_empty() {
        Vec::new()
    } else {
        let mut backend = inference_backend(&args.device, checkpoint)?;
        log::debug!("predicting on {:?}", backend.info());
        backend.predict_logits(&batch)?
    };
    let mut rows = logits.chunks_exact(classes);
    let outcomes: Vec<Outcome> = inputs
        .iter()
        .map(|input| {
            input.as_ref().map_err(String::clone).and_then(|_| {
                rows.next()
                    .map(|row| {
                        let mut top = top_classes(row, TOP);
                        top.iter_mut().for_each(|c| c.class = labels[c.class]);
                        top
                    })
                    .ok_or_else(|| "the model returned too few logits".to_string())
            })
        })
        .collect();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    // In text mode a lone failure is reported once, as the command's error.
    let lone_failure = !args.json && failed == 1;
    for (path, outcome) in args.images.iter().zip(&outcomes) {
        if !(lone_failure && outcome.is_err()) {
            print_outcome(path, outcome, args.json)?;
        }
    }
    if let (Some(choice), Some(checkpoint), Some(dir)) = (args.explain, &explained, &args.out) {
        // The images that were read, named as `explain` names them.
        let mut names = Names::default();
        let inputs: Vec<Input> = (args.images.iter().zip(&inputs))
            .filter_map(|(path, input)| {
                let pixels = input
                    .as_ref()
                    .ok()?
                    .iter()
                    .map(|&p| pixel_value(p))
                    .collect();
                Some(Input {
                    name: names.of_file(path),
                    source: Source::File {
                        file: path.display().to_string(),
                    },
                    pixels,
                })
            })
            .collect();
        if !inputs.is_empty() {
            let figures = draw_figures(checkpoint, &inputs, choice, dir)?;
            // In JSON mode stdout holds only the JSON lines.
            if !args.json {
                outln!("wrote {} to {}", count(figures, "figure"), dir.display());
            }
        }
    }
    if lone_failure {
        let (path, why) = (args.images.iter().zip(&outcomes))
            .find_map(|(path, o)| o.as_ref().err().map(|why| (path, why)))
            .expect("one failure");
        return Err(bad_input(format!("{}: {why}", path.display())));
    }
    if failed > 0 {
        return Err(bad_input(format!(
            "{failed} of {} could not be classified",
            count(args.images.len(), "image")
        )));
    }
    Ok(())
}

/// The model input for one file, or a message saying what is wrong with it.
fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read ({e})"))?;
    mnist_input(&bytes).map_err(|e| e.to_string())
}

/// One line of `--json` output.
#[derive(Serialize)]
struct JsonLine<'a> {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<&'a [ClassProbability]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn print_outcome(path: &Path, outcome: &Outcome, json: bool) -> Result<()> {
    let file = path.display().to_string();
    if json {
        let line = JsonLine {
            file,
            top: outcome.as_ref().ok().map(Vec::as_slice),
            error: outcome.as_ref().err().map(String::as_str),
        };
        outln!(
            "{}",
            serde_json::to_string(&line).context("serialising a prediction")?
        );
        return Ok(());
    }
    match outcome {
        Ok(top) => {
            let classes: Vec<String> = top
                .iter()
                .map(|c| format!("{} ({:.1}%)", c.class, 100.0 * c.probability))
                .collect();
            outln!("{file}: {}", classes.join(", "));
        }
        Err(why) => errln!("error: {file}: {why}"),
    }
    Ok(())
}
