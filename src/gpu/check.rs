//! GPU-vs-CPU cross-checks: the comparison a kernel's result must pass against its CPU twin,
//! and the shape of a check. Each op file lists its own checks; `ops.rs` lists the ops.
//!
//! Tolerance: an element passes when `|gpu - cpu| <= RTOL * |cpu| + ATOL * max(1, max |cpu|)`:
//! relative, with an absolute floor scaled to the tensor (sums of many terms can cancel to
//! near zero, where only an absolute error is meaningful). Integer outputs must match exactly.

use anyhow::Result;

use super::context::GpuContext;
use crate::rng::random_vec;

pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 1e-5;

/// The worst difference found between a GPU result and its CPU reference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Comparison {
    pub max_abs: f64,
    pub max_rel: f64,
    pub passed: bool,
}

impl Comparison {
    /// Combines the comparisons of several outputs of one kernel.
    pub fn merge(self, other: Comparison) -> Comparison {
        Comparison {
            max_abs: self.max_abs.max(other.max_abs),
            max_rel: self.max_rel.max(other.max_rel),
            passed: self.passed && other.passed,
        }
    }
}

/// Compares float outputs with the documented tolerance.
pub fn compare(gpu: &[f32], cpu: &[f32]) -> Comparison {
    if gpu.len() != cpu.len() {
        return Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
            passed: false,
        };
    }
    let scale = cpu.iter().fold(1.0f64, |m, &c| m.max(f64::from(c).abs()));
    let mut result = Comparison {
        passed: true,
        ..Default::default()
    };
    for (&g, &c) in gpu.iter().zip(cpu) {
        let (g, c) = (f64::from(g), f64::from(c));
        let abs = (g - c).abs();
        let abs = if abs.is_nan() { f64::INFINITY } else { abs };
        result.max_abs = result.max_abs.max(abs);
        result.max_rel = result.max_rel.max(abs / c.abs().max(ATOL));
        result.passed &= abs <= RTOL * c.abs() + ATOL * scale;
    }
    result
}

/// Compares integer outputs, which must be equal.
pub fn compare_exact(gpu: &[u32], cpu: &[u32]) -> Comparison {
    let same = gpu == cpu;
    let wrong = if same { 0.0 } else { f64::INFINITY };
    Comparison {
        max_abs: wrong,
        max_rel: wrong,
        passed: same,
    }
}

/// Runs a comparison on a device.
pub type CheckFn = Box<dyn Fn(&GpuContext) -> Result<Comparison>>;

/// Whether a check's kernel runs on a device.
type AppliesFn = Box<dyn Fn(&GpuContext) -> bool>;

/// One comparison: a kernel (or a fixed sequence of kernels) on one shape.
pub struct CrossCheck {
    pub kernel: String,
    pub shape: String,
    pub run: CheckFn,
    /// Whether the kernel runs on an adapter (None: on every one).
    applies: Option<AppliesFn>,
}

impl CrossCheck {
    pub fn new(
        kernel: impl Into<String>,
        shape: String,
        run: impl Fn(&GpuContext) -> Result<Comparison> + 'static,
    ) -> Self {
        CrossCheck {
            kernel: kernel.into(),
            shape,
            run: Box::new(run),
            applies: None,
        }
    }

    /// The same check, for the adapters where `applies` holds only (a kernel that needs an
    /// adapter feature): elsewhere it is left out, not passed.
    pub fn only_where(self, applies: impl Fn(&GpuContext) -> bool + 'static) -> Self {
        CrossCheck {
            applies: Some(Box::new(applies)),
            ..self
        }
    }

    /// Whether the check's kernel runs on the adapter of `ctx`.
    pub fn applies(&self, ctx: &GpuContext) -> bool {
        self.applies.as_ref().is_none_or(|f| f(ctx))
    }
}

/// A layer check's random inputs in [-1, 1): x, w, b and dy of the given lengths, each its own
/// stream from `seed` (seed, seed + 1, ...), so a case's data depends only on its shape.
pub struct LayerData {
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub dy: Vec<f32>,
}

impl LayerData {
    pub fn random(seed: u64, [x, w, b, dy]: [usize; 4]) -> LayerData {
        LayerData {
            x: random_vec(x, seed, -1.0, 1.0),
            w: random_vec(w, seed + 1, -1.0, 1.0),
            b: random_vec(b, seed + 2, -1.0, 1.0),
            dy: random_vec(dy, seed + 3, -1.0, 1.0),
        }
    }
}
