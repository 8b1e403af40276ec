//! The register-blocked conv2d kernels (`shaders/conv2d/register_blocked*.wgsl`), for CPU
//! adapters such as lavapipe: each invocation owns a block of 32 channels x 8 row segments
//! (or (in channel, ky) pairs) x 4 columns (or kx), or for the input gradient 32 positions of a
//! class of positions that meet the output with the same taps, and reuses every value it loads
//! across the block, with no workgroup memory. Two variants run them: reading x, dy (and the
//! pooling's outputs) from storage, or from r32float textures copied from the buffers before
//! each pass (`reads_texture.wgsl`; see `gpu::texture` for why). Twin: `cpu/conv2d.rs`.

use bytemuck::{Pod, Zeroable};

use super::sums::Chunks;
use super::{
    grid, u, weight_len, Conv2dParams, MAX_RUNS, REGISTER_BLOCKED_MODULE,
    REGISTER_BLOCKED_TEXTURE_MODULE,
};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::{uniform, View};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{grid_1d, Access, Dispatch, Kernel, Resource};
use crate::gpu::texture::{self, Texel};

/// Invocations per workgroup of the blocked kernels (`BLOCK_WORKGROUP` in the shader).
pub(super) const BLOCK_WORKGROUP: usize = 16;
/// Channels of a block (one `Tile`; `BLOCK_CHANNELS` in the shader).
pub(super) const BLOCK_CHANNELS: usize = 32;
/// Row segments (forward) or (in channel, ky) pairs (weight gradient) of a block (`BLOCK_ROWS`).
pub(super) const BLOCK_ROWS: usize = 8;
/// Columns (forward) or kx (weight gradient) of a block (`BLOCK_COLS`).
pub(super) const BLOCK_COLS: usize = 4;
/// Positions of an input-gradient block (`BLOCK_POSITIONS`).
const BLOCK_POSITIONS: usize = 32;
/// Input channels of a block of the 3x3 weight gradient (`conv2d_backward_weights_k3`).
pub(super) const K3_BLOCK_CHANNELS: usize = 4;
/// The register-blocked weight gradient splits the batch into chunks until about this many
/// invocations run: more chunks keep more threads busy but make the final sum longer. 192 is 12
/// workgroups, an even share for lavapipe's threads on 2, 3, 4 or 6 cores.
pub(super) const WEIGHT_GRAD_INVOCATIONS: usize = 192;
/// Packed weight slots of one uniform binding (`PACKED_SLOTS`), each the 32 weights of one step
/// of a channel block; the register-blocked forward and backward input have two bindings.
const PACKED_SLOTS: usize = 512;
const PACKED_SLOT_BYTES: u64 = 4 * BLOCK_CHANNELS as u64;
pub(super) const PACKED_BINDING_BYTES: u64 = PACKED_SLOTS as u64 * PACKED_SLOT_BYTES;

/// The bindings that the texture variant reads from textures: binding and texel, by the name
/// the shaders' accessors read them by (`src_at`, ...). src and factor (x, dy or w) in every
/// register-blocked kernel; the pooled value and argmax in the pooled weight gradient
/// (`conv2d_backward_weights_pooled`).
const TEXTURE_BINDINGS: [(&str, usize, Texel); 4] = [
    ("src", 1, Texel::F32),
    ("factor", 3, Texel::F32),
    ("pooled_y", 4, Texel::F32),
    ("pooled_argmax", 7, Texel::U32),
];

/// Mirrors `Conv2dPackParams` in `pack.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PackParams {
    /// Elements to write: slots * `BLOCK_CHANNELS`.
    len: u32,
    in_channels: u32,
    out_channels: u32,
    kernel: u32,
    /// Slots (steps) per block of `BLOCK_CHANNELS` channels.
    block_steps: u32,
    _pad: [u32; 3],
}

/// The register-blocked kernels whose lanes share loads across subgroup lanes (built by
/// `subgroup.rs` where the adapter has subgroups laid out as they need): the packed forward
/// (with and without the fused pooling) and the 3x3 weight gradient.
pub(super) struct SharedLoads {
    pub(super) backward_weights_k3: Kernel,
    pub(super) forward_packed: Kernel,
    pub(super) forward_pool_packed: Kernel,
}

/// Lanes that share one load of dy in the k3 weight gradient with shared dy.
const SHARED_DY_LANES: usize = 8;

