//! `search`: hyperparameter search over `train` runs. Each trial is a training run of its own
//! (in `OUT/trials/NNN`, with a validation split), chosen by the strategy from the space file
//! (see `mnist_wgpu::search`). Finished trials go to a journal, `OUT/trials.jsonl`, appended and
//! synced one line at a time, so that `search --resume OUT` after Ctrl-C or a kill skips them
//! and continues the interrupted trial from its own checkpoint. The test set is touched once,
//! by the best trial's model at the end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, FromArgMatches, ValueEnum};
use serde::{Deserialize, Serialize};

use super::args::{check_output_dir, share_gpu_context, DataArgs};
use super::eval::eval;
use super::train::{check_transfer_flags, train_run, EvalArgs, TrainArgs};
use mnist_wgpu::checkpoint::load_checkpoint;
use mnist_wgpu::error::{bad_input, Interrupted};
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::model::{Arch, Layer};
use mnist_wgpu::search::plot::write_search_plot;
use mnist_wgpu::search::{best, promoted, rungs, Metric, Params, Space, Status, TrialResult};
use mnist_wgpu::text::count;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every combination of the choice lists.
    Grid,
    /// Trials drawn from the distributions by the seed.
    Random,
    /// Successive halving: all trials to the first rung, the best 1/eta on to the next.
    Halving,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricChoice {
    ValAccuracy,
    ValLoss,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The search space: a TOML file of train settings, each fixed or a distribution
    /// (choice, uniform, log_uniform, int_uniform); see examples/search-space.toml.
    #[arg(long, value_name = "PATH", required_unless_present = "resume")]
    pub space: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Strategy::Random)]
    pub strategy: Strategy,
    /// Trials to draw (random, halving) [default: 20]; for grid, the most it may run (a larger
    /// grid is an error) [default: the whole grid].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub trials: Option<u64>,
    /// Epochs of a trial (grid, random), or of the last rung (halving).
    #[arg(long, value_name = "E", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_epochs: u64,
    /// Halving: each rung keeps the best 1/eta of the trials and trains them eta times longer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..))]
    pub eta: u64,
    /// What ranks the trials, on the validation split at a trial's last epoch.
    #[arg(long, value_enum, default_value_t = MetricChoice::ValAccuracy)]
    pub metric: MetricChoice,
    /// Training images held out for validation (chosen by --seed), the same in every trial.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub val_split: u64,
    /// Draws the trials; also each trial's training seed unless the space fixes `seed`.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The search's directory [default: searches/<timestamp>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the search in DIR: finished trials are skipped, the interrupted one continues
    /// from its checkpoint; every setting is the stored one.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "space", "strategy", "trials", "max_epochs", "eta", "metric", "val_split", "seed",
        "out", "data_dir", "test_limit", "backend", "adapter", "autotune", "kernels_from",
    ])]
    pub resume: Option<PathBuf>,
    /// Trials to train at once, each on its share of the threads (CPU path only); the results
    /// are the same bits as one at a time.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub parallel: u64,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Everything a search was started with, stored as `OUT/search.json` for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    /// The space file's path and text (the text is what runs, should the file change).
    space_path: PathBuf,
    space: String,
    strategy: Strategy,
    trials: Option<u64>,
    max_epochs: u64,
    eta: u64,
    metric: Metric,
    val_split: u64,
    seed: u64,
    /// The data and device flags, passed to every trial and to the final evaluation.
    flags: Vec<String>,
}

const SETTINGS: &str = "search.json";
const JOURNAL: &str = "trials.jsonl";
/// Trials drawn when --trials is not given.
const DEFAULT_TRIALS: u64 = 20;
/// Train flags that the search sets itself, so a space may not.
const RESERVED: &[&str] = &[
    "epochs",
    "val_split",
    "run_dir",
    "resume",
    "save",
    "metrics_json",
    "plots",
    "data_dir",
    "test_limit",
    "classes",
    "per_class_limit",
    "backend",
    "adapter",
    "autotune",
    "kernels_from",
];

