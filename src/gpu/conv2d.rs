//! Conv2d on the GPU (`shaders/conv2d.wgsl`), twin of `cpu/conv2d.rs`: stride 1, valid padding,
//! NCHW activations, OIHW weights. Every output element is summed by one invocation in a fixed
//! order (gathers, never scatters), so results are bit-reproducible.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare, random_vec, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{
    compile, grid_1d, read_buffer, run, storage, storage_init, uniform, Access, Dispatch, Kernel,
    View,
};
use crate::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use crate::cpu::relu::relu_forward;
use crate::model::Shape;

pub const SOURCE: &str = include_str!("../../shaders/conv2d.wgsl");

/// Mirrors `Conv2dParams` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Conv2dParams {
    batch: u32,
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    relu: u32,
    /// Invocations that do work: the elements of the kernel's output.
    len: u32,
    _pad: [u32; 2],
}

impl Conv2dParams {
    fn new(g: Conv2dGeometry, n: usize, relu: bool, len: usize) -> Conv2dParams {
        let out = g.output();
        let u = |v: usize| u32::try_from(v).expect("conv2d: size fits in u32");
        Conv2dParams {
            batch: u(n),
            in_channels: u(g.input.channels),
            in_height: u(g.input.height),
            in_width: u(g.input.width),
            out_channels: u(g.out_channels),
            out_height: u(out.height),
            out_width: u(out.width),
            kernel: u(g.kernel),
            relu: u32::from(relu),
            len: u(len),
            _pad: [0; 2],
        }
    }
}

/// Elements of the OIHW weight tensor.
fn weight_len(g: Conv2dGeometry) -> usize {
    g.out_channels * g.input.channels * g.kernel * g.kernel
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_elements(view: &View, elements: usize, name: &str) {
    assert!(
        view.size >= 4 * elements as u64,
        "conv2d: {name} holds {} bytes, needs {elements} f32",
        view.size
    );
}

pub struct Conv2dKernels {
    forward: Kernel,
    backward_input: Kernel,
    backward_weights: Kernel,
    backward_bias: Kernel,
}

impl Conv2dKernels {
    pub fn new(ctx: &GpuContext) -> Conv2dKernels {
        let module = compile(ctx, "conv2d.wgsl", SOURCE);
        use Access::*;
        Conv2dKernels {
            forward: Kernel::new(
                ctx,
                &module,
                "conv2d_forward",
                &[Uniform, Read, ReadWrite, Read, Read],
            ),
            backward_input: Kernel::new(
                ctx,
                &module,
                "conv2d_backward_input",
                &[Uniform, Read, ReadWrite, Read],
            ),
            backward_weights: Kernel::new(
                ctx,
                &module,
                "conv2d_backward_weights",
                &[Uniform, Read, ReadWrite, Read],
            ),
            backward_bias: Kernel::new(
                ctx,
                &module,
                "conv2d_backward_bias",
                &[Uniform, Read, ReadWrite],
            ),
        }
    }

    /// y = conv(x, w) + b for n images, then max(y, 0) when `relu`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        g: Conv2dGeometry,
        n: usize,
        relu: bool,
        x: View,
        w: View,
        b: View,
        y: View,
    ) -> Dispatch {
        let len = n * g.output().len();
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&y, len, "y");
        let params = uniform(ctx, "conv2d params", &Conv2dParams::new(g, n, relu, len));
        self.forward
            .dispatch(ctx, &[View::whole(&params), x, y, w, b], grid_1d(len))
    }

    /// dx = gradient w.r.t. the input.
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        g: Conv2dGeometry,
        n: usize,
        dy: View,
        w: View,
        dx: View,
    ) -> Dispatch {
        let len = n * g.input.len();
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&dx, len, "dx");
        let params = uniform(ctx, "conv2d params", &Conv2dParams::new(g, n, false, len));
        self.backward_input
            .dispatch(ctx, &[View::whole(&params), dy, dx, w], grid_1d(len))
    }

    /// dw and db summed over the batch (deterministic order). Returns the dispatches to record in
    /// order (they are independent: one writes dw, the other db).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        g: Conv2dGeometry,
        n: usize,
        x: View,
        dy: View,
        dw: View,
        db: View,
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        let weights_params = uniform(
            ctx,
            "conv2d params",
            &Conv2dParams::new(g, n, false, weight_len(g)),
        );
        let bias_params = uniform(
            ctx,
            "conv2d params",
            &Conv2dParams::new(g, n, false, g.out_channels),
        );
        vec![
            self.backward_weights.dispatch(
                ctx,
                &[View::whole(&weights_params), dy, dw, x],
                grid_1d(weight_len(g)),
            ),
            self.backward_bias.dispatch(
                ctx,
                &[View::whole(&bias_params), dy, db],
                grid_1d(g.out_channels),
            ),
        ]
    }
}

