//! Conv2d on the GPU (`shaders/conv2d.wgsl`), twin of `cpu/conv2d.rs`: stride 1, valid padding,
//! NCHW activations, OIHW weights. Every output element is summed by one invocation in a fixed
//! order (gathers, never scatters; the weight gradient adds fixed chunks of partial sums in chunk
//! order), so results are bit-reproducible.
//!
//! Three variants of every pass ([`Conv2dVariant`]), all compiled by [`Conv2dKernels::new`]; each
//! call names the one to run, and [`Conv2dVariant::for_adapter`] gives the default:
//! - register-blocked, for CPU adapters (lavapipe): each invocation owns a block of 32 channels
//!   x 8 row segments (or (in channel, ky) pairs) x 4 columns (or kx), or for the input gradient
//!   32 positions of a class of positions that meet the output with the same taps, and reuses
//!   every value it loads across the block, with no workgroup memory. The forward and input
//!   gradient first pack the 32 weights each step multiplies into two uniform bindings (where
//!   they fit, about 1000 steps), which lavapipe gathers without the lane-by-lane loop of a
//!   storage load;
//! - register-blocked-texture: the same kernels reading x and dy from r32float textures that
//!   copied from the buffers before each pass, for lavapipe on CPUs without AVX-512, where every
//!   storage load stalls once per lane;
//! - tiled, for real GPUs: an implicit GEMM in which each workgroup computes a `TILE_M x TILE_N`
//!   tile of outputs, staging slices of both operands in workgroup memory.
//!
//! The block and tile shapes are fixed in the shader; the host counts the blocks or tiles of a
//! geometry (the shader's header comments describe each kernel's scheme).

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{
    compile, compile_register_blocked, grid_1d, run, Access, Dispatch, Kernel, Resource,
};
use super::texture::{self, texture_reads, Texel, TEXTURE_WIDTH};
use crate::cpu::activation::activation_forward;
use crate::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use crate::cpu::pool2d::{maxpool2d_backward, maxpool2d_forward, pool2d_output};
use crate::model::{Activation, Shape};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/conv2d.wgsl");

/// Invocations per workgroup of the blocked kernels (`BLOCK_WORKGROUP` in the shader).
const BLOCK_WORKGROUP: usize = 16;
/// Channels of a block (one `Tile`; `BLOCK_CHANNELS` in the shader).
const BLOCK_CHANNELS: usize = 32;
/// Row segments (forward) or (in channel, ky) pairs (weight gradient) of a block (`BLOCK_ROWS`).
const BLOCK_ROWS: usize = 8;
/// Columns (forward) or kx (weight gradient) of a block (`BLOCK_COLS`).
const BLOCK_COLS: usize = 4;
/// Positions of an input-gradient block (`BLOCK_POSITIONS`).
const BLOCK_POSITIONS: usize = 32;
/// The most row (or column) runs of the input gradient's position classes (`MAX_RUNS`; the
/// shader's `MAX_CLASSES` is its square).
const MAX_RUNS: usize = 16;
/// Input channels of a block of the 3x3 weight gradient (`conv2d_backward_weights_k3`).
const K3_BLOCK_CHANNELS: usize = 4;
/// The register-blocked weight gradient splits the batch into chunks until about this many
/// invocations run: more chunks keep more threads busy but make the final sum longer. 192 is 12
/// workgroups, an even share for lavapipe's threads on 2, 3, 4 or 6 cores.
const WEIGHT_GRAD_INVOCATIONS: usize = 192;
/// Rows (channels) and columns (positions, or weights) of the product tile of one workgroup of
/// the tiled kernels (`TILE_M`, `TILE_N`).
const TILE_M: usize = 32;
const TILE_N: usize = 128;
/// The tiled weight and input gradients split their sums into chunks until about this many
/// workgroups run: 2 per multiprocessor of a 132-SM H200 (the 256 that these passes once used)
/// are too few to hide the loads' latency. The input gradient keeps at least
/// `MIN_TERMS_PER_CHUNK` terms in each chunk.
const TILED_WORKGROUPS: usize = 1024;
const MIN_TERMS_PER_CHUNK: usize = 64;
/// Terms of the sum staged per step of the tiled kernels (`TILE_K`).
const TILE_K: usize = 16;
/// Chunks of partial sums past which one workgroup, not one invocation, adds up each element:
/// a chain of that many dependent loads per invocation takes tens of microseconds on a GPU.
/// (Not on CPU adapters, where the workgroup's barriers cost more than the chain: the
/// register-blocked variant always adds one element per invocation.)
const SPLIT_REDUCE_CHUNKS: usize = 64;
const MAX_GROUPS_PER_DIM: usize = 65535;
/// Packed weight slots of one uniform binding (`PACKED_SLOTS`), each the 32 weights of one step
/// of a channel block; the register-blocked forward and backward input have two bindings.
const PACKED_SLOTS: usize = 512;
const PACKED_SLOT_BYTES: u64 = 4 * BLOCK_CHANNELS as u64;
const PACKED_BINDING_BYTES: u64 = PACKED_SLOTS as u64 * PACKED_SLOT_BYTES;

/// Which kernels compute a convolution pass. Every variant sums each output in a fixed order in
/// one invocation (the weight gradient over fixed chunks, then the chunks in order), so a
/// variant gives the same bits on every run on one adapter; the variants round differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conv2dVariant {
    /// No workgroup memory or barriers: each invocation keeps a block of 32 channels x 32
    /// positions of sums in registers. Fast on CPU adapters (lavapipe), where a workgroup is
    /// SIMD lanes on one CPU thread and every load and barrier is expensive.
    RegisterBlocked,
    /// The same kernels reading their activations (x, dy) from r32float textures copied from
    /// the buffers before each pass: on lavapipe a texture load costs a quarter of a storage
    /// load on CPUs without AVX-512, where every storage load stalls on store forwarding once
    /// per lane (see `gpu::texture`).
    RegisterBlockedTexture,
    /// Implicit GEMM with workgroup tiles of `TILE_M x TILE_N` outputs, both operands staged in
    /// workgroup memory `TILE_K` deep: fast on real GPUs.
    Tiled,
}

impl Conv2dVariant {
    pub const ALL: [Conv2dVariant; 3] = [
        Conv2dVariant::RegisterBlocked,
        Conv2dVariant::RegisterBlockedTexture,
        Conv2dVariant::Tiled,
    ];

    /// The variant for an adapter, by a fixed rule: CPU adapters (`wgpu::DeviceType::Cpu`, such
    /// as lavapipe/llvmpipe) get `RegisterBlocked`, everything else `Tiled`.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Conv2dVariant {
        match info.device_type {
            wgpu::DeviceType::Cpu => Conv2dVariant::RegisterBlocked,
            _ => Conv2dVariant::Tiled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Conv2dVariant::RegisterBlocked => "register-blocked",
            Conv2dVariant::RegisterBlockedTexture => "register-blocked-texture",
            Conv2dVariant::Tiled => "tiled",
        }
    }

    /// Whether this is one of the register-blocked variants (the same kernels and blocks).
    pub fn is_register_blocked(self) -> bool {
        self != Conv2dVariant::Tiled
    }

    /// The variants that handle `g`: only the tiled kernels take strides and padding.
    pub fn candidates(g: Conv2dGeometry) -> &'static [Conv2dVariant] {
        if g.is_dense() {
            &Conv2dVariant::ALL
        } else {
            &[Conv2dVariant::Tiled]
        }
    }

    /// This variant if it handles `g`, else the tiled one.
    pub fn for_geometry(self, g: Conv2dGeometry) -> Conv2dVariant {
        if Conv2dVariant::candidates(g).contains(&self) {
            self
        } else {
            Conv2dVariant::Tiled
        }
    }

    /// The variant whose [`name`](Conv2dVariant::name) is `name`.
    pub fn from_name(name: &str) -> Option<Conv2dVariant> {
        Conv2dVariant::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl super::autotune::Variant for Conv2dVariant {
    fn name(self) -> &'static str {
        Conv2dVariant::name(self)
    }
}

