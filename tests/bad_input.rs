//! Bad input across every subcommand, flag family and file format, as one table: each case
//! must end with exit code 2 and one line that names the flag or file and says what is wrong
//! (or, for the flag parser's usage errors, clap's message with its hints), and never a panic.
//! Other test files check each format in depth; this one checks that nothing is missed.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{assert_bad_input, assert_usage_error, cli_command, gzip, write_tiny_dataset};
use mnist_wgpu::checkpoint::save_checkpoint;
use mnist_wgpu::checkpoint_int8::save_int8_checkpoint;
use mnist_wgpu::model::quant::QuantizedModel;
use mnist_wgpu::model::{init_params, Arch, Plan, MNIST_INPUT};
use mnist_wgpu::quantize::{quantize, Calibration, QuantizeOptions};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// What a case must print: a one-line error containing the text, or a usage error from the
/// flag parser containing it.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Line(&'static str),
    Usage(&'static str),
}
use Expect::{Line, Usage};

/// A case: environment variables, the arguments (`T` in them is the fixture directory), and
/// what it must print (`T` replaced likewise).
struct Case {
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    expect: Expect,
}

const fn case(args: &'static [&'static str], expect: Expect) -> Case {
    Case {
        env: &[],
        args,
        expect,
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // The command line itself.
    case(&["fly"], Line("unrecognized subcommand 'fly'")),
    case(&["train", "--frobnicate"], Line("unexpected argument '--frobnicate'")),
    case(&["eval"], Usage("--model <PATH>")),
    case(&["train", "--epochs"], Line("a value is required for '--epochs <EPOCHS>'")),
    case(&["train", "--epochs", "three"], Line("invalid value 'three' for '--epochs <EPOCHS>'")),
    case(&["train", "--optimizer", "adagrad"], Usage("[possible values: adam, adamw, sgd]")),
    case(&["train", "--backend", "tpu"], Usage("[possible values: auto, cpu, gpu]")),
    case(&["profile", "--timing", "sometimes"], Usage("'sometimes'")),
    case(&["summary", "--arch", "seed", "--arch-file", "T/arch.txt"], Line("cannot be used with")),
    // train: numbers out of range.
    case(&["train", "--epochs", "0"], Line("--epochs")),
    case(&["train", "--batch-size", "0"], Line("--batch-size")),
    case(&["train", "--lr", "-1"], Line("'-1' is not a positive number")),
    case(&["train", "--lr", "NaN"], Line("'NaN' is not a positive number")),
    case(&["train", "--momentum", "1.5"], Line("--momentum")),
    case(&["train", "--weight-decay", "-1"], Line("--weight-decay")),
    case(&["train", "--warmup-fraction", "2"], Line("--warmup-fraction")),
    case(&["train", "--augment", "on", "--augment-shift", "28"], Line("--augment-shift")),
    case(&["train", "--augment", "on", "--augment-rotation", "500"], Line("--augment-rotation")),
    case(&["train", "--augment", "on", "--augment-scale", "1"], Line("--augment-scale")),
    case(&["train", "--train-limit", "0"], Line("--train-limit")),
    case(&["train", "--val-split", "64"], Line("--val-split 64: leaves no training images")),
    case(&["train", "--early-stopping", "2"], Line("--early-stopping")),
    case(&["train", "--per-class-limit", "0"], Line("--per-class-limit")),
    case(&["train", "--classes", "1,1"], Line("'1,1' lists 1 twice")),
    case(&["train", "--classes", "3"], Line("a classifier needs at least two")),
    case(&["train", "--classes", "2,300"], Line("'300' in '2,300' is not a label 0-255")),
    case(&["train", "--classes", "0,1,2"], Line("--classes: lists 3 classes but the model has 10 outputs")),
    case(&["train", "--arch", "conv4k3-relu-flatten-dense5"], Line("train-labels-idx1-ubyte.gz: label 5 at index 0")),
    // train: transfer learning.
    case(&["train", "--freeze", "conv9"], Line("--freeze: 'conv9' is not a layer of 'conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dense10'; its layers are conv1, conv2, fc")),
    case(&["train", "--freeze", "conv1,conv2,fc"], Line("--freeze conv1,conv2,fc: freezes every layer")),
    case(&["train", "--reinit", "fc"], Line("--reinit: needs --init-from")),
    case(&["train", "--init-from", "T/model.safetensors", "--reinit", "dense"], Line("--reinit: 'dense' is not a layer")),
    case(&["train", "--init-from", "T/missing.safetensors"], Line("T/missing.safetensors: cannot read checkpoint")),
    case(&["train", "--init-from", "T/text.txt"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["train", "--resume", "T/dir", "--freeze", "conv1"], Line("cannot be used with")),
    // train: masked fine-tuning.
    case(&["train", "--prune-schedule", "0:1"], Line("invalid value '0:1' for '--prune-schedule <S0:S1>': 1 is not a fraction in [0, 1)")),
    case(&["train", "--prune-schedule", "-0.1:0.5"], Line("invalid value '-0.1:0.5' for '--prune-schedule <S0:S1>': -0.1 is not a fraction in [0, 1)")),
    case(&["train", "--prune-schedule", "0.9:0.5"], Line("'--prune-schedule <S0:S1>': the final sparsity 0.5 is below the initial 0.9")),
    case(&["train", "--prune-schedule", "0.5"], Line("'--prune-schedule <S0:S1>': '0.5' is not S0:S1")),
    case(&["train", "--prune-scope", "layer"], Usage("--prune-schedule <S0:S1>")),
    case(&["train", "--prune-schedule", "0:0.9", "--prune-scope", "channel"], Usage("[possible values: global, layer]")),
    case(&["train", "--arch", "pool2-flatten", "--prune-schedule", "0:0.5"], Line("--prune-schedule 0:0.5: 'pool2-flatten' has no conv or dense weights to prune")),
    case(&["train", "--resume", "T/dir", "--prune-schedule", "0:0.5"], Line("cannot be used with")),
    // train: the architecture.
    case(&["train", "--arch", "conv32k3-wat"], Line("--arch: token 2 'wat'")),
    case(&["train", "--arch", "conv8k3-dense10"], Line("add flatten")),
    case(&["train", "--arch", "seeed"], Line("--arch: unknown preset or layer 'seeed'; presets are seed, strong; did you mean 'seed'?")),
    case(&["train", "--arch", "conv32k40-relu-flatten-dense10"], Line("--arch")),
    case(&["train", "--arch-file", "T/missing.txt"], Line("T/missing.txt")),
    case(&["train", "--arch-file", "T/arch-bad.txt"], Line("T/arch-bad.txt")),
    case(&["train", "--arch-file", "T/empty"], Line("T/empty")),
    case(&["train", "--arch-file", "T/dir"], Line("T/dir")),
    // train: the data set.
    case(&["train", "--data-dir", "T/missing"], Line("T/missing: data directory not found")),
    case(&["train", "--data-dir", "T/data-empty"], Line("train-images-idx3-ubyte")),
    case(&["train", "--data-dir", "T/data-magic"], Line("train-images-idx3-ubyte")),
    case(&["train", "--data-dir", "T/data-short"], Line("train-images-idx3-ubyte")),
    case(&["train", "--data-dir", "T/data-count"], Line("train-labels-idx1-ubyte")),
    case(&["train", "--data-dir", "T/data-label"], Line("train-labels-idx1-ubyte")),
    case(&["train", "--data-dir", "T/data-gzip"], Line("train-images-idx3-ubyte.gz")),
    case(&["train", "--data-dir", "T/data-size"], Line("t10k-images-idx3-ubyte")),
    Case { env: &[("MNIST_WGPU_DATA_DIR", "T/missing")], args: &["train"], expect: Line("MNIST_WGPU_DATA_DIR") },
    // train: where the results go.
    case(&["train", "--save", "T/dir"], Line("--save T/dir: is a directory")),
    case(&["train", "--save", "T/file/x.safetensors"], Line("T/file is not a directory")),
    case(&["train", "--metrics-json", "T/dir"], Line("--metrics-json T/dir: is a directory")),
    case(&["train", "--plots", "T/file"], Line("--plots T/file: is not a directory")),
    case(&["train", "--run-dir", "T/file"], Line("--run-dir T/file: is not a directory")),
    case(&["train", "--resume", "T/missing"], Line("T/missing")),
    case(&["train", "--resume", "T/dir"], Line("last.safetensors")),
    case(&["train", "--resume", "T/model-run"], Line("not a training checkpoint")),
    case(&["train", "--kernels-from", "T/missing.json"], Line("T/missing.json")),
    case(&["train", "--kernels-from", "T/text.txt"], Line("T/text.txt")),
    case(&["train", "--kernels-from", "T/kernels-wrong.json"], Line("T/kernels-wrong.json")),
    case(&["train", "--backend", "auto", "--adapter", "no-such-gpu-anywhere"], Line("--adapter no-such-gpu-anywhere")),
    // eval: the checkpoint.
    case(&["eval", "--model", "T/missing.safetensors"], Line("T/missing.safetensors: cannot read checkpoint")),
    case(&["eval", "--model", "T/text.txt"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["eval", "--model", "T/empty"], Line("T/empty: not a safetensors checkpoint")),
    case(&["eval", "--model", "T/half.safetensors"], Line("T/half.safetensors")),
    case(&["eval", "--model", "T/dir"], Line("T/dir")),
    case(&["eval", "--model", "T/model.safetensors", "--test-limit", "0"], Line("--test-limit")),
    case(&["eval", "--model", "T/model.safetensors", "--metrics-json", "T/dir"], Line("--metrics-json T/dir: is a directory")),
    case(&["eval", "--model", "T/model.safetensors", "--data-dir", "T/data-magic"], Line("T/data-magic")),
    case(&["eval", "--model", "T/model.safetensors", "--classes", "4,x"], Line("'x' in '4,x' is not a label 0-255")),
    case(&["eval", "--model", "T/model.safetensors", "--classes", "4,5"], Line("--classes: lists 2 classes but the model has 10 outputs")),
    // predict: the images.
    case(&["predict", "--model", "T/model.safetensors"], Usage("<IMAGE>...")),
    case(&["predict", "--model", "T/model.safetensors", "T/missing.png"], Line("T/missing.png")),
    case(&["predict", "--model", "T/model.safetensors", "T/text.txt"], Line("T/text.txt: not an image")),
    case(&["predict", "--model", "T/model.safetensors", "T/broken.png"], Line("T/broken.png")),
    case(&["predict", "--model", "T/model.safetensors", "T/empty"], Line("T/empty")),
    case(&["predict", "--model", "T/model.safetensors", "T/dir"], Line("T/dir")),
    case(&["predict", "--model", "T/text.txt", "T/digit.png"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["predict", "--model", "T/model.safetensors", "T/digit.png", "--explain", "magic", "--out", "T/figures"], Usage("[possible values: saliency, input-x-gradient, integrated-gradients, smoothgrad, gradcam, occlusion, all]")),
    case(&["predict", "--model", "T/model.safetensors", "T/digit.png", "--explain", "saliency"], Line("--explain needs --out DIR for its figures")),
    case(&["predict", "--model", "T/model.safetensors", "T/digit.png", "--out", "T/figures"], Line("--out: predict writes figures only with --explain METHOD")),
    case(&["predict", "--model", "T/model.safetensors", "T/digit.png", "--explain", "saliency", "--out", "T/file"], Line("--out T/file: is not a directory")),
    case(&["predict", "--model", "T/dense.safetensors", "T/digit.png", "--explain", "gradcam", "--out", "T/figures"], Line("--explain gradcam: Grad-CAM needs a convolution, and the model has none")),
    // quantize, and int8 checkpoints wherever a model is read.
    case(&["quantize", "--model", "T/model.safetensors"], Usage("--out <PATH>")),
    case(&["quantize", "--model", "T/model.safetensors", "--out", "T/dir"], Line("--out T/dir: is a directory")),
    case(&["quantize", "--model", "T/model.safetensors", "--out", "T/q.safetensors", "--calibration", "0"], Line("--calibration")),
    case(&["quantize", "--model", "T/model.safetensors", "--out", "T/q.safetensors", "--calibration", "60001"], Line("--calibration 60001: the training set has only 60000 images")),
    case(&["quantize", "--model", "T/model.safetensors", "--out", "T/q.safetensors", "--calibrate", "percentile:0"], Line("'percentile:0' is not minmax or percentile:P")),
    case(&["quantize", "--model", "T/tanh.safetensors", "--out", "T/q.safetensors"], Line("T/tanh.safetensors: cannot quantise: layer 2 'tanh'")),
    case(&["quantize", "--model", "T/int8.safetensors", "--out", "T/q.safetensors"], Line("T/int8.safetensors: an int8 checkpoint")),
    case(&["train", "--init-from", "T/int8.safetensors"], Line("T/int8.safetensors: an int8 checkpoint")),
    case(&["explain", "--model", "T/int8.safetensors", "--test-index", "0", "--method", "saliency"], Line("T/int8.safetensors: an int8 checkpoint")),
    case(&["eval", "--model", "T/int8-half.safetensors"], Line("T/int8-half.safetensors: not a safetensors checkpoint")),
    case(&["eval", "--model", "T/int8-dtype.safetensors"], Line("tensor 'conv1.weight' is F32, expected I8")),
    case(&["eval", "--model", "T/int8-zero.safetensors"], Line("tensor 'conv2.weight_scale' holds the scale 0 at 3; scales must be positive and finite")),
    case(&["eval", "--model", "T/int8-nan.safetensors"], Line("tensor 'fc.input_scale' holds the scale NaN")),
    case(&["predict", "--model", "T/int8-negative.safetensors", "T/digit.png"], Line("tensor 'conv1.weight_scale' holds the scale -0.5 at 0")),
    case(&["predict", "--model", "T/int8.safetensors", "T/digit.png", "--explain", "saliency", "--out", "T/figures"], Line("T/int8.safetensors: an int8 checkpoint; --explain needs the float model")),
    // prune: the sparsity, the model and where it goes.
    case(&["prune", "--model", "T/model.safetensors"], Usage("--out <PATH>")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/p.safetensors", "--sparsity", "1"], Line("invalid value '1' for '--sparsity <S>': 1 is not a fraction in [0, 1)")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/p.safetensors", "--sparsity", "-0.1"], Line("invalid value '-0.1' for '--sparsity <S>'")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/p.safetensors", "--sparsity", "half"], Line("'half' is not a fraction in [0, 1)")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/p.safetensors", "--sparsity", "0.99", "--structured", "channels"], Line("--sparsity 0.99: removes all 32 channels of conv1; every convolution must keep one")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/p.safetensors", "--sparsity", "0.9", "--structured", "kernels"], Usage("[possible values: channels]")),
    case(&["prune", "--model", "T/missing.safetensors", "--out", "T/dir", "--sparsity", "0.5"], Line("--out T/dir: is a directory")),
    case(&["prune", "--model", "T/model.safetensors", "--out", "T/file/p.safetensors", "--sparsity", "0.5"], Line("T/file is not a directory")),
    case(&["prune", "--model", "T/text.txt", "--out", "T/p.safetensors", "--sparsity", "0.5"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["prune", "--model", "T/half.safetensors", "--out", "T/p.safetensors", "--sparsity", "0.5"], Line("T/half.safetensors")),
    case(&["prune", "--model", "T/int8.safetensors", "--out", "T/p.safetensors", "--sparsity", "0.5"], Line("T/int8.safetensors: an int8 checkpoint")),
    case(&["summary", "--model", "T/text.txt"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["summary", "--model", "T/model.safetensors", "--arch", "seed"], Line("cannot be used with")),
    // explain: the method, its settings and the inputs.
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "magic"], Usage("[possible values: saliency, input-x-gradient, integrated-gradients, smoothgrad, gradcam, occlusion, all]")),
    case(&["explain", "--model", "T/model.safetensors", "--method", "saliency"], Usage("<IMAGE>")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "gradcam", "--layer", "fc"], Line("--layer 'fc' is not a convolution of the model; its convolutions are conv1, conv2")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "saliency", "--target", "10"], Line("--target 10: not a class of the model; its classes are 0-9")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "integrated-gradients", "--steps", "0"], Line("--steps")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "smoothgrad", "--samples", "0"], Line("--samples")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "smoothgrad", "--noise", "-1"], Line("'-1' is not a number in [0, 10]")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "occlusion", "--window", "0"], Line("--window")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "10000", "--method", "saliency"], Line("--test-index 10000: the test set has 10000 images (0-9999)")),
    case(&["explain", "--model", "T/model.safetensors", "--method", "saliency", "T/text.txt"], Line("T/text.txt: not an image")),
    case(&["explain", "--model", "T/model.safetensors", "--method", "saliency", "T/missing.png"], Line("T/missing.png: cannot read")),
    case(&["explain", "--model", "T/text.txt", "--method", "saliency", "T/digit.png"], Line("T/text.txt: not a safetensors checkpoint")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "saliency", "--out", "T/file"], Line("--out T/file: is not a directory")),
    case(&["explain", "--model", "T/model.safetensors", "--test-index", "0", "--method", "saliency", "--json", "T/dir"], Line("--json T/dir: is a directory")),
    case(&["explain", "--model", "T/dense.safetensors", "--test-index", "0", "--method", "gradcam"], Line("--method gradcam: Grad-CAM needs a convolution, and the model has none")),
    case(&["explain", "--model", "T/model.safetensors", "--evaluate", "0", "--method", "saliency"], Line("invalid value '0' for '--evaluate <N>'")),
    case(&["explain", "--model", "T/model.safetensors", "--evaluate", "10001", "--method", "saliency"], Line("invalid value '10001' for '--evaluate <N>'")),
    case(&["explain", "--model", "T/model.safetensors", "--evaluate", "5", "--test-index", "0", "--method", "saliency"], Line("cannot be used with")),
    case(&["explain", "--model", "T/model.safetensors", "--evaluate", "5", "--target", "3", "--method", "saliency"], Line("cannot be used with")),
    case(&["explain", "--model", "T/model.safetensors", "--evaluate", "5", "--method", "saliency", "--out", "T/file"], Line("--out T/file: is not a directory")),
    // The other subcommands.
    case(&["info", "--kernels", "--arch", "banana"], Line("--arch")),
    case(&["info", "--kernels", "--batch-size", "0"], Line("--batch-size")),
    case(&["summary", "--arch-file", "T/empty"], Line("T/empty")),
    case(&["summary", "--arch", "conv32k3-relu-pool9-flatten-dense10"], Line("--arch")),
    case(&["profile", "--steps", "0"], Line("--steps")),
    case(&["profile", "--batch-size", "0"], Line("--batch-size")),
    case(&["profile", "--trace", "T/dir"], Line("--trace T/dir: is a directory")),
    case(&["bench", "--seconds", "0"], Line("--seconds")),
    case(&["bench", "--batch-size", "0"], Line("--batch-size")),
    case(&["bench", "--json", "T/dir"], Line("--json T/dir: is a directory")),
    case(&["bench", "--arch", "conv4k3-relu-flatten-dense5"], Line("train-labels-idx1-ubyte.gz: label 5 at index 0")),
    case(&["check", "--only", "no-such-kernel"], Line("--only no-such-kernel")),
    case(&["check", "--adapter", "no-such-gpu-anywhere"], Line("--adapter no-such-gpu-anywhere")),
    // privacy: the accountant's numbers.
    case(&["privacy", "--sample-rate", "2", "--noise-multiplier", "1", "--steps", "5"], Line("--sample-rate 2: must be in (0, 1]")),
    case(&["privacy", "--sample-rate", "0.01", "--noise-multiplier", "0", "--steps", "5"], Line("--noise-multiplier 0: no noise means no privacy")),
    case(&["privacy", "--sample-rate", "0.01", "--noise-multiplier", "1", "--steps", "5", "--delta", "1"], Line("--delta 1: must be in (0, 1)")),
    case(&["privacy", "--sample-rate", "0.01", "--target-epsilon", "0.01", "--steps", "5"], Line("--target-epsilon 0.01: cannot be reached")),
    case(&["privacy", "--sample-rate", "0.01", "--noise-multiplier", "1"], Usage("--steps <S>")),
    // search: the space file and its flags.
    case(&["search"], Usage("--space <PATH>")),
    case(&["search", "--space", "T/missing.toml"], Line("--space T/missing.toml")),
    case(&["search", "--space", "T/space-unknown.toml"], Line("unknown key 'lrr'; known keys: ")),
    case(&["search", "--space", "T/space-syntax.toml"], Line("--space T/space-syntax.toml: line 2")),
    case(&["search", "--space", "T/space-empty-choice.toml"], Line("batch_size: the choice list is empty")),
    case(&["search", "--space", "T/space-reversed.toml"], Line("lr: bounds [0.01, 0.0001] are not increasing")),
    case(&["search", "--space", "T/space-log-zero.toml"], Line("lr: log_uniform bounds must be positive")),
    case(&["search", "--space", "T/space-range.toml", "--strategy", "grid"], Line("lr: a grid needs a fixed value or a choice list")),
    case(&["search", "--space", "T/space-bad-lr.toml"], Line("trial 0 (lr -1): invalid value '-1' for '--lr <LR>'")),
    case(&["search", "--space", "T/space-epochs.toml"], Line("unknown key 'epochs'")),
    case(&["search", "--space", "T/space-grid.toml", "--strategy", "grid", "--trials", "3"], Line("--trials 3: the grid of")),
    case(&["search", "--space", "T/space-grid.toml", "--out", "T/file"], Line("--out T/file: is not a directory")),
    case(&["search", "--space", "T/space-grid.toml", "--eta", "1"], Line("--eta")),
    case(&["search", "--resume", "T/dir"], Line("search.json")),
    case(&["search", "--space", "T/space-grid.toml", "--backend", "auto", "--parallel", "2"], Line("--parallel 2: only with --backend cpu")),
    // The environment.
    Case { env: &[("MNIST_WGPU_SHADER_CHECKS", "some")], args: &["check"], expect: Line("MNIST_WGPU_SHADER_CHECKS") },
    Case { env: &[("MNIST_WGPU_COMPILE_THREADS", "0")], args: &["info", "--kernels"], expect: Line("MNIST_WGPU_COMPILE_THREADS") },
];

