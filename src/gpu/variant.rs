//! Kernel variants: the one registration shape of every op that has several (conv2d and
//! dense), and what an op offers the autotuner for one pass at one shape.
//!
//! An op registers its variants in one list, a [`Registration`] each: the variant's name, its
//! WGSL modules and the function that builds its kernels on a device. The op keeps the ones its
//! adapter can run ([`Registered`]), says which of them run a pass at a shape (its `offer`, with
//! the fixed rule's choice), and every pass takes the [`Variant`] to run. A variant's name is
//! what users see in `info --kernels`, the metrics JSON, `--kernels-from` and the autotune
//! cache, so names never change.

use super::context::GpuContext;
use super::kernel::WgslModule;

/// Which kernels compute a pass, by name. Every variant sums each output in a fixed order, so
/// it gives the same bits on every run on one adapter; different variants may round
/// differently. The op's registry says what each name runs (`VARIANTS` in `conv2d/kernels.rs`
/// and `dense/kernels.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant(&'static str);

impl Variant {
    /// Workgroup tiles staged in workgroup memory: fast on real GPUs, and the variant that runs
    /// every pass of every shape (where another declines one, this runs it).
    pub const TILED: Variant = Variant("tiled");
    /// No workgroup memory or barriers: each invocation keeps a block of outputs in registers
    /// and reuses every value it loads across the block. Fast on CPU adapters (lavapipe), where
    /// a workgroup is SIMD lanes on one CPU thread and every load and barrier is expensive.
    pub const REGISTER_BLOCKED: Variant = Variant("register-blocked");

    /// The variant named `name` (a registration's name).
    pub const fn named(name: &'static str) -> Variant {
        Variant(name)
    }

