//! The command line end to end: flags, exit codes, checkpoints and the metrics JSON.

mod common;

use common::{assert_bad_input, assert_usage_error, bundled_data, run_cli, run_cli_ok};

#[test]
fn help_exits_zero() {
    let out = run_cli(&["train", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--batch-size"));
    let out = run_cli(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mnist-wgpu "));
}

/// Clap's hints are the useful part of a usage error: they survive, the usage does not.
#[test]
fn usage_errors_keep_the_missing_argument_and_the_hints() {
    assert_usage_error(
        &run_cli(&["eval"]),
        &["required arguments were not provided", "--model <PATH>"],
    );
    assert_usage_error(
        &run_cli(&["train", "--backen", "cpu"]),
        &[
            "unexpected argument '--backen'",
            "tip: a similar argument exists: '--backend'",
        ],
    );
    assert_usage_error(
        &run_cli(&["train", "--backend", "foo"]),
        &["invalid value 'foo'", "[possible values: auto, cpu, gpu]"],
    );
    assert_usage_error(
        &run_cli(&["trian"]),
        &[
            "unrecognized subcommand 'trian'",
            "tip: a similar subcommand exists: 'train'",
        ],
    );
}

#[test]
fn arch_help_lists_every_preset() {
    for command in ["train", "summary", "bench"] {
        let help = run_cli_ok(&[command, "--help"]);
        let arch = help
            .split("--arch <ARCH>")
            .nth(1)
            .and_then(|rest| rest.split("--arch-file").next())
            .unwrap_or_else(|| panic!("{command} --help has no --arch: {help}"));
        for (preset, _) in mnist_wgpu::model::PRESETS {
            assert!(
                arch.contains(preset),
                "{command} --arch help lacks {preset}: {arch}"
            );
        }
    }
}

#[test]
fn train_then_eval_writes_a_checkpoint_and_matching_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let train_json = dir.path().join("train.json");
    let eval_json = dir.path().join("eval.json");
    let data = bundled_data();
    let common = [
        "--data-dir",
        data.to_str().unwrap(),
        "--test-limit",
        "500",
        "--backend",
        "cpu",
    ];
    let mut args = vec![
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "1000",
        "--seed",
        "5",
    ];
    args.extend(common);
    args.extend([
        "--save",
        model.to_str().unwrap(),
        "--metrics-json",
        train_json.to_str().unwrap(),
    ]);
    let out = run_cli(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("epoch 1/1: train loss") && stdout.contains("confusion matrix"),
        "{stdout}"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&train_json).unwrap()).unwrap();
    for key in [
        "accuracy",
        "loss",
        "macro_f1",
        "weighted_f1",
        "per_class",
        "confusion",
        "epochs",
        "backend",
        "adapter",
        "arch",
        "seed",
    ] {
        assert!(
            json.get(key).is_some(),
            "metrics JSON lacks '{key}': {json}"
        );
    }
    let accuracy = json["accuracy"].as_f64().unwrap();
    assert!(
        (0.5..=1.0).contains(&accuracy),
        "accuracy {accuracy} should be a fraction of a trained model"
    );
    assert_eq!(json["backend"], "cpu");
    assert_eq!(json["seed"], 5);
    assert_eq!(json["per_class"].as_array().unwrap().len(), 10);
    assert_eq!(json["per_class"][3].as_object().unwrap().len(), 5);
    let confusion_total: u64 = json["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion_total, 500);
    assert_eq!(json["epochs"][0]["epoch"], 1);

    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--metrics-json",
        eval_json.to_str().unwrap(),
    ];
    args.extend(common);
    run_cli_ok(&args);
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&eval_json).unwrap()).unwrap();
    assert_eq!(eval["accuracy"], json["accuracy"]);
    assert_eq!(eval["confusion"], json["confusion"]);
    assert_eq!(eval["seed"], 5);
}

/// Apple's API selected on another OS: wgpu finds no adapter at all.
#[cfg(not(target_vendor = "apple"))]
fn without_adapters(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(args)
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap()
}

