//! GPU-vs-CPU cross-checks: every kernel run on random inputs next to its CPU twin. The tests
//! run them all, and so does `mnist-wgpu check` on the user's adapter.
//!
//! Tolerance: an element passes when `|gpu - cpu| <= RTOL * |cpu| + ATOL * max(1, max |cpu|)`:
//! relative, with an absolute floor scaled to the tensor (sums of many terms can cancel to
//! near zero, where only an absolute error is meaningful). Integer outputs must match exactly.

use anyhow::Result;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::context::GpuContext;

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

/// One comparison: a kernel (or a fixed sequence of kernels) on one shape.
pub struct CrossCheck {
    pub kernel: &'static str,
    pub shape: String,
    pub run: CheckFn,
}

impl CrossCheck {
    pub fn new(
        kernel: &'static str,
        shape: String,
        run: impl Fn(&GpuContext) -> Result<Comparison> + 'static,
    ) -> Self {
        CrossCheck {
            kernel,
            shape,
            run: Box::new(run),
        }
    }
}

/// Uniform random values in `[lo, hi)`, reproducible from `seed`.
pub fn random_vec(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Every cross-check of every kernel, with awkward sizes (batch 1, 7, 33; channel counts and
/// spatial sizes that are not multiples of the workgroup size).
pub fn all_checks() -> Vec<CrossCheck> {
    let mut checks = Vec::new();
    checks.extend(super::gather::checks());
    checks.extend(super::texture::checks());
    checks.extend(super::augment::checks());
    checks.extend(super::conv2d::checks());
    checks.extend(super::activation::checks());
    checks.extend(super::pool2d::checks());
    checks.extend(super::dropout::checks());
    checks.extend(super::batchnorm::checks());
    checks.extend(super::dense::checks());
    checks.extend(super::gemm::checks());
    checks.extend(super::softmax_xent::checks());
    checks.extend(super::optim::checks());
    checks.extend(super::backend::checks());
    checks
}
