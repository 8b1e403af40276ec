//! Never losing work: optimiser state, training checkpoints, interrupted and killed runs that
//! resume bit for bit, and clear errors for bad run directories.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{assert_bad_input, bundled_data, run_cli, run_cli_ok, test_cache_dir};
use mnist_wgpu::backend::{Backend, BackendInfo, OptimizerState, TrainStats};
use mnist_wgpu::checkpoint::{load_checkpoint, load_training_checkpoint, save_training_checkpoint};
use mnist_wgpu::config::{Augment, Optimizer, TrainConfig};
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::{load_mnist, Split};
use mnist_wgpu::gpu::GpuBackend;
use mnist_wgpu::model::{init_params, Arch, Params, Plan, MNIST_INPUT};
use mnist_wgpu::prune::{Mask, PruneSchedule, Scope};
use mnist_wgpu::train::{train_resumable, Resumable, RunState};
use safetensors::tensor::{SafeTensors, TensorView};

/// Dropout, batch norm (running statistics) and augmentation (in [`cosine`]) make every step
/// depend on the step number and the seed: a resume must restore both exactly.
fn plan() -> Plan {
    let arch = Arch::parse("conv8k3-bn-relu-pool2-dropout0.25-flatten-dense10").unwrap();
    Plan::new(&arch, MNIST_INPUT).unwrap()
}

fn train_split(n: usize) -> Split {
    load_mnist(&bundled_data()).unwrap().train.truncated(n)
}

