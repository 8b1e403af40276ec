//! Conv2d on the GPU (`shaders/conv2d/`), twin of `cpu/conv2d.rs`: NCHW activations, OIHW
//! weights; strides and padding in the tiled variant (the others take stride 1, valid
//! padding). Every output element is summed by one invocation in a fixed order (gathers, never
//! scatters; the weight gradient adds fixed chunks of partial sums in chunk order), so results
//! are bit-reproducible.
//!
//! A variant is a way to run the op's passes ([`Conv2dVariant`]), registered in one line of
//! `kernels.rs` (`VARIANTS`), with a host file per family:
//! - `register_blocked.rs`, for CPU adapters (lavapipe): each invocation owns a block of 32
//!   channels x 8 row segments (or (in channel, ky) pairs) x 4 columns (or kx), or for the
//!   input gradient 32 positions of a class of positions that meet the output with the same
//!   taps, and reuses every value it loads across the block, with no workgroup memory. The
//!   forward and input gradient first pack the 32 weights each step multiplies into two uniform
//!   bindings (where they fit, about 1000 steps), which lavapipe gathers without the
//!   lane-by-lane loop of a storage load. `register-blocked` reads x and dy from storage,
//!   `register-blocked-texture` from r32float textures copied from the buffers before each
//!   pass, for lavapipe on CPUs without AVX-512, where every storage load stalls once per lane;
//! - `subgroup.rs`: `register-blocked-subgroup` and `register-blocked-texture-subgroup`, where
//!   the adapter has subgroups, have the lanes of the packed forward and the 3x3 weight gradient
//!   share their loads (the other passes fall back to the per-lane forms);
//! - `tiled.rs`, for real GPUs: an implicit GEMM in which each workgroup computes a
//!   `TILE_M x TILE_N` tile of outputs, staging slices of both operands in workgroup memory;
//!   the only one with strides and padding, and the fallback of every other.
//!
//! A variant is a list of WGSL files (its registration's modules); the block and tile shapes
//! are fixed in the shaders, and the host counts the blocks or tiles of a geometry (the shaders'
//! header comments describe each kernel's scheme). What every variant shares (the weight
//! gradient's chunk sums, the weight packing) is in `sums.rs` and `shared.rs`; the cross-checks
//! are in `checks.rs`.
//!
//! This file holds what the family files share: the shader files, the variant trait, the
//! passes' names and the grid. Imports run one way: the family files import this file,
//! `sums.rs` and `shared.rs`; `kernels.rs` imports the families; nothing imports `kernels.rs`
//! or `checks.rs` back.

/// A register-blocked module: the kernels reading their inputs as `$reads` says, and getting
/// the values all lanes need as `$share` says (`register_blocked.rs`, `subgroup.rs`, which
/// bring the uniforms of `products.rs` into scope).
macro_rules! register_blocked_module {
    ($label:literal, $reads:expr, $share:expr, $subgroups:literal) => {
        WgslModule {
            label: $label,
            files: &[
                $crate::gpu::conv2d::COMMON,
                Conv2dShape::WGSL,
                Conv2dForwardParams::WGSL,
                Conv2dInputGradParams::WGSL,
                Conv2dWeightGradParams::WGSL,
                $crate::gpu::conv2d::PRODUCTS,
                $reads,
                $crate::gpu::conv2d::REGISTER_BLOCKED,
                $crate::gpu::conv2d::RB_FORWARD,
                $crate::gpu::conv2d::RB_BACKWARD_INPUT,
                $crate::gpu::conv2d::RB_BACKWARD_WEIGHTS,
                $share,
            ],
            subgroups: $subgroups,
        }
    };
}

pub mod checks;
pub mod kernels;
mod products;
mod register_blocked;
mod shared;
mod subgroup;
mod sums;
mod tiled;

use super::buffer::View;
use super::context::GpuContext;
use super::kernel::{Dispatch, ShaderFile};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::{shader_file, wgsl_struct};

const COMMON: ShaderFile = shader_file!("conv2d/common.wgsl");
const PRODUCTS: ShaderFile = shader_file!("conv2d/products.wgsl");
const READS_STORAGE: ShaderFile = shader_file!("conv2d/reads_storage.wgsl");
const READS_TEXTURE: ShaderFile = shader_file!("conv2d/reads_texture.wgsl");
const REGISTER_BLOCKED: ShaderFile = shader_file!("conv2d/register_blocked.wgsl");
const RB_FORWARD: ShaderFile = shader_file!("conv2d/register_blocked_forward.wgsl");
const RB_BACKWARD_INPUT: ShaderFile = shader_file!("conv2d/register_blocked_backward_input.wgsl");
const RB_BACKWARD_WEIGHTS: ShaderFile =
    shader_file!("conv2d/register_blocked_backward_weights.wgsl");

wgsl_struct! {
    /// A convolution's sizes as its kernels read them: the first member of a pass's uniform.
    pub(super) struct Conv2dShape {
        batch: u32,
        in_channels: u32,
        in_height: u32,
        in_width: u32,
        out_channels: u32,
        out_height: u32,
        out_width: u32,
        kernel: u32,
    }
}

