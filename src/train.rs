//! The training loop and evaluation, for any [`Backend`]: data -> batches -> model -> metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, TrainStats};
use crate::config::TrainConfig;
use crate::cpu::softmax_xent::{argmax, softmax_cross_entropy};
use crate::data::{Split, IMAGE_PIXELS};
use crate::metrics::ConfusionMatrix;
use crate::prune::Mask;
use crate::text::count;

/// How often running loss and accuracy are read back while an epoch runs.
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Images per inference call during evaluation.
const EVAL_BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub seconds: f64,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Loss and accuracy on the held-out validation examples, when there are some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Masked training: the share of the prunable weights the epoch's mask kept at zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
}

/// A training loss above this many times that of a uniform guess (ln K for K classes) means
/// the run has blown up while staying finite (Adam at lr 1e6 reaches 1e21 in one epoch); no
/// run that learns comes near it, even in its first epoch.
pub const DIVERGED_LOSS_FACTOR: f64 = 10.0;

impl EpochStats {
    /// Whether the epoch's training loss says a run over `classes` classes diverged (finite,
    /// but far above chance).
    pub fn diverged(&self, classes: usize) -> bool {
        self.train_loss > DIVERGED_LOSS_FACTOR * chance_loss(classes)
    }
}

/// The loss of a uniform guess over `classes` classes: ln K.
pub fn chance_loss(classes: usize) -> f64 {
    (classes as f64).ln()
}

/// What a training run gives back besides the trained backend.
#[derive(Debug)]
pub struct TrainOutcome {
    /// Every epoch of the run, those before a resume included.
    pub history: Vec<EpochStats>,
    /// The epoch with the lowest validation loss (with validation only).
    pub best: Option<BestEpoch>,
    /// Whether early stopping ended the run before its last epoch.
    pub stopped_early: bool,
    /// Whether the stop flag ended the run; its last checkpoint continues it.
    pub interrupted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    pub epoch: usize,
    pub val_loss: f64,
}

/// Where a run stands between two steps. With the backend's parameters and optimiser state
/// it is all that continuing the run exactly needs: the shuffle is a function of (seed, epoch)
/// and the schedule of the global step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// Steps finished of the next epoch (0 unless the run was interrupted mid-epoch).
    pub step: usize,
    /// Loss and accuracy sums of those steps.
    pub partial: TrainStats,
    /// Seconds spent on those steps.
    pub partial_seconds: f64,
    pub history: Vec<EpochStats>,
    pub best: Option<BestEpoch>,
    pub stopped_early: bool,
    /// Masked training: the mask the steps since the current epoch's start trained under (a
    /// schedule computes it from the parameters at that start, which are gone by a
    /// checkpoint mid-epoch, so it is kept rather than recomputed). `None`: unmasked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Mask>,
}

impl RunState {
    /// Whether the epoch just finished has the best validation loss so far.
    pub fn at_new_best(&self) -> bool {
        self.step == 0 && self.best.is_some_and(|b| b.epoch == self.epochs_done)
    }
}

/// What keeps a run safe: where it starts, how it is saved, when it stops.
pub struct Resumable<'a> {
    /// [`RunState::default`] for a new run; else a saved state, with the backend restored to
    /// the parameters and optimiser state saved with it.
    pub start: RunState,
    /// Called after every epoch and when the run stops on `stop`, with the backend in the
    /// state it describes (e.g. to write a checkpoint).
    pub on_checkpoint: &'a mut dyn FnMut(&mut dyn Backend, &RunState) -> Result<()>,
    /// Checked after every step (a Ctrl-C handler raises it): the run then stops at once.
    pub stop: &'a AtomicBool,
}

/// Splits `n` examples off `split`, chosen by a shuffle seeded by `seed` (its own stream, apart
/// from every epoch's): (the rest, the held-out examples), each in the original order.
pub fn hold_out(split: &Split, n: usize, seed: u64) -> (Split, Split) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX);
    let mut order: Vec<u32> = (0..split.len() as u32).collect();
    order.shuffle(&mut rng);
    let (held, kept) = order.split_at_mut(n.min(split.len()));
    held.sort_unstable();
    kept.sort_unstable();
    (split.subset(kept), split.subset(held))
}

