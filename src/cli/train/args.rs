//! The flags of `train` and `eval`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::args::{ArchArgs, DataArgs, OptimizerChoice, ScheduleChoice};
use mnist_wgpu::config::{Augment, Optimizer, Schedule, SGD_LR};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::prune::{PruneSchedule, Scope};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Epochs in all [default: the preset's: 15 for strong, else 5]; with --resume, the new
    /// total [default: the resumed run's].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Examples per step [default: the preset's: 128 for strong, else 32].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch_size: Option<u64>,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub augment: AugmentArgs,
    /// Seed for initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on the first N training images only (after --classes and --per-class-limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub train_limit: Option<u64>,
    /// Train and test on these labels only, relabelled 0, 1, ... in the order given (the arch
    /// must end in dense K for K labels), e.g. 5,6,7,8,9.
    #[arg(long, value_name = "LIST", value_parser = class_list)]
    pub classes: Option<ClassList>,
    /// Train on the first N training images of each class only (a small labelled set).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub per_class_limit: Option<u64>,
    /// Hold out N training images (chosen by --seed) to validate on after every epoch; the
    /// best epoch's model is saved as best.safetensors in the run directory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub val_split: Option<u64>,
    /// Stop when the validation loss has not improved for this many epochs (needs --val-split).
    #[arg(long, value_name = "PATIENCE", value_parser = clap::value_parser!(u64).range(1..))]
    pub early_stopping: Option<u64>,
    /// Start from this checkpoint's parameters: each tensor with the same name and shape is
    /// loaded, the others initialised by --seed (transfer learning).
    #[arg(long, value_name = "CKPT")]
    pub init_from: Option<PathBuf>,
    /// Layers (conv1, bn1, fc, ...: the checkpoint's tensor name prefixes) to keep exactly as
    /// they start: never updated; a frozen batch norm trains in inference mode, on its running
    /// statistics.
    #[arg(long, value_name = "LAYER,...", value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// Layers to initialise by --seed even where --init-from has matching tensors (a new
    /// head of the same shape).
    #[arg(long, value_name = "LAYER,...", value_delimiter = ',')]
    pub reinit: Vec<String>,
    /// Masked training that prunes as it goes: the share of zero conv and dense weights rises
    /// from S0 in the first epoch to S1 in the last (polynomially, power 3), the smallest
    /// re-pruned at every epoch's start; pruned weights stay exactly zero (docs/pruning.md).
    #[arg(long, value_name = "S0:S1", allow_hyphen_values = true, value_parser = prune_schedule)]
    pub prune_schedule: Option<(f64, f64)>,
    /// Which weights compete for --prune-schedule's zeros: all layers ranked together, or each
    /// layer pruned to the sparsity on its own [default: global].
    #[arg(long, value_enum, value_name = "SCOPE", requires = "prune_schedule")]
    pub prune_scope: Option<PruneScope>,
    /// The run's directory: last.safetensors (the training state after every epoch and on
    /// Ctrl-C), best.safetensors (with --val-split), metrics.json and plots [default: the
    /// directory of --save, else runs/<timestamp>].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in DIR from its last.safetensors, with its stored settings; only
    /// --epochs (the new total), the device flags and the output flags may be given.
    #[arg(long, value_name = "DIR", conflicts_with_all = RESUME_CONFLICTS)]
    pub resume: Option<PathBuf>,
    /// Where to write the trained model [default: <run dir>/model.safetensors].
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Also write test metrics and the training history as JSON here.
    #[arg(long, value_name = "PATH")]
    pub metrics_json: Option<PathBuf>,
    /// Also write the PNG plots here: loss and accuracy curves, the confusion matrix, the most
    /// confident mistakes.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// A trial of `search`: the test set is not touched (the search evaluates its best model
    /// once, at the end) and nothing but the run directory is written.
    #[arg(skip)]
    pub trial: bool,
}

