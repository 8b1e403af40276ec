//! Command-line parsing and the subcommands, one file each; `args.rs` holds the argument
//! groups they share. The library below knows nothing about this module.

// First: its macros serve the modules below.
#[macro_use]
pub mod output;

mod args;
mod bench;
mod eval;
mod explain;
mod explain_evaluate;
mod gpu;
mod predict;
mod print;
mod privacy;
mod profile;
mod prune;
mod quantize;
mod search;
mod summary;
mod train;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mnist-wgpu",
    version,
    about = "Train a CNN on MNIST in WGSL compute shaders, with a CPU reference path"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model and report test metrics.
    Train(Box<train::TrainArgs>),
    /// Evaluate a saved model on the test set.
    Eval(train::EvalArgs),
    /// List every GPU adapter with its backend, type, driver and limits; with --kernels, the
    /// kernel variants a model runs.
    Info(gpu::InfoArgs),
    /// Run every GPU kernel against its CPU twin on this machine's adapter.
    Check(gpu::CheckArgs),
    /// Time every kernel of a GPU training step; optionally write a Chrome trace.
    Profile(profile::ProfileArgs),
    /// Measure training and inference speed against a calibration multiply on the same device.
    Bench(bench::BenchArgs),
    /// Print a model's layers: output shapes, parameters and FLOPs.
    Summary(summary::SummaryArgs),
    /// Classify image files (PNG, JPEG, ...) of single digits with a saved model.
    Predict(predict::PredictArgs),
    /// Show which pixels moved a model's answer: saliency, integrated gradients, SmoothGrad,
    /// Grad-CAM, occlusion (on the CPU path).
    Explain(explain::ExplainArgs),
    /// Quantise a float model to int8 (post-training, calibrated on training images) and
    /// compare their test accuracy.
    Quantize(quantize::QuantizeArgs),
    /// Prune a float model: zero its smallest weights, or remove whole convolution channels,
    /// and compare the test accuracy before and after.
    Prune(prune::PruneArgs),
    /// Search hyperparameters (grid, random, successive halving) over training runs.
    Search(Box<search::SearchArgs>),
    /// Privacy spent by DP-SGD (RDP or PRV accountant): epsilon for a noise multiplier, sample
    /// rate and steps, or the noise multiplier for a target epsilon.
    Privacy(privacy::PrivacyArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::train(*args),
        Command::Eval(args) => eval::eval(args),
        Command::Search(args) => search::search(*args),
        Command::Info(args) => gpu::info(args),
        Command::Check(args) => gpu::check(args),
        Command::Profile(args) => profile::profile(args),
        Command::Bench(args) => bench::bench(args),
        Command::Summary(args) => summary::summary(args),
        Command::Predict(args) => predict::predict(args),
        Command::Explain(args) => explain::explain(args),
        Command::Quantize(args) => quantize::quantize(args),
        Command::Privacy(args) => privacy::privacy(args),
        Command::Prune(args) => prune::prune(args),
    }
}

/// Clap's errors: the message and its hints (the missing arguments, the possible values, a
/// similar flag or subcommand), without the blank lines, the usage and the "For more
/// information" line, which " (see --help)" replaces.
pub fn report_usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind::{
        DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion,
    };
    if matches!(
        err.kind(),
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        let code = if err.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
        return ExitCode::from(code);
    }
    errln!("{}", usage_error_text(&err.to_string()));
    ExitCode::from(2)
}

/// The lines of a clap error worth keeping, the last one ending with " (see --help)".
fn usage_error_text(rendered: &str) -> String {
    let mut lines: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        lines.push("error: invalid arguments");
    }
    format!("{} (see --help)", lines.join("\n"))
}
