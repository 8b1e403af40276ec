//! `predict`: classify image files with a saved model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::{inference_backend, DeviceArgs};
use mnist_wgpu::checkpoint_int8::load_any_checkpoint;
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
    #[command(flatten)]
    device: DeviceArgs,
}

/// The top classes of one file, or why it has none.
type Outcome = Result<Vec<ClassProbability>, String>;

/// Prints a line per image, in the order given; a file that fails does not stop the others, but
/// makes the command fail (exit code 2) once every line is out. A single failure is the error
/// itself (one line); several are each printed, then counted.
pub fn predict(args: PredictArgs) -> Result<()> {
    let checkpoint = load_any_checkpoint(&args.model)?;
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
        .into_iter()
        .map(|input| {
            input.and_then(|_| {
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
