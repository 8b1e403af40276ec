//! The register-blocked conv2d kernels (`shaders/conv2d/register_blocked*.wgsl`), for CPU
//! adapters such as lavapipe: each invocation owns a block of 32 channels x 8 row segments
//! (or (in channel, ky) pairs) x 4 columns (or kx), or for the input gradient 32 positions of a
//! class of positions that meet the output with the same taps, and reuses every value it loads
//! across the block, with no workgroup memory. Two variants run them: `register-blocked` reads
//! x, dy (and the pooling's outputs) from storage, `register-blocked-texture` from r32float
//! textures copied from the buffers before each pass (`reads_texture.wgsl`; see `gpu::texture`
//! for why). The subgroup variants (`subgroup.rs`) are this family with some kernels replaced.
//! Twin: `cpu/conv2d.rs`.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::products::{
    binding, input_classes_fit, kernel_bindings, packed_split, packs_weights, pools_weight_grad,
    runs_k3, shares_dy, Conv2dForwardParams, Conv2dInputGradParams, Conv2dWeightGradParams,
    PacksWeights, BLOCK_CHANNELS, BLOCK_COLS, BLOCK_ROWS, BLOCK_WORKGROUP, K3_BLOCK_CHANNELS,
    PACKED_BINDING_BYTES, PACKED_SLOTS, PACKED_SLOT_BYTES, TEXTURE_BINDINGS,
    WEIGHT_GRAD_INVOCATIONS,
};
use super::shared::Conv2dShared;
use super::sums::{Chunks, Conv2dPackParams, SumsKernels};
use super::{
    grid, pooled_len, u, weight_len, Conv2dPass, Conv2dShape, Conv2dVariant, READS_STORAGE,
    READS_TEXTURE,
};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::{uniform, View};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{grid_1d, Access, Dispatch, Kernel, Resource, ShaderFile, WgslModule};
use crate::gpu::texture;
use crate::gpu::variant::{Registration, Variant};
use crate::shader_file;

/// Each lane loads the values every lane of its block needs itself (`subgroup.wgsl` shares
/// them across subgroup lanes instead).
pub(super) const SHARE_PER_LANE: ShaderFile = shader_file!("conv2d/share_per_lane.wgsl");
pub(super) const STORAGE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked",
    READS_STORAGE,
    SHARE_PER_LANE,
    false
);
pub(super) const TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture",
    READS_TEXTURE,
    SHARE_PER_LANE,
    false
);

/// `register-blocked`: the kernels reading storage.
pub(super) const STORAGE: Registration<dyn Conv2dVariant, Conv2dShared> =
    Registration::new("register-blocked", &[STORAGE_MODULE], storage);
/// `register-blocked-texture`: the kernels reading textures; where a tensor is too large for
/// them, `register-blocked` runs the pass.
pub(super) const TEXTURE: Registration<dyn Conv2dVariant, Conv2dShared> =
    Registration::new("register-blocked-texture", &[TEXTURE_MODULE], texture)
        .falls_back_to(Variant::REGISTER_BLOCKED);

fn storage(ctx: &GpuContext, shared: &Conv2dShared) -> Option<Box<dyn Conv2dVariant>> {
    let kernels = per_lane_kernels(ctx, shared, false);
    Some(Box::new(RegisterBlocked::new(kernels, None, shared)))
}

fn texture(ctx: &GpuContext, shared: &Conv2dShared) -> Option<Box<dyn Conv2dVariant>> {
    let kernels = per_lane_kernels(ctx, shared, true);
    Some(Box::new(RegisterBlocked::new(kernels, None, shared)))
}

/// The per-lane kernels reading storage, or textures where `textures`, compiled once per device
/// (the subgroup variants run them too).
pub(super) fn per_lane_kernels(
    ctx: &GpuContext,
    shared: &Conv2dShared,
    textures: bool,
) -> Arc<RegisterBlockedKernels> {
    let make = || RegisterBlockedKernels::new(ctx, &shared.sums_module, textures);
    match textures {
        false => shared.once("conv2d register-blocked kernels", make),
        true => shared.once("conv2d register-blocked-texture kernels", make),
    }
}

