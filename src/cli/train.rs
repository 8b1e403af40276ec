//! `train`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::args::{
    backend_on, check_output_dir, check_output_file, data_dir, exact_gpu_context, gpu_context,
    DeviceArgs,
};
use super::print::{print_evaluation, while_working, EpochProgress};
use mnist_wgpu::backend::{Backend, BackendInfo, OptimizerState};
use mnist_wgpu::checkpoint::{
    classes_metadata, load_checkpoint, load_training_checkpoint, save_checkpoint,
    save_training_checkpoint, TrainingCheckpoint, CLASSES_KEY,
};
use mnist_wgpu::config::{Augment, Optimizer, TrainConfig};
use mnist_wgpu::data::Mnist;
use mnist_wgpu::error::{bad_input, DeviceLost, Interrupted};
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::gpu::GpuContext;
use mnist_wgpu::model::transfer::{
    check_layer_names, describe_origins, frozen_mask, init_from, layer_of, Origin,
};
use mnist_wgpu::model::{init_params, Params, Plan};
use mnist_wgpu::plots::{write_plots, AugmentedRun, PLOT_FILES};
use mnist_wgpu::prune::{Mask, PruneSchedule};
use mnist_wgpu::report::MetricsReport;
use mnist_wgpu::text::count;
use mnist_wgpu::train::{
    batch_sizes, eval_batch_sizes, evaluate, hold_out, train_resumable, EpochStats, Evaluation,
    Resumable, RunState,
};

mod args;
mod data;
mod masking;
mod recipe;

pub(super) use data::{labels_of, load_data, DataSource};

pub use args::{EvalArgs, TrainArgs};

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

/// Everything a run was started with: stored in its checkpoints so that `--resume` can rebuild
/// it (the architecture is the checkpoint's own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunConfig {
    train: TrainConfig,
    optimizer: Optimizer,
    data: DataSource,
    val_split: Option<u64>,
    /// Where the run last trained (`BackendInfo` as "backend (adapter)"), for messages.
    device: String,
    /// The same device as `BackendInfo`'s backend (`cpu`, or the GPU API) and adapter name:
    /// `--resume` continues there. Absent (`None`) in older checkpoints, which resume on the
    /// device the flags choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adapter: Option<String>,
    /// `--init-from` and `--reinit`: how the run started (for the record; the parameters are
    /// in the checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_from: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reinit: Vec<String>,
    /// `--freeze`: the layers no step updates, kept by `--resume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    freeze: Vec<String>,
}

impl RunConfig {
    /// Whether a run that trained here continues bit for bit on `info` (the CPU path gives the
    /// same bits whatever its thread count).
    fn same_device(&self, info: &BackendInfo) -> bool {
        match (&self.backend, &self.adapter) {
            (Some(backend), Some(adapter)) => {
                *backend == info.backend && (backend == "cpu" || *adapter == info.adapter)
            }
            _ => self.device == format!("{} ({})", info.backend, info.adapter),
        }
    }
}

/// Where a resumed run continues: on the device it trained on, unless the flags choose one
/// (`--backend`, `--adapter`), the checkpoint does not say (older versions), or that device
/// is not here, when the best one is taken as `--backend auto` would, without its warning.
/// With the context, why the run may move, if it does.
fn resumed_device(
    flags: &DeviceArgs,
    config: &RunConfig,
) -> Result<(Option<GpuContext>, Option<&'static str>)> {
    if flags.chosen() {
        return Ok((gpu_context(flags)?, Some("as --backend/--adapter ask")));
    }
    match (config.backend.as_deref(), config.adapter.as_deref()) {
        (Some("cpu"), _) => Ok((None, None)),
        (Some(api), Some(name)) => match exact_gpu_context(api, name) {
            Some(ctx) => Ok((Some(ctx), None)),
            None => Ok((GpuContext::new(None)?, Some("as it is not available here"))),
        },
        _ => Ok((gpu_context(flags)?, None)),
    }
}

/// Metadata keys of `last.safetensors`: the [`RunConfig`] and the [`RunState`], as JSON.
const RUN_KEY: &str = "run";
const STATE_KEY: &str = "state";
const LAST: &str = "last.safetensors";

/// A run ready to train: new, or read back from its last checkpoint.
struct Setup {
    run_dir: PathBuf,
    plan: Plan,
    config: RunConfig,
    params: Params<f32>,
    /// The saved position and optimiser state, when resuming.
    resume: Option<(RunState, OptimizerState)>,
    /// A new masked run's mask (a resumed run's is in its state).
    mask: Option<Mask>,
}

