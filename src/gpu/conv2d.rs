//! Conv2d on the GPU (`shaders/conv2d.wgsl`), twin of `cpu/conv2d.rs`: stride 1, valid padding,
//! NCHW activations, OIHW weights. Every output element is summed by one invocation in a fixed
//! order (gathers, never scatters; the weight gradient adds fixed chunks of partial sums in chunk
//! order), so results are bit-reproducible.
//!
//! The kernels are register-blocked for CPU adapters (lavapipe): each invocation owns a block of
//! 32 channels x 8 row segments (or (in channel, ky) pairs) x 4 columns (or kx) and reuses every
//! value it loads across the block. The block shape is fixed in the shader; the host counts the
//! blocks of a geometry (the shader's header comments describe each kernel's scheme).

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare, compare_exact, random_vec, Comparison, CrossCheck};
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

/// Invocations per workgroup of the blocked kernels (`BLOCK_WORKGROUP` in the shader).
const BLOCK_WORKGROUP: usize = 16;
/// Channels of a block (one `Tile`; `BLOCK_CHANNELS` in the shader).
const BLOCK_CHANNELS: usize = 32;
/// Row segments (forward, input gradient) or (in channel, ky) pairs (weight gradient) of a block
/// (`BLOCK_ROWS`).
const BLOCK_ROWS: usize = 8;
/// Columns (forward, input gradient) or kx (weight gradient) of a block (`BLOCK_COLS`).
const BLOCK_COLS: usize = 4;
/// The weight gradient splits the batch into chunks until about this many invocations run: more
/// chunks keep more threads busy but make the final sum longer. 192 is 12 workgroups, an even
/// share for lavapipe's threads on 2, 3, 4 or 6 cores.
const WEIGHT_GRAD_INVOCATIONS: usize = 192;
const MAX_GROUPS_PER_DIM: usize = 65535;

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
    /// Invocations that do work.
    len: u32,
    /// Blocks of columns per row (forward, input gradient) or of kx (weight gradient).
    col_blocks: u32,
    /// Blocks of row segments (forward, input gradient) or of (ci, ky) pairs (weight gradient).
    row_blocks: u32,
    /// Weight gradient: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    /// Weight gradient and reduction: chunks of partial sums.
    chunks: u32,
    /// Reduction: where the summed elements start in each chunk, and the elements per chunk.
    partial_first: u32,
    partial_stride: u32,
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("conv2d: size fits in u32")
}

