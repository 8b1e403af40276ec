//! The dense cross-checks: every variant's passes against the CPU twin (`cpu/dense.rs`) on
//! awkward sizes (batch 1, 7, 33; sizes off the tiles and blocks), and the calibration multiply.

use anyhow::Result;

use super::kernels::{DenseKernels, VARIANTS};
use crate::cpu::dense::{
    dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry,
};
use crate::cpu::float::{Float, MatMut, MatRef};
use crate::gpu::buffer::{read_buffer, storage, storage_init};
use crate::gpu::check::{compare, Comparison, CrossCheck, LayerData};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::run;
use crate::gpu::variant::Variant;
use crate::rng::random_vec;

/// One cross-check shape: a batch of `n` rows through `g`.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    g: DenseGeometry,
}

const fn case(n: usize, inputs: usize, outputs: usize) -> Case {
    Case {
        n,
        g: DenseGeometry { inputs, outputs },
    }
}

/// The real layer with a batch of 1 and 32, then sizes that are not multiples of the tile: 7 rows
/// of 33 inputs to 17 outputs, and 33 rows of 100 inputs; then 70,000 outputs, more workgroups
/// than one dimension of a launch holds (the bias gradient's launch is folded); and 33 rows of
/// 300 inputs to 7 outputs, whose forward splits k (tiled variant) over a length that is not a
/// multiple of the workgroup.
const CASES: [Case; 6] = [
    case(1, 1600, 10),
    case(7, 33, 17),
    case(33, 100, 10),
    case(32, 1600, 10),
    case(2, 3, 70_000),
    case(33, 300, 7),
];

/// `bench`'s calibration multiply (`matmul_row_major`): an odd size and an aligned one.
const CALIBRATION_CASES: [(usize, usize, usize); 2] = [(37, 29, 45), (64, 128, 96)];

/// Forward, backward input, and backward weights and bias against the CPU, for every case and
/// both matmul variants (the shape names the variant); then the calibration multiply.
pub fn checks() -> Vec<CrossCheck> {
    let variants = || VARIANTS.iter().map(|r| r.variant);
    let calibration = variants().flat_map(|variant| {
        CALIBRATION_CASES.into_iter().map(move |(m, k, n)| {
            let shape = format!("{m}x{k} times {k}x{n}, {variant}");
            CrossCheck::new("dense_matmul (calibration)", shape, move |ctx| {
                check_calibration(ctx, variant, (m, k, n))
            })
            .only_where(move |ctx| runs(ctx, variant))
        })
    });
    variants()
        .flat_map(|variant| CASES.into_iter().map(move |case| (variant, case)))
        .flat_map(|(variant, case)| {
            let shape = format!(
                "n {}, {} -> {}, {variant}",
                case.n, case.g.inputs, case.g.outputs
            );
            [
                CrossCheck::new("dense_forward", shape.clone(), move |ctx| {
                    check_forward(ctx, variant, case)
                }),
                CrossCheck::new("dense_backward_input", shape.clone(), move |ctx| {
                    check_backward_input(ctx, variant, case)
                }),
                CrossCheck::new("dense_backward_weights+bias", shape, move |ctx| {
                    check_backward_weights(ctx, variant, case)
                }),
            ]
            .map(|check| check.only_where(move |ctx| runs(ctx, variant)))
        })
        .chain(calibration)
        .collect()
}

/// Whether the adapter of `ctx` builds `variant` (else its checks are left out: a pass asked
/// of it would run on its fallback).
fn runs(ctx: &GpuContext, variant: Variant) -> bool {
    DenseKernels::new(ctx).variants().contains(&variant)
}

