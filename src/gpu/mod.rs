//! The GPU path: WGSL kernels through wgpu. One op family per file, named like its shader
//! (`shaders/relu.wgsl`) and its CPU twin (`cpu/relu.rs`).

pub mod check;
pub mod context;
pub mod conv2d;
pub mod dense;
pub mod gather;
pub mod kernel;
pub mod maxpool2d;
pub mod optim;
pub mod relu;
pub mod softmax_xent;

pub use context::GpuContext;
