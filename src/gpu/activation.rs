//! Activations on the GPU (`shaders/activation.wgsl`), twin of `cpu/activation.rs`. Convolutions
//! fuse a forward ReLU into their epilogue; these kernels serve the other layers and every
//! backward pass. The dispatch's variant names the function, for the profiler.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel};
use crate::cpu::activation::{activation_backward, activation_forward};
use crate::model::Activation;
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/activation.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ActivationParams {
    len: u32,
    op: u32,
    _pad: [u32; 2],
}

impl ActivationParams {
    fn new(a: Activation, len: usize) -> ActivationParams {
        let op = match a {
            Activation::Relu => 0,
            Activation::Sigmoid => 1,
            Activation::Tanh => 2,
        };
        ActivationParams {
            len: len as u32,
            op,
            _pad: [0; 2],
        }
    }
}

fn name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
    }
}

pub struct ActivationKernels {
    forward: Kernel,
    backward: Kernel,
}

impl ActivationKernels {
    pub fn new(ctx: &GpuContext) -> ActivationKernels {
        let module = compile(ctx, "activation.wgsl", SOURCE);
        use Access::*;
        ActivationKernels {
            forward: Kernel::new(
                ctx,
                &module,
                "activation_forward",
                &[Uniform, Read, ReadWrite],
            ),
            backward: Kernel::new(
                ctx,
                &module,
                "activation_backward",
                &[Uniform, Read, ReadWrite, Read],
            ),
        }
    }

    /// `y = f(x)` over `len` elements.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        a: Activation,
        len: usize,
        x: View,
        y: View,
    ) -> Dispatch {
        let params = uniform(ctx, "activation params", &ActivationParams::new(a, len));
        self.forward
            .dispatch(ctx, &[View::whole(&params), x, y], grid_1d(len))
            .with_variant(name(a))
    }

    /// `dx = dy * f'(x)`, computed from the forward output `y`.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        a: Activation,
        len: usize,
        y: View,
        dy: View,
        dx: View,
    ) -> Dispatch {
        let params = uniform(ctx, "activation params", &ActivationParams::new(a, len));
        self.backward
            .dispatch(ctx, &[View::whole(&params), y, dx, dy], grid_1d(len))
            .with_variant(name(a))
    }
}

/// Forward and backward of every activation against the CPU, on lengths that are not
/// multiples of the workgroup.
pub fn checks() -> Vec<CrossCheck> {
    let activations = [Activation::Relu, Activation::Sigmoid, Activation::Tanh];
    activations
        .into_iter()
        .flat_map(|a| [1usize, 7, 33 * 13 * 13, 70_001].map(|len| (a, len)))
        .map(|(a, len)| {
            let op = match a {
                Activation::Relu => "relu_forward+backward",
                Activation::Sigmoid => "sigmoid_forward+backward",
                Activation::Tanh => "tanh_forward+backward",
            };
            CrossCheck::new(op, format!("len {len}"), move |ctx| {
                check_activation(ctx, a, len)
            })
        })
        .collect()
}

fn check_activation(
    ctx: &GpuContext,
    a: Activation,
    len: usize,
) -> Result<super::check::Comparison> {
    let kernels = ActivationKernels::new(ctx);
    // Wide enough to reach sigmoid's and tanh's flat tails.
    let x = random_vec(len, len as u64, -6.0, 6.0);
    let dy = random_vec(len, len as u64 + 1, -1.0, 1.0);
    let (x_buf, dy_buf) = (storage_init(ctx, "x", &x)?, storage_init(ctx, "dy", &dy)?);
    let (y_buf, dx_buf) = (
        storage(ctx, "y", 4 * len as u64)?,
        storage(ctx, "dx", 4 * len as u64)?,
    );
    let fwd = kernels.forward(ctx, a, len, (&x_buf).into(), (&y_buf).into());
    let bwd = kernels.backward(
        ctx,
        a,
        len,
        (&y_buf).into(),
        (&dy_buf).into(),
        (&dx_buf).into(),
    );
    run(ctx, &[&fwd, &bwd]);
    let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
    activation_forward(a, &x, &mut y);
    // The backward is checked on the GPU's own forward output, so that it is judged alone.
    let gpu_y = read_buffer::<f32>(ctx, &y_buf, 0, len)?;
    activation_backward(a, &gpu_y, &dy, &mut dx);
    let gpu_dx = read_buffer::<f32>(ctx, &dx_buf, 0, len)?;
    Ok(compare(&gpu_y, &y).merge(compare(&gpu_dx, &dx)))
}
