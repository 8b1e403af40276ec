//! What the trainer needs from a device. The CPU reference path and the GPU path implement it;
//! neither knows about the command line.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::Augment;
use crate::data::Split;
use crate::model::Params;
use crate::prune::Mask;

/// Where a model runs, as recorded in metrics and printed to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// `cpu`, or the GPU API (`vulkan`, `metal`, `dx12`, `gl`).
    pub backend: String,
    /// The processor or adapter name.
    pub adapter: String,
}

/// The kernel variant that runs one op at one shape, and why: `tuned` (timed just now),
/// `cache` (timed by an earlier run), `rule` (autotuning off, or one variant only) or `pinned`
/// (taken from an earlier run's metrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelChoice {
    pub op: String,
    pub shape: String,
    pub variant: String,
    pub source: String,
    /// Microseconds per run of each variant timed (its fastest sample; for a variant dropped
    /// as hopeless, estimated from a part of its workgroups), also when taken from the cache.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings_us: BTreeMap<String, f64>,
    /// Seconds each variant compiled in this run took to compile (its single-workgroup run):
    /// seconds on a CPU adapter with a cold shader cache, near 0 where a driver cache held it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compile_seconds: BTreeMap<String, f64>,
}

/// Sums over the training steps since the last [`Backend::take_train_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainStats {
    pub loss_sum: f64,
    pub correct: u64,
    pub examples: u64,
}

/// Everything the optimiser carries from one step to the next, so that a run can continue
/// exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Steps taken: Adam's bias correction, and the key of the random numbers of dropout and
    /// augmentation (see [`crate::rng`]), so restoring it restores the random-generator state.
    pub step: u32,
    /// Per parameter tensor, same names and shapes: Adam's first moments, or SGD's velocity.
    pub m: Params<f32>,
    /// Adam's second moments (zeros for SGD).
    pub v: Params<f32>,
}

impl OptimizerState {
    /// An error unless `m` and `v` hold one tensor of each length in `lens`, in order (a
    /// backend cannot restore moments of another model).
    pub fn check_lens(&self, lens: &[usize]) -> Result<()> {
        for moments in [&self.m, &self.v] {
            let got: Vec<usize> = moments.tensors.iter().map(|t| t.data.len()).collect();
            anyhow::ensure!(
                got == lens,
                "optimiser state of tensor lengths {got:?} for a model of {lens:?}"
            );
        }
        Ok(())
    }
}

pub trait Backend {
    fn info(&self) -> BackendInfo;

    /// Makes `train` the set that [`Backend::train_step`] indexes into (a GPU uploads it once).
    fn set_train_data(&mut self, train: &Split) -> Result<()>;

    /// The run's seed, for the random numbers of dropout and augmentation (see [`crate::rng`]).
    fn set_seed(&mut self, seed: u64);

    /// Random affine augmentation of the following training steps' batches (`None`: off),
    /// drawn from the seed and the step number (see [`crate::cpu::augment`]).
    fn set_augmentation(&mut self, augment: Option<Augment>);

    /// The learning rate of the following steps (a schedule sets it before every step).
    fn set_learning_rate(&mut self, lr: f32);

    /// Which parameter tensors (one flag per tensor, in the plan's order) the following steps
    /// leave exactly as they are: the optimiser never touches them (their moments stay zero),
    /// and a frozen batch norm trains in inference mode, as Keras runs one: it normalises by
    /// its running statistics, which do not move and which its backward takes as constants.
    fn set_frozen(&mut self, frozen: &[bool]) -> Result<()>;

    /// Masked training: sets the weights `mask` prunes to zero now, and has every following
    /// step store exactly zero for them and their moments (the update of the other weights
    /// is bit for bit the unmasked one). `None` (the default) trains every weight.
    fn set_mask(&mut self, mask: Option<&Mask>) -> Result<()>;

    /// One optimiser step on the training examples at `indices`. May run asynchronously.
    fn train_step(&mut self, indices: &[u32]) -> Result<()>;

    /// Loss and accuracy sums of all steps since the previous read, waiting for them to finish.
    /// Fails if a loss or gradient was not finite.
    fn take_train_stats(&mut self) -> Result<TrainStats>;

    /// Like [`Backend::take_train_stats`] but never waits: `None` while a read is in flight
    /// (a GPU maps its counters asynchronously). The CPU answers at once.
    fn poll_train_stats(&mut self) -> Result<Option<TrainStats>> {
        self.take_train_stats().map(Some)
    }

    /// The classes the model tells apart, its output width (the plan's `classes`).
    fn classes(&self) -> usize;

    /// Logits (`n x classes`) for `n` raw images (`n x 784` bytes).
    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>>;

    /// The current parameters.
    fn params(&mut self) -> Result<Params<f32>>;

    /// The optimiser's step count and moments, as the next step would use them.
    fn optimizer_state(&mut self) -> Result<OptimizerState>;

    /// Restores a state read by [`Backend::optimizer_state`] from a backend of the same plan.
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()>;

    /// The kernel variants chosen so far (none on the CPU).
    fn kernel_choices(&self) -> Vec<KernelChoice> {
        Vec::new()
    }

    /// Gets ready for training steps on batches of the sizes in `training` and inference on
    /// those in `inference`, as the first of each would otherwise: a GPU compiles its kernels
    /// and autotunes the ops it has not timed on this adapter before. Nothing to do on the CPU.
    fn prepare(&mut self, _training: &[usize], _inference: &[usize]) -> Result<()> {
        Ok(())
    }
}

/// The training methods of a [`Backend`] that only infers (the int8 models), for its `impl`:
/// each one that could fail refuses with `$why`; the settings that cannot fail do nothing.
#[macro_export]
macro_rules! inference_only_training {
    ($why:expr) => {
        fn set_train_data(&mut self, _train: &$crate::data::Split) -> anyhow::Result<()> {
            anyhow::bail!($why)
        }

        fn set_seed(&mut self, _seed: u64) {}

        fn set_augmentation(&mut self, _augment: Option<$crate::config::Augment>) {}

        fn set_learning_rate(&mut self, _lr: f32) {}

        fn set_frozen(&mut self, _frozen: &[bool]) -> anyhow::Result<()> {
            anyhow::bail!($why)
        }

        fn set_mask(&mut self, _mask: Option<&$crate::prune::Mask>) -> anyhow::Result<()> {
            anyhow::bail!($why)
        }

        fn train_step(&mut self, _indices: &[u32]) -> anyhow::Result<()> {
            anyhow::bail!($why)
        }

        fn take_train_stats(&mut self) -> anyhow::Result<$crate::backend::TrainStats> {
            anyhow::bail!($why)
        }

        fn optimizer_state(&mut self) -> anyhow::Result<$crate::backend::OptimizerState> {
            anyhow::bail!($why)
        }

        fn set_optimizer_state(
            &mut self,
            _state: &$crate::backend::OptimizerState,
        ) -> anyhow::Result<()> {
            anyhow::bail!($why)
        }
    };
}
