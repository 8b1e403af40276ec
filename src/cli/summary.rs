//! `summary`: a model's layer table (output shapes, parameters, FLOPs), like Keras'
//! `model.summary()`.

use anyhow::Result;
use clap::Args;

use super::args::ArchArgs;
use mnist_wgpu::model::{ParamSpec, Plan, Step};
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    #[command(flatten)]
    arch: ArchArgs,
}

pub fn summary(args: SummaryArgs) -> Result<()> {
    let (arch, plan) = args.arch.plan()?;
    outln!("{arch}");
    outln!(
        "\n{:>3}  {:<12} {:<12} {:>10} {:>14}",
        "#",
        "layer",
        "output",
        "params",
        "forward MFLOP"
    );
    let input = plan.input;
    outln!(
        "{:>3}  {:<12} {:<12} {:>10} {:>14}",
        "",
        "input",
        format!("{}x{}x{}", input.channels, input.height, input.width),
        "",
        ""
    );
    for (i, step) in plan.steps.iter().enumerate() {
        let out = step.output;
        outln!(
            "{:>3}  {:<12} {:<12} {:>10} {:>14.3}",
            i + 1,
            step.layer.to_string(),
            format!("{}x{}x{}", out.channels, out.height, out.width),
            step_params(&plan, step),
            mflop(step.forward_macs())
        );
    }
    let params: usize = plan.params.iter().map(ParamSpec::len).sum();
    outln!(
        "\n{} ({:.1} KiB as f32); per image: {:.3} MFLOP forward, {:.3} MFLOP training (forward and backward)",
        count(params, "parameter"),
        params as f64 * 4.0 / 1024.0,
        mflop(plan.forward_macs()),
        mflop(plan.training_macs())
    );
    Ok(())
}

/// Parameters a step owns (weights and bias).
fn step_params(plan: &Plan, step: &Step) -> usize {
    step.weight_index.map_or(0, |w| {
        plan.params[w..w + 2].iter().map(ParamSpec::len).sum()
    })
}

/// Floating-point operations (a multiply-add counts two), in millions.
fn mflop(macs: usize) -> f64 {
    2.0 * macs as f64 / 1e6
}