/// What the loop reports as it goes; the CLI draws progress bars from it.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    EpochStart {
        epoch: usize,
        steps: usize,
    },
    Running {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
        accuracy: f64,
        examples: u64,
    },
    EpochEnd(EpochStats),
}

/// The order of the training examples in `epoch` (from 1): a seeded shuffle, its own stream per
/// epoch so that any epoch can be replayed alone.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.shuffle(&mut rng);
    order
}

/// Trains for `config.epochs` epochs of mini-batches of `config.batch_size` (the last one may
/// be smaller), shuffled by `config.seed`, setting each step's learning rate from the
/// schedule. With `validation` examples, each epoch ends with their loss and accuracy, the best
/// epoch is recorded, and `config.early_stopping` may end the run early.
pub fn train(
    backend: &mut dyn Backend,
    train: &Split,
    validation: Option<&Split>,
    config: &TrainConfig,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainOutcome> {
    let resumable = Resumable {
        start: RunState::default(),
        on_checkpoint: &mut |_, _| Ok(()),
        stop: &AtomicBool::new(false),
    };
    train_resumable(backend, train, validation, config, on_progress, resumable)
}

/// [`train`] from `resumable.start` to epoch `config.epochs`, checkpointing after every epoch
/// and stopping on `resumable.stop`. A resumed run ends bit for bit where an uninterrupted one
/// would.
pub fn train_resumable(
    backend: &mut dyn Backend,
    train: &Split,
    validation: Option<&Split>,
    config: &TrainConfig,
    on_progress: &mut dyn FnMut(Progress),
    resumable: Resumable,
) -> Result<TrainOutcome> {
    let Resumable {
        start: mut run,
        on_checkpoint,
        stop,
    } = resumable;
    let steps = train.len().div_ceil(config.batch_size);
    anyhow::ensure!(
        run.step < steps,
        "cannot resume at step {} of an epoch of {}",
        run.step,
        count(steps, "step")
    );
    anyhow::ensure!(
        config.prune.is_none() || run.mask.is_some(),
        "a pruning schedule raises a mask: start the run with one (Mask::keep_all for none)"
    );
    backend.set_seed(config.seed);
    backend.set_augmentation(config.augment);
    backend.set_train_data(train)?;
    if let Some(mask) = &run.mask {
        backend.set_mask(Some(mask))?;
    }
    while run.epochs_done < config.epochs && !run.stopped_early {
        if run.step == 0 {
            reprune(backend, config, &mut run)?;
        }
        let finished = train_epoch(backend, train, config, &mut run, stop, on_progress)?;
        if finished {
            end_epoch(backend, validation, config, steps, &mut run, on_progress)?;
        }
        on_checkpoint(backend, &run)?;
        let more = run.epochs_done < config.epochs && !run.stopped_early;
        if more && stop.load(Ordering::Relaxed) {
            return Ok(outcome(run, true));
        }
    }
    Ok(outcome(run, false))
}

fn outcome(run: RunState, interrupted: bool) -> TrainOutcome {
    TrainOutcome {
        history: run.history,
        best: run.best,
        stopped_early: run.stopped_early,
        interrupted,
    }
}

/// At the start of epoch `run.epochs_done + 1` of a run with a pruning schedule, raises its
/// mask to the epoch's sparsity by the current magnitudes (see [`Mask::tightened`]).
fn reprune(backend: &mut dyn Backend, config: &TrainConfig, run: &mut RunState) -> Result<()> {
    let (Some(schedule), Some(mask)) = (config.prune, &run.mask) else {
        return Ok(());
    };
    let sparsity = schedule.sparsity_at(run.epochs_done + 1, config.epochs);
    let mask = mask.tightened(&backend.params()?, sparsity, schedule.scope);
    backend.set_mask(Some(&mask))?;
    run.mask = Some(mask);
    Ok(())
}

/// The steps of epoch `run.epochs_done + 1` from `run.step` on; false if `stop` ended it early.
fn train_epoch(
    backend: &mut dyn Backend,
    train: &Split,
    config: &TrainConfig,
    run: &mut RunState,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<bool> {
    let epoch = run.epochs_done + 1;
    let steps = train.len().div_ceil(config.batch_size);
    on_progress(Progress::EpochStart { epoch, steps });
    let start = Instant::now();
    let mut last_report = start;
    let order = epoch_order(train.len(), config.seed, epoch);
    let batches = order.chunks(config.batch_size).enumerate().skip(run.step);
    for (step, batch) in batches {
        let at = || format!("epoch {epoch}, step {}", step + 1);
        let global_step = (epoch - 1) * steps + step;
        backend.set_learning_rate(step_lr(config, global_step, steps));
        backend.train_step(batch).with_context(at)?;
        run.step = step + 1;
        let last = run.step == steps;
        // Not on the last step: the epoch then ends and is checkpointed whole.
        let stopping = !last && stop.load(Ordering::Relaxed);
        if last || stopping || last_report.elapsed() >= STATS_INTERVAL {
            let read = if last || stopping {
                Some(backend.take_train_stats())
            } else {
                backend.poll_train_stats().transpose()
            };
            if let Some(read) = read {
                add_stats(&mut run.partial, read.with_context(at)?);
            }
            last_report = Instant::now();
            let total = run.partial;
            on_progress(Progress::Running {
                epoch,
                step: run.step,
                steps,
                loss: total.loss_sum / total.examples.max(1) as f64,
                accuracy: total.correct as f64 / total.examples.max(1) as f64,
                examples: total.examples,
            });
        }
        if stopping {
            run.partial_seconds += start.elapsed().as_secs_f64();
            return Ok(false);
        }
    }
    run.partial_seconds += start.elapsed().as_secs_f64();
    Ok(true)
}

/// The learning rate of training step `global_step` (from 0).
fn step_lr(config: &TrainConfig, global_step: usize, steps: usize) -> f32 {
    let total = config.epochs * steps;
    config.lr * config.schedule.factor(global_step, steps, total)
}

/// Validates, records the finished epoch and the best one, and applies early stopping.
fn end_epoch(
    backend: &mut dyn Backend,
    validation: Option<&Split>,
    config: &TrainConfig,
    steps: usize,
    run: &mut RunState,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let epoch = run.epochs_done + 1;
    let val = validation.map(|v| evaluate(backend, v)).transpose()?;
    let total = std::mem::take(&mut run.partial);
    let stats = EpochStats {
        epoch,
        train_loss: total.loss_sum / total.examples.max(1) as f64,
        train_accuracy: total.correct as f64 / total.examples.max(1) as f64,
        seconds: std::mem::take(&mut run.partial_seconds),
        lr: f64::from(step_lr(config, epoch * steps - 1, steps)),
        val_loss: val.as_ref().map(|v| v.loss),
        val_accuracy: val.as_ref().map(|v| v.confusion.accuracy()),
        sparsity: run.mask.as_ref().map(Mask::fraction),
    };
    on_progress(Progress::EpochEnd(stats));
    run.history.push(stats);
    run.epochs_done = epoch;
    run.step = 0;
    if let Some(val_loss) = stats.val_loss {
        if run.best.is_none_or(|b| val_loss < b.val_loss) {
            run.best = Some(BestEpoch { epoch, val_loss });
        }
        let since_best = epoch - run.best.map_or(epoch, |b| b.epoch);
        let patience_over = config.early_stopping.is_some_and(|p| since_best >= p);
        run.stopped_early = patience_over && epoch < config.epochs;
    }
    Ok(())
}

fn add_stats(total: &mut TrainStats, more: TrainStats) {
    total.loss_sum += more.loss_sum;
    total.correct += more.correct;
    total.examples += more.examples;
}

/// Mean test loss and the confusion matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub confusion: ConfusionMatrix,
    /// The most confidently misclassified examples, most confident first.
    pub mistakes: Vec<Mistake>,
}

/// A misclassified example: its index in the split, true and predicted class, and the
/// probability the model gave its prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mistake {
    pub index: usize,
    pub label: u8,
    pub predicted: u8,
    pub confidence: f64,
}