/// Flags that keep a case short should its error not come first: it must fail before any
/// work, but a bug must not turn it into a full training run.
fn short_run_flags(subcommand: &str) -> &'static [(&'static str, &'static str)] {
    match subcommand {
        "train" => &[
            ("--backend", "cpu"),
            ("--epochs", "1"),
            ("--train-limit", "64"),
            ("--test-limit", "10"),
        ],
        "eval" => &[("--backend", "cpu"), ("--test-limit", "10")],
        "quantize" => &[("--calibration", "2")],
        "prune" => &[("--test-limit", "10")],
        "bench" => &[("--backend", "cpu"), ("--seconds", "1")],
        "search" => &[
            ("--backend", "cpu"),
            ("--max-epochs", "1"),
            ("--trials", "2"),
            ("--val-split", "64"),
            ("--test-limit", "10"),
        ],
        _ => &[],
    }
}

fn fixtures(t: &Path) {
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    save_checkpoint(
        &t.join("model.safetensors"),
        &plan,
        &init_params(&plan, 1),
        &[],
    )
    .unwrap();
    // A model without convolutions, which Grad-CAM cannot explain.
    let dense = Plan::new(&Arch::parse("flatten-dense10").unwrap(), MNIST_INPUT).unwrap();
    let dense_params = init_params(&dense, 1);
    save_checkpoint(&t.join("dense.safetensors"), &dense, &dense_params, &[]).unwrap();
    let model = std::fs::read(t.join("model.safetensors")).unwrap();
    std::fs::write(t.join("half.safetensors"), &model[..model.len() / 2]).unwrap();
    int8_fixtures(t);
    let tanh = Plan::new(
        &Arch::parse("conv4k3-tanh-flatten-dense10").unwrap(),
        MNIST_INPUT,
    )
    .unwrap();
    save_checkpoint(
        &t.join("tanh.safetensors"),
        &tanh,
        &init_params(&tanh, 1),
        &[],
    )
    .unwrap();
    // A run directory whose last checkpoint is a plain model, without the run's state.
    std::fs::create_dir(t.join("model-run")).unwrap();
    std::fs::write(t.join("model-run/last.safetensors"), &model).unwrap();

    std::fs::create_dir(t.join("dir")).unwrap();
    std::fs::write(t.join("file"), b"a file\n").unwrap();
    std::fs::write(t.join("empty"), b"").unwrap();
    std::fs::write(t.join("text.txt"), b"hello\n").unwrap();
    std::fs::write(t.join("arch.txt"), b"seed\n").unwrap();
    std::fs::write(t.join("arch-bad.txt"), b"conv32k3-relu-banana\n").unwrap();
    std::fs::write(t.join("kernels-wrong.json"), br#"{"kernels": 3}"#).unwrap();
    for (name, text) in [
        ("space-unknown.toml", "lrr = 0.1\n"),
        ("space-syntax.toml", "train_limit = 64\nlr = { log_uniform = [1e-4, \n"),
        ("space-empty-choice.toml", "batch_size = { choice = [] }\n"),
        ("space-reversed.toml", "lr = { log_uniform = [1e-2, 1e-4] }\n"),
        ("space-log-zero.toml", "lr = { log_uniform = [0, 1e-4] }\n"),
        ("space-range.toml", "lr = { uniform = [1e-4, 1e-2] }\n"),
        ("space-bad-lr.toml", "lr = -1\n"),
        ("space-epochs.toml", "epochs = 3\n"),
        ("space-grid.toml", "train_limit = 64\nlr = { choice = [0.001, 0.002] }\nbatch_size = { choice = [32, 64] }\n"),
    ] {
        std::fs::write(t.join(name), text).unwrap();
    }

    let digit = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * y) % 256) as u8]));
    digit.save(t.join("digit.png")).unwrap();
    let png = std::fs::read(t.join("digit.png")).unwrap();
    std::fs::write(t.join("broken.png"), &png[..png.len() / 2]).unwrap();

    let data = |name: &str, damage: &dyn Fn(&Path)| {
        let dir = t.join(name);
        std::fs::create_dir(&dir).unwrap();
        write_tiny_dataset(&dir, 64, 16);
        damage(&dir);
    };
    let train_images = |d: &Path| d.join("train-images-idx3-ubyte");
    let train_labels = |d: &Path| d.join("train-labels-idx1-ubyte");
    data("data-empty", &|d| {
        for entry in std::fs::read_dir(d).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    });
    data("data-magic", &|d| {
        let mut bytes = std::fs::read(train_images(d)).unwrap();
        bytes[2] = 0x07;
        std::fs::write(train_images(d), bytes).unwrap();
        let test = d.join("t10k-images-idx3-ubyte");
        let mut bytes = std::fs::read(&test).unwrap();
        bytes[2] = 0x07;
        std::fs::write(test, bytes).unwrap();
    });
    data("data-short", &|d| {
        let bytes = std::fs::read(train_images(d)).unwrap();
        std::fs::write(train_images(d), &bytes[..bytes.len() - 100]).unwrap();
    });
    data("data-count", &|d| {
        std::fs::write(train_labels(d), common::idx(0x801, &[63], &[1; 63])).unwrap();
    });
    data("data-label", &|d| {
        std::fs::write(train_labels(d), common::idx(0x801, &[64], &[11; 64])).unwrap();
    });
    data("data-gzip", &|d| {
        std::fs::remove_file(train_images(d)).unwrap();
        std::fs::write(d.join("train-images-idx3-ubyte.gz"), b"not gzip at all").unwrap();
    });
    data("data-size", &|d| {
        // 16 images of 27 x 27 pixels in the test set.
        let body = vec![0u8; 16 * 27 * 27];
        let file = common::idx(0x803, &[16, 27, 27], &body);
        std::fs::write(d.join("t10k-images-idx3-ubyte"), &file).unwrap();
        std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gzip(&file)).unwrap();
        std::fs::remove_file(d.join("t10k-images-idx3-ubyte")).unwrap();
    });
}