pub fn train(args: TrainArgs) -> Result<()> {
    train_run(args).map(|_| ())
}

/// [`train`], returning the run's history (every epoch, the resumed ones too).
pub fn train_run(args: TrainArgs) -> Result<Vec<EpochStats>> {
    let setup = match &args.resume {
        Some(dir) => resume_setup(dir, args.epochs)?,
        None => new_setup(&args)?,
    };
    check_outputs(&setup, &args)?;
    run(setup, &args)
}

/// Every path the run will write, checked before it starts (see [`check_output_file`]).
fn check_outputs(setup: &Setup, args: &TrainArgs) -> Result<()> {
    if let Some(save) = &args.save {
        check_output_file("--save", save, save)?;
    }
    if let Some(path) = &args.metrics_json {
        check_output_file("--metrics-json", path, path)?;
    }
    if let Some(dir) = &args.plots {
        check_output_dir("--plots", dir)?;
        for name in PLOT_FILES {
            check_output_file("--plots", dir, &dir.join(name))?;
        }
    }
    let run_dir = &setup.run_dir;
    let flag = match (&args.resume, &args.run_dir) {
        (Some(_), _) => "--resume",
        (None, Some(_)) => "--run-dir",
        (None, None) => "run directory",
    };
    check_output_dir(flag, run_dir)?;
    let mut inside = vec![LAST, METRICS];
    inside.extend(setup.config.val_split.map(|_| BEST));
    inside.extend(args.save.is_none().then_some(MODEL));
    inside.extend(PLOT_FILES);
    for name in inside {
        check_output_file(flag, run_dir, &run_dir.join(name))?;
    }
    Ok(())
}

fn new_setup(args: &TrainArgs) -> Result<Setup> {
    let (_, plan) = args.arch.plan()?;
    let recipe = recipe::resolve(args)?;
    let prune = masking::schedule(args, &plan)?;
    if args.early_stopping.is_some() && args.val_split.is_none() {
        return Err(bad_input("--early-stopping: needs --val-split"));
    }
    let optimizer = recipe.optimizer;
    let train = TrainConfig {
        epochs: recipe.epochs,
        batch_size: recipe.batch_size,
        seed: args.seed,
        lr: optimizer.lr(),
        schedule: recipe.schedule,
        early_stopping: args.early_stopping.map(|p| p as usize),
        augment: recipe.augment,
        prune,
    };
    let run_dir = match (&args.run_dir, &args.save) {
        (Some(dir), _) => dir.clone(),
        (None, Some(save)) => save.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        (None, None) => default_run_dir(),
    };
    let (params, init_pruning) = initial_params(args, &plan)?;
    let mask = masking::start_mask(&plan, &params, init_pruning.as_deref(), prune);
    let data = DataSource {
        data_dir: data_dir(args.data.data_dir.as_deref())?,
        train_limit: args.train_limit,
        test_limit: args.data.test_limit,
        classes: args.classes.clone().map(|c| c.0),
        per_class_limit: args.per_class_limit,
    };
    let config = RunConfig {
        train,
        optimizer,
        data,
        val_split: args.val_split,
        device: String::new(),
        backend: None,
        adapter: None,
        init_from: args.init_from.clone(),
        reinit: args.reinit.clone(),
        freeze: args.freeze.clone(),
    };
    outln!("{}", recipe.line);
    if let Some(mask) = &mask {
        outln!("{}", masking::describe(mask, prune, train.epochs));
    }
    Ok(Setup {
        run_dir,
        plan,
        config,
        params,
        resume: None,
        mask,
    })
}

/// The transfer flags of a new run checked against its model, before any work: --freeze and
/// --reinit name its layers, something is left to train, --reinit comes with --init-from.
/// A search checks every trial's this way before its first trial trains.
pub fn check_transfer_flags(args: &TrainArgs, plan: &Plan) -> Result<()> {
    for (flag, names) in [("--freeze", &args.freeze), ("--reinit", &args.reinit)] {
        check_layer_names(plan, names).map_err(|e| bad_input(format!("{flag}: {e}")))?;
    }
    let frozen = frozen_mask(plan, &args.freeze);
    let trains = (plan.params.iter().zip(&frozen)).any(|(spec, &f)| spec.trainable && !f);
    if !trains {
        return Err(bad_input(format!(
            "--freeze {}: freezes every layer; nothing would train",
            args.freeze.join(",")
        )));
    }
    if args.init_from.is_none() && !args.reinit.is_empty() {
        return Err(bad_input("--reinit: needs --init-from"));
    }
    Ok(())
}

