//! Kernel variants: one enum for every op that has several (conv2d and dense), and what an op
//! offers the autotuner for one pass at one shape.
//!
//! An op registers its variants the same way everywhere: `VARIANTS` lists those it implements
//! (in the order the autotuner times them), `offer` says which of them run a pass at a shape on
//! an adapter (and the fixed rule's choice), and every pass takes the [`Variant`] to run. A
//! variant is a list of WGSL files (the op's `MODULES`); its name is what users see in
//! `info --kernels`, the metrics JSON, `--kernels-from` and the autotune cache, so the names
//! never change.

/// Which kernels compute a pass. Every variant sums each output in a fixed order, so it gives
/// the same bits on every run on one adapter; different variants may round differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Workgroup tiles staged in workgroup memory: fast on real GPUs.
    Tiled,
    /// No workgroup memory or barriers: each invocation keeps a block of outputs in registers
    /// and reuses every value it loads across the block. Fast on CPU adapters (lavapipe), where
    /// a workgroup is SIMD lanes on one CPU thread and every load and barrier is expensive.
    RegisterBlocked,
    /// The same kernels reading their inputs from textures copied from the buffers before each
    /// pass: on lavapipe without AVX-512 every storage load stalls on store forwarding once per
    /// lane, a texture load does not (see `gpu::texture`).
    RegisterBlockedTexture,
    /// `RegisterBlocked` with the values every lane needs loaded once per 8 subgroup lanes and
    /// shared through subgroup shuffles: the same sums in the same order. Only where the adapter
    /// has subgroups laid out as the kernels need, and only for the passes it changes.
    RegisterBlockedSubgroup,
    /// `RegisterBlockedTexture` sharing loads the same way.
    RegisterBlockedTextureSubgroup,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Tiled,
        Variant::RegisterBlocked,
        Variant::RegisterBlockedTexture,
        Variant::RegisterBlockedSubgroup,
        Variant::RegisterBlockedTextureSubgroup,
    ];

    /// The variant for an adapter, by a fixed rule: CPU adapters (`wgpu::DeviceType::Cpu`, such
    /// as lavapipe/llvmpipe) get `RegisterBlocked`, everything else `Tiled`.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Variant {
        match info.device_type {
            wgpu::DeviceType::Cpu => Variant::RegisterBlocked,
            _ => Variant::Tiled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Tiled => "tiled",
            Variant::RegisterBlocked => "register-blocked",
            Variant::RegisterBlockedTexture => "register-blocked-texture",
            Variant::RegisterBlockedSubgroup => "register-blocked-subgroup",
            Variant::RegisterBlockedTextureSubgroup => "register-blocked-texture-subgroup",
        }
    }

    /// The variant whose [`name`](Variant::name) is `name`.
    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Whether this is one of the register-blocked variants (the same kernels and blocks).
    pub fn is_register_blocked(self) -> bool {
        self != Variant::Tiled
    }

    /// Whether the register-blocked kernels read their inputs from textures.
    pub fn reads_textures(self) -> bool {
        matches!(
            self,
            Variant::RegisterBlockedTexture | Variant::RegisterBlockedTextureSubgroup
        )
    }

    /// Whether lanes share loads across subgroup lanes.
    pub fn shares_subgroups(self) -> bool {
        matches!(
            self,
            Variant::RegisterBlockedSubgroup | Variant::RegisterBlockedTextureSubgroup
        )
    }

    /// The form of this variant that shares loads across subgroup lanes (itself if it has none).
    pub fn with_subgroups(self) -> Variant {
        match self {
            Variant::RegisterBlocked => Variant::RegisterBlockedSubgroup,
            Variant::RegisterBlockedTexture => Variant::RegisterBlockedTextureSubgroup,
            v => v,
        }
    }

    /// The form of this variant whose lanes load for themselves (itself if it shares nothing).
    pub fn per_lane(self) -> Variant {
        match self {
            Variant::RegisterBlockedSubgroup => Variant::RegisterBlocked,
            Variant::RegisterBlockedTextureSubgroup => Variant::RegisterBlockedTexture,
            v => v,
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The variants an op offers for one pass at one shape on one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// Every variant that runs the pass here as its name says (a pinned choice must be one).
    pub variants: Vec<Variant>,
    /// Those the autotuner times: all of `variants` but those another one replaces here (the
    /// per-lane forms of kernels whose subgroup form runs), whose compilation a first run on a
    /// CPU adapter would pay for nothing.
    pub timed: Vec<Variant>,
    /// The variant of the fixed rule (tuning off, or nothing to time).
    pub rule: Variant,
}

impl Offer {
    /// Every one of `variants` timed.
    pub fn all(variants: &[Variant], rule: Variant) -> Offer {
        Offer {
            variants: variants.to_vec(),
            timed: variants.to_vec(),
            rule,
        }
    }

    /// The offered variant named `name`.
    pub fn named(&self, name: &str) -> Option<Variant> {
        self.variants.iter().copied().find(|v| v.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_forms_pair_up() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()), Some(v));
            assert_eq!(v.to_string(), v.name());
            assert_eq!(v.with_subgroups().per_lane(), v.per_lane());
            assert_eq!(v.with_subgroups().reads_textures(), v.reads_textures());
            assert!(!v.per_lane().shares_subgroups());
            assert_eq!(
                v.with_subgroups().shares_subgroups(),
                v.is_register_blocked()
            );
        }
        assert_eq!(Variant::from_name("blocked"), None);
    }
}