impl std::fmt::Display for Conv2dVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Mirrors `Conv2dParams` in the shader.
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
    /// Workgroups that do work (register-blocked forward and input gradient, tiled);
    /// invocations (register-blocked weight gradient); elements (reduction, weight packing).
    len: u32,
    /// Register-blocked: blocks of columns per row (forward) or of kx (weight gradient).
    col_blocks: u32,
    /// Register-blocked weight gradient: blocks of (ci, ky) pairs.
    row_blocks: u32,
    /// Weight gradient: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    /// Weight gradient and reduction: chunks of partial sums.
    chunks: u32,
    /// Reduction: where the summed elements start in each chunk, and the elements per chunk.
    partial_first: u32,
    partial_stride: u32,
    /// Tiled: tiles along the rows (`TILE_M`) and the columns (`TILE_N`) of the product.
    m_tiles: u32,
    n_tiles: u32,
    /// Register-blocked forward and input gradient: workgroups per block of channels, and the
    /// steps (packed weight slots) of a block.
    block_groups: u32,
    block_steps: u32,
    /// Tiled: the stride and the zeros on every side of the input.
    stride: u32,
    pad: u32,
    /// Tiled input gradient: terms of the sum per chunk of partial sums (a multiple of
    /// `TILE_K`).
    chunk_k: u32,
    /// Register-blocked input gradient: row runs of its position classes.
    row_runs: u32,
    /// Reduction: sums from `out_split` on are stored `out_skip` elements further on.
    out_split: u32,
    out_skip: u32,
    /// Register-blocked input gradient: column runs of its position classes.
    col_runs: u32,
    /// Register-blocked forward and input gradient: the first packed slot of the second
    /// binding ([`packed_split`]).
    packed_split: u32,
    /// Register-blocked input gradient: the runs, and each class's first lane and runs (see
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
            stride: u(g.stride),
            pad: u(g.pad),
            ..Zeroable::zeroed()
        }
    }

    /// The blocks of a register-blocked forward pass whose output has
    /// `channels` channels of `height x width` per image, each step of which multiplies
    /// `steps` weights: sets `col_blocks`, `block_groups`, `block_steps` and `len` (the
    /// workgroups: `block_groups` per block of channels).
    fn channel_blocks(&mut self, channels: usize, height: usize, width: usize, steps: usize) {
        let col_blocks = width.div_ceil(BLOCK_COLS);
        let row_blocks = (self.batch as usize * height).div_ceil(BLOCK_ROWS);
        let block_groups = (col_blocks * row_blocks).div_ceil(BLOCK_WORKGROUP);
        let blocks = channels.div_ceil(BLOCK_CHANNELS);
        (self.col_blocks, self.block_groups) = (u(col_blocks), u(block_groups));
        (self.block_steps, self.len) = (u(steps), u(blocks * block_groups));
    }

    /// The blocks of a register-blocked input-gradient pass (see `input_class` in the shader),
    /// each step of which multiplies `steps` weights: the position classes, in decreasing
    /// order of their taps, with `block_groups` (workgroups per block of channels),
    /// `block_steps` and `len`. None where the input has more runs than the params hold
    /// (kernels wider than 8).
    fn input_classes(mut self, g: Conv2dGeometry, steps: usize) -> Option<Conv2dParams> {
        let out = g.output();
        let row_runs = input_runs(g.input.height, out.height, g.kernel);
        let col_runs = input_runs(g.input.width, out.width, g.kernel);
        if row_runs.len() > MAX_RUNS || col_runs.len() > MAX_RUNS {
            return None;
        }
        let mut classes: Vec<(usize, usize)> = (0..row_runs.len())
            .flat_map(|r| (0..col_runs.len()).map(move |c| (r, c)))
            .collect();
        // Stable, so that the order is fixed for a geometry.
        classes.sort_by_key(|&(r, c)| std::cmp::Reverse(row_runs[r][3] * col_runs[c][3]));
        let mut lanes = 0;
        for (i, &(r, c)) in classes.iter().enumerate() {
            self.classes[i] = [u(lanes), u(r), u(c), 0];
            let positions = self.batch as usize * (row_runs[r][1] * col_runs[c][1]) as usize;
            lanes += positions.div_ceil(BLOCK_POSITIONS);
        }
        self.row_run[..row_runs.len()].copy_from_slice(&row_runs);
        self.col_run[..col_runs.len()].copy_from_slice(&col_runs);
        (self.row_runs, self.col_runs) = (u(row_runs.len()), u(col_runs.len()));
        let block_groups = lanes.div_ceil(BLOCK_WORKGROUP);
        (self.block_groups, self.block_steps) = (u(block_groups), u(steps));
        self.len = u(g.input.channels.div_ceil(BLOCK_CHANNELS) * block_groups);
        Some(self)
    }

    /// The tiles of a tiled product with `rows x cols` outputs (per chunk): sets `m_tiles` and
    /// `n_tiles`, and `len` for `chunks` chunks. Returns the workgroups to launch.
    fn tiles(&mut self, rows: usize, cols: usize, chunks: usize) -> [u32; 3] {
        let (m_tiles, n_tiles) = (rows.div_ceil(TILE_M), cols.div_ceil(TILE_N));
        let groups = m_tiles * n_tiles * chunks;
        (self.m_tiles, self.n_tiles, self.len) = (u(m_tiles), u(n_tiles), u(groups));
        grid(groups)
    }
}

/// The runs of input rows (or columns) `0..len` whose kernel taps meet the output in the same
/// range, for a stride-1 valid convolution with `out` outputs along that axis: (first, count,
/// first tap, taps). Row `i` meets output rows `i - t` for taps `t` with `0 <= i - t < out`.
fn input_runs(len: usize, out: usize, k: usize) -> Vec<[u32; 4]> {
    let mut runs: Vec<[u32; 4]> = Vec::new();
    for i in 0..len {
        let (lo, hi) = ((i + 1).saturating_sub(out), (i + 1).min(k));
        match runs.last_mut() {
            Some(run) if (run[2], run[3]) == (u(lo), u(hi - lo)) => run[1] += 1,
            _ => runs.push([u(i), 1, u(lo), u(hi - lo)]),
        }
    }
    runs
}

/// Lanes that share one load of dy in the k3 weight gradient with shared dy.
const SHARED_DY_LANES: usize = 8;

/// The bodies that the module for adapters with subgroups puts in place of the default ones
/// (after each function's marker line): each lane of an aligned group of 8 subgroup lanes loads
/// an eighth of the 32 values that all 8 need (its `part`), and `share_channels` gives every
/// lane all of them.
const SHARED_BODIES: [(&str, &str, &str); 3] = [
    (
        "    // @k3_dy\n",
        "    return factor32(at, stride, first, last);\n",
        "    return share_channels(factor4(at, stride, first + 4u * (part & 7u), last), part);\n",
    ),
    (
        "    // @forward_weights\n",
        "    return step_weights(packed, slot, base, stride, first, last);\n",
        "    if !packed {
        return factor32(base, stride, first, last);
    }
    let q = part & 7u;
    return share_channels(select(packed_lo[slot].hi[q & 3u], packed_lo[slot].lo[q & 3u], q < 4u), part);
",
    ),
    (
        "    // @forward_weights_hi\n",
        "    return step_weights_hi(slot);\n",
        "    let q = part & 7u;
    let s = slot - params.packed_split;
    return share_channels(select(packed_hi[s].hi[q & 3u], packed_hi[s].lo[q & 3u], q < 4u), part);
",
    ),
];

/// The functions and entry points that only the module for adapters with subgroups has: the
/// sharing, the kernels whose `part` is the subgroup lane, and a probe that sets dst[i] to 1 for
/// each invocation i of a blocked workgroup whose subgroup lane is its local index modulo a
/// subgroup size that is a multiple of 8 (so that groups of 8 subgroup lanes are groups of 8
/// consecutive lanes of the kernel).
const SHARED_ENTRY_POINTS: &str = "
// Channels 4q..4q+3 from the lane of part q in the group of 8 of `part`, for q < 8.
fn share_channels(mine: vec4<f32>, part: u32) -> Channels {
    let group = part & ~7u;
    return Channels(mat4x4<f32>(subgroupShuffle(mine, group), subgroupShuffle(mine, group + 1u), subgroupShuffle(mine, group + 2u), subgroupShuffle(mine, group + 3u)), mat4x4<f32>(subgroupShuffle(mine, group + 4u), subgroupShuffle(mine, group + 5u), subgroupShuffle(mine, group + 6u), subgroupShuffle(mine, group + 7u)));
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_k3_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    backward_weights_k3_block(block_lane(wg, nwg, lid), sid);
}

// block_place, with the subgroup lane as the lane's part in sharing the weights.
fn shared_place(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, sid: u32) -> BlockPlace {
    var place = block_place(wg, nwg, lid);
    place.part = sid;
    return place;
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_packed_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_block(shared_place(wg, nwg, lid, sid), true);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool_packed_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_pool_block(shared_place(wg, nwg, lid, sid), true);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_subgroup_probe(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) size: u32) {
    dst[lid] = select(0.0, 1.0, size % 8u == 0u && sid == lid % size);
}
";

/// The conv2d source with the shared bodies and entry points.
fn shared_source() -> String {
    let mut source = SOURCE.to_string();
    for (marker, default, shared) in SHARED_BODIES {
        let body = format!("{marker}{default}");
        assert!(
            source.contains(&body),
            "conv2d.wgsl has the {marker:?} marker"
        );
        source = source.replace(&body, shared);
    }
    source + SHARED_ENTRY_POINTS
}

/// The bindings that the texture variant reads from textures: name, binding, texel. src and
/// factor (x, dy or w) in every register-blocked kernel; the pooled value and argmax in the
/// pooled weight gradient (`conv2d_backward_weights_pooled`).
const TEXTURE_BINDINGS: [(&str, usize, Texel); 4] = [
    ("src", 1, Texel::F32),
    ("factor", 3, Texel::F32),
    ("pooled_y", 4, Texel::F32),
    ("pooled_argmax", 7, Texel::U32),
];

/// The WGSL type of one element of a scalar `texel`.
fn wgsl_scalar(texel: Texel) -> &'static str {
    if texel == Texel::U32 {
        "u32"
    } else {
        "f32"
    }
}

/// `source` (conv2d.wgsl) with the `TEXTURE_BINDINGS` read from textures, as `texture::stage`
/// lays them out: their declarations become textures with an accessor each (`src_at`,
/// `factor_at`, ...), and every `src[i]`, `factor[i]`, ... a call of the accessor.
fn texture_source(source: &str) -> String {
    let mut source = source.to_string();
    for (name, binding, texel) in TEXTURE_BINDINGS {
        let scalar = wgsl_scalar(texel);
        let storage =
            format!("@group(0) @binding({binding}) var<storage, read> {name}: array<{scalar}>;\n");
        assert!(source.contains(&storage), "conv2d.wgsl declares {name}");
        let texture = format!(
            "@group(0) @binding({binding}) var {name}_texture: texture_2d<{scalar}>;\n\
             fn {name}_at(i: u32) -> {scalar} {{\n    \
             return textureLoad({name}_texture, vec2<u32>(i % {TEXTURE_WIDTH}u, i / {TEXTURE_WIDTH}u), 0).x;\n}}\n"
        );
        source = texture_reads(
            &source.replace(&storage, &texture),
            name,
            &format!("{name}_at"),
        );
    }
    source
}

/// The kernels that share loads across subgroup lanes.
struct SubgroupKernels {
    backward_weights_k3: Kernel,
    forward_packed: Kernel,
    forward_pool_packed: Kernel,
}

impl SubgroupKernels {
    /// The shared kernels reading storage and those reading textures (`texture_source`), where
    /// the adapter has subgroups and the probe finds them laid out as the kernels need; else
    /// None (the kernels with a load per lane run).
    fn both(ctx: &GpuContext) -> Option<(SubgroupKernels, SubgroupKernels)> {
        if !ctx.features.contains(wgpu::Features::SUBGROUP) {
            return None;
        }
        let module = compile_register_blocked(ctx, "conv2d.wgsl (subgroups)", &shared_source());
        if !SubgroupKernels::laid_out(ctx, &module) {
            return None;
        }
        let textures = texture_source(&shared_source());
        let texture_module = compile_register_blocked(ctx, "conv2d.wgsl (subgroups)", &textures);
        Some((
            SubgroupKernels::new(ctx, &module, false),
            SubgroupKernels::new(ctx, &texture_module, true),
        ))
    }