/// A new run's parameters: initialised by the seed, or loaded from --init-from where names
/// and shapes match (saying which); --freeze and --reinit checked against the layers. With
/// them, the `pruning` record of --init-from, if it has one.
fn initial_params(args: &TrainArgs, plan: &Plan) -> Result<(Params<f32>, Option<String>)> {
    check_transfer_flags(args, plan)?;
    let Some(path) = &args.init_from else {
        return Ok((init_params(plan, args.seed), None));
    };
    let pretrained = load_checkpoint(path)?;
    let (params, origins) = init_from(plan, args.seed, &pretrained.params, &args.reinit);
    outln!(
        "--init-from {}: {}",
        path.display(),
        describe_origins(&origins)
    );
    // The new run's labels are the ones saved with it. A head loaded from a model of other
    // labels keeps its old outputs' weights under the new labels: rarely what is meant.
    let labels: Vec<usize> = match &args.classes {
        Some(list) => list.0.iter().map(|&l| usize::from(l)).collect(),
        None => (0..plan.classes()).collect(),
    };
    let head = (plan.params.iter().rev().find(|p| p.trainable)).map(|p| layer_of(&p.name));
    let head_loaded = (origins.iter())
        .any(|(name, origin)| Some(layer_of(name)) == head && *origin == Origin::Loaded);
    if head_loaded && pretrained.labels != labels {
        let list = |l: &[usize]| l.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        errln!(
            "warning: --init-from {}: its head '{}' was trained on the labels {}, this run's are {}; add --reinit {1} to start the head afresh",
            path.display(),
            head.unwrap_or_default(),
            list(&pretrained.labels),
            list(&labels)
        );
    }
    Ok((
        params,
        pretrained.metadata.get(masking::PRUNING_KEY).cloned(),
    ))
}

/// Reads `dir/last.safetensors`; `epochs`, if given, is the run's new total.
fn resume_setup(dir: &Path, epochs: Option<u64>) -> Result<Setup> {
    if !dir.is_dir() {
        return Err(bad_input(format!(
            "--resume {}: no such run directory",
            dir.display()
        )));
    }
    let path = dir.join(LAST);
    let TrainingCheckpoint {
        checkpoint,
        optimizer,
    } = load_training_checkpoint(&path)?;
    let metadata = |key: &str| -> Result<&str> {
        let value = checkpoint.metadata.get(key).map(String::as_str);
        value.ok_or_else(|| bad_input(format!("{}: no '{key}' in the metadata", path.display())))
    };
    let bad = |key: &str, e: serde_json::Error| {
        bad_input(format!("{}: bad '{key}' metadata: {e}", path.display()))
    };
    let mut config: RunConfig =
        serde_json::from_str(metadata(RUN_KEY)?).map_err(|e| bad(RUN_KEY, e))?;
    let state: RunState =
        serde_json::from_str(metadata(STATE_KEY)?).map_err(|e| bad(STATE_KEY, e))?;
    if let Some(epochs) = epochs {
        config.train.epochs = epochs as usize;
    }
    check_more_to_do(dir, &state, config.train.epochs)?;
    if let Some(data) = config.data.data_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(bad_input(format!(
            "--resume {}: the run's data directory {} is not found",
            dir.display(),
            data.display()
        )));
    }
    Ok(Setup {
        run_dir: dir.to_path_buf(),
        plan: checkpoint.plan,
        config,
        params: checkpoint.params,
        resume: Some((state, optimizer)),
        mask: None,
    })
}

/// A bad-input error unless the run in `dir` has steps left before epoch `epochs` ends.
fn check_more_to_do(dir: &Path, state: &RunState, epochs: usize) -> Result<()> {
    let done = state.epochs_done;
    if state.stopped_early {
        return Err(bad_input(format!(
            "--resume {}: the run stopped early after epoch {done} (--early-stopping); nothing to resume",
            dir.display()
        )));
    }
    if done >= epochs {
        return Err(bad_input(format!(
            "--resume {}: the run has finished {}; pass --epochs N with N > {done} to train more",
            dir.display(),
            count(done, "epoch")
        )));
    }
    Ok(())
}

