//! Parameter updates on the GPU (`shaders/optim.wgsl`), twin of `cpu/optim.rs`: Adam (with L2
//! or decoupled weight decay) and SGD with momentum (plain or Nesterov, with L2), each also
//! masked (pruned weights kept at exactly zero) by entry points of their own, so that the
//! unmasked kernels stay as they were. The per-step hyperparameters live in a small uniform
//! that the host rewrites each step, so pipelines and bind groups are built once.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel, Resource};
use crate::config::Optimizer;
use crate::cpu::optim::{
    adam_step_size, masked_optimizer_update, optimizer_update, OptimState, WeightDecay,
};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/optim.wgsl");

/// Word of the 16-byte stats record that flags a non-finite gradient.
const STATS_NONFINITE: usize = 3;

/// The hyperparameters of one update step, as the shaders read them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct OptimStep {
    pub alpha: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub l2: f32,
    pub decoupled: f32,
    pub nesterov: u32,
    _pad: u32,
}

impl OptimStep {
    /// Adam: alpha = adam_step_size(lr, beta1, beta2, step) (computed on the host), beta1, beta2, epsilon.
    /// SGD: alpha = lr, beta1 = momentum, others 0. Both: the weight decay factors of
    /// [`WeightDecay`]. `step` counts from 1.
    pub fn new(opt: Optimizer, step: u32) -> OptimStep {
        let decay = WeightDecay::of(opt);
        let base = OptimStep {
            l2: decay.l2,
            decoupled: decay.decoupled,
            ..Zeroable::zeroed()
        };
        match opt {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                ..
            } => OptimStep {
                alpha: adam_step_size(lr, beta1, beta2, step),
                beta1,
                beta2,
                epsilon,
                ..base
            },
            Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
                ..
            } => OptimStep {
                alpha: lr,
                beta1: momentum,
                nesterov: u32::from(nesterov),
                ..base
            },
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct OptimSize {
    len: u32,
    _pad: [u32; 3],
}

const ADAM_ENTRY: &str = "adam_update";
const SGD_ENTRY: &str = "sgd_momentum_update";
const ADAM_MASKED_ENTRY: &str = "adam_update_masked";
const SGD_MASKED_ENTRY: &str = "sgd_momentum_update_masked";
/// The binding of the masked entry points' keep flags.
const KEEP_BINDING: u32 = 7;

/// The shader entry point that applies `opt`, masked or not.
fn entry_point(opt: Optimizer, masked: bool) -> &'static str {
    match (opt, masked) {
        (Optimizer::Adam { .. }, false) => ADAM_ENTRY,
        (Optimizer::Sgd { .. }, false) => SGD_ENTRY,
        (Optimizer::Adam { .. }, true) => ADAM_MASKED_ENTRY,
        (Optimizer::Sgd { .. }, true) => SGD_MASKED_ENTRY,
    }
}

pub struct OptimKernels {
    adam: Kernel,
    sgd: Kernel,
    adam_masked: Kernel,
    sgd_masked: Kernel,
}

impl OptimKernels {
    pub fn new(ctx: &GpuContext) -> OptimKernels {
        let module = compile(ctx, "optim.wgsl", SOURCE);
        use Access::*;
        // step, size, params, grads, m, stats, then v (Adam only).
        let bindings = [
            Uniform, Uniform, ReadWrite, Read, ReadWrite, ReadWrite, ReadWrite,
        ];
        let numbered = |n: usize| -> Vec<(u32, Access)> {
            let first = (0..).zip(bindings[..n].iter().copied());
            first.chain([(KEEP_BINDING, Read)]).collect()
        };
        OptimKernels {
            adam: Kernel::new(ctx, &module, ADAM_ENTRY, &bindings),
            sgd: Kernel::new(ctx, &module, SGD_ENTRY, &bindings[..6]),
            adam_masked: Kernel::numbered(ctx, &module, ADAM_MASKED_ENTRY, &numbered(7)),
            sgd_masked: Kernel::numbered(ctx, &module, SGD_MASKED_ENTRY, &numbered(6)),
        }
    }

