//! The one list of the GPU ops: each op's name, its shader files and its GPU-vs-CPU
//! cross-checks. `mnist-wgpu check`, the shader validation tests and the per-op cross-check
//! tests (`tests/gpu_kernels.rs`) all read it; nothing in `src/gpu` imports it back.

use super::check::CrossCheck;
use super::{
    activation, augment, backend, batchnorm, conv2d, dense, dropout, gather, gemm, optim, pool2d,
    softmax_xent, texture,
};

/// One op family: `shaders/<name>…`, `src/gpu/<name>…` and its CPU twin `src/cpu/<name>.rs`
/// (or the CPU code named in the host file's header).
pub struct Op {
    pub name: &'static str,
    /// The op's WGSL files (path under `shaders/`, text), without the preamble.
    pub shaders: &'static [(&'static str, &'static str)],
    /// Its cross-checks on awkward sizes (batch 1, 7, 33; sizes off the workgroup's multiples).
    pub checks: fn() -> Vec<CrossCheck>,
}

/// Every op, in the order `check` runs them (cheapest first).
pub const OPS: &[Op] = &[
    op("gather", &[("gather.wgsl", gather::SOURCE)], gather::checks),
    op("texture", &[], texture::checks),
    op(
        "augment",
        &[("augment.wgsl", augment::SOURCE)],
        augment::checks,
    ),
    op("conv2d", &[("conv2d.wgsl", conv2d::SOURCE)], conv2d::checks),
    op(
        "activation",
        &[("activation.wgsl", activation::SOURCE)],
        activation::checks,
    ),
    op("pool2d", &[("pool2d.wgsl", pool2d::SOURCE)], pool2d::checks),
    op(
        "dropout",
        &[("dropout.wgsl", dropout::SOURCE)],
        dropout::checks,
    ),
    op(
        "batchnorm",
        &[("batchnorm.wgsl", batchnorm::SOURCE)],
        batchnorm::checks,
    ),
    op("dense", &[("dense.wgsl", dense::SOURCE)], dense::checks),
    op("gemm", &[("gemm.wgsl", gemm::SOURCE)], gemm::checks),
    op(
        "softmax_xent",
        &[("softmax_xent.wgsl", softmax_xent::SOURCE)],
        softmax_xent::checks,
    ),
    op("optim", &[("optim.wgsl", optim::SOURCE)], optim::checks),
    // Whole training and inference steps against the CPU backend.
    op("training_step", &[], backend::checks),
];

const fn op(
    name: &'static str,
    shaders: &'static [(&'static str, &'static str)],
    checks: fn() -> Vec<CrossCheck>,
) -> Op {
    Op {
        name,
        shaders,
        checks,
    }
}

/// Every cross-check of every op.
pub fn all_checks() -> Vec<CrossCheck> {
    OPS.iter().flat_map(|op| (op.checks)()).collect()
}

/// Every shader file of every op (path under `shaders/`, text).
pub fn shaders() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPS.iter().flat_map(|op| op.shaders.iter().copied())
}