/// Every element's bits, so that -0.0 and 0.0 (or two NaNs) are told apart.
fn bits(params: &Params<f32>) -> Vec<(String, Vec<u32>)> {
    let tensors = params.tensors.iter();
    tensors
        .map(|t| (t.name.clone(), t.data.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

// ---------------------------------------------------------------- optimiser state round trip

/// Trains `a` for three steps, copies its parameters and optimiser state into a fresh `b`, and
/// checks that one more step on each gives the same bits.
fn check_optimizer_state_round_trip(a: &mut dyn Backend, b: &mut dyn Backend, data: &Split) {
    let prepare = |backend: &mut dyn Backend| {
        backend.set_seed(3);
        backend.set_train_data(data).unwrap();
    };
    prepare(a);
    prepare(b);
    for step in 0..3u32 {
        a.train_step(&[step, step + 3, step + 7, 11]).unwrap();
    }
    let state = a.optimizer_state().unwrap();
    assert_eq!(state.step, 3);
    assert!(state
        .m
        .tensors
        .iter()
        .any(|t| t.data.iter().any(|&x| x != 0.0)));
    b.set_optimizer_state(&state).unwrap();
    assert_eq!(b.optimizer_state().unwrap(), state, "read back as written");
    a.train_step(&[1, 2, 5, 8]).unwrap();
    b.train_step(&[1, 2, 5, 8]).unwrap();
    assert_eq!(bits(&a.params().unwrap()), bits(&b.params().unwrap()));
    assert_eq!(a.optimizer_state().unwrap(), b.optimizer_state().unwrap());
}

#[test]
fn cpu_optimizer_state_round_trips_and_continues_the_run() {
    let plan = plan();
    let data = train_split(16);
    let mut a = CpuBackend::new(plan.clone(), init_params(&plan, 1), Optimizer::adam(1e-3));
    // `b` starts from `a`'s parameters after its three steps: give it those.
    let mut probe = CpuBackend::new(plan.clone(), init_params(&plan, 1), Optimizer::adam(1e-3));
    probe.set_seed(3);
    probe.set_train_data(&data).unwrap();
    for step in 0..3u32 {
        probe.train_step(&[step, step + 3, step + 7, 11]).unwrap();
    }
    let mut b = CpuBackend::new(plan.clone(), probe.params().unwrap(), Optimizer::adam(1e-3));
    check_optimizer_state_round_trip(&mut a, &mut b, &data);

    let mut wrong = OptimizerState {
        step: 1,
        ..a.optimizer_state().unwrap()
    };
    wrong.v.tensors.pop();
    assert!(b.set_optimizer_state(&wrong).is_err());
}

#[test]
fn gpu_optimizer_state_round_trips_and_continues_the_run() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let plan = plan();
    let data = train_split(16);
    let gpu = |params: &Params<f32>| {
        GpuBackend::new(&ctx, plan.clone(), params, Optimizer::adam(1e-3)).unwrap()
    };
    let mut probe = gpu(&init_params(&plan, 1));
    probe.set_seed(3);
    probe.set_train_data(&data).unwrap();
    for step in 0..3u32 {
        probe.train_step(&[step, step + 3, step + 7, 11]).unwrap();
    }
    let mut a = gpu(&init_params(&plan, 1));
    let mut b = gpu(&probe.params().unwrap());
    check_optimizer_state_round_trip(&mut a, &mut b, &data);
}

// ---------------------------------------------------------------- in-process mid-epoch resume

/// A backend that raises `stop` after `steps` training steps: an interruption at a known step.
struct StopAfter<'a> {
    inner: Box<dyn Backend + 'a>,
    steps: usize,
    stop: &'a AtomicBool,
}

impl Backend for StopAfter<'_> {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }
    fn set_train_data(&mut self, train: &Split) -> anyhow::Result<()> {
        self.inner.set_train_data(train)
    }
    fn set_seed(&mut self, seed: u64) {
        self.inner.set_seed(seed)
    }
    fn set_augmentation(&mut self, augment: Option<Augment>) {
        self.inner.set_augmentation(augment)
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr)
    }
    fn set_frozen(&mut self, frozen: &[bool]) -> anyhow::Result<()> {
        self.inner.set_frozen(frozen)
    }
    fn train_step(&mut self, indices: &[u32]) -> anyhow::Result<()> {
        self.steps = self.steps.saturating_sub(1);
        if self.steps == 0 {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.inner.train_step(indices)
    }
    fn take_train_stats(&mut self) -> anyhow::Result<TrainStats> {
        self.inner.take_train_stats()
    }
    fn classes(&self) -> usize {
        self.inner.classes()
    }
    fn predict_logits(&mut self, images: &[u8]) -> anyhow::Result<Vec<f32>> {
        self.inner.predict_logits(images)
    }
    fn params(&mut self) -> anyhow::Result<Params<f32>> {
        self.inner.params()
    }
    fn optimizer_state(&mut self) -> anyhow::Result<OptimizerState> {
        self.inner.optimizer_state()
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> anyhow::Result<()> {
        self.inner.set_optimizer_state(state)
    }
    fn set_mask(&mut self, mask: Option<&Mask>) -> anyhow::Result<()> {
        self.inner.set_mask(mask)
    }
}

/// Trains `backend` from `start`, returning the last checkpoint's state, parameters and
/// optimiser state (written to and read back from a training checkpoint, as the CLI does).
fn train_from(
    backend: &mut dyn Backend,
    data: (&Split, &Split),
    config: &TrainConfig,
    start: RunState,
    stop: &AtomicBool,
) -> (RunState, Params<f32>, OptimizerState, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let plan = plan();
    let mut on_checkpoint = |b: &mut dyn Backend, state: &RunState| {
        let json = serde_json::to_string(state)?;
        let optimizer = b.optimizer_state()?;
        save_training_checkpoint(&path, &plan, &b.params()?, &optimizer, &[("state", json)])
    };
    let resumable = Resumable {
        start,
        on_checkpoint: &mut on_checkpoint,
        stop,
    };
    let outcome = train_resumable(
        backend,
        data.0,
        Some(data.1),
        config,
        &mut |_| {},
        resumable,
    )
    .unwrap();
    let saved = load_training_checkpoint(&path).unwrap();
    let state = serde_json::from_str(&saved.checkpoint.metadata["state"]).unwrap();
    (
        state,
        saved.checkpoint.params,
        saved.optimizer,
        outcome.interrupted,
    )
}

/// Runs `config` whole, and again stopped after `stop_after` steps and resumed on a fresh
/// backend from the checkpoint; both must end with the same bits and history.
fn check_mid_epoch_resume<'c>(
    make: &dyn Fn(&Params<f32>) -> Box<dyn Backend + 'c>,
    data: (&Split, &Split),
    config: &TrainConfig,
    stop_after: usize,
) {
    check_mid_epoch_resume_from(make, data, config, stop_after, RunState::default());
}

