//! The conv2d variants, registered in one list ([`VARIANTS`]), built once per device, and the
//! op's passes: each checks its buffers, then hands the work to the variant asked for (or,
//! where it declines, down its fallbacks to `tiled`). [`Conv2dKernels::offer`] says which
//! variants a pass offers the autotuner, and the rule's choice.

use super::shared::Conv2dShared;
use super::sums::SUMS_MODULE;
use super::{expect_elements, pooled_len, register_blocked, subgroup, tiled, weight_len};
use super::{Conv2dPass, Conv2dVariant};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::View;
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Dispatch, WgslModule};
use crate::gpu::variant::{self, Offer, Registered, Registration, Variant};

/// Every conv2d variant, in the order the autotuner times them (`gpu::variant` says what a
/// registration holds, `docs/design.md` where each wins). A variant falls back to the one
/// that runs what it declines: the subgroup forms to their per-lane forms, the texture forms
/// to the storage ones, all in the end to `tiled`.
pub const VARIANTS: &[Registration<dyn Conv2dVariant, Conv2dShared>] = &[
    register_blocked::STORAGE,
    register_blocked::TEXTURE,
    subgroup::STORAGE,
    subgroup::TEXTURE,
    tiled::VARIANT,
];

/// Every module of the op (for the shader tests and `gpu::ops`).
pub fn modules() -> Vec<WgslModule> {
    variant::modules(&[SUMS_MODULE], VARIANTS)
}

/// Every conv2d variant the adapter runs, built once per device.
pub struct Conv2dKernels {
    variants: Registered<dyn Conv2dVariant>,
}

impl Conv2dKernels {
    pub fn new(ctx: &GpuContext) -> Conv2dKernels {
        let shared = Conv2dShared::new(ctx);
        Conv2dKernels {
            variants: Registered::build(ctx, VARIANTS, &shared),
        }
    }

    /// Whether the adapter runs `variant` (else a pass asked of it runs on its fallbacks).
    pub fn builds(&self, variant: Variant) -> bool {
        self.variants.get(variant).is_some()
    }

    /// Whether `variant` runs `pass` at `g` itself on this adapter.
    pub fn runs(&self, variant: Variant, pass: Conv2dPass, g: Conv2dGeometry) -> bool {
        self.variants
            .get(variant)
            .is_some_and(|k| k.offers(pass, g))
    }

    /// Whether `variant` runs the fused `pass` (`ForwardReluMaxpool`,
    /// `BackwardWeightsMaxpool`) at `g` as one pass of its own on this adapter.
    pub fn fuses(&self, variant: Variant, pass: Conv2dPass, g: Conv2dGeometry) -> bool {
        self.variants.get(variant).is_some_and(|k| k.fuses(pass, g))
    }

    /// The variants of `pass` at `g` on this adapter, and the rule's choice among them. Where a
    /// variant stands in for another (the subgroup forms for the per-lane ones), the autotuner
    /// times it in that one's place, and the rule takes it: the per-lane forms ran slower on
    /// lavapipe (conv2 at batch 128: forward with pooling 19 against 16.8 ms, 3x3 weight
    /// gradient 25.8 against 21.0), and each would cost a first run seconds of compiling. A pin
    /// may still name them.
    pub fn offer(&self, info: &wgpu::AdapterInfo, pass: Conv2dPass, g: Conv2dGeometry) -> Offer {
        let offered: Vec<(Variant, &dyn Conv2dVariant)> = self
            .variants
            .iter()
            .filter(|(_, k)| k.offers(pass, g))
            .collect();
        let replaced: Vec<Variant> = offered
            .iter()
            .filter_map(|(_, k)| k.stands_in_for())
            .collect();
        let variants: Vec<Variant> = offered.iter().map(|&(v, _)| v).collect();
        let timed = variants
            .iter()
            .copied()
            .filter(|v| !replaced.contains(v))
            .collect();
        let mut rule = Variant::for_adapter(info);
        if !variants.contains(&rule) {
            rule = Variant::TILED;
        }
        if let Some(&(stand_in, _)) = offered
            .iter()
            .find(|(_, k)| k.stands_in_for() == Some(rule))
        {
            rule = stand_in;
        }
        Offer {
            variants,
            timed,
            rule,
        }
    }