#[cfg(not(target_vendor = "apple"))]
#[test]
fn without_an_adapter_gpu_is_an_error_and_auto_falls_back_to_the_cpu_with_a_warning() {
    let data = bundled_data();
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("m.safetensors");
    let common = [
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--test-limit",
        "10",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut args = vec![
        "train",
        "--backend",
        "gpu",
        "--save",
        save.to_str().unwrap(),
    ];
    args.extend(common);
    assert_bad_input(
        &without_adapters(&args),
        "--backend gpu: no GPU adapter found; for a software Vulkan adapter install",
    );
    assert!(
        !save.exists(),
        "nothing may be written when the backend cannot start"
    );

    let mut args = vec!["train", "--save", save.to_str().unwrap()];
    args.extend(common);
    let out = without_adapters(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: no GPU adapter found, running on the CPU reference path"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(", cpu (CPU reference"));
}

#[test]
fn an_adapter_name_that_matches_nothing_is_a_bad_input() {
    let out = run_cli(&[
        "train",
        "--adapter",
        "no-such-gpu-anywhere",
        "--epochs",
        "1",
    ]);
    // With adapters present the error lists them; without any it says none was found.
    assert_bad_input(&out, "--adapter no-such-gpu-anywhere: no");
}

#[test]
fn bench_on_the_cpu_writes_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let data = bundled_data();
    let stdout = run_cli_ok(&[
        "bench",
        "--backend",
        "cpu",
        "--seconds",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--int8",
    ]);
    assert!(stdout.contains("calibration"), "{stdout}");
    assert!(stdout.contains("int8 inference"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["backend"], "cpu");
    // --int8 on the CPU: the int8 model timed once (its device is the CPU path), float there
    // being the bench's own figure.
    let int8 = &r["int8"];
    let rate = |v: &serde_json::Value| v.as_f64().unwrap();
    assert!(rate(&int8["cpu_int8_images_per_second"]) > 0.0, "{int8}");
    assert_eq!(
        int8["int8_images_per_second"],
        int8["cpu_int8_images_per_second"]
    );
    assert_eq!(
        int8["cpu_float_images_per_second"],
        r["inference_images_per_second"]
    );
    assert_eq!(r["batch_size"], 32);
    common::assert_bench_figures(&r);
    assert!(r["kernel_share"].is_null() && r["gpu_bytes"].is_null());
    // The seed model's training work per epoch (conv1 needs no input gradient).
    let gflop = r["epoch_gflop"].as_f64().unwrap();
    assert!((gflop - 855.4).abs() < 0.1, "{gflop}");
}

#[test]
fn a_kernels_file_that_is_not_a_metrics_json_is_a_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, b"[1, 2, 3]").unwrap();
    let data = bundled_data();
    for (file, needle) in [
        (bogus.to_str().unwrap(), "not a metrics JSON"),
        ("/nonexistent/m.json", "/nonexistent/m.json"),
    ] {
        let out = run_cli(&[
            "train",
            "--backend",
            "cpu",
            "--train-limit",
            "32",
            "--data-dir",
            data.to_str().unwrap(),
            "--kernels-from",
            file,
        ]);
        assert_bad_input(&out, needle);
    }
}

#[test]
fn summary_prints_the_layer_table_from_a_spec_or_a_file() {
    let out = run_cli(&["summary"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let conv2 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("4  conv64k3"))
        .unwrap();
    // 64 x 32 x 3 x 3 weights + 64 biases; 64*11*11 outputs of 288 multiply-adds each.
    assert!(
        conv2.contains("64x11x11") && conv2.contains("18496"),
        "{conv2}"
    );
    assert!(conv2.contains("4.461"), "{conv2}");
    assert!(stdout.contains("34826 parameters"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.arch");
    std::fs::write(
        &file,
        "# small\nconv8k5-relu-pool2  # one block\n\nflatten\ndense10\n",
    )
    .unwrap();
    let stdout = run_cli_ok(&["summary", "--arch-file", file.to_str().unwrap()]);
    assert!(
        stdout.starts_with("conv8k5-relu-pool2-flatten-dense10\n"),
        "{stdout}"
    );

    std::fs::write(&file, "conv8k5\nrelu\nsoftmax\n").unwrap();
    assert_bad_input(
        &run_cli(&["summary", "--arch-file", file.to_str().unwrap()]),
        "model.arch: token 3 'softmax'",
    );
    assert_bad_input(
        &run_cli(&["summary", "--arch-file", "/nonexistent.arch"]),
        "--arch-file /nonexistent.arch",
    );
}

#[test]
fn optimisers_and_schedules_are_chosen_by_flags_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let data = bundled_data();
    let stdout = run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "2",
        "--train-limit",
        "64",
        "--test-limit",
        "50",
        "--optimizer",
        "adamw",
        "--lr",
        "0.004",
        "--lr-schedule",
        "step",
        "--lr-gamma",
        "0.25",
        "--data-dir",
        data.to_str().unwrap(),
        "--save",
        dir.path().join("m.safetensors").to_str().unwrap(),
        "--metrics-json",
        json.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("adamw (lr 0.004, step schedule)"),
        "{stdout}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let lrs: Vec<f64> = m["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lr"].as_f64().unwrap())
        .collect();
    assert!(
        (lrs[0] - 0.004).abs() < 1e-9 && (lrs[1] - 0.001).abs() < 1e-9,
        "{lrs:?}"
    );

    assert_bad_input(
        &run_cli(&["train", "--optimizer", "adam", "--nesterov"]),
        "--nesterov: only with --optimizer sgd",
    );
    assert_bad_input(&run_cli(&["train", "--momentum", "1.5"]), "--momentum");
    assert_usage_error(
        &run_cli(&["train", "--lr-schedule", "zigzag"]),
        &[
            "'zigzag'",
            "[possible values: constant, step, cosine, onecycle]",
        ],
    );
}

#[test]
fn validation_split_keeps_the_best_epoch_and_early_stopping_ends_a_stalled_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, json) = (
        dir.path().join("model.safetensors"),
        dir.path().join("m.json"),
    );
    let data = bundled_data();
    // A rate so small that no f32 parameter moves: the validation loss never improves after
    // epoch 1, so patience 1 stops the run after epoch 2.
    let stdout = run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "5",
        "--train-limit",
        "200",
        "--test-limit",
        "50",
        "--val-split",
        "50",
        "--early-stopping",
        "1",
        "--lr",
        "1e-12",
        "--data-dir",
        data.to_str().unwrap(),
        "--save",
        model.to_str().unwrap(),
        "--metrics-json",
        json.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("training conv32k3") && stdout.contains(" on 150 images"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert!(stdout.contains("saved the best epoch (1,"), "{stdout}");
    assert!(dir.path().join("best.safetensors").exists());
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert!(epochs.iter().all(|e| e["val_loss"].as_f64().unwrap() > 0.0));
    assert_eq!(epochs[0]["val_loss"], epochs[1]["val_loss"]);

    assert_bad_input(
        &run_cli(&["train", "--early-stopping", "2"]),
        "--early-stopping: needs --val-split",
    );
    assert_bad_input(
        &run_cli(&[
            "train",
            "--train-limit",
            "10",
            "--val-split",
            "10",
            "--data-dir",
            data.to_str().unwrap(),
        ]),
        "--val-split 10: leaves no training images",
    );
}

#[test]
fn plots_are_written_as_png_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("plots");
    let data = bundled_data();
    run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "2",
        "--train-limit",
        "300",
        "--val-split",
        "100",
        "--test-limit",
        "200",
        "--data-dir",
        data.to_str().unwrap(),
        "--save",
        dir.path().join("m.safetensors").to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--augment",
        "on",
    ]);
    for (name, size) in [
        ("curves.png", (1000, 420)),
        ("confusion.png", (560, 560)),
        // 16 mistakes (an undertrained model makes plenty) in 4 rows of 4.
        ("mistakes.png", (4 * 128, 4 * 142 + 30)),
        // 6 training digits, each unwarped and as 5 steps warped it.
        ("augmented.png", (6 * 128, 6 * 142 + 30)),
    ] {
        let picture = image::open(plots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((picture.width(), picture.height()), size, "{name}");
        // Not blank: a picture has ink as well as background.
        let gray = picture.to_luma8();
        assert!(
            gray.pixels().any(|p| p.0[0] < 64),
            "{name} has no dark pixels"
        );
        assert!(
            gray.pixels().any(|p| p.0[0] > 250),
            "{name} has no background"
        );
    }
}

