//! The metrics JSON that `train --metrics-json` and `eval --metrics-json` write. Other tools
//! read it: field names are stable, fractions are in [0, 1].

use serde::Serialize;

use crate::backend::{BackendInfo, KernelChoice};
use crate::metrics::ClassMetrics;
use crate::prune::PruneSchedule;
use crate::train::{EpochStats, Evaluation};

#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    pub accuracy: f64,
    pub loss: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    /// `class` is the data set's label (see `classes`).
    pub per_class: Vec<ClassMetrics>,
    /// Rows and columns in output order: row i is the true class `classes[i]`.
    pub confusion: Vec<Vec<u64>>,
    /// The data set's label of each output: 0, 1, ... unless the model was trained on a
    /// subset (`--classes`).
    pub classes: Vec<usize>,
    pub epochs: Vec<EpochStats>,
    pub backend: String,
    pub adapter: String,
    pub arch: String,
    pub seed: Option<u64>,
    /// The GPU kernel variant of each op and shape (empty on the CPU); `--kernels-from` reads
    /// it back to reproduce the run.
    pub kernels: Vec<KernelChoice>,
    /// A masked run's pruning schedule (`train --prune-schedule`); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_schedule: Option<PruneSchedule>,
}

impl MetricsReport {
    pub fn new(
        eval: &Evaluation,
        epochs: &[EpochStats],
        (info, kernels): (&BackendInfo, Vec<KernelChoice>),
        arch: String,
        seed: Option<u64>,
        labels: &[usize],
    ) -> Self {
        let c = &eval.confusion;
        let label = |class: usize| labels.get(class).copied().unwrap_or(class);
        let per_class = (c.per_class().into_iter())
            .map(|m| ClassMetrics {
                class: label(m.class),
                ..m
            })
            .collect();
        MetricsReport {
            accuracy: c.accuracy(),
            loss: eval.loss,
            macro_f1: c.macro_average().f1,
            weighted_f1: c.weighted_average().f1,
            per_class,
            confusion: c.counts.clone(),
            classes: (0..c.counts.len()).map(label).collect(),
            epochs: epochs.to_vec(),
            backend: info.backend.clone(),
            adapter: info.adapter.clone(),
            arch,
            seed,
            kernels,
            prune_schedule: None,
        }
    }
}