/// [`check_mid_epoch_resume`] from `start` (a masked run's first mask).
fn check_mid_epoch_resume_from<'c>(
    make: &dyn Fn(&Params<f32>) -> Box<dyn Backend + 'c>,
    data: (&Split, &Split),
    config: &TrainConfig,
    stop_after: usize,
    start: RunState,
) {
    let init = init_params(&plan(), config.seed);
    let never = AtomicBool::new(false);
    let whole = train_from(make(&init).as_mut(), data, config, start.clone(), &never);
    assert!(!whole.3);

    let stop = AtomicBool::new(false);
    let mut stopping = StopAfter {
        inner: make(&init),
        steps: stop_after,
        stop: &stop,
    };
    let (state, params, optimizer, interrupted) =
        train_from(&mut stopping, data, config, start, &stop);
    assert!(interrupted);
    let steps = data.0.len().div_ceil(config.batch_size);
    assert_eq!(
        (state.epochs_done, state.step),
        (stop_after / steps, stop_after % steps),
        "stopped mid-epoch after step {stop_after}"
    );
    assert_eq!(optimizer.step as usize, stop_after);
    assert!(state.partial.examples > 0);

    let mut resumed = make(&params);
    resumed.set_optimizer_state(&optimizer).unwrap();
    let after = train_from(resumed.as_mut(), data, config, state, &never);
    assert_eq!(bits(&after.1), bits(&whole.1), "resumed parameters differ");
    assert_eq!(after.2, whole.2, "resumed optimiser state differs");
    assert_eq!(after.0.history.len(), config.epochs);
    let val = |s: &RunState| -> Vec<Option<u64>> {
        let history = s.history.iter();
        history.map(|e| e.val_loss.map(f64::to_bits)).collect()
    };
    assert_eq!(val(&after.0), val(&whole.0), "validation losses");
    assert_eq!(after.0.best, whole.0.best);
    assert_eq!(after.0.mask, whole.0.mask, "the resumed run's mask");
}

fn cosine(epochs: usize, batch_size: usize) -> TrainConfig {
    TrainConfig {
        schedule: mnist_wgpu::config::Schedule::Cosine,
        augment: Some(Augment::mnist()),
        ..common::config(epochs, batch_size, 9, 2e-3)
    }
}

#[test]
fn a_cpu_run_stopped_mid_epoch_resumes_bit_for_bit() {
    cpu_run_stopped_mid_epoch(false);
}

#[test]
fn a_gpu_run_stopped_mid_epoch_resumes_bit_for_bit() {
    gpu_run_stopped_mid_epoch(false);
}

/// 320 training images and 64 for validation, 10 steps per epoch: stops at step 4 of epoch 2.
fn cpu_run_stopped_mid_epoch(masked: bool) {
    let (train, val) = (
        train_split(320),
        train_split(384).subset(&(320..384).collect::<Vec<u32>>()),
    );
    let plan = plan();
    let make = |params: &Params<f32>| -> Box<dyn Backend> {
        Box::new(CpuBackend::new(
            plan.clone(),
            params.clone(),
            Optimizer::adam(2e-3),
        ))
    };
    let config = cosine(3, 32);
    match masked {
        false => check_mid_epoch_resume(&make, (&train, &val), &config, 14),
        true => check_masked_mid_epoch_resume(&make, (&train, &val), &config, 14),
    }
}