impl Conv2dParams {
    fn new(g: Conv2dGeometry, n: usize) -> Conv2dParams {
        let out = g.output();
        Conv2dParams {
            batch: u(n),
            in_channels: u(g.input.channels),
            in_height: u(g.input.height),
            in_width: u(g.input.width),
            out_channels: u(g.out_channels),
            out_height: u(out.height),
            out_width: u(out.width),
            kernel: u(g.kernel),
            ..Zeroable::zeroed()
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

/// Workgroups for `lanes` invocations of a blocked kernel, folded into 2-D past 65535 groups
/// (the shader's `block_lane`). Extra invocations return early.
fn block_grid(lanes: usize) -> [u32; 3] {
    let groups = lanes.div_ceil(BLOCK_WORKGROUP).max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [u(x), u(groups.div_ceil(x)), 1]
}

/// How the weight gradient splits its sum over the `rows` row segments of a batch: `chunks`
/// chunks of `chunk_rows` each (the last may be shorter). Depends only on the geometry, so the
/// summation order, and with it every bit of the result, is the same on every run.
fn weight_grad_chunks(rows: usize, per_chunk: usize) -> (usize, usize) {
    let rows = rows.max(1);
    let wanted = WEIGHT_GRAD_INVOCATIONS
        .div_ceil(per_chunk.max(1))
        .clamp(1, rows);
    let chunk_rows = rows.div_ceil(wanted);
    (rows.div_ceil(chunk_rows), chunk_rows)
}

pub struct Conv2dKernels {
    forward: Kernel,
    backward_input: Kernel,
    backward_weights: Kernel,
    /// The weight gradient with blocks of `BLOCK_ROWS / 2` pairs, for layers with so few
    /// (in channel, ky) pairs that full blocks would be mostly empty.
    backward_weights_narrow: Kernel,
    reduce: Kernel,
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
            backward_weights_narrow: Kernel::new(
                ctx,
                &module,
                "conv2d_backward_weights_narrow",
                &[Uniform, Read, ReadWrite, Read],
            ),
            reduce: Kernel::new(ctx, &module, "conv2d_reduce", &[Uniform, Read, ReadWrite]),
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
        let out = g.output();
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&y, n * out.len(), "y");
        let col_blocks = out.width.div_ceil(BLOCK_COLS);
        let row_blocks = (n * out.height).div_ceil(BLOCK_ROWS);
        let lanes = col_blocks * row_blocks * g.out_channels.div_ceil(BLOCK_CHANNELS);
        let params = Conv2dParams {
            relu: u32::from(relu),
            len: u(lanes),
            col_blocks: u(col_blocks),
            row_blocks: u(row_blocks),
            ..Conv2dParams::new(g, n)
        };
        let params = uniform(ctx, "conv2d params", &params);
        self.forward
            .dispatch(ctx, &[View::whole(&params), x, y, w, b], block_grid(lanes))
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
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&dx, n * g.input.len(), "dx");
        let col_blocks = g.input.width.div_ceil(BLOCK_COLS);
        let row_blocks = (n * g.input.height).div_ceil(BLOCK_ROWS);
        let lanes = col_blocks * row_blocks * g.input.channels.div_ceil(BLOCK_CHANNELS);
        let params = Conv2dParams {
            len: u(lanes),
            col_blocks: u(col_blocks),
            row_blocks: u(row_blocks),
            ..Conv2dParams::new(g, n)
        };
        let params = uniform(ctx, "conv2d params", &params);
        self.backward_input
            .dispatch(ctx, &[View::whole(&params), dy, dx, w], block_grid(lanes))
    }