/// One cross-check geometry: a batch of `n` images through `g`.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    g: Conv2dGeometry,
}

const fn case(n: usize, input: Shape, out_channels: usize, kernel: usize) -> Case {
    Case {
        n,
        g: Conv2dGeometry {
            input,
            out_channels,
            kernel,
        },
    }
}

/// The real first and second layers, then odd sizes: a small k2 on a non-square image with a
/// batch of 33, and a k5 kernel nearly as large as its 6x5 input.
const CASES: [Case; 4] = [
    case(1, Shape::new(1, 28, 28), 32, 3),
    case(7, Shape::new(32, 13, 13), 64, 3),
    case(33, Shape::new(3, 7, 9), 5, 2),
    case(2, Shape::new(5, 6, 5), 3, 5),
];

/// Forward (with and without the fused ReLU), backward input, and backward weights and bias
/// against the CPU, for every case.
pub fn checks() -> Vec<CrossCheck> {
    CASES
        .into_iter()
        .flat_map(|case| {
            let g = case.g;
            let shape = format!(
                "n {}, {}x{}x{} -> {} k{}",
                case.n, g.input.channels, g.input.height, g.input.width, g.out_channels, g.kernel
            );
            [
                CrossCheck::new("conv2d_forward", shape.clone(), move |ctx| {
                    check_forward(ctx, case, false)
                }),
                CrossCheck::new("conv2d_forward+relu", shape.clone(), move |ctx| {
                    check_forward(ctx, case, true)
                }),
                CrossCheck::new("conv2d_backward_input", shape.clone(), move |ctx| {
                    check_backward_input(ctx, case)
                }),
                CrossCheck::new("conv2d_backward_weights+bias", shape, move |ctx| {
                    check_backward_weights(ctx, case)
                }),
            ]
        })
        .collect()
}

/// Random tensors in [-1, 1) for one case, reproducible from its shape.
struct CaseData {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

impl CaseData {
    fn new(case: Case) -> CaseData {
        let (g, n) = (case.g, case.n);
        let seed = (n * 1_000_003 + g.input.len() * 101 + g.out_channels * 7 + g.kernel) as u64;
        CaseData {
            x: random_vec(n * g.input.len(), seed, -1.0, 1.0),
            w: random_vec(weight_len(g), seed + 1, -1.0, 1.0),
            b: random_vec(g.out_channels, seed + 2, -1.0, 1.0),
            dy: random_vec(n * g.output().len(), seed + 3, -1.0, 1.0),
        }
    }
}

fn check_forward(ctx: &GpuContext, case: Case, relu: bool) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let len = n * g.output().len();
    let (x, w, b) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
    );
    let y = storage(ctx, "y", 4 * len as u64)?;
    let kernels = Conv2dKernels::new(ctx);
    run(
        ctx,
        &[&kernels.forward(
            ctx,
            g,
            n,
            relu,
            (&x).into(),
            (&w).into(),
            (&b).into(),
            (&y).into(),
        )],
    );
    let mut cpu = vec![0.0; len];
    conv2d_forward(g, &data.x, &data.w, &data.b, &mut cpu);
    if relu {
        let pre_activation = cpu.clone();
        relu_forward(&pre_activation, &mut cpu);
    }
    Ok(compare(&read_buffer::<f32>(ctx, &y, 0, len)?, &cpu))
}

fn check_backward_input(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let len = n * g.input.len();
    let (dy, w) = (
        storage_init(ctx, "dy", &data.dy)?,
        storage_init(ctx, "w", &data.w)?,
    );
    let dx = storage(ctx, "dx", 4 * len as u64)?;
    let kernels = Conv2dKernels::new(ctx);
    run(
        ctx,
        &[&kernels.backward_input(ctx, g, n, (&dy).into(), (&w).into(), (&dx).into())],
    );
    let mut cpu = vec![0.0; len];
    conv2d_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer::<f32>(ctx, &dx, 0, len)?, &cpu))
}

fn check_backward_weights(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (x, dy) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "dy", &data.dy)?,
    );
    let dw = storage(ctx, "dw", 4 * weight_len(g) as u64)?;
    let db = storage(ctx, "db", 4 * g.out_channels as u64)?;
    let kernels = Conv2dKernels::new(ctx);
    let dispatches = kernels.backward_weights(
        ctx,
        g,
        n,
        (&x).into(),
        (&dy).into(),
        (&dw).into(),
        (&db).into(),
    );
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; weight_len(g)], vec![0.0; g.out_channels]);
    conv2d_backward_weights(g, &data.x, &data.dy, &mut cpu_dw, &mut cpu_db);
    let gpu_dw = read_buffer::<f32>(ctx, &dw, 0, weight_len(g))?;
    let gpu_db = read_buffer::<f32>(ctx, &db, 0, g.out_channels)?;
    Ok(compare(&gpu_dw, &cpu_dw).merge(compare(&gpu_db, &cpu_db)))
}
