//! Dense layers on the GPU (`shaders/dense.wgsl`), twin of `cpu/dense.rs`. Every pass is the
//! same tiled matrix multiply with different operand strides, so transposes cost nothing; each
//! output element is summed by one invocation over k in increasing order (bit-reproducible).

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare, random_vec, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{
    compile, grid_1d, read_buffer, run, storage, storage_init, uniform, Access, Dispatch, Kernel,
    View,
};
use crate::cpu::dense::{
    dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry,
};

pub const SOURCE: &str = include_str!("../../shaders/dense.wgsl");

/// Side of the square output tile one workgroup computes (`TILE` in the shader).
const TILE: usize = 16;
const MAX_GROUPS_PER_DIM: usize = 65535;

/// (row stride, column stride) in elements of a matrix as the kernel reads it.
type Strides = [u32; 2];

/// A row-major matrix with `cols` columns.
fn row_major(cols: usize) -> Strides {
    [u(cols), 1]
}

/// The transpose of a row-major matrix with `cols` columns.
fn transposed(cols: usize) -> Strides {
    [1, u(cols)]
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("dense: size fits in u32")
}

/// Mirrors `MatmulParams` in the shader: `C = A B` with `A` as `rows x inner`, `B` as
/// `inner x cols`, and `C` row-major.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    rows: u32,
    cols: u32,
    inner: u32,
    _pad: u32,
    a_strides: Strides,
    b_strides: Strides,
}

impl MatmulParams {
    fn new(
        rows: usize,
        cols: usize,
        inner: usize,
        a_strides: Strides,
        b_strides: Strides,
    ) -> MatmulParams {
        MatmulParams {
            rows: u(rows),
            cols: u(cols),
            inner: u(inner),
            _pad: 0,
            a_strides,
            b_strides,
        }
    }
}

/// One workgroup per `TILE x TILE` tile of a `rows x cols` output: x over columns, y over rows.
fn matmul_grid(rows: usize, cols: usize) -> [u32; 3] {
    let (x, y) = (cols.div_ceil(TILE).max(1), rows.div_ceil(TILE).max(1));
    assert!(
        x <= MAX_GROUPS_PER_DIM && y <= MAX_GROUPS_PER_DIM,
        "dense: {rows} x {cols} output needs too many workgroups"
    );
    [x as u32, y as u32, 1]
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_elements(view: &View, elements: usize, name: &str) {
    assert!(
        view.size >= 4 * elements as u64,
        "dense: {name} holds {} bytes, needs {elements} f32",
        view.size
    );
}

pub struct DenseKernels {
    matmul: Kernel,
    matmul_bias: Kernel,
    backward_bias: Kernel,
}

impl DenseKernels {
    pub fn new(ctx: &GpuContext) -> DenseKernels {
        let module = compile(ctx, "dense.wgsl", SOURCE);
        use Access::*;
        DenseKernels {
            matmul: Kernel::new(
                ctx,
                &module,
                "dense_matmul",
                &[Uniform, Read, ReadWrite, Read],
            ),
            matmul_bias: Kernel::new(
                ctx,
                &module,
                "dense_matmul_bias",
                &[Uniform, Read, ReadWrite, Read, Read],
            ),
            backward_bias: Kernel::new(
                ctx,
                &module,
                "dense_backward_bias",
                &[Uniform, Read, ReadWrite],
            ),
        }
    }

    /// `y = x w^T + b` for `n` rows of `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        g: DenseGeometry,
        n: usize,
        x: View,
        w: View,
        b: View,
        y: View,
    ) -> Dispatch {
        expect_elements(&x, n * g.inputs, "x");
        expect_elements(&w, g.outputs * g.inputs, "w");
        expect_elements(&b, g.outputs, "b");
        expect_elements(&y, n * g.outputs, "y");
        let params = MatmulParams::new(
            n,
            g.outputs,
            g.inputs,
            row_major(g.inputs),
            transposed(g.inputs),
        );
        let params = uniform(ctx, "dense params", &params);
        self.matmul_bias.dispatch(
            ctx,
            &[View::whole(&params), x, y, w, b],
            matmul_grid(n, g.outputs),
        )
    }

    /// `dx = dy w`.
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        g: DenseGeometry,
        n: usize,
        dy: View,
        w: View,
        dx: View,
    ) -> Dispatch {
        expect_elements(&dy, n * g.outputs, "dy");
        expect_elements(&w, g.outputs * g.inputs, "w");
        expect_elements(&dx, n * g.inputs, "dx");
        let params = MatmulParams::new(
            n,
            g.inputs,
            g.outputs,
            row_major(g.outputs),
            row_major(g.inputs),
        );
        let params = uniform(ctx, "dense params", &params);
        self.matmul.dispatch(
            ctx,
            &[View::whole(&params), dy, dx, w],
            matmul_grid(n, g.inputs),
        )
    }

    /// `dw = dy^T x` and `db` = the batch sum of `dy`. Returns the dispatches to record (they are
    /// independent: one writes dw, the other db). Both read `dy^T` through the same params.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        g: DenseGeometry,
        n: usize,
        x: View,
        dy: View,
        dw: View,
        db: View,
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.inputs, "x");
        expect_elements(&dy, n * g.outputs, "dy");
        expect_elements(&dw, g.outputs * g.inputs, "dw");
        expect_elements(&db, g.outputs, "db");
        let params = MatmulParams::new(
            g.outputs,
            g.inputs,
            n,
            transposed(g.outputs),
            row_major(g.inputs),
        );
        let params = uniform(ctx, "dense params", &params);
        vec![
            self.matmul.dispatch(
                ctx,
                &[View::whole(&params), dy, dw, x],
                matmul_grid(g.outputs, g.inputs),
            ),
            self.backward_bias
                .dispatch(ctx, &[View::whole(&params), dy, db], grid_1d(g.outputs)),
        ]
    }
}

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
/// of 33 inputs to 17 outputs, and 33 rows of 100 inputs.
const CASES: [Case; 4] = [
    case(1, 1600, 10),
    case(7, 33, 17),
    case(33, 100, 10),
    case(32, 1600, 10),
];