impl Conv2dShape {
    /// The sizes of `g` for a batch of `n`.
    fn new(g: Conv2dGeometry, n: usize) -> Conv2dShape {
        let out = g.output();
        Conv2dShape {
            batch: u(n),
            in_channels: u(g.input.channels),
            in_height: u(g.input.height),
            in_width: u(g.input.width),
            out_channels: u(g.out_channels),
            out_height: u(out.height),
            out_width: u(out.width),
            kernel: u(g.kernel),
        }
    }
}

/// A pass of the op, as the autotuner chooses its variant (`Conv2dKernels::offer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv2dPass {
    /// `forward`, with or without the fused ReLU.
    Forward,
    /// `forward_relu_maxpool` (or, where every variant declines it, the forward and the pooling
    /// apart).
    ForwardReluMaxpool,
    BackwardInput,
    BackwardWeights,
    /// `backward_weights_pooled` (or, where every variant declines it, the pooling's backward
    /// and `backward_weights`).
    BackwardWeightsMaxpool,
}

/// What a conv2d variant implements: a method per pass, each returning the pass's dispatches in
/// order, or None where the variant declines the pass at that shape on this adapter (its
/// registration's fallback then runs it; `tiled` runs every plain pass). `(g, n)`: the geometry
/// and the batch; the callers (`kernels.rs`) have checked the buffers' sizes.
pub trait Conv2dVariant: Send + Sync {
    /// Whether it runs `pass` at `g` itself, as its name says: what the autotuner may time and
    /// a pin may name.
    fn offers(&self, pass: Conv2dPass, g: Conv2dGeometry) -> bool;

    /// Whether it runs the fused `pass` (`ForwardReluMaxpool`, `BackwardWeightsMaxpool`) at
    /// `g` as one pass of its own (where textures fit); elsewhere those run as two.
    fn fuses(&self, _pass: Conv2dPass, _g: Conv2dGeometry) -> bool {
        false
    }

    /// The variant whose kernels this one's replace where it offers a pass: the autotuner times
    /// this one in its place (`Offer::timed`). None for most.
    fn stands_in_for(&self) -> Option<crate::gpu::variant::Variant> {
        None
    }

    /// y = conv(x, w) + b, then max(y, 0) where `relu`.
    fn forward(
        &self,
        ctx: &GpuContext,
        work: (Conv2dGeometry, usize),
        relu: bool,
        tensors: [View; 4],
    ) -> Option<Vec<Dispatch>>;

    /// pooled = maxpool2x2(max(conv(x, w) + b, 0)) and the pooling's argmax (as
    /// `maxpool2d_forward` writes it), in one pass that never stores the convolution's output.
    fn forward_relu_maxpool(
        &self,
        _ctx: &GpuContext,
        _work: (Conv2dGeometry, usize),
        _inputs: [View; 3],
        _outputs: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        None
    }

    /// dx = the gradient w.r.t. the input, from dy and w.
    fn backward_input(
        &self,
        ctx: &GpuContext,
        work: (Conv2dGeometry, usize),
        tensors: [View; 3],
    ) -> Option<Vec<Dispatch>>;

    /// dw and db summed over the batch from x and dy, in a fixed order.
    fn backward_weights(
        &self,
        ctx: &GpuContext,
        work: (Conv2dGeometry, usize),
        inputs: [View; 2],
        grads: [View; 2],
    ) -> Option<Vec<Dispatch>>;

    /// dw and db from the gradient at a fused ReLU and max pooling's output (`dpooled`, with
    /// the `pooled` output and `argmax` the forward wrote), in one pass that never forms dy.
    fn backward_weights_pooled(
        &self,
        _ctx: &GpuContext,
        _work: (Conv2dGeometry, usize),
        _x: View,
        _pooling: [View; 3],
        _grads: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        None
    }
}

const MAX_GROUPS_PER_DIM: usize = 65535;

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("conv2d: size fits in u32")
}

/// Elements of the OIHW weight tensor.
fn weight_len(g: Conv2dGeometry) -> usize {
    g.out_channels * g.input.channels * g.kernel * g.kernel
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
/// Elements of the 2x2 max pooling's output (or argmax) after the convolution `g` of `n`
/// images (odd sizes floor).
fn pooled_len(g: Conv2dGeometry, n: usize) -> usize {
    let out = g.output();
    n * g.out_channels * (out.height / 2) * (out.width / 2)
}

fn expect_elements(view: &View, elements: usize, name: &str) {
    assert!(
        view.size >= 4 * elements as u64,
        "conv2d: {name} holds {} bytes, needs {elements} f32",
        view.size
    );
}

/// `groups` workgroups, folded into 2-D past 65535 (the shaders' `block_lane` and
/// `tile_origin` flatten them again). Extra workgroups return early.
fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [u(x), u(groups.div_ceil(x)), 1]
}
