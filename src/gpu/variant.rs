//! Kernel variants: what an op offers the autotuner for one pass at one shape.

/// A kernel variant of one op (e.g. tiled or register-blocked), named as users see it.
pub trait Variant: Copy + PartialEq + 'static {
    fn name(self) -> &'static str;
}

/// The variants an op offers for one pass at one shape on one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer<V> {
    /// Every variant that runs the pass here as its name says (a pinned choice must be one).
    pub variants: Vec<V>,
    /// Those the autotuner times: all of `variants` but those another one replaces here (the
    /// per-lane forms of kernels whose subgroup form runs), whose compilation a first run on a
    /// CPU adapter would pay for nothing.
    pub timed: Vec<V>,
    /// The variant of the fixed rule (tuning off, or nothing to time).
    pub rule: V,
}

impl<V: Variant> Offer<V> {
    /// Every one of `variants` timed.
    pub fn all(variants: Vec<V>, rule: V) -> Offer<V> {
        Offer {
            timed: variants.clone(),
            variants,
            rule,
        }
    }

    /// The offered variant named `name`.
    pub fn named(&self, name: &str) -> Option<V> {
        self.variants.iter().copied().find(|v| v.name() == name)
    }
}
