//! Conv2d on the GPU (`shaders/conv2d/`), twin of `cpu/conv2d.rs`: stride 1, valid padding,
//! NCHW activations, OIHW weights. Every output element is summed by one invocation in a fixed
//! order (gathers, never scatters; the weight gradient adds fixed chunks of partial sums in chunk
//! order), so results are bit-reproducible.
//!
//! Three families of variants of every pass ([`Variant`]), all compiled by
//! [`Conv2dKernels::new`]; each call names the one to run, and [`Conv2dKernels::offer`] says
//! which a pass offers the autotuner, and the default:
//! - register-blocked (`register_blocked.rs`), for CPU adapters (lavapipe): each invocation
//!   owns a block of 32 channels x 8 row segments (or (in channel, ky) pairs) x 4 columns (or
//!   kx), or for the input gradient 32 positions of a class of positions that meet the output
//!   with the same taps, and reuses every value it loads across the block, with no workgroup
//!   memory. The forward and input gradient first pack the 32 weights each step multiplies into
//!   two uniform bindings (where they fit, about 1000 steps), which lavapipe gathers without the
//!   lane-by-lane loop of a storage load; register-blocked-subgroup, where the adapter has
//!   subgroups, has the lanes of the forward and 3x3 weight gradient share those loads
//!   (`subgroup.rs`);
//! - register-blocked-texture (and register-blocked-texture-subgroup): the same kernels reading
//!   x and dy from r32float textures copied from the buffers before each pass, for lavapipe on
//!   CPUs without AVX-512, where every storage load stalls once per lane;
//! - tiled (`tiled.rs`), for real GPUs: an implicit GEMM in which each workgroup computes a
//!   `TILE_M x TILE_N` tile of outputs, staging slices of both operands in workgroup memory.
//!
//! Each variant is a list of WGSL files ([`MODULES`]); the block and tile shapes are fixed in
//! the shaders, and the host counts the blocks or tiles of a geometry (the shaders' header
//! comments describe each kernel's scheme). The weight gradient's chunk sums, which every
//! variant shares, are in `sums.rs`; the cross-checks in `checks.rs`.

mod checks;
mod register_blocked;
mod subgroup;
mod sums;
mod tiled;

use bytemuck::{Pod, Zeroable};

use super::buffer::View;
use super::context::GpuContext;
use super::kernel::{Access, Dispatch, Kernel, ShaderFile, WgslModule};
use super::variant::{Offer, Variant};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::shader_file;
pub use checks::checks;
use register_blocked::{RegisterBlockedKernels, MAX_RUNS};
use subgroup::SubgroupKernels;
use tiled::TiledKernels;

const COMMON: ShaderFile = shader_file!("conv2d/common.wgsl");
const PRODUCTS: ShaderFile = shader_file!("conv2d/products.wgsl");
const READS_STORAGE: ShaderFile = shader_file!("conv2d/reads_storage.wgsl");
const READS_TEXTURE: ShaderFile = shader_file!("conv2d/reads_texture.wgsl");
const TILED: ShaderFile = shader_file!("conv2d/tiled.wgsl");
const REDUCE: ShaderFile = shader_file!("conv2d/reduce.wgsl");
const PACK: ShaderFile = shader_file!("conv2d/pack.wgsl");
const REGISTER_BLOCKED: ShaderFile = shader_file!("conv2d/register_blocked.wgsl");
const RB_FORWARD: ShaderFile = shader_file!("conv2d/register_blocked_forward.wgsl");
const RB_BACKWARD_INPUT: ShaderFile = shader_file!("conv2d/register_blocked_backward_input.wgsl");
const RB_BACKWARD_WEIGHTS: ShaderFile =
    shader_file!("conv2d/register_blocked_backward_weights.wgsl");
const SHARE_PER_LANE: ShaderFile = shader_file!("conv2d/share_per_lane.wgsl");
const SUBGROUP: ShaderFile = shader_file!("conv2d/subgroup.wgsl");

/// The tiled kernels.
const TILED_MODULE: WgslModule =
    WgslModule::new("conv2d tiled", &[COMMON, PRODUCTS, READS_STORAGE, TILED]);
/// The chunk sums and the weight packing, which every variant runs beside its products.
const SUMS_MODULE: WgslModule = WgslModule::new("conv2d sums", &[COMMON, REDUCE, PACK]);

