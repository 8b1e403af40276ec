//! The tiled dense variant (`shaders/dense/tiled.wgsl`), for real GPUs: a `TILE x TILE`
//! workgroup per output tile staging tiles of A and B in workgroup memory, or, for few outputs
//! with a long k, a workgroup per output splitting k. Twin: `cpu/dense.rs`.

use super::scheme::{choose, MatmulParams, Scheme, SchemeKernels};
use super::{DenseMatmul, Product, COMMON, READS_STORAGE};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Dispatch, WgslModule};
use crate::gpu::variant::Registration;
use crate::shader_file;

pub(super) const MODULE: WgslModule = WgslModule::new(
    "dense tiled",
    &[
        MatmulParams::WGSL,
        COMMON,
        READS_STORAGE,
        shader_file!("dense/tiled.wgsl"),
    ],
);

/// Its schemes, most preferred first (the last fits every product).
pub(super) const SCHEMES: &[Scheme] = &[Scheme::Split, Scheme::Tiled];

struct Tiled(SchemeKernels);

/// `tiled`: every adapter runs it.
pub(super) const VARIANT: Registration<dyn DenseMatmul, ()> =
    Registration::new("tiled", &[MODULE], build);

fn build(ctx: &GpuContext, _: &()) -> Option<Box<dyn DenseMatmul>> {
    let module = MODULE.compile(ctx);
    Some(Box::new(Tiled(SchemeKernels::new(
        ctx, &module, SCHEMES, false,
    ))))
}

impl DenseMatmul for Tiled {
    fn matmul(&self, ctx: &GpuContext, product: &Product) -> Option<Dispatch> {
        let (p, bias) = (&product.params, product.bias.is_some());
        let scheme = choose(SCHEMES, p, bias);
        let grid = scheme.grid(p.rows as usize, p.cols as usize);
        Some(product.dispatch(ctx, (self.0.get(scheme, bias), grid), None))
    }
}
