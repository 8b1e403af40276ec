//! The weight gradient's partial sums and their reduction (`shaders/conv2d/reduce.wgsl`),
//! shared by every variant: each variant's kernel sums fixed chunks of the batch into partial
//! sums, and `conv2d_reduce` adds the chunks in chunk order, so the bits never depend on the
//! machine's timing. Twin: `cpu/conv2d.rs`.

use bytemuck::Zeroable;

use super::{grid, u, weight_len, COMMON};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::{storage, uniform, View};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{grid_1d, Access, Dispatch, Kernel, WgslModule};
use crate::{shader_file, wgsl_struct};

/// The chunk sums and the weight packing (`pack.wgsl`, run by the register-blocked variants),
/// which the variants share (`shared.rs` compiles it once).
pub(super) const SUMS_MODULE: WgslModule = WgslModule::new(
    "conv2d sums",
    &[
        COMMON,
        Conv2dReduceParams::WGSL,
        Conv2dPackParams::WGSL,
        shader_file!("conv2d/reduce.wgsl"),
        shader_file!("conv2d/pack.wgsl"),
    ],
);

/// The kernels that add chunks of partial sums (the weight gradient's in every variant, the
/// tiled input gradient's): one invocation per element, or (where the caller allows it, the
/// tiled variant) one workgroup per element for more than `SPLIT_REDUCE_CHUNKS` chunks.
pub(super) struct SumsKernels {
    reduce: Kernel,
    reduce_split: Kernel,
}

/// How a weight gradient is cut: `count` chunks of `rows` row segments (image, output row),
/// whose partial sums lie `stride` elements apart (dw's, then db's).
#[derive(Clone, Copy)]
pub(super) struct Chunks {
    pub(super) rows: usize,
    pub(super) count: usize,
    pub(super) stride: usize,
}

/// Chunks of partial sums past which one workgroup, not one invocation, adds up each element:
/// a chain of that many dependent loads per invocation takes tens of microseconds on a GPU.
/// (Not on CPU adapters, where the workgroup's barriers cost more than the chain: the
/// register-blocked variant always adds one element per invocation.)
const SPLIT_REDUCE_CHUNKS: usize = 64;

wgsl_struct! {
    /// The chunk sums' uniform (`reduce_params` in `reduce.wgsl`).
    struct Conv2dReduceParams {
        /// Sums to form.
        len: u32,
        /// Chunks of partial sums, `stride` elements apart; the summed ones start at `first` in
        /// each.
        chunks: u32,
        stride: u32,
        first: u32,
        /// Sum i goes to `sums[i]`, or from `split` on to `sums[i + skip]` (so that one pass
        /// fills dw and a db that follows it after a gap).
        split: u32,
        skip: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

wgsl_struct! {
    /// The weight packing's uniform (`pack_params` in `pack.wgsl`), run by the register-blocked
    /// variants.
    pub(super) struct Conv2dPackParams {
        /// Elements to write: slots * `BLOCK_CHANNELS`.
        pub(super) len: u32,
        pub(super) in_channels: u32,
        pub(super) out_channels: u32,
        pub(super) kernel: u32,
        /// Slots (steps) per block of `BLOCK_CHANNELS` channels.
        pub(super) block_steps: u32,
        pub(super) _pad0: u32,
        pub(super) _pad1: u32,
        pub(super) _pad2: u32,
    }
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

impl SumsKernels {
    /// The reductions of the sums module (`conv2d sums`).
    pub(super) fn new(ctx: &GpuContext, module: &wgpu::ShaderModule) -> SumsKernels {
        use Access::*;
        // Reduce params, partial sums, sums.
        let kernel = |name| Kernel::new(ctx, module, name, &[Uniform, Read, ReadWrite]);
        SumsKernels {
            reduce: kernel("conv2d_reduce"),
            reduce_split: kernel("conv2d_reduce_split"),
        }
    }

    /// The dispatch that adds `chunks` chunks (`stride` elements apart) of the `len` partial
    /// sums from `first` into `out` (sums from `split` on `skip` elements further on), one
    /// workgroup per sum where `may_split` and the chunks are many.
    pub(super) fn reduce(
        &self,
        ctx: &GpuContext,
        (chunks, stride): (usize, usize),
        partials: &wgpu::Buffer,
        (first, len): (usize, usize),
        (out, split, skip): (View, usize, usize),
        may_split: bool,
    ) -> Dispatch {
        let params = Conv2dReduceParams {
            len: u(len),
            chunks: u(chunks),
            stride: u(stride),
            first: u(first),
            split: u(split),
            skip: u(skip),
            ..Zeroable::zeroed()
        };
        let params = uniform(ctx, "conv2d reduce params", &params);
        let buffers = [View::whole(&params), View::whole(partials), out];
        if chunks > SPLIT_REDUCE_CHUNKS && may_split {
            self.reduce_split.dispatch(ctx, &buffers, grid(len))
        } else {
            self.reduce.dispatch(ctx, &buffers, grid_1d(len))
        }
    }

    /// A weight gradient: `partial_sums` (given the chunks and the partial sums to write) sums
    /// chunks of `rows` row segments, `per_chunk` lanes (register-blocked) or tiles (tiled)
    /// per chunk and about `target` in all; then their reduction into dw and db (see `reduce`
    /// for `may_split`).
    pub(super) fn weight_grad(
        &self,
        ctx: &GpuContext,
        g: Conv2dGeometry,
        (rows, per_chunk, target): (usize, usize, usize),
        partial_sums: impl FnOnce(Chunks, View) -> Vec<Dispatch>,
        (dw, db): (View, View),
        may_split: bool,
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
        let chunking = Chunks {
            rows: chunk_rows,
            count: chunks,
            stride,
        };
        let reduce = |first: usize, len: usize, out: (View, usize, usize)| {
            self.reduce(
                ctx,
                (chunks, stride),
                &partials,
                (first, len),
                out,
                may_split,
            )
        };
        let (weights, channels) = (weight_len(g), g.out_channels);
        partial_sums(chunking, View::whole(&partials))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_mirrors_match_the_shader() {
        use crate::gpu::kernel::assert_struct_size;
        let reduce = std::mem::size_of::<Conv2dReduceParams>();
        assert_struct_size(SUMS_MODULE, "Conv2dReduceParams", reduce);
        let pack = std::mem::size_of::<Conv2dPackParams>();
        assert_struct_size(SUMS_MODULE, "Conv2dPackParams", pack);
    }

    #[test]
    fn weight_gradient_chunks_cover_every_row_once() {
        for (rows, per_chunk, target) in [(1, 1, 192), (352, 6, 256), (3328, 1, 256), (400, 2, 256)]
        {
            let (chunks, chunk_rows) = weight_grad_chunks(rows, per_chunk, target);
            assert!(chunks * chunk_rows >= rows && (chunks - 1) * chunk_rows < rows);
        }
    }
}
