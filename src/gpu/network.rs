//! A [`Plan`] compiled for the GPU at one batch size: every activation and gradient buffer, and
//! every dispatch of a training step (gather, forward, loss, backward, update) or of inference,
//! built once and recorded as often as needed.
//!
//! Convolutions followed by ReLU run as one fused kernel; the ReLU step then shares the
//! convolution's output buffer. Followed by ReLU and max pooling, they run as one op, which the
//! register-blocked variant fuses into one kernel. Flatten, and dropout at inference, share their input's buffers:
//! they move no data.

use anyhow::Result;

use super::activation::ActivationKernels;
use super::augment::AugmentKernels;
use super::autotune::Autotuner;
use super::batchnorm::{stats_bytes, BatchNormKernels, BatchNormViews, RunningStats};
use super::buffer::{storage, ParamBuffers, View};
use super::context::GpuContext;
use super::conv2d::kernels::Conv2dKernels;
use super::conv2d::Conv2dPass;
use super::dense::kernels::DenseKernels;
use super::dropout::{DropoutKernels, DropoutLayer};
use super::gather::GatherKernels;
use super::kernel::{Cost, Dispatch};
use super::optim::OptimKernels;
use super::pool2d::Pool2dKernels;
use super::softmax_xent::SoftmaxXentKernels;
use super::variant::Variant;
use crate::config::{Augment, Optimizer};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::cpu::dense::DenseGeometry;
use crate::data::IMAGE_PIXELS;
use crate::model::{Activation, Layer, Plan, Pool, Step};

/// Every kernel, compiled once per device: the context keeps them (`GpuContext::built_once`) for
/// every backend built on it, a search's trials one after another.
pub struct Kernels {
    pub gather: GatherKernels,
    pub augment: AugmentKernels,
    pub conv2d: Conv2dKernels,
    pub activation: ActivationKernels,
    pub pool2d: Pool2dKernels,
    pub dropout: DropoutKernels,
    pub batchnorm: BatchNormKernels,
    pub dense: DenseKernels,
    pub softmax_xent: SoftmaxXentKernels,
    pub optim: OptimKernels,
}

impl Kernels {
    pub fn new(ctx: &GpuContext) -> Kernels {
        Kernels {
            gather: GatherKernels::new(ctx),
            augment: AugmentKernels::new(ctx),
            conv2d: Conv2dKernels::new(ctx),
            activation: ActivationKernels::new(ctx),
            pool2d: Pool2dKernels::new(ctx),
            dropout: DropoutKernels::new(ctx),
            batchnorm: BatchNormKernels::new(ctx),
            dense: DenseKernels::new(ctx),
            softmax_xent: SoftmaxXentKernels::new(ctx),
            optim: OptimKernels::new(ctx),
        }
    }
}

/// Buffers shared by every compiled batch size.
pub struct Shared<'a> {
    pub kernels: &'a Kernels,
    pub params: &'a ParamBuffers,
    /// Packed training images and labels (`gather::pack_bytes`).
    pub images: View<'a>,
    pub labels: View<'a>,
    /// The optimiser's per-step uniform and the 16-byte stats record.
    pub optim_step: &'a wgpu::Buffer,
    /// The per-step [`super::kernel::StepKey`] uniform of stochastic kernels.
    pub step_key: &'a wgpu::Buffer,
    pub stats: View<'a>,
    pub optimizer: Optimizer,
    /// Per parameter tensor: frozen, so the optimiser skips it and, for batch norm's running
    /// statistics, the statistics kernel leaves them be.
    pub frozen: &'a [bool],
    /// Masked training: one u32 per parameter, laid out as the parameters (0: pruned), which
    /// selects the optimiser's masked entry points.
    pub keep: Option<&'a wgpu::Buffer>,
    /// Training networks warp each gathered batch with these ranges; inference never does.
    pub augment: Option<Augment>,
}