/// The sizes of the batches that `len` examples make in batches of `batch` (the last may be
/// smaller): what a backend must be ready for.
pub fn batch_sizes(len: usize, batch: usize) -> Vec<usize> {
    let full = len.min(batch);
    let rest = if len > batch { len % batch } else { 0 };
    [full, rest].into_iter().filter(|&n| n > 0).collect()
}

/// The batch sizes with which [`evaluate`] runs over `len` examples.
pub fn eval_batch_sizes(len: usize) -> Vec<usize> {
    batch_sizes(len, EVAL_BATCH)
}

/// How many mistakes an evaluation keeps.
const MISTAKES_KEPT: usize = 16;

/// Evaluates the model on `split`, whose labels must be below its [`Backend::classes`].
pub fn evaluate(backend: &mut dyn Backend, split: &Split) -> Result<Evaluation> {
    let classes = backend.classes();
    let mut confusion = ConfusionMatrix::new(classes);
    let mut loss_sum = 0.0;
    let mut mistakes = Vec::new();
    for (batch, (images, labels)) in split
        .images
        .chunks(EVAL_BATCH * IMAGE_PIXELS)
        .zip(split.labels.chunks(EVAL_BATCH))
        .enumerate()
    {
        let logits = backend.predict_logits(images)?;
        anyhow::ensure!(
            logits.len() == labels.len() * classes,
            "the model returned {} logits for {} images of {classes} classes",
            logits.len(),
            labels.len()
        );
        loss_sum += softmax_cross_entropy(classes, &logits, labels, None).loss_sum;
        for (i, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
            let predicted = argmax(row);
            confusion.add(usize::from(label), predicted);
            if predicted != usize::from(label) {
                mistakes.push(Mistake {
                    index: batch * EVAL_BATCH + i,
                    label,
                    predicted: predicted as u8,
                    confidence: probability_of(row, predicted),
                });
            }
        }
    }
    mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    mistakes.truncate(MISTAKES_KEPT);
    Ok(Evaluation {
        loss: loss_sum / split.len().max(1) as f64,
        confusion,
        mistakes,
    })
}