/// `runs/<timestamp>`, with a suffix if a run started in the same second.
fn default_run_dir() -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    let mut dir = Path::new("runs").join(&stamp);
    for n in 2.. {
        if !dir.exists() {
            break;
        }
        dir = Path::new("runs").join(format!("{stamp}-{n}"));
    }
    dir
}

fn run(setup: Setup, args: &TrainArgs) -> Result<Vec<EpochStats>> {
    let Setup {
        run_dir,
        plan,
        config,
        params,
        resume,
        mask,
    } = setup;
    // First, so that a Ctrl-C while the data loads already stops at the first step.
    let stop = stop_on_ctrl_c()?;
    let mut mnist = load_data(&config.data, plan.classes(), true)?;
    let validation = match config.val_split {
        Some(n) if n as usize >= mnist.train.len() => {
            return Err(bad_input(format!(
                "--val-split {n}: leaves no training images (there are {})",
                mnist.train.len()
            )))
        }
        Some(n) => {
            let (rest, held) = hold_out(&mnist.train, n as usize, config.train.seed);
            mnist.train = rest;
            Some(held)
        }
        None => None,
    };
    let optimizer = config.optimizer;
    let flags = &args.data.device;
    let tuning = flags.kernels.load()?;
    let (ctx, why_moved) = match resume {
        Some(_) => resumed_device(flags, &config)?,
        None => (gpu_context(flags)?, None),
    };
    let lose_device = lose_device_after_epoch()?.zip(ctx.as_ref().map(|c| c.device.clone()));
    let mut backend = backend_on(ctx, &tuning, plan.clone(), params, optimizer)?;
    backend.set_frozen(&frozen_mask(&plan, &config.freeze))?;
    let info = backend.info();
    let device = format!("{} ({})", info.backend, info.adapter);
    let start = match resume {
        Some((state, optimizer_state)) => {
            backend.set_optimizer_state(&optimizer_state)?;
            if !config.same_device(&info) {
                let why = why_moved.map_or(String::new(), |why| format!(" {why}"));
                errln!(
                    "warning: the run trained on {}; it continues on {device}{why}: the result will not be bit for bit the same as an uninterrupted run's",
                    config.device
                );
            }
            state
        }
        None => RunState {
            mask,
            ..RunState::default()
        },
    };
    let config = RunConfig {
        device,
        backend: Some(info.backend.clone()),
        adapter: Some(info.adapter.clone()),
        ..config
    };
    let on_gpu = info.backend != "cpu";
    print_start(info, &plan, &config, &mnist, &start);
    if on_gpu {
        let training = batch_sizes(mnist.train.len(), config.train.batch_size);
        let mut inference = eval_batch_sizes(mnist.test.len());
        inference.extend(validation.iter().flat_map(|v| eval_batch_sizes(v.len())));
        inference.sort_unstable();
        inference.dedup();
        prepare_kernels(backend.as_mut(), &training, &inference)?;
    }
    let mut extra = vec![
        ("seed", config.train.seed.to_string()),
        ("optimizer", format!("{optimizer:?}")),
        ("schedule", format!("{:?}", config.train.schedule)),
        ("augment", format!("{:?}", config.train.augment)),
    ];
    if let Some(mask) = &start.mask {
        let init_from = config.init_from.as_deref();
        extra.extend(masking::metadata(mask, config.train.prune, init_from));
    }
    // So that predict and eval name the outputs by the labels they were trained on.
    if let Some(classes) = &config.data.classes {
        extra.push((CLASSES_KEY, classes_metadata(classes)));
    }
    let labels = labels_of(&config.data, plan.classes());
    let run_json = serde_json::to_string(&config).context("serialising the run")?;
    // The epochs in the run directory's last checkpoint, for the message of a failed run.
    let saved_epochs = std::cell::Cell::new(start.epochs_done);
    let mut on_checkpoint = |backend: &mut dyn Backend, state: &RunState| {
        save_state(&run_dir, &plan, backend, state, &extra, &run_json)?;
        saved_epochs.set(state.epochs_done);
        if let Some((_, device)) = lose_device
            .as_ref()
            .filter(|(n, _)| *n == state.epochs_done)
        {
            device.destroy();
        }
        Ok(())
    };
    let mut progress = EpochProgress::new(config.train.epochs, plan.classes());
    let outcome = train_resumable(
        backend.as_mut(),
        &mnist.train,
        validation.as_ref(),
        &config.train,
        &mut |p| progress.update(p),
        Resumable {
            start,
            on_checkpoint: &mut on_checkpoint,
            stop,
        },
    )
    .map_err(|e| with_resume_hint(e, &run_dir, saved_epochs.get()))?;
    if outcome.interrupted {
        return Err(anyhow::Error::new(Interrupted(format!(
            "interrupted: resume with mnist-wgpu train --resume {}",
            run_dir.display()
        ))));
    }
    let save = (args.save.clone()).unwrap_or_else(|| run_dir.join(MODEL));
    save_checkpoint(&save, &plan, &backend.params()?, &extra)?;
    outln!("saved model to {}", save.display());
    if let Some(best) = &outcome.best {
        if outcome.stopped_early {
            outln!(
                "stopped early: no better validation loss for {}",
                count(config.train.early_stopping.unwrap_or(0), "epoch")
            );
        }
        outln!(
            "saved the best epoch ({}, validation loss {:.4}) to {}",
            best.epoch,
            best.val_loss,
            run_dir.join(BEST).display()
        );
    }
    if args.trial {
        return Ok(outcome.history);
    }
    let metrics_json = run_dir.join(METRICS);
    let metrics: Vec<&Path> = [Some(metrics_json.as_path()), args.metrics_json.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let evaluation = report(
        backend.as_mut(),
        &mnist,
        (&outcome.history, config.train.prune),
        plan.arch.to_string(),
        Some(config.train.seed),
        &labels,
        &metrics,
    )?;
    for dir in [Some(run_dir.as_path()), args.plots.as_deref()]
        .into_iter()
        .flatten()
    {
        let augmented = config.train.augment.map(|augment| AugmentedRun {
            augment,
            seed: config.train.seed,
            train: &mnist.train,
        });
        let written = write_plots(
            dir,
            &outcome.history,
            &evaluation,
            &mnist.test,
            augmented,
            &labels,
        )?;
        for path in written {
            outln!("wrote {}", path.display());
        }
    }
    Ok(outcome.history)
}

/// A lost GPU device ends the run, but the epochs saved before it can go on, on this device
/// once it is back or on another: the error says how.
fn with_resume_hint(err: anyhow::Error, run_dir: &Path, saved_epochs: usize) -> anyhow::Error {
    if saved_epochs == 0 || !err.chain().any(|e| e.is::<DeviceLost>()) {
        return err;
    }
    let hint = format!(
        "{err:#}; the run directory keeps the checkpoint after {}: resume with mnist-wgpu train --resume {} (add --backend to move to another device)",
        count(saved_epochs, "epoch"),
        run_dir.display()
    );
    anyhow::Error::new(DeviceLost(hint))
}

/// `MNIST_WGPU_LOSE_DEVICE_AFTER_EPOCH=N` destroys the GPU device right after epoch N's
/// checkpoint, as a driver reset would: the fault tests use it to lose the device of a real
/// run (tests/faults.rs). Unset in normal use.
fn lose_device_after_epoch() -> Result<Option<usize>> {
    const VAR: &str = "MNIST_WGPU_LOSE_DEVICE_AFTER_EPOCH";
    match std::env::var(VAR) {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad_input(format!("{VAR}={v}: expected an epoch number"))),
    }
}

