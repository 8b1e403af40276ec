//! The dense matmul kernels of each variant (`Scheme`): which entry points a variant runs, where
//! each fits and how many workgroups it launches. Twin: `cpu/dense.rs`.

use super::{MatmulParams, MAX_GROUPS_PER_DIM};
use crate::gpu::variant::Variant;

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
/// Every register-blocked variant runs the same kernels (the subgroup ones, which dense does not
/// offer, would run them too).
fn schemes(variant: Variant) -> &'static [Scheme] {
    if variant.is_register_blocked() {
        &[Scheme::Dot, Scheme::Axpy, Scheme::General]
    } else {
        &[Scheme::Split, Scheme::Tiled]
    }
}

/// The scheme that runs `p` (with a bias when `bias`): the variant's first that has the entry
/// point and fits.
pub(super) fn choose(variant: Variant, p: &MatmulParams, bias: bool) -> Scheme {
    schemes(variant)
        .iter()
        .copied()
        .find(|s| s.entry(bias).is_some() && s.fits(p))
        .expect("dense: every variant ends with a scheme that fits any product")
}

/// Every scheme with a kernel, each once.
pub(super) const ALL_SCHEMES: [Scheme; 5] = [
    Scheme::Tiled,
    Scheme::Split,
    Scheme::General,
    Scheme::Dot,
    Scheme::Axpy,
];

#[cfg(test)]
mod tests {
    use super::super::{row_major, transposed, REGISTER_BLOCKED, TILED};
    use super::*;
    use crate::gpu::kernel::shader_const;

    #[test]
    fn host_block_sizes_match_the_shaders() {
        let source = [TILED.text, REGISTER_BLOCKED.text].concat();
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
            assert_eq!(shader_const(&source, name), host, "{name}");
        }
    }

    #[test]
    fn the_real_layer_uses_the_vec4_and_split_schemes() {
        use Variant::*;
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
