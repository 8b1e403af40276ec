//! Masked training's side of `train`: whether a new run is masked (--init-from a model that
//! `prune` made sparse, or --prune-schedule), the mask it starts from, and the metadata that
//! records it (docs/pruning.md).

use std::path::Path;

use anyhow::Result;

use super::args::{PruneScope, TrainArgs};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::model::{Params, Plan};
use mnist_wgpu::prune::{prunable_weights, Mask, PruneSchedule, Scope};

/// The metadata key of a pruned model: written by `prune`, and by a masked run.
pub const PRUNING_KEY: &str = "pruning";
/// The metadata key of a run's pruning schedule.
pub const PRUNE_SCHEDULE_KEY: &str = "prune_schedule";

/// The run's --prune-schedule, checked against its model before any work: a model without conv
/// or dense weights has nothing to prune.
pub fn schedule(args: &TrainArgs, plan: &Plan) -> Result<Option<PruneSchedule>> {
    let Some((initial, target)) = args.prune_schedule else {
        return Ok(None);
    };
    if prunable_weights(plan).is_empty() {
        return Err(bad_input(format!(
            "--prune-schedule {initial}:{target}: '{}' has no conv or dense weights to prune",
            plan.arch
        )));
    }
    let scope = match args.prune_scope {
        Some(PruneScope::Layer) => Scope::Layer,
        Some(PruneScope::Global) | None => Scope::Global,
    };
    Ok(Some(PruneSchedule {
        initial,
        target,
        power: mnist_wgpu::prune::SCHEDULE_POWER,
        scope,
    }))
}

/// A new run's mask: the exact zeros of its conv and dense weights when --init-from is a model
/// that `prune` made sparse (a `pruning` record that is not channel pruning, whose model has
/// no zeros to keep), a mask that keeps every weight for a schedule to raise, else none: an
/// unmasked run, as before masking existed.
pub fn start_mask(
    plan: &Plan,
    params: &Params<f32>,
    init_pruning: Option<&str>,
    schedule: Option<PruneSchedule>,
) -> Option<Mask> {
    let unstructured = init_pruning.is_some_and(|record| {
        let record: serde_json::Value = serde_json::from_str(record).unwrap_or_default();
        record["structured"] != "channels"
    });
    match (unstructured, schedule) {
        (true, _) => Some(Mask::of_zeros(plan, params)),
        (false, Some(_)) => Some(Mask::keep_all(plan)),
        (false, None) => None,
    }
}

/// The line that says a new run is masked, and how.
pub fn describe(mask: &Mask, schedule: Option<PruneSchedule>, epochs: usize) -> String {
    let weights: usize = mask.keep.iter().flatten().map(Vec::len).sum();
    let kept_at_zero = format!(
        "masked training: {} of the {weights} conv and dense weights start pruned ({:.2}%); pruned weights stay exactly zero",
        mask.pruned(),
        100.0 * mask.fraction()
    );
    match schedule {
        None => kept_at_zero,
        Some(s) => format!(
            "{kept_at_zero}; pruning schedule {s} ({} scope, power {}): sparsity {} in epoch 1 to {} in epoch {epochs}, re-pruned at every epoch's start",
            s.scope, s.power, s.initial, s.target
        ),
    }
}

/// A masked run's metadata: its `pruning` record (so that a model fine-tuned under a mask is
/// masked again when trained from) and its schedule, as JSON.
pub fn metadata(
    mask: &Mask,
    schedule: Option<PruneSchedule>,
    init_from: Option<&Path>,
) -> Vec<(&'static str, String)> {
    let from = init_from.and_then(Path::file_name);
    let record = serde_json::json!({
        "sparsity": schedule.map_or(mask.fraction(), |s| s.target),
        "scope": schedule.map(|s| s.scope.to_string()),
        "structured": "none",
        "from": from.map(|f| f.to_string_lossy()),
        "fine_tuned": true,
    });
    let mut extra = vec![(PRUNING_KEY, record.to_string())];
    if let Some(schedule) = schedule {
        let json = serde_json::to_string(&schedule).expect("a schedule serialises");
        extra.push((PRUNE_SCHEDULE_KEY, json));
    }
    extra
}
