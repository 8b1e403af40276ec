//! The CPU reference path: every op in plain Rust, generic over `f32`/`f64`, one file per op
//! family (the GPU twin of `cpu/conv2d.rs` is `gpu/conv2d.rs` + `shaders/conv2d.wgsl`).

pub mod activation;
pub mod augment;
mod backend;
pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod distill;
pub mod dropout;
pub mod float;
pub mod gemm;
pub mod input_gradient;
pub mod int8;
mod int8_backend;
pub mod network;
pub mod optim;
pub mod pool2d;
pub mod softmax_xent;

pub use backend::{check_mask, CpuBackend};
pub use float::Float;
pub use int8_backend::Int8Backend;
