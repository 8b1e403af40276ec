//! The GPU path: WGSL kernels through wgpu. One op family per file, named like its shader
//! (`shaders/relu.wgsl`) and its CPU twin (`cpu/relu.rs`).

pub mod augment;
pub mod autotune;
mod backend;
pub mod check;
pub mod context;
pub mod conv2d;
pub mod dense;
pub mod gather;
pub mod kernel;
pub mod maxpool2d;
pub mod network;
pub mod optim;
pub mod profile;
pub mod relu;
pub mod softmax_xent;

pub use backend::GpuBackend;
pub use context::GpuContext;

/// Every shader file (without the preamble), for validation.
pub const SHADERS: &[(&str, &str)] = &[
    ("augment.wgsl", augment::SOURCE),
    ("conv2d.wgsl", conv2d::SOURCE),
    ("dense.wgsl", dense::SOURCE),
    ("gather.wgsl", gather::SOURCE),
    ("maxpool2d.wgsl", maxpool2d::SOURCE),
    ("optim.wgsl", optim::SOURCE),
    ("relu.wgsl", relu::SOURCE),
    ("softmax_xent.wgsl", softmax_xent::SOURCE),
];
