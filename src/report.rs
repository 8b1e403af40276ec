//! The metrics JSON that `train --metrics-json` and `eval --metrics-json` write. Other tools
//! read it: field names are stable, fractions are in [0, 1].

use serde::Serialize;

use crate::backend::{BackendInfo, KernelChoice};
use crate::metrics::ClassMetrics;
use crate::train::{EpochStats, Evaluation};

#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    pub accuracy: f64,
    pub loss: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Vec<Vec<u64>>,
    pub epochs: Vec<EpochStats>,
    pub backend: String,
    pub adapter: String,
    pub arch: String,
    pub seed: Option<u64>,
    /// The GPU kernel variant of each op and shape (empty on the CPU); `--kernels-from` reads
    /// it back to reproduce the run.
    pub kernels: Vec<KernelChoice>,
}

impl MetricsReport {
    pub fn new(
        eval: &Evaluation,
        epochs: &[EpochStats],
        (info, kernels): (&BackendInfo, Vec<KernelChoice>),
        arch: String,
        seed: Option<u64>,
    ) -> Self {
        let c = &eval.confusion;
        MetricsReport {
            accuracy: c.accuracy(),
            loss: eval.loss,
            macro_f1: c.macro_average().f1,
            weighted_f1: c.weighted_average().f1,
            per_class: c.per_class(),
            confusion: c.counts.clone(),
            epochs: epochs.to_vec(),
            backend: info.backend.clone(),
            adapter: info.adapter.clone(),
            arch,
            seed,
            kernels,
        }
    }
}
