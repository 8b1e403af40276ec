//! `search` end to end on the CPU path and small slices of MNIST: a grid runs exactly its
//! product, a search repeats with its seed, successive halving promotes the best third and
//! continues them from their own checkpoints, a killed search resumes without rerunning
//! finished trials, and a diverging trial fails alone.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cli_command, run_cli, run_cli_ok, test_cache_dir};
use serde_json::Value;

/// Writes `space` to DIR/space.toml and returns the search's flags (`--out DIR/out`), on the
/// CPU path with small validation and test sets.
fn search_flags(dir: &Path, space: &str, extra: &[&str]) -> Vec<String> {
    std::fs::write(dir.join("space.toml"), space).unwrap();
    let mut flags: Vec<String> = [
        "search",
        "--space",
        dir.join("space.toml").to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--backend",
        "cpu",
        "--val-split",
        "64",
        "--test-limit",
        "100",
    ]
    .map(String::from)
    .to_vec();
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// results.json without the timings, which differ from run to run.
fn results_without_seconds(out: &Path) -> Value {
    let mut rows: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    for row in rows.as_array_mut().unwrap() {
        row.as_object_mut().unwrap().remove("seconds");
    }
    rows
}

fn journal(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("trials.jsonl")).unwrap_or_default();
    // A line cut short by a kill is not yet a trial.
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const RANDOM_SPACE: &str = "train_limit = 320\n\
    lr = { log_uniform = [3e-4, 1e-2] }\n\
    batch_size = { choice = [32, 64] }\n\
    dropout = { uniform = [0.0, 0.5] }\n";

#[test]
fn a_grid_runs_exactly_its_product_and_touches_the_test_set_once() {
    let tmp = tempfile::tempdir().unwrap();
    let space = "train_limit = 192\nlr = { choice = [0.001, 0.003] }\n\
                 batch_size = { choice = [32, 64, 128] }\noptimizer = 'adam'\n";
    let flags = search_flags(
        tmp.path(),
        space,
        &["--strategy", "grid", "--max-epochs", "1"],
    );
    let stdout = run_cli_ok(&strs(&flags));
    assert!(stdout.contains("searching 6 trials (grid"), "{stdout}");
    let out = tmp.path().join("out");
    let rows = results_without_seconds(&out);
    let mut combos: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["params"]["lr"].to_string(),
                r["params"]["batch_size"].to_string(),
            )
        })
        .collect();
    combos.sort();
    combos.dedup();
    assert_eq!(combos.len(), 6, "{rows}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(
        csv.starts_with(
            "trial,status,epochs,seconds,batch_size,lr,optimizer,train_limit,val_accuracy_rung0\n"
        ),
        "{csv}"
    );
    // The trials never evaluated on the test set; the best model did, once.
    for trial in 0..6 {
        let dir = out.join(format!("trials/{trial:03}"));
        assert!(dir.join("model.safetensors").exists());
        assert!(
            !dir.join("metrics.json").exists(),
            "trial {trial} wrote test metrics"
        );
    }
    let best: Value =
        serde_json::from_slice(&std::fs::read(out.join("best-metrics.json")).unwrap()).unwrap();
    assert_eq!(best["confusion"].as_array().unwrap().len(), 10);
    assert!(out.join("best.safetensors").exists());
    let plot = image::open(out.join("search.png")).unwrap();
    assert_eq!((plot.width(), plot.height()), (1000, 420));

    // A grid larger than --trials is refused before any work.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let flags = search_flags(&small, space, &["--strategy", "grid", "--trials", "5"]);
    common::assert_bad_input(&run_cli(&strs(&flags)), "--trials 5: the grid of");
    assert!(!small.join("out/trials").exists());
}

