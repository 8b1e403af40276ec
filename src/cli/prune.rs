//! `prune`: zero the smallest weights of a float checkpoint, or remove whole convolution
//! channels (docs/pruning.md), with the test accuracy before and after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::args::{check_output_file, data_dir, load_mnist_from};
use mnist_wgpu::checkpoint::{load_checkpoint, save_checkpoint, CLASSES_KEY};
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::{check_labels, labels_file, Split};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::model::{ParamSpec, Params, Plan};
use mnist_wgpu::prune::{check_sparsity, prune_channels, prune_unstructured, Scope, Sparsity};
use mnist_wgpu::text::count;
use mnist_wgpu::train::evaluate;

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The float checkpoint to prune (written by `train`, or by `prune`).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Where to write the pruned checkpoint.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The fraction in [0, 1) of the conv and dense weights to zero (with --structured
    /// channels: of the convolutions' output channels to remove).
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = sparsity)]
    sparsity: f64,
    /// global: rank all layers together; layer: prune each layer to S [default: global, layer
    /// with --structured].
    #[arg(long, value_enum)]
    scope: Option<ScopeChoice>,
    /// Remove whole output channels of the convolutions (by the L1 norm of their filters)
    /// instead of single weights: a smaller model with a smaller arch.
    #[arg(long, value_enum, value_name = "WHAT")]
    structured: Option<Structure>,
    /// Directory with the four MNIST IDX files [default: $MNIST_WGPU_DATA_DIR, else the
    /// bundled copy].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Test on the first N test images only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    test_limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScopeChoice {
    Global,
    Layer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Structure {
    Channels,
}

fn sparsity(text: &str) -> Result<f64, String> {
    let s: f64 = (text.parse()).map_err(|_| format!("'{text}' is not a fraction in [0, 1)"))?;
    check_sparsity(s).map(|()| s)
}

/// Metadata of a training checkpoint that a pruned model, which has no optimiser state, must
/// not carry over: the training-checkpoint marker, the optimiser step, the run and its state.
const TRAINING_STATE_KEYS: &[&str] = &["training_format", "optimizer_step", "run", "state"];
/// The metadata key that records how a model was pruned.
const PRUNING_KEY: &str = "pruning";