/// 64 training images and 16 for validation, 8 steps per epoch: stops at step 3 of epoch 2 (of
/// 2 epochs, or of 3 where masked, for the schedule to raise the sparsity after it).
fn gpu_run_stopped_mid_epoch(masked: bool) {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let (train, val) = (
        train_split(64),
        train_split(80).subset(&(64..80).collect::<Vec<u32>>()),
    );
    let plan = plan();
    let make = |params: &Params<f32>| -> Box<dyn Backend> {
        let b = GpuBackend::new(&ctx, plan.clone(), params, Optimizer::adam(2e-3)).unwrap();
        Box::new(b)
    };
    match masked {
        false => check_mid_epoch_resume(&make, (&train, &val), &cosine(2, 8), 11),
        true => check_masked_mid_epoch_resume(&make, (&train, &val), &cosine(3, 8), 11),
    }
}

/// A masked run whose schedule raises the sparsity every epoch (0.2, 0.55, 0.6 of the conv
/// and dense weights by PolynomialDecay from 0.2 to 0.6 over 3 epochs), stopped in epoch 2 and
/// resumed: the checkpoint carries the mask of epoch 2's start, which the parameters then no
/// longer give, and the resumed run must end where the whole one does, its zeros included.
fn check_masked_mid_epoch_resume<'c>(
    make: &dyn Fn(&Params<f32>) -> Box<dyn Backend + 'c>,
    data: (&Split, &Split),
    config: &TrainConfig,
    stop_after: usize,
) {
    let schedule = PruneSchedule::new(0.2, 0.6, Scope::Layer).unwrap();
    let config = TrainConfig {
        prune: Some(schedule),
        ..*config
    };
    let start = RunState {
        mask: Some(Mask::keep_all(&plan())),
        ..RunState::default()
    };
    check_mid_epoch_resume_from(make, data, &config, stop_after, start);
}

#[test]
fn a_masked_cpu_run_stopped_mid_epoch_resumes_bit_for_bit() {
    cpu_run_stopped_mid_epoch(true);
}

#[test]
fn a_masked_gpu_run_stopped_mid_epoch_resumes_bit_for_bit() {
    gpu_run_stopped_mid_epoch(true);
}

// ---------------------------------------------------------------- the command line

fn model_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    bits(&load_checkpoint(path).unwrap().params)
}