#[test]
fn the_same_seed_gives_the_same_search_one_trial_at_a_time_or_two() {
    let runs: Vec<Value> = (0..2)
        .map(|_| {
            let tmp = tempfile::tempdir().unwrap();
            let flags = search_flags(
                tmp.path(),
                RANDOM_SPACE,
                &["--trials", "3", "--max-epochs", "1"],
            );
            run_cli_ok(&strs(&flags));
            results_without_seconds(&tmp.path().join("out"))
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0].as_array().unwrap().len(), 3);
    // Trials trained two at once, on a thread each, give the same bits.
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--trials", "3", "--max-epochs", "1", "--parallel", "2"];
    run_cli_ok(&strs(&search_flags(tmp.path(), RANDOM_SPACE, &args)));
    assert_eq!(results_without_seconds(&tmp.path().join("out")), runs[0]);
    let tmp = tempfile::tempdir().unwrap();
    let flags = search_flags(
        tmp.path(),
        RANDOM_SPACE,
        &["--trials", "3", "--max-epochs", "1", "--seed", "7"],
    );
    run_cli_ok(&strs(&flags));
    assert_ne!(results_without_seconds(&tmp.path().join("out")), runs[0]);
}

#[test]
fn halving_promotes_the_best_third_from_their_own_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = search_flags(
        tmp.path(),
        RANDOM_SPACE,
        &[
            "--strategy",
            "halving",
            "--trials",
            "9",
            "--max-epochs",
            "9",
        ],
    );
    run_cli_ok(&strs(&flags));
    let out = tmp.path().join("out");
    let lines = journal(&out);
    let rung = |k: u64| -> Vec<&Value> { lines.iter().filter(|l| l["rung"] == k).collect() };
    let (first, second, third) = (rung(0), rung(1), rung(2));
    assert_eq!((first.len(), second.len(), third.len()), (9, 3, 1));
    assert!(first.iter().all(|l| l["epochs"] == 1));
    assert!(second.iter().all(|l| l["epochs"] == 3));
    assert_eq!(third[0]["epochs"], 9);
    // The best three of the first rung go on (ties to the lower trial number).
    let mut ranked: Vec<(f64, u64)> = first
        .iter()
        .map(|l| {
            (
                l["val_accuracy"].as_f64().unwrap(),
                l["trial"].as_u64().unwrap(),
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    let mut top: Vec<u64> = ranked[..3].iter().map(|r| r.1).collect();
    top.sort_unstable();
    let promoted: Vec<u64> = second
        .iter()
        .map(|l| l["trial"].as_u64().unwrap())
        .collect();
    assert_eq!(promoted, top);
    // The last rung's trial went on in its own run directory: one run of nine epochs.
    let winner = third[0]["trial"].as_u64().unwrap();
    let dir = out.join(format!("trials/{winner:03}"));
    let last =
        mnist_wgpu::checkpoint::load_training_checkpoint(&dir.join("last.safetensors")).unwrap();
    let state: Value = serde_json::from_str(&last.checkpoint.metadata["state"]).unwrap();
    assert_eq!(state["epochs_done"], 9);
    // Halving trained 9 x 1 + 3 x 2 + 1 x 6 = 21 epochs, where 9 random trials of 9 epochs
    // train 81.
    let epochs: u64 = results_without_seconds(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["epochs"].as_u64().unwrap())
        .sum();
    assert_eq!(epochs, 6 + 2 * 3 + 9);
}

#[test]
fn a_killed_search_resumes_without_rerunning_finished_trials() {
    let whole = tempfile::tempdir().unwrap();
    let args = ["--trials", "8", "--max-epochs", "2"];
    run_cli_ok(&strs(&search_flags(whole.path(), RANDOM_SPACE, &args)));

    let tmp = tempfile::tempdir().unwrap();
    let flags = search_flags(tmp.path(), RANDOM_SPACE, &args);
    let out = tmp.path().join("out");
    for kill_after in [2, 5] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
            .args(if kill_after == 2 {
                flags.clone()
            } else {
                vec![
                    "search".into(),
                    "--resume".into(),
                    out.display().to_string(),
                ]
            })
            .env("MNIST_WGPU_CACHE_DIR", test_cache_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while journal(&out).len() < kill_after && start.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let before = journal(&out);
    assert!(
        (5..8).contains(&before.len()),
        "{} trials done",
        before.len()
    );
    let out_str = out.display().to_string();
    let stdout = run_cli_ok(&["search", "--resume", &out_str]);
    assert!(stdout.contains("already done"), "{stdout}");
    let after = journal(&out);
    assert_eq!(
        after[..before.len()],
        before[..],
        "finished trials stay as they were"
    );
    let mut trials: Vec<u64> = after.iter().map(|l| l["trial"].as_u64().unwrap()).collect();
    trials.sort_unstable();
    assert_eq!(trials, (0..8).collect::<Vec<_>>(), "each trial ran once");
    assert_eq!(
        results_without_seconds(&out),
        results_without_seconds(&whole.path().join("out")),
        "bit for bit the uninterrupted search"
    );
}

#[test]
fn a_diverging_trial_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let space = "train_limit = 192\noptimizer = 'sgd'\nlr = { choice = [0.01, 1e30] }\n";
    let flags = search_flags(
        tmp.path(),
        space,
        &["--strategy", "grid", "--max-epochs", "1"],
    );
    let out = cli_command(&strs(&flags)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines = journal(&tmp.path().join("out"));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[1]["status"], "failed");
    assert!(
        lines[1]["error"].as_str().unwrap().contains("epoch 1"),
        "{}",
        lines[1]
    );
    assert!(stdout.contains("best: trial 0"), "{stdout}");
}

/// The tensors of a checkpoint as bits, by name.
fn tensor_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let checkpoint = mnist_wgpu::checkpoint::load_checkpoint(path).unwrap();
    (checkpoint.params.tensors.iter())
        .map(|t| (t.name.clone(), t.data.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// A search's flags on the GPU with the rule's kernels (`--autotune off`: no timing, so every
/// process picks the same variants).
fn gpu_search_flags(dir: &Path, space: &str) -> Vec<String> {
    let mut flags = search_flags(dir, space, &["--strategy", "grid", "--max-epochs", "1"]);
    let backend = flags.iter().position(|f| f == "--backend").unwrap();
    flags[backend + 1] = "gpu".into();
    flags.extend(["--autotune", "off"].map(String::from));
    flags
}

/// Runs a search, returning how many compute pipelines it created (`kernel.rs` logs each
/// creation at debug level).
fn pipelines_created(flags: &[String]) -> usize {
    let out = cli_command(&strs(flags))
        .env("RUST_LOG", "mnist_wgpu::gpu::kernel=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr.matches("created the pipeline of").count()
}

#[test]
fn a_gpu_search_compiles_each_pipeline_once_and_trains_each_trial_as_it_would_alone() {
    if common::gpu_context().is_none() {
        return;
    }
    const ARCH: &str = "conv4k3-relu-pool2-flatten-dense10";
    let space =
        |lr: &str| format!("train_limit = 256\nbatch_size = 32\narch = '{ARCH}'\nlr = {lr}\n");
    let one = tempfile::tempdir().unwrap();
    let alone = pipelines_created(&gpu_search_flags(one.path(), &space("0.001")));
    let two = tempfile::tempdir().unwrap();
    let both = pipelines_created(&gpu_search_flags(
        two.path(),
        &space("{ choice = [0.001, 0.002] }"),
    ));
    // The second trial (and the final evaluation) reuse the first one's pipelines: a search of
    // two trials of one batch size creates what a search of one does. Each trial built its own
    // before, so two trials created nearly twice as many.
    assert!(alone > 0, "no pipeline creation was logged");
    assert_eq!(
        both, alone,
        "pipelines created by a search of two trials and of one"
    );

    // Each trial is what `train` gives alone, bit for bit.
    let trial = |dir: &Path, t: usize| dir.join(format!("out/trials/{t:03}/model.safetensors"));
    for (t, lr) in [(0, "0.001"), (1, "0.002")] {
        let run = two.path().join(format!("alone-{t}"));
        run_cli_ok(&[
            "train",
            "--backend",
            "gpu",
            "--autotune",
            "off",
            "--arch",
            ARCH,
            "--lr",
            lr,
            "--batch-size",
            "32",
            "--train-limit",
            "256",
            "--seed",
            "42",
            "--epochs",
            "1",
            "--val-split",
            "64",
            "--test-limit",
            "100",
            "--run-dir",
            run.to_str().unwrap(),
        ]);
        let alone = tensor_bits(&run.join("model.safetensors"));
        assert!(
            tensor_bits(&trial(two.path(), t)) == alone,
            "trial {t} differs from its run alone"
        );
    }
    assert!(tensor_bits(&trial(one.path(), 0)) == tensor_bits(&trial(two.path(), 0)));
}

#[test]
fn transfer_flags_vary_in_a_space_and_frozen_trials_keep_the_init_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    const ARCH: &str = "conv4k3-relu-pool2-flatten-dense10";
    let init = tmp.path().join("init");
    run_cli_ok(&[
        "train",
        "--backend",
        "cpu",
        "--arch",
        ARCH,
        "--train-limit",
        "192",
        "--epochs",
        "1",
        "--run-dir",
        init.to_str().unwrap(),
    ]);
    let init = init.join("model.safetensors");
    // `freeze` drawn from a choice ("" for none), `init_from` and `reinit` fixed.
    let space = format!(
        "train_limit = 192\narch = '{ARCH}'\ninit_from = '{}'\nreinit = 'fc'\n\
         freeze = {{ choice = ['conv1', ''] }}\n",
        init.display()
    );
    let flags = search_flags(
        tmp.path(),
        &space,
        &["--strategy", "grid", "--max-epochs", "1"],
    );
    run_cli_ok(&strs(&flags));
    let out = tmp.path().join("out");
    let lines = journal(&out);
    assert_eq!(lines.len(), 2);
    for (line, freeze) in lines.iter().zip(["conv1", ""]) {
        assert_eq!(line["status"], "ok", "{line}");
        assert_eq!(line["params"]["freeze"], freeze, "{line}");
        assert_eq!(line["params"]["reinit"], "fc", "{line}");
        assert_eq!(
            line["params"]["init_from"],
            init.to_str().unwrap(),
            "{line}"
        );
    }
    let init = tensor_bits(&init);
    let tensor = |t: usize, name: &str| -> Vec<u32> {
        let model = out.join(format!("trials/{t:03}/model.safetensors"));
        (tensor_bits(&model).into_iter())
            .find(|(n, _)| n == name)
            .unwrap()
            .1
    };
    let of_init = |name: &str| init.iter().find(|(n, _)| n == name).unwrap().1.clone();
    for name in ["conv1.weight", "conv1.bias"] {
        assert!(
            tensor(0, name) == of_init(name),
            "trial 0 (frozen) changed {name}"
        );
        assert!(
            tensor(1, name) != of_init(name),
            "trial 1 (not frozen) kept {name}"
        );
    }
    // The head started afresh (--reinit fc) and trained in both.
    assert!(tensor(0, "fc.weight") != of_init("fc.weight"));
    // Each trial's run kept its transfer flags (for --resume).
    let last = out.join("trials/000/last.safetensors");
    let last = mnist_wgpu::checkpoint::load_checkpoint(&last).unwrap();
    let run: Value = serde_json::from_str(&last.metadata["run"]).unwrap();
    assert_eq!(run["freeze"], serde_json::json!(["conv1"]));
    assert_eq!(run["reinit"], serde_json::json!(["fc"]));

    // A layer that is not there stops the search before any trial trains.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let space = space.replace("'conv1'", "'conv9'");
    let flags = search_flags(&bad, &space, &["--strategy", "grid"]);
    common::assert_bad_input(
        &run_cli(&strs(&flags)),
        "trial 0 (arch conv4k3-relu-pool2-flatten-dense10, freeze conv9, init_from",
    );
    assert!(!bad.join("out/trials").exists());
}