/// A register-blocked variant: the per-lane kernels, and, in a subgroup variant, the kernels
/// that replace some of them (it declines every pass they do not change, which its
/// registration's fallback, the per-lane form, then runs).
pub(super) struct RegisterBlocked {
    kernels: Arc<RegisterBlockedKernels>,
    /// The subgroup variant's kernels, and the per-lane variant they stand in for.
    shares: Option<(SharedLoads, Variant)>,
    sums: Arc<SumsKernels>,
    /// Whether the adapter binds the 64 KiB uniform ranges of the packed forward and
    /// input-gradient kernels, which run wherever the weights fit them (WebGPU's default limit;
    /// wgpu's downlevel limits have 16 KiB). Where it does not, this family declines those
    /// passes.
    packed_bindings_fit: bool,
}

impl RegisterBlocked {
    pub(super) fn new(
        kernels: Arc<RegisterBlockedKernels>,
        shares: Option<(SharedLoads, Variant)>,
        shared: &Conv2dShared,
    ) -> RegisterBlocked {
        RegisterBlocked {
            kernels,
            shares,
            sums: shared.sums.clone(),
            packed_bindings_fit: shared.max_uniform_binding >= PACKED_BINDING_BYTES,
        }
    }

    /// The kernels that share loads across subgroup lanes, in a subgroup variant.
    fn shared_loads(&self) -> Option<&SharedLoads> {
        self.shares.as_ref().map(|(loads, _)| loads)
    }

    /// Whether this variant's textures (where it reads textures) hold tensors of `lens`
    /// elements on this adapter; where not, it declines the pass (the storage form runs it).
    fn textures_fit(&self, ctx: &GpuContext, lens: &[usize]) -> bool {
        !self.kernels.textures || lens.iter().all(|&len| texture::fits(ctx, len))
    }
}

/// Whether the subgroup kernels change `pass` at `g` (the forward where its weights are packed
/// and the adapter binds them, the 3x3 weight gradient where its blocks of input channels come
/// in groups of 8).
fn shares_loads(pass: Conv2dPass, g: Conv2dGeometry, packed_bindings_fit: bool) -> bool {
    match pass {
        Conv2dPass::Forward | Conv2dPass::ForwardReluMaxpool => {
            packed_bindings_fit && packs_weights(g)
        }
        Conv2dPass::BackwardInput => false,
        Conv2dPass::BackwardWeights => shares_dy(g),
        Conv2dPass::BackwardWeightsMaxpool => !pools_weight_grad(g) && shares_dy(g),
    }
}

impl Conv2dVariant for RegisterBlocked {
    /// Stride 1, valid padding; the forward and input gradient where the packed-weight
    /// bindings fit, the input gradient where the position classes fit the uniform. A subgroup
    /// variant: only where its kernels change the pass.
    fn offers(&self, pass: Conv2dPass, g: Conv2dGeometry) -> bool {
        if !g.is_dense() {
            return false;
        }
        if self.shares.is_some() {
            return shares_loads(pass, g, self.packed_bindings_fit);
        }
        match pass {
            Conv2dPass::Forward | Conv2dPass::ForwardReluMaxpool => self.packed_bindings_fit,
            Conv2dPass::BackwardInput => self.packed_bindings_fit && input_classes_fit(g),
            Conv2dPass::BackwardWeights | Conv2dPass::BackwardWeightsMaxpool => true,
        }
    }

    /// The forward with pooling wherever it offers it; the weight gradient through the pooling
    /// at most 4 (ci, ky) pairs and k <= 4, as in a first layer ([`pools_weight_grad`]), in the
    /// per-lane forms (the subgroup forms change nothing there).
    fn fuses(&self, pass: Conv2dPass, g: Conv2dGeometry) -> bool {
        let out = g.output();
        let pools = out.height >= 2 && out.width >= 2 && self.offers(pass, g);
        match pass {
            Conv2dPass::ForwardReluMaxpool => pools,
            Conv2dPass::BackwardWeightsMaxpool => {
                pools && self.shares.is_none() && pools_weight_grad(g)
            }
            _ => false,
        }
    }

    fn stands_in_for(&self) -> Option<Variant> {
        self.shares.as_ref().map(|&(_, per_lane)| per_lane)
    }

    fn forward(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        relu: bool,
        [x, w, b, y]: [View; 4],
    ) -> Option<Vec<Dispatch>> {
        let lens = [n * g.input.len(), weight_len(g)];
        let runs = self.offers(Conv2dPass::Forward, g) && self.textures_fit(ctx, &lens);
        let shared = self.shared_loads();
        runs.then(|| {
            self.kernels
                .forward(ctx, shared, ((g, n), relu), [x, w, b], (y, None))
        })
    }

