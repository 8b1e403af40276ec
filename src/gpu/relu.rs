//! ReLU on the GPU (`shaders/relu.wgsl`), twin of `cpu/relu.rs`. Convolutions fuse the forward
//! ReLU into their epilogue; these kernels serve the other layers and every backward pass.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare, random_vec, CrossCheck};
use super::context::GpuContext;
use super::kernel::{
    compile, grid_1d, read_buffer, run, storage, storage_init, uniform, Access, Dispatch, Kernel,
    View,
};
use crate::cpu::relu::{relu_backward, relu_forward};

pub const SOURCE: &str = include_str!("../../shaders/relu.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReluParams {
    len: u32,
    _pad: [u32; 3],
}

pub struct ReluKernels {
    forward: Kernel,
    backward: Kernel,
}

impl ReluKernels {
    pub fn new(ctx: &GpuContext) -> ReluKernels {
        let module = compile(ctx, "relu.wgsl", SOURCE);
        use Access::*;
        ReluKernels {
            forward: Kernel::new(ctx, &module, "relu_forward", &[Uniform, Read, ReadWrite]),
            backward: Kernel::new(
                ctx,
                &module,
                "relu_backward",
                &[Uniform, Read, ReadWrite, Read],
            ),
        }
    }

    /// `y = max(x, 0)` over `len` elements.
    pub fn forward(&self, ctx: &GpuContext, len: usize, x: View, y: View) -> Dispatch {
        let params = uniform(
            ctx,
            "relu params",
            &ReluParams {
                len: len as u32,
                _pad: [0; 3],
            },
        );
        self.forward
            .dispatch(ctx, &[View::whole(&params), x, y], grid_1d(len))
    }

    /// `dx = dy` where `y > 0`, else 0.
    pub fn backward(&self, ctx: &GpuContext, len: usize, y: View, dy: View, dx: View) -> Dispatch {
        let params = uniform(
            ctx,
            "relu params",
            &ReluParams {
                len: len as u32,
                _pad: [0; 3],
            },
        );
        self.backward
            .dispatch(ctx, &[View::whole(&params), y, dx, dy], grid_1d(len))
    }
}

/// Forward and backward against the CPU on lengths that are not multiples of the workgroup.
pub fn checks() -> Vec<CrossCheck> {
    [1usize, 7, 33 * 13 * 13, 70_001]
        .into_iter()
        .map(|len| {
            CrossCheck::new("relu_forward+backward", format!("len {len}"), move |ctx| {
                check_relu(ctx, len)
            })
        })
        .collect()
}

fn check_relu(ctx: &GpuContext, len: usize) -> Result<super::check::Comparison> {
    let kernels = ReluKernels::new(ctx);
    let x = random_vec(len, len as u64, -1.0, 1.0);
    let dy = random_vec(len, len as u64 + 1, -1.0, 1.0);
    let (x_buf, dy_buf) = (storage_init(ctx, "x", &x)?, storage_init(ctx, "dy", &dy)?);
    let (y_buf, dx_buf) = (
        storage(ctx, "y", 4 * len as u64)?,
        storage(ctx, "dx", 4 * len as u64)?,
    );
    let fwd = kernels.forward(ctx, len, (&x_buf).into(), (&y_buf).into());
    let bwd = kernels.backward(
        ctx,
        len,
        (&y_buf).into(),
        (&dy_buf).into(),
        (&dx_buf).into(),
    );
    run(ctx, &[&fwd, &bwd]);
    let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
    relu_forward(&x, &mut y);
    relu_backward(&y, &dy, &mut dx);
    let gpu_y = read_buffer::<f32>(ctx, &y_buf, 0, len)?;
    let gpu_dx = read_buffer::<f32>(ctx, &dx_buf, 0, len)?;
    Ok(compare(&gpu_y, &y).merge(compare(&gpu_dx, &dx)))
}