    /// Whether the probe in `module` (the storage form) finds every lane of a blocked workgroup
    /// at subgroup lane = local index modulo a multiple of 8.
    fn laid_out(ctx: &GpuContext, module: &wgpu::ShaderModule) -> bool {
        use Access::*;
        let probe = Kernel::new(
            ctx,
            module,
            "conv2d_subgroup_probe",
            &[Uniform, Read, ReadWrite],
        );
        let laid_out = || -> Result<bool> {
            let params = uniform(ctx, "conv2d probe params", &Conv2dParams::zeroed());
            let src = storage(ctx, "conv2d probe src", 4)?;
            let dst = storage(ctx, "conv2d probe dst", 4 * BLOCK_WORKGROUP as u64)?;
            let views = [View::whole(&params), (&src).into(), (&dst).into()];
            run(ctx, &[&probe.dispatch(ctx, &views, [1, 1, 1])]);
            let flags: Vec<f32> = read_buffer(ctx, &dst, 0, BLOCK_WORKGROUP)?;
            Ok(flags.iter().all(|&f| f == 1.0))
        };
        matches!(laid_out(), Ok(true))
    }

    /// The shared kernels of `module`, which reads src and factor from textures where
    /// `textures`.
    fn new(ctx: &GpuContext, module: &wgpu::ShaderModule, textures: bool) -> SubgroupKernels {
        use Access::*;
        let s = if textures { Texture } else { Read };
        let blocked = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform];
        let blocked_pool = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform, ReadWrite];
        let kernel = |name, bindings| Kernel::new(ctx, module, name, bindings);
        SubgroupKernels {
            backward_weights_k3: kernel(
                "conv2d_backward_weights_k3_shared",
                &[Uniform, s, ReadWrite, s],
            ),
            forward_packed: kernel("conv2d_forward_packed_shared", blocked),
            forward_pool_packed: kernel("conv2d_forward_pool_packed_shared", blocked_pool),
        }
    }
}

/// Where the second uniform binding of packed weights starts, in slots: the most slots that
/// fill no more than the first binding, are a multiple of `k * k` (so that a block of the input
/// gradient switches bindings between two output channels) and are even (so that the binding's
/// offset, 128 bytes a slot, is a multiple of 256, the largest uniform offset alignment).
fn packed_split(k: usize) -> usize {
    let step = if (k * k).is_multiple_of(2) {
        k * k
    } else {
        2 * k * k
    };
    PACKED_SLOTS / step * step
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

/// `groups` workgroups, folded into 2-D past 65535 (the shader's `block_lane` and
/// `tile_origin` flatten them again). Extra workgroups return early.
fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [u(x), u(groups.div_ceil(x)), 1]
}

/// Workgroups for `lanes` invocations of a register-blocked kernel.
fn block_grid(lanes: usize) -> [u32; 3] {
    grid(lanes.div_ceil(BLOCK_WORKGROUP))
}

/// How the weight gradient splits its sum over the `rows` row segments of a batch: `chunks`
/// chunks of `chunk_rows` each (the last may be shorter), so that about `target` units of work
/// (invocations or workgroups) run when each chunk takes `per_chunk`. Depends only on the
/// geometry and the variant, so the summation order, and with it every bit of the result, is
/// the same on every run.
fn weight_grad_chunks(rows: usize, per_chunk: usize, target: usize) -> (usize, usize) {
    let rows = rows.max(1);
    let wanted = target.div_ceil(per_chunk.max(1)).clamp(1, rows);
    let chunk_rows = rows.div_ceil(wanted);
    (rows.div_ceil(chunk_rows), chunk_rows)
}

/// The register-blocked entry points.
struct RegisterBlockedKernels {
    /// Forward and input gradient that read the weights packed in uniform bindings, with the
    /// kernels that pack them; and the same passes reading w from storage, for layers whose
    /// packed weights do not fit the bindings.
    forward_packed: PackedWeightsPass,
    backward_input_packed: PackedWeightsPass,
    forward: Kernel,
    backward_input: Kernel,
    /// The forward with ReLU and 2x2 max pooling fused (packed weights, and w from storage).
    forward_pool_packed: PackedWeightsPass,
    forward_pool: Kernel,
    backward_weights: Kernel,
    /// The weight gradient with blocks of `BLOCK_ROWS / 2` pairs, for layers with so few
    /// (in channel, ky) pairs that full blocks would be mostly empty.
    backward_weights_narrow: Kernel,
    /// The weight gradient for 3x3 kernels, with blocks of 4 input channels' 36 weights
    /// (general blocks of 4 kx leave a quarter of their sums empty at k = 3).
    backward_weights_k3: Kernel,
    /// The same with dy shared by the lanes of a subgroup, where the adapter has subgroups laid
    /// out as it needs (see [`SubgroupKernels`]).
    backward_weights_k3_shared: Option<Kernel>,
    /// The narrow weight gradient reading the gradient of a fused ReLU and max pooling.
    backward_weights_pooled: Kernel,
}

/// A register-blocked pass that reads packed weights, and the kernel that packs them.
struct PackedWeightsPass {
    pack: Kernel,
    run: Kernel,
}

/// The tiled entry points.
struct TiledKernels {
    forward: Kernel,
    backward_input: Kernel,
    backward_weights: Kernel,
}

/// Every conv2d kernel of every variant, compiled once per device.
pub struct Conv2dKernels {
    register_blocked: RegisterBlockedKernels,
    /// The same reading src and factor from textures (`Conv2dVariant::RegisterBlockedTexture`).
    register_blocked_texture: RegisterBlockedKernels,
    tiled: TiledKernels,
    /// Add chunks of partial sums (the weight gradient's in both variants, the tiled input
    /// gradient's): one invocation per element, or (tiled variant) one workgroup per element
    /// for more than `SPLIT_REDUCE_CHUNKS` chunks.
    reduce: Kernel,
    reduce_split: Kernel,
    /// Bound as the packed weights of the register-blocked kernels that read w from storage:
    /// they share code with the packed ones, so they declare those bindings too.
    unused_packed: wgpu::Buffer,
    /// Whether the adapter binds the 64 KiB uniform ranges that every register-blocked forward
    /// and input-gradient kernel declares (WebGPU's default limit; wgpu's downlevel limits have
    /// 16 KiB). Where it does not, those two passes run tiled.
    packed_bindings_fit: bool,
}

impl RegisterBlockedKernels {
    /// The register-blocked kernels, reading src (binding 1) and factor (binding 3) from
    /// storage, or from textures where `textures` (`texture_source`); the weight packing
    /// kernels come from `module` (storage in both). `shared`: the subgroup kernels that
    /// replace some of them, where the adapter allows.
    fn new(
        ctx: &GpuContext,
        module: &wgpu::ShaderModule,
        textures: bool,
        shared: Option<SubgroupKernels>,
    ) -> RegisterBlockedKernels {
        let source = if textures {
            texture_source(SOURCE)
        } else {
            SOURCE.to_string()
        };
        let blocked_module =
            compile_register_blocked(ctx, "conv2d.wgsl (register-blocked)", &source);
        use Access::*;
        let s = if textures { Texture } else { Read };
        let pack = &[Uniform, Read, ReadWrite, Read];
        // x (or dy), partial sums, dy.
        let plain = &[Uniform, s, ReadWrite, s];
        // x or dy, y or dx, w, bias (w in the input gradient, which has none), packed weights.
        let blocked = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform];
        // The same, then the pooling's argmax.
        let blocked_pool = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform, ReadWrite];
        // x, partial sums, dpooled, pooled y, (unused packed weights), the pooling's argmax.
        let argmax = if textures { UintTexture } else { Read };
        let pooled = &[Uniform, s, ReadWrite, s, s, Uniform, Uniform, argmax];
        let pack_kernel = |name| Kernel::new(ctx, module, name, pack);
        let blocked_kernel = |name, bindings| Kernel::new(ctx, &blocked_module, name, bindings);
        // The register-blocked forward and 3x3 weight gradient share loads across subgroup lanes
        // where the adapter allows.
        let (mut forward_run, mut forward_pool_run, mut k3_shared) = (None, None, None);
        if let Some(shared) = shared {
            forward_run = Some(shared.forward_packed);
            forward_pool_run = Some(shared.forward_pool_packed);
            k3_shared = Some(shared.backward_weights_k3);
        }
        RegisterBlockedKernels {
            forward_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: forward_run
                    .unwrap_or_else(|| blocked_kernel("conv2d_forward_packed", blocked)),
            },
            backward_input_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_backward_input_weights"),
                run: blocked_kernel("conv2d_backward_input_packed", blocked),
            },
            forward: blocked_kernel("conv2d_forward", blocked),
            backward_input: blocked_kernel("conv2d_backward_input", blocked),
            forward_pool_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: forward_pool_run
                    .unwrap_or_else(|| blocked_kernel("conv2d_forward_pool_packed", blocked_pool)),
            },
            forward_pool: blocked_kernel("conv2d_forward_pool", blocked_pool),
            backward_weights: blocked_kernel("conv2d_backward_weights", plain),
            backward_weights_narrow: blocked_kernel("conv2d_backward_weights_narrow", plain),
            backward_weights_k3: blocked_kernel("conv2d_backward_weights_k3", plain),
            backward_weights_k3_shared: k3_shared,
            backward_weights_pooled: blocked_kernel("conv2d_backward_weights_pooled", pooled),
        }
    }
}

