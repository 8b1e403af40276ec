//! The dense variants, registered in one list ([`VARIANTS`]), built once per device, and the
//! op's passes: each takes the variant to run and hands its multiply to that variant (or, where
//! it declines, to its fallback); the bias gradient, which every variant shares, is here.

use super::scheme::{row_major, MatmulParams, Strides, MAX_GROUPS_PER_DIM};
use super::{expect_elements, register_blocked, tiled, DenseMatmul, Product};
use crate::cpu::dense::DenseGeometry;
use crate::gpu::buffer::{uniform, View};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Access, Dispatch, Kernel, WgslModule};
use crate::gpu::variant::{self, Offer, Registered, Registration, Variant};
use crate::{shader_file, wgsl_struct};

/// Every dense variant, in the order the autotuner times them (`gpu::variant` says what a
/// registration holds; `docs/design.md` where each wins).
pub const VARIANTS: &[Registration<dyn DenseMatmul, ()>] = &[
    tiled::VARIANT,
    register_blocked::STORAGE,
    register_blocked::TEXTURE,
];

/// The bias gradient, which every variant runs.
const BACKWARD_BIAS_MODULE: WgslModule = WgslModule::new(
    "dense backward bias",
    &[
        BiasGradParams::WGSL,
        shader_file!("dense/backward_bias.wgsl"),
    ],
);

/// Every module of the op (for the shader tests and `gpu::ops`).
pub fn modules() -> Vec<WgslModule> {
    variant::modules(&[BACKWARD_BIAS_MODULE], VARIANTS)
}

wgsl_struct! {
    /// The bias gradient's uniform (`bias_params` in `backward_bias.wgsl`): `db[o]` sums
    /// `batch` rows of `dy`.
    struct BiasGradParams {
        outputs: u32,
        batch: u32,
        /// (output stride, row stride) of dy in elements.
        dy_strides: Strides = "vec2<u32>",
    }
}

pub struct DenseKernels {
    variants: Registered<dyn DenseMatmul>,
    backward_bias: Kernel,
}

impl DenseKernels {
    /// The kernels of every variant this adapter runs.
    pub fn new(ctx: &GpuContext) -> DenseKernels {
        use Access::*;
        DenseKernels {
            variants: Registered::build(ctx, VARIANTS, &()),
            // Params, dy, db.
            backward_bias: Kernel::new(
                ctx,
                &BACKWARD_BIAS_MODULE.compile(ctx),
                "dense_backward_bias",
                &[Uniform, Read, ReadWrite],
            ),
        }
    }

    /// The variants built on this adapter, in registry order.
    pub fn variants(&self) -> Vec<Variant> {
        self.variants.iter().map(|(v, _)| v).collect()
    }

    /// The variants of every dense pass on this adapter (all of them, each timed), and the
    /// rule's choice.
    pub fn offer(&self, info: &wgpu::AdapterInfo) -> Offer {
        Offer::all(&self.variants(), Variant::for_adapter(info))
    }

    /// A dispatch of `c = a b` (`+ bias[col]` when given) on `variant` (or its fallback).
    fn matmul(&self, ctx: &GpuContext, variant: Variant, product: Product) -> Dispatch {
        self.variants
            .first(variant, |v| v.matmul(ctx, &product))
            .expect("dense: the tiled variant runs every product")
    }

    /// `c = a b` for a row-major `rows x inner` A and `inner x cols` B: the calibration
    /// multiply of `bench`.
    pub fn matmul_row_major(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (rows, inner, cols): (usize, usize, usize),
        (a, b, c): (View, View, View),
    ) -> Dispatch {
        expect_elements(&a, rows * inner, "a");
        expect_elements(&b, inner * cols, "b");
        expect_elements(&c, rows * cols, "c");
        let p = MatmulParams::new((rows, inner, cols), [row_major(inner), row_major(cols)]);
        self.matmul(ctx, variant, Product::new(p, (a, b, c)))
    }

