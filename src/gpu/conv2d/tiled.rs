//! The tiled conv2d kernels (`shaders/conv2d/tiled.wgsl`), for real GPUs: each pass is an
//! implicit GEMM in which a workgroup computes a `TILE_M x TILE_N` tile of outputs, staging
//! slices of both operands in workgroup memory. The only kernels that take strides and padding.
//! Twin: `cpu/conv2d.rs`.

use std::sync::Arc;

use anyhow::Result;
use bytemuck::Zeroable;

use super::shared::Conv2dShared;
use super::sums::{Chunks, SumsKernels};
use super::{grid, u, Conv2dPass, Conv2dShape, Conv2dVariant, COMMON};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::buffer::{storage, uniform, View};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{Access, Dispatch, Kernel, ShaderFile, WgslModule};
use crate::gpu::variant::Registration;
use crate::{shader_file, wgsl_struct};

const TILED: ShaderFile = shader_file!("conv2d/tiled.wgsl");
pub(super) const MODULE: WgslModule = WgslModule::new(
    "conv2d tiled",
    &[COMMON, Conv2dShape::WGSL, Conv2dTiledParams::WGSL, TILED],
);

/// Rows (channels) and columns (positions, or weights) of the product tile of one workgroup
/// (`TILE_M`, `TILE_N`).
const TILE_M: usize = 32;
const TILE_N: usize = 128;
/// Terms of the sum staged per step (`TILE_K`).
const TILE_K: usize = 16;
/// The tiled weight and input gradients split their sums into chunks until about this many
/// workgroups run: 2 per multiprocessor of a 132-SM H200 (the 256 that these passes once used)
/// are too few to hide the loads' latency. The input gradient keeps at least
/// `MIN_TERMS_PER_CHUNK` terms in each chunk.
const TILED_WORKGROUPS: usize = 1024;
const MIN_TERMS_PER_CHUNK: usize = 64;

/// The tiled entry points, and the chunk sums its gradients end with.
struct Tiled {
    forward: Kernel,
    backward_input: Kernel,
    backward_weights: Kernel,
    sums: Arc<SumsKernels>,
}

/// `tiled`: every adapter runs it, and it runs what the others decline.
pub(super) const VARIANT: Registration<dyn Conv2dVariant, Conv2dShared> =
    Registration::new("tiled", &[MODULE], build);

fn build(ctx: &GpuContext, shared: &Conv2dShared) -> Option<Box<dyn Conv2dVariant>> {
    let module = MODULE.compile(ctx);
    use Access::*;
    let with_bias = &[Uniform, Read, ReadWrite, Read, Read];
    let plain = &[Uniform, Read, ReadWrite, Read];
    let kernel = |name, bindings| Kernel::new(ctx, &module, name, bindings);
    Some(Box::new(Tiled {
        forward: kernel("conv2d_forward_tiled", with_bias),
        backward_input: kernel("conv2d_backward_input_tiled", plain),
        backward_weights: kernel("conv2d_backward_weights_tiled", plain),
        sums: shared.sums.clone(),
    }))
}

impl Conv2dVariant for Tiled {
    /// Every pass at every geometry (the fused ones as the plain pass and the pooling apart).
    fn offers(&self, _: Conv2dPass, _: Conv2dGeometry) -> bool {
        true
    }

    fn forward(
        &self,
        ctx: &GpuContext,
        work: (Conv2dGeometry, usize),
        relu: bool,
        [x, w, b, y]: [View; 4],
    ) -> Option<Vec<Dispatch>> {
        Some(self.forward_pass(ctx, relu, work, (x, w, b, y)))
    }

    fn backward_input(
        &self,
        ctx: &GpuContext,
        work: (Conv2dGeometry, usize),
        [dy, w, dx]: [View; 3],
    ) -> Option<Vec<Dispatch>> {
        Some(self.input_grad(ctx, work, (dy, w, dx)))
    }