impl Conv2dKernels {
    pub fn new(ctx: &GpuContext) -> Conv2dKernels {
        let module = compile(ctx, "conv2d.wgsl", SOURCE);
        use Access::*;
        let with_bias = &[Uniform, Read, ReadWrite, Read, Read];
        let plain = &[Uniform, Read, ReadWrite, Read];
        let kernel = |name, bindings| Kernel::new(ctx, &module, name, bindings);
        let (shared, shared_textures) = SubgroupKernels::both(ctx).unzip();
        Conv2dKernels {
            register_blocked: RegisterBlockedKernels::new(ctx, &module, false, shared),
            register_blocked_texture: RegisterBlockedKernels::new(
                ctx,
                &module,
                true,
                shared_textures,
            ),
            tiled: TiledKernels {
                forward: kernel("conv2d_forward_tiled", with_bias),
                backward_input: kernel("conv2d_backward_input_tiled", plain),
                backward_weights: kernel("conv2d_backward_weights_tiled", plain),
            },
            reduce: kernel("conv2d_reduce", &[Uniform, Read, ReadWrite]),
            reduce_split: kernel("conv2d_reduce_split", &[Uniform, Read, ReadWrite]),
            unused_packed: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("conv2d unused packed weights"),
                size: PACKED_BINDING_BYTES,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: false,
            }),
            packed_bindings_fit: ctx.limits.max_uniform_buffer_binding_size >= PACKED_BINDING_BYTES,
        }
    }

    /// The variant that runs a forward or input-gradient pass asked for with `variant`.
    fn activation_pass_variant(&self, variant: Conv2dVariant, g: Conv2dGeometry) -> Conv2dVariant {
        match variant {
            v if v.is_register_blocked() && !self.packed_bindings_fit => Conv2dVariant::Tiled,
            _ => variant.for_geometry(g),
        }
    }

    /// The register-blocked kernels of `variant`.
    fn blocked(&self, variant: Conv2dVariant) -> &RegisterBlockedKernels {
        match variant {
            Conv2dVariant::RegisterBlockedTexture => &self.register_blocked_texture,
            _ => &self.register_blocked,
        }
    }

    /// `variant`, or the register-blocked one that reads storage where the texture variant's
    /// textures would not hold tensors of `lens` elements on this adapter.
    fn where_textures_fit(
        ctx: &GpuContext,
        variant: Conv2dVariant,
        lens: &[usize],
    ) -> Conv2dVariant {
        let fit = lens.iter().all(|&len| texture::fits(ctx, len));
        match variant {
            Conv2dVariant::RegisterBlockedTexture if !fit => Conv2dVariant::RegisterBlocked,
            v => v,
        }
    }

    /// The dispatch of a register-blocked `kernel` with `resources`. For the texture variant,
    /// it binds textures at the bindings of `staged` ((binding, elements) of `TEXTURE_BINDINGS`)
    /// instead, and copies the buffers into them first. A kernel that never reads factor
    /// (binding 3) still declares it: src's texture stands in where `staged` lacks it.
    fn with_sources(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        kernel: &Kernel,
        resources: Vec<Resource>,
        staged: &[(usize, usize)],
        workgroups: [u32; 3],
    ) -> Vec<Dispatch> {
        if variant != Conv2dVariant::RegisterBlockedTexture {
            return vec![kernel.dispatch_resources(ctx, &resources, workgroups)];
        }
        let textures: Vec<(usize, texture::Staged)> = staged
            .iter()
            .map(|&(binding, len)| {
                let Resource::Buffer(view) = resources[binding] else {
                    unreachable!("conv2d binds buffers before staging")
                };
                let (.., texel) = TEXTURE_BINDINGS
                    .into_iter()
                    .find(|&(_, b, _)| b == binding)
                    .expect("conv2d stages only its TEXTURE_BINDINGS");
                let texture = texture::stage(ctx, view, len, texel);
                (
                    binding,
                    texture.expect("where_textures_fit checked the size"),
                )
            })
            .collect();
        let mut bound = resources.clone();
        for (binding, texture) in &textures {
            bound[*binding] = Resource::Texture(&texture.view);
        }
        if !staged.iter().any(|&(binding, _)| binding == 3) {
            bound[3] = bound[1];
        }
        let mut run = kernel.dispatch_resources(ctx, &bound, workgroups);
        run.copies
            .extend(textures.into_iter().map(|(_, texture)| texture.copy));
        vec![run]
    }

    /// A register-blocked forward or input-gradient pass as laid out in `params` (see
    /// [`Conv2dParams::channel_blocks`]): packs the weights and runs `packed` when the packed
    /// weights fit the two uniform bindings, else runs `unpacked`, which reads w itself.
    /// `buffers` are bindings 1 to 4 (binding 3 is w) with the elements of bindings 1 and 3,
    /// and `argmax` binding 7 where the kernels pool.
    fn register_blocked_pass(
        &self,
        ctx: &GpuContext,
        (variant, params): (Conv2dVariant, Conv2dParams),
        (packed, unpacked): (&PackedWeightsPass, &Kernel),
        (buffers, (src_len, w_len)): ([View; 4], (usize, usize)),
        argmax: Option<View>,
    ) -> Vec<Dispatch> {
        let groups = params.len as usize;
        let blocks = groups / params.block_groups.max(1) as usize;
        let slots = blocks * params.block_steps as usize;
        let split = packed_split(params.kernel as usize);
        let params = Conv2dParams {
            packed_split: u(split),
            ..params
        };
        let w = buffers[2];
        let run_params = uniform(ctx, "conv2d params", &params);
        let [a, b, c, d] = buffers;
        let run = |kernel: &Kernel, lo: View, hi: View, reads_w: bool| {
            let mut all = vec![View::whole(&run_params), a, b, c, d, lo, hi];
            all.extend(argmax);
            let resources = all.into_iter().map(Resource::from).collect();
            let staged: &[(usize, usize)] = if reads_w {
                &[(1, src_len), (3, w_len)]
            } else {
                &[(1, src_len)]
            };
            self.with_sources(ctx, variant, kernel, resources, staged, grid(groups))
        };
        if slots > split + PACKED_SLOTS {
            let unused = View::whole(&self.unused_packed);
            return run(unpacked, unused, unused, true);
        }
        // The second binding starts at slot `split` where the slots need it, else it repeats
        // the first (and is never read).
        let hi_offset = if slots > split {
            split as u64 * PACKED_SLOT_BYTES
        } else {
            0
        };
        // Owned by the bind groups of the dispatches below, which keep it alive.
        let packed_weights = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("conv2d packed weights"),
            size: hi_offset + PACKED_BINDING_BYTES,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        let binding = |offset: u64| View {
            buffer: &packed_weights,
            offset,
            size: PACKED_BINDING_BYTES,
        };
        let elements = slots * BLOCK_CHANNELS;
        let pack_params = uniform(
            ctx,
            "conv2d params",
            &Conv2dParams {
                len: u(elements),
                ..params
            },
        );
        let pack = packed.pack.dispatch(
            ctx,
            &[
                View::whole(&pack_params),
                w,
                View::whole(&packed_weights),
                w,
            ],
            grid_1d(elements),
        );
        let mut dispatches = vec![pack];
        dispatches.extend(run(&packed.run, binding(0), binding(hi_offset), false));
        dispatches
    }

    /// y = conv(x, w) + b for n images, then max(y, 0) when `relu`. Returns the dispatches to
    /// record in order (the register-blocked variant first packs the weights).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        g: Conv2dGeometry,
        n: usize,
        relu: bool,
        x: View,
        w: View,
        b: View,
        y: View,
    ) -> Vec<Dispatch> {
        let out = g.output();
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&y, n * out.len(), "y");
        let mut params = Conv2dParams {
            relu: u32::from(relu),
            ..Conv2dParams::new(g, n)
        };
        match self.activation_pass_variant(variant, g) {
            v @ (Conv2dVariant::RegisterBlocked | Conv2dVariant::RegisterBlockedTexture) => {
                let steps = g.input.channels * g.kernel * g.kernel;
                params.channel_blocks(g.out_channels, out.height, out.width, steps);
                let lens = (n * g.input.len(), weight_len(g));
                let v = Self::where_textures_fit(ctx, v, &[lens.0, lens.1]);
                let kernels = (&self.blocked(v).forward_packed, &self.blocked(v).forward);
                self.register_blocked_pass(ctx, (v, params), kernels, ([x, y, w, b], lens), None)
            }
            Conv2dVariant::Tiled => {
                let positions = n * out.height * out.width;
                let workgroups = params.tiles(g.out_channels, positions, 1);
                let params = uniform(ctx, "conv2d params", &params);
                vec![self.tiled.forward.dispatch(
                    ctx,
                    &[View::whole(&params), x, y, w, b],
                    workgroups,
                )]
            }
        }
    }

    /// pooled = maxpool2x2(max(conv(x, w) + b, 0)) for n images, and the pooling's argmax (as
    /// `maxpool2d_forward` writes it), in one register-blocked pass that never stores the
    /// convolution's own output. `None` where `variant` does not run register-blocked for
    /// this layer: the caller then runs the forward and the pooling apart.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_relu_maxpool(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        g: Conv2dGeometry,
        n: usize,
        (x, w, b): (View, View, View),
        (pooled, argmax): (View, View),
    ) -> Option<Vec<Dispatch>> {
        let variant = self.activation_pass_variant(variant, g);
        if !variant.is_register_blocked() {
            return None;
        }
        let out = g.output();
        let (height, width) = (out.height / 2, out.width / 2);
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&b, g.out_channels, "b");
        expect_elements(&pooled, n * g.out_channels * height * width, "pooled");
        expect_elements(&argmax, n * g.out_channels * height * width, "argmax");
        let mut params = Conv2dParams {
            relu: 1,
            ..Conv2dParams::new(g, n)
        };
        // Blocks of 8 windows in (image, py, px) order: "rows" of one window each.
        let steps = g.input.channels * g.kernel * g.kernel;
        params.channel_blocks(g.out_channels, height * width, 1, steps);
        let lens = (n * g.input.len(), weight_len(g));
        let variant = Self::where_textures_fit(ctx, variant, &[lens.0, lens.1]);
        let rb = self.blocked(variant);
        let kernels = (&rb.forward_pool_packed, &rb.forward_pool);
        let buffers = ([x, pooled, w, b], lens);
        Some(self.register_blocked_pass(ctx, (variant, params), kernels, buffers, Some(argmax)))
    }

    /// dx = gradient w.r.t. the input. Returns the dispatches to record in order (the
    /// register-blocked variant first packs the weights).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_input(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        g: Conv2dGeometry,
        n: usize,
        dy: View,
        w: View,
        dx: View,
    ) -> Vec<Dispatch> {
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&w, weight_len(g), "w");
        expect_elements(&dx, n * g.input.len(), "dx");
        let params = Conv2dParams::new(g, n);
        match self.activation_pass_variant(variant, g) {
            v @ (Conv2dVariant::RegisterBlocked | Conv2dVariant::RegisterBlockedTexture) => {
                let steps = g.out_channels * g.kernel * g.kernel;
                let Some(params) = params.input_classes(g, steps) else {
                    return self.tiled_backward_input(ctx, params, g, n, (dy, w, dx));
                };
                let lens = (n * g.output().len(), weight_len(g));
                let v = Self::where_textures_fit(ctx, v, &[lens.0, lens.1]);
                let rb = self.blocked(v);
                // Binding 4 (the bias) is unused here.
                let kernels = (&rb.backward_input_packed, &rb.backward_input);
                self.register_blocked_pass(ctx, (v, params), kernels, ([dy, dx, w, w], lens), None)
            }
            Conv2dVariant::Tiled => self.tiled_backward_input(ctx, params, g, n, (dy, w, dx)),
        }
    }

    /// The tiled input gradient: one pass straight into dx, or, where its tiles are too few to
    /// fill a large GPU, chunks of the sum into partial sums, then their sum into dx.
    fn tiled_backward_input(
        &self,
        ctx: &GpuContext,
        mut params: Conv2dParams,
        g: Conv2dGeometry,
        n: usize,
        (dy, w, dx): (View, View, View),
    ) -> Vec<Dispatch> {
        let positions = n * g.input.height * g.input.width;
        let reduction = g.out_channels * g.kernel * g.kernel;
        let tiles = g.input.channels.div_ceil(TILE_M) * positions.div_ceil(TILE_N);
        let (chunks, chunk_k) = input_grad_chunks(tiles, reduction);
        let len = n * g.input.len();
        // Owned by the bind groups of the dispatches below, which keep it alive.
        let partials = (chunks > 1)
            .then(|| {
                storage(
                    ctx,
                    "conv2d input-gradient partial sums",
                    (4 * chunks * len) as u64,
                )
            })
            .and_then(Result::ok);
        let Some(partials) = partials else {
            params.chunk_k = u(reduction.max(1));
            let workgroups = params.tiles(g.input.channels, positions, 1);
            let params = uniform(ctx, "conv2d params", &params);
            return vec![self.tiled.backward_input.dispatch(
                ctx,
                &[View::whole(&params), dy, dx, w],
                workgroups,
            )];
        };
        (params.chunk_k, params.chunks, params.partial_stride) = (u(chunk_k), u(chunks), u(len));
        let workgroups = params.tiles(g.input.channels, positions, chunks);
        let sums = uniform(ctx, "conv2d params", &params);
        vec![
            self.tiled.backward_input.dispatch(
                ctx,
                &[View::whole(&sums), dy, View::whole(&partials), w],
                workgroups,
            ),
            self.reduce(
                ctx,
                params,
                &partials,
                (0, len),
                (dx, len, 0),
                Conv2dVariant::Tiled,
            ),
        ]
    }

    /// The dispatch that adds `params.chunks` chunks (`params.partial_stride` apart) of the
    /// `len` partial sums from `first` into `out`.
    fn reduce(
        &self,
        ctx: &GpuContext,
        params: Conv2dParams,
        partials: &wgpu::Buffer,
        (first, len): (usize, usize),
        (out, split, skip): (View, usize, usize),
        variant: Conv2dVariant,
    ) -> Dispatch {
        let chunks = params.chunks as usize;
        let params = Conv2dParams {
            len: u(len),
            partial_first: u(first),
            out_split: u(split),
            out_skip: u(skip),
            ..params
        };
        let params = uniform(ctx, "conv2d params", &params);
        let buffers = [View::whole(&params), View::whole(partials), out];
        if chunks > SPLIT_REDUCE_CHUNKS && variant == Conv2dVariant::Tiled {
            self.reduce_split.dispatch(ctx, &buffers, grid(len))
        } else {
            self.reduce.dispatch(ctx, &buffers, grid_1d(len))
        }
    }

    /// dw and db summed over the batch (deterministic order). Returns the dispatches to record in
    /// order: partial sums of dw and db per chunk of row segments into a scratch buffer, then
    /// the sums of the chunks (in chunk order) into dw, then into db (into both at once where db
    /// follows dw in one buffer, as in the parameter buffers; what lies between is untouched).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        g: Conv2dGeometry,
        n: usize,
        x: View,
        dy: View,
        dw: View,
        db: View,
    ) -> Vec<Dispatch> {
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&dy, n * g.output().len(), "dy");
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        let rows = n * g.output().height;
        let mut base = Conv2dParams::new(g, n);
        // The kernel, the work of one chunk, and how much work should run in all.
        let lens = [n * g.input.len(), n * g.output().len()];
        let variant = Self::where_textures_fit(ctx, variant.for_geometry(g), &lens);
        let (kernel, per_chunk, target) = match variant {
            v @ (Conv2dVariant::RegisterBlocked | Conv2dVariant::RegisterBlockedTexture) => {
                let rb = self.blocked(v);
                let co_blocks = g.out_channels.div_ceil(BLOCK_CHANNELS);
                let pairs = g.input.channels * g.kernel;
                if g.kernel == 3 && pairs > BLOCK_ROWS / 2 {
                    let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
                    (base.col_blocks, base.row_blocks) = (1, u(ci_blocks));
                    let lanes = ci_blocks * co_blocks;
                    // Shared dy needs the 8 lanes of a group to be one (chunk, channel block).
                    let kernel = match &rb.backward_weights_k3_shared {
                        Some(shared) if ci_blocks.is_multiple_of(SHARED_DY_LANES) => shared,
                        _ => &rb.backward_weights_k3,
                    };
                    (kernel, lanes, WEIGHT_GRAD_INVOCATIONS)
                } else {
                    let kx_blocks = g.kernel.div_ceil(BLOCK_COLS);
                    let (kernel, pairs_per_block) = if pairs <= BLOCK_ROWS / 2 {
                        (&rb.backward_weights_narrow, BLOCK_ROWS / 2)
                    } else {
                        (&rb.backward_weights, BLOCK_ROWS)
                    };
                    let pair_blocks = pairs.div_ceil(pairs_per_block);
                    (base.col_blocks, base.row_blocks) = (u(kx_blocks), u(pair_blocks));
                    let lanes = kx_blocks * pair_blocks * co_blocks;
                    (kernel, lanes, WEIGHT_GRAD_INVOCATIONS)
                }
            }
            Conv2dVariant::Tiled => {
                let tiles =
                    g.out_channels.div_ceil(TILE_M) * tiled_weight_columns(g).div_ceil(TILE_N);
                (&self.tiled.backward_weights, tiles, TILED_WORKGROUPS)
            }
        };
        let work = (rows, per_chunk, target);
        let sources = (x, &[dy][..], &[(1, lens[0]), (3, lens[1])][..]);
        self.weight_grad_sums(ctx, (variant, g, base), work, kernel, sources, (dw, db))
    }

    /// dw and db from the ReLU and 2x2 max pooling that followed the convolution
    /// (`forward_relu_maxpool`): `dpooled` is the gradient at the pooled output, `pooled` and
    /// `argmax` what the forward wrote. The same as `Pool2dKernels::backward` with its ReLU
    /// mask, then `backward_weights`, in one register-blocked pass that never forms dy. `None`
    /// where `variant` does not run it for this layer (it takes at most 4 (ci, ky) pairs and
    /// k <= 4, as in a first layer): the caller then runs the two passes.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weights_pooled(
        &self,
        ctx: &GpuContext,
        variant: Conv2dVariant,
        g: Conv2dGeometry,
        n: usize,
        x: View,
        (dpooled, pooled, argmax): (View, View, View),
        (dw, db): (View, View),
    ) -> Option<Vec<Dispatch>> {
        let out = g.output();
        let narrow = g.input.channels * g.kernel <= BLOCK_ROWS / 2 && g.kernel <= BLOCK_COLS;
        let pooled_len = n * g.out_channels * (out.height / 2) * (out.width / 2);
        let lens = [n * g.input.len(), pooled_len];
        let variant = Self::where_textures_fit(ctx, variant.for_geometry(g), &lens);
        let runs = variant.is_register_blocked();
        if !(narrow && runs && out.height >= 2 && out.width >= 2) {
            return None;
        }
        expect_elements(&x, n * g.input.len(), "x");
        expect_elements(&dpooled, pooled_len, "dpooled");
        expect_elements(&pooled, pooled_len, "pooled");
        expect_elements(&argmax, pooled_len, "argmax");
        expect_elements(&dw, weight_len(g), "dw");
        expect_elements(&db, g.out_channels, "db");
        let base = Conv2dParams::new(g, n);
        // Chunks of pooled row segments, one lane per block of output channels.
        let work = (
            n * (out.height / 2),
            g.out_channels.div_ceil(BLOCK_CHANNELS),
            WEIGHT_GRAD_INVOCATIONS,
        );
        let kernel = &self.blocked(variant).backward_weights_pooled;
        let unused = View::whole(&self.unused_packed);
        let inputs = [dpooled, pooled, unused, unused, argmax];
        let staged = [
            (1, lens[0]),
            (3, pooled_len),
            (4, pooled_len),
            (7, pooled_len),
        ];
        let sources = (x, &inputs[..], &staged[..]);
        Some(self.weight_grad_sums(ctx, (variant, g, base), work, kernel, sources, (dw, db)))
    }

    /// A weight-gradient pass of `kernel` into partial sums over chunks of `rows` row segments,
    /// `per_chunk` lanes (register-blocked) or tiles (tiled) per chunk and about `target` in
    /// all, then their reduction into dw and db. The kernel's bindings: params, `x`, the
    /// partial sums, then `inputs`; the texture variant stages the (binding, elements) of
    /// `staged` (see `with_sources`).
    #[allow(clippy::too_many_arguments)]
    fn weight_grad_sums(
        &self,
        ctx: &GpuContext,
        (variant, g, base): (Conv2dVariant, Conv2dGeometry, Conv2dParams),
        (rows, per_chunk, target): (usize, usize, usize),
        kernel: &Kernel,
        (x, inputs, staged): (View, &[View], &[(usize, usize)]),
        (dw, db): (View, View),
    ) -> Vec<Dispatch> {
        let (mut chunks, mut chunk_rows) = weight_grad_chunks(rows, per_chunk, target);
        // Each chunk holds the partial dw, then the partial db.
        let stride = weight_len(g) + g.out_channels;
        // Owned by the bind groups of the dispatches below, which keep it alive. If the chunks do
        // not fit in one binding, one chunk (the size of dw and db) does.
        let partials = storage(ctx, "conv2d partial sums", (4 * chunks * stride) as u64)
            .or_else(|_| {
                (chunks, chunk_rows) = (1, rows.max(1));
                storage(ctx, "conv2d partial sums", 4 * stride as u64)
            })
            .expect("conv2d: dw and db fit in one storage binding");
        let base = Conv2dParams {
            chunk_rows: u(chunk_rows),
            chunks: u(chunks),
            partial_stride: u(stride),
            ..base
        };
        let mut sums = base;
        let workgroups = if variant.is_register_blocked() {
            sums.len = u(per_chunk * chunks);
            block_grid(per_chunk * chunks)
        } else {
            sums.tiles(g.out_channels, tiled_weight_columns(g), chunks)
        };
        let sums = uniform(ctx, "conv2d params", &sums);
        let reduce = |first: usize, len: usize, out: (View, usize, usize)| {
            self.reduce(ctx, base, &partials, (first, len), out, variant)
        };
        let (weights, channels) = (weight_len(g), g.out_channels);
        let mut bindings = vec![View::whole(&sums), x, View::whole(&partials)];
        bindings.extend_from_slice(inputs);
        let resources = bindings.into_iter().map(Resource::from).collect();
        self.with_sources(ctx, variant, kernel, resources, staged, workgroups)
            .into_iter()
            .chain(match spanning(dw, db) {
                // One pass instead of two where db follows dw in one buffer (the parameter
                // buffers' layout): lavapipe pays a fixed cost per dispatch.
                Some((both, gap)) => vec![reduce(0, weights + channels, (both, weights, gap))],
                None => vec![
                    reduce(0, weights, (dw, weights, 0)),
                    reduce(weights, channels, (db, channels, 0)),
                ],
            })
            .collect()
    }
}

