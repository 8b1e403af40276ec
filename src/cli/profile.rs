//! `profile`: GPU time per kernel of a training step, as a table and a Chrome trace.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::args::ArchArgs;
use super::args::{data_dir, load_mnist_from, KernelArgs};
use mnist_wgpu::backend::Backend;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::data::{check_labels, labels_file};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::gpu::profile::{
    busy_us_per_step, kernel_us_per_step, profile_beside_timed_steps, DispatchTiming, Profiler,
    TimingSource,
};
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::init_params;
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(flatten)]
    arch: ArchArgs,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch_size: u64,
    /// Training steps to profile (after two warm-up steps), each after two steps timed as
    /// training runs them: the step time that the kernels' shares are of.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10000))]
    steps: u64,
    /// Write a Chrome trace-event JSON file (opens in Perfetto or chrome://tracing).
    #[arg(long, value_name = "PATH")]
    trace: Option<PathBuf>,
    /// Directory with the MNIST files [default: $MNIST_WGPU_DATA_DIR, else the copy of
    /// data/mnist built into the program].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Use the GPU adapter whose name contains this text.
    #[arg(long, value_name = "SUBSTRING")]
    adapter: Option<String>,
    /// How kernels are timed: auto (the best the adapter offers), inside-pass (GPU timestamps
    /// around each dispatch of the step's passes), per-pass (one pass per dispatch with pass
    /// timestamps) or host-clock (one submit and wait per dispatch).
    #[arg(long, value_enum, default_value_t = TimingChoice::Auto)]
    timing: TimingChoice,
    #[command(flatten)]
    tuning: KernelArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TimingChoice {
    Auto,
    InsidePass,
    PerPass,
    HostClock,
}

impl TimingChoice {
    /// The method for a device with `features` on `adapter`, or an error naming the flag
    /// where it lacks what the method needs.
    fn source(self, features: wgpu::Features, adapter: &str) -> Result<TimingSource> {
        let wanted = match self {
            TimingChoice::Auto => return Ok(TimingSource::best(features)),
            TimingChoice::InsidePass => TimingSource::TimestampsInsidePass,
            TimingChoice::PerPass => TimingSource::TimestampPerPass,
            TimingChoice::HostClock => TimingSource::WallClockPerPass,
        };
        let offered = TimingSource::offered(features);
        if offered.contains(&wanted) {
            return Ok(wanted);
        }
        let names: Vec<String> = offered
            .iter()
            .map(|&s| TimingChoice::of(s).name())
            .collect();
        Err(bad_input(format!(
            "--timing {}: adapter '{adapter}' has no {}; it offers {}",
            self.name(),
            if wanted == TimingSource::TimestampsInsidePass {
                "timestamp queries inside passes"
            } else {
                "timestamp queries"
            },
            names.join(", ")
        )))
    }

