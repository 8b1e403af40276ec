//! mnist-wgpu: train small CNNs on MNIST in WGSL compute shaders, with a plain-Rust CPU
//! reference path for every op.
//!
//! Data flows one way: [`data`] -> batches -> a [`model`] on a [`backend::Backend`] ->
//! [`metrics`].

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod checkpoint_int8;
pub mod config;
pub mod cpu;
pub mod data;
pub mod error;
pub mod explain;
pub mod fsutil;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod plots;
pub mod predict;
pub mod privacy;
pub mod prune;
pub mod quantize;
pub mod report;
pub mod rng;
pub mod search;
pub mod text;
pub mod train;