    /// y = conv(x, w) + b for n images, then max(y, 0) when `relu`. Returns the dispatches to
    /// record in order (the register-blocked variants first pack the weights).
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (Conv2dGeometry, usize),
        relu: bool,
        [x, w, b, y]: [View; 4],
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&y, n * g.output().len(), "y");
        self.variants
            .first(variant, |k| k.forward(ctx, (g, n), relu, [x, w, b, y]))
            .expect("conv2d: the tiled variant runs every forward")
    }

    /// pooled = maxpool2x2(max(conv(x, w) + b, 0)) for n images, and the pooling's argmax (as
    /// `maxpool2d_forward` writes it), in one pass that never stores the convolution's own
    /// output. `None` where `variant` and its fallbacks decline it: the caller then runs the
    /// forward and the pooling apart.
    pub fn forward_relu_maxpool(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (Conv2dGeometry, usize),
        [x, w, b]: [View; 3],
        [pooled, argmax]: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        let pooled_len = pooled_len(g, n);
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&pooled, pooled_len, "pooled");
        expect_elements(&argmax, pooled_len, "argmax");
        let (inputs, outputs) = ([x, w, b], [pooled, argmax]);
        self.variants.first(variant, |k| {
            k.forward_relu_maxpool(ctx, (g, n), inputs, outputs)
        })
    }

    /// dx = gradient w.r.t. the input. Returns the dispatches to record in order (the
    /// register-blocked variants first pack the weights).
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (Conv2dGeometry, usize),
        [dy, w, dx]: [View; 3],
    ) -> Vec<Dispatch> {
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&dx, n * g.input.len(), "dx");
        self.variants
            .first(variant, |k| k.backward_input(ctx, (g, n), [dy, w, dx]))
            .expect("conv2d: the tiled variant runs every input gradient")
    }

    /// dw and db summed over the batch (deterministic order). Returns the dispatches to record in
    /// order: partial sums of dw and db per chunk of row segments into a scratch buffer, then
    /// the sums of the chunks (in chunk order) into dw, then into db (into both at once where db
    /// follows dw in one buffer, as in the parameter buffers; what lies between is untouched).
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (Conv2dGeometry, usize),
        [x, dy]: [View; 2],
        [dw, db]: [View; 2],
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        self.variants
            .first(variant, |k| {
                k.backward_weights(ctx, (g, n), [x, dy], [dw, db])
            })
            .expect("conv2d: the tiled variant runs every weight gradient")
    }

    /// dw and db from the ReLU and 2x2 max pooling that followed the convolution
    /// (`forward_relu_maxpool`): `dpooled` is the gradient at the pooled output, `pooled` and
    /// `argmax` what the forward wrote. The same as `Pool2dKernels::backward` with its ReLU
    /// mask, then `backward_weights`, in one pass that never forms dy. `None` where `variant`
    /// and its fallbacks decline it: the caller then runs the two passes.
    pub fn backward_weights_pooled(
        &self,
        ctx: &GpuContext,
        variant: Variant,
        (g, n): (Conv2dGeometry, usize),
        x: View,
        [dpooled, pooled, argmax]: [View; 3],
        [dw, db]: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        expect_elements(&x, n * g.input.len(), "x");
        for (view, name) in [
            (&dpooled, "dpooled"),
            (&pooled, "pooled"),
            (&argmax, "argmax"),
        ] {
            expect_elements(view, pooled_len(g, n), name);
        }
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        let pooling = [dpooled, pooled, argmax];
        self.variants.first(variant, |k| {
            k.backward_weights_pooled(ctx, (g, n), x, pooling, [dw, db])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernel::assert_entry_points;

    /// Every variant's fallbacks end at the tiled one, which runs every plain pass.
    #[test]
    fn every_fallback_chain_ends_at_tiled() {
        assert_eq!(variant::stray_fallbacks(VARIANTS), []);
        assert!(VARIANTS
            .iter()
            .any(|r| r.variant == Variant::REGISTER_BLOCKED));
    }

    /// Every register-blocked kernel's bind group holds exactly what its entry point uses (no
    /// dummy bindings): the host's `kernel_bindings` against naga's analysis.
    #[test]
    fn register_blocked_kernels_bind_exactly_what_they_use() {
        use super::super::products::kernel_bindings;
        use crate::gpu::kernel::validated_with_info;
        let modules = [
            (register_blocked::STORAGE_MODULE, false),
            (register_blocked::TEXTURE_MODULE, true),
            (subgroup::STORAGE_MODULE, false),
            (subgroup::TEXTURE_MODULE, true),
        ];
        for (module, textures) in modules {
            let (validated, info) = validated_with_info(&module.body());
            for (i, entry) in validated.entry_points.iter().enumerate() {
                if entry.name == "conv2d_subgroup_probe" {
                    continue;
                }
                let uses = info.get_entry_point(i);
                let mut used: Vec<u32> = validated
                    .global_variables
                    .iter()
                    .filter(|&(global, _)| !uses[global].is_empty())
                    .filter_map(|(_, global)| global.binding.as_ref().map(|b| b.binding))
                    .collect();
                used.sort();
                let bindings = kernel_bindings(&entry.name, textures);
                let mut bound: Vec<u32> = bindings.iter().map(|&(at, _)| at).collect();
                bound.sort();
                assert_eq!(used, bound, "{}: {}", module.label, entry.name);
            }
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
        let expected = [
            (tiled::MODULE, tiled.to_vec()),
            (SUMS_MODULE, sums.to_vec()),
            (register_blocked::STORAGE_MODULE, rb(&per_lane)),
            (register_blocked::TEXTURE_MODULE, rb(&per_lane)),
            (subgroup::STORAGE_MODULE, rb(&shared)),
            (subgroup::TEXTURE_MODULE, rb(&shared)),
        ];
        assert_eq!(modules().len(), expected.len());
        for (module, entry_points) in expected {
            assert_entry_points(module, &entry_points);
        }
    }
}