/// Whether the 3x3 weight gradient of `g` runs with shared dy: where it runs the k3 kernel and
/// its blocks of input channels come in whole groups of 8, so that the 8 lanes of a group are
/// one (chunk, channel block).
pub(super) fn shares_dy(g: Conv2dGeometry) -> bool {
    let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
    runs_k3(g) && ci_blocks.is_multiple_of(SHARED_DY_LANES)
}

/// The register-blocked entry points.
pub(super) struct RegisterBlockedKernels {
    /// Whether they read src and factor (and the pooling's outputs) from textures.
    textures: bool,
    /// Bound as the packed weights of the kernels that read w from storage: they share code
    /// with the packed ones, so they declare those bindings too.
    pub(super) unused_packed: wgpu::Buffer,
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
    /// The narrow weight gradient reading the gradient of a fused ReLU and max pooling.
    pub(super) backward_weights_pooled: Kernel,
}

/// A register-blocked pass that reads packed weights, and the kernel that packs them.
struct PackedWeightsPass {
    pack: Kernel,
    run: Kernel,
}

impl RegisterBlockedKernels {
    /// The register-blocked kernels, reading src (binding 1) and factor (binding 3) from
    /// storage, or from textures where `textures`; the weight packing kernels come from `sums`
    /// (storage in both).
    pub(super) fn new(
        ctx: &GpuContext,
        sums: &wgpu::ShaderModule,
        textures: bool,
    ) -> RegisterBlockedKernels {
        let blocked_module = if textures {
            REGISTER_BLOCKED_TEXTURE_MODULE
        } else {
            REGISTER_BLOCKED_MODULE
        }
        .compile_register_blocked(ctx);
        use Access::*;
        let s = if textures { Texture } else { Read };
        // Pack params, w, packed weights.
        let pack = &[Uniform, Read, ReadWrite];
        // x (or dy), partial sums, dy.
        let plain = &[Uniform, s, ReadWrite, s];
        // x or dy, y or dx, w, bias (w in the input gradient, which has none), packed weights.
        let blocked = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform];
        // The same, then the pooling's argmax.
        let blocked_pool = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform, ReadWrite];
        // x, partial sums, dpooled, pooled y, (unused packed weights), the pooling's argmax.
        let argmax = if textures { UintTexture } else { Read };
        let pooled = &[Uniform, s, ReadWrite, s, s, Uniform, Uniform, argmax];
        let pack_kernel = |name| Kernel::new(ctx, sums, name, pack);
        let blocked_kernel = |name, bindings| Kernel::new(ctx, &blocked_module, name, bindings);
        RegisterBlockedKernels {
            textures,
            unused_packed: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("conv2d unused packed weights"),
                size: PACKED_BINDING_BYTES,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: false,
            }),
            forward_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: blocked_kernel("conv2d_forward_packed", blocked),
            },
            backward_input_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_backward_input_weights"),
                run: blocked_kernel("conv2d_backward_input_packed", blocked),
            },
            forward: blocked_kernel("conv2d_forward", blocked),
            backward_input: blocked_kernel("conv2d_backward_input", blocked),
            forward_pool_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: blocked_kernel("conv2d_forward_pool_packed", blocked_pool),
            },
            forward_pool: blocked_kernel("conv2d_forward_pool", blocked_pool),
            backward_weights: blocked_kernel("conv2d_backward_weights", plain),
            backward_weights_narrow: blocked_kernel("conv2d_backward_weights_narrow", plain),
            backward_weights_k3: blocked_kernel("conv2d_backward_weights_k3", plain),
            backward_weights_pooled: blocked_kernel("conv2d_backward_weights_pooled", pooled),
        }
    }

    /// The weight-gradient kernel for `g` (setting the blocks in `base`), the lanes of one
    /// chunk, and about how many lanes should run in all. `shared`: the subgroup variant's
    /// kernels, whose 3x3 kernel runs where it can.
    pub(super) fn weight_grad_work<'a>(
        &'a self,
        g: Conv2dGeometry,
        base: &mut Conv2dParams,
        shared: Option<&'a SharedLoads>,
    ) -> (&'a Kernel, usize, usize) {
        let co_blocks = g.out_channels.div_ceil(BLOCK_CHANNELS);
        let pairs = g.input.channels * g.kernel;
        if runs_k3(g) {
            let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
            (base.col_blocks, base.row_blocks) = (1, u(ci_blocks));
            let lanes = ci_blocks * co_blocks;
            let kernel = match shared {
                Some(shared) if shares_dy(g) => &shared.backward_weights_k3,
                _ => &self.backward_weights_k3,
            };
            (kernel, lanes, WEIGHT_GRAD_INVOCATIONS)
        } else {
            let kx_blocks = g.kernel.div_ceil(BLOCK_COLS);
            let (kernel, pairs_per_block) = if pairs <= BLOCK_ROWS / 2 {
                (&self.backward_weights_narrow, BLOCK_ROWS / 2)
            } else {
                (&self.backward_weights, BLOCK_ROWS)
            };
            let pair_blocks = pairs.div_ceil(pairs_per_block);
            (base.col_blocks, base.row_blocks) = (u(kx_blocks), u(pair_blocks));
            let lanes = kx_blocks * pair_blocks * co_blocks;
            (kernel, lanes, WEIGHT_GRAD_INVOCATIONS)
        }
    }
}