/// A register-blocked module: the kernels reading their inputs as `$reads` says, and getting
/// the values all lanes need as `$share` says.
macro_rules! register_blocked_module {
    ($label:literal, $reads:expr, $share:expr, $subgroups:literal) => {
        WgslModule {
            label: $label,
            files: &[
                COMMON,
                PRODUCTS,
                $reads,
                REGISTER_BLOCKED,
                RB_FORWARD,
                RB_BACKWARD_INPUT,
                RB_BACKWARD_WEIGHTS,
                $share,
            ],
            subgroups: $subgroups,
        }
    };
}

/// The register-blocked kernels, reading storage or textures, each lane loading for itself.
const REGISTER_BLOCKED_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked",
    READS_STORAGE,
    SHARE_PER_LANE,
    false
);
const REGISTER_BLOCKED_TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture",
    READS_TEXTURE,
    SHARE_PER_LANE,
    false
);
/// The same with loads shared across subgroup lanes (and the probe that tells whether the
/// adapter's subgroups are laid out as they need).
const SUBGROUP_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked (subgroups)",
    READS_STORAGE,
    SUBGROUP,
    true
);
const SUBGROUP_TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture (subgroups)",
    READS_TEXTURE,
    SUBGROUP,
    true
);

/// Every module of the op (for the shader tests and `gpu::ops`).
pub const MODULES: &[WgslModule] = &[
    TILED_MODULE,
    SUMS_MODULE,
    REGISTER_BLOCKED_MODULE,
    REGISTER_BLOCKED_TEXTURE_MODULE,
    SUBGROUP_MODULE,
    SUBGROUP_TEXTURE_MODULE,
];

const MAX_GROUPS_PER_DIM: usize = 65535;

/// The variants conv2d implements (`gpu::variant` describes each), in the order the autotuner
/// times them:
/// - `RegisterBlocked`: blocks of 32 channels x 32 positions of sums per invocation;
/// - `RegisterBlockedTexture`: the same reading x and dy from r32float textures;
/// - `RegisterBlockedSubgroup`, `RegisterBlockedTextureSubgroup`: the same sharing the packed
///   forward's weights and the 3x3 weight gradient's dy across subgroup lanes, where the adapter
///   has subgroups laid out as the kernels need, for the passes it changes
///   ([`Conv2dPass::shares_loads`]);
/// - `Tiled`: implicit GEMM with workgroup tiles of `TILE_M x TILE_N` outputs, both operands
///   staged in workgroup memory `TILE_K` deep; the only one with strides and padding.
pub const VARIANTS: [Variant; 5] = [
    Variant::RegisterBlocked,
    Variant::RegisterBlockedTexture,
    Variant::RegisterBlockedSubgroup,
    Variant::RegisterBlockedTextureSubgroup,
    Variant::Tiled,
];

/// The variants that handle `g`: only the tiled kernels take strides and padding.
pub fn candidates(g: Conv2dGeometry) -> &'static [Variant] {
    if g.is_dense() {
        &VARIANTS
    } else {
        &[Variant::Tiled]
    }
}

/// `variant` if it handles `g`, else the tiled one.
fn for_geometry(variant: Variant, g: Conv2dGeometry) -> Variant {
    if candidates(g).contains(&variant) {
        variant
    } else {
        Variant::Tiled
    }
}

/// A pass of the op, as the autotuner chooses its variant (`Conv2dKernels::offer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv2dPass {
    /// `forward`, with or without the fused ReLU.
    Forward,
    /// `forward_relu_maxpool` (or, where it returns None, the forward and the pooling apart).
    ForwardReluMaxpool,
    BackwardInput,
    BackwardWeights,
    /// `backward_weights_pooled` (or, where it returns None, the pooling's backward and
    /// `backward_weights`).
    BackwardWeightsMaxpool,
}