    /// One update of `len` parameters. `step` is a uniform buffer holding an OptimStep; `m` is
    /// Adam's first moment or SGD's velocity, `v` Adam's second moment (unused by SGD);
    /// `stats` is the 16-byte record [loss_sum f32, correct u32, examples u32, nonfinite u32]
    /// whose word 3 the kernel sets to 1 when a gradient is not finite. `keep`, one u32 per
    /// parameter (0: pruned), selects the masked entry point; `None` the unmasked one.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        ctx: &GpuContext,
        opt: Optimizer,
        len: usize,
        step: &wgpu::Buffer,
        params: View,
        grads: View,
        m: View,
        v: View,
        stats: View,
        keep: Option<View>,
    ) -> Dispatch {
        let size = uniform(
            ctx,
            "optim size",
            &OptimSize {
                len: len as u32,
                _pad: [0; 3],
            },
        );
        let common = [
            View::whole(step),
            View::whole(&size),
            params,
            grads,
            m,
            stats,
        ];
        if let Some(keep) = keep {
            let (kernel, moments) = match opt {
                Optimizer::Adam { .. } => (&self.adam_masked, &[v][..]),
                Optimizer::Sgd { .. } => (&self.sgd_masked, &[][..]),
            };
            let views = (common.iter().chain(moments)).map(|&view| Resource::Buffer(view));
            let numbered: Vec<(u32, Resource)> = (0..)
                .zip(views)
                .chain([(KEEP_BINDING, Resource::Buffer(keep))])
                .collect();
            return kernel.dispatch_numbered(ctx, &numbered, grid_1d(len));
        }
        match opt {
            Optimizer::Adam { .. } => {
                self.adam
                    .dispatch(ctx, &[&common[..], &[v]].concat(), grid_1d(len))
            }
            Optimizer::Sgd { .. } => self.sgd.dispatch(ctx, &common, grid_1d(len)),
        }
    }
}

fn check_optimizers() -> [Optimizer; 5] {
    let nesterov = Optimizer::Sgd {
        lr: 0.05,
        momentum: 0.8,
        nesterov: true,
        weight_decay: 0.0,
    };
    [
        Optimizer::adam(0.01),
        Optimizer::adam(0.01).with_weight_decay(0.3),
        Optimizer::adamw(0.01, 0.5),
        Optimizer::sgd(0.05).with_weight_decay(0.3),
        nesterov,
    ]
}

/// Three consecutive steps of each optimizer against the CPU (params and moments), on lengths
/// that are not multiples of the workgroup; and the non-finite flag, clear then set. The
/// masked entry points the same way under random masks (the pruned entries must be exactly 0).
pub fn checks() -> Vec<CrossCheck> {
    let mut checks = Vec::new();
    for opt in check_optimizers() {
        for len in [1usize, 7, 33, 70_001] {
            checks.push(CrossCheck::new(
                entry_point(opt, true),
                format!("{}, len {len}, random mask, steps 1-3", describe(opt)),
                move |ctx| check_masked_steps(ctx, opt, len),
            ));
        }
        for len in [1usize, 7, 70_001] {
            checks.push(CrossCheck::new(
                entry_point(opt, false),
                format!("{}, len {len}, steps 1-3", describe(opt)),
                move |ctx| check_steps(ctx, opt, len),
            ));
        }
        checks.push(CrossCheck::new(
            entry_point(opt, false),
            format!("{}, NaN gradient flag", describe(opt)),
            move |ctx| check_nonfinite_flag(ctx, opt),
        ));
    }
    checks
}

/// The optimiser and its weight decay, for check names.
fn describe(opt: Optimizer) -> String {
    match opt {
        Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => {
            format!("{} wd {weight_decay}", opt.name())
        }
    }
}

/// The buffers of one parameter tensor and its optimizer state.
struct UpdateBuffers {
    step: wgpu::Buffer,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    stats: wgpu::Buffer,
    /// The masked kernels' keep flags, when masked.
    keep: Option<wgpu::Buffer>,
}

impl UpdateBuffers {
    fn new(
        ctx: &GpuContext,
        opt: Optimizer,
        params: &[f32],
        stats: [u32; 4],
    ) -> Result<UpdateBuffers> {
        let bytes = 4 * params.len() as u64;
        Ok(UpdateBuffers {
            step: uniform(ctx, "optim step", &OptimStep::new(opt, 1)),
            params: storage_init(ctx, "params", params)?,
            grads: storage(ctx, "grads", bytes)?,
            m: storage(ctx, "m", bytes)?,
            v: storage(ctx, "v", bytes)?,
            stats: storage_init(ctx, "stats", &stats)?,
            keep: None,
        })
    }

    fn update(
        &self,
        ctx: &GpuContext,
        kernels: &OptimKernels,
        opt: Optimizer,
        len: usize,
    ) -> Dispatch {
        let b = self;
        kernels.update(
            ctx,
            opt,
            len,
            &b.step,
            (&b.params).into(),
            (&b.grads).into(),
            (&b.m).into(),
            (&b.v).into(),
            (&b.stats).into(),
            b.keep.as_ref().map(View::whole),
        )
    }

    /// Uploads step `step`'s hyperparameters and gradients and runs `update`.
    fn run_step(
        &self,
        ctx: &GpuContext,
        update: &Dispatch,
        opt: Optimizer,
        step: u32,
        grads: &[f32],
    ) {
        ctx.queue.write_buffer(
            &self.step,
            0,
            bytemuck::bytes_of(&OptimStep::new(opt, step)),
        );
        ctx.queue
            .write_buffer(&self.grads, 0, bytemuck::cast_slice(grads));
        run(ctx, &[update]);
    }
}

