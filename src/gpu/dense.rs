//! Dense layers on the GPU (`shaders/dense.wgsl`), twin of `cpu/dense.rs`. Every pass is a
//! matrix multiply with different operand strides, so transposes cost nothing; each output
//! element is summed in a fixed order (bit-reproducible).
//!
//! Two variants of the multiply ([`MatmulVariant`]): shared-memory tiles for real GPUs (or, for
//! few outputs with a long k, a workgroup per output splitting k), and
//! register blocks without shared memory for CPU adapters such as lavapipe. Every pass takes the
//! variant to run (the autotuner times both, or [`MatmulVariant::for_adapter`] decides); the
//! register-blocked variant further picks, per pass, the first of its kernels whose vec4 access
//! fits the operands' layout (`Scheme`). The cross-checks run every case through both variants.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, compile_register_blocked, run, Access, Dispatch, Kernel, Resource};
use super::texture::{self, texture_reads, Staged, Texel, TEXTURE_WIDTH};
use crate::cpu::dense::{
    dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry,
};
use crate::cpu::float::{Float, MatMut, MatRef};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/dense.wgsl");

/// Side of the square output tile one workgroup of the tiled kernel computes (`TILE`).
const TILE: usize = 16;
/// Register-blocked kernels: rows x columns of the block one invocation owns and invocations per
/// workgroup, as in the shader. `AXPY_V` counts vec4s of columns.
const RB_M: usize = 4;
const RB_N: usize = 4;
const RB_LANES: usize = 8;
const DOT_M: usize = 4;
const DOT_N: usize = 8;
const DOT_LANES: usize = 8;
const AXPY_M: usize = 4;
const AXPY_V: usize = 4;
const AXPY_LANES: usize = 8;
const MAX_GROUPS_PER_DIM: usize = 65535;
/// The tiled variant splits k (a workgroup per output) for products of at most this many
/// outputs with at least `SPLIT_MIN_INNER` terms each: there the output tiles are too few to
/// fill a GPU, and each would walk the long k alone (the seed model's classifier: 1280
/// outputs of 1600 terms at batch 128, 111 us tiled on an H200).
const SPLIT_MAX_OUTPUTS: usize = 16384;
const SPLIT_MIN_INNER: usize = 256;

/// Which matrix-multiply kernels the dense passes run. Both sum every output in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Shared-memory tiles, one `TILE x TILE` workgroup per output tile, or one workgroup per
    /// output splitting k where outputs are few and k long: fast on real GPUs.
    Tiled,
    /// No shared memory or barriers: each invocation keeps a block of outputs in registers (so
    /// each loaded value serves several outputs) and loads four floats at a time where the
    /// layout allows. Fast on CPU adapters (lavapipe), where a workgroup is SIMD lanes on one
    /// CPU thread and barriers, workgroup memory and every load are expensive (Mesa 22.3's
    /// llvmpipe loads storage and workgroup memory one lane at a time).
    RegisterBlocked,
    /// The same kernels reading A and B from rgba32float textures copied from the buffers
    /// before the pass: on lavapipe without AVX-512 each storage load stalls once per lane
    /// (see `gpu::texture`).
    RegisterBlockedTexture,
}

impl MatmulVariant {
    pub const ALL: [MatmulVariant; 3] = [
        MatmulVariant::Tiled,
        MatmulVariant::RegisterBlocked,
        MatmulVariant::RegisterBlockedTexture,
    ];

    /// The variant for an adapter, by a fixed rule: CPU adapters (`wgpu::DeviceType::Cpu`, such
    /// as lavapipe/llvmpipe) get `RegisterBlocked`, everything else `Tiled`.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> MatmulVariant {
        match info.device_type {
            wgpu::DeviceType::Cpu => MatmulVariant::RegisterBlocked,
            _ => MatmulVariant::Tiled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Tiled => "tiled",
            MatmulVariant::RegisterBlocked => "register-blocked",
            MatmulVariant::RegisterBlockedTexture => "register-blocked-texture",
        }
    }
}

impl super::variant::Variant for MatmulVariant {
    fn name(self) -> &'static str {
        MatmulVariant::name(self)
    }
}

