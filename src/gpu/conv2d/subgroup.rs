//! The register-blocked conv2d variants whose lanes share loads across subgroup lanes
//! (`shaders/conv2d/subgroup.wgsl`, in place of `share_per_lane.wgsl`):
//! `register-blocked-subgroup` and `register-blocked-texture-subgroup`. They change the packed
//! forward (with and without the fused pooling) and the 3x3 weight gradient, where every lane
//! of a workgroup (or of a group of 8) needs the same 32 values, and decline every other pass,
//! which their per-lane form runs. Built only where the adapter has subgroups laid out as the
//! kernels need. Twin: `cpu/conv2d.rs`.

use super::products::{
    kernel_bindings, Conv2dForwardParams, Conv2dInputGradParams, Conv2dWeightGradParams,
    BLOCK_WORKGROUP,
};
use super::register_blocked::{per_lane_kernels, RegisterBlocked, SharedLoads};
use super::shared::Conv2dShared;
use super::{Conv2dShape, Conv2dVariant, READS_STORAGE, READS_TEXTURE};
use crate::gpu::buffer::{read_buffer, storage as storage_buffer};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{run, Access, Kernel, ShaderFile, WgslModule};
use crate::gpu::variant::{Registration, Variant};
use crate::shader_file;
use anyhow::Result;

pub(super) const SUBGROUP: ShaderFile = shader_file!("conv2d/subgroup.wgsl");
pub(super) const STORAGE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked (subgroups)",
    READS_STORAGE,
    SUBGROUP,
    true
);
pub(super) const TEXTURE_MODULE: WgslModule = register_blocked_module!(
    "conv2d register-blocked-texture (subgroups)",
    READS_TEXTURE,
    SUBGROUP,
    true
);

/// `register-blocked-subgroup`: reading storage, standing in for `register-blocked` (which
/// runs what it declines).
pub(super) const STORAGE: Registration<dyn Conv2dVariant, Conv2dShared> =
    Registration::new("register-blocked-subgroup", &[STORAGE_MODULE], storage)
        .falls_back_to(Variant::REGISTER_BLOCKED);
/// `register-blocked-texture-subgroup`: reading textures, standing in for
/// `register-blocked-texture`.
pub(super) const TEXTURE: Registration<dyn Conv2dVariant, Conv2dShared> = Registration::new(
    "register-blocked-texture-subgroup",
    &[TEXTURE_MODULE],
    texture,
)
.falls_back_to(Variant::named("register-blocked-texture"));

fn storage(ctx: &GpuContext, shared: &Conv2dShared) -> Option<Box<dyn Conv2dVariant>> {
    build(ctx, shared, false)
}

fn texture(ctx: &GpuContext, shared: &Conv2dShared) -> Option<Box<dyn Conv2dVariant>> {
    build(ctx, shared, true)
}

fn build(
    ctx: &GpuContext,
    shared: &Conv2dShared,
    textures: bool,
) -> Option<Box<dyn Conv2dVariant>> {
    if !ctx.features.contains(wgpu::Features::SUBGROUP) {
        return None;
    }
    let probed = shared.once("conv2d subgroup probe", || laid_out(ctx));
    if !*probed {
        return None;
    }
    let (module, per_lane) = match textures {
        false => (STORAGE_MODULE, Variant::REGISTER_BLOCKED),
        true => (TEXTURE_MODULE, Variant::named("register-blocked-texture")),
    };
    let loads = kernels(ctx, &module.compile_register_blocked(ctx), textures);
    let kernels = per_lane_kernels(ctx, shared, textures);
    let variant = RegisterBlocked::new(kernels, Some((loads, per_lane)), shared);
    Some(Box::new(variant))
}

/// Whether the probe (in the storage module) finds every lane of a blocked workgroup at
/// subgroup lane = local index modulo a multiple of 8.
fn laid_out(ctx: &GpuContext) -> bool {
    let module = STORAGE_MODULE.compile_register_blocked(ctx);
    let probe = Kernel::new(ctx, &module, "conv2d_subgroup_probe", &[Access::ReadWrite]);
    let laid_out = || -> Result<bool> {
        let flags = storage_buffer(ctx, "conv2d probe flags", 4 * BLOCK_WORKGROUP as u64)?;
        run(ctx, &[&probe.dispatch(ctx, &[(&flags).into()], [1, 1, 1])]);
        let flags: Vec<f32> = read_buffer(ctx, &flags, 0, BLOCK_WORKGROUP)?;
        Ok(flags.iter().all(|&f| f == 1.0))
    };
    matches!(laid_out(), Ok(true))
}

/// The shared kernels of `module`, which reads x and dy from textures where `textures`; their
/// bindings are those of the per-lane kernels they replace.
fn kernels(ctx: &GpuContext, module: &wgpu::ShaderModule, textures: bool) -> SharedLoads {
    let kernel = |name| Kernel::numbered(ctx, module, name, &kernel_bindings(name, textures));
    SharedLoads {
        backward_weights_k3: kernel("conv2d_backward_weights_k3_shared"),
        forward_packed: kernel("conv2d_forward_packed_shared"),
        forward_pool_packed: kernel("conv2d_forward_pool_packed_shared"),
    }
}
