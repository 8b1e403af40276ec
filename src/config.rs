//! Training settings shared by every backend: plain data, no device, no CLI.

use serde::{Deserialize, Serialize};

use crate::prune::PruneSchedule;

/// An optimiser and its hyperparameters. Defaults follow Keras (Adam, SGD) and PyTorch (AdamW).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam; `weight_decay` is added to the gradient (L2) unless `decoupled` (AdamW), where the
    /// parameters shrink by `lr * weight_decay` before the Adam step.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
        decoupled: bool,
    },
    /// Keras' form: `v = momentum * v - lr * g; p += v`, or with Nesterov
    /// `p += momentum * v - lr * g`; `weight_decay` is added to the gradient (L2).
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
}

impl Optimizer {
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::keras_adam(lr, 0.0, false)
    }

    /// AdamW with decoupled weight decay (PyTorch's default decay is 0.01).
    pub fn adamw(lr: f32, weight_decay: f32) -> Optimizer {
        Optimizer::keras_adam(lr, weight_decay, true)
    }

    fn keras_adam(lr: f32, weight_decay: f32, decoupled: bool) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay,
            decoupled,
        }
    }

    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer::Sgd {
            lr,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam {
                decoupled: true, ..
            } => "adamw",
            Optimizer::Adam { .. } => "adam",
            Optimizer::Sgd { nesterov: true, .. } => "sgd-nesterov",
            Optimizer::Sgd { .. } => "sgd",
        }
    }

    pub fn lr(&self) -> f32 {
        match *self {
            Optimizer::Adam { lr, .. } | Optimizer::Sgd { lr, .. } => lr,
        }
    }

    /// The same optimiser with weight decay `new` (L2, or decoupled for AdamW).
    pub fn with_weight_decay(mut self, new: f32) -> Optimizer {
        match &mut self {
            Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => {
                *weight_decay = new
            }
        }
        self
    }

    /// The same optimiser with learning rate `new` (schedules set it every step).
    pub fn with_lr(mut self, new: f32) -> Optimizer {
        match &mut self {
            Optimizer::Adam { lr, .. } | Optimizer::Sgd { lr, .. } => *lr = new,
        }
        self
    }
}

/// How the learning rate changes over a run, as a factor of the base rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiplied by `gamma` every `epochs` epochs.
    Step {
        epochs: usize,
        gamma: f32,
    },
    /// Cosine from the base rate down to 0 over the run.
    Cosine,
    /// PyTorch's OneCycleLR: linear warm-up from base/25 to the base rate over the first
    /// `warmup` fraction of the steps, then cosine down to base/25e4.
    OneCycle {
        warmup: f32,
    },
}

impl Schedule {
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Cosine => "cosine",
            Schedule::OneCycle { .. } => "onecycle",
        }
    }

    /// The factor for training step `step` (from 0) of `total` steps, `per_epoch` per epoch.
    pub fn factor(&self, step: usize, per_epoch: usize, total: usize) -> f32 {
        let progress = step as f64 / total.max(1) as f64;
        let cosine = |t: f64| 0.5 * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos());
        let factor = match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { epochs, gamma } => {
                let completed = step / (per_epoch.max(1) * epochs.max(1));
                f64::from(gamma).powi(completed as i32)
            }
            Schedule::Cosine => cosine(progress),
            Schedule::OneCycle { warmup } => {
                let (start, end) = (1.0 / 25.0, 1.0 / 25e4);
                let warmup = f64::from(warmup).clamp(1e-6, 1.0);
                if progress < warmup {
                    start + (1.0 - start) * progress / warmup
                } else {
                    end + (1.0 - end) * cosine((progress - warmup) / (1.0 - warmup).max(1e-12))
                }
            }
        };
        factor as f32
    }
}

/// The training defaults an architecture comes with, which flags override: a preset carries
/// the recipe its documented results were measured with, a spec string the tutorial's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    /// The base learning rate of Adam (and AdamW); SGD keeps its own default, [`SGD_LR`].
    pub lr: f32,
    pub schedule: Schedule,
    /// Whether the training images are augmented (with [`Augment::mnist`]).
    pub augment: bool,
}

/// SGD's default learning rate, whatever the recipe (whose rate is meant for Adam).
pub const SGD_LR: f32 = 1e-2;

impl Recipe {
    /// The tutorial's (and the `seed` preset's): 5 epochs of batch 32, Adam at 1e-3, constant.
    pub const TUTORIAL: Recipe = Recipe {
        epochs: 5,
        batch_size: 32,
        lr: 1e-3,
        schedule: Schedule::Constant,
        augment: false,
    };

    /// The `strong` preset's, which gave the README's 99.68%: 15 epochs of batch 128, Adam with
    /// a one-cycle schedule peaking at 3e-3, augmented.
    pub const STRONG: Recipe = Recipe {
        epochs: 15,
        batch_size: 128,
        lr: 3e-3,
        schedule: Schedule::OneCycle { warmup: 0.3 },
        augment: true,
    };