pub fn search(args: SearchArgs) -> Result<()> {
    // One GPU context for every trial and the final evaluation, so that the kernels are
    // compiled (and, on a first run, tuned) once per batch size, not once per trial.
    share_gpu_context(true);
    let searched = search_shared(args);
    share_gpu_context(false);
    searched
}

fn search_shared(args: SearchArgs) -> Result<()> {
    let (out, settings) = match &args.resume {
        Some(dir) => (dir.clone(), read_settings(dir)?),
        None => new_search(&args)?,
    };
    let keys = space_keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let space = Space::parse(&settings.space, &keys)
        .map_err(|e| bad_input(format!("--space {}: {e}", settings.space_path.display())))?;
    let trials = trial_params(&settings, &space)?;
    let rung_epochs = match settings.strategy {
        Strategy::Halving => rungs(settings.max_epochs, settings.eta),
        Strategy::Grid | Strategy::Random => vec![settings.max_epochs],
    };
    // Every trial's flags are checked before the first one trains.
    for (i, params) in trials.iter().enumerate() {
        let args = parse_train(&trial_flags(params, &settings, 1, &out, i)?)
            .map_err(|e| space_error(&settings, i, params, &e))?;
        let (_, plan) = (args.arch.plan()).map_err(|e| space_error(&settings, i, params, &e))?;
        // The transfer flags too (a layer that is not there, a checkpoint that does not
        // load), so that a bad one stops the search before any trial, not as each one starts.
        check_transfer_flags(&args, &plan).map_err(|e| space_error(&settings, i, params, &e))?;
        if let Some(path) = &args.init_from {
            load_checkpoint(path).map_err(|e| space_error(&settings, i, params, &e))?;
        }
    }
    if args.resume.is_none() {
        let json = serde_json::to_vec_pretty(&settings).context("serialising the search")?;
        write_atomic(&out.join(SETTINGS), &json)?;
    }
    let mut results = read_journal(&out)?;
    outln!(
        "searching {} ({}, {} on {}, max {}){}",
        count(trials.len(), "trial"),
        settings.strategy.to_possible_value().unwrap().get_name(),
        settings.metric.name(),
        count(settings.val_split as usize, "validation image"),
        count(settings.max_epochs as usize, "epoch"),
        if results.is_empty() {
            String::new()
        } else {
            format!("; {} already done", count(results.len(), "trial rung"))
        }
    );
    let parallel = parallel_trials(&args, &settings)?;
    let mut running: Vec<usize> = (0..trials.len()).collect();
    for (rung, &epochs) in rung_epochs.iter().enumerate() {
        let pending: Vec<usize> = (running.iter().copied())
            .filter(|&t| !results.iter().any(|r| r.trial == t && r.rung == rung))
            .collect();
        for batch in pending.chunks(parallel) {
            let outcomes = run_batch(&settings, &out, &trials, batch, rung, epochs, parallel);
            // Finished trials are journalled in trial order, whatever order they ended in.
            let mut interrupted = None;
            for outcome in outcomes {
                match outcome {
                    Ok(result) => {
                        append_journal(&out, &result)?;
                        print_result(&result, &results, settings.metric, trials.len());
                        results.push(result);
                    }
                    Err(e) => interrupted = interrupted.or(Some(e)),
                }
            }
            if let Some(e) = interrupted {
                return Err(e);
            }
        }
        let this_rung: Vec<&TrialResult> = results.iter().filter(|r| r.rung == rung).collect();
        running = promoted(&this_rung, settings.metric, settings.eta);
    }
    finish(&settings, &out, &results)
}

/// How many trials train at once: `--parallel`, on the CPU path only (a GPU runs one at a
/// time), with the machine's threads split between them.
fn parallel_trials(args: &SearchArgs, settings: &Settings) -> Result<usize> {
    let k = args.parallel as usize;
    let on_cpu = (settings.flags.windows(2)).any(|w| w[0] == "--backend" && w[1] == "cpu");
    if k > 1 && !on_cpu {
        return Err(bad_input(format!(
            "--parallel {k}: only with --backend cpu (a GPU trains one trial at a time)"
        )));
    }
    Ok(k)
}