const BEST: &str = "best.safetensors";
const MODEL: &str = "model.safetensors";
const METRICS: &str = "metrics.json";

/// Compiles the GPU kernels for every batch size the run will see (`training` steps, and
/// `inference` for the evaluations) before the first step, saying so: on a first run, a CPU
/// adapter spends a minute or more compiling and autotuning them, which would otherwise pass
/// in silence (or stall the last step of the first epoch and the first evaluation).
pub(super) fn prepare_kernels(
    backend: &mut dyn Backend,
    training: &[usize],
    inference: &[usize],
) -> Result<()> {
    let message =
        "preparing the GPU kernels (compiled and autotuned once per adapter, then cached)...";
    let start = Instant::now();
    while_working(message, || backend.prepare(training, inference))?;
    let choices = backend.kernel_choices();
    let tuned = choices.iter().filter(|c| c.source == "tuned").count();
    let note = match tuned {
        0 => String::new(),
        n => format!(", {n} of {} autotuned", count(choices.len(), "op")),
    };
    outln!("ready in {:.1} s{note}", start.elapsed().as_secs_f64());
    Ok(())
}

fn print_start(
    info: BackendInfo,
    plan: &Plan,
    config: &RunConfig,
    mnist: &Mnist,
    start: &RunState,
) {
    let TrainConfig {
        epochs,
        batch_size,
        lr,
        schedule,
        ..
    } = config.train;
    if start.epochs_done > 0 || start.step > 0 {
        outln!(
            "resuming after epoch {} (and {} of the next)",
            start.epochs_done,
            count(start.step, "step")
        );
    }
    outln!(
        "training {} on {}, {}, batch {batch_size}, {} (lr {lr}, {} schedule), {}, {} ({})",
        plan.arch,
        count(mnist.train.len(), "image"),
        count(epochs, "epoch"),
        config.optimizer.name(),
        schedule.name(),
        augment_label(config.train.augment),
        info.backend,
        info.adapter
    );
    if !config.freeze.is_empty() {
        outln!(
            "frozen: {} (never updated; a frozen batch norm trains in inference mode)",
            config.freeze.join(", ")
        );
    }
}