/// One view from the start of `a` to the end of `b`, and the elements between them, where `b`
/// follows `a` in the same buffer.
fn spanning<'a>(a: View<'a>, b: View<'a>) -> Option<(View<'a>, usize)> {
    let end = a.offset + a.size;
    let gap = b.offset.checked_sub(end)?;
    let view = View {
        size: b.offset + b.size - a.offset,
        ..a
    };
    (a.buffer == b.buffer && gap % 4 == 0).then_some((view, (gap / 4) as usize))
}

/// How the tiled input gradient splits its sum of `reduction` terms over chunks, for a product
/// of `tiles` output tiles: `(chunks, terms per chunk)`, the terms a multiple of `TILE_K`. It
/// splits until about `TILED_WORKGROUPS` workgroups run, keeping at least
/// `MIN_TERMS_PER_CHUNK` terms in each chunk. Depends only on the geometry (deterministic).
fn input_grad_chunks(tiles: usize, reduction: usize) -> (usize, usize) {
    let most = (reduction / MIN_TERMS_PER_CHUNK).max(1);
    let wanted = TILED_WORKGROUPS.div_ceil(tiles.max(1)).clamp(1, most);
    let chunk_k = reduction.div_ceil(wanted).div_ceil(TILE_K).max(1) * TILE_K;
    (reduction.div_ceil(chunk_k).max(1), chunk_k)
}

