//! Pooling on the GPU (`shaders/pool2d.wgsl`), twin of `cpu/pool2d.rs`: max and average over
//! 2x2 windows, stride 2, odd sizes floor; the first maximum wins ties.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel};
use crate::cpu::activation::activation_backward;
use crate::cpu::pool2d::{
    avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward, pool2d_output,
};
use crate::model::{Activation, Pool, Shape};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/pool2d.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    n: u32,
    channels: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    relu_mask: u32,
    _pad: u32,
}

impl PoolParams {
    fn new(input: Shape, n: usize, relu_mask: bool) -> PoolParams {
        let out = pool2d_output(input);
        PoolParams {
            n: n as u32,
            channels: input.channels as u32,
            in_height: input.height as u32,
            in_width: input.width as u32,
            out_height: out.height as u32,
            out_width: out.width as u32,
            relu_mask: relu_mask.into(),
            _pad: 0,
        }
    }
}

pub struct Pool2dKernels {
    max_forward: Kernel,
    max_backward: Kernel,
    /// For even sizes: stores two floats at a time.
    max_backward_even: Kernel,
    avg_forward: Kernel,
    avg_backward: Kernel,
}

impl Pool2dKernels {
    pub fn new(ctx: &GpuContext) -> Pool2dKernels {
        let module = compile(ctx, "pool2d.wgsl", SOURCE);
        use Access::*;
        // argmax is declared read_write once for every entry point, so every layout says so.
        let bindings = [Uniform, Read, ReadWrite, ReadWrite, Read];
        let kernel = |name| Kernel::new(ctx, &module, name, &bindings);
        Pool2dKernels {
            max_forward: kernel("maxpool2d_forward"),
            max_backward: kernel("maxpool2d_backward"),
            max_backward_even: kernel("maxpool2d_backward_even"),
            avg_forward: kernel("avgpool2d_forward"),
            avg_backward: kernel("avgpool2d_backward"),
        }
    }

    /// `y` (n x pooled shape) from `x` (n x `input`); max pooling also writes `argmax` (u32,
    /// one per output), which average pooling leaves alone.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        pool: Pool,
        input: Shape,
        n: usize,
        x: View,
        y: View,
        argmax: View,
    ) -> Dispatch {
        let params = uniform(ctx, "pool2d params", &PoolParams::new(input, n, false));
        let outputs = n * pool2d_output(input).len();
        let kernel = match pool {
            Pool::Max => &self.max_forward,
            Pool::Avg => &self.avg_forward,
        };
        // The forward passes leave binding 4 (the backward's `pooled`) alone.
        let unused = x;
        kernel.dispatch(
            ctx,
            &[View::whole(&params), x, y, argmax, unused],
            grid_1d(outputs),
        )
    }

    /// `dx` (n x `input`): max pooling gives each window's winner its `dy` and every other
    /// input 0; average pooling gives each input a quarter of its window's `dy`.
    /// `relu_before` (max pooling only): the forward's `y`, when a ReLU feeds the pooling and
    /// this pass is to be its backward too (`dx` is then the gradient at the ReLU's input).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ctx: &GpuContext,
        pool: Pool,
        input: Shape,
        n: usize,
        (dy, argmax, relu_before): (View, View, Option<View>),
        dx: View,
    ) -> Dispatch {
        assert!(
            pool == Pool::Max || relu_before.is_none(),
            "only max pooling folds in the ReLU backward"
        );
        let relu_mask = relu_before.is_some();
        let params = uniform(ctx, "pool2d params", &PoolParams::new(input, n, relu_mask));
        let even = input.height.is_multiple_of(2) && input.width.is_multiple_of(2);
        let kernel = match pool {
            Pool::Max if even => &self.max_backward_even,
            Pool::Max => &self.max_backward,
            Pool::Avg => &self.avg_backward,
        };
        let pooled = relu_before.unwrap_or(dy);
        kernel.dispatch(
            ctx,
            &[View::whole(&params), dy, dx, argmax, pooled],
            grid_1d(n * pool2d_output(input).len()),
        )
    }
}

/// How a cross-check runs the pooling.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Max,
    Avg,
    /// Max pooling of a ReLU's output, its backward folding in the ReLU's.
    MaxAfterRelu,
}

