//! Conv2d on the GPU (`shaders/conv2d/`), twin of `cpu/conv2d.rs`: stride 1, valid padding,
//! NCHW activations, OIHW weights. Every output element is summed by one invocation in a fixed
//! order (gathers, never scatters; the weight gradient adds fixed chunks of partial sums in chunk
//! order), so results are bit-reproducible.
//!
//! Three families of variants of every pass ([`Variant`](crate::gpu::variant::Variant)), all compiled by
//! [`kernels::Conv2dKernels::new`]; each call names the one to run, and [`kernels::Conv2dKernels::offer`] says
//! which a pass offers the autotuner, and the default:
//! - register-blocked (`register_blocked.rs`), for CPU adapters (lavapipe): each invocation
//!   owns a block of 32 channels x 8 row segments (or (in channel, ky) pairs) x 4 columns (or
//!   kx), or for the input gradient 32 positions of a class of positions that meet the output
//!   with the same taps, and reuses every value it loads across the block, with no workgroup
//!   memory. The forward and input gradient first pack the 32 weights each step multiplies into
//!   two uniform bindings (where they fit, about 1000 steps), which lavapipe gathers without the
//!   lane-by-lane loop of a storage load; register-blocked-subgroup, where the adapter has
//!   subgroups, has the lanes of the forward and 3x3 weight gradient share those loads
//!   (`subgroup.rs`);
//! - register-blocked-texture (and register-blocked-texture-subgroup): the same kernels reading
//!   x and dy from r32float textures copied from the buffers before each pass, for lavapipe on
//!   CPUs without AVX-512, where every storage load stalls once per lane;
//! - tiled (`tiled.rs`), for real GPUs: an implicit GEMM in which each workgroup computes a
//!   `TILE_M x TILE_N` tile of outputs, staging slices of both operands in workgroup memory.
//!
//! Each variant is a list of WGSL files ([`MODULES`]); the block and tile shapes are fixed in
//! the shaders, and the host counts the blocks or tiles of a geometry (the shaders' header
//! comments describe each kernel's scheme). The weight gradient's chunk sums, which every
//! variant shares, are in `sums.rs`; the cross-checks in `checks.rs`.
//!
//! This file holds what the family files share (the shader files and modules, the products'
//! uniform and the grid); `kernels.rs` compiles every family and runs each pass with the
//! variant asked for. Imports run one way: the family files import this file, `kernels.rs`
//! imports the families, and nothing here imports `kernels.rs` or `checks.rs`.

pub mod checks;
pub mod kernels;
mod register_blocked;
mod subgroup;
mod sums;
mod tiled;

use bytemuck::{Pod, Zeroable};

use super::buffer::View;
use super::kernel::{ShaderFile, WgslModule};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::shader_file;

const COMMON: ShaderFile = shader_file!("conv2d/common.wgsl");
const PRODUCTS: ShaderFile = shader_file!("conv2d/products.wgsl");
const READS_STORAGE: ShaderFile = shader_file!("conv2d/reads_storage.wgsl");
const READS_TEXTURE: ShaderFile = shader_file!("conv2d/reads_texture.wgsl");
const TILED: ShaderFile = shader_file!("conv2d/tiled.wgsl");
const REDUCE: ShaderFile = shader_file!("conv2d/reduce.wgsl");
const PACK: ShaderFile = shader_file!("conv2d/pack.wgsl");
const REGISTER_BLOCKED: ShaderFile = shader_file!("conv2d/register_blocked.wgsl");
const RB_FORWARD: ShaderFile = shader_file!("conv2d/register_blocked_forward.wgsl");
const RB_BACKWARD_INPUT: ShaderFile = shader_file!("conv2d/register_blocked_backward_input.wgsl");
const RB_BACKWARD_WEIGHTS: ShaderFile =
    shader_file!("conv2d/register_blocked_backward_weights.wgsl");
const SHARE_PER_LANE: ShaderFile = shader_file!("conv2d/share_per_lane.wgsl");
const SUBGROUP: ShaderFile = shader_file!("conv2d/subgroup.wgsl");

/// The tiled kernels.
const TILED_MODULE: WgslModule = WgslModule::new("conv2d tiled", &[COMMON, TILED]);
/// The chunk sums and the weight packing, which every variant runs beside its products.
const SUMS_MODULE: WgslModule = WgslModule::new("conv2d sums", &[COMMON, REDUCE, PACK]);

/// A register-blocked module: the kernels reading their inputs as `$reads` says, and getting
/// the values all lanes need as `$share` says.
macro_rules! register_blocked_module {
    ($label:literal, $reads:expr, $share:expr, $subgroups:literal) => {
        WgslModule {
            label: $label,
            files: &[
                COMMON,
                PRODUCTS,
                $reads,
                REGISTER_BLOCKED,
                RB_FORWARD,
                RB_BACKWARD_INPUT,
                RB_BACKWARD_WEIGHTS,
                $share,
            ],
            subgroups: $subgroups,
        }
    };
}

/// The register-blocked kernels, reading storage or textures, each lane loading for itself.
const REGISTER_BLOCKED_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked",
    READS_STORAGE,
    SHARE_PER_LANE,
    false
);
const REGISTER_BLOCKED_TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture",
    READS_TEXTURE,
    SHARE_PER_LANE,
    false
);
/// The same with loads shared across subgroup lanes (and the probe that tells whether the
/// adapter's subgroups are laid out as they need).
const SUBGROUP_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked (subgroups)",
    READS_STORAGE,
    SUBGROUP,
    true
);
const SUBGROUP_TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture (subgroups)",
    READS_TEXTURE,
    SUBGROUP,
    true
);

