//! Measurements for `bench`: steady-state training and inference speed of a backend, and the
//! yardstick it is judged against, a calibration matrix multiply timed on the same device in
//! the same run (the fastest variant and size found). Memory comes from the operating system
//! (peak resident set) and from wgpu's allocation counters.

use std::time::{Duration, Instant};

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::Backend;
use crate::cpu::conv2d::Conv2dGeometry;
use crate::cpu::float::{Float, MatMut, MatRef};
use crate::data::{Split, IMAGE_PIXELS};
use crate::gpu::autotune::{time_dispatches, Sampling};
use crate::gpu::buffer::{storage, storage_init, View};
use crate::gpu::conv2d::kernels::Conv2dKernels;
use crate::gpu::conv2d::Conv2dPass;
use crate::gpu::dense::kernels::DenseKernels;
use crate::gpu::gemm::{self, GemmKernel};
use crate::gpu::kernel::Dispatch;
use crate::gpu::GpuContext;
use crate::model::Shape;
use crate::rng::random_vec;

/// What `bench --json` writes. The first thirteen fields are the stable interface.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub arch: String,
    pub batch_size: usize,
    /// From creating the backend to the end of the first training step: device setup, shader
    /// compilation, autotuning and the upload of the training set.
    pub warmup_seconds: f64,
    pub seconds_per_epoch: f64,
    pub train_images_per_second: f64,
    pub inference_images_per_second: f64,
    /// Useful floating-point work of training (multiply-adds count two) per second.
    pub step_gflops: f64,
    pub calibration_gflops: f64,
    /// Share of a training step's wall time spent inside GPU kernels (GPU timestamps); absent
    /// on the CPU and on adapters without timestamp queries.
    pub kernel_share: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of GPU buffers alive at the end, as wgpu's counters see them (Vulkan and DX12).
    pub gpu_bytes: Option<u64>,
    /// Images in an epoch, and the training work of one epoch.
    pub epoch_images: usize,
    pub epoch_gflop: f64,
    /// Which multiply gave `calibration_gflops`.
    pub calibration: String,
    pub train_steps_timed: usize,
    pub date: String,
    /// With `--int8`: inference of the model quantised to int8, beside float, on the bench's
    /// device and on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Speeds>,
}

/// Inference images/s of the benched model quantised to int8 (`bench --int8`), and of the
/// float and int8 models on the CPU path, timed like `inference_images_per_second`.
#[derive(Clone, Debug, Serialize)]
pub struct Int8Speeds {
    /// The int8 model on the bench's device (the GPU's integer kernels, or the CPU's path).
    pub int8_images_per_second: f64,
    pub cpu_float_images_per_second: f64,
    pub cpu_int8_images_per_second: f64,
}

/// The fastest matrix multiply found on a device.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub gflops: f64,
    pub description: String,
}

/// Seconds per training step: consecutive batches of `train` (wrapping around) for at least
/// `min_time` and at least three steps, waiting for all of them at the end.
pub fn time_training(
    backend: &mut dyn Backend,
    train: &Split,
    batch: usize,
    min_time: Duration,
) -> Result<(f64, usize)> {
    let batch_indices = |s: usize| -> Vec<u32> {
        (0..batch)
            .map(|i| ((s * batch + i) % train.len()) as u32)
            .collect()
    };
    backend.take_train_stats()?;
    let start = Instant::now();
    let mut steps = 0;
    while steps < 3 || start.elapsed() < min_time {
        backend.train_step(&batch_indices(steps))?;
        steps += 1;
        if steps % 8 == 0 {
            // Bound the queue, and notice a diverging run early.
            backend.take_train_stats()?;
        }
    }
    backend.take_train_stats()?;
    Ok((start.elapsed().as_secs_f64() / steps as f64, steps))
}