    fn of(source: TimingSource) -> TimingChoice {
        match source {
            TimingSource::TimestampsInsidePass => TimingChoice::InsidePass,
            TimingSource::TimestampPerPass => TimingChoice::PerPass,
            TimingSource::WallClockPerPass => TimingChoice::HostClock,
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_string()
    }
}

const WARM_UP_STEPS: usize = 2;
/// Steps timed as training runs them before each profiled step (see
/// `profile_beside_timed_steps`).
const TIMED_STEPS_PER_PROFILED: usize = 2;

pub fn profile(args: ProfileArgs) -> Result<()> {
    if let Some(path) = &args.trace {
        super::args::check_output_file("--trace", path, path)?;
    }
    let (arch, plan) = args.arch.plan()?;
    let ctx = GpuContext::new(args.adapter.as_deref())?.ok_or_else(|| {
        bad_input("profile: no GPU adapter found; install mesa-vulkan-drivers for a software one")
    })?;
    let source = args.timing.source(ctx.features, &ctx.info.name)?;
    let (batch, steps) = (args.batch_size as usize, args.steps as usize);
    let dir = data_dir(args.data_dir.as_deref())?;
    let mut train = load_mnist_from(dir.as_deref())?.train;
    check_labels(&train, plan.classes(), &labels_file(dir.as_deref(), true))?;
    train = train.truncated(batch * (WARM_UP_STEPS + (1 + TIMED_STEPS_PER_PROFILED) * steps));
    if train.len() < batch {
        return Err(bad_input(format!(
            "--batch-size {batch}: larger than the {}",
            count(train.len(), "training image")
        )));
    }
    let mut backend = GpuBackend::new(
        &ctx,
        plan.clone(),
        &init_params(&plan, 42),
        Optimizer::adam(1e-3),
    )?;
    args.tuning.load()?.apply(&mut backend);
    backend.set_train_data(&train)?;
    let batch_indices = |s: usize| -> Vec<u32> {
        (0..batch)
            .map(|i| ((s * batch + i) % train.len()) as u32)
            .collect()
    };
    for s in 0..WARM_UP_STEPS {
        backend.train_step(&batch_indices(s))?;
    }
    backend.take_train_stats()?;
    let mut profiler = Profiler::with_source(source);
    let run = profile_beside_timed_steps(
        &mut profiler,
        &mut backend,
        (steps, TIMED_STEPS_PER_PROFILED),
        |s| batch_indices(WARM_UP_STEPS + s),
    )?;
    // Said where the adapter's lack of timestamps, not the user, chose the host clock.
    let lacking = if args.timing == TimingChoice::Auto && source == TimingSource::WallClockPerPass {
        "no timestamp queries on this adapter: "
    } else {
        ""
    };
    outln!(
        "{} ({}), {arch}, batch {batch}, {}; {lacking}{}",
        ctx.info.name,
        ctx.backend_name(),
        count(steps, "step"),
        source.describe()
    );
    print_table(&run.steps, run.step_us);
    if let Some(path) = &args.trace {
        write_atomic(
            path,
            serde_json::to_string(&chrome_trace(&run.steps))?.as_bytes(),
        )?;
        outln!("wrote trace to {}", path.display());
    }
    Ok(())
}

#[derive(Default)]
struct Row {
    calls: usize,
    total_us: f64,
    flops: u64,
    bytes: u64,
}

fn print_table(steps: &[Vec<DispatchTiming>], step_us: f64) {
    let mut rows: HashMap<(&str, &str, &str), Row> = HashMap::new();
    for t in steps.iter().flatten() {
        let row = rows
            .entry((t.kernel, t.variant, t.cost.shape.as_str()))
            .or_default();
        row.calls += 1;
        row.total_us += t.duration_us;
        row.flops += t.cost.flops;
        row.bytes += t.cost.bytes;
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_us.total_cmp(&a.1.total_us));
    let kw = column_width(rows.iter().map(|(k, _)| k.0), "kernel");
    let vw = column_width(rows.iter().map(|(k, _)| k.1), "variant");
    let sw = column_width(rows.iter().map(|(k, _)| k.2), "shape");
    outln!(
        "\n{:kw$}  {:vw$}  {:sw$}  {:>5}  {:>10}  {:>10}  {:>6}  {:>8}  {:>7}",
        "kernel",
        "variant",
        "shape",
        "calls",
        "total ms",
        "mean us",
        "share",
        "GFLOP/s",
        "GB/s"
    );
    let all_steps_us = step_us * steps.len() as f64;
    for ((kernel, variant, shape), r) in &rows {
        let seconds = r.total_us / 1e6;
        let rate = |x: u64| {
            if x == 0 || seconds == 0.0 {
                "-".to_string()
            } else {
                format!("{:.2}", x as f64 / seconds / 1e9)
            }
        };
        let variant = if variant.is_empty() { "-" } else { variant };
        outln!(
            "{kernel:kw$}  {variant:vw$}  {shape:sw$}  {:>5}  {:>10.3}  {:>10.1}  {:>5.1}%  {:>8}  {:>7}",
            r.calls,
            r.total_us / 1e3,
            r.total_us / r.calls as f64,
            100.0 * r.total_us / all_steps_us,
            rate(r.flops),
            rate(r.bytes)
        );
    }
    let (kernel_us, busy_us) = (kernel_us_per_step(steps), busy_us_per_step(steps));
    outln!(
        "\nstep (one submit, wall clock, timed beside the profiled steps): {:.3} ms; kernels and texture copies: {:.3} ms per step summed ({:.1}% of \
         the step), {:.3} ms with at least one running ({:.1}%: overlapping kernels count once)",
        step_us / 1e3,
        kernel_us / 1e3,
        100.0 * kernel_us / step_us,
        busy_us / 1e3,
        100.0 * busy_us / step_us
    );
}

fn column_width<'a>(values: impl Iterator<Item = &'a str>, title: &str) -> usize {
    values.map(str::len).chain([title.len()]).max().unwrap_or(0)
}

/// Trace-event JSON: one complete event per dispatch, steps laid end to end.
fn chrome_trace(steps: &[Vec<DispatchTiming>]) -> serde_json::Value {
    let mut events = Vec::new();
    let mut origin = 0.0;
    for (s, step) in steps.iter().enumerate() {
        let end = step
            .iter()
            .map(|t| t.start_us + t.duration_us)
            .fold(0.0, f64::max);
        events.push(serde_json::json!({"name": format!("step {}", s + 1), "ph": "X", "pid": 1, "tid": 0, "ts": origin, "dur": end}));
        for t in step {
            events.push(serde_json::json!({
                "name": t.kernel, "cat": "kernel", "ph": "X", "pid": 1, "tid": 1,
                "ts": origin + t.start_us, "dur": t.duration_us,
                "args": {"shape": t.cost.shape, "variant": t.variant, "workgroups": t.workgroups, "flops": t.cost.flops, "bytes": t.cost.bytes},
            }));
        }
        origin += end + 10.0;
    }
    serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timing_method_the_adapter_lacks_is_refused_naming_what_it_offers() {
        let (stamps, inside) = (
            wgpu::Features::TIMESTAMP_QUERY,
            wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        );
        let source = |choice: TimingChoice, features| choice.source(features, "A");
        assert_eq!(
            source(TimingChoice::Auto, stamps | inside).unwrap(),
            TimingSource::TimestampsInsidePass
        );
        assert_eq!(
            source(TimingChoice::Auto, stamps).unwrap(),
            TimingSource::TimestampPerPass
        );
        // Passes' timestamps need the plain feature too.
        assert_eq!(
            source(TimingChoice::Auto, inside).unwrap(),
            TimingSource::WallClockPerPass
        );
        assert_eq!(
            source(TimingChoice::PerPass, stamps | inside).unwrap(),
            TimingSource::TimestampPerPass
        );
        assert_eq!(
            source(TimingChoice::HostClock, wgpu::Features::empty()).unwrap(),
            TimingSource::WallClockPerPass
        );
        assert_eq!(
            source(TimingChoice::InsidePass, stamps)
                .unwrap_err()
                .to_string(),
            "--timing inside-pass: adapter 'A' has no timestamp queries inside passes; it \
             offers per-pass, host-clock"
        );
        assert_eq!(
            source(TimingChoice::PerPass, wgpu::Features::empty())
                .unwrap_err()
                .to_string(),
            "--timing per-pass: adapter 'A' has no timestamp queries; it offers host-clock"
        );
    }
}
