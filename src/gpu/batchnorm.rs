//! Batch normalisation on the GPU (`shaders/batchnorm.wgsl`), twin of `cpu/batchnorm.rs`.
//! Each layer owns a small statistics buffer (`[mean | var | inv_std]` per channel); its
//! scale, shift and running statistics live in the parameter buffer, their gradients in the
//! gradient buffer, each pair bound as one view.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::ParamBuffers;
use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel};
use crate::cpu::batchnorm::{
    batchnorm_backward, batchnorm_forward_inference, batchnorm_forward_training, BatchNormStats,
    EPSILON, MOMENTUM,
};
use crate::model::Shape;
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/batchnorm.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BatchNormParams {
    n: u32,
    channels: u32,
    plane: u32,
    pair_stride: u32,
    epsilon: f32,
    momentum: f32,
    keep: f32,
    unbias: f32,
    training: u32,
    _pad: [u32; 3],
}

/// One batch-norm layer's buffers. Each pair view starts at its first tensor and spans the
/// second, which starts `pair_stride` elements later.
#[derive(Clone, Copy)]
pub struct BatchNormViews<'a> {
    pub pair_stride: usize,
    /// gamma, beta (parameters).
    pub affine: View<'a>,
    /// Running mean and variance (parameters the optimiser skips).
    pub running: View<'a>,
    /// `[mean | var | inv_std]`, 3 x channels floats.
    pub stats: View<'a>,
}

/// Which statistics a pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunningStats {
    /// Inference, and the training of a frozen layer (as Keras trains a frozen batch norm):
    /// normalise by the running statistics, left as they are and, backward, taken as
    /// constants.
    Read,
    /// Training: normalise by the batch's statistics and move the running ones toward them.
    Update,
}

impl RunningStats {
    /// The training mode of batch-norm `step`, whose tensors may be `frozen` (one flag per
    /// parameter tensor).
    pub fn from_frozen(frozen: &[bool], step: &crate::model::Step) -> RunningStats {
        let stats = step.stats_index.expect("batch norm has running statistics");
        match frozen[stats] {
            true => RunningStats::Read,
            false => RunningStats::Update,
        }
    }
}

/// Bytes of one layer's statistics buffer.
pub fn stats_bytes(channels: usize) -> u64 {
    (3 * 4 * channels) as u64
}

pub struct BatchNormKernels {
    statistics: Kernel,
    normalize: Kernel,
    backward_sums: Kernel,
    backward_input: Kernel,
}

impl BatchNormKernels {
    pub fn new(ctx: &GpuContext) -> BatchNormKernels {
        let module = compile(ctx, "batchnorm.wgsl", SOURCE);
        use Access::*;
        let all = [
            Uniform, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Read, ReadWrite,
        ];
        let kernel = |name, used: usize| Kernel::new(ctx, &module, name, &all[..used]);
        BatchNormKernels {
            statistics: kernel("batchnorm_statistics", 4),
            normalize: kernel("batchnorm_normalize", 6),
            backward_sums: kernel("batchnorm_backward_sums", 8),
            backward_input: kernel("batchnorm_backward_input", 8),
        }
    }

    fn params(
        ctx: &GpuContext,
        shape: Shape,
        n: usize,
        pair: usize,
        running: RunningStats,
    ) -> wgpu::Buffer {
        let count = n * shape.height * shape.width;
        let unbias = if count > 1 {
            (count as f64 / (count - 1) as f64) as f32
        } else {
            1.0
        };
        let momentum = MOMENTUM as f32;
        let params = BatchNormParams {
            n: n as u32,
            channels: shape.channels as u32,
            plane: (shape.height * shape.width) as u32,
            pair_stride: pair as u32,
            epsilon: EPSILON as f32,
            momentum,
            keep: 1.0 - momentum,
            unbias,
            training: u32::from(running != RunningStats::Read),
            _pad: [0; 3],
        };
        uniform(ctx, "batchnorm params", &params)
    }

    /// Statistics (the batch's when training, else the running ones; see [`RunningStats`])
    /// and `y` from `x`, for `n` images of `shape`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        shape: Shape,
        n: usize,
        running: RunningStats,
        v: BatchNormViews,
        x: View,
        y: View,
    ) -> Vec<Dispatch> {
        let params = Self::params(ctx, shape, n, v.pair_stride, running);
        let p = View::whole(&params);
        vec![
            self.statistics.dispatch(
                ctx,
                &[p, x, v.stats, v.running],
                [shape.channels as u32, 1, 1],
            ),
            self.normalize.dispatch(
                ctx,
                &[p, x, v.stats, v.running, v.affine, y],
                grid_1d(n * shape.len()),
            ),
        ]
    }

    /// The scale and shift gradients into `daffine` (a pair view of the gradient buffer) and,
    /// when `dx` is given, the input gradient, from the statistics of the forward (`running`
    /// as it was there: `Read` for a frozen layer).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &GpuContext,
        shape: Shape,
        n: usize,
        running: RunningStats,
        v: BatchNormViews,
        (x, dy): (View, View),
        daffine: View,
        dx: Option<View>,
    ) -> Vec<Dispatch> {
        let params = Self::params(ctx, shape, n, v.pair_stride, running);
        let p = View::whole(&params);
        // The sums bind `out` without touching it: without dx, the (writable) statistics
        // buffer stands in, since a buffer may not be both read-only and writable in a dispatch.
        let out = dx.unwrap_or(v.stats);
        let bindings = [p, x, v.stats, v.running, v.affine, out, dy, daffine];
        let mut dispatches =
            vec![self
                .backward_sums
                .dispatch(ctx, &bindings, [shape.channels as u32, 1, 1])];
        if dx.is_some() {
            dispatches.push(
                self.backward_input
                    .dispatch(ctx, &bindings, grid_1d(n * shape.len())),
            );
        }
        dispatches
    }
}