impl std::fmt::Display for MatmulVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// One matmul kernel family of the shader: its entry points and launch shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `dense_matmul[_bias]`: any strides.
    Tiled,
    /// `dense_matmul[_bias]_split`: any strides; few outputs, long k.
    Split,
    /// `dense_matmul[_bias]_rb`: any strides.
    General,
    /// `dense_matmul[_bias]_dot`: A and B read as vec4 along k.
    Dot,
    /// `dense_matmul_axpy`: B and C read and written as vec4 along columns; no bias entry.
    Axpy,
}

impl Scheme {
    /// The entry point, or `None` where the scheme has none for this case.
    fn entry(self, bias: bool) -> Option<&'static str> {
        match (self, bias) {
            (Scheme::Tiled, false) => Some("dense_matmul"),
            (Scheme::Tiled, true) => Some("dense_matmul_bias"),
            (Scheme::Split, false) => Some("dense_matmul_split"),
            (Scheme::Split, true) => Some("dense_matmul_bias_split"),
            (Scheme::General, false) => Some("dense_matmul_rb"),
            (Scheme::General, true) => Some("dense_matmul_bias_rb"),
            (Scheme::Dot, false) => Some("dense_matmul_dot"),
            (Scheme::Dot, true) => Some("dense_matmul_bias_dot"),
            (Scheme::Axpy, false) => Some("dense_matmul_axpy"),
            (Scheme::Axpy, true) => None,
        }
    }

    /// Whether the scheme can compute `p`. The vec4 schemes need the operands they read four at
    /// a time to be contiguous in that direction with every group of four aligned (so each
    /// vec4 lies inside its matrix), and no empty matrix (a vec4 binding needs 16 bytes).
    fn fits(self, p: &MatmulParams) -> bool {
        let four = |v: u32| v.is_multiple_of(4);
        let nonempty = p.rows > 0 && p.cols > 0 && p.inner > 0;
        match self {
            Scheme::Tiled | Scheme::General => true,
            Scheme::Split => {
                (p.rows as usize) * (p.cols as usize) <= SPLIT_MAX_OUTPUTS
                    && p.inner as usize >= SPLIT_MIN_INNER
            }
            Scheme::Dot => {
                nonempty
                    && p.a_strides[1] == 1
                    && four(p.a_strides[0])
                    && p.b_strides[0] == 1
                    && four(p.b_strides[1])
                    && four(p.inner)
            }
            Scheme::Axpy => nonempty && p.b_strides[1] == 1 && four(p.b_strides[0]) && four(p.cols),
        }
    }

    /// Workgroups covering a `rows x cols` output (x: columns, y: rows).
    fn grid(self, rows: usize, cols: usize) -> [u32; 3] {
        let (x, y) = match self {
            Scheme::Tiled => (cols.div_ceil(TILE), rows.div_ceil(TILE)),
            Scheme::Split => (cols, rows),
            Scheme::General => (cols.div_ceil(RB_N), rows.div_ceil(RB_M * RB_LANES)),
            Scheme::Dot => (cols.div_ceil(DOT_N), rows.div_ceil(DOT_M * DOT_LANES)),
            Scheme::Axpy => (
                cols.div_ceil(4 * AXPY_V * AXPY_LANES),
                rows.div_ceil(AXPY_M),
            ),
        };
        let (x, y) = (x.max(1), y.max(1));
        assert!(
            x <= MAX_GROUPS_PER_DIM && y <= MAX_GROUPS_PER_DIM,
            "dense: {rows} x {cols} output needs too many workgroups"
        );
        [x as u32, y as u32, 1]
    }
}

/// The schemes a variant uses, most preferred first (the last of each list fits every product).
fn schemes(variant: MatmulVariant) -> &'static [Scheme] {
    match variant {
        MatmulVariant::Tiled => &[Scheme::Split, Scheme::Tiled],
        MatmulVariant::RegisterBlocked | MatmulVariant::RegisterBlockedTexture => {
            &[Scheme::Dot, Scheme::Axpy, Scheme::General]
        }
    }
}

