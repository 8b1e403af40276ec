//! MaxPool2d on the GPU (`shaders/maxpool2d.wgsl`), twin of `cpu/maxpool2d.rs`: 2x2 windows,
//! stride 2, odd sizes floor, first maximum wins ties.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare, compare_exact, random_vec, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{
    compile, grid_1d, read_buffer, run, storage, storage_init, uniform, Access, Dispatch, Kernel,
    View,
};
use crate::cpu::maxpool2d::{maxpool2d_backward, maxpool2d_forward, maxpool2d_output};
use crate::model::Shape;

pub const SOURCE: &str = include_str!("../../shaders/maxpool2d.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    n: u32,
    channels: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    _pad: [u32; 2],
}

impl PoolParams {
    fn new(input: Shape, n: usize) -> PoolParams {
        let out = maxpool2d_output(input);
        PoolParams {
            n: n as u32,
            channels: input.channels as u32,
            in_height: input.height as u32,
            in_width: input.width as u32,
            out_height: out.height as u32,
            out_width: out.width as u32,
            _pad: [0; 2],
        }
    }
}

pub struct MaxPool2dKernels {
    forward: Kernel,
    backward: Kernel,
}

impl MaxPool2dKernels {
    pub fn new(ctx: &GpuContext) -> MaxPool2dKernels {
        let module = compile(ctx, "maxpool2d.wgsl", SOURCE);
        use Access::*;
        // argmax is declared read_write once for both entry points, so both layouts say so.
        let bindings = [Uniform, Read, ReadWrite, ReadWrite];
        MaxPool2dKernels {
            forward: Kernel::new(ctx, &module, "maxpool2d_forward", &bindings),
            backward: Kernel::new(ctx, &module, "maxpool2d_backward", &bindings),
        }
    }

    /// `y` (n x pooled shape) and `argmax` (u32, same count) from `x` (n x `input`).
    pub fn forward(
        &self,
        ctx: &GpuContext,
        input: Shape,
        n: usize,
        x: View,
        y: View,
        argmax: View,
    ) -> Dispatch {
        let params = uniform(ctx, "maxpool2d params", &PoolParams::new(input, n));
        let outputs = n * maxpool2d_output(input).len();
        self.forward
            .dispatch(ctx, &[View::whole(&params), x, y, argmax], grid_1d(outputs))
    }

    /// `dx` (n x `input`): each window's winner gets its `dy`, every other input 0.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        input: Shape,
        n: usize,
        dy: View,
        argmax: View,
        dx: View,
    ) -> Dispatch {
        let params = uniform(ctx, "maxpool2d params", &PoolParams::new(input, n));
        self.backward.dispatch(
            ctx,
            &[View::whole(&params), dy, dx, argmax],
            grid_1d(n * input.len()),
        )
    }
}

/// Forward (y, argmax) and backward against the CPU: odd sizes that floor, batch 1, 7 and 33,
/// and inputs with many ties for the first-maximum rule.
pub fn checks() -> Vec<CrossCheck> {
    let cases = [
        (1, Shape::new(32, 26, 26), false),
        (7, Shape::new(64, 11, 11), false),
        (33, Shape::new(3, 5, 7), false),
        (2, Shape::new(1, 2, 2), false),
        (7, Shape::new(5, 9, 6), true),
    ];
    cases
        .into_iter()
        .map(|(n, input, ties)| {
            let shape = format!(
                "n {n}, {}x{}x{}{}",
                input.channels,
                input.height,
                input.width,
                if ties { ", ties" } else { "" }
            );
            CrossCheck::new("maxpool2d_forward+backward", shape, move |ctx| {
                check_maxpool2d(ctx, n, input, ties)
            })
        })
        .collect()
}

fn check_maxpool2d(ctx: &GpuContext, n: usize, input: Shape, ties: bool) -> Result<Comparison> {
    let (in_len, out_len) = (n * input.len(), n * maxpool2d_output(input).len());
    let seed = (in_len + out_len) as u64;
    let mut x = random_vec(in_len, seed, -1.0, 1.0);
    if ties {
        // Five discrete values: most windows hold equal maxima.
        x.iter_mut().for_each(|v| *v = (*v * 2.0).round());
    }
    let dy = random_vec(out_len, seed + 1, -1.0, 1.0);
    // dx starts as garbage so that every input, dropped rows included, must be written.
    let dx_garbage = random_vec(in_len, seed + 2, 5.0, 6.0);
    let (x_buf, dy_buf, dx_buf) = (
        storage_init(ctx, "x", &x)?,
        storage_init(ctx, "dy", &dy)?,
        storage_init(ctx, "dx", &dx_garbage)?,
    );
    let (y_buf, argmax_buf) = (
        storage(ctx, "y", 4 * out_len as u64)?,
        storage(ctx, "argmax", 4 * out_len as u64)?,
    );

    let kernels = MaxPool2dKernels::new(ctx);
    let fwd = kernels.forward(
        ctx,
        input,
        n,
        (&x_buf).into(),
        (&y_buf).into(),
        (&argmax_buf).into(),
    );
    let bwd = kernels.backward(
        ctx,
        input,
        n,
        (&dy_buf).into(),
        (&argmax_buf).into(),
        (&dx_buf).into(),
    );
    run(ctx, &[&fwd, &bwd]);

    let (mut y, mut argmax, mut dx) = (vec![0.0; out_len], vec![0; out_len], vec![0.0; in_len]);
    maxpool2d_forward(input, &x, &mut y, &mut argmax);
    maxpool2d_backward(input, &dy, &argmax, &mut dx);
    let gpu_y = read_buffer::<f32>(ctx, &y_buf, 0, out_len)?;
    let gpu_argmax = read_buffer::<u32>(ctx, &argmax_buf, 0, out_len)?;
    let gpu_dx = read_buffer::<f32>(ctx, &dx_buf, 0, in_len)?;
    Ok(compare(&gpu_y, &y)
        .merge(compare_exact(&gpu_argmax, &argmax))
        .merge(compare(&gpu_dx, &dx)))
}
