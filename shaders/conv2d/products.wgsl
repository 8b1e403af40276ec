// Conv2d, register-blocked: the uniform and the bindings that the register-blocked kernels of
// every pass still share (tiled.wgsl, reduce.wgsl, pack.wgsl and the subgroup probe declare
// their own). Module: common.wgsl, this file, a reads file, then the family's files.
// Bindings (group 0; each entry point uses a subset):
//   0 params: uniform Conv2dParams
//   1 src: read              forward, backward weights: x     backward input: dy
//   2 dst: read_write        y, partial sums, or dx
//   3 factor: read           forward, backward input: w       backward weights: dy
//   4 bias: read             forward only (pooled_y in conv2d_backward_weights_pooled)
//   5, 6 packed_lo, packed_hi: uniform   register-blocked forward and backward input: weights
//                            packed by conv2d_pack_*_weights (see there)
//   7 pool_argmax / pooled_argmax: the fused max pooling's argmax (written / read)
// Partial sums: chunk c holds its partial dw at [c * partial_stride, + W) (W = weight count,
// OIHW) and its partial db at [c * partial_stride + W, + out_channels), which conv2d_reduce
// (reduce.wgsl, with its own params and bindings) adds into dw and db.

// The most row (or column) runs of the register-blocked input gradient's position classes,
// and the most classes (register_blocked_backward_input.wgsl).
const MAX_RUNS: u32 = 16u;
const MAX_CLASSES: u32 = 256u;

struct Conv2dParams {
    batch: u32,
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    relu: u32,
    // Workgroups that do work (forward / backward_input); invocations (backward_weights). The
    // rest return at once.
    len: u32,
    // Forward: blocks of BLOCK_COLS columns; backward_weights: of kx.
    col_blocks: u32,
    // Backward_weights: blocks of (in channel, ky) pairs.
    row_blocks: u32,
    // Backward weights: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    // Backward weights: the elements per chunk of partial sums.
    partial_stride: u32,
    // Forward / backward_input: workgroups per block of BLOCK_CHANNELS
    // channels, and steps (packed weight slots) per block: (ci, ky, kx) or (co, ky, kx).
    block_groups: u32,
    block_steps: u32,
    // Backward_input: row and column runs of its position classes.
    row_runs: u32,
    col_runs: u32,
    // Forward and backward_input: the first packed slot of packed_hi.
    packed_split: u32,
    // The arrays start on 16 bytes (the host's mirror spells the gap out).
    _pad: u32,
    // Backward_input: row run r is (first iy, rows, first ky, ky count),
    // column run c (first ix, columns, first kx, kx count); class i (of row_runs * col_runs)
    // is (its first lane within the channel block, r, c, unused).
    row_run: array<vec4<u32>, MAX_RUNS>,
    col_run: array<vec4<u32>, MAX_RUNS>,
    classes: array<vec4<u32>, MAX_CLASSES>,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

