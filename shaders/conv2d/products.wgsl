// Conv2d, register-blocked: each pass's uniform, and the binding numbers of every
// register-blocked kernel (tiled.wgsl, reduce.wgsl, pack.wgsl and the subgroup probe declare
// their own). Module: common.wgsl, this file, a reads file, then the family's files.
// Bindings (group 0). An entry point declares only what it reads or writes, so a number is
// shared by globals that no entry point uses together, and a kernel's numbers have gaps:
//   0 forward_params, input_grad_params or weight_grad_params: the pass's uniform (here)
//   1 x                  forward, weight gradients (read through x_at: the reads file)
//   2 dy                 input and weight gradients (dy_at); in the pooled weight gradient
//     dpooled            the gradient at the pooled output (dpooled_at)
//   3 w                  forward and input gradient whose weights do not fit the packed
//                        bindings (w_at)
//   4, 5 packed_lo, packed_hi: uniform   forward and input gradient: the weights packed by
//                        conv2d_pack_*_weights (register_blocked.wgsl)
//   6 b                  forward (register_blocked_forward.wgsl)
//   7 pool_y             the fused forward and pooling's output, written
//                        (register_blocked_forward.wgsl); pooled_y, the same read by the pooled
//                        weight gradient (pooled_y_at)
//   8 pool_argmax        its argmax, written (register_blocked_forward.wgsl); pooled_argmax, the
//                        same read by the pooled weight gradient (pooled_argmax_at)
//   9 y, dx or partial_sums: the output of the forward, input gradient or weight gradients
//                        (read_write; each declared in its pass's file)
// Partial sums: chunk c holds its partial dw at [c * partial_stride, + W) (W = weight count,
// OIHW) and its partial db at [c * partial_stride + W, + out_channels), which conv2d_reduce
// (reduce.wgsl, with its own params and bindings) adds into dw and db.

// The most row (or column) runs of the register-blocked input gradient's position classes,
// and the most classes (register_blocked_backward_input.wgsl).
const MAX_RUNS: u32 = 16u;
const MAX_CLASSES: u32 = 256u;

// The geometry and batch, which every pass's uniform starts with.
struct Conv2dShape {
    batch: u32,
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
}

// The forward, and the fused forward and pooling (register_blocked_forward.wgsl).
struct Conv2dForwardParams {
    shape: Conv2dShape,
    // 1: rectify y (the fused pooling always does).
    relu: u32,
    // Workgroups that do work; the rest return at once.
    len: u32,
    // Blocks of BLOCK_COLS columns per row (1 where pooling: a block is 8 windows).
    col_blocks: u32,
    // Workgroups per block of BLOCK_CHANNELS channels, and steps (packed weight slots) per
    // block: (ci, ky, kx).
    block_groups: u32,
    block_steps: u32,
    // The first packed slot of packed_hi.
    packed_split: u32,
    _pad0: u32,
    _pad1: u32,
}

// The input gradient (register_blocked_backward_input.wgsl).
struct Conv2dInputGradParams {
    shape: Conv2dShape,
    // Workgroups that do work; the rest return at once.
    len: u32,
    // Workgroups per block of BLOCK_CHANNELS input channels, and steps (packed weight slots)
    // per block: (co, ky, kx).
    block_groups: u32,
    block_steps: u32,
    // The first packed slot of packed_hi.
    packed_split: u32,
    // Row and column runs of the position classes.
    row_runs: u32,
    col_runs: u32,
    _pad0: u32,
    _pad1: u32,
    // Row run r is (first iy, rows, first ky, ky count), column run c (first ix, columns,
    // first kx, kx count); class i (of row_runs * col_runs) is (its first lane within the
    // channel block, r, c, unused).
    row_run: array<vec4<u32>, MAX_RUNS>,
    col_run: array<vec4<u32>, MAX_RUNS>,
    classes: array<vec4<u32>, MAX_CLASSES>,
}

// The weight gradients' partial sums (register_blocked_backward_weights.wgsl).
struct Conv2dWeightGradParams {
    shape: Conv2dShape,
    // Invocations that do work; the rest return at once.
    len: u32,
    // Blocks of BLOCK_COLS kx, and blocks of (ci, ky) pairs (conv2d_backward_weights_k3: of
    // K3_BLOCK_CHANNELS input channels, with one kx block).
    kx_blocks: u32,
    pair_blocks: u32,
    // Row segments (image, output row; pooled: image, pooled row) per chunk of partial sums,
    // and the elements per chunk.
    chunk_rows: u32,
    partial_stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> forward_params: Conv2dForwardParams;
@group(0) @binding(0) var<uniform> input_grad_params: Conv2dInputGradParams;
@group(0) @binding(0) var<uniform> weight_grad_params: Conv2dWeightGradParams;