    fn forward_relu_maxpool(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        [x, w, b]: [View; 3],
        [pooled, argmax]: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        let lens = [n * g.input.len(), weight_len(g)];
        let pass = Conv2dPass::ForwardReluMaxpool;
        if !(self.fuses(pass, g) && self.textures_fit(ctx, &lens)) {
            return None;
        }
        let outputs = (pooled, Some(argmax));
        let work = ((g, n), true);
        Some(
            self.kernels
                .forward(ctx, self.shared_loads(), work, [x, w, b], outputs),
        )
    }

    fn backward_input(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        [dy, w, dx]: [View; 3],
    ) -> Option<Vec<Dispatch>> {
        let lens = [n * g.output().len(), weight_len(g)];
        if !(self.offers(Conv2dPass::BackwardInput, g) && self.textures_fit(ctx, &lens)) {
            return None;
        }
        self.kernels.backward_input(ctx, (g, n), [dy, dx, w])
    }

    fn backward_weights(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        [x, dy]: [View; 2],
        [dw, db]: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        let lens = [n * g.input.len(), n * g.output().len()];
        if !(self.offers(Conv2dPass::BackwardWeights, g) && self.textures_fit(ctx, &lens)) {
            return None;
        }
        // The kernel, the work of one chunk, and how much work should run in all.
        let mut base = Conv2dWeightGradParams {
            shape: Conv2dShape::new(g, n),
            ..Zeroable::zeroed()
        };
        let rb = &self.kernels;
        let (kernel, per_chunk, target) = rb.weight_grad_work(g, &mut base, self.shared_loads());
        let inputs = [(binding::X, x), (binding::DY, dy)];
        let staged = [(binding::X, lens[0]), (binding::DY, lens[1])];
        let partial_sums = |chunks, partials: View| {
            let work = (base, per_chunk, chunks);
            rb.weight_grad(ctx, kernel, work, (partials, &inputs), &staged)
        };
        let work = (n * g.output().height, per_chunk, target);
        Some(
            self.sums
                .weight_grad(ctx, g, work, partial_sums, (dw, db), false),
        )
    }

    fn backward_weights_pooled(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        x: View,
        [dpooled, pooled, argmax]: [View; 3],
        [dw, db]: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        let pooled_len = pooled_len(g, n);
        let lens = [n * g.input.len(), pooled_len];
        let pass = Conv2dPass::BackwardWeightsMaxpool;
        if !(self.fuses(pass, g) && self.textures_fit(ctx, &lens)) {
            return None;
        }
        let base = Conv2dWeightGradParams {
            shape: Conv2dShape::new(g, n),
            ..Zeroable::zeroed()
        };
        // Chunks of pooled row segments, one lane per block of output channels.
        let work = (
            n * (g.output().height / 2),
            g.out_channels.div_ceil(BLOCK_CHANNELS),
            WEIGHT_GRAD_INVOCATIONS,
        );
        let rb = &self.kernels;
        let kernel = &rb.backward_weights_pooled;
        let inputs = [
            (binding::X, x),
            (binding::DY, dpooled),
            (binding::POOLED_Y, pooled),
            (binding::POOLED_ARGMAX, argmax),
        ];
        let staged = [
            (binding::X, lens[0]),
            (binding::DY, pooled_len),
            (binding::POOLED_Y, pooled_len),
            (binding::POOLED_ARGMAX, pooled_len),
        ];
        let per_chunk = work.1;
        let partial_sums = |chunks, partials: View| {
            let work = (base, per_chunk, chunks);
            rb.weight_grad(ctx, kernel, work, (partials, &inputs), &staged)
        };
        Some(
            self.sums
                .weight_grad(ctx, g, work, partial_sums, (dw, db), false),
        )
    }
}

/// The register-blocked kernels whose lanes share loads across subgroup lanes (built by
/// `subgroup.rs` where the adapter has subgroups laid out as they need): the packed forward
/// (with and without the fused pooling) and the 3x3 weight gradient.
pub(super) struct SharedLoads {
    pub(super) backward_weights_k3: Kernel,
    pub(super) forward_packed: Kernel,
    pub(super) forward_pool_packed: Kernel,
}

/// The register-blocked entry points.
pub(super) struct RegisterBlockedKernels {
    /// Whether they read x, dy and w (and the pooling's outputs) from textures.
    textures: bool,
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
    backward_weights_pooled: Kernel,
}