#[test]
fn augmentation_is_chosen_by_flags_printed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let data = bundled_data();
    let stdout = run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--test-limit",
        "64",
        "--augment",
        "on",
        "--augment-rotation",
        "15",
        "--data-dir",
        data.to_str().unwrap(),
        "--save",
        model.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("augmented (shift 2 px, rotation 15 deg, scale 0.1)"),
        "{stdout}"
    );
    let checkpoint = mnist_wgpu::checkpoint::load_checkpoint(&model).unwrap();
    let recorded = &checkpoint.metadata["augment"];
    assert!(recorded.contains("max_rotation: 15.0"), "{recorded}");

    assert_usage_error(
        &run_cli(&["train", "--augment", "sometimes"]),
        &["'sometimes'", "[possible values: auto, on, off]"],
    );
    assert_bad_input(
        &run_cli(&["train", "--augment-shift", "-1"]),
        "--augment-shift",
    );
    assert_bad_input(
        &run_cli(&["train", "--augment-rotation", "200"]),
        "--augment-rotation",
    );
    assert_bad_input(
        &run_cli(&["train", "--augment-scale", "1.5"]),
        "--augment-scale",
    );
    // The seed preset does not augment by default, so a range alone is a mistake.
    assert_bad_input(
        &run_cli(&[
            "train",
            "--augment-scale",
            "0.2",
            "--data-dir",
            data.to_str().unwrap(),
        ]),
        "--augment-scale: augmentation is off (add --augment on)",
    );
}