/// An int8 model of the seed arch (untrained: only the file matters) and damaged copies.
fn int8_fixtures(t: &Path) {
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let images = vec![128u8; 2 * 784];
    let options = QuantizeOptions {
        calibration: Calibration::MinMax,
        per_tensor: false,
    };
    let model = quantize(&plan, &init_params(&plan, 1), &images, options).unwrap();
    save_int8_checkpoint(&t.join("int8.safetensors"), &model, &[]).unwrap();
    let bytes = std::fs::read(t.join("int8.safetensors")).unwrap();
    std::fs::write(t.join("int8-half.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let damaged = |name: &str, damage: &dyn Fn(&mut QuantizedModel)| {
        let mut m = model.clone();
        damage(&mut m);
        save_int8_checkpoint(&t.join(name), &m, &[]).unwrap();
    };
    damaged("int8-zero.safetensors", &|m| {
        m.layers[1].weight_scale[3] = 0.0
    });
    damaged("int8-nan.safetensors", &|m| {
        m.layers[2].input_scale = f32::NAN
    });
    damaged("int8-negative.safetensors", &|m| {
        m.layers[0].weight_scale[0] = -0.5
    });
    // conv1.weight stored as F32 instead of I8, the rest as written.
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let float_weight: Vec<u8> = (file.tensor("conv1.weight").unwrap().data().iter())
        .flat_map(|&q| f32::from(q as i8).to_le_bytes())
        .collect();
    let views: Vec<(String, TensorView)> = (file.tensors().into_iter())
        .map(|(name, view)| match name.as_str() {
            "conv1.weight" => {
                let shape = view.shape().to_vec();
                (
                    name,
                    TensorView::new(Dtype::F32, shape, &float_weight).unwrap(),
                )
            }
            _ => (name, view),
        })
        .collect();
    let out = safetensors::serialize(views, header.metadata().clone()).unwrap();
    std::fs::write(t.join("int8-dtype.safetensors"), out).unwrap();
}

/// Runs the binary, failing the test if it takes more than two minutes (a case that started
/// the work it should have refused).
fn run_within_limit(args: &[String], env: &[(&str, String)]) -> Output {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = cli_command(&strs);
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{args:?} still ran after two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn every_bad_input_is_one_clear_line_with_exit_code_2() {
    assert!(CASES.len() >= 50, "{} cases", CASES.len());
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap().to_string();
    fixtures(tmp.path());
    let fill = |s: &str| match s {
        "T" => t.clone(),
        _ if s.starts_with("T/") => format!("{t}{}", &s[1..]),
        _ => s.replace(" T/", &format!(" {t}/")),
    };
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
        // A resumed run takes its sizes from the run directory.
        let resumes = case.args.contains(&"--resume");
        for (flag, value) in short_run_flags(case.args[0]) {
            if !case.args.contains(flag) && !resumes {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        if case.args[0] == "train" && !case.args.contains(&"--run-dir") && !resumes {
            args.extend(["--run-dir".into(), format!("{t}/runs/{i}")]);
        }
        if case.args[0] == "search" && !case.args.contains(&"--out") && !resumes {
            args.extend(["--out".into(), format!("{t}/searches/{i}")]);
        }
        let env: Vec<(&str, String)> = case.env.iter().map(|(k, v)| (*k, fill(v))).collect();
        let out = run_within_limit(&args, &env);
        let check = std::panic::catch_unwind(|| match case.expect {
            Line(needle) => assert_bad_input(&out, &fill(needle)),
            Usage(needle) => assert_usage_error(&out, &[&fill(needle)]),
        });
        if let Err(e) = check {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{args:?}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
