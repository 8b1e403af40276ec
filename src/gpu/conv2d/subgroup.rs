//! The register-blocked conv2d kernels whose lanes share loads across subgroup lanes
//! (`shaders/conv2d/subgroup.wgsl`, in place of `share_per_lane.wgsl`): the packed forward (with
//! and without the fused pooling) and the 3x3 weight gradient, where every lane of a workgroup
//! (or of a group of 8) needs the same 32 values. Twin: `cpu/conv2d.rs`.

use super::register_blocked::{SharedLoads, BLOCK_WORKGROUP};
use super::{SUBGROUP_MODULE, SUBGROUP_TEXTURE_MODULE};
use crate::gpu::buffer::{read_buffer, storage};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{run, Access, Kernel};
use anyhow::Result;

/// The kernels sharing loads, reading storage and reading textures, where the adapter has
/// subgroups and the probe finds them laid out as the kernels need; else None (the subgroup
/// variants are not offered, and run the kernels with a load per lane).
pub(super) fn shared_loads(ctx: &GpuContext) -> Option<(SharedLoads, SharedLoads)> {
    if !ctx.features.contains(wgpu::Features::SUBGROUP) {
        return None;
    }
    let module = SUBGROUP_MODULE.compile_register_blocked(ctx);
    if !laid_out(ctx, &module) {
        return None;
    }
    let texture_module = SUBGROUP_TEXTURE_MODULE.compile_register_blocked(ctx);
    Some((
        kernels(ctx, &module, false),
        kernels(ctx, &texture_module, true),
    ))
}

/// Whether the probe in `module` (the storage form) finds every lane of a blocked workgroup at
/// subgroup lane = local index modulo a multiple of 8.
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

/// The shared kernels of `module`, which reads src and factor from textures where `textures`.
fn kernels(ctx: &GpuContext, module: &wgpu::ShaderModule, textures: bool) -> SharedLoads {
    use Access::*;
    let s = if textures { Texture } else { Read };
    let blocked = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform];
    let blocked_pool = &[Uniform, s, ReadWrite, s, Read, Uniform, Uniform, ReadWrite];
    let kernel = |name, bindings| Kernel::new(ctx, module, name, bindings);
    SharedLoads {
        backward_weights_k3: kernel(
            "conv2d_backward_weights_k3_shared",
            &[Uniform, s, ReadWrite, s],
        ),
        forward_packed: kernel("conv2d_forward_packed_shared", blocked),
        forward_pool_packed: kernel("conv2d_forward_pool_packed_shared", blocked_pool),
    }
}
