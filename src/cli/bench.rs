//! `bench`: warm-up, steady-state training and inference speed, achieved GFLOP/s against a
//! calibration multiply on the same device, share of the step inside kernels, and memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::args::ArchArgs;
use super::args::{check_output_file, data_dir, gpu_context, load_mnist_from, DataArgs};
use mnist_wgpu::backend::Backend;
use mnist_wgpu::bench::{
    cpu_calibration, gpu_bytes, gpu_calibration, peak_rss_bytes, time_inference, time_training,
    BenchReport, Int8Speeds,
};
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::{CpuBackend, Int8Backend};
use mnist_wgpu::data::{check_labels, labels_file, Mnist, IMAGE_PIXELS};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::fsutil::write_atomic;
use mnist_wgpu::gpu::int8_backend::GpuInt8Backend;
use mnist_wgpu::gpu::profile::{
    busy_us_per_step, profile_beside_timed_steps, Profiler, TimingSource,
};
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::{init_params, Params, Plan};
use mnist_wgpu::quantize::{quantize, Calibration, QuantizeOptions};
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    arch: ArchArgs,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch_size: u64,
    /// Minimum seconds of steady-state timing, for training and again for inference.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Write the results as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also time inference of the model quantised to int8 (calibrated on 256 training images)
    /// on this device, and float and int8 inference on the CPU path.
    #[arg(long)]
    int8: bool,
    #[command(flatten)]
    data: DataArgs,
}

/// Training steps the profiler times for the kernel share, and the steps timed before each.
const PROFILED_STEPS: usize = 3;
const TIMED_STEPS_PER_PROFILED: usize = 3;

enum Device {
    Cpu(Box<CpuBackend>),
    Gpu(Box<GpuBackend>),
}

impl Device {
    fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Device::Cpu(b) => b.as_mut(),
            Device::Gpu(b) => b.as_mut(),
        }
    }
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_file("--json", path, path)?;
    }
    let (arch, plan) = args.arch.plan()?;
    let dir = data_dir(args.data.data_dir.as_deref())?;
    let mut mnist = load_mnist_from(dir.as_deref())?;
    check_labels(
        &mnist.train,
        plan.classes(),
        &labels_file(dir.as_deref(), true),
    )?;
    check_labels(
        &mnist.test,
        plan.classes(),
        &labels_file(dir.as_deref(), false),
    )?;
    if let Some(n) = args.data.test_limit {
        mnist.test = mnist.test.truncated(n as usize);
    }
    let batch = args.batch_size as usize;
    if batch > mnist.train.len() {
        return Err(bad_input(format!(
            "--batch-size {batch}: larger than the {}",
            count(mnist.train.len(), "training image")
        )));
    }
    let min_time = Duration::from_secs(args.seconds);

    let start = Instant::now();
    let params = init_params(&plan, 42);
    let int8_params = args.int8.then(|| params.clone());
    let optimizer = Optimizer::adam(1e-3);
    let tuning = args.data.device.kernels.load()?;
    let mut device = match gpu_context(&args.data.device)? {
        Some(ctx) => {
            let mut backend = GpuBackend::new(&ctx, plan.clone(), &params, optimizer)?;
            tuning.apply(&mut backend);
            Device::Gpu(Box::new(backend))
        }
        None => Device::Cpu(Box::new(CpuBackend::new(plan.clone(), params, optimizer))),
    };
    let backend = device.backend();
    let info = backend.info();
    outln!(
        "benchmarking {arch}, batch {batch}, on {} ({})",
        info.adapter,
        info.backend
    );
    backend.set_train_data(&mnist.train)?;
    let first: Vec<u32> = (0..batch as u32).collect();
    backend.train_step(&first)?;
    backend.take_train_stats()?;
    let warmup_seconds = start.elapsed().as_secs_f64();
    outln!("warm-up (setup, compilation, autotuning, first step): {warmup_seconds:.2} s");

    log::info!("timing training steps");
    let (step_seconds, steps) = time_training(backend, &mnist.train, batch, min_time)?;
    log::info!("timing inference");
    let inference_rate = time_inference(backend, &mnist.test, batch, min_time)?;
    let int8 = match int8_params {
        Some(params) => {
            let timing = (batch, min_time, inference_rate);
            Some(time_int8(&plan, params, &mnist, &device, timing)?)
        }
        None => None,
    };
    let (kernel_share, gpu_bytes, calibration) = match &mut device {
        Device::Gpu(backend) => {
            let ctx = backend.context().clone();
            log::info!("profiling steps for the share inside kernels");
            let share = kernel_share(backend, &ctx, batch)?;
            log::info!("timing the calibration multiplies");
            (share, gpu_bytes(&ctx), gpu_calibration(&ctx)?)
        }
        Device::Cpu(_) => (None, None, cpu_calibration()),
    };

    let epoch_images = mnist.train.len();
    let flops_per_image = 2.0 * plan.training_macs() as f64;
    let train_rate = batch as f64 / step_seconds;
    let report = BenchReport {
        adapter: info.adapter,
        backend: info.backend,
        arch: arch.to_string(),
        batch_size: batch,
        warmup_seconds,
        seconds_per_epoch: epoch_images as f64 / train_rate,
        train_images_per_second: train_rate,
        inference_images_per_second: inference_rate,
        step_gflops: flops_per_image * train_rate / 1e9,
        calibration_gflops: calibration.gflops,
        kernel_share,
        peak_rss_bytes: peak_rss_bytes(),
        gpu_bytes,
        epoch_images,
        epoch_gflop: flops_per_image * epoch_images as f64 / 1e9,
        calibration: calibration.description,
        train_steps_timed: steps,
        date: chrono::Local::now().format("%Y-%m-%d").to_string(),
        int8,
    };
    print_report(&report, &plan);
    if let Some(path) = &args.json {
        write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}

