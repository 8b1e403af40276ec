//! The `mnist-wgpu` command line. Errors are one line on stderr (a usage error adds clap's
//! hints); the exit code is 2 for bad input (a flag, a file, a checkpoint), 130 for a run
//! stopped by Ctrl-C and 1 for anything else. A closed stdout (`| head`) stops no work: see `cli::output`.

#[macro_use]
mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any thread starts: it sets an environment variable.
    mnist_wgpu::gpu::context::quiet_window_system_noise();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => return cli::report_usage_error(err),
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // An interruption is no error: its message is what to do next.
        Err(err) if err.is::<mnist_wgpu::error::Interrupted>() => {
            errln!("{err}");
            ExitCode::from(mnist_wgpu::error::exit_code(&err) as u8)
        }
        Err(err) => {
            errln!("error: {err:#}");
            ExitCode::from(mnist_wgpu::error::exit_code(&err) as u8)
        }
    }
}