/// One batch size of a plan, ready to record.
pub struct CompiledNet {
    pub n: usize,
    /// The batch's example indices, written before each step.
    pub indices: wgpu::Buffer,
    /// `n x 10` logits.
    pub logits: wgpu::Buffer,
    pub dispatches: Vec<Dispatch>,
    /// Inference only: the raw images the gather reads (packed bytes), rewritten per call.
    pub upload: Option<wgpu::Buffer>,
    _buffers: Vec<wgpu::Buffer>,
}

/// Buffer ids (into `pool`) of each step's output and of the gradient at that output.
struct Layout {
    pool: Vec<wgpu::Buffer>,
    input: usize,
    output: Vec<usize>,
    grad: Vec<usize>,
    argmax: Vec<Option<usize>>,
    /// Each batch-norm step's statistics buffer.
    stats: Vec<Option<usize>>,
}

impl Layout {
    fn new(ctx: &GpuContext, plan: &Plan, n: usize, with_grads: bool) -> Result<Layout> {
        let mut pool = vec![storage(ctx, "input batch", (4 * n * IMAGE_PIXELS) as u64)?];
        let (mut output, mut grad) = (Vec::new(), Vec::new());
        let (mut argmax, mut stats) = (Vec::new(), Vec::new());
        let bytes = |step: &Step| (4 * n * step.output.len()) as u64;
        for (i, step) in plan.steps.iter().enumerate() {
            let previous = if i == 0 { 0 } else { output[i - 1] };
            let moves_no_data = match step.layer {
                Layer::Flatten => true,
                Layer::Dropout { .. } => !with_grads,
                _ => relu_fused_into_conv(plan, i),
            };
            let shares_output = moves_no_data;
            if shares_output {
                output.push(previous);
            } else {
                pool.push(storage(ctx, "activation", bytes(step))?);
                output.push(pool.len() - 1);
            }
            if with_grads {
                // Flatten passes its gradient straight through: the step before it writes its
                // input gradient into the buffer flatten receives (resolved below).
                if plan
                    .steps
                    .get(i + 1)
                    .is_some_and(|s| s.layer == Layer::Flatten)
                {
                    grad.push(usize::MAX);
                } else if relu_backward_in_pool(plan, i) {
                    // The pooling's backward writes the gradient at the ReLU's input directly.
                    grad.push(grad[i - 1]);
                } else {
                    pool.push(storage(ctx, "gradient", bytes(step))?);
                    grad.push(pool.len() - 1);
                }
            }
            argmax.push(if step.layer == Layer::Pool2d(Pool::Max) {
                pool.push(storage(ctx, "argmax", bytes(step))?);
                Some(pool.len() - 1)
            } else {
                None
            });
            stats.push(if step.layer == Layer::BatchNorm {
                let bytes = stats_bytes(step.input.channels);
                pool.push(storage(ctx, "batchnorm statistics", bytes)?);
                Some(pool.len() - 1)
            } else {
                None
            });
        }
        for i in (0..grad.len()).rev() {
            if grad[i] == usize::MAX {
                grad[i] = grad[i + 1];
            }
        }
        Ok(Layout {
            pool,
            input: 0,
            output,
            grad,
            argmax,
            stats,
        })
    }

    fn buf(&self, id: usize) -> View<'_> {
        View::whole(&self.pool[id])
    }

    /// The input activation of step `i`.
    fn input_of(&self, i: usize) -> View<'_> {
        self.buf(if i == 0 {
            self.input
        } else {
            self.output[i - 1]
        })
    }
}

/// The backward of a ReLU (step `i`) right before max pooling runs inside the pooling's
/// backward, which masks the winners' gradients by the pooled ReLU outputs. (The first step
/// has no input gradient to fold.)
fn relu_backward_in_pool(plan: &Plan, i: usize) -> bool {
    plan.steps[i].layer == Layer::Activation(Activation::Relu)
        && i > 0
        && plan
            .steps
            .get(i + 1)
            .is_some_and(|s| s.layer == Layer::Pool2d(Pool::Max))
}

/// Max pooling (step `i`) right after a convolution and its ReLU runs with them as one op,
/// which the register-blocked variant fuses into one kernel that never stores the
/// convolution's output (the pooling's backward needs only the pooled output and the argmax).
fn maxpool_fused_into_conv(plan: &Plan, i: usize) -> bool {
    i >= 2
        && plan
            .steps
            .get(i)
            .is_some_and(|s| s.layer == Layer::Pool2d(Pool::Max))
        && relu_fused_into_conv(plan, i - 1)
}