/// Columns of the tiled weight gradient's product: one per weight of an output channel
/// (ci, ky, kx), then one for the bias.
fn tiled_weight_columns(g: Conv2dGeometry) -> usize {
    g.input.channels * g.kernel * g.kernel + 1
}

/// One cross-check geometry: a batch of `n` images through `g`.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    g: Conv2dGeometry,
}

const fn case(n: usize, input: Shape, out_channels: usize, kernel: usize) -> Case {
    Case {
        n,
        g: Conv2dGeometry::new(input, out_channels, kernel),
    }
}

/// A case with a stride and padding (tiled kernels only).
const fn strided(case: Case, stride: usize, pad: usize) -> Case {
    Case {
        g: Conv2dGeometry {
            stride,
            pad,
            ..case.g
        },
        ..case
    }
}

/// The real first and second layers (the first takes the narrow register-blocked weight-gradient
/// kernel), then odd sizes: a small k2 on a non-square image with a batch of 33 (5 blocks of
/// images times 5 of columns: the register-blocked input gradient needs two workgroups per row,
/// the second partly idle), a k5 kernel
/// nearly as large as its 6x5 input, partial blocks everywhere (35 in and 37 out channels: a full
/// block of 32 and a partial one; 18 row segments; widths 9 and 14; 210 (ci, ky) pairs; a k6
/// kernel spanning two kx blocks), and a 1x1 kernel with one output channel. The last two stress
/// the tiled kernels' edges: a k8 kernel on 2 channels has 128 weights per output channel, so
/// the bias column of the weight gradient is alone in a second column tile, with 33 output
/// channels (a second row tile of one channel), 18 output and 270 input positions, and a
/// reduction of 2112 for the input gradient; and a batch of 40 has 4000 output positions (31
/// full column tiles and part of one), a reduction of 36 (2 full steps of 16 and part of one),
/// 40 output channels, and weight-gradient chunks of 4 rows that end inside images. The last
/// runs the register-blocked 3x3 weight gradient with a partial block of input channels (6 =
/// 4 + 2) and of output channels (35), at a batch of 9.
/// The register-blocked forward and input gradient read packed weights where they fit two
/// uniform bindings (the second layer fills both) and w itself where not (the k6 case, and the
/// k8 case's input gradient). The last case has two blocks of input and of output channels, so
/// that the second block of both passes switches from the first binding to the second
/// partway (after 16 channels of the input gradient's block).
const CASES: [Case; 10] = [
    case(1, Shape::new(1, 28, 28), 32, 3),
    case(7, Shape::new(32, 13, 13), 64, 3),
    case(33, Shape::new(3, 7, 17), 5, 2),
    case(2, Shape::new(5, 6, 5), 3, 5),
    case(3, Shape::new(35, 11, 14), 37, 6),
    case(5, Shape::new(2, 4, 4), 1, 1),
    case(3, Shape::new(2, 9, 10), 33, 8),
    case(40, Shape::new(4, 12, 12), 40, 3),
    case(9, Shape::new(6, 9, 10), 35, 3),
    case(5, Shape::new(40, 7, 8), 40, 3),
];

/// More first layers for the weight gradient from a fused ReLU and max pooling: 2 input
/// channels with a k2 kernel (4 (ci, ky) pairs), 5 output channels and an odd pooled width;
/// 40 output channels (a second block) at a batch of 33 with an odd width too.
const POOLED_CASES: [Case; 2] = [
    case(7, Shape::new(2, 9, 8), 5, 2),
    case(33, Shape::new(1, 12, 11), 40, 3),
];

/// Strides and padding, for the tiled kernels: `same` padding at stride 1 (the k3 second layer
/// of a padded model, and k5 with two zeros a side), stride 2 with and without padding on odd
/// sizes (the last input rows are never read), and stride 3 with a k2 kernel (inputs between
/// windows are never read, so their gradient is 0).
const STRIDED_CASES: [Case; 5] = [
    strided(case(7, Shape::new(32, 14, 14), 64, 3), 1, 1),
    strided(case(1, Shape::new(3, 9, 8), 5, 5), 1, 2),
    strided(case(33, Shape::new(8, 13, 11), 16, 3), 2, 1),
    strided(case(3, Shape::new(5, 10, 9), 7, 3), 2, 0),
    strided(case(2, Shape::new(4, 11, 11), 9, 2), 3, 0),
];

/// What one cross-check runs.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    ForwardRelu,
    BackwardInput,
    BackwardWeights,
}

/// The check names of one variant, one per pass (`CrossCheck::kernel` is a static name).
struct CheckNames {
    forward: &'static str,
    forward_relu: &'static str,
    backward_input: &'static str,
    backward_weights: &'static str,
    reproducible: &'static str,
    /// Where the variant fuses the ReLU and max pooling into the forward, and their backward
    /// into the weight gradient.
    forward_relu_maxpool: Option<&'static str>,
    backward_weights_maxpool: Option<&'static str>,
}

macro_rules! check_names {
    ($variant:literal, $pools:literal) => {
        CheckNames {
            forward: concat!("conv2d_forward[", $variant, "]"),
            forward_relu: concat!("conv2d_forward+relu[", $variant, "]"),
            backward_input: concat!("conv2d_backward_input[", $variant, "]"),
            backward_weights: concat!("conv2d_backward_weights+bias[", $variant, "]"),
            reproducible: concat!("conv2d[", $variant, "] (bit-reproducible)"),
            forward_relu_maxpool: if $pools {
                Some(concat!("conv2d_forward+relu+maxpool[", $variant, "]"))
            } else {
                None
            },
            backward_weights_maxpool: if $pools {
                Some(concat!("conv2d_backward_weights+maxpool[", $variant, "]"))
            } else {
                None
            },
        }
    };
}

fn check_names(variant: Conv2dVariant) -> CheckNames {
    match variant {
        Conv2dVariant::RegisterBlocked => check_names!("register-blocked", true),
        Conv2dVariant::RegisterBlockedTexture => check_names!("register-blocked-texture", true),
        Conv2dVariant::Tiled => check_names!("tiled", false),
    }
}