/// Softmax probability of class `k` for one row of logits, in f64.
fn probability_of(logits: &[f32], k: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    f64::from(logits[k] - max).exp() / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_the_full_batch_and_the_remainder() {
        assert_eq!(batch_sizes(60000, 128), vec![128, 96]);
        assert_eq!(batch_sizes(60000, 32), vec![32]);
        assert_eq!(batch_sizes(10, 32), vec![10]);
        assert_eq!(batch_sizes(0, 32), Vec::<usize>::new());
        assert_eq!(eval_batch_sizes(10000), vec![EVAL_BATCH]);
        assert_eq!(eval_batch_sizes(2500), vec![EVAL_BATCH, 500]);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation_that_changes_per_epoch() {
        let a = epoch_order(1000, 3, 1);
        assert_eq!(a, epoch_order(1000, 3, 1));
        assert_ne!(a, epoch_order(1000, 3, 2));
        assert_ne!(a, epoch_order(1000, 4, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn hold_out_splits_off_a_seeded_subset_in_order() {
        let split = Split {
            images: (0..20u8).flat_map(|i| [i; IMAGE_PIXELS]).collect(),
            labels: (0..20u8).collect(),
        };
        let (rest, held) = hold_out(&split, 5, 9);
        assert_eq!((rest.len(), held.len()), (15, 5));
        let mut all: Vec<u8> = rest.labels.iter().chain(&held.labels).copied().collect();
        assert!(
            held.labels.windows(2).all(|w| w[0] < w[1]),
            "original order"
        );
        all.sort_unstable();
        assert_eq!(
            all,
            (0..20).collect::<Vec<u8>>(),
            "every example exactly once"
        );
        assert_eq!(
            held.image(0)[0],
            held.labels[0],
            "images follow their labels"
        );
        assert_eq!(hold_out(&split, 5, 9).1.labels, held.labels);
        assert_ne!(hold_out(&split, 5, 10).1.labels, held.labels);
    }
}