/// The backward of that max pooling and ReLU (see `maxpool_fused_into_conv`) after the first
/// convolution (step `i`, which needs no input gradient) runs with its weight gradient as one
/// op, which the register-blocked variant fuses into one kernel that never forms the gradient
/// at the convolution's output.
fn maxpool_backward_fused_into_conv(plan: &Plan, i: usize) -> bool {
    i == 0 && maxpool_fused_into_conv(plan, i + 2)
}

/// A ReLU right after a convolution runs inside the convolution's kernel.
fn relu_fused_into_conv(plan: &Plan, i: usize) -> bool {
    plan.steps[i].layer == Layer::Activation(Activation::Relu)
        && i > 0
        && matches!(plan.steps[i - 1].layer, Layer::Conv2d { .. })
}

impl CompiledNet {
    /// Gather + forward (+ loss, backward and update when `train`) for batches of `n`.
    /// `tuner` picks the variant of each op that has several.
    pub fn new(
        ctx: &GpuContext,
        plan: &Plan,
        shared: &Shared,
        tuner: &mut Autotuner,
        (n, train): (usize, bool),
    ) -> Result<CompiledNet> {
        let k = shared.kernels;
        let layout = Layout::new(ctx, plan, n, train)?;
        let indices = storage(ctx, "batch indices", 4 * n as u64)?;
        let labels = storage(ctx, "batch labels", 4 * n as u64)?;
        // With augmentation, the gather fills a raw batch that the augment kernel warps into
        // the input (it cannot work in place).
        let augment = shared.augment.filter(|_| train);
        let raw = match augment {
            Some(_) => Some(storage(ctx, "raw batch", (4 * n * IMAGE_PIXELS) as u64)?),
            None => None,
        };
        let mut dispatches = vec![k.gather.gather(
            ctx,
            n,
            shared.images,
            shared.labels,
            View::whole(&indices),
            raw.as_ref().map_or(layout.buf(layout.input), View::whole),
            View::whole(&labels),
        )];
        let p = shared.params;
        dispatches[0].cost = StepCost::gather(n).elementwise();
        if let (Some(augment), Some(raw)) = (&augment, &raw) {
            let (src, dst) = (View::whole(raw), layout.buf(layout.input));
            dispatches.push(
                k.augment
                    .augment(ctx, augment, n, shared.step_key, src, dst),
            );
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let (x, y) = (layout.input_of(i), layout.buf(layout.output[i]));
            let first = dispatches.len();
            match step.layer {
                Layer::Conv2d { .. } if maxpool_fused_into_conv(plan, i + 2) => {
                    let w = step.weight_index.expect("conv has parameters");
                    let (wv, bv) = (p.view(&p.params, w), p.view(&p.params, w + 1));
                    let g = Conv2dGeometry::of(step);
                    let (pooled, argmax) = (
                        layout.buf(layout.output[i + 2]),
                        layout.buf(layout.argmax[i + 2].expect("max pooling has an argmax")),
                    );
                    let op = (
                        "conv2d_forward+relu+maxpool",
                        Conv2dPass::ForwardReluMaxpool,
                    );
                    dispatches.extend(tune_conv(ctx, (tuner, &k.conv2d), op, g, n, |v| {
                        let views = ([x, wv, bv], [pooled, argmax]);
                        k.conv2d
                            .forward_relu_maxpool(ctx, v, (g, n), views.0, views.1)
                            .unwrap_or_else(|| {
                                let mut apart =
                                    k.conv2d.forward(ctx, v, (g, n), true, [x, wv, bv, y]);
                                let s = g.output();
                                apart.push(k.pool2d.forward(
                                    ctx,
                                    Pool::Max,
                                    s,
                                    n,
                                    y,
                                    pooled,
                                    argmax,
                                ));
                                apart
                            })
                    })?);
                }
                Layer::Pool2d(_) if maxpool_fused_into_conv(plan, i) => {}
                Layer::Conv2d { .. } => {
                    let w = step.weight_index.expect("conv has parameters");
                    let relu = i + 1 < plan.steps.len() && relu_fused_into_conv(plan, i + 1);
                    let (wv, bv) = (p.view(&p.params, w), p.view(&p.params, w + 1));
                    let g = Conv2dGeometry::of(step);
                    let op = if relu {
                        "conv2d_forward+relu"
                    } else {
                        "conv2d_forward"
                    };
                    let op = (op, Conv2dPass::Forward);
                    dispatches.extend(tune_conv(ctx, (tuner, &k.conv2d), op, g, n, |v| {
                        k.conv2d.forward(ctx, v, (g, n), relu, [x, wv, bv, y])
                    })?);
                }
                Layer::Dense { .. } => {
                    let w = step.weight_index.expect("dense has parameters");
                    let (wv, bv) = (p.view(&p.params, w), p.view(&p.params, w + 1));
                    let g = DenseGeometry::of(step);
                    dispatches.extend(tune_dense(
                        ctx,
                        (tuner, &k.dense),
                        "dense_forward",
                        g,
                        n,
                        |v| vec![k.dense.forward(ctx, v, (g, n), [x, wv, bv, y])],
                    )?);
                }
                Layer::Activation(a) if !relu_fused_into_conv(plan, i) => {
                    let len = n * step.output.len();
                    dispatches.push(k.activation.forward(ctx, a, len, x, y));
                }
                Layer::Pool2d(pool) => {
                    // Average pooling has no winners; its (unused) argmax binding takes y.
                    let argmax = layout.argmax[i].map_or(y, |id| layout.buf(id));
                    dispatches.push(k.pool2d.forward(ctx, pool, step.input, n, x, y, argmax));
                }
                Layer::Dropout { rate } if train => {
                    let layer = dropout_layer(step, i, rate);
                    dispatches.push(k.dropout.apply(ctx, layer, n, shared.step_key, x, y));
                }
                Layer::BatchNorm => {
                    let views = batchnorm_views(p, &layout, step, i);
                    let (s, n) = (step.input, n);
                    let running = match train {
                        true => RunningStats::from_frozen(shared.frozen, step),
                        false => RunningStats::Read,
                    };
                    dispatches.extend(k.batchnorm.forward(ctx, s, n, running, views, x, y));
                }
                Layer::Activation(_) | Layer::Dropout { .. } | Layer::Flatten => {}
            }
            let cost = StepCost::new(step, n, "forward");
            for d in &mut dispatches[first..] {
                d.cost = if cost.macs > 0 && multiplies(d.kernel) {
                    cost.matmul()
                } else {
                    cost.elementwise()
                };
            }
        }
        let last = plan.steps.len() - 1;
        let logits_id = layout.output[last];
        let mut buffers: Vec<wgpu::Buffer> = raw.into_iter().collect();
        if train {
            let losses = storage(ctx, "per-example loss", 4 * n as u64)?;
            let correct = storage(ctx, "per-example correct", 4 * n as u64)?;
            let (logits, dlogits) = (layout.buf(logits_id), layout.buf(layout.grad[last]));
            let sx = &k.softmax_xent;
            let classes = plan.classes();
            let (lv, cv) = (View::whole(&losses), View::whole(&correct));
            dispatches.push(sx.forward_backward(
                ctx,
                classes,
                n,
                logits,
                View::whole(&labels),
                dlogits,
                lv,
                cv,
            ));
            dispatches.push(sx.accumulate(ctx, n, lv, cv, shared.stats));
            let loss_cost = Cost {
                shape: format!("n {n}, {classes} classes"),
                flops: 0,
                bytes: (4 * n * (2 * classes + 3)) as u64,
            };
            let at = dispatches.len() - 2;
            dispatches[at..]
                .iter_mut()
                .for_each(|d| d.cost = loss_cost.clone());
            backward(ctx, plan, shared, tuner, &layout, n, &mut dispatches)?;
            // Running statistics come after every trainable tensor, where the optimiser
            // stops; it skips frozen tensors too: one update per run of tensors that train.
            let trains = |t: usize| plan.params[t].trainable && !shared.frozen[t];
            let mut t = 0;
            while t < plan.params.len() {
                if !trains(t) {
                    t += 1;
                    continue;
                }
                let first = t;
                while t < plan.params.len() && trains(t) {
                    t += 1;
                }
                let offset = p.ranges[first].0;
                let (last_offset, last_len) = p.ranges[t - 1];
                let size = last_offset + 4 * last_len as u64 - offset;
                let len = (size / 4) as usize;
                let view = |buffer| View {
                    buffer,
                    offset,
                    size,
                };
                dispatches.push(k.optim.update(
                    ctx,
                    shared.optimizer,
                    len,
                    shared.optim_step,
                    view(&p.params),
                    view(&p.grads),
                    view(&p.m),
                    view(&p.v),
                    shared.stats,
                    shared.keep.map(view),
                ));
                // Reads params, grads and moments and writes three of them back.
                let optim_cost = Cost {
                    shape: format!("{len} parameters"),
                    flops: 0,
                    bytes: (4 * len * 7) as u64,
                };
                dispatches.last_mut().expect("just pushed").cost = optim_cost;
            }
            buffers.extend([losses, correct]);
        }
        buffers.push(labels);
        let mut pool = layout.pool;
        let logits = pool.swap_remove(logits_id);
        buffers.extend(pool);
        Ok(CompiledNet {
            n,
            indices,
            logits,
            dispatches,
            upload: None,
            _buffers: buffers,
        })
    }
}

