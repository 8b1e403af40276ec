//! Dense layers on the GPU (`shaders/dense/`), twin of `cpu/dense.rs`. Every pass is a
//! matrix multiply with different operand strides, so transposes cost nothing; each output
//! element is summed in a fixed order (bit-reproducible).
//!
//! Three variants of the multiply ([`VARIANTS`]): shared-memory tiles for real GPUs (or, for
//! few outputs with a long k, a workgroup per output splitting k), and register blocks without
//! shared memory for CPU adapters such as lavapipe, reading A and B from storage or from
//! textures. Every pass takes the variant to run (the autotuner times those that
//! [`DenseKernels::offer`] lists, or its rule decides); the register-blocked variants further
//! pick, per pass, the first of their kernels whose vec4 access fits the operands' layout
//! (`scheme.rs`). Each variant is a list of WGSL files ([`MODULES`]). The cross-checks
//! (`checks.rs`) run every case through every variant.

pub mod checks;
mod scheme;

use bytemuck::{Pod, Zeroable};

use super::buffer::{uniform, View};
use super::context::GpuContext;
use super::kernel::{Access, Dispatch, Kernel, Resource, ShaderFile, WgslModule};
use super::texture::{self, Staged, Texel};
use super::variant::{Offer, Variant};
use crate::cpu::dense::DenseGeometry;
use crate::shader_file;
use scheme::{choose, row_major, MatmulParams, Scheme, Strides, ALL_SCHEMES, MAX_GROUPS_PER_DIM};

const COMMON: ShaderFile = shader_file!("dense/common.wgsl");
const READS_STORAGE: ShaderFile = shader_file!("dense/reads_storage.wgsl");
const READS_TEXTURE: ShaderFile = shader_file!("dense/reads_texture.wgsl");
const TILED: ShaderFile = shader_file!("dense/tiled.wgsl");
const BACKWARD_BIAS: ShaderFile = shader_file!("dense/backward_bias.wgsl");
const REGISTER_BLOCKED: ShaderFile = shader_file!("dense/register_blocked.wgsl");

/// The tiled and split kernels.
const TILED_MODULE: WgslModule = WgslModule::new("dense tiled", &[COMMON, READS_STORAGE, TILED]);
/// The bias gradient, which every variant runs.
const BACKWARD_BIAS_MODULE: WgslModule = WgslModule::new("dense backward bias", &[BACKWARD_BIAS]);
/// The register-blocked kernels, reading A and B from storage, or from rgba32float textures,
/// four consecutive floats a texel.
const REGISTER_BLOCKED_MODULE: WgslModule = WgslModule::new(
    "dense register-blocked",
    &[COMMON, READS_STORAGE, REGISTER_BLOCKED],
);
const REGISTER_BLOCKED_TEXTURE_MODULE: WgslModule = WgslModule::new(
    "dense register-blocked-texture",
    &[COMMON, READS_TEXTURE, REGISTER_BLOCKED],
);

/// Every module of the op (for the shader tests and `gpu::ops`).
pub const MODULES: &[WgslModule] = &[
    TILED_MODULE,
    BACKWARD_BIAS_MODULE,
    REGISTER_BLOCKED_MODULE,
    REGISTER_BLOCKED_TEXTURE_MODULE,
];

/// The variants dense implements (`gpu::variant` describes each), in the order the autotuner
/// times them. It shares no loads across subgroup lanes.
pub const VARIANTS: [Variant; 3] = [
    Variant::Tiled,
    Variant::RegisterBlocked,
    Variant::RegisterBlockedTexture,
];

/// Mirrors `BiasGradParams` in `backward_bias.wgsl`: `db[o]` sums `batch` rows of `dy`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BiasGradParams {
    outputs: u32,
    batch: u32,
    dy_strides: Strides,
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

/// The texture holding the whole of `view` as rgba32float texels, and its copy; `None` where
/// that cannot be (a view that does not start on a texel, or one too large).
fn staged_vec4(ctx: &GpuContext, view: View) -> Option<Staged> {
    let texels = view.size.div_ceil(Texel::Vec4.bytes());
    let inside = view.offset + texels * Texel::Vec4.bytes() <= view.buffer.size();
    inside
        .then(|| texture::stage(ctx, view, texels as usize, Texel::Vec4))
        .flatten()
}