/// Forward, backward input, and backward weights and bias against the CPU, for every case.
pub fn checks() -> Vec<CrossCheck> {
    CASES
        .into_iter()
        .flat_map(|case| {
            let shape = format!("n {}, {} -> {}", case.n, case.g.inputs, case.g.outputs);
            [
                CrossCheck::new("dense_forward", shape.clone(), move |ctx| {
                    check_forward(ctx, case)
                }),
                CrossCheck::new("dense_backward_input", shape.clone(), move |ctx| {
                    check_backward_input(ctx, case)
                }),
                CrossCheck::new("dense_backward_weights+bias", shape, move |ctx| {
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
        let seed = (n * 1_000_003 + g.inputs * 101 + g.outputs) as u64;
        CaseData {
            x: random_vec(n * g.inputs, seed, -1.0, 1.0),
            w: random_vec(g.outputs * g.inputs, seed + 1, -1.0, 1.0),
            b: random_vec(g.outputs, seed + 2, -1.0, 1.0),
            dy: random_vec(n * g.outputs, seed + 3, -1.0, 1.0),
        }
    }
}

/// A zeroed f32 output buffer of `len` elements.
fn output(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer> {
    storage(ctx, label, 4 * len as u64)
}

fn check_forward(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (x, w, b) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
    );
    let y = output(ctx, "y", n * g.outputs)?;
    let kernels = DenseKernels::new(ctx);
    run(
        ctx,
        &[&kernels.forward(
            ctx,
            g,
            n,
            (&x).into(),
            (&w).into(),
            (&b).into(),
            (&y).into(),
        )],
    );
    let mut cpu = vec![0.0; n * g.outputs];
    dense_forward(g, &data.x, &data.w, &data.b, &mut cpu);
    Ok(compare(&read_buffer(ctx, &y, 0, cpu.len())?, &cpu))
}

fn check_backward_input(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (dy, w) = (
        storage_init(ctx, "dy", &data.dy)?,
        storage_init(ctx, "w", &data.w)?,
    );
    let dx = output(ctx, "dx", n * g.inputs)?;
    let kernels = DenseKernels::new(ctx);
    run(
        ctx,
        &[&kernels.backward_input(ctx, g, n, (&dy).into(), (&w).into(), (&dx).into())],
    );
    let mut cpu = vec![0.0; n * g.inputs];
    dense_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer(ctx, &dx, 0, cpu.len())?, &cpu))
}

fn check_backward_weights(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (x, dy) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "dy", &data.dy)?,
    );
    let (dw, db) = (
        output(ctx, "dw", g.outputs * g.inputs)?,
        output(ctx, "db", g.outputs)?,
    );
    let kernels = DenseKernels::new(ctx);
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
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; g.outputs * g.inputs], vec![0.0; g.outputs]);
    dense_backward_weights(g, &data.x, &data.dy, &mut cpu_dw, &mut cpu_db);
    let gpu_dw = read_buffer(ctx, &dw, 0, cpu_dw.len())?;
    let gpu_db = read_buffer(ctx, &db, 0, cpu_db.len())?;
    Ok(compare(&gpu_dw, &cpu_dw).merge(compare(&gpu_db, &cpu_db)))
}
