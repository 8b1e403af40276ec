//! `train` and `eval`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::print::{print_evaluation, EpochProgress};
use super::ArchArgs;
use super::{make_backend, DataArgs, OptimizerChoice, ScheduleChoice};
use mnist_wgpu::checkpoint::{load_checkpoint, save_checkpoint};
use mnist_wgpu::config::{Augment, Optimizer, Schedule, TrainConfig};
use mnist_wgpu::data::{load_mnist, Mnist};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::model::{augments_by_default, init_params};
use mnist_wgpu::plots::write_plots;
use mnist_wgpu::report::MetricsReport;
use mnist_wgpu::train::{evaluate, hold_out, train as run_training, EpochStats, Evaluation};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    arch: ArchArgs,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch_size: u64,
    #[command(flatten)]
    optim: OptimArgs,
    #[command(flatten)]
    augment: AugmentArgs,
    /// Seed for initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    train_limit: Option<u64>,
    /// Hold out N training images (chosen by --seed) to validate on after every epoch; the
    /// best epoch's model is saved as best.safetensors beside --save.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    val_split: Option<u64>,
    /// Stop when the validation loss has not improved for this many epochs (needs --val-split).
    #[arg(long, value_name = "PATIENCE", value_parser = clap::value_parser!(u64).range(1..))]
    early_stopping: Option<u64>,
    /// Where to write the trained model [default: runs/<timestamp>/model.safetensors].
    #[arg(long, value_name = "PATH")]
    save: Option<PathBuf>,
    /// Write test metrics and the training history as JSON.
    #[arg(long, value_name = "PATH")]
    metrics_json: Option<PathBuf>,
    /// Write PNG plots here: loss and accuracy curves, the confusion matrix, the most confident
    /// mistakes.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

/// The optimiser and its learning-rate schedule.
#[derive(Args, Debug)]
pub struct OptimArgs {
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Adam)]
    optimizer: OptimizerChoice,
    /// Base learning rate [default: 0.001 for adam and adamw, 0.01 for sgd].
    #[arg(long, allow_negative_numbers = true, value_parser = positive_float)]
    lr: Option<f32>,
    /// Weight decay: L2 for adam and sgd, decoupled for adamw [default: 0, 0.01 for adamw].
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative_float)]
    weight_decay: Option<f32>,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true, value_parser = fraction)]
    momentum: f32,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Constant)]
    lr_schedule: ScheduleChoice,
    /// Step schedule: epochs between decays.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    lr_step_epochs: u64,
    /// Step schedule: the factor of each decay, in (0, 1).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = fraction)]
    lr_gamma: f32,
    /// One-cycle schedule: the fraction of the run spent warming up, in (0, 1).
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true, value_parser = fraction)]
    warmup_fraction: f32,
}