impl DenseKernels {
    /// The kernels of every variant.
    pub fn new(ctx: &GpuContext) -> DenseKernels {
        let module = TILED_MODULE.compile(ctx);
        let blocked_module = REGISTER_BLOCKED_MODULE.compile_register_blocked(ctx);
        let texture_module = REGISTER_BLOCKED_TEXTURE_MODULE.compile_register_blocked(ctx);
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
            // Params, dy, db.
            backward_bias: Kernel::new(
                ctx,
                &BACKWARD_BIAS_MODULE.compile(ctx),
                "dense_backward_bias",
                &[Uniform, Read, ReadWrite],
            ),
        }
    }

    /// The variants of every dense pass on this adapter (all of them, each timed), and the
    /// rule's choice.
    pub fn offer(&self, info: &wgpu::AdapterInfo) -> Offer {
        Offer::all(&VARIANTS, Variant::for_adapter(info))
    }

    /// A dispatch of `c = a b` (`+ bias[col]` when given) with the first scheme of `variant`
    /// that fits.
    fn matmul(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        p: MatmulParams,
        (a, b, c): (View, View, View),
        bias: Option<View>,
    ) -> Dispatch {
        let scheme = choose(variant, &p, bias.is_some());
        // The texture variant's textures, or None to read the buffers.
        let staged = variant
            .reads_textures()
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
        variant: Variant,
        (rows, inner, cols): (usize, usize, usize),
        (a, b, c): (View, View, View),
    ) -> Dispatch {
        expect_elements(&a, rows * inner, "a");
        expect_elements(&b, inner * cols, "b");
        expect_elements(&c, rows * cols, "c");
        let p = MatmulParams::new((rows, inner, cols), [row_major(inner), row_major(cols)]);
        self.matmul(ctx, variant, p, (a, b, c), None)
    }

    /// `y = x w^T + b` for `n` rows of `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: Variant,
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
        let params = MatmulParams::forward(g, n);
        self.matmul(ctx, variant, params, (x, w, y), Some(b))
    }

    /// `dx = dy w`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        g: DenseGeometry,
        n: usize,
        dy: View,
        w: View,
        dx: View,
    ) -> Dispatch {
        expect_elements(&dy, n * g.outputs, "dy");
        expect_elements(&w, g.outputs * g.inputs, "w");
        expect_elements(&dx, n * g.inputs, "dx");
        let params = MatmulParams::backward_input(g, n);
        self.matmul(ctx, variant, params, (dy, w, dx), None)
    }

    /// `dw = dy^T x` and `db` = the batch sum of `dy`. Returns the dispatches to record (they are
    /// independent: one writes dw, the other db). Both read `dy^T` through the same strides.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: Variant,
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
        let params = MatmulParams::backward_weights(g, n);
        let bias_params = BiasGradParams {
            outputs: params.rows,
            batch: params.inner,
            dy_strides: params.a_strides,
        };
        let bias_params = uniform(ctx, "dense bias-gradient params", &bias_params);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_mirrors_match_the_shaders() {
        use super::super::kernel::assert_struct_size;
        let matmul = std::mem::size_of::<MatmulParams>();
        assert_struct_size(TILED_MODULE, "MatmulParams", matmul);
        let bias = std::mem::size_of::<BiasGradParams>();
        assert_struct_size(BACKWARD_BIAS_MODULE, "BiasGradParams", bias);
    }

    /// Every module validates and has the entry points the host creates kernels of.
    #[test]
    fn every_module_validates_with_its_entry_points() {
        let register_blocked = ALL_SCHEMES
            .iter()
            .filter(|s| !matches!(s, Scheme::Tiled | Scheme::Split));
        let entries = |schemes: Vec<&Scheme>| -> Vec<&'static str> {
            schemes
                .into_iter()
                .flat_map(|s| [s.entry(false), s.entry(true)])
                .flatten()
                .collect()
        };
        let tiled = entries(vec![&Scheme::Tiled, &Scheme::Split]);
        let blocked = entries(register_blocked.collect());
        for (module, mut expected) in [
            (TILED_MODULE, tiled),
            (BACKWARD_BIAS_MODULE, vec!["dense_backward_bias"]),
            (REGISTER_BLOCKED_MODULE, blocked.clone()),
            (REGISTER_BLOCKED_TEXTURE_MODULE, blocked),
        ] {
            let validated = super::super::kernel::validated(&module.body());
            let mut names: Vec<&str> = validated
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            names.sort();
            expected.sort();
            assert_eq!(names, expected, "{}", module.label);
        }
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
        for name in ["a", "b", "a4", "b4"] {
            for file in [COMMON, REGISTER_BLOCKED] {
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
        let width = crate::gpu::kernel::shader_const(READS_TEXTURE.text, "TEXTURE_WIDTH");
        assert_eq!(width, texture::TEXTURE_WIDTH);
    }
}