/// A register-blocked pass that reads packed weights, and the kernel that packs them.
struct PackedWeightsPass {
    pack: Kernel,
    run: Kernel,
}

impl RegisterBlockedKernels {
    /// The register-blocked kernels, reading x, dy and w from storage, or from textures where
    /// `textures`; the weight packing kernels come from `sums` (storage in both).
    pub(super) fn new(
        ctx: &GpuContext,
        sums: &wgpu::ShaderModule,
        textures: bool,
    ) -> RegisterBlockedKernels {
        let blocked_module = if textures {
            TEXTURE_MODULE
        } else {
            STORAGE_MODULE
        }
        .compile_register_blocked(ctx);
        use Access::*;
        // Pack params, w, packed weights.
        let pack_kernel = |name| Kernel::new(ctx, sums, name, &[Uniform, Read, ReadWrite]);
        let kernel = |name| {
            let bindings = kernel_bindings(name, textures);
            Kernel::numbered(ctx, &blocked_module, name, &bindings)
        };
        RegisterBlockedKernels {
            textures,
            forward_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: kernel("conv2d_forward_packed"),
            },
            backward_input_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_backward_input_weights"),
                run: kernel("conv2d_backward_input_packed"),
            },
            forward: kernel("conv2d_forward"),
            backward_input: kernel("conv2d_backward_input"),
            forward_pool_packed: PackedWeightsPass {
                pack: pack_kernel("conv2d_pack_forward_weights"),
                run: kernel("conv2d_forward_pool_packed"),
            },
            forward_pool: kernel("conv2d_forward_pool"),
            backward_weights: kernel("conv2d_backward_weights"),
            backward_weights_narrow: kernel("conv2d_backward_weights_narrow"),
            backward_weights_k3: kernel("conv2d_backward_weights_k3"),
            backward_weights_pooled: kernel("conv2d_backward_weights_pooled"),
        }
    }

    /// The weight-gradient kernel for `g` (setting the blocks in `base`), the lanes of one
    /// chunk, and about how many lanes should run in all. `shared`: the subgroup variant's
    /// kernels, whose 3x3 kernel runs where it can.
    fn weight_grad_work<'a>(
        &'a self,
        g: Conv2dGeometry,
        base: &mut Conv2dWeightGradParams,
        shared: Option<&'a SharedLoads>,
    ) -> (&'a Kernel, usize, usize) {
        let co_blocks = g.out_channels.div_ceil(BLOCK_CHANNELS);
        let pairs = g.input.channels * g.kernel;
        if runs_k3(g) {
            let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
            (base.kx_blocks, base.pair_blocks) = (1, u(ci_blocks));
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
            (base.kx_blocks, base.pair_blocks) = (u(kx_blocks), u(pair_blocks));
            let lanes = kx_blocks * pair_blocks * co_blocks;
            (kernel, lanes, WEIGHT_GRAD_INVOCATIONS)
        }
    }
}

/// Workgroups for `lanes` invocations of a register-blocked kernel.
pub(super) fn block_grid(lanes: usize) -> [u32; 3] {
    grid(lanes.div_ceil(BLOCK_WORKGROUP))
}

impl RegisterBlockedKernels {
    /// The forward of `(g, n)` (rectified where `relu`): `inputs` are x, w and b; the output
    /// y, or with `argmax`, ReLU and 2x2 max pooling fused: y is then the pooled y, and it
    /// writes the pooling's argmax. `shared`: the kernels that share the packed weights across
    /// subgroup lanes, where they run.
    fn forward(
        &self,
        ctx: &GpuContext,
        shared: Option<&SharedLoads>,
        ((g, n), relu): ((Conv2dGeometry, usize), bool),
        [x, w, b]: [View; 3],
        (y, argmax): (View, Option<View>),
    ) -> Vec<Dispatch> {
        let out = g.output();
        let steps = g.input.channels * g.kernel * g.kernel;
        let (params, pass, shared, unpacked, rest) = match argmax {
            None => {
                let blocks = (g.out_channels, out.height, out.width);
                let params = Conv2dForwardParams::new((g, n), relu, blocks, steps);
                let shared = shared.map(|s| &s.forward_packed);
                let rest = vec![(binding::B, b), (binding::OUT, y)];
                (params, &self.forward_packed, shared, &self.forward, rest)
            }
            // Blocks of 8 windows in (image, py, px) order: "rows" of one window each.
            Some(argmax) => {
                let windows = (out.height / 2) * (out.width / 2);
                let blocks = (g.out_channels, windows, 1);
                let params = Conv2dForwardParams::new((g, n), true, blocks, steps);
                let shared = shared.map(|s| &s.forward_pool_packed);
                let rest = vec![
                    (binding::B, b),
                    (binding::POOLED_Y, y),
                    (binding::POOLED_ARGMAX, argmax),
                ];
                (
                    params,
                    &self.forward_pool_packed,
                    shared,
                    &self.forward_pool,
                    rest,
                )
            }
        };
        let kernels = (&pass.pack, shared.unwrap_or(&pass.run), unpacked);
        let input = (binding::X, x, n * g.input.len());
        let w = (w, weight_len(g));
        self.pass(ctx, params, kernels, (input, w), &rest)
    }

