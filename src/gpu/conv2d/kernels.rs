//! Every conv2d kernel of every variant, compiled once per device, and the op's passes: each
//! takes the variant to run and hands the work to that variant's family (`tiled.rs`,
//! `register_blocked.rs`, `subgroup.rs`, with the chunk sums of `sums.rs`). [`Conv2dKernels::offer`]
//! says which variants a pass offers the autotuner, and the rule's choice.

use super::register_blocked::{self, RegisterBlockedKernels, SharedLoads};
use super::sums::SumsKernels;
use super::tiled::TiledKernels;
use super::{expect_elements, subgroup, weight_len, Conv2dParams, SUMS_MODULE};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::View;
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::Dispatch;
use crate::gpu::texture;
use crate::gpu::variant::{Offer, Variant};

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

/// `variant`, or the register-blocked one that reads storage where the texture variant's
/// textures would not hold tensors of `lens` elements on this adapter.
fn where_textures_fit(ctx: &GpuContext, variant: Variant, lens: &[usize]) -> Variant {
    let fit = lens.iter().all(|&len| texture::fits(ctx, len));
    match variant {
        Variant::RegisterBlockedTexture if !fit => Variant::RegisterBlocked,
        Variant::RegisterBlockedTextureSubgroup if !fit => Variant::RegisterBlockedSubgroup,
        v => v,
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
            Conv2dPass::BackwardWeights => register_blocked::shares_dy(g),
            Conv2dPass::BackwardWeightsMaxpool => {
                !register_blocked::pools_weight_grad(g) && register_blocked::shares_dy(g)
            }
        }
    }
}

/// Every conv2d kernel of every variant, compiled once per device.
pub struct Conv2dKernels {
    register_blocked: RegisterBlockedKernels,
    /// The same reading src and factor from textures (`Variant::RegisterBlockedTexture`).
    register_blocked_texture: RegisterBlockedKernels,
    /// The kernels that share loads across subgroup lanes, reading storage and textures, where
    /// the adapter has subgroups laid out as they need (the subgroup variants).
    subgroups: Option<(SharedLoads, SharedLoads)>,
    tiled: TiledKernels,
    /// The chunk sums of the weight gradient (every variant) and the tiled input gradient.
    sums: SumsKernels,
    /// Whether the adapter binds the 64 KiB uniform ranges that every register-blocked forward
    /// and input-gradient kernel declares (WebGPU's default limit; wgpu's downlevel limits have
    /// 16 KiB). Where it does not, those two passes run tiled.
    packed_bindings_fit: bool,
}

impl Conv2dKernels {
    pub fn new(ctx: &GpuContext) -> Conv2dKernels {
        let sums = SUMS_MODULE.compile(ctx);
        Conv2dKernels {
            register_blocked: RegisterBlockedKernels::new(ctx, &sums, false),
            register_blocked_texture: RegisterBlockedKernels::new(ctx, &sums, true),
            subgroups: subgroup::shared_loads(ctx),
            tiled: TiledKernels::new(ctx),
            sums: SumsKernels::new(ctx, &sums),
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
    fn shared(&self, variant: Variant) -> Option<&SharedLoads> {
        let (storage, textures) = self.subgroups.as_ref()?;
        match variant {
            Variant::RegisterBlockedSubgroup => Some(storage),
            Variant::RegisterBlockedTextureSubgroup => Some(textures),
            _ => None,
        }
    }

    /// The register-blocked kernels (and those sharing loads) that run `variant` on tensors of
    /// `lens` elements: those reading storage where the texture variant's textures would not
    /// hold them on this adapter.
    fn blocked_where_textures_fit(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        lens: &[usize],
    ) -> (&RegisterBlockedKernels, Option<&SharedLoads>) {
        let v = where_textures_fit(ctx, variant, lens);
        (self.blocked(v), self.shared(v))
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
        match self.activation_pass_variant(variant, g) {
            Variant::Tiled => self.tiled.forward(ctx, relu, (g, n), (x, w, b, y)),
            v => {
                let params = Conv2dParams {
                    relu: u32::from(relu),
                    ..Conv2dParams::new(g, n)
                };
                let lens = [n * g.input.len(), weight_len(g)];
                let (rb, shared) = self.blocked_where_textures_fit(ctx, v, &lens);
                rb.forward(ctx, shared, params, (g, n), ([x, y, w, b], None))
            }
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
        let lens = [n * g.input.len(), weight_len(g)];
        let (rb, shared) = self.blocked_where_textures_fit(ctx, variant, &lens);
        let buffers = ([x, pooled, w, b], argmax);
        Some(rb.forward(ctx, shared, params, (g, n), (buffers.0, Some(buffers.1))))
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
        let tiled = || {
            let sums = &self.sums;
            self.tiled.backward_input(ctx, sums, (g, n), (dy, w, dx))
        };
        match self.activation_pass_variant(variant, g) {
            Variant::Tiled => tiled(),
            v => {
                let lens = [n * g.output().len(), weight_len(g)];
                let (rb, _) = self.blocked_where_textures_fit(ctx, v, &lens);
                rb.backward_input(ctx, Conv2dParams::new(g, n), (g, n), [dy, dx, w])
                    // Kernels wider than the position classes allow run tiled.
                    .unwrap_or_else(tiled)
            }
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
        let lens = [n * g.input.len(), n * g.output().len()];
        let sums = &self.sums;
        match for_geometry(variant, g) {
            Variant::Tiled => {
                let (per_chunk, target) = self.tiled.weight_grad_work(g);
                let partial_sums = |chunks, partials: View| {
                    self.tiled
                        .weight_grad(ctx, (g, n), chunks, (x, dy), partials)
                };
                let work = (rows, per_chunk, target);
                sums.weight_grad(ctx, g, work, partial_sums, (dw, db), true)
            }
            v => {
                let (rb, shared) = self.blocked_where_textures_fit(ctx, v, &lens);
                // The kernel, the work of one chunk, and how much work should run in all.
                let mut base = Conv2dParams::new(g, n);
                let (kernel, per_chunk, target) = rb.weight_grad_work(g, &mut base, shared);
                let staged = [(1, lens[0]), (3, lens[1])];
                let partial_sums = |chunks, partials: View| {
                    let work = (base, per_chunk, chunks);
                    rb.weight_grad(ctx, kernel, work, (x, partials, &[dy]), &staged)
                };
                let work = (rows, per_chunk, target);
                sums.weight_grad(ctx, g, work, partial_sums, (dw, db), false)
            }
        }
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
        let variant = for_geometry(variant, g);
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
        let (rb, _) = self.blocked_where_textures_fit(ctx, variant, &lens);
        let kernel = &rb.backward_weights_pooled;
        let unused = View::whole(&rb.unused_packed);
        let inputs = [dpooled, pooled, unused, unused, argmax];
        let staged = [
            (1, lens[0]),
            (3, pooled_len),
            (4, pooled_len),
            (7, pooled_len),
        ];
        let per_chunk = work.1;
        let partial_sums = |chunks, partials: View| {
            let work = (base, per_chunk, chunks);
            rb.weight_grad(ctx, kernel, work, (x, partials, &inputs), &staged)
        };
        Some(
            self.sums
                .weight_grad(ctx, g, work, partial_sums, (dw, db), false),
        )
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
}