impl Conv2dPass {
    /// Whether the register-blocked kernels of this pass at `g` share loads across subgroup
    /// lanes in the subgroup variants (elsewhere those run the per-lane kernels): the forward
    /// where its weights are packed, and the 3x3 weight gradient where its blocks of input
    /// channels come in groups of 8. `packed_bindings_fit`: whether the adapter binds the
    /// packed weights (else the forward runs tiled).
    pub fn shares_loads(self, g: Conv2dGeometry, packed_bindings_fit: bool) -> bool {
        if !g.is_dense() {
            return false;
        }
        match self {
            Conv2dPass::Forward | Conv2dPass::ForwardReluMaxpool => {
                packed_bindings_fit && register_blocked::packs_weights(g)
            }
            Conv2dPass::BackwardInput => false,
            Conv2dPass::BackwardWeights => subgroup::shares_dy(g),
            Conv2dPass::BackwardWeightsMaxpool => {
                !register_blocked::pools_weight_grad(g) && subgroup::shares_dy(g)
            }
        }
    }
}

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
    /// Workgroups that do work (register-blocked forward and input gradient, tiled);
    /// invocations (register-blocked weight gradient).
    len: u32,
    /// Register-blocked: blocks of columns per row (forward) or of kx (weight gradient).
    col_blocks: u32,
    /// Register-blocked weight gradient: blocks of (ci, ky) pairs.
    row_blocks: u32,
    /// Weight gradient: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    /// Weight gradient: chunks of partial sums, and the elements per chunk.
    chunks: u32,
    partial_stride: u32,
    /// Tiled: tiles along the rows (`TILE_M`) and the columns (`TILE_N`) of the product.
    m_tiles: u32,
    n_tiles: u32,
    /// Register-blocked forward and input gradient: workgroups per block of channels, and the
    /// steps (packed weight slots) of a block.
    block_groups: u32,
    block_steps: u32,
    /// Tiled: the stride and the zeros on every side of the input.
    stride: u32,
    pad: u32,
    /// Tiled input gradient: terms of the sum per chunk of partial sums (a multiple of
    /// `TILE_K`).
    chunk_k: u32,
    /// Register-blocked input gradient: row runs of its position classes.
    row_runs: u32,
    /// Register-blocked input gradient: column runs of its position classes.
    col_runs: u32,
    /// Register-blocked forward and input gradient: the first packed slot of the second
    /// binding ([`packed_split`]).
    packed_split: u32,
    /// The arrays start on 16 bytes, as in the shader.
    _pad: [u32; 3],
    /// Register-blocked input gradient: the runs, and each class's first lane and runs (see
    /// [`Conv2dParams::input_classes`]).
    row_run: [[u32; 4]; MAX_RUNS],
    col_run: [[u32; 4]; MAX_RUNS],
    classes: [[u32; 4]; MAX_RUNS * MAX_RUNS],
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
            stride: u(g.stride),
            pad: u(g.pad),
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

/// `groups` workgroups, folded into 2-D past 65535 (the shaders' `block_lane` and
/// `tile_origin` flatten them again). Extra workgroups return early.
fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [u(x), u(groups.div_ceil(x)), 1]
}

/// Every conv2d kernel of every variant, compiled once per device.
pub struct Conv2dKernels {
    register_blocked: RegisterBlockedKernels,
    /// The same reading src and factor from textures (`Variant::RegisterBlockedTexture`).
    register_blocked_texture: RegisterBlockedKernels,
    /// The kernels that share loads across subgroup lanes, reading storage and textures, where
    /// the adapter has subgroups laid out as they need (the subgroup variants).
    subgroups: Option<(SubgroupKernels, SubgroupKernels)>,
    tiled: TiledKernels,
    /// Add chunks of partial sums (the weight gradient's in both variants, the tiled input
    /// gradient's): one invocation per element, or (tiled variant) one workgroup per element
    /// for more than `SPLIT_REDUCE_CHUNKS` chunks.
    reduce: Kernel,
    reduce_split: Kernel,
    /// Bound as the packed weights of the register-blocked kernels that read w from storage:
    /// they share code with the packed ones, so they declare those bindings too.
    unused_packed: wgpu::Buffer,
    /// Whether the adapter binds the 64 KiB uniform ranges that every register-blocked forward
    /// and input-gradient kernel declares (WebGPU's default limit; wgpu's downlevel limits have
    /// 16 KiB). Where it does not, those two passes run tiled.
    packed_bindings_fit: bool,
}