/// Forward (y, argmax) and backward against the CPU: odd sizes that floor, batch 1, 7 and 33,
/// inputs with many ties for the first-maximum rule (at odd and at even sizes, which max
/// pooling's backward runs in different kernels), and the backward that folds in a ReLU's
/// against pooling backward followed by ReLU backward.
pub fn checks() -> Vec<CrossCheck> {
    let cases = [
        (1, Shape::new(32, 26, 26), false),
        (7, Shape::new(64, 11, 11), false),
        (33, Shape::new(3, 5, 7), false),
        (2, Shape::new(1, 2, 2), false),
        (7, Shape::new(5, 9, 6), true),
        (33, Shape::new(3, 6, 8), true),
    ];
    let modes = [
        ("maxpool2d_forward+backward", Mode::Max),
        ("avgpool2d_forward+backward", Mode::Avg),
        ("relu+maxpool2d_forward+backward", Mode::MaxAfterRelu),
    ];
    cases
        .into_iter()
        .flat_map(|(n, input, ties)| {
            let shape = format!(
                "n {n}, {}x{}x{}{}",
                input.channels,
                input.height,
                input.width,
                if ties { ", ties" } else { "" }
            );
            modes.map(|(name, mode)| {
                CrossCheck::new(name, shape.clone(), move |ctx| {
                    check_pool2d(ctx, mode, n, input, ties)
                })
            })
        })
        .collect()
}

fn check_pool2d(
    ctx: &GpuContext,
    mode: Mode,
    n: usize,
    input: Shape,
    ties: bool,
) -> Result<Comparison> {
    let (in_len, out_len) = (n * input.len(), n * pool2d_output(input).len());
    let seed = (in_len + out_len) as u64;
    let mut x = random_vec(in_len, seed, -1.0, 1.0);
    if ties {
        // Five discrete values: most windows hold equal maxima.
        x.iter_mut().for_each(|v| *v = (*v * 2.0).round());
    }
    if mode == Mode::MaxAfterRelu {
        // A ReLU's output: about a quarter of the windows are all zeros, so no gradient passes.
        x.iter_mut().for_each(|v| *v = v.max(0.0));
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

    let kernels = Pool2dKernels::new(ctx);
    let pool = if mode == Mode::Avg {
        Pool::Avg
    } else {
        Pool::Max
    };
    let (x_view, y_view, argmax_view) = ((&x_buf).into(), (&y_buf).into(), (&argmax_buf).into());
    let fwd = kernels.forward(ctx, pool, input, n, x_view, y_view, argmax_view);
    let relu_before = (mode == Mode::MaxAfterRelu).then_some(y_view);
    let bwd = kernels.backward(
        ctx,
        pool,
        input,
        n,
        ((&dy_buf).into(), argmax_view, relu_before),
        (&dx_buf).into(),
    );
    run(ctx, &[&fwd, &bwd]);

    let (mut y, mut argmax, mut dx) = (vec![0.0; out_len], vec![0; out_len], vec![0.0; in_len]);
    let gpu_y = read_buffer::<f32>(ctx, &y_buf, 0, out_len)?;
    let gpu_dx = read_buffer::<f32>(ctx, &dx_buf, 0, in_len)?;
    if mode == Mode::Avg {
        avgpool2d_forward(input, &x, &mut y);
        avgpool2d_backward(input, &dy, &mut dx);
        return Ok(compare(&gpu_y, &y).merge(compare(&gpu_dx, &dx)));
    }
    maxpool2d_forward(input, &x, &mut y, &mut argmax);
    maxpool2d_backward(input, &dy, &argmax, &mut dx);
    if mode == Mode::MaxAfterRelu {
        let at_relu_output = dx.clone();
        activation_backward(Activation::Relu, &x, &at_relu_output, &mut dx);
    }
    let gpu_argmax = read_buffer::<u32>(ctx, &argmax_buf, 0, out_len)?;
    Ok(compare(&gpu_y, &y)
        .merge(compare_exact(&gpu_argmax, &argmax))
        .merge(compare(&gpu_dx, &dx)))
}