    /// The register-blocked input gradient (`buffers`: dy, dx and w), or None where the input
    /// has more position classes than the uniform holds (kernels wider than 8).
    fn backward_input(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        [dy, dx, w]: [View; 3],
    ) -> Option<Vec<Dispatch>> {
        let steps = g.out_channels * g.kernel * g.kernel;
        let params = Conv2dInputGradParams::new((g, n), steps)?;
        let packed = &self.backward_input_packed;
        let kernels = (&packed.pack, &packed.run, &self.backward_input);
        let input = (binding::DY, dy, n * g.output().len());
        let w = (w, weight_len(g));
        let rest = [(binding::OUT, dx)];
        Some(self.pass(ctx, params, kernels, (input, w), &rest))
    }

    /// The weight gradient's partial sums of `chunks` of `per_chunk` lanes each
    /// (see `SumsKernels::weight_grad`) with `kernel`: its bindings are the params, the
    /// partial sums and `inputs` (binding, buffer); `staged` as in `with_sources`.
    fn weight_grad(
        &self,
        ctx: &GpuContext,
        kernel: &Kernel,
        (mut params, per_chunk, chunks): (Conv2dWeightGradParams, usize, Chunks),
        (partials, inputs): (View, &[(u32, View)]),
        staged: &[(u32, usize)],
    ) -> Vec<Dispatch> {
        let lanes = per_chunk * chunks.count;
        (params.chunk_rows, params.partial_stride) = (u(chunks.rows), u(chunks.stride));
        params.len = u(lanes);
        let params = uniform(ctx, "conv2d params", &params);
        let mut bound = vec![
            (binding::PARAMS, View::whole(&params)),
            (binding::OUT, partials),
        ];
        bound.extend_from_slice(inputs);
        self.with_sources(ctx, kernel, &bound, staged, block_grid(lanes))
    }

    /// The dispatch of `kernel` with `bound` (binding, buffer): exactly the bindings it
    /// declares. Where these kernels read textures, it binds textures at the bindings of
    /// `staged` ((binding, elements) of `TEXTURE_BINDINGS`) instead, and copies the buffers
    /// into them first.
    fn with_sources(
        &self,
        ctx: &GpuContext,
        kernel: &Kernel,
        bound: &[(u32, View)],
        staged: &[(u32, usize)],
        workgroups: [u32; 3],
    ) -> Vec<Dispatch> {
        let mut resources: Vec<(u32, Resource)> =
            bound.iter().map(|&(at, view)| (at, view.into())).collect();
        if !self.textures {
            return vec![kernel.dispatch_numbered(ctx, &resources, workgroups)];
        }
        let textures: Vec<(u32, texture::Staged)> = staged
            .iter()
            .map(|&(at, len)| {
                let (_, view) = *bound
                    .iter()
                    .find(|&&(b, _)| b == at)
                    .expect("conv2d stages only bound buffers");
                let (.., texel) = TEXTURE_BINDINGS
                    .into_iter()
                    .find(|&(_, b, _)| b == at)
                    .expect("conv2d stages only its TEXTURE_BINDINGS");
                let texture = texture::stage(ctx, view, len, texel);
                (at, texture.expect("where_textures_fit checked the size"))
            })
            .collect();
        for (at, texture) in &textures {
            for resource in resources.iter_mut().filter(|(b, _)| b == at) {
                resource.1 = Resource::Texture(&texture.view);
            }
        }
        let mut run = kernel.dispatch_numbered(ctx, &resources, workgroups);
        run.copies
            .extend(textures.into_iter().map(|(_, texture)| texture.copy));
        vec![run]
    }