/// The scheme that runs `p` (with a bias when `bias`): the variant's first that has the entry
/// point and fits.
fn choose(variant: MatmulVariant, p: &MatmulParams, bias: bool) -> Scheme {
    schemes(variant)
        .iter()
        .copied()
        .find(|s| s.entry(bias).is_some() && s.fits(p))
        .expect("dense: every variant ends with a scheme that fits any product")
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_elements(view: &View, elements: usize, name: &str) {
    assert!(
        view.size >= 4 * elements as u64,
        "dense: {name} holds {} bytes, needs {elements} f32",
        view.size
    );
}

/// A compiled matmul entry point.
struct MatmulKernel {
    scheme: Scheme,
    bias: bool,
    /// Whether it reads A and B from textures (the register-blocked-texture variant).
    textures: bool,
    kernel: Kernel,
}

pub struct DenseKernels {
    /// Every entry point of every scheme, and the register-blocked ones reading textures.
    matmuls: Vec<MatmulKernel>,
    backward_bias: Kernel,
}

/// dense.wgsl with A (binding 1) and B (binding 3) read from rgba32float textures, four
/// consecutive floats a texel (`Texel::Vec4`): each `a4[i]` becomes `a4_at(i)`, a texel, and
/// each `a[i]` becomes `a_element(i)`, a component of one; likewise for B.
fn texture_source() -> String {
    let mut source = SOURCE.to_string();
    for (name, binding) in [("a", 1), ("b", 3)] {
        let scalar =
            format!("@group(0) @binding({binding}) var<storage, read> {name}: array<f32>;\n");
        let vector = format!(
            "@group(0) @binding({binding}) var<storage, read> {name}4: array<vec4<f32>>;\n"
        );
        assert!(
            source.contains(&scalar) && source.contains(&vector),
            "dense.wgsl declares {name} and {name}4"
        );
        let texture = format!(
            "@group(0) @binding({binding}) var {name}_texture: texture_2d<f32>;\n\
             fn {name}4_at(i: u32) -> vec4<f32> {{\n    \
             return textureLoad({name}_texture, vec2<u32>(i % {TEXTURE_WIDTH}u, i / {TEXTURE_WIDTH}u), 0);\n}}\n\
             fn {name}_element(i: u32) -> f32 {{\n    return {name}4_at(i / 4u)[i % 4u];\n}}\n"
        );
        source = source.replace(&scalar, "").replace(&vector, &texture);
        source = texture_reads(&source, &format!("{name}4"), &format!("{name}4_at"));
        source = texture_reads(&source, name, &format!("{name}_element"));
    }
    source
}

/// The texture holding the whole of `view` as rgba32float texels, and its copy; `None` where
/// that cannot be (a view that does not start on a texel, or one too large).
fn staged_vec4(ctx: &GpuContext, view: View) -> Option<Staged> {
    let texels = view.size.div_ceil(Texel::Vec4.bytes());
    let inside = view.offset + texels * Texel::Vec4.bytes() <= view.buffer.size();
    inside
        .then(|| texture::stage(ctx, view, texels as usize, Texel::Vec4))
        .flatten()
}

/// Every scheme with a kernel, each once.
const ALL_SCHEMES: [Scheme; 5] = [
    Scheme::Tiled,
    Scheme::Split,
    Scheme::General,
    Scheme::Dot,
    Scheme::Axpy,
];

impl DenseKernels {
    /// The kernels of both variants.
    pub fn new(ctx: &GpuContext) -> DenseKernels {
        let module = compile(ctx, "dense.wgsl", SOURCE);
        let blocked_module = compile_register_blocked(ctx, "dense.wgsl", SOURCE);
        let texture_module =
            compile_register_blocked(ctx, "dense.wgsl (textures)", &texture_source());
        use Access::*;
        let matmuls = ALL_SCHEMES
            .iter()
            .flat_map(|&scheme| [(scheme, false), (scheme, true)])
            .flat_map(|(scheme, bias)| [(scheme, bias, false), (scheme, bias, true)])
            .filter_map(|(scheme, bias, textures)| {
                let name = scheme.entry(bias)?;
                let module = match (scheme, textures) {
                    (Scheme::Tiled | Scheme::Split, false) => &module,
                    (Scheme::Tiled | Scheme::Split, true) => return None,
                    (_, false) => &blocked_module,
                    (_, true) => &texture_module,
                };
                let s = if textures { Texture } else { Read };
                let bindings: &[Access] = if bias {
                    &[Uniform, s, ReadWrite, s, Read]
                } else {
                    &[Uniform, s, ReadWrite, s]
                };
                Some(MatmulKernel {
                    scheme,
                    bias,
                    textures,
                    kernel: Kernel::new(ctx, module, name, bindings),
                })
            })
            .collect();
        DenseKernels {
            matmuls,
            backward_bias: Kernel::new(
                ctx,
                &module,
                "dense_backward_bias",
                &[Uniform, Read, ReadWrite],
            ),
        }
    }

    /// A dispatch of `c = a b` (`+ bias[col]` when given) with the first scheme of `variant`
    /// that fits.
    fn matmul(
        &self,
        ctx: &GpuContext,
        variant: MatmulVariant,
        p: MatmulParams,
        (a, b, c): (View, View, View),
        bias: Option<View>,
    ) -> Dispatch {
        let scheme = choose(variant, &p, bias.is_some());
        // The texture variant's textures, or None to read the buffers.
        let staged = (variant == MatmulVariant::RegisterBlockedTexture)
            .then(|| Some((staged_vec4(ctx, a)?, staged_vec4(ctx, b)?)))
            .flatten();
        let m = self
            .matmuls
            .iter()
            .find(|m| {
                m.scheme == scheme && m.bias == bias.is_some() && m.textures == staged.is_some()
            })
            .expect("dense: every scheme's kernels are compiled");
        let grid = scheme.grid(p.rows as usize, p.cols as usize);
        let params = uniform(ctx, "dense params", &p);
        let mut resources: Vec<Resource> =
            vec![View::whole(&params).into(), a.into(), c.into(), b.into()];
        resources.extend(bias.map(Resource::from));
        let Some((a, b)) = staged else {
            return m.kernel.dispatch_resources(ctx, &resources, grid);
        };
        resources[1] = Resource::Texture(&a.view);
        resources[3] = Resource::Texture(&b.view);
        let mut dispatch = m.kernel.dispatch_resources(ctx, &resources, grid);
        dispatch.copies = vec![a.copy, b.copy];
        dispatch
    }

    /// `c = a b` for a row-major `rows x inner` A and `inner x cols` B: the calibration
    /// multiply of `bench`.
    pub fn matmul_row_major(
        &self,
        ctx: &GpuContext,
        variant: MatmulVariant,
        (rows, inner, cols): (usize, usize, usize),
        (a, b, c): (View, View, View),
    ) -> Dispatch {
        expect_elements(&a, rows * inner, "a");
        expect_elements(&b, inner * cols, "b");
        expect_elements(&c, rows * cols, "c");
        let p = MatmulParams::new(rows, cols, inner, row_major(inner), row_major(cols));
        self.matmul(ctx, variant, p, (a, b, c), None)
    }

    /// `y = x w^T + b` for `n` rows of `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: MatmulVariant,
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
        self.matmul(ctx, variant, params, (x, w, y), Some(b))
    }

    /// `dx = dy w`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: MatmulVariant,
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
        self.matmul(ctx, variant, params, (dy, w, dx), None)
    }

    /// `dw = dy^T x` and `db` = the batch sum of `dy`. Returns the dispatches to record (they are
    /// independent: one writes dw, the other db). Both read `dy^T` through the same params.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: MatmulVariant,
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
        let bias_params = uniform(ctx, "dense params", &params);
        vec![
            self.matmul(ctx, variant, params, (dy, x, dw), None),
            self.backward_bias.dispatch(
                ctx,
                &[View::whole(&bias_params), dy, db],
                row_groups(g.outputs),
            ),
        ]
    }
}