    fn backward_weights(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        [x, dy]: [View; 2],
        grads: [View; 2],
    ) -> Option<Vec<Dispatch>> {
        let tiles = g.out_channels.div_ceil(TILE_M) * weight_columns(g).div_ceil(TILE_N);
        let partial_sums =
            |chunks, partials: View| self.weight_grad(ctx, (g, n), chunks, (x, dy), partials);
        let work = (n * g.output().height, tiles, TILED_WORKGROUPS);
        let (dw, db) = (grads[0], grads[1]);
        Some(
            self.sums
                .weight_grad(ctx, g, work, partial_sums, (dw, db), true),
        )
    }
}

wgsl_struct! {
    /// The tiled kernels' uniform (`tiled_params` in `tiled.wgsl`).
    struct Conv2dTiledParams {
        shape: Conv2dShape,
        /// The stride, and the zeros on every side of the input.
        stride: u32,
        pad: u32,
        /// Forward: max(., 0) on store when 1.
        relu: u32,
        /// Workgroups that do work (the rest return at once), and the tiles along the rows
        /// (`TILE_M`) and the columns (`TILE_N`) of the product ([`Conv2dTiledParams::tiles`]).
        len: u32,
        m_tiles: u32,
        n_tiles: u32,
        /// Weight gradient: row segments (image, output row) per chunk of partial sums; input
        /// gradient: terms of the sum (k) per chunk, a multiple of `TILE_K` (one chunk: all).
        chunk_rows: u32,
        chunk_k: u32,
        /// Elements per chunk of partial sums.
        partial_stride: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

impl Conv2dTiledParams {
    fn new(g: Conv2dGeometry, n: usize) -> Conv2dTiledParams {
        Conv2dTiledParams {
            shape: Conv2dShape::new(g, n),
            stride: u(g.stride),
            pad: u(g.pad),
            ..Zeroable::zeroed()
        }
    }

    /// The tiles of a product with `rows x cols` outputs (per chunk): sets `m_tiles` and
    /// `n_tiles`, and `len` for `chunks` chunks. Returns the workgroups to launch.
    fn tiles(&mut self, rows: usize, cols: usize, chunks: usize) -> [u32; 3] {
        let (m_tiles, n_tiles) = (rows.div_ceil(TILE_M), cols.div_ceil(TILE_N));
        let groups = m_tiles * n_tiles * chunks;
        (self.m_tiles, self.n_tiles, self.len) = (u(m_tiles), u(n_tiles), u(groups));
        grid(groups)
    }
}

impl Tiled {
    /// The forward: bias, then ReLU where `relu`.
    fn forward_pass(
        &self,
        ctx: &GpuContext,
        relu: bool,
        (g, n): (Conv2dGeometry, usize),
        (x, w, b, y): (View, View, View, View),
    ) -> Vec<Dispatch> {
        let mut params = Conv2dTiledParams {
            relu: u32::from(relu),
            ..Conv2dTiledParams::new(g, n)
        };
        let out = g.output();
        let positions = n * out.height * out.width;
        let workgroups = params.tiles(g.out_channels, positions, 1);
        let params = uniform(ctx, "conv2d params", &params);
        vec![self
            .forward
            .dispatch(ctx, &[View::whole(&params), x, y, w, b], workgroups)]
    }

    /// The weight gradient's partial sums of `chunks` (see `SumsKernels::weight_grad`).
    fn weight_grad(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        chunks: Chunks,
        (x, dy): (View, View),
        partials: View,
    ) -> Vec<Dispatch> {
        let mut params = Conv2dTiledParams {
            chunk_rows: u(chunks.rows),
            partial_stride: u(chunks.stride),
            ..Conv2dTiledParams::new(g, n)
        };
        let workgroups = params.tiles(g.out_channels, weight_columns(g), chunks.count);
        let params = uniform(ctx, "conv2d params", &params);
        let buffers = [View::whole(&params), x, partials, dy];
        vec![self.backward_weights.dispatch(ctx, &buffers, workgroups)]
    }
}

impl Tiled {
    /// The tiled input gradient: one pass straight into dx, or, where its tiles are too few to
    /// fill a large GPU, chunks of the sum into partial sums, then their sum into dx.
    fn input_grad(
        &self,
        ctx: &GpuContext,
        (g, n): (Conv2dGeometry, usize),
        (dy, w, dx): (View, View, View),
    ) -> Vec<Dispatch> {
        let mut params = Conv2dTiledParams::new(g, n);
        let positions = n * g.input.height * g.input.width;
        let reduction = g.out_channels * g.kernel * g.kernel;
        let tiles = g.input.channels.div_ceil(TILE_M) * positions.div_ceil(TILE_N);
        let (chunks, chunk_k) = input_grad_chunks(tiles, reduction);
        let len = n * g.input.len();
        // Owned by the bind groups of the dispatches below, which keep it alive.
        let partials = (chunks > 1)
            .then(|| {
                storage(
                    ctx,
                    "conv2d input-gradient partial sums",
                    (4 * chunks * len) as u64,
                )
            })
            .and_then(Result::ok);
        let Some(partials) = partials else {
            params.chunk_k = u(reduction.max(1));
            let workgroups = params.tiles(g.input.channels, positions, 1);
            let params = uniform(ctx, "conv2d params", &params);
            return vec![self.backward_input.dispatch(
                ctx,
                &[View::whole(&params), dy, dx, w],
                workgroups,
            )];
        };
        (params.chunk_k, params.partial_stride) = (u(chunk_k), u(len));
        let workgroups = params.tiles(g.input.channels, positions, chunks);
        let chunk_params = uniform(ctx, "conv2d params", &params);
        vec![
            self.backward_input.dispatch(
                ctx,
                &[View::whole(&chunk_params), dy, View::whole(&partials), w],
                workgroups,
            ),
            self.sums
                .reduce(ctx, (chunks, len), &partials, (0, len), (dx, len, 0), true),
        ]
    }
}

/// How the tiled input gradient splits its sum of `reduction` terms over chunks, for a product
/// of `tiles` output tiles: `(chunks, terms per chunk)`, the terms a multiple of `TILE_K`. It
/// splits until about `TILED_WORKGROUPS` workgroups run, keeping at least
/// `MIN_TERMS_PER_CHUNK` terms in each chunk. Depends only on the geometry (deterministic).
fn input_grad_chunks(tiles: usize, reduction: usize) -> (usize, usize) {
    let most = (reduction / MIN_TERMS_PER_CHUNK).max(1);
    let wanted = TILED_WORKGROUPS.div_ceil(tiles.max(1)).clamp(1, most);
    let chunk_k = reduction.div_ceil(wanted).div_ceil(TILE_K).max(1) * TILE_K;
    (reduction.div_ceil(chunk_k).max(1), chunk_k)
}

/// Columns of the tiled weight gradient's product: one per weight of an output channel
/// (ci, ky, kx), then one for the bias.
fn weight_columns(g: Conv2dGeometry) -> usize {
    g.input.channels * g.kernel * g.kernel + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_mirror_matches_the_shader() {
        let host = std::mem::size_of::<Conv2dTiledParams>();
        crate::gpu::kernel::assert_struct_size(MODULE, "Conv2dTiledParams", host);
    }

    #[test]
    fn host_tile_sizes_match_the_shader() {
        for (name, host) in [("TILE_M", TILE_M), ("TILE_N", TILE_N), ("TILE_K", TILE_K)] {
            let shader = crate::gpu::kernel::shader_const(TILED.text, name);
            assert_eq!(shader, host, "{name}");
        }
    }

    #[test]
    fn input_gradient_chunks_cover_every_term_once_in_whole_steps() {
        // (tiles, terms): the seed model's second layer at batch 128, 32 and 7, a case too
        // short to split, and one with a single tile.
        for (tiles, reduction) in [(169, 576), (43, 576), (10, 576), (400, 20), (1, 4000)] {
            let (chunks, chunk_k) = input_grad_chunks(tiles, reduction);
            assert_eq!(chunk_k % TILE_K, 0);
            assert!(chunks * chunk_k >= reduction && (chunks - 1) * chunk_k < reduction);
            assert!(chunks == 1 || chunk_k >= MIN_TERMS_PER_CHUNK);
        }
        // Batch 128 splits the second layer's 576 terms six ways: 1014 workgroups.
        assert_eq!(input_grad_chunks(169, 576), (6, 96));
    }
}