/// Images per second of inference in batches of `batch` (after one warm-up batch), for at
/// least `min_time` and three batches.
pub fn time_inference(
    backend: &mut dyn Backend,
    images: &Split,
    batch: usize,
    min_time: Duration,
) -> Result<f64> {
    let batch = batch.min(images.len()).max(1);
    let batches = images.len() / batch;
    let chunk = |b: usize| {
        let start = (b % batches) * batch * IMAGE_PIXELS;
        &images.images[start..start + batch * IMAGE_PIXELS]
    };
    backend.predict_logits(chunk(0))?;
    let start = Instant::now();
    let mut done = 0;
    while done < 3 || start.elapsed() < min_time {
        backend.predict_logits(chunk(done + 1))?;
        done += 1;
    }
    Ok((done * batch) as f64 / start.elapsed().as_secs_f64())
}

/// How each calibration candidate is timed: longer and more often than the autotuner's
/// samples, because the yardstick's fastest run is what counts: with three samples of 20 ms
/// it read anywhere from 29 to 35 GFLOP/s within one hour on our 2-core machine.
const CALIBRATION_SAMPLING: Sampling = Sampling {
    samples: 8,
    sample_seconds: 0.05,
};

/// Square sizes tried for the calibration multiply, smallest first.
const CALIBRATION_SIZES: [usize; 3] = [512, 1024, 2048];
/// A size whose fastest run takes longer than this is the last one tried (keeps CPU adapters
/// quick).
const CALIBRATION_SLOW_RUN: f64 = 0.1;

/// The calibration shape of the register-blocked multiply (`gpu::gemm`): rows enough to keep
/// every CPU thread busy with its largest blocks, its largest inner size, four column blocks.
const GEMM_CALIBRATION_SHAPE: (usize, usize, usize) = (8192, gemm::MAX_INNER, 256);

/// The fastest `C = A B` on `ctx` among our multiplies: the register-blocked multiply made for
/// CPU-like adapters (`gpu::gemm`) with each of its block heights, then at a few square sizes
/// every variant of the dense matmul and of conv2d forward with a 1x1 kernel (a matrix product
/// of the weights and the image's channels, and the kernels our training time mostly goes to).
pub fn gpu_calibration(ctx: &GpuContext) -> Result<Calibration> {
    let (dense, conv) = (DenseKernels::new(ctx), Conv2dKernels::new(ctx));
    let mut best = Calibration {
        gflops: 0.0,
        description: String::new(),
    };
    register_blocked_calibration(ctx, &mut best)?;
    for size in CALIBRATION_SIZES {
        let data = random_vec(size * size, size as u64, -1.0, 1.0);
        let (a, b, c) = (
            storage_init(ctx, "calibration a", &data)?,
            storage_init(ctx, "calibration b", &data)?,
            storage_init(ctx, "calibration c", &data)?,
        );
        let bias = storage_init(ctx, "calibration bias", &vec![0.0f32; size])?;
        let (a, b, c, bias) = (
            View::whole(&a),
            View::whole(&b),
            View::whole(&c),
            View::whole(&bias),
        );
        // C (size x size) = A (size x size) B (size channels of a 32-wide image).
        let g = Conv2dGeometry::new(Shape::new(size, size / 32, 32), size, 1);
        let mut candidates: Vec<(String, Vec<Dispatch>)> = Vec::new();
        for v in dense.variants() {
            let d = dense.matmul_row_major(ctx, v, (size, size, size), (a, b, c));
            candidates.push((format!("dense matmul ({v})"), vec![d]));
        }
        // The variants the autotuner would time for this forward.
        for v in conv.offer(&ctx.info, Conv2dPass::Forward, g).timed {
            let d = conv.forward(ctx, v, (g, 1), false, [b, a, bias, c]);
            candidates.push((format!("conv2d 1x1 forward ({v})"), d));
        }
        let mut fastest_run = f64::INFINITY;
        for (name, dispatches) in candidates {
            let bound = (best.gflops > 0.0).then(|| 3.0 * flops(size) / (best.gflops * 1e9));
            let seconds = time_dispatches(ctx, &dispatches, bound, CALIBRATION_SAMPLING)?;
            fastest_run = fastest_run.min(seconds);
            let gflops = flops(size) / seconds / 1e9;
            log::debug!("calibration: {name}, {size}^3: {gflops:.2} GFLOP/s");
            if gflops > best.gflops {
                best = Calibration {
                    gflops,
                    description: format!("{name}, {size}^3"),
                };
            }
        }
        if fastest_run > CALIBRATION_SLOW_RUN {
            break;
        }
    }
    Ok(best)
}