    /// `y = x w^T + b` for `n` rows of `x`.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (DenseGeometry, usize),
        [x, w, b, y]: [View; 4],
    ) -> Dispatch {
        expect_elements(&x, n * g.inputs, "x");
        expect_elements(&w, g.outputs * g.inputs, "w");
        expect_elements(&b, g.outputs, "b");
        expect_elements(&y, n * g.outputs, "y");
        let params = MatmulParams::forward(g, n);
        let product = Product::new(params, (x, w, y)).with_bias(b);
        self.matmul(ctx, variant, product)
    }

    /// `dx = dy w`.
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (DenseGeometry, usize),
        [dy, w, dx]: [View; 3],
    ) -> Dispatch {
        expect_elements(&dy, n * g.outputs, "dy");
        expect_elements(&w, g.outputs * g.inputs, "w");
        expect_elements(&dx, n * g.inputs, "dx");
        let params = MatmulParams::backward_input(g, n);
        self.matmul(ctx, variant, Product::new(params, (dy, w, dx)))
    }

    /// `dw = dy^T x` and `db` = the batch sum of `dy`. Returns the dispatches to record (they are
    /// independent: one writes dw, the other db). Both read `dy^T` through the same strides.
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (DenseGeometry, usize),
        [x, dy]: [View; 2],
        [dw, db]: [View; 2],
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.inputs, "x");
        expect_elements(&dy, n * g.outputs, "dy");
        expect_elements(&dw, g.outputs * g.inputs, "dw");
        expect_elements(&db, g.outputs, "db");
        let params = MatmulParams::backward_weights(g, n);
        let bias_params = BiasGradParams {
            outputs: params.rows,
            batch: params.inner,
            dy_strides: params.a_strides,
        };
        let bias_params = uniform(ctx, "dense bias-gradient params", &bias_params);
        vec![
            self.matmul(ctx, variant, Product::new(params, (dy, x, dw))),
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

#[cfg(test)]
mod tests {
    use super::super::scheme::Scheme;
    use super::super::{COMMON, READS_STORAGE, READS_TEXTURE};
    use super::*;
    use crate::gpu::kernel::{assert_entry_points, assert_struct_size, shader_const};
    use crate::gpu::texture;

    #[test]
    fn the_uniform_mirrors_match_the_shaders() {
        let matmul = std::mem::size_of::<MatmulParams>();
        assert_struct_size(tiled::MODULE, "MatmulParams", matmul);
        let bias = std::mem::size_of::<BiasGradParams>();
        assert_struct_size(BACKWARD_BIAS_MODULE, "BiasGradParams", bias);
    }

    /// Every registered module validates and has exactly the entry points its variant's
    /// schemes create kernels of.
    #[test]
    fn every_module_validates_with_its_entry_points() {
        let entries = |schemes: &[Scheme]| -> Vec<&'static str> {
            schemes
                .iter()
                .flat_map(|s| [s.entry(false), s.entry(true)])
                .flatten()
                .collect()
        };
        let (tiled, blocked) = (entries(tiled::SCHEMES), entries(register_blocked::SCHEMES));
        for (module, expected) in [
            (tiled::MODULE, tiled),
            (BACKWARD_BIAS_MODULE, vec!["dense_backward_bias"]),
            (register_blocked::STORAGE_MODULE, blocked.clone()),
            (register_blocked::TEXTURE_MODULE, blocked),
        ] {
            assert_entry_points(module, &expected);
        }
        assert_eq!(modules().len(), 4);
    }

    /// Every variant's fallbacks end at the tiled one, which runs every product.
    #[test]
    fn every_fallback_chain_ends_at_tiled() {
        assert_eq!(variant::stray_fallbacks(VARIANTS), []);
        assert_eq!(VARIANTS[0].variant, Variant::TILED);
        assert_eq!(VARIANTS[1].variant, Variant::REGISTER_BLOCKED);
    }

    /// The register-blocked kernels read A and B only through the accessors, which both reads
    /// files define (over the bindings the host binds buffers or textures to).
    #[test]
    fn the_register_blocked_kernels_read_only_through_the_accessors() {
        let indexes = |text: &str, name: &str| {
            text.match_indices(&format!("{name}[")).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            })
        };
        let files = register_blocked::STORAGE_MODULE.files.iter();
        let blocked = *files
            .last()
            .expect("the register-blocked kernels come last");
        for name in ["a", "b", "a4", "b4"] {
            for file in [COMMON, blocked] {
                assert!(!indexes(file.text, name), "{} indexes {name}", file.path);
            }
        }
        for (name, binding) in [("a", 1), ("b", 3)] {
            let accessors = [
                format!("fn {name}_element(i: u32) -> f32 {{"),
                format!("fn {name}4_at(i: u32) -> vec4<f32> {{"),
            ];
            let storage = format!(
                "@group(0) @binding({binding}) var<storage, read> {name}4: array<vec4<f32>>;"
            );
            let texture =
                format!("@group(0) @binding({binding}) var {name}_texture: texture_2d<f32>;");
            for (file, declared) in [(READS_STORAGE, storage), (READS_TEXTURE, texture)] {
                for accessor in &accessors {
                    assert!(file.text.contains(accessor), "{}: {accessor}", file.path);
                }
                assert!(file.text.contains(&declared), "{}: {declared}", file.path);
            }
        }
        let width = shader_const(READS_TEXTURE.text, "TEXTURE_WIDTH");
        assert_eq!(width, texture::TEXTURE_WIDTH);
    }

    #[test]
    fn the_real_layer_uses_the_vec4_and_split_schemes() {
        use super::super::scheme::choose;
        use register_blocked::SCHEMES as REGISTER_BLOCKED;
        use tiled::SCHEMES as TILED;
        // n = 32, 1600 -> 10, with the params forward, backward_input and backward_weights build.
        let g = DenseGeometry {
            inputs: 1600,
            outputs: 10,
        };
        let forward = MatmulParams::forward(g, 32);
        let input = MatmulParams::backward_input(g, 32);
        let weights = MatmulParams::backward_weights(g, 32);
        assert_eq!(choose(REGISTER_BLOCKED, &forward, true), Scheme::Dot);
        assert_eq!(choose(REGISTER_BLOCKED, &input, false), Scheme::Axpy);
        assert_eq!(choose(REGISTER_BLOCKED, &weights, false), Scheme::Axpy);
        // The forward has 320 outputs of 1600 terms: the tiled variant splits k, so the
        // cross-checks' cases with 1600 inputs run dense_matmul_bias_split.
        assert_eq!(choose(TILED, &forward, true), Scheme::Split);
        assert_eq!(choose(TILED, &input, false), Scheme::Tiled);
        assert_eq!(choose(TILED, &weights, false), Scheme::Tiled);
        let awkward = MatmulParams::forward(
            DenseGeometry {
                inputs: 300,
                outputs: 7,
            },
            33,
        );
        assert_eq!(choose(TILED, &awkward, true), Scheme::Split);
        // 33 inputs: nothing is aligned, so the general kernel runs.
        let odd = MatmulParams::forward(
            DenseGeometry {
                inputs: 33,
                outputs: 17,
            },
            7,
        );
        assert_eq!(choose(REGISTER_BLOCKED, &odd, true), Scheme::General);
        assert_eq!(choose(REGISTER_BLOCKED, &odd, false), Scheme::General);
    }
}