/// Trains `batch` (at most `parallel` trials) at once, each on its share of the threads, with
/// the trials' own output off; the outcomes in the batch's order.
fn run_batch(
    settings: &Settings,
    out: &Path,
    trials: &[Params],
    batch: &[usize],
    rung: usize,
    epochs: u64,
    parallel: usize,
) -> Vec<Result<TrialResult>> {
    super::output::set_quiet(true);
    super::print::set_progress_bars(parallel == 1);
    let outcomes = if parallel == 1 {
        (batch.iter())
            .map(|&t| run_trial(settings, out, &trials[t], t, rung, epochs))
            .collect()
    } else {
        let threads = (rayon::current_num_threads() / parallel).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (batch.iter())
                .map(|&t| {
                    scope.spawn(move || {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()?;
                        pool.install(|| run_trial(settings, out, &trials[t], t, rung, epochs))
                    })
                })
                .collect();
            (handles.into_iter())
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a trial panicked")))
                })
                .collect()
        })
    };
    super::output::set_quiet(false);
    super::print::set_progress_bars(true);
    outcomes
}

/// The keys a space may use: every train flag the search does not set itself, and `dropout`.
fn space_keys() -> Vec<String> {
    let train = TrainArgs::augment_args(clap::Command::new("train"));
    let mut keys: Vec<String> = train
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| !RESERVED.contains(id) && *id != "help")
        .map(String::from)
        .collect();
    keys.push("dropout".into());
    keys
}

fn new_search(args: &SearchArgs) -> Result<(PathBuf, Settings)> {
    let space_path = args
        .space
        .clone()
        .expect("clap requires --space without --resume");
    let space = std::fs::read_to_string(&space_path)
        .map_err(|e| bad_input(format!("--space {}: {e}", space_path.display())))?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        Path::new("searches").join(stamp)
    });
    check_output_dir("--out", &out)?;
    if out.join(SETTINGS).exists() {
        return Err(bad_input(format!(
            "--out {}: holds a search already; continue it with --resume {0} or choose another directory",
            out.display()
        )));
    }
    let settings = Settings {
        space_path,
        space,
        strategy: args.strategy,
        trials: args.trials,
        max_epochs: args.max_epochs,
        eta: args.eta,
        metric: match args.metric {
            MetricChoice::ValAccuracy => Metric::ValAccuracy,
            MetricChoice::ValLoss => Metric::ValLoss,
        },
        val_split: args.val_split,
        seed: args.seed,
        flags: args.data.to_flags(),
    };
    Ok((out, settings))
}

fn read_settings(dir: &Path) -> Result<Settings> {
    let path = dir.join(SETTINGS);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad_input(format!("--resume {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        bad_input(format!(
            "--resume {}: not a search's settings: {e}",
            path.display()
        ))
    })
}

/// The trials of the search, in the order they run.
fn trial_params(settings: &Settings, space: &Space) -> Result<Vec<Params>> {
    let fail = |e: String| bad_input(format!("--space {}: {e}", settings.space_path.display()));
    match settings.strategy {
        Strategy::Grid => {
            let size = space.grid_size();
            if let Some(n) = settings.trials.filter(|&n| (size as u64) > n) {
                return Err(bad_input(format!(
                    "--trials {n}: the grid of {} has {size} trials; raise --trials or shrink the grid",
                    settings.space_path.display()
                )));
            }
            space.grid().map_err(fail)
        }
        Strategy::Random | Strategy::Halving => {
            let n = settings.trials.unwrap_or(DEFAULT_TRIALS) as usize;
            Ok(space.sample(n, settings.seed))
        }
    }
}

fn space_error(
    settings: &Settings,
    trial: usize,
    params: &Params,
    e: &dyn std::fmt::Display,
) -> anyhow::Error {
    bad_input(format!(
        "--space {}: trial {trial} ({}): {}",
        settings.space_path.display(),
        describe(params),
        first_line(&e.to_string())
    ))
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line)
}

/// `key value` pairs, for messages and the table.
fn describe(params: &Params) -> String {
    let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k} {v}")).collect();
    pairs.join(", ")
}

fn trial_dir(out: &Path, trial: usize) -> PathBuf {
    out.join("trials").join(format!("{trial:03}"))
}