/// Training forward, backward and inference forward against the CPU: batch 1, 7 and 33, odd
/// planes, and flat features (batch norm after a dense layer).
pub fn checks() -> Vec<CrossCheck> {
    let cases = [
        (1, Shape::new(3, 5, 7)),
        (7, Shape::new(32, 13, 13)),
        (33, Shape::new(10, 1, 1)),
        (2, Shape::new(65, 11, 3)),
    ];
    cases
        .into_iter()
        .map(|(n, shape)| {
            let name = format!("n {n}, {}x{}x{}", shape.channels, shape.height, shape.width);
            CrossCheck::new("batchnorm_forward+backward+inference", name, move |ctx| {
                check_batchnorm(ctx, n, shape)
            })
        })
        .collect()
}

fn check_batchnorm(ctx: &GpuContext, n: usize, shape: Shape) -> Result<Comparison> {
    let c = shape.channels;
    let len = n * shape.len();
    let seed = (len + c) as u64;
    // An offset and a spread per run, so that the statistics are not trivially 0 and 1.
    let x = random_vec(len, seed, -2.0, 3.0);
    let dy = random_vec(len, seed + 1, -1.0, 1.0);
    let gamma = random_vec(c, seed + 2, 0.5, 1.5);
    let beta = random_vec(c, seed + 3, -0.5, 0.5);
    let running_mean = random_vec(c, seed + 4, -0.2, 0.2);
    let running_var = random_vec(c, seed + 5, 0.5, 2.0);
    let p = ParamBuffers::new(ctx, &[c, c, c, c])?;
    for (i, data) in [&gamma, &beta, &running_mean, &running_var]
        .into_iter()
        .enumerate()
    {
        ctx.queue
            .write_buffer(&p.params, p.ranges[i].0, bytemuck::cast_slice(data));
    }
    let (x_buf, dy_buf) = (storage_init(ctx, "x", &x)?, storage_init(ctx, "dy", &dy)?);
    let (y_buf, dx_buf, y2_buf) = (
        storage(ctx, "y", 4 * len as u64)?,
        storage(ctx, "dx", 4 * len as u64)?,
        storage(ctx, "y inference", 4 * len as u64)?,
    );
    let stats_buf = storage(ctx, "batchnorm stats", stats_bytes(c))?;
    let inference_stats = storage(ctx, "batchnorm inference stats", stats_bytes(c))?;
    let (affine, pair_stride) = p.pair_view(&p.params, 0);
    let views = BatchNormViews {
        pair_stride,
        affine,
        running: p.pair_view(&p.params, 2).0,
        stats: View::whole(&stats_buf),
    };
    let daffine = p.pair_view(&p.grads, 0).0;
    let kernels = BatchNormKernels::new(ctx);
    let mut dispatches = kernels.forward(
        ctx,
        shape,
        n,
        RunningStats::Update,
        views,
        (&x_buf).into(),
        (&y_buf).into(),
    );
    dispatches.extend(kernels.backward(
        ctx,
        shape,
        n,
        RunningStats::Update,
        views,
        ((&x_buf).into(), (&dy_buf).into()),
        daffine,
        Some((&dx_buf).into()),
    ));
    let inference = BatchNormViews {
        stats: View::whole(&inference_stats),
        ..views
    };
    dispatches.extend(kernels.forward(
        ctx,
        shape,
        n,
        RunningStats::Read,
        inference,
        (&x_buf).into(),
        (&y2_buf).into(),
    ));
    run(ctx, &dispatches.iter().collect::<Vec<_>>());

    let (mut y, mut dx, mut y2) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
    let mut stats: BatchNormStats<f32> =
        batchnorm_forward_training(shape, &x, (&gamma, &beta), &mut y);
    batchnorm_backward(shape, &x, &dy, &gamma, &mut stats, &mut dx);
    let (mut cpu_mean, mut cpu_var) = (running_mean.clone(), running_var.clone());
    stats.update_running(&mut cpu_mean, &mut cpu_var);
    batchnorm_forward_inference(shape, &x, (&cpu_mean, &cpu_var), (&gamma, &beta), &mut y2);

    let read =
        |buffer: &wgpu::Buffer, at: u64, len: usize| read_buffer::<f32>(ctx, buffer, at, len);
    let gpu_stats = read(&stats_buf, 0, 3 * c)?;
    let cpu_stats: Vec<f32> = [&stats.mean, &stats.var, &stats.inv_std]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut result = compare(&read(&y_buf, 0, len)?, &y)
        .merge(compare(&gpu_stats, &cpu_stats))
        .merge(compare(&read(&dx_buf, 0, len)?, &dx))
        .merge(compare(&read(&y2_buf, 0, len)?, &y2));
    let tensors = [
        (&p.grads, 0, &stats.dgamma),
        (&p.grads, 1, &stats.dbeta),
        (&p.params, 2, &cpu_mean),
        (&p.params, 3, &cpu_var),
    ];
    for (buffer, i, expected) in tensors {
        result = result.merge(compare(&read(buffer, p.ranges[i].0, c)?, expected));
    }
    Ok(result)
}