    /// dw and db summed over the batch (deterministic order). Returns the dispatches to record in
    /// order: partial sums of dw and db per chunk of row segments into a scratch buffer, then
    /// the sums of the chunks (in chunk order) into dw, then into db.
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
        let kx_blocks = g.kernel.div_ceil(BLOCK_COLS);
        let pairs = g.input.channels * g.kernel;
        let (kernel, pairs_per_block) = if pairs <= BLOCK_ROWS / 2 {
            (&self.backward_weights_narrow, BLOCK_ROWS / 2)
        } else {
            (&self.backward_weights, BLOCK_ROWS)
        };
        let pair_blocks = pairs.div_ceil(pairs_per_block);
        let per_chunk = kx_blocks * pair_blocks * g.out_channels.div_ceil(BLOCK_CHANNELS);
        let rows = n * g.output().height;
        let (mut chunks, mut chunk_rows) = weight_grad_chunks(rows, per_chunk);
        // Each chunk holds the partial dw, then the partial db.
        let stride = weight_len(g) + g.out_channels;
        // Owned by the bind groups of the dispatches below, which keep it alive. If the chunks do
        // not fit in one binding, one chunk (the size of dw and db) does.
        let partials = storage(ctx, "conv2d partial sums", (4 * chunks * stride) as u64)
            .or_else(|_| {
                (chunks, chunk_rows) = (1, rows.max(1));
                storage(ctx, "conv2d partial sums", 4 * stride as u64)
            })
            .expect("conv2d: dw and db fit in one storage binding");
        let base = Conv2dParams {
            col_blocks: u(kx_blocks),
            row_blocks: u(pair_blocks),
            chunk_rows: u(chunk_rows),
            chunks: u(chunks),
            partial_stride: u(stride),
            ..Conv2dParams::new(g, n)
        };
        let lanes = per_chunk * chunks;
        let sums = uniform(
            ctx,
            "conv2d params",
            &Conv2dParams {
                len: u(lanes),
                ..base
            },
        );
        let reduce = |first: usize, len: usize, out: View| {
            let params = uniform(
                ctx,
                "conv2d params",
                &Conv2dParams {
                    len: u(len),
                    partial_first: u(first),
                    ..base
                },
            );
            self.reduce.dispatch(
                ctx,
                &[View::whole(&params), View::whole(&partials), out],
                grid_1d(len),
            )
        };
        vec![
            kernel.dispatch(
                ctx,
                &[View::whole(&sums), x, View::whole(&partials), dy],
                block_grid(lanes),
            ),
            reduce(0, weight_len(g), dw),
            reduce(weight_len(g), g.out_channels, db),
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

/// The real first and second layers (the first takes the narrow weight-gradient kernel), then
/// odd sizes: a small k2 on a non-square image with a batch of 33, a k5 kernel nearly as large as its 6x5 input, partial blocks everywhere (35 in
/// and 37 out channels: a full block of 32 and a partial one; 18 row segments; widths 9 and 14;
/// 210 (ci, ky) pairs; a k6 kernel spanning two kx blocks), and a 1x1 kernel with one output
/// channel.
const CASES: [Case; 6] = [
    case(1, Shape::new(1, 28, 28), 32, 3),
    case(7, Shape::new(32, 13, 13), 64, 3),
    case(33, Shape::new(3, 7, 9), 5, 2),
    case(2, Shape::new(5, 6, 5), 3, 5),
    case(3, Shape::new(35, 11, 14), 37, 6),
    case(5, Shape::new(2, 4, 4), 1, 1),
];

/// Forward (with and without the fused ReLU), backward input, and backward weights and bias
/// against the CPU, for every case; then every kernel run twice on the second layer must give
/// the same bits.
pub fn checks() -> Vec<CrossCheck> {
    let rerun = CASES[1];
    let rerun_shape = format!(
        "n {}, {}x{}x{} -> {} k{}, twice",
        rerun.n,
        rerun.g.input.channels,
        rerun.g.input.height,
        rerun.g.input.width,
        rerun.g.out_channels,
        rerun.g.kernel
    );
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
        .chain([CrossCheck::new(
            "conv2d (bit-reproducible)",
            rerun_shape,
            move |ctx| check_reproducible(ctx, rerun),
        )])
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

/// Every output of every kernel, as bits, from one run on fresh buffers.
fn run_all_bits(ctx: &GpuContext, case: Case, data: &CaseData) -> Result<Vec<u32>> {
    let (g, n) = (case.g, case.n);
    let (x, w, b, dy) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
        storage_init(ctx, "dy", &data.dy)?,
    );
    let y_len = n * g.output().len();
    let y = storage(ctx, "y", 4 * y_len as u64)?;
    let dx = storage(ctx, "dx", 4 * (n * g.input.len()) as u64)?;
    let dw = storage(ctx, "dw", 4 * weight_len(g) as u64)?;
    let db = storage(ctx, "db", 4 * g.out_channels as u64)?;
    let kernels = Conv2dKernels::new(ctx);
    let mut dispatches = vec![
        kernels.forward(
            ctx,
            g,
            n,
            true,
            (&x).into(),
            (&w).into(),
            (&b).into(),
            (&y).into(),
        ),
        kernels.backward_input(ctx, g, n, (&dy).into(), (&w).into(), (&dx).into()),
    ];
    dispatches.extend(kernels.backward_weights(
        ctx,
        g,
        n,
        (&x).into(),
        (&dy).into(),
        (&dw).into(),
        (&db).into(),
    ));
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let mut bits = Vec::new();
    for (buffer, len) in [
        (&y, y_len),
        (&dx, n * g.input.len()),
        (&dw, weight_len(g)),
        (&db, g.out_channels),
    ] {
        bits.extend(
            read_buffer::<f32>(ctx, buffer, 0, len)?
                .iter()
                .map(|v| v.to_bits()),
        );
    }
    Ok(bits)
}

fn check_reproducible(ctx: &GpuContext, case: Case) -> Result<Comparison> {
    let data = CaseData::new(case);
    let first = run_all_bits(ctx, case, &data)?;
    Ok(compare_exact(&run_all_bits(ctx, case, &data)?, &first))
}
