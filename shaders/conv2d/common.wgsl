// Conv2d, the part of every module of the op (twin of src/cpu/conv2d.rs; the host is
// src/gpu/conv2d/). Stride 1 and valid padding, except in the tiled kernels. Activations NCHW,
// weights OIHW (out channel, in channel, ky, kx), bias one per out channel. The passes:
//   forward:          y[n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//                       * w[co][ci][ky][kx], then max(., 0) when params.relu == 1
//   backward input:   dx[n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//                       * w[co][ci][ky][kx] over the dy positions that exist (a gather)
//   backward weights: dw[co][ci][ky][kx] = sum_(n,oy,ox) dy[n][co][oy][ox] * x[n][ci][oy+ky][ox+kx]
//                     db[co] = sum_(n,oy,ox) dy[n][co][oy][ox]
// Every output element is summed by one invocation in a fixed order (no atomics, no races), so
// results are bit-reproducible on one adapter. The weight gradient is summed in two passes:
// partial sums over fixed chunks of the batch's row segments (image, oy), then conv2d_reduce
// (reduce.wgsl) adds the chunks in chunk order.
//
// A module is this file, one of reads_storage.wgsl / reads_texture.wgsl (how src, factor,
// pooled_y and pooled_argmax are read: src_at(i), ...), then the files of one variant family:
//   tiled.wgsl                          the tiled variant (real GPUs)
//   reduce.wgsl, pack.wgsl              the chunk sums and the weight packing (every variant)
//   register_blocked*.wgsl, then share_per_lane.wgsl or subgroup.wgsl
//                                       the register-blocked variants (CPU adapters); the last
//                                       file says how lanes get the values that all of them
//                                       need (subgroup.wgsl: the *-subgroup variants), and
//                                       reads_texture.wgsl makes the *-texture ones
// The host lists them (src/gpu/conv2d/mod.rs, `MODULES`); no text is rewritten.
//
// Bindings (group 0; each entry point uses a subset):
//   0 params: uniform Conv2dParams
//   1 src: read              forward, backward weights: x     backward input: dy
//   2 dst: read_write        y, partial sums, or dx           (conv2d_reduce: dw or db)
//   3 factor: read           forward, backward input: w       backward weights: dy
//   4 bias: read             forward only (pooled_y in conv2d_backward_weights_pooled)
//   5, 6 packed_lo, packed_hi: uniform   register-blocked forward and backward input: weights
//                            packed by conv2d_pack_*_weights (see there)
//   7 pool_argmax / pooled_argmax: the fused max pooling's argmax (written / read)
// Partial sums: chunk c holds its partial dw at [c * partial_stride, + W) (W = weight count,
// OIHW) and its partial db at [c * partial_stride + W, + out_channels). conv2d_reduce reads
// src = partial sums and writes dst = dw or db.

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
    // Workgroups that do work (register-blocked forward / backward_input, tiled); invocations
    // (register-blocked backward_weights); elements (conv2d_reduce, weight packing). The rest
    // return at once.
    len: u32,
    // Register-blocked forward: blocks of BLOCK_COLS columns; backward_weights: of kx.
    col_blocks: u32,
    // Register-blocked backward_weights: blocks of (in channel, ky) pairs.
    row_blocks: u32,
    // Backward weights: row segments (image, output row) per chunk of partial sums.
    chunk_rows: u32,
    // Backward weights / conv2d_reduce: chunks of partial sums.
    chunks: u32,
    // conv2d_reduce: where the summed elements start in a chunk, and the elements per chunk.
    partial_first: u32,
    partial_stride: u32,
    // Tiled: tiles along the rows (TILE_M) and the columns (TILE_N) of the product.
    m_tiles: u32,
    n_tiles: u32,
    // Register-blocked forward / backward_input: workgroups per block of BLOCK_CHANNELS
    // channels, and steps (packed weight slots) per block: (ci, ky, kx) or (co, ky, kx).
    block_groups: u32,
    block_steps: u32,
    // Tiled: the stride, and the zeros on every side of the input (the register-blocked
    // kernels take stride 1 and no padding only).
    stride: u32,
    pad: u32,
    // Tiled backward input: terms of the sum (k) per chunk of partial sums, a multiple of
    // TILE_K (one chunk: all of them).
    chunk_k: u32,
    // Register-blocked backward_input: row and column runs of its position classes.
    row_runs: u32,
    // conv2d_reduce: sum i goes to dst[i], or past out_split to dst[i + out_skip] (so that one
    // pass fills dw and a db that follows it after a gap).
    out_split: u32,
    out_skip: u32,
    col_runs: u32,
    // Register-blocked forward and backward_input: the first packed slot of packed_hi.
    packed_split: u32,
    // Register-blocked backward_input: row run r is (first iy, rows, first ky, ky count),
    // column run c (first ix, columns, first kx, kx count); class i (of row_runs * col_runs)
    // is (its first lane within the channel block, r, c, unused).
    row_run: array<vec4<u32>, MAX_RUNS>,
    col_run: array<vec4<u32>, MAX_RUNS>,
    classes: array<vec4<u32>, MAX_CLASSES>,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Channels of a register-blocked block, and of a packed weight slot (conv2d_pack_*_weights);
// the host mirrors it (src/gpu/conv2d/register_blocked.rs).
const BLOCK_CHANNELS: u32 = 32u;

fn splat4(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(v, v, v, v);
}

// acc[p] += a * b[p]: the outer product of 4 channels and 4 positions.
fn outer_acc(acc: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(a, vec4<f32>(b.x), acc[0]), fma(a, vec4<f32>(b.y), acc[1]), fma(a, vec4<f32>(b.z), acc[2]), fma(a, vec4<f32>(b.w), acc[3]));
}