/// Every module of the op (for the shader tests and `gpu::ops`).
pub const MODULES: &[WgslModule] = &[
    TILED_MODULE,
    SUMS_MODULE,
    REGISTER_BLOCKED_MODULE,
    REGISTER_BLOCKED_TEXTURE_MODULE,
    SUBGROUP_MODULE,
    SUBGROUP_TEXTURE_MODULE,
];

const MAX_GROUPS_PER_DIM: usize = 65535;

/// The most row (or column) runs of the register-blocked input gradient's position classes
/// (`MAX_RUNS` in `products.wgsl`; its `MAX_CLASSES` is the square), which size the uniform.
const MAX_RUNS: usize = 16;

/// Mirrors `Conv2dParams` in the shader (`products.wgsl`): the register-blocked kernels' uniform
/// (the tiled kernels have their own, `tiled::TiledParams`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Conv2dParams {
    batch: u32,
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    relu: u32,
    /// Workgroups that do work (forward and input gradient); invocations (weight gradient).
    len: u32,
    /// Forward: blocks of columns per row (forward) or of kx (weight gradient).
    col_blocks: u32,
    /// Weight gradient: blocks of (ci, ky) pairs.
    row_blocks: u32,
    /// Weight gradient: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    /// Weight gradient: the elements per chunk of partial sums.
    partial_stride: u32,
    /// Forward and input gradient: workgroups per block of channels, and the
    /// steps (packed weight slots) of a block.
    block_groups: u32,
    block_steps: u32,
    /// Input gradient: row runs of its position classes.
    row_runs: u32,
    /// Input gradient: column runs of its position classes.
    col_runs: u32,
    /// Forward and input gradient: the first packed slot of the second
    /// binding ([`packed_split`]).
    packed_split: u32,
    /// The arrays start on 16 bytes, as in the shader.
    _pad: u32,
    /// Input gradient: the runs, and each class's first lane and runs (see
    /// [`Conv2dParams::input_classes`]).
    row_run: [[u32; 4]; MAX_RUNS],
    col_run: [[u32; 4]; MAX_RUNS],
    classes: [[u32; 4]; MAX_RUNS * MAX_RUNS],
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("conv2d: size fits in u32")
}

impl Conv2dParams {
    fn new(g: Conv2dGeometry, n: usize) -> Conv2dParams {
        let out = g.output();
        Conv2dParams {
            batch: u(n),
            in_channels: u(g.input.channels),
            in_height: u(g.input.height),
            in_width: u(g.input.width),
            out_channels: u(g.out_channels),
            out_height: u(out.height),
            out_width: u(out.width),
            kernel: u(g.kernel),
            ..Zeroable::zeroed()
        }
    }
}

/// Elements of the OIHW weight tensor.
fn weight_len(g: Conv2dGeometry) -> usize {
    g.out_channels * g.input.channels * g.kernel * g.kernel
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_mirror_matches_the_shader() {
        let host = std::mem::size_of::<Conv2dParams>();
        let module = REGISTER_BLOCKED_MODULE;
        super::super::kernel::assert_struct_size(module, "Conv2dParams", host);
    }

    /// Every module validates (with subgroup operations where it uses them) and has the entry
    /// points the host creates kernels of.
    #[test]
    fn every_module_validates_with_its_entry_points() {
        let register_blocked = [
            "conv2d_forward",
            "conv2d_forward_pool",
            "conv2d_backward_input",
            "conv2d_backward_input_packed",
            "conv2d_backward_weights",
            "conv2d_backward_weights_narrow",
            "conv2d_backward_weights_pooled",
        ];
        let per_lane = [
            "conv2d_forward_packed",
            "conv2d_forward_pool_packed",
            "conv2d_backward_weights_k3",
        ];
        let shared = [
            "conv2d_forward_packed_shared",
            "conv2d_forward_pool_packed_shared",
            "conv2d_backward_weights_k3_shared",
            "conv2d_subgroup_probe",
        ];
        let tiled = [
            "conv2d_forward_tiled",
            "conv2d_backward_input_tiled",
            "conv2d_backward_weights_tiled",
        ];
        let sums = [
            "conv2d_reduce",
            "conv2d_reduce_split",
            "conv2d_pack_forward_weights",
            "conv2d_pack_backward_input_weights",
        ];
        let rb = |last: &[&'static str]| [&register_blocked[..], last].concat();
        for (module, entry_points) in [
            (TILED_MODULE, tiled.to_vec()),
            (SUMS_MODULE, sums.to_vec()),
            (REGISTER_BLOCKED_MODULE, rb(&per_lane)),
            (REGISTER_BLOCKED_TEXTURE_MODULE, rb(&per_lane)),
            (SUBGROUP_MODULE, rb(&shared)),
            (SUBGROUP_TEXTURE_MODULE, rb(&shared)),
        ] {
            let validated = super::super::kernel::validated(&module.body());
            let mut names: Vec<&str> = validated
                .entry_points
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            names.sort();
            let mut expected = entry_points.clone();
            expected.sort();
            assert_eq!(names, expected, "{}", module.label);
        }
    }
}