/// Writes the training state as `last.safetensors` in `run_dir`, and after a new best epoch
/// its model as `best.safetensors` (first, so that `last` never names a best not on disk).
fn save_state(
    run_dir: &Path,
    plan: &Plan,
    backend: &mut dyn Backend,
    state: &RunState,
    extra: &[(&str, String)],
    run_json: &str,
) -> Result<()> {
    let params = backend.params()?;
    if state.at_new_best() {
        let mut extra = extra.to_vec();
        extra.push(("epoch", state.epochs_done.to_string()));
        save_checkpoint(&run_dir.join(BEST), plan, &params, &extra)?;
    }
    let state_json = serde_json::to_string(state).context("serialising the run state")?;
    let mut extra = extra.to_vec();
    extra.extend([(RUN_KEY, run_json.to_string()), (STATE_KEY, state_json)]);
    let optimizer = backend.optimizer_state()?;
    save_training_checkpoint(&run_dir.join(LAST), plan, &params, &optimizer, &extra)
}

/// A flag that the first Ctrl-C (or SIGTERM) raises, so that training stops after its current
/// step and saves; a second one quits at once.
fn stop_on_ctrl_c() -> Result<&'static AtomicBool> {
    static STOP: AtomicBool = AtomicBool::new(false);
    // Installed once per process: a search trains many runs in one.
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .map_err(|e| e.to_string())
    });
    match installed {
        Ok(()) => Ok(&STOP),
        Err(e) => anyhow::bail!("installing the Ctrl-C handler: {e}"),
    }
}

/// Evaluates on the test set, prints it, and writes the metrics JSON with the run's record:
/// its epochs and pruning schedule (none for `eval`).
pub(super) fn report(
    backend: &mut dyn mnist_wgpu::backend::Backend,
    mnist: &Mnist,
    (history, prune_schedule): (&[EpochStats], Option<PruneSchedule>),
    arch: String,
    seed: Option<u64>,
    labels: &[usize],
    metrics_json: &[&Path],
) -> Result<Evaluation> {
    let evaluation = evaluate(backend, &mnist.test)?;
    print_evaluation(&evaluation, labels);
    if !metrics_json.is_empty() {
        let device = (&backend.info(), backend.kernel_choices());
        let report = MetricsReport {
            prune_schedule,
            ..MetricsReport::new(&evaluation, history, device, arch, seed, labels)
        };
        let json = serde_json::to_vec_pretty(&report).context("serialising metrics")?;
        for path in metrics_json {
            write_atomic(path, &json)?;
            outln!("wrote metrics to {}", path.display());
        }
    }
    Ok(evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command};

    /// A flag added to `train` must either conflict with --resume or be known to be safe with
    /// it (device and output flags), so that a resumed run can never silently change.
    #[test]
    fn every_training_flag_conflicts_with_resume() {
        let cmd = TrainArgs::augment_args(Command::new("train"));
        cmd.clone().debug_assert();
        let allowed = [
            "epochs",
            "resume",
            "save",
            "metrics_json",
            "plots",
            "backend",
            "adapter",
            "autotune",
            "kernels_from",
        ];
        let resume = cmd.get_arguments().find(|a| a.get_id() == "resume");
        let conflicts: Vec<&str> = cmd
            .get_arg_conflicts_with(resume.expect("a --resume flag"))
            .iter()
            .map(|a| a.get_id().as_str())
            .collect();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            assert!(
                allowed.contains(&id) || conflicts.contains(&id),
                "--{id} neither conflicts with --resume nor is allowed with it"
            );
        }
    }
}
