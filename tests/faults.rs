//! Real faults, not mocks: runs killed at random moments, a checkpoint write that runs out of
//! room, a lost GPU device, a batch too large for the adapter, a run that blows up while
//! staying finite, and two processes tuning into one autotune cache at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_bad_input, bundled_data, run_cli, run_cli_ok, test_cache_dir};
use mnist_wgpu::checkpoint::{load_checkpoint, load_training_checkpoint};
use mnist_wgpu::train::RunState;
use rand::{RngExt, SeedableRng};

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Every parameter's bits.
fn model_bits(path: &Path) -> Vec<Vec<u32>> {
    let params = load_checkpoint(path).unwrap().params;
    let tensors = params.tensors.iter();
    tensors
        .map(|t| t.data.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// A short CPU run of six epochs of ten steps: a checkpoint every few hundred milliseconds, so
/// that random kills land in steps, in evaluation and in checkpoint writes.
fn short_run(dir: &Path) -> Vec<String> {
    train_in(
        dir,
        &[
            "--backend",
            "cpu",
            "--train-limit",
            "320",
            "--epochs",
            "6",
            "--lr-schedule",
            "cosine",
        ],
    )
}

/// `train` with `flags`, the bundled data, 50 test images and `dir` as the run directory.
fn train_in(dir: &Path, flags: &[&str]) -> Vec<String> {
    let mut args = strings(&["train", "--test-limit", "50"]);
    args.extend(strings(flags));
    args.extend(["--data-dir".into(), bundled_data().display().to_string()]);
    args.extend(["--run-dir".into(), dir.display().to_string()]);
    args
}

fn spawn(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(args)
        .env("MNIST_WGPU_CACHE_DIR", test_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn run_owned(args: &[String]) -> Output {
    run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn runs_killed_at_ten_random_moments_resume_to_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    let out = run_owned(&short_run(&reference));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let whole = start.elapsed().as_secs_f64();
    let expected = model_bits(&reference.join("model.safetensors"));

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let epoch = whole / 6.0;
    let mut resumed = 0;
    for trial in 0..10 {
        let dir = tmp.path().join(format!("killed-{trial}"));
        let mut child = spawn(&short_run(&dir));
        // After the checkpoint of a random epoch, a random moment within the next epoch's
        // worth of time: in a step, in the evaluation, or in a checkpoint write. Measured from
        // the run's own progress, so that a slow machine moves the moments with it.
        let after_epoch = rng.random_range(1..=4);
        let extra = rng.random_range(0.0..1.0) * epoch;
        let deadline = Instant::now() + Duration::from_secs(300);
        while last_epoch(&dir).is_none_or(|done| done < after_epoch) {
            assert!(Instant::now() < deadline, "trial {trial}: no checkpoint");
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_secs_f64(extra));
        let _ = child.kill(); // SIGKILL: no handler runs.
        child.wait().unwrap();
        let moment = format!("trial {trial}, killed {extra:.3} s after epoch {after_epoch}");
        if !dir.join("model.safetensors").exists() {
            let resume = strings(&[
                "train",
                "--resume",
                dir.to_str().unwrap(),
                "--backend",
                "cpu",
            ]);
            let out = run_owned(&resume);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{moment}: {stderr}");
            resumed += 1;
        }
        assert_eq!(
            model_bits(&dir.join("model.safetensors")),
            expected,
            "{moment}"
        );
    }
    eprintln!("{resumed} of 10 killed runs were resumed from a checkpoint");
    assert!(resumed >= 5, "too few kills landed before the run's end");
}

/// The epochs done by a run's last checkpoint, once there is one that reads.
fn last_epoch(dir: &Path) -> Option<usize> {
    let saved = load_training_checkpoint(&dir.join("last.safetensors")).ok()?;
    let state: RunState = serde_json::from_str(&saved.checkpoint.metadata["state"]).ok()?;
    Some(state.epochs_done)
}

/// Ignores SIGXFSZ and limits the size of any file the child writes, so that a write past it
/// fails with EFBIG (as on a full quota) instead of killing the process.
fn with_file_size_limit(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // Safety: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_checkpoint_write_that_fails_part_way_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let data = bundled_data();
    let first = [
        "train",
        "--backend",
        "cpu",
        "--train-limit",
        "320",
        "--test-limit",
        "50",
        "--epochs",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.to_str().unwrap(),
    ];
    run_cli_ok(&first);
    let last = dir.join("last.safetensors");
    let before = std::fs::read(&last).unwrap();
    assert!(
        before.len() > 200_000,
        "the checkpoint is larger than the limit below"
    );

    let mut resume = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"));
    resume
        .args(["train", "--resume", dir.to_str().unwrap(), "--epochs", "2"])
        .env("MNIST_WGPU_CACHE_DIR", test_cache_dir());
    with_file_size_limit(&mut resume, 100_000);
    let out = resume.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(out.status.code().is_some(), "killed by a signal: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("last.safetensors"),
        "names the file: {stderr}"
    );
    assert_eq!(
        std::fs::read(&last).unwrap(),
        before,
        "the old checkpoint is intact"
    );
    load_training_checkpoint(&last).expect("and still readable");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A read-only run directory. Root ignores directory permissions, so as root the resume
    // runs as `nobody`, for whom the directory is as read-only as for any user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut resume =
        common::cli_command(&["train", "--resume", dir.to_str().unwrap(), "--epochs", "2"]);
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        resume
            .uid(65534)
            .gid(65534)
            .env("HOME", &home)
            .env("MNIST_WGPU_CACHE_DIR", home.join("cache"));
    }
    let out = resume.output().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Found before the first step, so no epoch's work is lost to it.
    assert_bad_input(&out, &format!("{}: cannot be written in", dir.display()));
    assert_eq!(std::fs::read(&last).unwrap(), before);
}

/// A short GPU run of three epochs on a small model, in `dir`.
fn short_gpu_run(dir: &Path) -> Vec<String> {
    let small = "conv4k3-relu-pool2-flatten-dense10";
    train_in(
        dir,
        &[
            "--backend",
            "gpu",
            "--arch",
            small,
            "--train-limit",
            "256",
            "--epochs",
            "3",
        ],
    )
}

#[test]
fn a_lost_gpu_device_is_an_error_that_says_how_to_resume() {
    if common::gpu_context().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    run_cli_ok(&as_strs(&short_gpu_run(&whole)));

    // The device goes away after the first epoch's checkpoint, as in a driver reset.
    let dir = tmp.path().join("lost");
    let out = common::cli_command(&as_strs(&short_gpu_run(&dir)))
        .env("MNIST_WGPU_LOSE_DEVICE_AFTER_EPOCH", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    let error = errors[0];
    assert!(error.contains("epoch 2"), "says where: {error}");
    assert!(error.contains("lost"), "says what: {error}");
    assert!(
        error.contains("after 1 epoch:"),
        "says what is kept: {error}"
    );
    assert_eq!(last_epoch(&dir), Some(1));

    // The command it gives finishes the run, bit for bit as if nothing had happened.
    let (_, command) = error
        .split_once("resume with ")
        .expect("says how to resume");
    let command = command.split(" (").next().unwrap();
    let args: Vec<&str> = command.split(' ').collect();
    assert_eq!(args[..3], ["mnist-wgpu", "train", "--resume"], "{error}");
    run_cli_ok(&args[1..]);
    assert_eq!(
        model_bits(&dir.join("model.safetensors")),
        model_bits(&whole.join("model.safetensors"))
    );
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_batch_too_large_for_the_adapter_is_a_clear_error_before_any_work() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    // The seed model's largest activation: 32 channels of 26 x 26 floats an example.
    let per_example = 32 * 26 * 26 * 4;
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let too_many = limit / per_example + 1;
    if too_many > 60_000 {
        eprintln!("*** SKIPPED: this adapter binds a batch of the whole training set ***");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let n = too_many.to_string();
    let data = bundled_data();
    let out = run_cli(&[
        "train",
        "--backend",
        "gpu",
        "--batch-size",
        &n,
        "--train-limit",
        &n,
        "--test-limit",
        "10",
        "--epochs",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
    assert_bad_input(&out, "--batch-size");
    assert!(!dir.join("last.safetensors").exists(), "no work was done");
}

#[test]
fn a_run_that_blows_up_but_stays_finite_gets_a_warning() {
    let data = bundled_data();
    let run = |lr: &str| -> Output {
        let tmp = tempfile::tempdir().unwrap();
        let out = run_cli(&[
            "train",
            "--backend",
            "cpu",
            "--lr",
            lr,
            "--train-limit",
            "640",
            "--test-limit",
            "50",
            "--epochs",
            "1",
            "--data-dir",
            data.to_str().unwrap(),
            "--run-dir",
            tmp.path().join("run").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        out
    };
    let stderr = String::from_utf8_lossy(&run("1e6").stderr).into_owned();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("epoch 1") && warnings[0].contains("--lr"),
        "{stderr}"
    );
    let healthy = String::from_utf8_lossy(&run("1e-3").stderr).into_owned();
    assert!(!healthy.contains("warning"), "{healthy}");
}

/// The autotune cache file's entries for any device, as "op | shape" keys.
fn cached_keys(cache: &Path) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("autotune.json")).unwrap())
            .expect("the cache is valid JSON");
    let devices = json["devices"].as_object().unwrap();
    let mut keys: Vec<String> = devices
        .values()
        .flat_map(|d| d.as_object().unwrap().keys().cloned())
        .collect();
    keys.sort();
    keys
}

#[test]
fn two_processes_tuning_at_once_keep_both_choices_in_one_valid_cache() {
    if common::gpu_context().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache: PathBuf = tmp.path().join("cache");
    let info = |batch: &str| {
        Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
            .args([
                "info",
                "--kernels",
                "--arch",
                "flatten-dense10",
                "--batch-size",
                batch,
            ])
            .env("MNIST_WGPU_CACHE_DIR", &cache)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (info("7"), info("9"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let keys = cached_keys(&cache);
    for batch in ["7", "9"] {
        assert!(
            keys.iter().any(|k| k.contains(&format!("| n {batch},"))),
            "no entry of the batch-{batch} process in {keys:?}"
        );
    }
    // And a third run finds every choice there.
    let out = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args([
            "info",
            "--kernels",
            "--arch",
            "flatten-dense10",
            "--batch-size",
            "7",
        ])
        .env("MNIST_WGPU_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cache") && !stdout.contains("tuned"),
        "{stdout}"
    );
}