fn case_shape(case: Case) -> String {
    let g = case.g;
    let mut shape = format!(
        "n {}, {}x{}x{} -> {} k{}",
        case.n, g.input.channels, g.input.height, g.input.width, g.out_channels, g.kernel
    );
    if !g.is_dense() {
        shape += &format!(" s{} p{}", g.stride, g.pad);
    }
    shape
}

/// The kernels the cross-checks share, compiled once per device: compiling every variant's
/// pipelines for each check would take most of `check`'s time on lavapipe.
#[derive(Clone, Default)]
struct SharedKernels(Rc<RefCell<Option<CompiledFor>>>);

/// Kernels and the device they were compiled for.
type CompiledFor = (wgpu::Device, Rc<Conv2dKernels>);

impl SharedKernels {
    fn get(&self, ctx: &GpuContext) -> Rc<Conv2dKernels> {
        let mut slot = self.0.borrow_mut();
        if let Some((device, kernels)) = slot.as_ref() {
            if *device == ctx.device {
                return kernels.clone();
            }
        }
        let kernels = Rc::new(Conv2dKernels::new(ctx));
        *slot = Some((ctx.device.clone(), kernels.clone()));
        kernels
    }
}

/// For every variant: forward (with and without the fused ReLU), backward input, and backward
/// weights and bias against the CPU, for every case; the forward with ReLU and max pooling
/// fused where the variant has it, for every case with a pooled output; then every kernel run
/// twice on the second layer must give the same bits.
pub fn checks() -> Vec<CrossCheck> {
    let shared = SharedKernels::default();
    let mut checks = Vec::new();
    for variant in Conv2dVariant::ALL {
        let names = check_names(variant);
        let strided = STRIDED_CASES
            .into_iter()
            .filter(|case| Conv2dVariant::candidates(case.g).contains(&variant));
        for case in CASES.into_iter().chain(strided) {
            for (name, pass) in [
                (names.forward, Pass::Forward),
                (names.forward_relu, Pass::ForwardRelu),
                (names.backward_input, Pass::BackwardInput),
                (names.backward_weights, Pass::BackwardWeights),
            ] {
                let shared = shared.clone();
                checks.push(CrossCheck::new(name, case_shape(case), move |ctx| {
                    let kernels = &shared.get(ctx);
                    match pass {
                        Pass::Forward => check_forward(ctx, kernels, variant, case, false),
                        Pass::ForwardRelu => check_forward(ctx, kernels, variant, case, true),
                        Pass::BackwardInput => check_backward_input(ctx, kernels, variant, case),
                        Pass::BackwardWeights => {
                            check_backward_weights(ctx, kernels, variant, case)
                        }
                    }
                }));
            }
        }
        let pooled_cases = CASES.into_iter().filter(|case| {
            let out = case.g.output();
            out.height >= 2 && out.width >= 2
        });
        for case in pooled_cases.filter(|_| names.forward_relu_maxpool.is_some()) {
            let (name, shared) = (
                names.forward_relu_maxpool.unwrap_or_default(),
                shared.clone(),
            );
            checks.push(CrossCheck::new(name, case_shape(case), move |ctx| {
                check_forward_relu_maxpool(ctx, &shared.get(ctx), variant, case)
            }));
        }
        let narrow = CASES.into_iter().chain(POOLED_CASES).filter(|case| {
            let out = case.g.output();
            let (g, k) = (case.g, case.g.kernel);
            g.input.channels * k <= BLOCK_ROWS / 2
                && k <= BLOCK_COLS
                && out.height >= 2
                && out.width >= 2
        });
        if let Some(name) = names.backward_weights_maxpool {
            for case in narrow {
                let shared = shared.clone();
                checks.push(CrossCheck::new(name, case_shape(case), move |ctx| {
                    check_backward_weights_pooled(ctx, &shared.get(ctx), variant, case)
                }));
            }
        }
        let (rerun, shared) = (CASES[1], shared.clone());
        checks.push(CrossCheck::new(
            names.reproducible,
            format!("{}, twice", case_shape(rerun)),
            move |ctx| check_reproducible(ctx, &shared.get(ctx), variant, rerun),
        ));
    }
    checks
}

/// Random tensors in [-1, 1) for one case, reproducible from its shape.
struct CaseData {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

impl CaseData {
    fn new(case: Case) -> CaseData {
        let (g, n) = (case.g, case.n);
        let seed = (n * 1_000_003 + g.input.len() * 101 + g.out_channels * 7 + g.kernel) as u64;
        CaseData {
            x: random_vec(n * g.input.len(), seed, -1.0, 1.0),
            w: random_vec(weight_len(g), seed + 1, -1.0, 1.0),
            b: random_vec(g.out_channels, seed + 2, -1.0, 1.0),
            dy: random_vec(n * g.output().len(), seed + 3, -1.0, 1.0),
        }
    }
}

fn check_forward(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
    relu: bool,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let len = n * g.output().len();
    let (x, w, b) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
    );
    let y = storage(ctx, "y", 4 * len as u64)?;
    let dispatches = kernels.forward(
        ctx,
        variant,
        g,
        n,
        relu,
        (&x).into(),
        (&w).into(),
        (&b).into(),
        (&y).into(),
    );
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let mut cpu = vec![0.0; len];
    conv2d_forward(g, &data.x, &data.w, &data.b, &mut cpu);
    if relu {
        let pre_activation = cpu.clone();
        activation_forward(Activation::Relu, &pre_activation, &mut cpu);
    }
    Ok(compare(&read_buffer::<f32>(ctx, &y, 0, len)?, &cpu))
}

/// The CPU's max(conv(x, w) + b, 0) for a case, then its 2x2 max pooling and argmax.
fn cpu_relu_maxpool(case: Case, data: &CaseData) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let (g, n) = (case.g, case.n);
    let out = g.output();
    let mut y = vec![0.0; n * out.len()];
    conv2d_forward(g, &data.x, &data.w, &data.b, &mut y);
    let pre_activation = y.clone();
    activation_forward(Activation::Relu, &pre_activation, &mut y);
    let len = n * pool2d_output(out).len();
    let (mut pooled, mut argmax) = (vec![0.0; len], vec![0; len]);
    maxpool2d_forward(out, &y, &mut pooled, &mut argmax);
    (y, pooled, argmax)
}

/// The pooled output must match the CPU's conv, ReLU and max pooling, and each argmax must
/// point at a maximum of its window: the CPU's rectified output there must equal the CPU's
/// pooled value (within the tolerance, so that a near tie that rounding decides either way
/// passes, and a wrong index does not).
fn check_forward_relu_maxpool(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let out = g.output();
    let pooled_shape = pool2d_output(out);
    let len = n * pooled_shape.len();
    let (x, w, b) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
    );
    let pooled = storage(ctx, "pooled", 4 * len as u64)?;
    let argmax = storage(ctx, "argmax", 4 * len as u64)?;
    let views = ((&x).into(), (&w).into(), (&b).into());
    let Some(dispatches) = kernels.forward_relu_maxpool(
        ctx,
        variant,
        g,
        n,
        views,
        ((&pooled).into(), (&argmax).into()),
    ) else {
        anyhow::bail!("conv2d: the {} variant does not pool", variant.name());
    };
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let (y, cpu, _) = cpu_relu_maxpool(case, &data);
    let gpu_argmax = read_buffer::<u32>(ctx, &argmax, 0, len)?;
    let at_gpu_argmax: Vec<f32> = gpu_argmax
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            let (image, i) = (o / pooled_shape.len() * out.len(), i as usize);
            if i < out.len() {
                y[image + i]
            } else {
                f32::NAN
            }
        })
        .collect();
    let values = compare(&read_buffer::<f32>(ctx, &pooled, 0, len)?, &cpu);
    Ok(values.merge(compare(&at_gpu_argmax, &cpu)))
}

fn check_backward_input(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let len = n * g.input.len();
    let (dy, w) = (
        storage_init(ctx, "dy", &data.dy)?,
        storage_init(ctx, "w", &data.w)?,
    );
    let dx = storage(ctx, "dx", 4 * len as u64)?;
    let dispatches =
        kernels.backward_input(ctx, variant, g, n, (&dy).into(), (&w).into(), (&dx).into());
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let mut cpu = vec![0.0; len];
    conv2d_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer::<f32>(ctx, &dx, 0, len)?, &cpu))
}

/// dw and db in buffers of their own, then in one buffer as the parameter buffers lay them
/// out (db at the next bindable offset after dw, which one reduction pass fills): both against
/// the CPU, and the gap between them, filled with a marker, must be left as it was.
fn check_backward_weights(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let (weights, channels) = (weight_len(g), g.out_channels);
    let (x, dy) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "dy", &data.dy)?,
    );
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; weights], vec![0.0; channels]);
    conv2d_backward_weights(g, &data.x, &data.dy, &mut cpu_dw, &mut cpu_db);
    let gradients = |dw: View, db: View| {
        let dispatches =
            kernels.backward_weights(ctx, variant, g, n, (&x).into(), (&dy).into(), dw, db);
        run(ctx, &dispatches.iter().collect::<Vec<_>>());
    };

    let dw = storage(ctx, "dw", 4 * weights as u64)?;
    let db = storage(ctx, "db", 4 * channels as u64)?;
    gradients((&dw).into(), (&db).into());
    let apart = compare(&read_buffer::<f32>(ctx, &dw, 0, weights)?, &cpu_dw).merge(compare(
        &read_buffer::<f32>(ctx, &db, 0, channels)?,
        &cpu_db,
    ));

    const MARKER: f32 = 12345.0;
    let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment).max(4);
    let db_at = (4 * weights as u64).next_multiple_of(align) / 4;
    let len = db_at as usize + channels;
    let both = storage_init(ctx, "dw and db", &vec![MARKER; len])?;
    let view = |offset: u64, elements: usize| View {
        buffer: &both,
        offset: 4 * offset,
        size: 4 * elements as u64,
    };
    gradients(view(0, weights), view(db_at, channels));
    let got = read_buffer::<f32>(ctx, &both, 0, len)?;
    let (gpu_dw, rest) = got.split_at(weights);
    let (gap, gpu_db) = rest.split_at(db_at as usize - weights);
    let together = compare(gpu_dw, &cpu_dw)
        .merge(compare(gpu_db, &cpu_db))
        .merge(compare(gap, &vec![MARKER; gap.len()]));
    Ok(apart.merge(together))
}