/// Times `gpu::gemm` with each block height on [`GEMM_CALIBRATION_SHAPE`] and keeps the fastest
/// in `best` (nothing where the adapter's uniform bindings are too small for it).
fn register_blocked_calibration(ctx: &GpuContext, best: &mut Calibration) -> Result<()> {
    let (m, k, n) = GEMM_CALIBRATION_SHAPE;
    let a = storage_init(ctx, "calibration a", &random_vec(m * k, 1, -1.0, 1.0))?;
    let b = gemm::packed_b(ctx, &random_vec(k * n, 2, -1.0, 1.0), (k, n));
    let c = storage(ctx, "calibration c", (4 * m * n) as u64)?;
    let work = 2.0 * (m * k * n) as f64;
    for rows in gemm::ROW_CHOICES {
        let Some(kernel) = GemmKernel::new(ctx, rows) else {
            return Ok(());
        };
        let dispatches = kernel.multiply(ctx, (m, k, n), (View::whole(&a), &b, View::whole(&c)));
        let bound = (best.gflops > 0.0).then(|| 3.0 * work / (best.gflops * 1e9));
        let gflops = work / time_dispatches(ctx, &dispatches, bound, CALIBRATION_SAMPLING)? / 1e9;
        log::debug!("calibration: register-blocked gemm ({rows} rows): {gflops:.2} GFLOP/s");
        if gflops > best.gflops {
            *best = Calibration {
                gflops,
                description: format!("register-blocked gemm ({rows} rows), {m}x{k} times {k}x{n}"),
            };
        }
    }
    Ok(())
}

/// The CPU path's own multiply (`Float::gemm`), rows split across the rayon threads as the
/// CPU backend splits its work: the best of three runs at 1024^3.
pub fn cpu_calibration() -> Calibration {
    const SIZE: usize = 1024;
    let a = crate::rng::random_vec(SIZE * SIZE, 1, -1.0, 1.0);
    let mut c = vec![0.0f32; SIZE * SIZE];
    let rows_per_task = SIZE.div_ceil(rayon::current_num_threads()).max(1);
    let mut fastest = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        c.par_chunks_mut(rows_per_task * SIZE)
            .enumerate()
            .for_each(|(i, block)| {
                let rows = block.len() / SIZE;
                let a_rows = &a[i * rows_per_task * SIZE..][..rows * SIZE];
                f32::gemm(
                    1.0,
                    MatRef::row_major(a_rows, rows, SIZE),
                    MatRef::row_major(&a, SIZE, SIZE),
                    0.0,
                    MatMut::row_major(block, rows, SIZE),
                );
            });
        fastest = fastest.min(start.elapsed().as_secs_f64());
    }
    Calibration {
        gflops: flops(SIZE) / fastest / 1e9,
        description: format!(
            "CPU gemm (matrixmultiply, {} threads), {SIZE}^3",
            rayon::current_num_threads()
        ),
    }
}

fn flops(size: usize) -> f64 {
    2.0 * (size as f64).powi(3)
}

/// The most memory this process has held resident, where the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let max = u64::try_from(usage.ru_maxrss).ok()?;
        // Linux reports KiB, macOS bytes.
        let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
        Some(max * unit)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Bytes of GPU buffers alive on `ctx`'s device, where wgpu counts them.
pub fn gpu_bytes(ctx: &GpuContext) -> Option<u64> {
    let bytes = ctx.device.get_internal_counters().hal.buffer_memory.read();
    u64::try_from(bytes).ok().filter(|&b| b > 0)
}