pub fn prune(args: PruneArgs) -> Result<()> {
    check_output_file("--out", &args.out, &args.out)?;
    let checkpoint = load_checkpoint(&args.model)?;
    let dir = data_dir(args.data_dir.as_deref())?;
    let mut test = load_mnist_from(dir.as_deref())?.test;
    // A model trained with --classes tests on its own labels only.
    if checkpoint.metadata.contains_key(CLASSES_KEY) {
        let list: Vec<u8> = checkpoint.labels.iter().map(|&l| l as u8).collect();
        test = test.select_classes(&list);
    }
    check_labels(
        &test,
        checkpoint.plan.classes(),
        &labels_file(dir.as_deref(), false),
    )?;
    if let Some(n) = args.test_limit {
        test = test.truncated(n as usize);
    }
    let structured = args.structured.is_some();
    let scope = match args.scope {
        Some(ScopeChoice::Global) => Scope::Global,
        Some(ScopeChoice::Layer) => Scope::Layer,
        None if structured => Scope::Layer,
        None => Scope::Global,
    };
    let (plan, params) = (&checkpoint.plan, &checkpoint.params);
    let (pruned_plan, pruned_params) = if structured {
        let pruning = prune_channels(plan, params, args.sparsity, scope)
            .map_err(|why| bad_input(format!("--sparsity {}: {why}", args.sparsity)))?;
        outln!(
            "pruning {} ({}) to sparsity {}: the convolution channels of smallest L1 norm, {scope} scope",
            args.model.display(),
            plan.arch,
            args.sparsity
        );
        for cut in &pruning.cuts {
            outln!(
                "  {}: {} of {} channels kept",
                cut.name,
                cut.kept.len(),
                cut.channels
            );
        }
        outln!("arch {} -> {}", plan.arch, pruning.plan.arch);
        (pruning.plan, pruning.params)
    } else {
        outln!(
            "pruning {} ({}) to sparsity {}: the conv and dense weights of smallest magnitude, {scope} scope",
            args.model.display(),
            plan.arch,
            args.sparsity
        );
        let (pruned, _) = prune_unstructured(plan, params, args.sparsity, scope);
        (plan.clone(), pruned)
    };
    print_sparsity(
        &Sparsity::of(plan, params),
        &Sparsity::of(&pruned_plan, &pruned_params),
    );
    let (before, after) = (parameters(plan), parameters(&pruned_plan));
    let nonzero = |p: &Params<f32>| {
        p.tensors
            .iter()
            .flat_map(|t| &t.data)
            .filter(|&&x| x != 0.0)
            .count()
    };
    outln!(
        "parameters {before} -> {after} ({} -> {} nonzero)",
        nonzero(params),
        nonzero(&pruned_params)
    );
    let accuracy_before = accuracy(plan, params, &test)?;
    let accuracy_after = accuracy(&pruned_plan, &pruned_params, &test)?;
    outln!(
        "test accuracy {accuracy_before:.2}% -> {accuracy_after:.2}% ({:+.2} pp, {}, CPU path)",
        accuracy_after - accuracy_before,
        count(test.len(), "image")
    );
    let record = serde_json::json!({
        "sparsity": args.sparsity,
        "scope": scope.to_string(),
        "structured": if structured { "channels" } else { "none" },
        "from": file_name(&args.model),
        "from_arch": plan.arch.to_string(),
    });
    let metadata = kept_metadata(&checkpoint.metadata, record.to_string());
    let extra: Vec<(&str, String)> = (metadata.iter())
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    save_checkpoint(&args.out, &pruned_plan, &pruned_params, &extra)?;
    outln!("wrote {}", args.out.display());
    Ok(())
}

/// The original's metadata without its training state, with how it was pruned.
fn kept_metadata(metadata: &HashMap<String, String>, pruning: String) -> HashMap<String, String> {
    let mut kept: HashMap<String, String> = (metadata.iter())
        .filter(|(k, _)| !TRAINING_STATE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    kept.insert(PRUNING_KEY.into(), pruning);
    kept
}

/// The per-layer table: each layer's weights and zeros before and after.
fn print_sparsity(before: &Sparsity, after: &Sparsity) {
    let mut rows = vec![vec![
        "layer".to_string(),
        "weights".into(),
        "sparsity before".into(),
        "after".into(),
    ]];
    let percent = |f: f64| format!("{:.2}%", 100.0 * f);
    for (b, a) in before.layers.iter().zip(&after.layers) {
        rows.push(vec![
            b.name.clone(),
            format!("{} -> {}", b.weights, a.weights),
            percent(b.fraction()),
            percent(a.fraction()),
        ]);
    }
    rows.push(vec![
        "overall".into(),
        format!("{} -> {}", before.weights(), after.weights()),
        percent(before.fraction()),
        percent(after.fraction()),
    ]);
    for line in super::print::align_columns(&rows) {
        outln!("  {line}");
    }
}

fn parameters(plan: &Plan) -> usize {
    plan.params.iter().map(ParamSpec::len).sum()
}

/// Top-1 test accuracy in percent, on the CPU reference path.
fn accuracy(plan: &Plan, params: &Params<f32>, test: &Split) -> Result<f64> {
    // Inference never steps the optimiser; any choice will do.
    let mut backend = CpuBackend::new(plan.clone(), params.clone(), Optimizer::adam(1e-3));
    let evaluation = evaluate(&mut backend, test).context("evaluating on the test set")?;
    Ok(100.0 * evaluation.confusion.accuracy())
}

fn file_name(path: &Path) -> String {
    (path.file_name()).map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}