/// The `train` command line of a new trial.
fn trial_flags(
    params: &Params,
    settings: &Settings,
    epochs: u64,
    out: &Path,
    trial: usize,
) -> Result<Vec<String>> {
    let mut flags = vec!["train".to_string()];
    for (key, value) in params {
        if key == "dropout" || key == "arch" {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            mnist_wgpu::search::Value::Bool(true) => flags.push(flag),
            // false and "" leave the flag out: `freeze = { choice = ["conv1,conv2", ""] }`
            // has trials with frozen convolutions and trials without.
            mnist_wgpu::search::Value::Bool(false) => {}
            mnist_wgpu::search::Value::Str(s) if s.is_empty() => {}
            v => flags.extend([flag, v.to_string()]),
        }
    }
    let arch = params.get("arch").map(ToString::to_string);
    match (params.get("dropout").and_then(|d| d.as_f64()), arch) {
        (Some(rate), arch) => {
            let spec = with_dropout(arch.as_deref().unwrap_or("seed"), rate)
                .map_err(|e| space_error(settings, trial, params, &e))?;
            flags.extend(["--arch".into(), spec]);
        }
        (None, Some(arch)) => flags.extend(["--arch".into(), arch]),
        (None, None) => {}
    }
    if !params.contains_key("seed") {
        flags.extend(["--seed".into(), settings.seed.to_string()]);
    }
    let run_dir = trial_dir(out, trial).display().to_string();
    flags.extend(["--epochs".into(), epochs.to_string()]);
    flags.extend(["--val-split".into(), settings.val_split.to_string()]);
    flags.extend(["--run-dir".into(), run_dir]);
    flags.extend(settings.flags.iter().cloned());
    Ok(flags)
}

/// `spec` with dropout at `rate` right after its flatten (as in Keras' MNIST convnet, before
/// the classifier), replacing a dropout already there; none at rate 0.
fn with_dropout(spec: &str, rate: f64) -> Result<String, String> {
    let mut arch = Arch::parse(spec)?;
    let at = (arch.layers.iter().position(|l| *l == Layer::Flatten))
        .ok_or("dropout needs an architecture with a flatten layer")?
        + 1;
    if !(0.0..1.0).contains(&rate) {
        return Err(format!("dropout {rate} is not in [0, 1)"));
    }
    if matches!(arch.layers.get(at), Some(Layer::Dropout { .. })) {
        arch.layers.remove(at);
    }
    if rate > 0.0 {
        arch.layers.insert(at, Layer::Dropout { rate: rate as f32 });
    }
    Ok(arch.to_string())
}

fn parse_train(flags: &[String]) -> Result<TrainArgs> {
    let command = TrainArgs::augment_args(clap::Command::new("train"));
    let matches = command.try_get_matches_from(flags)?;
    Ok(TrainArgs::from_arg_matches(&matches)?)
}

/// Trains one trial to `epochs`: a new run, or its own run continued from its checkpoint (a
/// later rung, or a run the search was interrupted in).
fn run_trial(
    settings: &Settings,
    out: &Path,
    params: &Params,
    trial: usize,
    rung: usize,
    epochs: u64,
) -> Result<TrialResult> {
    let dir = trial_dir(out, trial);
    let flags = if dir.join("last.safetensors").exists() {
        let mut flags: Vec<String> = ["train", "--resume"].map(String::from).to_vec();
        flags.extend([
            dir.display().to_string(),
            "--epochs".into(),
            epochs.to_string(),
        ]);
        flags
    } else {
        if dir.exists() {
            // Started, but killed before its first checkpoint: start again.
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot remove", dir.display()))?;
        }
        trial_flags(params, settings, epochs, out, trial)?
    };
    let mut args = parse_train(&flags)?;
    args.trial = true;
    let start = Instant::now();
    let outcome = train_run(args);
    let seconds = start.elapsed().as_secs_f64();
    let mut result = TrialResult {
        trial,
        rung,
        epochs,
        params: params.clone(),
        status: Status::Ok,
        val_accuracy: None,
        val_loss: None,
        seconds,
        error: None,
    };
    match outcome {
        Ok(history) => {
            let last = history.last();
            result.val_accuracy = last.and_then(|e| e.val_accuracy);
            result.val_loss = last.and_then(|e| e.val_loss);
            if result.score(settings.metric).is_none() {
                result.status = Status::Failed;
                result.error = Some("no finite validation metric".into());
            }
        }
        Err(e) if e.is::<Interrupted>() => {
            return Err(anyhow::Error::new(Interrupted(format!(
                "interrupted: resume with mnist-wgpu search --resume {}",
                out.display()
            ))))
        }
        // A diverging trial, or one whose settings the run refuses, fails alone.
        Err(e) => {
            result.status = Status::Failed;
            result.error = Some(format!("{e:#}"));
        }
    }
    Ok(result)
}