impl OptimArgs {
    fn optimizer(&self) -> Result<Optimizer> {
        if self.nesterov && self.optimizer != OptimizerChoice::Sgd {
            return Err(bad_input("--nesterov: only with --optimizer sgd"));
        }
        let opt = match self.optimizer {
            OptimizerChoice::Adam => Optimizer::adam(self.lr.unwrap_or(1e-3)),
            OptimizerChoice::Adamw => Optimizer::adamw(self.lr.unwrap_or(1e-3), 0.01),
            OptimizerChoice::Sgd => Optimizer::Sgd {
                lr: self.lr.unwrap_or(1e-2),
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

    fn schedule(&self) -> Schedule {
        match self.lr_schedule {
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
    /// (auto: on for the strong preset only).
    #[arg(long, value_enum, default_value_t = AugmentChoice::Auto)]
    augment: AugmentChoice,
    /// The largest shift along each axis, in pixels, in [0, 28) [default: 2].
    #[arg(long, value_name = "PX", allow_negative_numbers = true, value_parser = shift_pixels)]
    augment_shift: Option<f32>,
    /// The largest rotation either way, in degrees, in [0, 180] [default: 10].
    #[arg(long, value_name = "DEG", allow_negative_numbers = true, value_parser = rotation_degrees)]
    augment_rotation: Option<f32>,
    /// The largest change of size, in [0, 1): the scale is in [1 - s, 1 + s] [default: 0.1].
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true, value_parser = fraction)]
    augment_scale: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AugmentChoice {
    /// On for the strong preset, off otherwise.
    Auto,
    On,
    Off,
}

impl AugmentArgs {
    /// The augmentation of a run of `arch` (the --arch value; `None` for --arch-file).
    fn augment(&self, arch: Option<&str>) -> Result<Option<Augment>> {
        let on = match self.augment {
            AugmentChoice::On => true,
            AugmentChoice::Off => false,
            AugmentChoice::Auto => arch.is_some_and(augments_by_default),
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

/// How the `training ...` line describes the augmentation.
fn augment_label(augment: Option<Augment>) -> String {
    match augment {
        Some(a) => format!(
            "augmented (shift {} px, rotation {} deg, scale {})",
            a.max_shift, a.max_rotation, a.max_scale
        ),
        None => "not augmented".into(),
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `train`.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Write the test metrics as JSON.
    #[arg(long, value_name = "PATH")]
    metrics_json: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
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

fn load_data(data: &DataArgs, train_limit: Option<u64>) -> Result<Mnist> {
    let start = Instant::now();
    let mut mnist = load_mnist(&data.data_dir)?;
    if let Some(n) = train_limit {
        mnist.train = mnist.train.truncated(n as usize);
    }
    if let Some(n) = data.test_limit {
        mnist.test = mnist.test.truncated(n as usize);
    }
    log::debug!(
        "loaded {} training and {} test images from {} in {:.2?}",
        mnist.train.len(),
        mnist.test.len(),
        data.data_dir.display(),
        start.elapsed()
    );
    Ok(mnist)
}

pub fn train(args: TrainArgs) -> Result<()> {
    let (arch, plan) = args.arch.plan()?;
    let optimizer = args.optim.optimizer()?;
    let config = TrainConfig {
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        seed: args.seed,
        lr: optimizer.lr(),
        schedule: args.optim.schedule(),
        early_stopping: args.early_stopping.map(|p| p as usize),
        augment: args.augment.augment(
            args.arch
                .arch_file
                .is_none()
                .then_some(args.arch.arch.as_str()),
        )?,
    };
    if args.early_stopping.is_some() && args.val_split.is_none() {
        return Err(bad_input("--early-stopping: needs --val-split"));
    }
    let save = args.save.clone().unwrap_or_else(default_save_path);
    let mut mnist = load_data(&args.data, args.train_limit)?;
    let validation = match args.val_split {
        Some(n) if n as usize >= mnist.train.len() => {
            return Err(bad_input(format!(
                "--val-split {n}: leaves no training images (there are {})",
                mnist.train.len()
            )))
        }
        Some(n) => {
            let (rest, held) = hold_out(&mnist.train, n as usize, args.seed);
            mnist.train = rest;
            Some(held)
        }
        None => None,
    };
    let params = init_params(&plan, args.seed);
    let mut backend = make_backend(&args.data.device, plan.clone(), params, optimizer)?;
    let info = backend.info();
    println!(
        "training {arch} on {} images, {} epochs, batch {}, {} (lr {}, {} schedule), {}, {} ({})",
        mnist.train.len(),
        args.epochs,
        args.batch_size,
        optimizer.name(),
        config.lr,
        config.schedule.name(),
        augment_label(config.augment),
        info.backend,
        info.adapter
    );
    let mut progress = EpochProgress::new(args.epochs as usize);
    let outcome = run_training(
        backend.as_mut(),
        &mnist.train,
        validation.as_ref(),
        &config,
        &mut |p| progress.update(p),
    )?;
    let extra = [
        ("seed", args.seed.to_string()),
        ("optimizer", format!("{optimizer:?}")),
        ("schedule", format!("{:?}", config.schedule)),
        ("augment", format!("{:?}", config.augment)),
    ];
    save_checkpoint(&save, &plan, &backend.params()?, &extra)?;
    println!("saved model to {}", save.display());
    if let Some(best) = &outcome.best {
        if outcome.stopped_early {
            println!(
                "stopped early: no better validation loss for {} epochs",
                config.early_stopping.unwrap_or(0)
            );
        }
        let path = save.with_file_name("best.safetensors");
        let mut extra = extra.to_vec();
        extra.push(("epoch", best.epoch.to_string()));
        save_checkpoint(&path, &plan, &best.params, &extra)?;
        println!(
            "saved the best epoch ({}, validation loss {:.4}) to {}",
            best.epoch,
            best.val_loss,
            path.display()
        );
    }
    let evaluation = report(
        backend.as_mut(),
        &mnist,
        &outcome.history,
        arch.to_string(),
        Some(args.seed),
        args.metrics_json.as_deref(),
    )?;
    if let Some(dir) = &args.plots {
        for path in write_plots(dir, &outcome.history, &evaluation, &mnist.test)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let checkpoint = load_checkpoint(&args.model)?;
    let mnist = load_data(&args.data, None)?;
    let arch = checkpoint.plan.arch.to_string();
    let seed = checkpoint.metadata.get("seed").and_then(|s| s.parse().ok());
    // Evaluation never steps the optimiser; any choice will do.
    let mut backend = make_backend(
        &args.data.device,
        checkpoint.plan,
        checkpoint.params,
        Optimizer::adam(1e-3),
    )?;
    let info = backend.info();
    println!(
        "evaluating {} ({arch}) on {} ({})",
        args.model.display(),
        info.backend,
        info.adapter
    );
    report(
        backend.as_mut(),
        &mnist,
        &[],
        arch,
        seed,
        args.metrics_json.as_deref(),
    )
    .map(drop)
}

fn report(
    backend: &mut dyn mnist_wgpu::backend::Backend,
    mnist: &Mnist,
    history: &[EpochStats],
    arch: String,
    seed: Option<u64>,
    metrics_json: Option<&Path>,
) -> Result<Evaluation> {
    let evaluation = evaluate(backend, &mnist.test)?;
    print_evaluation(&evaluation);
    if let Some(path) = metrics_json {
        let device = (&backend.info(), backend.kernel_choices());
        let report = MetricsReport::new(&evaluation, history, device, arch, seed);
        let json = serde_json::to_vec_pretty(&report).context("serialising metrics")?;
        write_atomic(path, &json)?;
        println!("wrote metrics to {}", path.display());
    }
    Ok(evaluation)
}

fn default_save_path() -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    PathBuf::from(format!("runs/{stamp}/model.safetensors"))
}