    /// The variant for an adapter, by a fixed rule: CPU adapters (`wgpu::DeviceType::Cpu`, such
    /// as lavapipe/llvmpipe) get `register-blocked`, everything else `tiled`.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Variant {
        match info.device_type {
            wgpu::DeviceType::Cpu => Variant::REGISTER_BLOCKED,
            _ => Variant::TILED,
        }
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One variant of an op: its name, its WGSL modules (validated by `tests/shaders.rs`, listed
/// by `gpu::ops`), and how it builds its kernels on a device: `None` where the adapter cannot
/// run it (then it is neither offered nor checked there). `K` is the op's trait of passes,
/// `S` what the op's variants share, built once per device (conv2d's chunk sums).
pub struct Registration<K: ?Sized, S> {
    pub variant: Variant,
    pub modules: &'static [WgslModule],
    pub build: fn(&GpuContext, &S) -> Option<Box<K>>,
    /// The variant that runs what this one declines (a pass, a shape, or tensors too large for
    /// its textures): `tiled` unless said otherwise, which runs everything.
    pub fallback: Variant,
}

impl<K: ?Sized, S> Registration<K, S> {
    pub const fn new(
        name: &'static str,
        modules: &'static [WgslModule],
        build: fn(&GpuContext, &S) -> Option<Box<K>>,
    ) -> Registration<K, S> {
        Registration {
            variant: Variant::named(name),
            modules,
            build,
            fallback: Variant::TILED,
        }
    }

    /// The same, with what it declines run by `fallback`.
    pub const fn falls_back_to(self, fallback: Variant) -> Registration<K, S> {
        Registration { fallback, ..self }
    }
}

/// The variants of a registry that an adapter runs, built, in registry order.
pub struct Registered<K: ?Sized> {
    built: Vec<(Variant, Box<K>)>,
    /// Every registered variant's fallback, built or not.
    fallbacks: Vec<(Variant, Variant)>,
}

impl<K: ?Sized> Registered<K> {
    /// Builds every variant of `registry` that the adapter of `ctx` runs.
    pub fn build<S>(ctx: &GpuContext, registry: &[Registration<K, S>], shared: &S) -> Self {
        let built = registry
            .iter()
            .filter_map(|r| Some((r.variant, (r.build)(ctx, shared)?)))
            .collect();
        let fallbacks = registry.iter().map(|r| (r.variant, r.fallback)).collect();
        Registered { built, fallbacks }
    }

    /// What `pass` gives on `variant`, or where that variant declines it (or is not built
    /// here), on its fallback, and so on down the chain; None where every one declines.
    pub fn first<T>(&self, variant: Variant, pass: impl Fn(&K) -> Option<T>) -> Option<T> {
        let mut v = variant;
        // A chain visits each registered variant at most once (each registry's test checks
        // that every chain ends at `tiled`).
        for _ in 0..=self.fallbacks.len() {
            if let Some(done) = self.get(v).and_then(&pass) {
                return Some(done);
            }
            match self.fallbacks.iter().find(|&&(from, _)| from == v) {
                Some(&(_, next)) if next != v => v = next,
                _ => return None,
            }
        }
        None
    }

    /// The kernels of `variant`, where the adapter runs it.
    pub fn get(&self, variant: Variant) -> Option<&K> {
        self.built
            .iter()
            .find(|(v, _)| *v == variant)
            .map(|(_, k)| &**k)
    }

    /// Every variant built, in registry order, with its kernels.
    pub fn iter(&self) -> impl Iterator<Item = (Variant, &K)> {
        self.built.iter().map(|(v, k)| (*v, &**k))
    }
}

/// The registered variants whose fallbacks do not end at `tiled` (which runs every pass), each
/// with where its chain stopped: empty for a sound registry (each op's tests check theirs).
pub fn stray_fallbacks<K: ?Sized, S>(registry: &[Registration<K, S>]) -> Vec<(Variant, Variant)> {
    let fallback = |v: Variant| registry.iter().find(|r| r.variant == v).map(|r| r.fallback);
    let ends = |start: Variant| {
        let mut v = start;
        for _ in 0..registry.len() {
            match fallback(v) {
                Some(next) if v != Variant::TILED => v = next,
                _ => break,
            }
        }
        v
    };
    let ends: Vec<(Variant, Variant)> = registry
        .iter()
        .map(|r| (r.variant, ends(r.variant)))
        .collect();
    ends.into_iter()
        .filter(|&(_, end)| end != Variant::TILED)
        .collect()
}

/// Every module of a registry, and `shared` (the modules every variant uses), each once.
pub fn modules<K: ?Sized, S>(
    shared: &[WgslModule],
    registry: &[Registration<K, S>],
) -> Vec<WgslModule> {
    let mut modules: Vec<WgslModule> = shared.to_vec();
    for module in registry.iter().flat_map(|r| r.modules.iter().copied()) {
        if !modules.iter().any(|m| m.label == module.label) {
            modules.push(module);
        }
    }
    modules
}

/// The variants an op offers for one pass at one shape on one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// Every variant that runs the pass here as its name says (a pinned choice must be one).
    pub variants: Vec<Variant>,
    /// Those the autotuner times: all of `variants` but those another one stands in for here
    /// (the per-lane forms of kernels whose subgroup form runs), whose compilation a first run
    /// on a CPU adapter would pay for nothing.
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

    /// A chain that loops, or ends at a variant that is not registered, is found.
    #[test]
    fn stray_fallbacks_are_found() {
        fn build(_: &GpuContext, _: &()) -> Option<Box<()>> {
            None
        }
        let tiled = Registration::new("tiled", &[], build);
        let a = Registration::new("a", &[], build).falls_back_to(Variant::named("b"));
        let b = Registration::new("b", &[], build).falls_back_to(Variant::named("a"));
        let c = Registration::new("c", &[], build).falls_back_to(Variant::named("gone"));
        let sound = Registration::new("d", &[], build).falls_back_to(Variant::named("tiled"));
        let strays = stray_fallbacks(&[tiled, a, b, c, sound]);
        let names: Vec<&str> = strays.iter().map(|(v, _)| v.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn names_print_as_themselves() {
        assert_eq!(Variant::TILED.to_string(), "tiled");
        assert_eq!(
            Variant::named("register-blocked"),
            Variant::REGISTER_BLOCKED
        );
        assert_ne!(Variant::named("blocked"), Variant::REGISTER_BLOCKED);
    }
}
