//! The GPU path: WGSL kernels through wgpu. One op family per file, named like its shader
//! (`shaders/pool2d.wgsl`) and its CPU twin (`cpu/pool2d.rs`).

pub mod activation;
pub mod augment;
pub mod autotune;
mod backend;
pub mod batchnorm;
pub mod check;
pub mod context;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod gather;
pub mod gemm;
pub mod kernel;
pub mod network;
pub mod optim;
pub mod pool2d;
pub mod profile;
pub mod softmax_xent;
pub mod texture;

pub use backend::GpuBackend;
pub use context::GpuContext;

/// Every shader file (without the preamble), for validation.
pub const SHADERS: &[(&str, &str)] = &[
    ("activation.wgsl", activation::SOURCE),
    ("augment.wgsl", augment::SOURCE),
    ("batchnorm.wgsl", batchnorm::SOURCE),
    ("conv2d.wgsl", conv2d::SOURCE),
    ("dense.wgsl", dense::SOURCE),
    ("dropout.wgsl", dropout::SOURCE),
    ("gather.wgsl", gather::SOURCE),
    ("gemm.wgsl", gemm::SOURCE),
    ("optim.wgsl", optim::SOURCE),
    ("pool2d.wgsl", pool2d::SOURCE),
    ("softmax_xent.wgsl", softmax_xent::SOURCE),
];