impl Conv2dKernels {
    pub fn new(ctx: &GpuContext) -> Conv2dKernels {
        let sums = SUMS_MODULE.compile(ctx);
        use Access::*;
        let kernel = |name, bindings| Kernel::new(ctx, &sums, name, bindings);
        Conv2dKernels {
            register_blocked: RegisterBlockedKernels::new(ctx, &sums, false),
            register_blocked_texture: RegisterBlockedKernels::new(ctx, &sums, true),
            subgroups: SubgroupKernels::both(ctx),
            tiled: TiledKernels::new(ctx),
            // Reduce params, partial sums, sums.
            reduce: kernel("conv2d_reduce", &[Uniform, Read, ReadWrite]),
            reduce_split: kernel("conv2d_reduce_split", &[Uniform, Read, ReadWrite]),
            unused_packed: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("conv2d unused packed weights"),
                size: register_blocked::PACKED_BINDING_BYTES,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: false,
            }),
            packed_bindings_fit: ctx.limits.max_uniform_buffer_binding_size
                >= register_blocked::PACKED_BINDING_BYTES,
        }
    }

    /// The variants of `pass` at `g` on this adapter, and the rule's choice among them. Where
    /// the subgroup variants change the pass, the autotuner times them in place of the per-lane
    /// forms, and the rule takes them: the per-lane forms ran slower on lavapipe (conv2 at batch
    /// 128: forward with pooling 19 against 16.8 ms, 3x3 weight gradient 25.8 against 21.0),
    /// and each would cost a first run seconds of compiling. A pin may still name them.
    pub fn offer(&self, info: &wgpu::AdapterInfo, pass: Conv2dPass, g: Conv2dGeometry) -> Offer {
        let rule = for_geometry(Variant::for_adapter(info), g);
        let per_lane: Vec<Variant> = candidates(g)
            .iter()
            .copied()
            .filter(|v| !v.shares_subgroups())
            .collect();
        if self.subgroups.is_none() || !pass.shares_loads(g, self.packed_bindings_fit) {
            return Offer::all(&per_lane, rule);
        }
        Offer {
            variants: candidates(g).to_vec(),
            timed: per_lane.iter().map(|v| v.with_subgroups()).collect(),
            rule: rule.with_subgroups(),
        }
    }

    /// Whether the subgroup variants run here (else they run the per-lane kernels).
    pub fn has_subgroups(&self) -> bool {
        self.subgroups.is_some()
    }

    /// The variant that runs a forward or input-gradient pass asked for with `variant`.
    fn activation_pass_variant(&self, variant: Variant, g: Conv2dGeometry) -> Variant {
        match variant {
            v if v.is_register_blocked() && !self.packed_bindings_fit => Variant::Tiled,
            _ => for_geometry(variant, g),
        }
    }

    /// The register-blocked kernels of `variant`.
    fn blocked(&self, variant: Variant) -> &RegisterBlockedKernels {
        if variant.reads_textures() {
            &self.register_blocked_texture
        } else {
            &self.register_blocked
        }
    }

    /// The kernels of `variant` that share loads across subgroup lanes, where it has them.
    fn shared(&self, variant: Variant) -> Option<&SubgroupKernels> {
        let (storage, textures) = self.subgroups.as_ref()?;
        match variant {
            Variant::RegisterBlockedSubgroup => Some(storage),
            Variant::RegisterBlockedTextureSubgroup => Some(textures),
            _ => None,
        }
    }

    /// y = conv(x, w) + b for n images, then max(y, 0) when `relu`. Returns the dispatches to
    /// record in order (the register-blocked variant first packs the weights).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        g: Conv2dGeometry,
        n: usize,
        relu: bool,
        x: View,
        w: View,
        b: View,
        y: View,
    ) -> Vec<Dispatch> {
        let out = g.output();
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&y, n * out.len(), "y");
        let params = Conv2dParams {
            relu: u32::from(relu),
            ..Conv2dParams::new(g, n)
        };
        match self.activation_pass_variant(variant, g) {
            Variant::Tiled => self.tiled.forward(ctx, params, g, n, (x, w, b, y)),
            v => self.register_blocked_forward(ctx, (v, params), g, n, [x, y, w, b]),
        }
    }

    /// pooled = maxpool2x2(max(conv(x, w) + b, 0)) for n images, and the pooling's argmax (as
    /// `maxpool2d_forward` writes it), in one register-blocked pass that never stores the
    /// convolution's own output. `None` where `variant` does not run register-blocked for
    /// this layer: the caller then runs the forward and the pooling apart.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_relu_maxpool(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        g: Conv2dGeometry,
        n: usize,
        (x, w, b): (View, View, View),
        (pooled, argmax): (View, View),
    ) -> Option<Vec<Dispatch>> {
        let variant = self.activation_pass_variant(variant, g);
        if !variant.is_register_blocked() {
            return None;
        }
        let out = g.output();
        let (height, width) = (out.height / 2, out.width / 2);
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&pooled, n * g.out_channels * height * width, "pooled");
        expect_elements(&argmax, n * g.out_channels * height * width, "argmax");
        let params = Conv2dParams {
            relu: 1,
            ..Conv2dParams::new(g, n)
        };
        let buffers = ([x, pooled, w, b], argmax);
        Some(self.register_blocked_forward_pool(ctx, (variant, params), g, n, buffers))
    }

    /// dx = gradient w.r.t. the input. Returns the dispatches to record in order (the
    /// register-blocked variant first packs the weights).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        g: Conv2dGeometry,
        n: usize,
        dy: View,
        w: View,
        dx: View,
    ) -> Vec<Dispatch> {
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&dx, n * g.input.len(), "dx");
        let params = Conv2dParams::new(g, n);
        let tiled = || self.tiled_backward_input(ctx, params, g, n, (dy, w, dx));
        match self.activation_pass_variant(variant, g) {
            Variant::Tiled => tiled(),
            v => self
                .register_blocked_backward_input(ctx, (v, params), g, n, [dy, dx, w])
                // Kernels wider than the position classes allow run tiled.
                .unwrap_or_else(tiled),
        }
    }

    /// dw and db summed over the batch (deterministic order). Returns the dispatches to record in
    /// order: partial sums of dw and db per chunk of row segments into a scratch buffer, then
    /// the sums of the chunks (in chunk order) into dw, then into db (into both at once where db
    /// follows dw in one buffer, as in the parameter buffers; what lies between is untouched).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: Variant,
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
        let rows = n * g.output().height;
        let mut base = Conv2dParams::new(g, n);
        // The kernel, the work of one chunk, and how much work should run in all.
        let lens = [n * g.input.len(), n * g.output().len()];
        let variant = Self::where_textures_fit(ctx, for_geometry(variant, g), &lens);
        let (kernel, per_chunk, target) = match variant {
            Variant::Tiled => self.tiled.weight_grad_work(g),
            v => self
                .blocked(v)
                .weight_grad_work(g, &mut base, self.shared(v)),
        };
        let work = (rows, per_chunk, target);
        let sources = (x, &[dy][..], &[(1, lens[0]), (3, lens[1])][..]);
        self.weight_grad_sums(ctx, (variant, g, base), work, kernel, sources, (dw, db))
    }

    /// dw and db from the ReLU and 2x2 max pooling that followed the convolution
    /// (`forward_relu_maxpool`): `dpooled` is the gradient at the pooled output, `pooled` and
    /// `argmax` what the forward wrote. The same as `Pool2dKernels::backward` with its ReLU
    /// mask, then `backward_weights`, in one register-blocked pass that never forms dy. `None`
    /// where `variant` does not run it for this layer (it takes at most 4 (ci, ky) pairs and
    /// k <= 4, as in a first layer): the caller then runs the two passes.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights_pooled(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        g: Conv2dGeometry,
        n: usize,
        x: View,
        (dpooled, pooled, argmax): (View, View, View),
        (dw, db): (View, View),
    ) -> Option<Vec<Dispatch>> {
        let out = g.output();
        let pooled_len = n * g.out_channels * (out.height / 2) * (out.width / 2);
        let lens = [n * g.input.len(), pooled_len];
        let variant = Self::where_textures_fit(ctx, for_geometry(variant, g), &lens);
        if !(register_blocked::pools_weight_grad(g) && variant.is_register_blocked()) {
            return None;
        }
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&dpooled, pooled_len, "dpooled");
        expect_elements(&pooled, pooled_len, "pooled");
        expect_elements(&argmax, pooled_len, "argmax");
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        let base = Conv2dParams::new(g, n);
        // Chunks of pooled row segments, one lane per block of output channels.
        let work = (
            n * (out.height / 2),
            g.out_channels.div_ceil(register_blocked::BLOCK_CHANNELS),
            register_blocked::WEIGHT_GRAD_INVOCATIONS,
        );
        let kernel = &self.blocked(variant).backward_weights_pooled;
        let unused = View::whole(&self.unused_packed);
        let inputs = [dpooled, pooled, unused, unused, argmax];
        let staged = [
            (1, lens[0]),
            (3, pooled_len),
            (4, pooled_len),
            (7, pooled_len),
        ];
        let sources = (x, &inputs[..], &staged[..]);
        Some(self.weight_grad_sums(ctx, (variant, g, base), work, kernel, sources, (dw, db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subgroup variants change the packed forward and the 3x3 weight gradient of the seed
    /// model's second layer (whose 32 input channels make 8 blocks of 4), and nothing else.
    #[test]
    fn subgroups_change_the_packed_forward_and_the_grouped_k3_weight_gradient() {
        use crate::model::Shape;
        use Conv2dPass::*;
        let conv1 = Conv2dGeometry::new(Shape::new(1, 28, 28), 32, 3);
        let conv2 = Conv2dGeometry::new(Shape::new(32, 13, 13), 64, 3);
        let odd = Conv2dGeometry::new(Shape::new(40, 7, 8), 40, 3);
        let strided = Conv2dGeometry { stride: 2, ..conv2 };
        for (g, pass, shares) in [
            (conv1, Forward, true),
            (conv1, ForwardReluMaxpool, true),
            (conv1, BackwardWeightsMaxpool, false),
            (conv2, Forward, true),
            (conv2, ForwardReluMaxpool, true),
            (conv2, BackwardInput, false),
            (conv2, BackwardWeights, true),
            (odd, BackwardWeights, false),
            (strided, Forward, false),
        ] {
            assert_eq!(pass.shares_loads(g, true), shares, "{pass:?} {g:?}");
        }
        assert!(!Forward.shares_loads(conv2, false));
    }

    /// The host's mirrors of the uniforms have the shaders' sizes (the fields are in the same
    /// order; a size that differs means a field or a gap is missing).
    #[test]
    fn the_uniform_mirrors_match_the_shaders() {
        use super::super::kernel::{struct_size, validated};
        let products = validated(&REGISTER_BLOCKED_MODULE.body());
        let sums = validated(&SUMS_MODULE.body());
        for (module, name, host) in [
            (
                &products,
                "Conv2dParams",
                std::mem::size_of::<Conv2dParams>(),
            ),
            (&sums, "Conv2dReduceParams", sums::REDUCE_PARAMS_BYTES),
            (
                &sums,
                "Conv2dPackParams",
                register_blocked::PACK_PARAMS_BYTES,
            ),
        ] {
            assert_eq!(struct_size(module, name), host, "{name}");
        }
    }

    /// Every module validates (with subgroup operations where it uses them) and has the entry
    /// points the host creates kernels of.
    #[test]
    fn every_module_validates_with_its_entry_points() {
        let register_blocked = [
            "conv2d_forward",
            "conv2d_forward_pool",
            "conv2d_backward_input",
            "conv2d_backward_input_packed",
            "conv2d_backward_weights",
            "conv2d_backward_weights_narrow",
            "conv2d_backward_weights_pooled",
        ];
        let per_lane = [
            "conv2d_forward_packed",
            "conv2d_forward_pool_packed",
            "conv2d_backward_weights_k3",
        ];
        let shared = [
            "conv2d_forward_packed_shared",
            "conv2d_forward_pool_packed_shared",
            "conv2d_backward_weights_k3_shared",
            "conv2d_subgroup_probe",
        ];
        let tiled = [
            "conv2d_forward_tiled",
            "conv2d_backward_input_tiled",
            "conv2d_backward_weights_tiled",
        ];
        let sums = [
            "conv2d_reduce",
            "conv2d_reduce_split",
            "conv2d_pack_forward_weights",
            "conv2d_pack_backward_input_weights",
        ];
        let rb = |last: &[&'static str]| [&register_blocked[..], last].concat();
        for (module, entry_points) in [
            (TILED_MODULE, tiled.to_vec()),
            (SUMS_MODULE, sums.to_vec()),
            (REGISTER_BLOCKED_MODULE, rb(&per_lane)),
            (REGISTER_BLOCKED_TEXTURE_MODULE, rb(&per_lane)),
            (SUBGROUP_MODULE, rb(&shared)),
            (SUBGROUP_TEXTURE_MODULE, rb(&shared)),
        ] {
            let validated = super::super::kernel::validated(&module.body());
            let mut names: Vec<&str> = validated
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            names.sort();
            let mut expected = entry_points.clone();
            expected.sort();
            assert_eq!(names, expected, "{}", module.label);
        }
    }
}
