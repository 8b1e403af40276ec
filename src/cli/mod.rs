//! Command-line parsing and the subcommands. The library below knows nothing about this module.

mod gpu;
mod print;
mod profile;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use mnist_wgpu::backend::Backend;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
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
    /// List every GPU adapter with its backend, type, driver and limits.
    Info,
    /// Run every GPU kernel against its CPU twin on this machine's adapter.
    Check(gpu::CheckArgs),
    /// Time every kernel of a GPU training step; optionally write a Chrome trace.
    Profile(profile::ProfileArgs),
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
    /// Where to run: auto (the best GPU adapter, else the CPU), cpu or gpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Use the GPU adapter whose name contains this text (see `mnist-wgpu info`).
    #[arg(long, value_name = "SUBSTRING")]
    adapter: Option<String>,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::train(args),
        Command::Eval(args) => train::eval(args),
        Command::Info => gpu::info(),
        Command::Check(args) => gpu::check(args),
        Command::Profile(args) => profile::profile(args),
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

/// Builds the backend the user asked for: `auto` takes the best GPU adapter and falls back to
/// the CPU with a warning.
fn make_backend(
    data: &DataArgs,
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
) -> Result<Box<dyn Backend>> {
    if data.backend != BackendChoice::Cpu {
        match GpuContext::new(data.adapter.as_deref())? {
            Some(ctx) => return Ok(Box::new(GpuBackend::new(&ctx, plan, &params, optimizer)?)),
            None if data.backend == BackendChoice::Gpu => {
                return Err(bad_input(format!("--backend gpu: no GPU adapter found; {SOFTWARE_ADAPTER_HINT}, or use --backend cpu")))
            }
            None => eprintln!("warning: no GPU adapter found, training on the CPU reference path; {SOFTWARE_ADAPTER_HINT}"),
        }
    }
    log::debug!("backend: CPU reference path");
    Ok(Box::new(CpuBackend::new(plan, params, optimizer)))
}

const SOFTWARE_ADAPTER_HINT: &str =
    "for a software Vulkan adapter install Mesa's drivers (apt-get install mesa-vulkan-drivers libvulkan1)";
