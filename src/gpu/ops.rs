//! The one list of the GPU ops: each op's name, its shader files and its GPU-vs-CPU
//! cross-checks. `mnist-wgpu check`, the shader validation tests and the per-op cross-check
//! tests (`tests/gpu_kernels.rs`) all read it; nothing in `src/gpu` imports it back.

use super::check::CrossCheck;
use super::kernel::{ShaderFile, WgslModule};
use super::{
    activation, augment, backend, batchnorm, conv2d, dense, distill, dropout, gather, gemm, int8,
    int8_backend, optim, pool2d, softmax_xent, texture,
};

/// One op family: `shaders/<name>…`, `src/gpu/<name>…` and its CPU twin `src/cpu/<name>.rs`
/// (or the CPU code named in the host file's header).
pub struct Op {
    pub name: &'static str,
    /// The op's shader modules: each the preamble, then a list of its WGSL files.
    pub modules: fn() -> Vec<WgslModule>,
    /// Its cross-checks on awkward sizes (batch 1, 7, 33; sizes off the workgroup's multiples).
    pub checks: fn() -> Vec<CrossCheck>,
}

/// The module of an op with one shader file.
macro_rules! one_file {
    ($path:literal, $text:expr) => {
        || {
            vec![WgslModule {
                label: $path,
                files: &[ShaderFile {
                    path: $path,
                    text: $text,
                }],
                subgroups: false,
            }]
        }
    };
}

/// Every op, in the order `check` runs them (cheapest first).
pub const OPS: &[Op] = &[
    op(
        "gather",
        one_file!("gather.wgsl", gather::SOURCE),
        gather::checks,
    ),
    op("texture", Vec::new, texture::checks),
    op(
        "augment",
        one_file!("augment.wgsl", augment::SOURCE),
        augment::checks,
    ),
    op("conv2d", conv2d::kernels::modules, conv2d::checks::checks),
    op(
        "activation",
        one_file!("activation.wgsl", activation::SOURCE),
        activation::checks,
    ),
    op(
        "pool2d",
        one_file!("pool2d.wgsl", pool2d::SOURCE),
        pool2d::checks,
    ),
    op(
        "dropout",
        one_file!("dropout.wgsl", dropout::SOURCE),
        dropout::checks,
    ),
    op(
        "batchnorm",
        one_file!("batchnorm.wgsl", batchnorm::SOURCE),
        batchnorm::checks,
    ),
    op("dense", dense::kernels::modules, dense::checks::checks),
    op("gemm", one_file!("gemm.wgsl", gemm::SOURCE), gemm::checks),
    op(
        "softmax_xent",
        one_file!("softmax_xent.wgsl", softmax_xent::SOURCE),
        softmax_xent::checks,
    ),
    // Its losses go through softmax_xent's accumulate, checked with it.
    op("distill", distill::modules, distill::checks),
    op(
        "optim",
        one_file!("optim.wgsl", optim::SOURCE),
        optim::checks,
    ),
    op("int8", int8::modules, int8::checks),
    // Whole int8 models against the CPU's integer path.
    op("int8_net", Vec::new, int8_backend::checks),
    // Whole training and inference steps against the CPU backend.
    op("training_step", Vec::new, backend::checks),
];

const fn op(
    name: &'static str,
    modules: fn() -> Vec<WgslModule>,
    checks: fn() -> Vec<CrossCheck>,
) -> Op {
    Op {
        name,
        modules,
        checks,
    }
}

/// Every cross-check of every op.
pub fn all_checks() -> Vec<CrossCheck> {
    OPS.iter().flat_map(|op| (op.checks)()).collect()
}

/// Every shader module of every op.
pub fn modules() -> impl Iterator<Item = WgslModule> {
    OPS.iter().flat_map(|op| (op.modules)())
}

/// Every shader file of every op, each once (path under `shaders/`, text).
pub fn files() -> Vec<ShaderFile> {
    let mut files: Vec<ShaderFile> = Vec::new();
    let listed = modules().flat_map(|m| m.files.iter().copied());
    for file in listed.filter(ShaderFile::is_file) {
        if !files.iter().any(|f| f.path == file.path) {
            files.push(file);
        }
    }
    files
}
