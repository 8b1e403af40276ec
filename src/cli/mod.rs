//! Command-line parsing and the subcommands. The library below knows nothing about this module.

mod print;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use mnist_wgpu::backend::Backend;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::model::{Params, Plan};

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
    Train(train::TrainArgs),
    /// Evaluate a saved model on the test set.
    Eval(train::EvalArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The GPU when an adapter exists, else the CPU reference path.
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerChoice {
    Adam,
    Sgd,
}

/// Flags shared by the commands that read MNIST.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Directory with the four MNIST IDX files (gzipped or raw).
    #[arg(long, default_value = "data/mnist")]
    data_dir: PathBuf,
    /// Use only the first N test images.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    test_limit: Option<u64>,
    /// Where to run: auto, cpu or gpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::train(args),
        Command::Eval(args) => train::eval(args),
    }
}

/// Clap's errors are several lines with usage; we print its first line and a hint.
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
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}

/// Builds the backend the user asked for.
fn make_backend(
    choice: BackendChoice,
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
) -> Result<Box<dyn Backend>> {
    match choice {
        BackendChoice::Gpu => Err(bad_input(
            "--backend gpu: the GPU path is not built yet; use --backend cpu",
        )),
        BackendChoice::Auto | BackendChoice::Cpu => {
            log::debug!("backend: CPU reference path");
            Ok(Box::new(CpuBackend::new(plan, params, optimizer)))
        }
    }
}
