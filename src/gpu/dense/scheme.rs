//! The dense matmul kernels (`Scheme`) that the variants run: their entry points, where each
//! fits, how many workgroups it launches, and the products' uniform. Twin: `cpu/dense.rs`.

use crate::cpu::dense::DenseGeometry;
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Access, Kernel};
use crate::wgsl_struct;

pub(super) const MAX_GROUPS_PER_DIM: usize = 65535;

/// (row stride, column stride) in elements of a matrix as the kernel reads it.
pub(super) type Strides = [u32; 2];

/// A row-major matrix with `cols` columns.
pub(super) fn row_major(cols: usize) -> Strides {
    [u(cols), 1]
}

/// The transpose of a row-major matrix with `cols` columns.
pub(super) fn transposed(cols: usize) -> Strides {
    [1, u(cols)]
}

pub(super) fn u(v: usize) -> u32 {
    u32::try_from(v).expect("dense: size fits in u32")
}

wgsl_struct! {
    /// The matmuls' uniform (`params` in `common.wgsl`): `C = A B` with `A` as `rows x inner`,
    /// `B` as `inner x cols`, and `C` row-major.
    pub struct MatmulParams {
        pub(super) rows: u32,
        pub(super) cols: u32,
        pub(super) inner: u32,
        _pad: u32,
        /// (row stride, column stride) in elements of each operand.
        pub(super) a_strides: Strides = "vec2<u32>",
        pub(super) b_strides: Strides = "vec2<u32>",
    }
}

impl MatmulParams {
    /// `C = A B` for `rows x inner` A and `inner x cols` B read through `strides` (A's, B's).
    pub(super) fn new(
        (rows, inner, cols): (usize, usize, usize),
        strides: [Strides; 2],
    ) -> MatmulParams {
        MatmulParams {
            rows: u(rows),
            cols: u(cols),
            inner: u(inner),
            _pad: 0,
            a_strides: strides[0],
            b_strides: strides[1],
        }
    }

    /// `y = x w^T` for `n` rows of x.
    pub(super) fn forward(g: DenseGeometry, n: usize) -> MatmulParams {
        let strides = [row_major(g.inputs), transposed(g.inputs)];
        MatmulParams::new((n, g.inputs, g.outputs), strides)
    }

    /// `dx = dy w`.
    pub(super) fn backward_input(g: DenseGeometry, n: usize) -> MatmulParams {
        let strides = [row_major(g.outputs), row_major(g.inputs)];
        MatmulParams::new((n, g.outputs, g.inputs), strides)
    }

    /// `dw = dy^T x`; the bias gradient reads dy^T through the same A strides.
    pub(super) fn backward_weights(g: DenseGeometry, n: usize) -> MatmulParams {
        let strides = [transposed(g.outputs), row_major(g.inputs)];
        MatmulParams::new((g.outputs, n, g.inputs), strides)
    }
}

/// Side of the square output tile one workgroup of the tiled kernel computes (`TILE`).
const TILE: usize = 16;
/// What one invocation of a register-blocked kernel owns, and the invocations of a workgroup,
/// as in the shader (`<NAME>_M`, `<NAME>_N` or, for axpy, `AXPY_V`, and `<NAME>_LANES`).
#[derive(Clone, Copy)]
struct Block {
    rows: usize,
    /// Columns; for axpy, vec4s of columns.
    cols: usize,
    lanes: usize,
}
const RB: Block = Block {
    rows: 4,
    cols: 4,
    lanes: 8,
};
const DOT: Block = Block {
    rows: 4,
    cols: 8,
    lanes: 8,
};
const AXPY: Block = Block {
    rows: 4,
    cols: 4,
    lanes: 8,
};
/// The tiled variant splits k (a workgroup per output) for products of at most this many
/// outputs with at least `SPLIT_MIN_INNER` terms each: there the output tiles are too few to
/// fill a GPU, and each would walk the long k alone (the seed model's classifier: 1280
/// outputs of 1600 terms at batch 128, 111 us tiled on an H200).
const SPLIT_MAX_OUTPUTS: usize = 16384;
const SPLIT_MIN_INNER: usize = 256;

/// One matmul kernel family of the shader: its entry points and launch shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
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
    pub(super) fn entry(self, bias: bool) -> Option<&'static str> {
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
    pub(super) fn fits(self, p: &MatmulParams) -> bool {
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
    pub(super) fn grid(self, rows: usize, cols: usize) -> [u32; 3] {
        let (x, y) = match self {
            Scheme::Tiled => (cols.div_ceil(TILE), rows.div_ceil(TILE)),
            Scheme::Split => (cols, rows),
            Scheme::General => (cols.div_ceil(RB.cols), rows.div_ceil(RB.rows * RB.lanes)),
            Scheme::Dot => (cols.div_ceil(DOT.cols), rows.div_ceil(DOT.rows * DOT.lanes)),
            Scheme::Axpy => (
                cols.div_ceil(4 * AXPY.cols * AXPY.lanes),
                rows.div_ceil(AXPY.rows),
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

/// The scheme that runs `p` (with a bias when `bias`): the first of a variant's `schemes`
/// (most preferred first) that has the entry point and fits.
pub(super) fn choose(schemes: &[Scheme], p: &MatmulParams, bias: bool) -> Scheme {
    schemes
        .iter()
        .copied()
        .find(|s| s.entry(bias).is_some() && s.fits(p))
        .expect("dense: every variant ends with a scheme that fits any product")
}

/// The kernels of a variant's schemes, with and without the bias, from one module.
pub(super) struct SchemeKernels(Vec<(Scheme, bool, Kernel)>);

impl SchemeKernels {
    /// The entry points of `schemes` in `module`, reading A and B from textures where
    /// `textures`.
    pub(super) fn new(
        ctx: &GpuContext,
        module: &wgpu::ShaderModule,
        schemes: &[Scheme],
        textures: bool,
    ) -> SchemeKernels {
        use Access::*;
        let s = if textures { Texture } else { Read };
        let kernels = schemes
            .iter()
            .flat_map(|&scheme| [(scheme, false), (scheme, true)])
            .filter_map(|(scheme, bias)| {
                let bindings: &[Access] = if bias {
                    &[Uniform, s, ReadWrite, s, Read]
                } else {
                    &[Uniform, s, ReadWrite, s]
                };
                let kernel = Kernel::new(ctx, module, scheme.entry(bias)?, bindings);
                Some((scheme, bias, kernel))
            })
            .collect();
        SchemeKernels(kernels)
    }

    /// The kernel of `scheme`, with the bias where `bias`.
    pub(super) fn get(&self, scheme: Scheme, bias: bool) -> &Kernel {
        self.0
            .iter()
            .find(|(s, b, _)| (*s, *b) == (scheme, bias))
            .map(|(.., kernel)| kernel)
            .expect("dense: a variant runs only its own schemes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernel::shader_const;

    #[test]
    fn host_block_sizes_match_the_shaders() {
        let (tiled, blocked) = (
            crate::shader_file!("dense/tiled.wgsl"),
            crate::shader_file!("dense/register_blocked.wgsl"),
        );
        let source = [tiled.text, blocked.text].concat();
        assert_eq!(shader_const(&source, "TILE"), TILE);
        for (name, block, cols) in [("RB", RB, "N"), ("DOT", DOT, "N"), ("AXPY", AXPY, "V")] {
            for (suffix, host) in [
                ("M", block.rows),
                (cols, block.cols),
                ("LANES", block.lanes),
            ] {
                let name = format!("{name}_{suffix}");
                assert_eq!(shader_const(&source, &name), host, "{name}");
            }
        }
    }
}
