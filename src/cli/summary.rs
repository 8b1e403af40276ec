//! `summary`: a model's layer table (output shapes, parameters, FLOPs), like Keras'
//! `model.summary()`; for a saved model, also the sparsity of its weights.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::ArchArgs;
use mnist_wgpu::checkpoint_int8::{load_any_checkpoint, AnyCheckpoint};
use mnist_wgpu::model::{Layer, ParamSpec, Plan, Step};
use mnist_wgpu::prune::Sparsity;
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    #[command(flatten)]
    arch: ArchArgs,
    /// Summarise a saved model (float or int8) instead, with the sparsity of its weights.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["arch", "arch_file"])]
    model: Option<PathBuf>,
}

pub fn summary(args: SummaryArgs) -> Result<()> {
    let (plan, sparsity) = match &args.model {
        Some(path) => {
            let checkpoint = load_any_checkpoint(path)?;
            (checkpoint.plan().clone(), Some(sparsity_of(&checkpoint)))
        }
        None => (args.arch.plan()?.1, None),
    };
    outln!("{}", plan.arch);
    let sparsity_header = match sparsity {
        Some(_) => format!(" {:>9}", "sparsity"),
        None => String::new(),
    };
    outln!(
        "\n{:>3}  {:<12} {:<12} {:>10} {:>14}{sparsity_header}",
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
    // The sparsity column names the conv and dense rows, in order.
    let mut layers = sparsity.iter().flat_map(|s| &s.layers);
    for (i, step) in plan.steps.iter().enumerate() {
        let out = step.output;
        let zeros = match step.layer {
            Layer::Conv2d { .. } | Layer::Dense { .. } => layers.next(),
            _ => None,
        }
        .map_or(String::new(), |l| {
            format!(" {:>8.2}%", 100.0 * l.fraction())
        });
        outln!(
            "{:>3}  {:<12} {:<12} {:>10} {:>14.3}{zeros}",
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
    if let Some(sparsity) = &sparsity {
        outln!("{}", sparsity_line(sparsity));
    }
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

/// The exactly-zero weights of a saved model's conv and dense layers.
pub fn sparsity_of(checkpoint: &AnyCheckpoint) -> Sparsity {
    match checkpoint {
        AnyCheckpoint::Float(c) => Sparsity::of(&c.plan, &c.params),
        AnyCheckpoint::Int8(c) => Sparsity::of_int8(&c.model),
    }
}

/// "weight sparsity 50.00% (17248 of 34496 conv and dense weights are zero)".
pub fn sparsity_line(sparsity: &Sparsity) -> String {
    format!(
        "weight sparsity {:.2}% ({} of {} conv and dense weights are zero)",
        100.0 * sparsity.fraction(),
        sparsity.zeros(),
        sparsity.weights()
    )
}
