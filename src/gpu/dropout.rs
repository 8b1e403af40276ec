//! Dropout on the GPU (`shaders/dropout.wgsl`), twin of `cpu/dropout.rs`: the mask comes from
//! the counter-based RNG keyed by the per-step [`StepKey`] uniform, so the forward and backward
//! dispatches of a step draw the same mask and nothing is stored.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel, StepKey};
use crate::cpu::dropout::{dropout_forward, keep_scale, layer_stream, DropoutKey};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/dropout.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DropoutParams {
    image_len: u32,
    len: u32,
    layer_stream: u32,
    rate: f32,
    scale: f32,
    _pad: [u32; 3],
}

/// Where a dropout layer sits: its rate, its plan step index (which picks its stream) and the
/// elements of one image.
#[derive(Clone, Copy, Debug)]
pub struct DropoutLayer {
    pub rate: f32,
    pub layer: usize,
    pub image_len: usize,
}

pub struct DropoutKernels {
    apply: Kernel,
}

impl DropoutKernels {
    pub fn new(ctx: &GpuContext) -> DropoutKernels {
        let module = compile(ctx, "dropout.wgsl", SOURCE);
        use Access::*;
        DropoutKernels {
            apply: Kernel::new(
                ctx,
                &module,
                "dropout_apply",
                &[Uniform, Uniform, Read, ReadWrite],
            ),
        }
    }

    /// `dst = mask * src * scale` over `n` images: the forward (x -> y) or, with the same
    /// layer and key, the backward (dy -> dx).
    pub fn apply(
        &self,
        ctx: &GpuContext,
        layer: DropoutLayer,
        n: usize,
        key: &wgpu::Buffer,
        src: View,
        dst: View,
    ) -> Dispatch {
        let len = n * layer.image_len;
        let params = DropoutParams {
            image_len: layer.image_len as u32,
            len: len as u32,
            layer_stream: layer_stream(layer.layer),
            rate: layer.rate,
            scale: keep_scale(layer.rate),
            _pad: [0; 3],
        };
        let params = uniform(ctx, "dropout params", &params);
        self.apply.dispatch(
            ctx,
            &[View::whole(&params), View::whole(key), src, dst],
            grid_1d(len),
        )
    }
}

/// Masks against the CPU's for batches of 1, 7 and 33, image sizes that are not multiples of
/// the workgroup, several layers, seeds and steps.
pub fn checks() -> Vec<CrossCheck> {
    let cases = [
        (1, 5408, 0.25, 3, (42, 1)),
        (7, 1600, 0.5, 6, (7, 1000)),
        (33, 131, 0.1, 11, (0xdead_beef, 77)),
    ];
    cases
        .into_iter()
        .map(|(n, image_len, rate, layer, (seed, step))| {
            let shape = format!("n {n}, {image_len} per image, rate {rate}, layer {layer}");
            let layer = DropoutLayer {
                rate,
                layer,
                image_len,
            };
            CrossCheck::new("dropout_apply", shape, move |ctx| {
                check_dropout(
                    ctx,
                    layer,
                    n,
                    StepKey {
                        seed,
                        step,
                        _pad: [0; 2],
                    },
                )
            })
        })
        .collect()
}

fn check_dropout(
    ctx: &GpuContext,
    layer: DropoutLayer,
    n: usize,
    key: StepKey,
) -> Result<Comparison> {
    let len = n * layer.image_len;
    let x = random_vec(len, len as u64, 0.5, 1.5);
    let x_buf = storage_init(ctx, "x", &x)?;
    let y_buf = storage(ctx, "y", 4 * len as u64)?;
    let key_buf = uniform(ctx, "step key", &key);
    let kernels = DropoutKernels::new(ctx);
    let apply = kernels.apply(ctx, layer, n, &key_buf, (&x_buf).into(), (&y_buf).into());
    run(ctx, &[&apply]);
    let mut y = vec![0.0; len];
    let cpu_key = DropoutKey {
        seed: key.seed,
        step: key.step,
        layer: layer.layer,
        first_image: 0,
    };
    dropout_forward(layer.rate, &cpu_key, layer.image_len, &x, &mut y);
    let gpu_y = read_buffer::<f32>(ctx, &y_buf, 0, len)?;
    Ok(compare(&gpu_y, &y))
}
