//! What every conv2d variant may share, built once per device before them
//! (`Registration::build` gets it): the chunk sums of the weight gradient, the module with the
//! weight-packing kernels, the adapter's uniform limit, and a memo so that variants built from
//! the same kernels (a texture form falling back to its storage form, a subgroup form to its
//! per-lane form) compile them once.

use std::any::Any;
use std::sync::{Arc, Mutex};

use super::sums::{SumsKernels, SUMS_MODULE};
use crate::gpu::context::GpuContext;

pub struct Conv2dShared {
    pub(super) sums: Arc<SumsKernels>,
    /// The compiled `conv2d sums` module (its weight-packing kernels).
    pub(super) sums_module: wgpu::ShaderModule,
    /// The adapter's largest uniform binding, in bytes.
    pub(super) max_uniform_binding: u64,
    memo: Mutex<Vec<(&'static str, Arc<dyn Any + Send + Sync>)>>,
}

impl Conv2dShared {
    pub(super) fn new(ctx: &GpuContext) -> Conv2dShared {
        let sums_module = SUMS_MODULE.compile(ctx);
        Conv2dShared {
            sums: Arc::new(SumsKernels::new(ctx, &sums_module)),
            sums_module,
            max_uniform_binding: ctx.limits.max_uniform_buffer_binding_size,
            memo: Mutex::new(Vec::new()),
        }
    }

    /// What `make` makes, made once per `key` (a key names one type).
    pub(super) fn once<T: Send + Sync + 'static>(
        &self,
        key: &'static str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let memo = || self.memo.lock().expect("the conv2d memo");
        let found = memo()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        let value = found.unwrap_or_else(|| {
            let value: Arc<dyn Any + Send + Sync> = Arc::new(make());
            memo().push((key, value.clone()));
            value
        });
        value
            .downcast::<T>()
            .unwrap_or_else(|_| panic!("conv2d: the memo key {key} names one type"))
    }
}