    /// A register-blocked forward or input-gradient pass as laid out in `params` (see
    /// [`Conv2dForwardParams::new`]): packs the weights with `pack` and runs `packed` when
    /// the packed weights fit the two uniform bindings ([`packs_weights`]), else runs
    /// `unpacked`, which reads w itself. `input`: the binding, buffer and elements of x (or
    /// dy), `w` the weights and their elements, `rest` the kernel's other bindings (binding,
    /// buffer): b and the outputs.
    fn pass<P: PacksWeights>(
        &self,
        ctx: &GpuContext,
        params: P,
        (pack, packed, unpacked): (&Kernel, &Kernel, &Kernel),
        ((at, input, input_len), (w, w_len)): ((u32, View, usize), (View, usize)),
        rest: &[(u32, View)],
    ) -> Vec<Dispatch> {
        let (groups, block_groups, block_steps) = params.blocks();
        let groups = groups as usize;
        let blocks = groups / block_groups.max(1) as usize;
        let slots = blocks * block_steps as usize;
        let shape = params.shape();
        let split = packed_split(shape.kernel as usize);
        let run_params = uniform(ctx, "conv2d params", &params.with_packed_split(u(split)));
        let run = |kernel: &Kernel, weights: &[(u32, View)], staged: &[(u32, usize)]| {
            let mut bound = vec![(binding::PARAMS, View::whole(&run_params)), (at, input)];
            bound.extend_from_slice(weights);
            bound.extend_from_slice(rest);
            self.with_sources(ctx, kernel, &bound, staged, grid(groups))
        };
        if slots > split + PACKED_SLOTS {
            let staged = [(at, input_len), (binding::W, w_len)];
            return run(unpacked, &[(binding::W, w)], &staged);
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
        let packed_range = |offset: u64| View {
            buffer: &packed_weights,
            offset,
            size: PACKED_BINDING_BYTES,
        };
        let elements = slots * BLOCK_CHANNELS;
        let pack_params = Conv2dPackParams {
            len: u(elements),
            in_channels: shape.in_channels,
            out_channels: shape.out_channels,
            kernel: shape.kernel,
            block_steps,
            ..Zeroable::zeroed()
        };
        let pack_params = uniform(ctx, "conv2d pack params", &pack_params);
        let pack = pack.dispatch(
            ctx,
            &[View::whole(&pack_params), w, View::whole(&packed_weights)],
            grid_1d(elements),
        );
        let weights = [
            (binding::PACKED_LO, packed_range(0)),
            (binding::PACKED_HI, packed_range(hi_offset)),
        ];
        let mut dispatches = vec![pack];
        dispatches.extend(run(packed, &weights, &[(at, input_len)]));
        dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RB_BACKWARD_INPUT, RB_BACKWARD_WEIGHTS, RB_FORWARD, REGISTER_BLOCKED};
    use super::*;
    use crate::gpu::texture::Texel;

    /// The subgroup variants change the packed forward and the 3x3 weight gradient of the seed
    /// model's second layer (whose 32 input channels make 8 blocks of 4), and nothing else.
    #[test]
    fn subgroups_change_the_packed_forward_and_the_grouped_k3_weight_gradient() {
        use crate::model::Shape;
        use Conv2dPass::*;
        let conv1 = Conv2dGeometry::new(Shape::new(1, 28, 28), 32, 3);
        let conv2 = Conv2dGeometry::new(Shape::new(32, 13, 13), 64, 3);
        let odd = Conv2dGeometry::new(Shape::new(40, 7, 8), 40, 3);
        for (g, pass, shares) in [
            (conv1, Forward, true),
            (conv1, ForwardReluMaxpool, true),
            (conv1, BackwardWeightsMaxpool, false),
            (conv2, Forward, true),
            (conv2, ForwardReluMaxpool, true),
            (conv2, BackwardInput, false),
            (conv2, BackwardWeights, true),
            (odd, BackwardWeights, false),
        ] {
            assert_eq!(shares_loads(pass, g, true), shares, "{pass:?} {g:?}");
        }
        assert!(!shares_loads(Forward, conv2, false));
        assert!(input_classes_fit(conv2));
        let wide = Conv2dGeometry::new(Shape::new(3, 40, 40), 8, 9);
        assert!(!input_classes_fit(wide));
    }

    /// Whether `text` indexes `name` (`name[`, `name` a whole identifier) outside comments.
    fn indexes(text: &str, name: &str) -> bool {
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let text = code.as_str();
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
            shader_file!("conv2d/subgroup.wgsl"),
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
}