/// Whether the register-blocked weight gradient of `g` runs the 3x3 kernel: k = 3, with more
/// (in channel, ky) pairs than the narrow kernel takes.
pub(super) fn runs_k3(g: Conv2dGeometry) -> bool {
    g.kernel == 3 && g.input.channels * g.kernel > BLOCK_ROWS / 2
}

/// Whether the register-blocked forward of `g` reads its weights packed into the two uniform
/// bindings (`RegisterBlockedKernels::pass`), where the adapter binds them.
pub(super) fn packs_weights(g: Conv2dGeometry) -> bool {
    let slots = g.out_channels.div_ceil(BLOCK_CHANNELS) * g.input.channels * g.kernel * g.kernel;
    slots <= packed_split(g.kernel) + PACKED_SLOTS
}

/// Whether the weight gradient from a fused ReLU and max pooling runs in one register-blocked
/// pass for `g` (`conv2d_backward_weights_pooled`): at most 4 (ci, ky) pairs and k <= 4, as in
/// a first layer, and an output that pools.
pub(super) fn pools_weight_grad(g: Conv2dGeometry) -> bool {
    let out = g.output();
    let narrow = g.input.channels * g.kernel <= BLOCK_ROWS / 2 && g.kernel <= BLOCK_COLS;
    narrow && out.height >= 2 && out.width >= 2
}