fn epochs_in_metrics(dir: &Path) -> Vec<u64> {
    let bytes = std::fs::read(dir.join("metrics.json")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let epochs = json["epochs"].as_array().unwrap().iter();
    epochs.map(|e| e["epoch"].as_u64().unwrap()).collect()
}

/// The `state` metadata of a run's last.safetensors, if it is there yet.
fn last_state(dir: &Path) -> Option<RunState> {
    let saved = load_training_checkpoint(&dir.join("last.safetensors")).ok()?;
    serde_json::from_str(&saved.checkpoint.metadata["state"]).ok()
}

#[test]
fn a_killed_run_resumes_to_the_same_bits_as_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let data = bundled_data();
    let args = |dir: &Path| -> Vec<String> {
        let model = dir.join("model.safetensors");
        [
            "train",
            "--backend",
            "cpu",
            "--train-limit",
            "3000",
            "--test-limit",
            "200",
            "--epochs",
            "3",
            "--lr-schedule",
            "cosine",
            "--val-split",
            "200",
            "--data-dir",
            data.to_str().unwrap(),
            "--run-dir",
            dir.to_str().unwrap(),
            "--save",
            model.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(args(&a))
        .env("MNIST_WGPU_CACHE_DIR", test_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let first = loop {
        if let Some(state) = last_state(&a) {
            break state;
        }
        assert!(Instant::now() < deadline, "no checkpoint after epoch 1");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((first.epochs_done, first.step), (1, 0));
    // A tenth of the way into epoch 2, then SIGKILL: no handler runs, no checkpoint is
    // written. (Half-way was too late on a loaded machine, whose epochs vary by 2x and more;
    // tests/faults.rs kills at random moments.)
    std::thread::sleep(Duration::from_secs_f64(first.history[0].seconds / 10.0));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = last_state(&a).unwrap();
    assert_eq!(
        killed.epochs_done, 1,
        "killed after epoch 2 ended: too slow a kill"
    );
    assert!(!a.join("model.safetensors").exists());

    let resume = run_cli_ok(&["train", "--resume", a.to_str().unwrap(), "--backend", "cpu"]);
    assert!(resume.contains("resuming after epoch 1"), "{resume}");
    assert!(
        !resume.contains("epoch 1/3:") && resume.contains("epoch 3/3:"),
        "{resume}"
    );
    run_cli_ok(&args(&b).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        model_bits(&a.join("model.safetensors")),
        model_bits(&b.join("model.safetensors"))
    );
    assert_eq!(
        model_bits(&a.join("best.safetensors")),
        model_bits(&b.join("best.safetensors"))
    );
    assert_eq!(epochs_in_metrics(&a), [1, 2, 3]);
    for file in [
        "curves.png",
        "confusion.png",
        "mistakes.png",
        "last.safetensors",
    ] {
        assert!(a.join(file).exists(), "{file}");
    }
}

fn short_run(dir: &Path, epochs: &str) -> Vec<String> {
    let data = bundled_data();
    [
        "train",
        "--backend",
        "cpu",
        "--train-limit",
        "200",
        "--test-limit",
        "50",
        "--epochs",
        epochs,
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn cli_ok_owned(args: &[String]) -> String {
    run_cli_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn epochs_is_the_total_when_resuming() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    cli_ok_owned(&short_run(&a, "2"));
    let a_str = a.to_str().unwrap();
    assert_bad_input(
        &run_cli(&["train", "--resume", a_str]),
        "the run has finished 2 epochs; pass --epochs N with N > 2",
    );
    let out = run_cli_ok(&[
        "train",
        "--resume",
        a_str,
        "--epochs",
        "3",
        "--backend",
        "cpu",
    ]);
    let trained: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(trained.len(), 1, "{out}");
    assert!(trained[0].starts_with("epoch 3/3:"), "{out}");
    cli_ok_owned(&short_run(&b, "3"));
    assert_eq!(
        model_bits(&a.join("model.safetensors")),
        model_bits(&b.join("model.safetensors"))
    );
    assert_eq!(epochs_in_metrics(&a), [1, 2, 3]);
    // The training state loads as a plain model too.
    run_cli_ok(&[
        "eval",
        "--model",
        a.join("last.safetensors").to_str().unwrap(),
        "--backend",
        "cpu",
        "--test-limit",
        "10",
        "--data-dir",
        bundled_data().to_str().unwrap(),
    ]);
}

/// Rewrites a safetensors file with `edit` applied to its tensors, keeping the metadata.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            let view = TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap();
            (n.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

#[test]
fn bad_run_directories_and_flags_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let missing = tmp.path().join("missing");
    assert_bad_input(
        &run_cli(&["train", "--resume", missing.to_str().unwrap()]),
        "no such run directory",
    );
    assert_bad_input(
        &run_cli(&["train", "--resume", "x", "--lr", "0.1"]),
        "'--resume <DIR>' cannot be used with '--lr <LR>'",
    );
    assert_bad_input(
        &run_cli(&["train", "--resume", "x", "--run-dir", "y"]),
        "cannot be used with",
    );
    cli_ok_owned(&short_run(&run, "1"));
    let last = run.join("last.safetensors");
    let good = std::fs::read(&last).unwrap();
    let resume = |needle: &str| {
        let out = run_cli(&["train", "--resume", run.to_str().unwrap(), "--epochs", "2"]);
        assert_bad_input(&out, needle);
        std::fs::write(&last, &good).unwrap();
    };

    std::fs::write(&last, b"not a checkpoint").unwrap();
    resume("last.safetensors: not a safetensors checkpoint");
    rewrite(&last, |t| {
        t.retain(|(n, _, _)| n != "optimizer.v.conv2.bias")
    });
    resume("tensor 'optimizer.v.conv2.bias' is missing");
    rewrite(&last, |t| t.retain(|(n, _, _)| n != "fc.weight"));
    resume("tensor 'fc.weight' is missing");
    rewrite(&last, |t| {
        let m = t
            .iter_mut()
            .find(|(n, _, _)| n == "optimizer.m.fc.bias")
            .unwrap();
        m.1 = vec![5, 2];
    });
    resume("tensor 'optimizer.m.fc.bias' has shape [5, 2], expected [10]");
    std::fs::remove_file(&last).unwrap();
    let out = run_cli(&["train", "--resume", run.to_str().unwrap()]);
    assert_bad_input(&out, "last.safetensors: cannot read checkpoint");
    // A model alone has no training state.
    std::fs::copy(run.join("model.safetensors"), &last).unwrap();
    let out = run_cli(&["train", "--resume", run.to_str().unwrap()]);
    assert_bad_input(&out, "not a training checkpoint");
}

#[test]
fn ctrl_c_saves_the_position_and_resume_finishes_the_run() {
    if let Some(state) = check_ctrl_c_resume(&["--epochs", "1"]) {
        assert_eq!(state.epochs_done, 0);
    }
}

/// A masked run with a schedule (0.3 in epoch 1, 0.7 in epoch 2), interrupted mid-epoch: its
/// checkpoint carries that epoch's mask, and the resumed run (re-pruned at epoch 2's start if
/// stopped in epoch 1) ends on the bits of an uninterrupted one.
#[test]
fn ctrl_c_in_a_masked_run_saves_its_mask_and_resume_finishes_the_run() {
    let state = check_ctrl_c_resume(&["--epochs", "2", "--prune-schedule", "0.3:0.7"]);
    if let Some(state) = state {
        let mask = state.mask.expect("the checkpoint carries the mask");
        let scheduled = [0.3, 0.7][state.epochs_done];
        assert!(
            (mask.fraction() - scheduled).abs() < 1e-4,
            "{}",
            mask.fraction()
        );
    }
}

/// Runs `train` with `more` flags, interrupts it with SIGINT after 1.5 s, resumes it, and
/// compares the model with an uninterrupted run's. The interrupted run's state, unless it
/// finished before the signal.
fn check_ctrl_c_resume(more: &[&str]) -> Option<RunState> {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let data = bundled_data();
    let args = |dir: &Path| -> Vec<String> {
        let mut args = [
            "train",
            "--backend",
            "cpu",
            "--train-limit",
            "6000",
            "--test-limit",
            "50",
            "--data-dir",
            data.to_str().unwrap(),
            "--run-dir",
            dir.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(more.iter().map(|m| m.to_string()));
        args
    };
    let child = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(args(&a))
        .env("MNIST_WGPU_CACHE_DIR", test_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Data loading and a few steps, then SIGINT.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(0) {
        eprintln!("the run finished before Ctrl-C; nothing to check");
        return None;
    }
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "interrupted: resume with mnist-wgpu train --resume {}",
            a.display()
        )),
        "{stderr}"
    );
    let state = last_state(&a).unwrap();
    assert!(state.step > 0, "stopped mid-epoch");
    run_cli_ok(&["train", "--resume", a.to_str().unwrap(), "--backend", "cpu"]);
    cli_ok_owned(&args(&b));
    assert_eq!(
        model_bits(&a.join("model.safetensors")),
        model_bits(&b.join("model.safetensors"))
    );
    Some(state)
}

/// Rewrites the run configuration (the `run` metadata) of a training checkpoint with `edit`.
fn edit_run_config(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    let mut run: serde_json::Value = serde_json::from_str(&metadata["run"]).unwrap();
    edit(&mut run);
    metadata.insert("run".into(), run.to_string());
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<_> = file.tensors();
    std::fs::write(path, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
}

/// A new run directory holding a copy of `from`'s last.safetensors.
fn copy_of_run(from: &Path, to: &Path) -> String {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("last.safetensors"), to.join("last.safetensors")).unwrap();
    to.to_str().unwrap().to_string()
}

/// Stdout and stderr of a command that must succeed.
fn ok_with_stderr(out: std::process::Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A CPU run resumed without device flags continues on the CPU, not on the best adapter that
/// `--backend auto` would take, silently and to the bits of an uninterrupted run.
#[test]
fn a_resumed_run_continues_on_the_device_it_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    cli_ok_owned(&short_run(&a, "1"));
    let run = load_training_checkpoint(&a.join("last.safetensors")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&run.checkpoint.metadata["run"]).unwrap();
    assert_eq!(config["backend"], "cpu", "{config}");
    assert!(config["adapter"].is_string(), "{config}");

    let out = run_cli(&["train", "--resume", a.to_str().unwrap(), "--epochs", "2"]);
    let (stdout, stderr) = ok_with_stderr(out);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains(", cpu (CPU reference"), "{stdout}");
    cli_ok_owned(&short_run(&b, "2"));
    assert_eq!(
        model_bits(&a.join("model.safetensors")),
        model_bits(&b.join("model.safetensors"))
    );
}

/// A run that cannot continue where it trained, or that the flags move, says in one warning
/// that it will not end bit for bit as an uninterrupted run would. (A GPU run is stood for by
/// a checkpoint edited to name an adapter that does not exist.)
#[test]
fn a_resumed_run_that_moves_warns_once() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("trained");
    cli_ok_owned(&short_run(&trained, "1"));
    let on_a_gpu_not_here = |dir: &Path| {
        let dir = copy_of_run(&trained, dir);
        edit_run_config(&Path::new(&dir).join("last.safetensors"), |run| {
            run["backend"] = "vulkan".into();
            run["adapter"] = "No Such GPU".into();
            run["device"] = "vulkan (No Such GPU)".into();
        });
        dir
    };
    let warning = |stderr: &str, why: &str| {
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(
                "warning: the run trained on vulkan (No Such GPU); it continues on cpu (CPU reference"
            ),
            "{stderr}"
        );
        assert!(
            lines[0].ends_with(&format!(
                "{why}: the result will not be bit for bit the same as an uninterrupted run's"
            )),
            "{stderr}"
        );
    };

    // Not here: the best device there is, with a warning that says why. WGPU_BACKEND=metal
    // hides every adapter (but on Apple's machines), so that is the CPU.
    let dir = on_a_gpu_not_here(&tmp.path().join("gone"));
    let mut resume = common::cli_command(&["train", "--resume", &dir, "--epochs", "2"]);
    if !cfg!(target_vendor = "apple") {
        resume.env("WGPU_BACKEND", "metal");
        let (_, stderr) = ok_with_stderr(resume.output().unwrap());
        warning(&stderr, "as it is not available here");
    }

    // Moved by the flags.
    let dir = on_a_gpu_not_here(&tmp.path().join("moved"));
    let out = run_cli(&[
        "train",
        "--resume",
        &dir,
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    let (_, stderr) = ok_with_stderr(out);
    warning(&stderr, "as --backend/--adapter ask");

    // A checkpoint from before the device was recorded resumes where the flags say, as then.
    let dir = copy_of_run(&trained, &tmp.path().join("old"));
    edit_run_config(&Path::new(&dir).join("last.safetensors"), |run| {
        let run = run.as_object_mut().unwrap();
        run.remove("backend").unwrap();
        run.remove("adapter").unwrap();
    });
    let out = run_cli(&[
        "train",
        "--resume",
        &dir,
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    let (stdout, stderr) = ok_with_stderr(out);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("epoch 2/2:"), "{stdout}");
}

#[test]
fn a_resumed_run_whose_data_directory_is_gone_is_a_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("trained");
    cli_ok_owned(&short_run(&trained, "1"));
    let dir = copy_of_run(&trained, &tmp.path().join("copy"));
    let missing = tmp.path().join("no-data");
    edit_run_config(&Path::new(&dir).join("last.safetensors"), |run| {
        run["data"]["data_dir"] = missing.to_str().unwrap().into();
    });
    assert_bad_input(
        &run_cli(&["train", "--resume", &dir, "--epochs", "2"]),
        &format!(
            "--resume {dir}: the run's data directory {} is not found",
            missing.display()
        ),
    );
}