/// One workgroup per row of `rows`, folded into 2-D past 65535 (`dense_backward_bias`).
fn row_groups(rows: usize) -> [u32; 3] {
    let rows = rows.max(1);
    let x = rows.min(MAX_GROUPS_PER_DIM);
    [x as u32, rows.div_ceil(x) as u32, 1]
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
    let calibration = MatmulVariant::ALL.into_iter().flat_map(|variant| {
        CALIBRATION_CASES.into_iter().map(move |(m, k, n)| {
            let shape = format!("{m}x{k} times {k}x{n}, {variant}");
            CrossCheck::new("dense_matmul (calibration)", shape, move |ctx| {
                check_calibration(ctx, variant, (m, k, n))
            })
        })
    });
    MatmulVariant::ALL
        .into_iter()
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
        })
        .chain(calibration)
        .collect()
}

fn check_calibration(
    ctx: &GpuContext,
    variant: MatmulVariant,
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

fn check_forward(ctx: &GpuContext, variant: MatmulVariant, case: Case) -> Result<Comparison> {
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
            variant,
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

fn check_backward_input(
    ctx: &GpuContext,
    variant: MatmulVariant,
    case: Case,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (dy, w) = (
        storage_init(ctx, "dy", &data.dy)?,
        storage_init(ctx, "w", &data.w)?,
    );
    let dx = output(ctx, "dx", n * g.inputs)?;
    let kernels = DenseKernels::new(ctx);
    run(
        ctx,
        &[&kernels.backward_input(ctx, variant, g, n, (&dy).into(), (&w).into(), (&dx).into())],
    );
    let mut cpu = vec![0.0; n * g.inputs];
    dense_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer(ctx, &dx, 0, cpu.len())?, &cpu))
}