/// A model with batch norm and dropout: `eval` of the saved model (which must carry the running
/// statistics, and drop no activations) gives the test metrics `train` printed, and the
/// checkpoint has PyTorch's batch-norm tensors.
#[test]
fn batch_norm_and_dropout_models_evaluate_the_same_after_loading() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train_json, eval_json) = (
        dir.path().join("model.safetensors"),
        dir.path().join("train.json"),
        dir.path().join("eval.json"),
    );
    let data = bundled_data();
    let common = [
        "--data-dir",
        data.to_str().unwrap(),
        "--test-limit",
        "300",
        "--backend",
        "cpu",
    ];
    let arch =
        "conv8k3same-bn-relu-avgpool2-conv8k3s2-tanh-dropout0.3-flatten-dense32-bn-sigmoid-dense10";
    let mut train = vec![
        "train",
        "--arch",
        arch,
        "--epochs",
        "1",
        "--lr",
        "0.005",
        "--train-limit",
        "1000",
        "--save",
        model.to_str().unwrap(),
        "--metrics-json",
        train_json.to_str().unwrap(),
    ];
    train.extend(common);
    let out = run_cli(&train);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut eval = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--metrics-json",
        eval_json.to_str().unwrap(),
    ];
    eval.extend(common);
    let out = run_cli(&eval);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let (trained, evaluated) = (read(&train_json), read(&eval_json));
    assert_eq!(evaluated["accuracy"], trained["accuracy"]);
    assert_eq!(evaluated["loss"], trained["loss"]);
    assert!(trained["accuracy"].as_f64().unwrap() > 0.5, "{trained}");
    let checkpoint = mnist_wgpu::checkpoint::load_checkpoint(&model).unwrap();
    let running_var = checkpoint.params.get("bn2.running_var").unwrap();
    assert_eq!(running_var.shape, [32]);
    // One epoch of updates has moved the running variance away from its initial 1.
    assert!(
        running_var.data.iter().all(|&v| v > 0.0) && running_var.data.iter().any(|&v| v != 1.0)
    );
}

#[test]
fn bad_layer_specs_name_the_token() {
    assert_bad_input(
        &run_cli(&["train", "--arch", "conv8k4same-flatten-dense10"]),
        "token 1 'conv8k4same'",
    );
    assert_bad_input(
        &run_cli(&["train", "--arch", "conv8k3-dropout2-flatten-dense10"]),
        "dropout rate '2'",
    );
    assert_bad_input(
        &run_cli(&["summary", "--arch", "conv8k3s0-flatten-dense10"]),
        "stride '0'",
    );
}

#[test]
fn counts_of_one_are_singular() {
    let dir = tempfile::tempdir().unwrap();
    let data = bundled_data();
    let stdout = run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "1",
        "--train-limit",
        "1",
        "--test-limit",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(stdout.contains(" on 1 image, 1 epoch, batch "), "{stdout}");
    assert!(stdout.contains("(1 image)"), "{stdout}");
    assert!(
        !stdout.contains("1 epochs") && !stdout.contains("1 images"),
        "{stdout}"
    );
}