/// The flags a resumed run takes from its checkpoint instead.
const RESUME_CONFLICTS: &[&str] = &[
    "arch",
    "arch_file",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "nesterov",
    "lr_schedule",
    "lr_step_epochs",
    "lr_gamma",
    "warmup_fraction",
    "augment",
    "augment_shift",
    "augment_rotation",
    "augment_scale",
    "seed",
    "train_limit",
    "classes",
    "per_class_limit",
    "init_from",
    "freeze",
    "reinit",
    "prune_schedule",
    "prune_scope",
    "val_split",
    "early_stopping",
    "run_dir",
    "data_dir",
    "test_limit",
];

/// The optimiser and its learning-rate schedule.
#[derive(Args, Debug)]
pub struct OptimArgs {
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Adam)]
    pub optimizer: OptimizerChoice,
    /// Base learning rate [default: for adam and adamw the preset's, 0.003 for strong, else
    /// 0.001; 0.01 for sgd].
    #[arg(long, allow_negative_numbers = true, value_parser = positive_float)]
    pub lr: Option<f32>,
    /// Weight decay: L2 for adam and sgd, decoupled for adamw [default: 0, 0.01 for adamw].
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative_float)]
    pub weight_decay: Option<f32>,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true, value_parser = fraction)]
    pub momentum: f32,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// The learning-rate schedule [default: the preset's: onecycle for strong, else constant].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleChoice>,
    /// Step schedule: epochs between decays.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub lr_step_epochs: u64,
    /// Step schedule: the factor of each decay, in (0, 1).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = fraction)]
    pub lr_gamma: f32,
    /// One-cycle schedule: the fraction of the run spent warming up, in (0, 1).
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true, value_parser = fraction)]
    pub warmup_fraction: f32,
}

impl OptimArgs {
    /// The optimiser; without --lr, Adam and AdamW run at `adam_lr` (the recipe's).
    pub fn optimizer(&self, adam_lr: f32) -> Result<Optimizer> {
        if self.nesterov && self.optimizer != OptimizerChoice::Sgd {
            return Err(bad_input("--nesterov: only with --optimizer sgd"));
        }
        let opt = match self.optimizer {
            OptimizerChoice::Adam => Optimizer::adam(self.lr.unwrap_or(adam_lr)),
            OptimizerChoice::Adamw => Optimizer::adamw(self.lr.unwrap_or(adam_lr), 0.01),
            OptimizerChoice::Sgd => Optimizer::Sgd {
                lr: self.lr.unwrap_or(SGD_LR),
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: 0.0,
            },
        };
        Ok(match self.weight_decay {
            Some(wd) => opt.with_weight_decay(wd),
            None => opt,
        })
    }

    /// The schedule of --lr-schedule, else of the recipe's kind; either way with the
    /// parameters of the flags (whose defaults are the recipes').
    pub fn schedule(&self, recipe: Schedule) -> Schedule {
        let recipe = match recipe {
            Schedule::Constant => ScheduleChoice::Constant,
            Schedule::Step { .. } => ScheduleChoice::Step,
            Schedule::Cosine => ScheduleChoice::Cosine,
            Schedule::OneCycle { .. } => ScheduleChoice::Onecycle,
        };
        match self.lr_schedule.unwrap_or(recipe) {
            ScheduleChoice::Constant => Schedule::Constant,
            ScheduleChoice::Step => Schedule::Step {
                epochs: self.lr_step_epochs as usize,
                gamma: self.lr_gamma,
            },
            ScheduleChoice::Cosine => Schedule::Cosine,
            ScheduleChoice::Onecycle => Schedule::OneCycle {
                warmup: self.warmup_fraction,
            },
        }
    }
}

/// Random affine augmentation of the training images.
#[derive(Args, Debug)]
pub struct AugmentArgs {
    /// Warp every training image by a random shift, rotation and scale, drawn from --seed
    /// (auto: as the preset's recipe says, on for strong only).
    #[arg(long, value_enum, default_value_t = AugmentChoice::Auto)]
    pub augment: AugmentChoice,
    /// The largest shift along each axis, in pixels, in [0, 28) [default: 2].
    #[arg(long, value_name = "PX", allow_negative_numbers = true, value_parser = shift_pixels)]
    pub augment_shift: Option<f32>,
    /// The largest rotation either way, in degrees, in [0, 180] [default: 10].
    #[arg(long, value_name = "DEG", allow_negative_numbers = true, value_parser = rotation_degrees)]
    pub augment_rotation: Option<f32>,
    /// The largest change of size, in [0, 1): the scale is in [1 - s, 1 + s] [default: 0.1].
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true, value_parser = fraction)]
    pub augment_scale: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentChoice {
    /// On for the strong preset, off otherwise.
    Auto,
    On,
    Off,
}

