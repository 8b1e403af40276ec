//! Dense layers on the GPU (`shaders/dense/`), twin of `cpu/dense.rs`. Every pass is a
//! matrix multiply with different operand strides, so transposes cost nothing; each output
//! element is summed in a fixed order (bit-reproducible).
//!
//! A variant is a way to run the multiply ([`DenseMatmul`]), registered in one line of
//! `kernels.rs` (`VARIANTS`), with a host file per family:
//! - `tiled.rs`: shared-memory tiles for real GPUs (or, for few outputs with a long k, a
//!   workgroup per output splitting k);
//! - `register_blocked.rs`: register blocks without shared memory for CPU adapters such as
//!   lavapipe, reading A and B from storage or from textures; each pass runs the first of its
//!   kernels whose vec4 access fits the operands' layout (`scheme.rs`).
//!
//! `kernels.rs` builds the variants and runs every pass (and the bias gradient, which every
//! variant shares) with the variant asked for; the cross-checks are in `checks.rs`. Imports run
//! one way: the family files import this file and `scheme.rs`, `kernels.rs` imports the
//! families, and nothing here imports `kernels.rs` or `checks.rs`.

pub mod checks;
pub mod kernels;
mod register_blocked;
mod scheme;
mod tiled;

use super::buffer::{uniform, View};
use super::context::GpuContext;
use super::kernel::{Dispatch, Kernel, Resource, ShaderFile};
use crate::shader_file;
use scheme::MatmulParams;

const COMMON: ShaderFile = shader_file!("dense/common.wgsl");
const READS_STORAGE: ShaderFile = shader_file!("dense/reads_storage.wgsl");
const READS_TEXTURE: ShaderFile = shader_file!("dense/reads_texture.wgsl");

/// What a dense variant implements: the matrix multiply that every pass is.
pub trait DenseMatmul: Send + Sync {
    /// The dispatch of `product`, or None where this variant declines it (its registration's
    /// fallback then runs it).
    fn matmul(&self, ctx: &GpuContext, product: &Product) -> Option<Dispatch>;
}

/// One multiply: `c = a b` (`+ bias[col]` where given), A, B and C laid out as `params` says.
pub struct Product<'a> {
    params: MatmulParams,
    a: View<'a>,
    b: View<'a>,
    c: View<'a>,
    bias: Option<View<'a>>,
}

impl<'a> Product<'a> {
    fn new(params: MatmulParams, (a, b, c): (View<'a>, View<'a>, View<'a>)) -> Self {
        Product {
            params,
            a,
            b,
            c,
            bias: None,
        }
    }

    /// The same plus `bias[col]`.
    fn with_bias(self, bias: View<'a>) -> Self {
        Product {
            bias: Some(bias),
            ..self
        }
    }

    /// The dispatch of a matmul `kernel` on `workgroups`: its bindings are the params, A, C, B
    /// and the bias where given (`common.wgsl`); `textures` stand in for A and B where the
    /// variant reads them from textures.
    fn dispatch(
        &self,
        ctx: &GpuContext,
        (kernel, workgroups): (&Kernel, [u32; 3]),
        textures: Option<(&wgpu::TextureView, &wgpu::TextureView)>,
    ) -> Dispatch {
        let params = uniform(ctx, "dense params", &self.params);
        let mut resources: Vec<Resource> = vec![
            View::whole(&params).into(),
            self.a.into(),
            self.c.into(),
            self.b.into(),
        ];
        resources.extend(self.bias.map(Resource::from));
        if let Some((a, b)) = textures {
            (resources[1], resources[3]) = (Resource::Texture(a), Resource::Texture(b));
        }
        kernel.dispatch_resources(ctx, &resources, workgroups)
    }
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_elements(view: &View, elements: usize, name: &str) {
    assert!(
        view.size >= 4 * elements as u64,
        "dense: {name} holds {} bytes, needs {elements} f32",
        view.size
    );
}
