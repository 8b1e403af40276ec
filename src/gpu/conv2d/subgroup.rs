//! The register-blocked conv2d kernels whose lanes share loads across subgroup lanes
//! (`shaders/conv2d/subgroup.wgsl`, in place of `share_per_lane.wgsl`): the packed forward (with
//! and without the fused pooling) and the 3x3 weight gradient, where every lane of a workgroup
//! (or of a group of 8) needs the same 32 values. Twin: `cpu/conv2d.rs`.

use super::register_blocked::{self, BLOCK_WORKGROUP, K3_BLOCK_CHANNELS};
use super::{SUBGROUP_MODULE, SUBGROUP_TEXTURE_MODULE};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::{read_buffer, storage};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{run, Access, Kernel};
use anyhow::Result;

/// Lanes that share one load of dy in the k3 weight gradient with shared dy.
const SHARED_DY_LANES: usize = 8;

/// Whether the 3x3 weight gradient of `g` runs with shared dy: where it runs the k3 kernel and
/// its blocks of input channels come in whole groups of 8, so that the 8 lanes of a group are
/// one (chunk, channel block).
pub(super) fn shares_dy(g: Conv2dGeometry) -> bool {
    let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
    register_blocked::runs_k3(g) && ci_blocks.is_multiple_of(SHARED_DY_LANES)
}

/// The kernels that share loads across subgroup lanes.
pub(super) struct SubgroupKernels {
    pub(super) backward_weights_k3: Kernel,
    pub(super) forward_packed: Kernel,
    pub(super) forward_pool_packed: Kernel,
}

impl SubgroupKernels {
    /// The shared kernels reading storage and those reading textures, where the adapter has
    /// subgroups and the probe finds them laid out as the kernels need; else None (the
    /// subgroup variants are not offered, and run the kernels with a load per lane).
    pub(super) fn both(ctx: &GpuContext) -> Option<(SubgroupKernels, SubgroupKernels)> {
        if !ctx.features.contains(wgpu::Features::SUBGROUP) {
            return None;
        }
        let module = SUBGROUP_MODULE.compile_register_blocked(ctx);
        if !SubgroupKernels::laid_out(ctx, &module) {
            return None;
        }
        let texture_module = SUBGROUP_TEXTURE_MODULE.compile_register_blocked(ctx);
        Some((
            SubgroupKernels::new(ctx, &module, false),
            SubgroupKernels::new(ctx, &texture_module, true),
        ))
    }

    /// Whether the probe in `module` (the storage form) finds every lane of a blocked workgroup
    /// at subgroup lane = local index modulo a multiple of 8.
    fn laid_out(ctx: &GpuContext, module: &wgpu::ShaderModule) -> bool {
        let probe = Kernel::new(ctx, module, "conv2d_subgroup_probe", &[Access::ReadWrite]);
        let laid_out = || -> Result<bool> {
            let flags = storage(ctx, "conv2d probe flags", 4 * BLOCK_WORKGROUP as u64)?;
            run(ctx, &[&probe.dispatch(ctx, &[(&flags).into()], [1, 1, 1])]);
            let flags: Vec<f32> = read_buffer(ctx, &flags, 0, BLOCK_WORKGROUP)?;
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