fn read_journal(out: &Path) -> Result<Vec<TrialResult>> {
    let path = out.join(JOURNAL);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad_input(format!("{}: {e}", path.display()))),
    };
    // A kill during an append can leave the last line short: it is dropped (that trial runs
    // again), so that the next append starts a line of its own.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    if whole.len() < text.len() {
        write_atomic(&path, whole.as_bytes())?;
    }
    let mut results = Vec::new();
    for (i, line) in whole.lines().enumerate() {
        let result = serde_json::from_str(line)
            .map_err(|e| bad_input(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        results.push(result);
    }
    Ok(results)
}

fn append_journal(out: &Path, result: &TrialResult) -> Result<()> {
    let path = out.join(JOURNAL);
    let mut line = serde_json::to_string(result).context("serialising a trial")?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn print_result(result: &TrialResult, earlier: &[TrialResult], metric: Metric, trials: usize) {
    let score = match (result.score(metric), metric) {
        (Some(s), Metric::ValAccuracy) => {
            format!("{metric} {:.2}%", 100.0 * s, metric = metric.name())
        }
        (Some(s), Metric::ValLoss) => format!("{} {s:.4}", metric.name()),
        (None, _) => format!(
            "failed: {}",
            result.error.as_deref().map_or("", |e| first_line(e))
        ),
    };
    let all: Vec<TrialResult> = earlier.iter().chain([result]).cloned().collect();
    let best = best(&all, metric).map_or(String::new(), |b| format!(" (best: trial {})", b.trial));
    outln!(
        "trial {} of {trials}, to epoch {}: {} -> {score}{best}, {:.1} s",
        result.trial,
        result.epochs,
        describe(&result.params),
        result.seconds
    );
}

/// One row per trial: its settings, its metric at each rung it reached, its epochs and
/// seconds in all, and whether it finished.
#[derive(Serialize)]
struct Row {
    trial: usize,
    status: Status,
    epochs: u64,
    seconds: f64,
    params: Params,
    /// The metric at each rung the trial reached, in rung order.
    scores: Vec<Option<f64>>,
}

fn rows(results: &[TrialResult], metric: Metric) -> Vec<Row> {
    let mut by_trial: BTreeMap<usize, Vec<&TrialResult>> = BTreeMap::new();
    for r in results {
        by_trial.entry(r.trial).or_default().push(r);
    }
    (by_trial.into_iter())
        .map(|(trial, mut rs)| {
            rs.sort_by_key(|r| r.rung);
            let last = rs.last().expect("one result at least");
            Row {
                trial,
                status: last.status,
                epochs: last.epochs,
                seconds: rs.iter().map(|r| r.seconds).sum(),
                params: last.params.clone(),
                scores: rs.iter().map(|r| r.score(metric)).collect(),
            }
        })
        .collect()
}

fn write_results(out: &Path, results: &[TrialResult], metric: Metric) -> Result<()> {
    let rows = rows(results, metric);
    let json = serde_json::to_vec_pretty(&rows).context("serialising the results")?;
    write_atomic(&out.join("results.json"), &json)?;
    let keys: Vec<&String> = rows
        .first()
        .map_or(Vec::new(), |r| r.params.keys().collect());
    let rungs = rows.iter().map(|r| r.scores.len()).max().unwrap_or(0);
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["trial", "status", "epochs", "seconds"]
        .map(String::from)
        .to_vec();
    header.extend(keys.iter().map(|k| k.to_string()));
    header.extend((0..rungs).map(|k| format!("{}_rung{k}", metric.name())));
    csv.write_record(&header)?;
    for row in &rows {
        let mut record = vec![
            row.trial.to_string(),
            format!("{:?}", row.status).to_lowercase(),
            row.epochs.to_string(),
            format!("{:.2}", row.seconds),
        ];
        record.extend(keys.iter().map(|k| {
            row.params
                .get(*k)
                .map_or(String::new(), ToString::to_string)
        }));
        record.extend((0..rungs).map(|k| {
            row.scores
                .get(k)
                .copied()
                .flatten()
                .map_or(String::new(), |s| s.to_string())
        }));
        csv.write_record(&record)?;
    }
    let bytes = csv.into_inner().context("writing results.csv")?;
    write_atomic(&out.join("results.csv"), &bytes)
}

/// The results files, the best model, and its one evaluation on the test set.
fn finish(settings: &Settings, out: &Path, results: &[TrialResult]) -> Result<()> {
    write_results(out, results, settings.metric)?;
    let plot = out.join("search.png");
    write_search_plot(&plot, results, settings.metric)?;
    outln!(
        "wrote {}, {} and {}",
        out.join("results.json").display(),
        out.join("results.csv").display(),
        plot.display()
    );
    let Some(best) = best(results, settings.metric) else {
        anyhow::bail!("no trial finished: see {}", out.join(JOURNAL).display());
    };
    let model = std::fs::read(trial_dir(out, best.trial).join("model.safetensors"))
        .with_context(|| format!("reading trial {}'s model", best.trial))?;
    let best_path = out.join("best.safetensors");
    write_atomic(&best_path, &model)?;
    outln!(
        "best: trial {} ({}), {} {:.4} after {}",
        best.trial,
        describe(&best.params),
        settings.metric.name(),
        best.score(settings.metric).unwrap_or(f64::NAN),
        count(best.epochs as usize, "epoch")
    );
    outln!(
        "saved it to {}; its test set evaluation, the search's only one:",
        best_path.display()
    );
    let mut flags: Vec<String> = ["eval", "--model"].map(String::from).to_vec();
    flags.push(best_path.display().to_string());
    flags.extend([
        "--metrics-json".into(),
        out.join("best-metrics.json").display().to_string(),
    ]);
    flags.extend(settings.flags.iter().cloned());
    let command = EvalArgs::augment_args(clap::Command::new("eval"));
    let args = EvalArgs::from_arg_matches(&command.try_get_matches_from(&flags)?)?;
    eval(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_goes_after_flatten_replacing_one_there() {
        assert_eq!(
            with_dropout("seed", 0.5).unwrap(),
            "conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dropout0.5-dense10"
        );
        assert_eq!(
            with_dropout("conv8k3-flatten-dropout0.1-dense10", 0.25).unwrap(),
            "conv8k3-flatten-dropout0.25-dense10"
        );
        assert_eq!(
            with_dropout("conv8k3-flatten-dense10", 0.0).unwrap(),
            "conv8k3-flatten-dense10"
        );
        assert!(with_dropout("conv8k3", 0.5)
            .unwrap_err()
            .contains("flatten"));
        assert!(with_dropout("seed", 1.5).unwrap_err().contains("[0, 1)"));
    }

    #[test]
    fn the_example_space_parses_with_the_real_keys() {
        let keys = space_keys();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let text = include_str!("../../examples/search-space.toml");
        let space = Space::parse(text, &keys).unwrap();
        assert_eq!(space.params.len(), 5);
    }

    #[test]
    fn a_space_may_set_any_train_flag_but_those_the_search_sets() {
        let keys = space_keys();
        for key in [
            "lr",
            "batch_size",
            "arch",
            "optimizer",
            "weight_decay",
            "augment",
            "dropout",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
        for key in RESERVED {
            assert!(!keys.iter().any(|k| k == key), "{key}");
        }
        // Every reserved name is a real train flag (a renamed one would slip through).
        let train = TrainArgs::augment_args(clap::Command::new("train"));
        for key in RESERVED {
            assert!(train.get_arguments().any(|a| a.get_id() == *key), "{key}");
        }
    }
}
