//! The GPU path: WGSL kernels through wgpu. One op family per file, named like its shader
//! (`shaders/pool2d.wgsl`) and its CPU twin (`cpu/pool2d.rs`), or, for ops with several kernel
//! variants, per directory (`conv2d/` and `shaders/conv2d/`, `dense/` and `shaders/dense/`: a
//! file per variant family; `variant.rs` names the variants); `ops.rs` lists the ops and their
//! shader modules.

pub mod activation;
pub mod augment;
pub mod autotune;
mod backend;
pub mod batchnorm;
pub mod buffer;
pub mod check;
pub mod context;
pub mod conv2d;
pub mod dense;
pub mod distill;
pub mod dropout;
pub mod gather;
pub mod gemm;
pub mod int8;
pub mod int8_backend;
pub mod kernel;
pub mod network;
pub mod ops;
pub mod optim;
pub mod pool2d;
pub mod profile;
pub mod softmax_xent;
pub mod texture;
pub mod variant;

pub use backend::GpuBackend;
pub use context::GpuContext;