    /// The recipe of the preset `name` (see `model::PRESETS`), if it is one.
    pub fn of_preset(name: &str) -> Option<Recipe> {
        match name.trim() {
            "seed" => Some(Recipe::TUTORIAL),
            "strong" => Some(Recipe::STRONG),
            _ => None,
        }
    }

    /// "15 epochs, batch 128, adam lr 0.003, onecycle schedule, augmentation on".
    pub fn describe(&self) -> String {
        format!(
            "{}, batch {}, adam lr {}, {} schedule, augmentation {}",
            crate::text::count(self.epochs, "epoch"),
            self.batch_size,
            self.lr,
            self.schedule.name(),
            if self.augment { "on" } else { "off" }
        )
    }
}

/// What a training run does, independent of the device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// The base learning rate, scaled by `schedule` at every step (it replaces the
    /// optimiser's own rate).
    pub lr: f32,
    pub schedule: Schedule,
    /// Stop after this many epochs without a better validation loss (needs validation data).
    pub early_stopping: Option<usize>,
    /// Random affine augmentation of every training batch (never of inference).
    #[serde(default)]
    pub augment: Option<Augment>,
    /// Masked training's pruning schedule: the mask is raised to its sparsity at the start of
    /// every epoch. Absent from the JSON of a run without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSchedule>,
}

/// Random affine augmentation: every training image is rotated, scaled and shifted by amounts
/// drawn uniformly from these ranges (see `cpu::augment` for the exact map).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// The largest shift along each axis, in pixels.
    pub max_shift: f32,
    /// The largest rotation either way, in degrees.
    pub max_rotation: f32,
    /// The largest change of size, as a fraction: the scale is in [1 - s, 1 + s].
    pub max_scale: f32,
}

impl Augment {
    /// Ranges that suit MNIST: digits stay legible and inside the frame (a 20x20 digit in a
    /// 28x28 image, shifted by 2 px and scaled by up to 10 %, keeps its strokes), while the
    /// model sees the handwriting variations of position, slant and size it meets in the test set.
    pub fn mnist() -> Augment {
        Augment {
            max_shift: 2.0,
            max_rotation: 10.0,
            max_scale: 0.1,
        }
    }
}

impl Default for Augment {
    fn default() -> Augment {
        Augment::mnist()
    }
}

/// How the GPU path picks among kernel variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutotuneMode {
    /// Reuse the cached choice for this adapter, else time the variants and cache the fastest.
    On,
    /// No timing and no cache: a fixed rule by adapter type (CPU adapters get the
    /// register-blocked kernels, GPUs the tiled ones).
    Off,
    /// Time the variants again and overwrite the cached choices.
    Refresh,
}

impl AutotuneMode {
    pub fn name(self) -> &'static str {
        match self {
            AutotuneMode::On => "on",
            AutotuneMode::Off => "off",
            AutotuneMode::Refresh => "refresh",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    #[test]
    fn schedules_scale_the_rate_as_documented() {
        // 2 epochs of 10 steps.
        let f = |s: Schedule, step: usize| s.factor(step, 10, 20);
        assert_eq!(f(Schedule::Constant, 13), 1.0);
        let step = Schedule::Step {
            epochs: 1,
            gamma: 0.5,
        };
        assert_eq!((f(step, 9), f(step, 10), f(step, 19)), (1.0, 0.5, 0.5));
        assert!(close(f(Schedule::Cosine, 0), 1.0) && close(f(Schedule::Cosine, 10), 0.5));
        assert!(f(Schedule::Cosine, 19) < 0.01);
        let one_cycle = Schedule::OneCycle { warmup: 0.3 };
        assert!(close(f(one_cycle, 0), 1.0 / 25.0));
        // Half-way through the warm-up: half-way from 1/25 to 1.
        assert!(close(f(one_cycle, 3), 1.0 / 25.0 + 0.96 * 0.5));
        assert!(
            close(f(one_cycle, 6), 1.0),
            "peak at the end of the warm-up"
        );
        assert!(f(one_cycle, 19) < 0.02 && f(one_cycle, 19) > 1.0 / 25e4);
    }

    #[test]
    fn every_preset_has_a_recipe_and_specs_have_none() {
        for (name, spec) in crate::model::PRESETS {
            assert!(Recipe::of_preset(name).is_some(), "{name}");
            assert_eq!(Recipe::of_preset(spec), None);
        }
        assert_eq!(Recipe::of_preset(" seed "), Some(Recipe::TUTORIAL));
        assert_eq!(
            Recipe::STRONG.describe(),
            "15 epochs, batch 128, adam lr 0.003, onecycle schedule, augmentation on"
        );
    }

    #[test]
    fn optimiser_builders_set_what_they_say() {
        let adamw = Optimizer::adamw(0.002, 0.01).with_lr(0.1);
        assert_eq!((adamw.name(), adamw.lr()), ("adamw", 0.1));
        assert!(matches!(
            Optimizer::sgd(0.1).with_weight_decay(0.5),
            Optimizer::Sgd {
                weight_decay: 0.5,
                ..
            }
        ));
    }
}