/// `--arch strong` brings its recipe (batch 128, one-cycle at 3e-3, augmentation), flags
/// override it, the checkpoint records the result, and a resumed run keeps it.
#[test]
fn the_strong_preset_trains_with_its_recipe_unless_flags_say_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = bundled_data();
    let run = dir.path().join("run");
    let stdout = run_cli_ok(&[
        "train",
        "--arch",
        "strong",
        "--epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "20",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("recipe: strong preset: 15 epochs, batch 128, adam lr 0.003")
            && first.ends_with("; overridden by --epochs 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 epoch, batch 128, adam (lr 0.003, onecycle schedule), augmented"),
        "{stdout}"
    );
    let saved = mnist_wgpu::checkpoint::load_checkpoint(&run.join("last.safetensors")).unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&saved.metadata["run"]).unwrap();
    assert_eq!(recorded["train"]["batch_size"], 128, "{recorded}");
    assert_eq!(recorded["train"]["schedule"]["name"], "onecycle");
    assert!(recorded["train"]["augment"].is_object(), "{recorded}");
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    // Two steps of 128: the one-cycle rate of the last one is below its 0.003 peak.
    let lr = metrics["epochs"][0]["lr"].as_f64().unwrap();
    assert!(lr < 0.003 && lr > 0.0, "{lr}");

    // Resumed, the run keeps its stored recipe (the default --arch is the seed preset).
    let stdout = run_cli_ok(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    assert!(
        stdout.contains("2 epochs, batch 128, adam (lr 0.003, onecycle schedule), augmented"),
        "{stdout}"
    );

    // A flag wins over the preset.
    let stdout = run_cli_ok(&[
        "train",
        "--arch",
        "strong",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--train-limit",
        "64",
        "--test-limit",
        "20",
        "--backend",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.path().join("flags").to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("1 epoch, batch 64, adam (lr 0.003"),
        "{stdout}"
    );
}

/// Runs the binary with its stdout a pipe whose reader has already gone (`... | head -0`).
fn with_stdout_closed(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("MNIST_WGPU_CACHE_DIR", common::test_cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// A closed stdout stops no work: train still saves its model, metrics and plots, and both
/// commands exit 0 without a word (the reader asked for no more).
#[test]
fn a_closed_stdout_loses_no_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let (run, plots) = (dir.path().join("run"), dir.path().join("plots"));
    let (train_json, eval_json) = (dir.path().join("train.json"), dir.path().join("eval.json"));
    let data = bundled_data();
    let common = [
        "--backend",
        "cpu",
        "--test-limit",
        "100",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut args = vec![
        "train",
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--run-dir",
        run.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--metrics-json",
        train_json.to_str().unwrap(),
    ];
    args.extend(common);
    let out = with_stdout_closed(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    for file in [
        run.join("model.safetensors"),
        run.join("metrics.json"),
        run.join("curves.png"),
        run.join("confusion.png"),
        plots.join("curves.png"),
        plots.join("confusion.png"),
        train_json,
    ] {
        assert!(file.is_file(), "{} is missing", file.display());
    }

    let model = run.join("model.safetensors");
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--metrics-json",
        eval_json.to_str().unwrap(),
    ];
    args.extend(common);
    let out = with_stdout_closed(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(eval_json.is_file());
}

/// Output paths that cannot be written are refused before any work, naming the flag and the
/// path in the way, and nothing is written.
#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (file_str, dir_str) = (file.to_str().unwrap(), dir.path().to_str().unwrap());
    let under_file = file.join("x.safetensors");
    let run = dir.path().join("run");
    let data = bundled_data();
    let train = |flags: &[&str]| {
        let mut args = vec![
            "train",
            "--backend",
            "cpu",
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "--test-limit",
            "64",
            "--data-dir",
            data.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ];
        args.extend(flags);
        run_cli(&args)
    };
    assert_bad_input(
        &train(&["--metrics-json", dir_str]),
        &format!("--metrics-json {dir_str}: is a directory"),
    );
    assert_bad_input(
        &train(&["--save", under_file.to_str().unwrap()]),
        &format!(
            "--save {}: {file_str} is not a directory",
            under_file.display()
        ),
    );
    assert_bad_input(
        &train(&["--plots", file_str]),
        &format!("--plots {file_str}: is not a directory"),
    );
    assert!(!run.exists(), "the refused runs wrote nothing");
    let out = run_cli(&[
        "train",
        "--backend",
        "cpu",
        "--train-limit",
        "64",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        file_str,
    ]);
    assert_bad_input(&out, &format!("--run-dir {file_str}: is not a directory"));
    // A directory where the run directory's metrics file goes.
    std::fs::create_dir_all(run.join("metrics.json")).unwrap();
    assert_bad_input(
        &train(&[]),
        &format!(
            "--run-dir {}: {}",
            run.display(),
            run.join("metrics.json").display()
        ),
    );
    assert!(!run.join("last.safetensors").exists());

    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed-model.safetensors");
    let out = run_cli(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--test-limit",
        "10",
        "--data-dir",
        data.to_str().unwrap(),
        "--metrics-json",
        dir_str,
    ]);
    assert_bad_input(&out, &format!("--metrics-json {dir_str}: is a directory"));
    let json = file.join("bench.json");
    let out = run_cli(&[
        "bench",
        "--backend",
        "cpu",
        "--seconds",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_bad_input(
        &out,
        &format!("--json {}: {file_str} is not a directory", json.display()),
    );
    // The --trace check comes before the adapter (none here, but on Apple's machines).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(["profile", "--trace", dir_str])
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap();
    assert_bad_input(&out, &format!("--trace {dir_str}: is a directory"));
}
