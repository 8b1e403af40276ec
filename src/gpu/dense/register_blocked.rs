//! The register-blocked dense variants (`shaders/dense/register_blocked.wgsl`), for CPU adapters
//! such as lavapipe: no workgroup memory; each invocation keeps a block of outputs in registers,
//! loading four floats at a time where the operands' layout allows. `register-blocked` reads A
//! and B from storage, `register-blocked-texture` from rgba32float textures copied from the
//! buffers before each pass (see `gpu::texture` for why). Twin: `cpu/dense.rs`.

use super::scheme::{choose, MatmulParams, Scheme, SchemeKernels};
use super::{DenseMatmul, Product, COMMON, READS_STORAGE, READS_TEXTURE};
use crate::gpu::buffer::View;
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Dispatch, ShaderFile, WgslModule};
use crate::gpu::texture::{self, Staged, Texel};
use crate::gpu::variant::{Registration, Variant};
use crate::shader_file;

const REGISTER_BLOCKED: ShaderFile = shader_file!("dense/register_blocked.wgsl");
pub(super) const STORAGE_MODULE: WgslModule = WgslModule::new(
    "dense register-blocked",
    &[MatmulParams::WGSL, COMMON, READS_STORAGE, REGISTER_BLOCKED],
);
pub(super) const TEXTURE_MODULE: WgslModule = WgslModule::new(
    "dense register-blocked-texture",
    &[MatmulParams::WGSL, COMMON, READS_TEXTURE, REGISTER_BLOCKED],
);

/// Its schemes, most preferred first (the last fits every product).
pub(super) const SCHEMES: &[Scheme] = &[Scheme::Dot, Scheme::Axpy, Scheme::General];

struct RegisterBlocked {
    kernels: SchemeKernels,
    /// Whether they read A and B from textures.
    textures: bool,
}

/// `register-blocked`: reading A and B from storage.
pub(super) const STORAGE: Registration<dyn DenseMatmul, ()> =
    Registration::new("register-blocked", &[STORAGE_MODULE], storage);
/// `register-blocked-texture`: reading them from textures; where an operand is too large for
/// one, `register-blocked` runs the product.
pub(super) const TEXTURE: Registration<dyn DenseMatmul, ()> =
    Registration::new("register-blocked-texture", &[TEXTURE_MODULE], texture)
        .falls_back_to(Variant::REGISTER_BLOCKED);

fn storage(ctx: &GpuContext, _: &()) -> Option<Box<dyn DenseMatmul>> {
    let module = STORAGE_MODULE.compile_register_blocked(ctx);
    let kernels = SchemeKernels::new(ctx, &module, SCHEMES, false);
    Some(Box::new(RegisterBlocked {
        kernels,
        textures: false,
    }))
}

fn texture(ctx: &GpuContext, _: &()) -> Option<Box<dyn DenseMatmul>> {
    let module = TEXTURE_MODULE.compile_register_blocked(ctx);
    let kernels = SchemeKernels::new(ctx, &module, SCHEMES, true);
    Some(Box::new(RegisterBlocked {
        kernels,
        textures: true,
    }))
}

/// The texture holding the whole of `view` as rgba32float texels, and its copy; `None` where
/// that cannot be (a view that does not start on a texel, or one too large).
fn staged_vec4(ctx: &GpuContext, view: View) -> Option<Staged> {
    let texels = view.size.div_ceil(Texel::Vec4.bytes());
    let inside = view.offset + texels * Texel::Vec4.bytes() <= view.buffer.size();
    inside
        .then(|| texture::stage(ctx, view, texels as usize, Texel::Vec4))
        .flatten()
}

impl DenseMatmul for RegisterBlocked {
    /// Declines, reading textures, operands that no texture holds (the storage form runs them).
    fn matmul(&self, ctx: &GpuContext, product: &Product) -> Option<Dispatch> {
        let (p, bias) = (&product.params, product.bias.is_some());
        let scheme = choose(SCHEMES, p, bias);
        let grid = scheme.grid(p.rows as usize, p.cols as usize);
        let work = (self.kernels.get(scheme, bias), grid);
        if !self.textures {
            return Some(product.dispatch(ctx, work, None));
        }
        let a = staged_vec4(ctx, product.a)?;
        let b = staged_vec4(ctx, product.b)?;
        let mut dispatch = product.dispatch(ctx, work, Some((&a.view, &b.view)));
        dispatch.copies = vec![a.copy, b.copy];
        Some(dispatch)
    }
}
