//! `quantize`: post-training static quantisation of a float checkpoint to int8
//! (docs/int8.md), with float and int8 test accuracy side by side.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::args::{check_output_file, data_dir, load_mnist_from};
use mnist_wgpu::backend::Backend;
use mnist_wgpu::checkpoint::{load_checkpoint, CLASSES_KEY};
use mnist_wgpu::checkpoint_int8::save_int8_checkpoint;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::int8::Int8Net;
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::IMAGE_PIXELS;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::quantize::{quantize as quantize_model, Calibration, Comparison, QuantizeOptions};
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The float checkpoint to quantise (written by `train`).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Where to write the int8 checkpoint.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Calibrate the activation ranges on the first N training images.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    calibration: u64,
    /// How to measure an activation range: minmax (largest |x|) or percentile:P (the P-th
    /// percentile of |x|, P in (0, 100]).
    #[arg(long, value_name = "RULE", default_value = "minmax", value_parser = Calibration::parse)]
    calibrate: Calibration,
    /// One weight scale per tensor instead of per output channel (for comparison).
    #[arg(long)]
    per_tensor: bool,
    /// Directory with the four MNIST IDX files [default: $MNIST_WGPU_DATA_DIR, else the
    /// bundled copy].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn quantize(args: QuantizeArgs) -> Result<()> {
    check_output_file("--out", &args.out, &args.out)?;
    let checkpoint = load_checkpoint(&args.model)?;
    let mut mnist = load_mnist_from(data_dir(args.data_dir.as_deref())?.as_deref())?;
    // A model trained with --classes calibrates and tests on its own labels only.
    let stored = checkpoint.metadata.get(CLASSES_KEY).cloned();
    if stored.is_some() {
        let list: Vec<u8> = checkpoint.labels.iter().map(|&l| l as u8).collect();
        mnist.train = mnist.train.select_classes(&list);
        mnist.test = mnist.test.select_classes(&list);
    }
    let n = args.calibration as usize;
    if n > mnist.train.len() {
        return Err(bad_input(format!(
            "--calibration {n}: the training set has only {}",
            count(mnist.train.len(), "image")
        )));
    }
    let options = QuantizeOptions {
        calibration: args.calibrate,
        per_tensor: args.per_tensor,
    };
    let calibration = &mnist.train.images[..n * IMAGE_PIXELS];
    let model = quantize_model(&checkpoint.plan, &checkpoint.params, calibration, options)
        .map_err(|why| bad_input(format!("{}: cannot quantise: {why}", args.model.display())))?;
    outln!(
        "quantizing {} ({}) to int8 ({}): weights {}, activations calibrated by {} on {}",
        args.model.display(),
        checkpoint.plan.arch,
        model.plan.arch,
        model.scheme.weights,
        model.scheme.calibration,
        count(n, "training image")
    );
    let classes = checkpoint.plan.classes();
    let test = &mnist.test;
    let mut float = CpuBackend::new(checkpoint.plan, checkpoint.params, Optimizer::adam(1e-3));
    let float_logits = float.predict_logits(&test.images)?;
    let mut extra = vec![("quantized_from", file_name(&args.model))];
    if let Some(classes) = stored {
        extra.push((CLASSES_KEY, classes));
    }
    let net = Int8Net::new(model);
    let int8_logits = net.logits(&test.images);
    let c = Comparison::of(&float_logits, &int8_logits, &test.labels, classes);
    let (f, q) = (c.percent(c.float_correct), c.percent(c.int8_correct));
    outln!("float test accuracy {f:.2}% ({})", count(c.images, "image"));
    outln!("int8 test accuracy  {q:.2}% ({:+.2} pp)", q - f);
    outln!(
        "top-1 agreement     {:.2}% ({} of {})",
        c.percent(c.agree),
        c.agree,
        c.images
    );
    save_int8_checkpoint(&args.out, &net.model, &extra)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (float_size, int8_size) = (size(&args.model), size(&args.out));
    outln!(
        "sizes: float {float_size} bytes, int8 {int8_size} bytes ({:.1}% of float)",
        100.0 * int8_size as f64 / float_size.max(1) as f64
    );
    outln!("wrote {}", args.out.display());
    Ok(())
}

fn file_name(path: &Path) -> String {
    (path.file_name()).map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}