/// Backward dispatches, last layer first. The first layer's input gradient is never needed.
fn backward(
    ctx: &GpuContext,
    plan: &Plan,
    shared: &Shared,
    tuner: &mut Autotuner,
    layout: &Layout,
    n: usize,
    out: &mut Vec<Dispatch>,
) -> Result<()> {
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let first = out.len();
        backward_step(ctx, plan, (shared, tuner), layout, (n, i), out)?;
        let cost = StepCost::new(step, n, "backward");
        for d in &mut out[first..] {
            d.cost = if cost.macs > 0 && multiplies(d.kernel) {
                cost.matmul()
            } else {
                cost.elementwise()
            };
        }
    }
    Ok(())
}

/// Whether a layer's dispatch does its multiply-adds: bias gradients, partial-sum reductions
/// and weight packing count their traffic only.
fn multiplies(kernel: &str) -> bool {
    !["backward_bias", "reduce", "_pack_", "pool2d"]
        .iter()
        .any(|part| kernel.contains(part))
}

/// The dispatches of a dense pass `op` in the variant `tuner` picks among those that `dense`
/// offers.
fn tune_dense(
    ctx: &GpuContext,
    (tuner, dense): (&mut Autotuner, &DenseKernels),
    op: &str,
    g: DenseGeometry,
    n: usize,
    build: impl Fn(Variant) -> Vec<Dispatch>,
) -> Result<Vec<Dispatch>> {
    let shape = format!("n {n}, {} -> {}", g.inputs, g.outputs);
    let offer = dense.offer(&ctx.info);
    tuner.choose(ctx, (op, &shape), &offer, build)
}