fn check_backward_weights(
    ctx: &GpuContext,
    variant: MatmulVariant,
    case: Case,
) -> Result<Comparison> {
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
        variant,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_texture_module_validates_and_reads_no_storage_a_or_b() {
        let source = texture_source();
        super::super::kernel::validated(&source);
        for indexing in [" a[", "(a[", " b[", "(b[", "a4[", "b4["] {
            assert!(!source.contains(indexing), "{indexing}");
        }
        assert!(source.contains("var a_texture: texture_2d<f32>"));
        assert!(source.contains("var b_texture: texture_2d<f32>"));
    }

    fn shader_const(name: &str) -> usize {
        super::super::kernel::shader_const(SOURCE, name)
    }

    #[test]
    fn host_block_sizes_match_the_shader() {
        for (name, host) in [
            ("TILE", TILE),
            ("RB_M", RB_M),
            ("RB_N", RB_N),
            ("RB_LANES", RB_LANES),
            ("DOT_M", DOT_M),
            ("DOT_N", DOT_N),
            ("DOT_LANES", DOT_LANES),
            ("AXPY_M", AXPY_M),
            ("AXPY_V", AXPY_V),
            ("AXPY_LANES", AXPY_LANES),
        ] {
            assert_eq!(shader_const(name), host, "{name}");
        }
    }

    #[test]
    fn the_real_layer_uses_the_vec4_and_split_schemes() {
        use MatmulVariant::*;
        // n = 32, 1600 -> 10, with the params forward, backward_input and backward_weights build.
        let forward = MatmulParams::new(32, 10, 1600, row_major(1600), transposed(1600));
        let input = MatmulParams::new(32, 1600, 10, row_major(10), row_major(1600));
        let weights = MatmulParams::new(10, 1600, 32, transposed(10), row_major(1600));
        assert_eq!(choose(RegisterBlocked, &forward, true), Scheme::Dot);
        assert_eq!(choose(RegisterBlocked, &input, false), Scheme::Axpy);
        assert_eq!(choose(RegisterBlocked, &weights, false), Scheme::Axpy);
        // The forward has 320 outputs of 1600 terms: the tiled variant splits k, so the
        // cross-checks' cases with 1600 inputs run dense_matmul_bias_split.
        assert_eq!(choose(Tiled, &forward, true), Scheme::Split);
        assert_eq!(choose(Tiled, &input, false), Scheme::Tiled);
        assert_eq!(choose(Tiled, &weights, false), Scheme::Tiled);
        let awkward = MatmulParams::new(33, 7, 300, row_major(300), transposed(300));
        assert_eq!(choose(Tiled, &awkward, true), Scheme::Split);
        // 33 inputs: nothing is aligned, so the general kernel runs.
        let odd = MatmulParams::new(7, 17, 33, row_major(33), transposed(33));
        assert_eq!(choose(RegisterBlocked, &odd, true), Scheme::General);
        assert_eq!(choose(RegisterBlocked, &odd, false), Scheme::General);
    }
}