/// The weight gradient from the pooled gradient against the CPU's max pooling backward (masked
/// by the pooled ReLU outputs), then its weight gradient, with the pooled outputs and argmax of
/// the CPU's forward.
fn check_backward_weights_pooled(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
) -> Result<Comparison> {
    let (g, n, data) = (case.g, case.n, CaseData::new(case));
    let out = g.output();
    let len = n * pool2d_output(out).len();
    let (_, pooled, argmax) = cpu_relu_maxpool(case, &data);
    let dpooled = random_vec(len, len as u64, -1.0, 1.0);
    let masked: Vec<f32> = dpooled
        .iter()
        .zip(&pooled)
        .map(|(&d, &p)| if p > 0.0 { d } else { 0.0 })
        .collect();
    let mut dy = vec![0.0; n * out.len()];
    maxpool2d_backward(out, &masked, &argmax, &mut dy);
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; weight_len(g)], vec![0.0; g.out_channels]);
    conv2d_backward_weights(g, &data.x, &dy, &mut cpu_dw, &mut cpu_db);

    let x = storage_init(ctx, "x", &data.x)?;
    let (dpooled, pooled) = (
        storage_init(ctx, "dpooled", &dpooled)?,
        storage_init(ctx, "pooled", &pooled)?,
    );
    let argmax = storage_init(ctx, "argmax", &argmax)?;
    let dw = storage(ctx, "dw", 4 * weight_len(g) as u64)?;
    let db = storage(ctx, "db", 4 * g.out_channels as u64)?;
    let pooling = ((&dpooled).into(), (&pooled).into(), (&argmax).into());
    let grads = ((&dw).into(), (&db).into());
    let Some(dispatches) =
        kernels.backward_weights_pooled(ctx, variant, g, n, (&x).into(), pooling, grads)
    else {
        anyhow::bail!(
            "conv2d: the {} variant does not fold the pooling",
            variant.name()
        );
    };
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let gpu_dw = read_buffer::<f32>(ctx, &dw, 0, weight_len(g))?;
    let gpu_db = read_buffer::<f32>(ctx, &db, 0, g.out_channels)?;
    Ok(compare(&gpu_dw, &cpu_dw).merge(compare(&gpu_db, &cpu_db)))
}

/// Every output of every kernel of `variant`, as bits, from one run on fresh buffers.
fn run_all_bits(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
    data: &CaseData,
) -> Result<Vec<u32>> {
    let (g, n) = (case.g, case.n);
    let (x, w, b, dy) = (
        storage_init(ctx, "x", &data.x)?,
        storage_init(ctx, "w", &data.w)?,
        storage_init(ctx, "b", &data.b)?,
        storage_init(ctx, "dy", &data.dy)?,
    );
    let y_len = n * g.output().len();
    let y = storage(ctx, "y", 4 * y_len as u64)?;
    let dx = storage(ctx, "dx", 4 * (n * g.input.len()) as u64)?;
    let dw = storage(ctx, "dw", 4 * weight_len(g) as u64)?;
    let db = storage(ctx, "db", 4 * g.out_channels as u64)?;
    let mut dispatches = kernels.forward(
        ctx,
        variant,
        g,
        n,
        true,
        (&x).into(),
        (&w).into(),
        (&b).into(),
        (&y).into(),
    );
    dispatches.extend(kernels.backward_input(
        ctx,
        variant,
        g,
        n,
        (&dy).into(),
        (&w).into(),
        (&dx).into(),
    ));
    dispatches.extend(kernels.backward_weights(
        ctx,
        variant,
        g,
        n,
        (&x).into(),
        (&dy).into(),
        (&dw).into(),
        (&db).into(),
    ));
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let mut bits = Vec::new();
    for (buffer, len) in [
        (&y, y_len),
        (&dx, n * g.input.len()),
        (&dw, weight_len(g)),
        (&db, g.out_channels),
    ] {
        bits.extend(
            read_buffer::<f32>(ctx, buffer, 0, len)?
                .iter()
                .map(|v| v.to_bits()),
        );
    }
    Ok(bits)
}

fn check_reproducible(
    ctx: &GpuContext,
    kernels: &Conv2dKernels,
    variant: Conv2dVariant,
    case: Case,
) -> Result<Comparison> {
    let data = CaseData::new(case);
    let first = run_all_bits(ctx, kernels, variant, case, &data)?;
    let second = run_all_bits(ctx, kernels, variant, case, &data)?;
    Ok(compare_exact(&second, &first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shader_const(name: &str) -> usize {
        super::super::kernel::shader_const(SOURCE, name)
    }

    #[test]
    fn host_block_and_tile_sizes_match_the_shader() {
        for (name, host) in [
            ("BLOCK_WORKGROUP", BLOCK_WORKGROUP),
            ("BLOCK_CHANNELS", BLOCK_CHANNELS),
            ("BLOCK_ROWS", BLOCK_ROWS),
            ("BLOCK_COLS", BLOCK_COLS),
            ("K3_BLOCK_CHANNELS", K3_BLOCK_CHANNELS),
            ("BLOCK_POSITIONS", BLOCK_POSITIONS),
            ("MAX_RUNS", MAX_RUNS),
            ("MAX_CLASSES", MAX_RUNS * MAX_RUNS),
            ("TILE_M", TILE_M),
            ("TILE_N", TILE_N),
            ("TILE_K", TILE_K),
        ] {
            assert_eq!(shader_const(name), host, "{name}");
        }
    }

    #[test]
    fn input_runs_group_the_rows_that_meet_the_same_taps() {
        // 13 rows from 11 with k = 3: rows 0 and 1 meet taps 0 and 0..1, 2..10 all three,
        // 11 and 12 taps 1..2 and 2.
        let runs = input_runs(13, 11, 3);
        let expected = [
            [0, 1, 0, 1],
            [1, 1, 0, 2],
            [2, 9, 0, 3],
            [11, 1, 1, 2],
            [12, 1, 2, 1],
        ];
        assert_eq!(runs, expected);
        // An output narrower than the kernel: no row meets all k taps.
        assert_eq!(
            input_runs(4, 2, 3),
            [[0, 1, 0, 1], [1, 1, 0, 2], [2, 1, 1, 2], [3, 1, 2, 1]]
        );
        // Every row's taps: the runs cover 0..len in order.
        for (len, out, k) in [(28, 26, 3), (7, 3, 5), (9, 1, 9)] {
            let runs = input_runs(len, out, k);
            assert_eq!(runs.iter().map(|r| r[1] as usize).sum::<usize>(), len);
            assert!(runs.windows(2).all(|w| w[1][0] == w[0][0] + w[0][1]));
        }
    }

    #[test]
    fn packed_split_is_a_whole_number_of_channels_at_an_aligned_offset() {
        assert_eq!(packed_split(3), 504);
        assert_eq!(packed_split(1), 512);
        assert_eq!(packed_split(5), 500);
        for k in 1..=16 {
            let split = packed_split(k);
            // The largest: the next candidate (at most 2 k^2 further) would not fit.
            assert!(split <= PACKED_SLOTS && split + 2 * k * k > PACKED_SLOTS);
            assert_eq!(split % (k * k), 0);
            assert_eq!((split as u64 * PACKED_SLOT_BYTES) % 256, 0);
        }
    }

    #[test]
    fn the_shared_module_validates_with_subgroups() {
        let source = shared_source();
        let module = super::super::kernel::validated(&source);
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for name in [
            "conv2d_backward_weights_k3_shared",
            "conv2d_forward_packed_shared",
            "conv2d_forward_pool_packed_shared",
            "conv2d_subgroup_probe",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        // Every default body was replaced.
        for (marker, default, _) in SHARED_BODIES {
            assert!(!source.contains(&format!("{marker}{default}")), "{marker}");
        }
    }

    #[test]
    fn the_texture_modules_validate_and_read_no_staged_binding_from_storage() {
        for source in [texture_source(SOURCE), texture_source(&shared_source())] {
            super::super::kernel::validated(&source);
            for (name, _, texel) in TEXTURE_BINDINGS {
                assert!(
                    !source.contains(&format!("{name}[")),
                    "{name} read from storage"
                );
                let scalar = wgsl_scalar(texel);
                let declared = format!("var {name}_texture: texture_2d<{scalar}>");
                assert!(source.contains(&declared), "{declared}");
            }
        }
    }

    #[test]
    fn variant_names_round_trip() {
        for variant in Conv2dVariant::ALL {
            assert_eq!(Conv2dVariant::from_name(variant.name()), Some(variant));
            assert_eq!(variant.to_string(), variant.name());
            assert!(check_names(variant).forward.contains(variant.name()));
        }
        assert_eq!(Conv2dVariant::from_name("blocked"), None);
    }

    #[test]
    fn weight_gradient_chunks_cover_every_row_once() {
        for (rows, per_chunk, target) in [(1, 1, 192), (352, 6, 256), (3328, 1, 256), (400, 2, 256)]
        {
            let (chunks, chunk_rows) = weight_grad_chunks(rows, per_chunk, target);
            assert!(chunks * chunk_rows >= rows && (chunks - 1) * chunk_rows < rows);
        }
    }

    #[test]
    fn input_gradient_chunks_cover_every_term_once_in_whole_steps() {
        // (tiles, terms): the seed model's second layer at batch 128, 32 and 7, a case too
        // short to split, and one with a single tile.
        for (tiles, reduction) in [(169, 576), (43, 576), (10, 576), (400, 20), (1, 4000)] {
            let (chunks, chunk_k) = input_grad_chunks(tiles, reduction);
            assert_eq!(chunk_k % TILE_K, 0);
            assert!(chunks * chunk_k >= reduction && (chunks - 1) * chunk_k < reduction);
            assert!(chunks == 1 || chunk_k >= MIN_TERMS_PER_CHUNK);
        }
        // Batch 128 splits the second layer's 576 terms six ways: 1014 workgroups.
        assert_eq!(input_grad_chunks(169, 576), (6, 96));
    }
}