/// The dispatches of a conv2d pass `op` in the variant `tuner` picks among those that `conv`
/// offers for the pass.
fn tune_conv(
    ctx: &GpuContext,
    (tuner, conv): (&mut Autotuner, &Conv2dKernels),
    (op, pass): (&str, Conv2dPass),
    g: Conv2dGeometry,
    n: usize,
    build: impl Fn(Variant) -> Vec<Dispatch>,
) -> Result<Vec<Dispatch>> {
    let i = g.input;
    let mut shape = format!(
        "n {n}, {}x{}x{} -> {} k{}",
        i.channels, i.height, i.width, g.out_channels, g.kernel
    );
    if !g.is_dense() {
        shape += &format!(" s{} p{}", g.stride, g.pad);
    }
    let offer = conv.offer(&ctx.info, pass, g);
    tuner.choose(ctx, (op, &shape), &offer, build)
}

/// The backward dispatches of step `i`.
fn backward_step(
    ctx: &GpuContext,
    plan: &Plan,
    (shared, tuner): (&Shared, &mut Autotuner),
    layout: &Layout,
    (n, i): (usize, usize),
    out: &mut Vec<Dispatch>,
) -> Result<()> {
    let (k, p) = (shared.kernels, shared.params);
    let step = &plan.steps[i];
    {
        let dy = layout.buf(layout.grad[i]);
        let dx = (i > 0).then(|| layout.buf(layout.grad[i - 1]));
        let x = layout.input_of(i);
        match step.layer {
            Layer::Conv2d { .. } if maxpool_backward_fused_into_conv(plan, i) => {
                let w = step.weight_index.expect("conv has parameters");
                let (dw, db) = (p.view(&p.grads, w), p.view(&p.grads, w + 1));
                let g = Conv2dGeometry::of(step);
                let pool = i + 2;
                let pooling = [
                    layout.buf(layout.grad[pool]),
                    layout.buf(layout.output[pool]),
                    layout.buf(layout.argmax[pool].expect("max pooling has an argmax")),
                ];
                let op = (
                    "conv2d_backward_weights+maxpool",
                    Conv2dPass::BackwardWeightsMaxpool,
                );
                out.extend(tune_conv(ctx, (tuner, &k.conv2d), op, g, n, |v| {
                    let grads = [dw, db];
                    let fused = k
                        .conv2d
                        .backward_weights_pooled(ctx, v, (g, n), x, pooling, grads);
                    fused.unwrap_or_else(|| {
                        let [dpooled, pooled, argmax] = pooling;
                        let s = g.output();
                        let relu = (dpooled, argmax, Some(pooled));
                        let mut apart = vec![k.pool2d.backward(ctx, Pool::Max, s, n, relu, dy)];
                        apart.extend(k.conv2d.backward_weights(ctx, v, (g, n), [x, dy], [dw, db]));
                        apart
                    })
                })?);
            }
            Layer::Pool2d(_) if i >= 2 && maxpool_backward_fused_into_conv(plan, i - 2) => {}
            Layer::Conv2d { .. } => {
                let w = step.weight_index.expect("conv has parameters");
                let (dw, db) = (p.view(&p.grads, w), p.view(&p.grads, w + 1));
                let g = Conv2dGeometry::of(step);
                let op = ("conv2d_backward_weights", Conv2dPass::BackwardWeights);
                out.extend(tune_conv(ctx, (tuner, &k.conv2d), op, g, n, |v| {
                    k.conv2d.backward_weights(ctx, v, (g, n), [x, dy], [dw, db])
                })?);
                if let Some(dx) = dx {
                    let wv = p.view(&p.params, w);
                    let op = ("conv2d_backward_input", Conv2dPass::BackwardInput);
                    out.extend(tune_conv(ctx, (tuner, &k.conv2d), op, g, n, |v| {
                        k.conv2d.backward_input(ctx, v, (g, n), [dy, wv, dx])
                    })?);
                }
            }
            Layer::Dense { .. } => {
                let w = step.weight_index.expect("dense has parameters");
                let (dw, db) = (p.view(&p.grads, w), p.view(&p.grads, w + 1));
                let g = DenseGeometry::of(step);
                out.extend(tune_dense(
                    ctx,
                    (tuner, &k.dense),
                    "dense_backward_weights",
                    g,
                    n,
                    |v| k.dense.backward_weights(ctx, v, (g, n), [x, dy], [dw, db]),
                )?);
                if let Some(dx) = dx {
                    let wv = p.view(&p.params, w);
                    out.extend(tune_dense(
                        ctx,
                        (tuner, &k.dense),
                        "dense_backward_input",
                        g,
                        n,
                        |v| vec![k.dense.backward_input(ctx, v, (g, n), [dy, wv, dx])],
                    )?);
                }
            }
            Layer::BatchNorm => {
                let views = batchnorm_views(p, layout, step, i);
                let w = step.weight_index.expect("batch norm has parameters");
                let daffine = p.pair_view(&p.grads, w).0;
                let s = step.input;
                let running = RunningStats::from_frozen(shared.frozen, step);
                let bn = &k.batchnorm;
                out.extend(bn.backward(ctx, s, n, running, views, (x, dy), daffine, dx));
            }
            _ if dx.is_none() => {}
            Layer::Activation(_) if relu_backward_in_pool(plan, i) => {}
            Layer::Activation(a) => {
                let y = layout.buf(layout.output[i]);
                let len = n * step.output.len();
                out.extend(dx.map(|dx| k.activation.backward(ctx, a, len, y, dy, dx)));
            }
            Layer::Pool2d(pool) => {
                let s = step.input;
                let relu_before = (i > 0 && relu_backward_in_pool(plan, i - 1))
                    .then(|| layout.buf(layout.output[i]));
                out.extend(dx.map(|dx| {
                    // Average pooling has no winners; its (unused) argmax binding takes dx.
                    let argmax = layout.argmax[i].map_or(dx, |id| layout.buf(id));
                    k.pool2d
                        .backward(ctx, pool, s, n, (dy, argmax, relu_before), dx)
                }));
            }
            Layer::Dropout { rate } => {
                let layer = dropout_layer(step, i, rate);
                let key = shared.step_key;
                out.extend(dx.map(|dx| k.dropout.apply(ctx, layer, n, key, dy, dx)));
            }
            Layer::Flatten => {}
        }
    }
    Ok(())
}

