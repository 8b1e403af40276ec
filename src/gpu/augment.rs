//! Data augmentation on the GPU (`shaders/augment.wgsl`), twin of `cpu/augment.rs`: a training
//! network with augmentation gathers its batch into a raw buffer, and this kernel writes the
//! warped images into the network's input, keyed by the per-step [`StepKey`] uniform.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Cost, Dispatch, Kernel, StepKey};
use crate::config::Augment;
use crate::cpu::augment::{augment_batch, AUGMENT_STREAM};
use crate::data::IMAGE_PIXELS;
use crate::rng::random_vec;
use crate::rng::seed32;

pub const SOURCE: &str = include_str!("../../shaders/augment.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AugmentParams {
    n: u32,
    stream: u32,
    max_shift: f32,
    /// Radians, converted here exactly as the CPU converts them.
    max_rotation: f32,
    max_scale: f32,
    _pad: [u32; 3],
}

pub struct AugmentKernels {
    augment: Kernel,
}

impl AugmentKernels {
    pub fn new(ctx: &GpuContext) -> AugmentKernels {
        let module = compile(ctx, "augment.wgsl", SOURCE);
        use Access::*;
        AugmentKernels {
            augment: Kernel::new(
                ctx,
                &module,
                "augment_batch",
                &[Uniform, Uniform, Read, ReadWrite],
            ),
        }
    }

    /// Warps the `n` images of `src` into `dst` (`n x 784` f32 each, not aliased) with the maps
    /// of the step in `key` (a [`StepKey`] uniform).
    pub fn augment(
        &self,
        ctx: &GpuContext,
        augment: &Augment,
        n: usize,
        key: &wgpu::Buffer,
        src: View,
        dst: View,
    ) -> Dispatch {
        let params = uniform(
            ctx,
            "augment params",
            &AugmentParams {
                n: n as u32,
                stream: AUGMENT_STREAM,
                max_shift: augment.max_shift,
                max_rotation: augment.max_rotation.to_radians(),
                max_scale: augment.max_scale,
                _pad: [0; 3],
            },
        );
        let cost = Cost {
            shape: format!("batch of {n}"),
            flops: 0,
            // Reads about four source pixels and writes one per output pixel.
            bytes: (4 * n * IMAGE_PIXELS * 5) as u64,
        };
        self.augment
            .dispatch(
                ctx,
                &[View::whole(&params), View::whole(key), src, dst],
                grid_1d(n * IMAGE_PIXELS),
            )
            .with_cost(cost)
    }
}

/// Ranges wider than the defaults, so that images reach past the frame and rotate far.
const WIDE: Augment = Augment {
    max_shift: 4.0,
    max_rotation: 45.0,
    max_scale: 0.3,
};

/// Batches of 1, 7 and 33 random images, each under several (seed, step) keys, with the MNIST
/// ranges and wide ones; plus a half-turn range that reaches the polynomial's edge.
pub fn checks() -> Vec<CrossCheck> {
    let mut checks = Vec::new();
    for n in [1usize, 7, 33] {
        for (name, augment) in [("mnist", Augment::mnist()), ("wide", WIDE)] {
            checks.push(CrossCheck::new(
                "augment_batch",
                format!("n {n}, {name} ranges"),
                move |ctx| check_augment(ctx, n, augment),
            ));
        }
    }
    let half_turn = Augment {
        max_rotation: 180.0,
        ..WIDE
    };
    checks.push(CrossCheck::new(
        "augment_batch",
        "n 33, rotation up to 180 degrees".into(),
        move |ctx| check_augment(ctx, 33, half_turn),
    ));
    checks
}

/// (seed32, step) keys: a typical first step, a late step, and extreme words.
fn keys() -> [(u32, u32); 3] {
    [(seed32(42), 1), (seed32(7), 12_345), (u32::MAX, u32::MAX)]
}

fn check_augment(ctx: &GpuContext, n: usize, augment: Augment) -> Result<Comparison> {
    let kernels = AugmentKernels::new(ctx);
    let src = random_vec(n * IMAGE_PIXELS, n as u64, 0.0, 1.0);
    let src_buf = storage_init(ctx, "raw batch", &src)?;
    let mut result = Comparison {
        passed: true,
        ..Default::default()
    };
    for (seed, step) in keys() {
        let key = uniform(
            ctx,
            "step key",
            &StepKey {
                seed,
                step,
                ..StepKey::default()
            },
        );
        let dst_buf = storage(ctx, "augmented batch", (4 * n * IMAGE_PIXELS) as u64)?;
        let dispatch =
            kernels.augment(ctx, &augment, n, &key, (&src_buf).into(), (&dst_buf).into());
        run(ctx, &[&dispatch]);
        let mut cpu = vec![0.0; src.len()];
        augment_batch(&augment, (seed, step), &src, &mut cpu);
        let gpu = read_buffer::<f32>(ctx, &dst_buf, 0, n * IMAGE_PIXELS)?;
        result = result.merge(compare(&gpu, &cpu));
    }
    Ok(result)
}