impl AugmentArgs {
    /// The augmentation of a run whose recipe augments (`auto`) or not.
    pub fn augment(&self, auto: bool) -> Result<Option<Augment>> {
        let on = match self.augment {
            AugmentChoice::On => true,
            AugmentChoice::Off => false,
            AugmentChoice::Auto => auto,
        };
        let overrides = [
            ("--augment-shift", self.augment_shift),
            ("--augment-rotation", self.augment_rotation),
            ("--augment-scale", self.augment_scale),
        ];
        if !on {
            if let Some((flag, _)) = overrides.iter().find(|(_, v)| v.is_some()) {
                return Err(bad_input(format!(
                    "{flag}: augmentation is off (add --augment on)"
                )));
            }
            return Ok(None);
        }
        let default = Augment::mnist();
        Ok(Some(Augment {
            max_shift: self.augment_shift.unwrap_or(default.max_shift),
            max_rotation: self.augment_rotation.unwrap_or(default.max_rotation),
            max_scale: self.augment_scale.unwrap_or(default.max_scale),
        }))
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `train`, or by `quantize` (int8, run on the CPU).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Write the test metrics as JSON.
    #[arg(long, value_name = "PATH")]
    pub metrics_json: Option<PathBuf>,
    /// Test on these labels only, relabelled 0, 1, ... in the order given, as the model was
    /// trained with train --classes.
    #[arg(long, value_name = "LIST", value_parser = class_list)]
    pub classes: Option<ClassList>,
    #[command(flatten)]
    pub data: DataArgs,
}

/// The labels of `--classes`, in the order given: label `classes[k]` becomes class k.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassList(pub Vec<u8>);

/// "5,6,7,8,9": at least two distinct labels 0-255.
fn class_list(text: &str) -> Result<ClassList, String> {
    let mut classes = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let class: u8 = item
            .parse()
            .map_err(|_| format!("'{item}' in '{text}' is not a label 0-255"))?;
        if classes.contains(&class) {
            return Err(format!("'{text}' lists {class} twice"));
        }
        classes.push(class);
    }
    if classes.len() < 2 {
        return Err(format!(
            "'{text}' lists one class; a classifier needs at least two"
        ));
    }
    Ok(ClassList(classes))
}

fn positive_float(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("'{text}' is not a positive number")),
    }
}

fn non_negative_float(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("'{text}' is not a number >= 0")),
    }
}

fn shift_pixels(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if (0.0..28.0).contains(&x) => Ok(x),
        _ => Err(format!("'{text}' is not a number of pixels in [0, 28)")),
    }
}

fn rotation_degrees(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if (0.0..=180.0).contains(&x) => Ok(x),
        _ => Err(format!("'{text}' is not a number of degrees in [0, 180]")),
    }
}

fn fraction(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err(format!("'{text}' is not a number in [0, 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_are_distinct_labels_in_order() {
        assert_eq!(class_list("5,6, 9,7"), Ok(ClassList(vec![5, 6, 9, 7])));
        for bad in ["", "3", "1,1", "1,256", "1,,2", "a,b", "-1,2"] {
            assert!(class_list(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PruneScope {
    Global,
    Layer,
}

/// `S0:S1`: two fractions in [0, 1), S0 <= S1.
fn prune_schedule(text: &str) -> Result<(f64, f64), String> {
    let (s0, s1) = (text.split_once(':'))
        .ok_or_else(|| format!("'{text}' is not S0:S1, two sparsities such as 0:0.9"))?;
    let fraction = |s: &str| -> Result<f64, String> {
        (s.trim().parse()).map_err(|_| format!("'{s}' is not a fraction in [0, 1)"))
    };
    // The scope does not matter here: the flag's own check.
    let schedule = PruneSchedule::new(fraction(s0)?, fraction(s1)?, Scope::Global)?;
    Ok((schedule.initial, schedule.target))
}