fn check_calibration(
    ctx: &GpuContext,
    variant: Variant,
    (m, k, n): (usize, usize, usize),
) -> Result<Comparison> {
    let seed = (m * 10_007 + k * 101 + n) as u64;
    let (a, b) = (
        random_vec(m * k, seed, -1.0, 1.0),
        random_vec(k * n, seed + 1, -1.0, 1.0),
    );
    let (ga, gb) = (storage_init(ctx, "a", &a)?, storage_init(ctx, "b", &b)?);
    let gc = output(ctx, "c", m * n)?;
    let kernels = DenseKernels::new(ctx);
    let views = ((&ga).into(), (&gb).into(), (&gc).into());
    run(
        ctx,
        &[&kernels.matmul_row_major(ctx, variant, (m, k, n), views)],
    );
    let mut cpu = vec![0.0f32; m * n];
    f32::gemm(
        1.0,
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        0.0,
        MatMut::row_major(&mut cpu, m, n),
    );
    Ok(compare(&read_buffer(ctx, &gc, 0, cpu.len())?, &cpu))
}

/// One case's random inputs, reproducible from its shape.
fn case_data(case: Case) -> LayerData {
    let (g, n) = (case.g, case.n);
    let seed = (n * 1_000_003 + g.inputs * 101 + g.outputs) as u64;
    LayerData::random(
        seed,
        [n * g.inputs, g.outputs * g.inputs, g.outputs, n * g.outputs],
    )
}

/// A zeroed f32 output buffer of `len` elements.
fn output(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer> {
    storage(ctx, label, 4 * len as u64)
}

/// A case's inputs on the GPU.
struct Inputs {
    x: wgpu::Buffer,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    dy: wgpu::Buffer,
}

impl Inputs {
    fn upload(ctx: &GpuContext, data: &LayerData) -> Result<Inputs> {
        Ok(Inputs {
            x: storage_init(ctx, "x", &data.x)?,
            w: storage_init(ctx, "w", &data.w)?,
            b: storage_init(ctx, "b", &data.b)?,
            dy: storage_init(ctx, "dy", &data.dy)?,
        })
    }
}

fn check_forward(ctx: &GpuContext, variant: Variant, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, case_data(case));
    let gpu = Inputs::upload(ctx, &data)?;
    let y = output(ctx, "y", n * g.outputs)?;
    let (x, w, b) = ((&gpu.x).into(), (&gpu.w).into(), (&gpu.b).into());
    let forward = DenseKernels::new(ctx).forward(ctx, variant, (g, n), [x, w, b, (&y).into()]);
    run(ctx, &[&forward]);
    let mut cpu = vec![0.0; n * g.outputs];
    dense_forward(g, &data.x, &data.w, &data.b, &mut cpu);
    Ok(compare(&read_buffer(ctx, &y, 0, cpu.len())?, &cpu))
}

fn check_backward_input(ctx: &GpuContext, variant: Variant, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, case_data(case));
    let gpu = Inputs::upload(ctx, &data)?;
    let dx = output(ctx, "dx", n * g.inputs)?;
    let (dy, w) = ((&gpu.dy).into(), (&gpu.w).into());
    let backward =
        DenseKernels::new(ctx).backward_input(ctx, variant, (g, n), [dy, w, (&dx).into()]);
    run(ctx, &[&backward]);
    let mut cpu = vec![0.0; n * g.inputs];
    dense_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer(ctx, &dx, 0, cpu.len())?, &cpu))
}

fn check_backward_weights(ctx: &GpuContext, variant: Variant, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, case_data(case));
    let gpu = Inputs::upload(ctx, &data)?;
    let (dw, db) = (
        output(ctx, "dw", g.outputs * g.inputs)?,
        output(ctx, "db", g.outputs)?,
    );
    let (x, dy) = ((&gpu.x).into(), (&gpu.dy).into());
    let grads = ((&dw).into(), (&db).into());
    let kernels = DenseKernels::new(ctx);
    let dispatches = kernels.backward_weights(ctx, variant, (g, n), [x, dy], [grads.0, grads.1]);
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; g.outputs * g.inputs], vec![0.0; g.outputs]);
    dense_backward_weights(g, &data.x, &data.dy, &mut cpu_dw, &mut cpu_db);
    let gpu_dw = read_buffer(ctx, &dw, 0, cpu_dw.len())?;
    let gpu_db = read_buffer(ctx, &db, 0, cpu_db.len())?;
    Ok(compare(&gpu_dw, &cpu_dw).merge(compare(&gpu_db, &cpu_db)))
}