/// Images used to calibrate the int8 model of `bench --int8`.
const INT8_CALIBRATION_IMAGES: usize = 256;

/// `bench --int8`: the model quantised, timed on the bench's device, and with float on the
/// CPU path (`float_rate`: the bench's own float figure, when its device is the CPU).
fn time_int8(
    plan: &Plan,
    params: Params<f32>,
    mnist: &Mnist,
    device: &Device,
    (batch, min_time, float_rate): (usize, Duration, f64),
) -> Result<Int8Speeds> {
    let calibration = INT8_CALIBRATION_IMAGES.min(mnist.train.len()) * IMAGE_PIXELS;
    let options = QuantizeOptions {
        calibration: Calibration::MinMax,
        per_tensor: false,
    };
    let model = quantize(plan, &params, &mnist.train.images[..calibration], options)
        .map_err(|e| bad_input(format!("--int8: cannot quantise: {e}")))?;
    log::info!("timing int8 inference on the CPU path");
    let cpu_int8 = time_inference(
        &mut Int8Backend::new(model.clone()),
        &mnist.test,
        batch,
        min_time,
    )?;
    Ok(match device {
        Device::Gpu(backend) => {
            log::info!("timing int8 inference on the GPU, and float on the CPU path");
            let mut gpu = GpuInt8Backend::new(backend.context(), model)?;
            let mut cpu = CpuBackend::new(plan.clone(), params, Optimizer::adam(1e-3));
            Int8Speeds {
                int8_images_per_second: time_inference(&mut gpu, &mnist.test, batch, min_time)?,
                cpu_float_images_per_second: time_inference(
                    &mut cpu,
                    &mnist.test,
                    batch,
                    min_time,
                )?,
                cpu_int8_images_per_second: cpu_int8,
            }
        }
        Device::Cpu(_) => Int8Speeds {
            int8_images_per_second: cpu_int8,
            cpu_float_images_per_second: float_rate,
            cpu_int8_images_per_second: cpu_int8,
        },
    })
}

/// The time at least one kernel runs in a profiled step over the time of the steps timed
/// beside them (as training runs them), where GPU timestamps exist.
fn kernel_share(backend: &mut GpuBackend, ctx: &GpuContext, batch: usize) -> Result<Option<f64>> {
    let mut profiler = Profiler::new(ctx);
    if profiler.source == TimingSource::WallClockPerPass {
        return Ok(None);
    }
    let indices: Vec<u32> = (0..batch as u32).collect();
    let run = profile_beside_timed_steps(
        &mut profiler,
        backend,
        (PROFILED_STEPS, TIMED_STEPS_PER_PROFILED),
        |_| indices.clone(),
    )?;
    Ok(Some(busy_us_per_step(&run.steps) / run.step_us))
}

fn print_report(r: &BenchReport, plan: &Plan) {
    outln!(
        "training: {:.3} s per step, {:.1} s per epoch of {}, {:.0} images/s ({} timed)",
        r.batch_size as f64 / r.train_images_per_second,
        r.seconds_per_epoch,
        count(r.epoch_images, "image"),
        r.train_images_per_second,
        count(r.train_steps_timed, "step")
    );
    outln!("inference: {:.0} images/s", r.inference_images_per_second);
    if let Some(q) = &r.int8 {
        outln!(
            "int8 inference: {:.0} images/s here ({:.0} float); CPU path: int8 {:.0}, float {:.0} images/s",
            q.int8_images_per_second,
            r.inference_images_per_second,
            q.cpu_int8_images_per_second,
            q.cpu_float_images_per_second
        );
    }
    outln!(
        "work: {:.1} GFLOP per epoch, {:.2} GFLOP/s achieved; calibration: {:.2} GFLOP/s ({})",
        r.epoch_gflop,
        r.step_gflops,
        r.calibration_gflops,
        r.calibration
    );
    // The bound as the issue tracker states it: three times the forward work per epoch.
    let bound =
        6.0 * plan.forward_macs() as f64 * r.epoch_images as f64 / (r.calibration_gflops * 1e9);
    outln!(
        "calibration bound (3x forward work at calibration speed): {bound:.1} s per epoch; this run is {:.2}x the bound",
        r.seconds_per_epoch / bound
    );
    if let Some(share) = r.kernel_share {
        outln!("{}", kernel_share_line(share));
    }
    let mib = |b: Option<u64>| {
        b.map_or("n/a".to_string(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        })
    };
    outln!(
        "memory: peak resident {}, GPU buffers {}",
        mib(r.peak_rss_bytes),
        mib(r.gpu_bytes)
    );
}

/// The `inside kernels` line of a report; a share over 100 % says how that can be.
fn kernel_share_line(share: f64) -> String {
    let line = format!("inside kernels: {:.1}% of the step", 100.0 * share);
    // Over 100.0 as printed (to a tenth of a percent).
    if (1000.0 * share).round() > 1000.0 {
        format!(
            "{line} (over 100%: the profiled steps and the timed ones are separate runs on a \
             machine whose speed drifts, and kernel timestamps also count texture copies)"
        )
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_share_over_100_percent_says_why() {
        assert_eq!(
            kernel_share_line(0.873),
            "inside kernels: 87.3% of the step"
        );
        // 100.0 % as printed is no excess.
        assert_eq!(
            kernel_share_line(1.0004),
            "inside kernels: 100.0% of the step"
        );
        let over = kernel_share_line(1.123);
        assert!(
            over.starts_with("inside kernels: 112.3% of the step (over 100%: ")
                && over.contains("separate runs")
                && over.contains("texture copies)")
                && !over.contains('\n'),
            "{over}"
        );
    }
}