fn check_steps(ctx: &GpuContext, opt: Optimizer, len: usize) -> Result<Comparison> {
    let seed = len as u64;
    let mut params = random_vec(len, seed, -1.0, 1.0);
    let buffers = UpdateBuffers::new(ctx, opt, &params, [0; 4])?;
    let kernels = OptimKernels::new(ctx);
    let update = buffers.update(ctx, &kernels, opt, len);
    let mut state = OptimState::zeros(len);
    for step in 1..=3u32 {
        let grads = random_vec(len, seed + u64::from(step), -2.0, 2.0);
        buffers.run_step(ctx, &update, opt, step, &grads);
        optimizer_update(opt, step, &mut params, &grads, &mut state);
    }
    let gpu_params = read_buffer::<f32>(ctx, &buffers.params, 0, len)?;
    let gpu_m = read_buffer::<f32>(ctx, &buffers.m, 0, len)?;
    let result = compare(&gpu_params, &params).merge(compare(&gpu_m, &state.m));
    match opt {
        Optimizer::Adam { .. } => Ok(result.merge(compare(
            &read_buffer::<f32>(ctx, &buffers.v, 0, len)?,
            &state.v,
        ))),
        Optimizer::Sgd { .. } => Ok(result),
    }
}

/// [`check_steps`] through the masked entry point, under a random mask (about half pruned, the
/// first entry kept so that length 1 trains), from parameters with the pruned ones zeroed;
/// the pruned parameters and moments must come back exactly 0 on the GPU.
fn check_masked_steps(ctx: &GpuContext, opt: Optimizer, len: usize) -> Result<Comparison> {
    let seed = 1000 + len as u64;
    let keep: Vec<bool> = (random_vec(len, seed, 0.0, 1.0).iter().enumerate())
        .map(|(i, &r)| i == 0 || r < 0.5)
        .collect();
    let mut params = random_vec(len, seed + 1, -1.0, 1.0);
    for (p, _) in params.iter_mut().zip(&keep).filter(|(_, &k)| !k) {
        *p = 0.0;
    }
    let mut buffers = UpdateBuffers::new(ctx, opt, &params, [0; 4])?;
    let words: Vec<u32> = keep.iter().map(|&k| u32::from(k)).collect();
    buffers.keep = Some(storage_init(ctx, "keep", &words)?);
    let kernels = OptimKernels::new(ctx);
    let update = buffers.update(ctx, &kernels, opt, len);
    let mut state = OptimState::zeros(len);
    for step in 1..=3u32 {
        let grads = random_vec(len, seed + 10 + u64::from(step), -2.0, 2.0);
        buffers.run_step(ctx, &update, opt, step, &grads);
        masked_optimizer_update(opt, step, &mut params, &grads, &mut state, &keep);
    }
    let gpu_params = read_buffer::<f32>(ctx, &buffers.params, 0, len)?;
    let gpu_m = read_buffer::<f32>(ctx, &buffers.m, 0, len)?;
    let gpu_v = read_buffer::<f32>(ctx, &buffers.v, 0, len)?;
    // Bit patterns of the pruned entries: +0.0 on the CPU by construction.
    let pruned_bits = |values: &[f32]| -> Vec<u32> {
        (values.iter().zip(&keep))
            .filter(|(_, &k)| !k)
            .map(|(x, _)| x.to_bits())
            .collect()
    };
    let mut result = compare(&gpu_params, &params).merge(compare(&gpu_m, &state.m));
    let mut pruned = vec![(gpu_params, params), (gpu_m, state.m)];
    if let Optimizer::Adam { .. } = opt {
        result = result.merge(compare(&gpu_v, &state.v));
        pruned.push((gpu_v, state.v));
    }
    for (gpu, cpu) in pruned {
        result = result.merge(compare_exact(&pruned_bits(&gpu), &pruned_bits(&cpu)));
    }
    Ok(result)
}

/// A finite step must leave the stats record alone; a NaN gradient (in the last element) must
/// set word 3 and nothing else.
fn check_nonfinite_flag(ctx: &GpuContext, opt: Optimizer) -> Result<Comparison> {
    let len = 70_001;
    let stats = [1.5f32.to_bits(), 3, 4, 0];
    let buffers = UpdateBuffers::new(ctx, opt, &random_vec(len, 1, -1.0, 1.0), stats)?;
    let kernels = OptimKernels::new(ctx);
    let update = buffers.update(ctx, &kernels, opt, len);
    let mut grads = random_vec(len, 2, -1.0, 1.0);
    buffers.run_step(ctx, &update, opt, 1, &grads);
    let after_finite = read_buffer::<u32>(ctx, &buffers.stats, 0, 4)?;
    grads[len - 1] = f32::NAN;
    buffers.run_step(ctx, &update, opt, 2, &grads);
    let after_nan = read_buffer::<u32>(ctx, &buffers.stats, 0, 4)?;
    let mut flagged = stats;
    flagged[STATS_NONFINITE] = 1;
    Ok(compare_exact(&after_finite, &stats).merge(compare_exact(&after_nan, &flagged)))
}