fn dropout_layer(step: &Step, i: usize, rate: f32) -> DropoutLayer {
    DropoutLayer {
        rate,
        layer: i,
        image_len: step.input.len(),
    }
}

/// Batch-norm step `i`'s parameter pairs and statistics buffer.
fn batchnorm_views<'a>(
    p: &'a ParamBuffers,
    layout: &'a Layout,
    step: &Step,
    i: usize,
) -> BatchNormViews<'a> {
    let w = step.weight_index.expect("batch norm has parameters");
    let s = step.stats_index.expect("batch norm has running statistics");
    let (affine, pair_stride) = p.pair_view(&p.params, w);
    let (running, running_stride) = p.pair_view(&p.params, s);
    assert_eq!(
        pair_stride, running_stride,
        "per-channel tensors align alike"
    );
    BatchNormViews {
        pair_stride,
        affine,
        running,
        stats: layout.buf(layout.stats[i].expect("batch norm has statistics")),
    }
}

/// What one layer's pass costs, for the profiler's GFLOP/s and GB/s (4-byte elements).
struct StepCost {
    shape: String,
    macs: usize,
    elements: usize,
}

impl StepCost {
    fn new(step: &Step, n: usize, pass: &str) -> StepCost {
        let (i, o) = (step.input, step.output);
        let (weights, macs) = match step.layer {
            Layer::Conv2d { kernel, .. } => (
                o.channels * i.channels * kernel * kernel,
                o.len() * i.channels * kernel * kernel,
            ),
            Layer::Dense { .. } => (o.len() * i.len(), o.len() * i.len()),
            _ => (0, 0),
        };
        StepCost {
            shape: format!(
                "{} {pass}, n {n}, {}x{}x{} -> {}x{}x{}",
                step.layer, i.channels, i.height, i.width, o.channels, o.height, o.width
            ),
            macs: n * macs,
            elements: n * (i.len() + o.len()) + weights,
        }
    }

    fn gather(n: usize) -> StepCost {
        // Bytes in, floats out: count the pixels as 5/4 of a float each.
        StepCost {
            shape: format!("batch of {n}"),
            macs: 0,
            elements: n * IMAGE_PIXELS * 5 / 4,
        }
    }

    fn matmul(&self) -> Cost {
        Cost {
            shape: self.shape.clone(),
            flops: 2 * self.macs as u64,
            bytes: 4 * self.elements as u64,
        }
    }

    fn elementwise(&self) -> Cost {
        Cost {
            shape: self.shape.clone(),
            flops: 0,
            bytes: 4 * self.elements as u64,
        }
    }
}