impl Conv2dParams {
    /// The blocks of a register-blocked forward pass whose output has
    /// `channels` channels of `height x width` per image, each step of which multiplies
    /// `steps` weights: sets `col_blocks`, `block_groups`, `block_steps` and `len` (the
    /// workgroups: `block_groups` per block of channels).
    pub(super) fn channel_blocks(
        &mut self,
        channels: usize,
        height: usize,
        width: usize,
        steps: usize,
    ) {
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
    pub(super) fn input_classes(mut self, g: Conv2dGeometry, steps: usize) -> Option<Conv2dParams> {
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

/// Workgroups for `lanes` invocations of a register-blocked kernel.
pub(super) fn block_grid(lanes: usize) -> [u32; 3] {
    grid(lanes.div_ceil(BLOCK_WORKGROUP))
}

impl RegisterBlockedKernels {
    /// The forward, laid out by `Conv2dParams::channel_blocks`: `buffers` are x, y, w and b;
    /// with `argmax`, ReLU and 2x2 max pooling fused: y is then the pooled y, and it writes
    /// the pooling's argmax. `shared`: the kernels that share the packed weights across
    /// subgroup lanes, where they run.
    pub(super) fn forward(
        &self,
        ctx: &GpuContext,
        shared: Option<&SharedLoads>,
        mut params: Conv2dParams,
        (g, n): (Conv2dGeometry, usize),
        (buffers, argmax): ([View; 4], Option<View>),
    ) -> Vec<Dispatch> {
        let out = g.output();
        let steps = g.input.channels * g.kernel * g.kernel;
        let (pass, shared, unpacked) = match argmax {
            None => {
                params.channel_blocks(g.out_channels, out.height, out.width, steps);
                let shared = shared.map(|s| &s.forward_packed);
                (&self.forward_packed, shared, &self.forward)
            }
            // Blocks of 8 windows in (image, py, px) order: "rows" of one window each.
            Some(_) => {
                let windows = (out.height / 2) * (out.width / 2);
                params.channel_blocks(g.out_channels, windows, 1, steps);
                let shared = shared.map(|s| &s.forward_pool_packed);
                (&self.forward_pool_packed, shared, &self.forward_pool)
            }
        };
        let lens = (n * g.input.len(), weight_len(g));
        let kernels = (&pass.pack, shared.unwrap_or(&pass.run), unpacked);
        self.pass(ctx, params, kernels, (buffers, lens), argmax)
    }

    /// The register-blocked input gradient (`buffers`: dy, dx and w), or None where the input
    /// has more position classes than the params hold (kernels wider than 8).
    pub(super) fn backward_input(
        &self,
        ctx: &GpuContext,
        params: Conv2dParams,
        (g, n): (Conv2dGeometry, usize),
        [dy, dx, w]: [View; 3],
    ) -> Option<Vec<Dispatch>> {
        let steps = g.out_channels * g.kernel * g.kernel;
        let params = params.input_classes(g, steps)?;
        let lens = (n * g.output().len(), weight_len(g));
        // Binding 4 (the bias) is unused here.
        let packed = &self.backward_input_packed;
        let kernels = (&packed.pack, &packed.run, &self.backward_input);
        Some(self.pass(ctx, params, kernels, ([dy, dx, w, w], lens), None))
    }

    /// The weight gradient's partial sums of `chunks` of `per_chunk` lanes each
    /// (see `SumsKernels::weight_grad`) with `kernel`: its bindings are the params, `x`, the
    /// partial sums, then `inputs`; `staged` as in `with_sources`.
    pub(super) fn weight_grad(
        &self,
        ctx: &GpuContext,
        kernel: &Kernel,
        (mut params, per_chunk, chunks): (Conv2dParams, usize, Chunks),
        (x, partials, inputs): (View, View, &[View]),
        staged: &[(usize, usize)],
    ) -> Vec<Dispatch> {
        let lanes = per_chunk * chunks.count;
        (params.chunk_rows, params.partial_stride) = (u(chunks.rows), u(chunks.stride));
        params.len = u(lanes);
        let params = uniform(ctx, "conv2d params", &params);
        let mut bindings = vec![View::whole(&params), x, partials];
        bindings.extend_from_slice(inputs);
        let resources = bindings.into_iter().map(Into::into).collect();
        self.with_sources(ctx, kernel, resources, staged, block_grid(lanes))
    }

    /// The dispatch of `kernel` with `resources`. Where these kernels read textures,
    /// it binds textures at the bindings of `staged` ((binding, elements) of `TEXTURE_BINDINGS`)
    /// instead, and copies the buffers into them first. A kernel that never reads factor
    /// (binding 3) still declares it: src's texture stands in where `staged` lacks it.
    fn with_sources(
        &self,
        ctx: &GpuContext,
        kernel: &Kernel,
        resources: Vec<Resource>,
        staged: &[(usize, usize)],
        workgroups: [u32; 3],
    ) -> Vec<Dispatch> {
        if !self.textures {
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
    /// [`Conv2dParams::channel_blocks`]): packs the weights with `pack` and runs `packed` when
    /// the packed weights fit the two uniform bindings ([`packs_weights`]), else runs
    /// `unpacked`, which reads w itself.
    /// `buffers` are bindings 1 to 4 (binding 3 is w) with the elements of bindings 1 and 3,
    /// and `argmax` binding 7 where the kernels pool.
    fn pass(
        &self,
        ctx: &GpuContext,
        params: Conv2dParams,
        (pack, packed, unpacked): (&Kernel, &Kernel, &Kernel),
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
            self.with_sources(ctx, kernel, resources, staged, grid(groups))
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
        let pack_params = PackParams {
            len: u(elements),
            in_channels: params.in_channels,
            out_channels: params.out_channels,
            kernel: params.kernel,
            block_steps: params.block_steps,
            _pad: [0; 3],
        };
        let pack_params = uniform(ctx, "conv2d pack params", &pack_params);
        let pack = pack.dispatch(
            ctx,
            &[View::whole(&pack_params), w, View::whole(&packed_weights)],
            grid_1d(elements),
        );
        let mut dispatches = vec![pack];
        dispatches.extend(run(packed, binding(0), binding(hi_offset), false));
        dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        RB_BACKWARD_INPUT, RB_BACKWARD_WEIGHTS, RB_FORWARD, READS_STORAGE, READS_TEXTURE,
        REGISTER_BLOCKED, SHARE_PER_LANE, SUBGROUP,
    };
    use super::*;
    use crate::gpu::kernel::{assert_struct_size, shader_const};

    #[test]
    fn the_uniform_mirror_matches_the_shader() {
        let host = std::mem::size_of::<PackParams>();
        assert_struct_size(super::super::SUMS_MODULE, "Conv2dPackParams", host);
    }

    #[test]
    fn host_block_sizes_match_the_shaders() {
        let source = REGISTER_BLOCKED_MODULE.body();
        for (name, host) in [
            ("BLOCK_WORKGROUP", BLOCK_WORKGROUP),
            ("BLOCK_CHANNELS", BLOCK_CHANNELS),
            ("BLOCK_ROWS", BLOCK_ROWS),
            ("BLOCK_COLS", BLOCK_COLS),
            ("K3_BLOCK_CHANNELS", K3_BLOCK_CHANNELS),
            ("BLOCK_POSITIONS", BLOCK_POSITIONS),
            ("MAX_RUNS", MAX_RUNS),
            ("MAX_CLASSES", MAX_RUNS * MAX_RUNS),
            ("PACKED_SLOTS", PACKED_SLOTS),
        ] {
            assert_eq!(shader_const(&source, name), host, "{name}");
        }
        let width = shader_const(READS_TEXTURE.text, "TEXTURE_WIDTH");
        assert_eq!(width, texture::TEXTURE_WIDTH);
    }

    /// Whether `text` indexes `name` (`name[`, `name` a whole identifier).
    fn indexes(text: &str, name: &str) -> bool {
        text.match_indices(&format!("{name}[")).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        })
    }

    /// The register-blocked kernels read their inputs only through the accessors, which both
    /// reads files define over the bindings the host stages.
    #[test]
    fn the_register_blocked_kernels_read_only_through_the_accessors() {
        let kernels = [
            REGISTER_BLOCKED,
            RB_FORWARD,
            RB_BACKWARD_INPUT,
            RB_BACKWARD_WEIGHTS,
            SHARE_PER_LANE,
            SUBGROUP,
        ];
        for (name, binding, texel) in TEXTURE_BINDINGS {
            for file in kernels {
                assert!(!indexes(file.text, name), "{} indexes {name}", file.path);
            }
            let scalar = if texel == Texel::U32 { "u32" } else { "f32" };
            let accessor = format!("fn {name}_at(i: u32) -> {scalar} {{");
            let storage = format!(
                "@group(0) @binding({binding}) var<storage, read> {name}: array<{scalar}>;"
            );
            let texture =
                format!("@group(0) @binding({binding}) var {name}_texture: texture_2d<{scalar}>;");
            for (file, declared) in [(READS_STORAGE, storage), (READS_TEXTURE, texture)] {
                assert!(file.text.contains(&accessor), "{}: {accessor}", file.path);
                assert!(file.text.contains(&declared), "{}: {declared}", file.path);
            }
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

    /// `packs_weights`, which says where the subgroup variants change the forward, agrees with
    /// the forward's own choice (`RegisterBlockedKernels::pass`).
    #[test]
    fn packs_weights_agrees_with_the_forward_pass() {
        use crate::model::Shape;
        for (input, out_channels, kernel, packs) in [
            (Shape::new(1, 28, 28), 32, 3, true),
            (Shape::new(32, 13, 13), 64, 3, true),
            (Shape::new(35, 11, 14), 37, 6, false),
            (Shape::new(56, 9, 9), 64, 3, true),
            (Shape::new(57, 9, 9), 64, 3, false),
        ] {
            let g = Conv2dGeometry::new(input, out_channels, kernel);
            let (mut p, out) = (Conv2dParams::new(g, 7), g.output());
            let steps = g.input.channels * g.kernel * g.kernel;
            p.channel_blocks(g.out_channels, out.height, out.width, steps);
            let slots = (p.len / p.block_groups) as usize * p.block_steps as usize;
            let pass_packs = slots <= packed_split(g.kernel) + PACKED_SLOTS;
            assert_eq!((packs_weights(g), pass_packs), (packs, packs), "{input:?}");
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
}
