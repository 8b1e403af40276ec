// Conv2d, stride 1, valid padding (twin of src/cpu/conv2d.rs). Activations NCHW, weights OIHW
// (out channel, in channel, ky, kx), bias one per out channel. What the passes compute:
//   forward:          y[n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//                       * w[co][ci][ky][kx], then max(., 0) when params.relu == 1
//   backward input:   dx[n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//                       * w[co][ci][ky][kx] over the dy positions that exist (a gather)
//   backward weights: dw[co][ci][ky][kx] = sum_(n,oy,ox) dy[n][co][oy][ox] * x[n][ci][oy+ky][ox+kx]
//                     db[co] = sum_(n,oy,ox) dy[n][co][oy][ox]
// Every output element is summed by one invocation in a fixed order (no atomics, no races), so
// results are bit-reproducible on one adapter. The weight gradient is summed in two passes:
// partial sums over fixed chunks of the batch's row segments (image, oy), then conv2d_reduce
// adds the chunks in chunk order.
//
// Two variants of each pass (the host's conv2d::Conv2dVariant), with the same bindings:
//   register-blocked (CPU adapters such as lavapipe): conv2d_forward, conv2d_forward_pool
//     (with ReLU and 2x2 max pooling fused), conv2d_backward_input, conv2d_backward_weights,
//     conv2d_backward_weights_narrow, conv2d_backward_weights_k3 (3x3 kernels); the forward
//     and input-gradient ones also in a *_packed form. No workgroup memory; each invocation
//     sums a block of 32 channels x 8 rows x 4 columns (or 36 weights) in registers.
//   tiled (real GPUs): conv2d_forward_tiled, conv2d_backward_input_tiled,
//     conv2d_backward_weights_tiled. Implicit GEMM: a workgroup computes a tile of outputs,
//     staging slices of both operands in workgroup memory.
// The register-blocked kernels are also built with src and factor read from r32float textures
// (the host's texture_source turns each src[i] / factor[i] into src_at(i) / factor_at(i); see
// src/gpu/texture.rs for why), which the register-blocked-texture variant runs.
// Both write the weight gradient's partial sums in the same layout, added by conv2d_reduce.
// Each section below describes its scheme.
//
// Bindings (group 0; each entry point uses a subset):
//   0 params: uniform Conv2dParams
//   1 src: read              forward, backward weights: x     backward input: dy
//   2 dst: read_write        y, partial sums, or dx           (conv2d_reduce: dw or db)
//   3 factor: read           forward, backward input: w       backward weights: dy
//   4 bias: read             forward only
//   5, 6 packed_lo, packed_hi: uniform   register-blocked forward and backward input: weights
//                            packed by conv2d_pack_*_weights (see there)
// Partial sums: chunk c holds its partial dw at [c * partial_stride, + W) (W = weight count,
// OIHW) and its partial db at [c * partial_stride + W, + out_channels). conv2d_reduce reads
// src = partial sums and writes dst = dw or db.

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
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> factor: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

fn splat4(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(v, v, v, v);
}

// acc[p] += a * b[p]: the outer product of 4 channels and 4 positions.
fn outer_acc(acc: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(a, vec4<f32>(b.x), acc[0]), fma(a, vec4<f32>(b.y), acc[1]), fma(a, vec4<f32>(b.z), acc[2]), fma(a, vec4<f32>(b.w), acc[3]));
}

// =============================================================================================
// Register-blocked variant (CPU adapters: lavapipe/llvmpipe). There a workgroup runs as 8-wide
// SIMD lanes on one thread, and every storage-buffer load (shared memory too) is a loop over
// the lanes that costs about as much as 50 FMAs, whether or not the lanes share the address
// (Mesa 22.3); an FMA is a multiply, an add and (in a loop) a blend with the lanes' mask. So:
// no shared memory, and each invocation keeps a large block of sums in registers (spilled to
// the stack, which must stay within the L1 cache: blocks of 2048 sums ran slower than 1024) and
// uses every value it loads many times:
//   - A `Tile` is 32 channels x 4 positions of sums (eight mat4x4). A step adds the outer
//     product of 32 channel values (`Channels`) and 4 position values (a vec4): 128 FMAs for
//     36 loads.
//   - A block is 8 Tiles: 32 channels x 8 rows x 4 columns (input gradient: 32 positions; weight
//     gradient: 32 output channels x 8 (ci, ky) pairs x 4 kx, or for 3x3 kernels 9 Tiles of 36
//     weights). The 32 channel values of a step are shared by the 8 Tiles.
//   - Loops are few and flat: one loop over the taps (or positions) rather than nested loops
//     with windows that slide along a row. The nested form loads a third as much but runs
//     slower: at every loop boundary lavapipe's code pays for the block's 1024 sums.
// lavapipe unrolls only small innermost loops with constant trip counts, and a private array
// indexed by a loop counter lives in memory, so the 8 Tiles are named variables and the code
// over them is written out; the kernel size k stays a runtime value (the windows slide).
//
// Row segments: forward and backward_weights number the (image, row) pairs as one list, so a
// block of 8 rows can span two images and no rows are wasted on small images. backward_input
// instead numbers the positions of each class of positions that meet dy with the same taps,
// and a Tile holds 4 consecutive ones (see there).
// =============================================================================================

// The block of one invocation; the host mirrors these (src/gpu/conv2d.rs).
const BLOCK_CHANNELS: u32 = 32u;
const BLOCK_ROWS: u32 = 8u;
const BLOCK_COLS: u32 = 4u;
// Invocations per workgroup of the blocked kernels: few, because each one is heavy and lavapipe
// hands whole workgroups to its threads.
const BLOCK_WORKGROUP: u32 = 16u;

// The invocation index of a blocked kernel; the host folds its workgroups into 2-D.
fn block_lane(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return block_group(wg, nwg) * BLOCK_WORKGROUP + lid;
}

fn block_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

// Where a forward or backward-input invocation works: the first channel, row segment and
// column of its block. Each block of BLOCK_CHANNELS channels has params.block_groups
// workgroups, whose lanes cover (row block, column block), column block fastest (lanes past
// the last row block store nothing). So the channel block follows from the workgroup alone,
// and so do the packed weight slots it reads (the same in every lane).
struct BlockPlace {
    channel_block: u32,
    seg0: u32,
    col0: u32,
    // The lane's part in sharing the weights (forward_weights); 0 where not shared.
    part: u32,
}

fn block_place(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> BlockPlace {
    let group = block_group(wg, nwg);
    let lane = (group % params.block_groups) * BLOCK_WORKGROUP + lid;
    return BlockPlace(group / params.block_groups, (lane / params.col_blocks) * BLOCK_ROWS, (lane % params.col_blocks) * BLOCK_COLS, 0u);
}

// 32 channel values: lo[i] holds channels 4i..4i+3, hi[i] channels 16+4i..16+4i+3.
struct Channels {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
}

// 32 channels x 4 positions of sums: q<i>[p] holds channels 4i..4i+3 at position p.
struct Tile {
    q0: mat4x4<f32>,
    q1: mat4x4<f32>,
    q2: mat4x4<f32>,
    q3: mat4x4<f32>,
    q4: mat4x4<f32>,
    q5: mat4x4<f32>,
    q6: mat4x4<f32>,
    q7: mat4x4<f32>,
}

// A Tile holding `c` at every position.
fn tile_splat(c: Channels) -> Tile {
    return Tile(splat4(c.lo[0]), splat4(c.lo[1]), splat4(c.lo[2]), splat4(c.lo[3]), splat4(c.hi[0]), splat4(c.hi[1]), splat4(c.hi[2]), splat4(c.hi[3]));
}

// t += a (x) b: 32 channels times 4 positions.
fn tile_fma(t: Tile, a: Channels, b: vec4<f32>) -> Tile {
    return Tile(outer_acc(t.q0, a.lo[0], b), outer_acc(t.q1, a.lo[1], b), outer_acc(t.q2, a.lo[2], b), outer_acc(t.q3, a.lo[3], b), outer_acc(t.q4, a.hi[0], b), outer_acc(t.q5, a.hi[1], b), outer_acc(t.q6, a.hi[2], b), outer_acc(t.q7, a.hi[3], b));
}

// factor[base + c * stride] for the 32 channels c = first.., each clamped to `last` (clamped
// channels only feed sums that are never stored).
fn factor32(base: u32, stride: u32, first: u32, last: u32) -> Channels {
    return Channels(factor16(base, stride, first, last), factor16(base, stride, first + 16u, last));
}

fn factor16(base: u32, stride: u32, first: u32, last: u32) -> mat4x4<f32> {
    return mat4x4<f32>(factor4(base, stride, first, last), factor4(base, stride, first + 4u, last), factor4(base, stride, first + 8u, last), factor4(base, stride, first + 12u, last));
}

fn factor4(base: u32, stride: u32, first: u32, last: u32) -> vec4<f32> {
    return vec4<f32>(factor[base + min(first, last) * stride], factor[base + min(first + 1u, last) * stride], factor[base + min(first + 2u, last) * stride], factor[base + min(first + 3u, last) * stride]);
}

// Weights packed for the register-blocked forward and backward input (conv2d_pack_*_weights):
// slot block * params.block_steps + step holds, as Channels, the 32 weights that step of
// channel block `block` multiplies (forward: step (ci, ky, kx), channels co; backward input:
// step (co, ky, kx), channels ci). Uniform, because lavapipe (Mesa 22.3) loads storage lane by
// lane in a loop with a bounds check and branches (about 19 instructions a lane), but gathers
// from a uniform binding without branches (about 27 instructions for 8 lanes; only a constant
// index would make it one load). A uniform binding holds at most
// 64 KiB, so the slots span two bindings: packed_lo from slot 0, packed_hi from slot
// params.packed_split (a multiple of k * k; the host binds one range twice when it suffices).
const PACKED_SLOTS: u32 = 512u;
@group(0) @binding(5) var<uniform> packed_lo: array<Channels, PACKED_SLOTS>;
@group(0) @binding(6) var<uniform> packed_hi: array<Channels, PACKED_SLOTS>;

// The 32 weights of one step from the first binding: packed slot `slot` when `packed`, else
// gathered from `factor` (factor32). The entry points pass a constant.
fn step_weights(packed: bool, slot: u32, base: u32, stride: u32, first: u32, last: u32) -> Channels {
    if !packed {
        return factor32(base, stride, first, last);
    }
    return packed_lo[slot];
}

// The 32 weights of packed slot `slot` from the second binding, which starts at slot
// params.packed_split. The kernels run the steps of each binding in a loop of their own:
// lavapipe runs both sides of an `if` whose condition may differ between lanes, and a gather
// from either binding costs as much as a quarter of a step's sums.
fn step_weights_hi(slot: u32) -> Channels {
    return packed_hi[slot - params.packed_split];
}

// Steps (kx, ky, channel) to the next tap of a flat loop over channels, then ky in
// [first.y, end.y), then kx in [first.x, end.x), without divisions (lavapipe divides lane by
// lane).
fn next_tap(t: vec3<u32>, first: vec2<u32>, end: vec2<u32>) -> vec3<u32> {
    let next_row = t.x + 1u == end.x;
    let next_channel = next_row && t.y + 1u == end.y;
    return vec3<u32>(select(t.x + 1u, first.x, next_row), select(t.y + u32(next_row), first.y, next_channel), t.z + u32(next_channel));
}

// The window of `src` row `row` one slide before columns col..col+3: (unused, col, col + 1,
// col + 2). Columns are clamped to `last_col`: clamped ones only feed sums never stored.
fn src_window(row: u32, col: u32, last_col: u32) -> vec4<f32> {
    return vec4<f32>(0.0, src[row + min(col, last_col)], src[row + min(col + 1u, last_col)], src[row + min(col + 2u, last_col)]);
}

// src row `row` at columns col..col+3, each clamped to `last_col` (clamped ones only feed sums
// never stored).
fn src_quad(row: u32, col: u32, last_col: u32) -> vec4<f32> {
    return vec4<f32>(src[row + min(col, last_col)], src[row + min(col + 1u, last_col)], src[row + min(col + 2u, last_col)], src[row + min(col + 3u, last_col)]);
}

// src at the 4 positions of `p` from the row starting at `row` and column `col` (columns
// clamped to `last_col`).
fn src_pattern(row: u32, col: u32, p: Pattern, last_col: u32) -> vec4<f32> {
    return vec4<f32>(src[row + p.row.x + min(col + p.col.x, last_col)], src[row + p.row.y + min(col + p.col.y, last_col)], src[row + p.row.z + min(col + p.col.z, last_col)], src[row + p.row.w + min(col + p.col.w, last_col)]);
}

// Slides a window one column right: (v.x, v.y, v.z, v.w) -> (v.y, v.z, v.w, next).
fn slide(v: vec4<f32>, next: f32) -> vec4<f32> {
    return vec4<f32>(v.yzw, next);
}

// Stores r[i] at dst[at + i * stride] for the first `n` of its 4 channels.
fn store_channels(r: vec4<f32>, at: u32, stride: u32, n: u32, relu: bool) {
    let v = select(r, max(r, vec4<f32>(0.0)), relu);
    if n > 0u {
        dst[at] = v.x;
    }
    if n > 1u {
        dst[at + stride] = v.y;
    }
    if n > 2u {
        dst[at + 2u * stride] = v.z;
    }
    if n > 3u {
        dst[at + 3u * stride] = v.w;
    }
}

// Stores m[p] (4 channels at position p) at dst[at + channel * stride + p] for the first `n`
// channels and `cols` positions.
fn store_quad(m: mat4x4<f32>, at: u32, stride: u32, n: u32, cols: u32, relu: bool) {
    store_channels(m[0], at, stride, n, relu);
    if cols > 1u {
        store_channels(m[1], at + 1u, stride, n, relu);
    }
    if cols > 2u {
        store_channels(m[2], at + 2u, stride, n, relu);
    }
    if cols > 3u {
        store_channels(m[3], at + 3u, stride, n, relu);
    }
}

// Stores a Tile at dst[at + channel * stride + position] for the first `channels` (at most 32
// are stored) and `cols` positions, rectified when `relu`.
fn store_tile(t: Tile, at: u32, stride: u32, channels: u32, cols: u32, relu: bool) {
    store_quad(t.q0, at, stride, min(channels, 4u), cols, relu);
    if channels > 4u {
        store_quad(t.q1, at + 4u * stride, stride, min(channels - 4u, 4u), cols, relu);
    }
    if channels > 8u {
        store_quad(t.q2, at + 8u * stride, stride, min(channels - 8u, 4u), cols, relu);
    }
    if channels > 12u {
        store_quad(t.q3, at + 12u * stride, stride, min(channels - 12u, 4u), cols, relu);
    }
    if channels > 16u {
        store_quad(t.q4, at + 16u * stride, stride, min(channels - 16u, 4u), cols, relu);
    }
    if channels > 20u {
        store_quad(t.q5, at + 20u * stride, stride, min(channels - 20u, 4u), cols, relu);
    }
    if channels > 24u {
        store_quad(t.q6, at + 24u * stride, stride, min(channels - 24u, 4u), cols, relu);
    }
    if channels > 28u {
        store_quad(t.q7, at + 28u * stride, stride, min(channels - 28u, 4u), cols, relu);
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d_forward: y[n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//   * w[co][ci][ky][kx], then max(., 0) when params.relu == 1.
// Bindings: src = x, dst = y, factor = w, (4) bias.
// conv2d_forward_packed: the same, reading the weights packed (conv2d_pack_forward_weights).
// Block: 32 output channels x 8 row segments (image, oy) x 4 columns ox0..ox0+3 = 8 Tiles.
// Workgroups: (channel block, block_groups of lanes over (row block, column block)), see
//   block_place; params.len of them.
// Loop: one flat loop over the taps (ci, ky, kx); each step loads the 4 columns of each
//   segment's x row oy+ky from ox0+kx and the 32 weights w[co0..][ci][ky][kx], shared by all
//   32 positions: 32 + 32 loads for 32 * 32 FMAs (packed: 8 uniform vec4 loads instead of the
//   32 weights). Nested loops over ci, ky and kx with windows that slide along kx load a third
//   as much, but took 28 ms where this takes 23 (conv2 at batch 128 on lavapipe): there every
//   loop boundary costs as much as many loads.
//
// conv2d_forward_pool, conv2d_forward_pool_packed: the same sums, then ReLU and 2x2 max
//   pooling (stride 2, odd sizes floor) before anything is stored, as maxpool2d_forward over
//   the rectified y: dst = the pooled y, (7) pool_argmax = the winner's index within its image
//   of y (c*h*w space; the first maximum in row-major window order wins ties). y itself is
//   never written: storing it would cost 4x the pooled stores, and nothing reads it (the
//   pooling's backward needs only the pooled y and the argmax).
//   Block: 32 output channels x 8 windows, consecutive in (image, py, px) order; a Tile's 4
//   positions are one window's (top left, top right, bottom left, bottom right). So no sums
//   are spent on columns past the last window or on the conv rows and columns that no window
//   reads (the last of an odd size). Workgroups as conv2d_forward's, with blocks of 8 windows
//   for blocks of rows and one column block.
// ---------------------------------------------------------------------------------------------

@group(0) @binding(7) var<storage, read_write> pool_argmax: array<u32>;

fn bias16(first: u32, last: u32) -> mat4x4<f32> {
    return mat4x4<f32>(bias4(first, last), bias4(first + 4u, last), bias4(first + 8u, last), bias4(first + 12u, last));
}

fn bias4(first: u32, last: u32) -> vec4<f32> {
    return vec4<f32>(bias[min(first, last)], bias[min(first + 1u, last)], bias[min(first + 2u, last)], bias[min(first + 3u, last)]);
}

// Where the 8 Tiles of a forward block read x: Tile i's 4 positions are x[n][ci + ...][row
// + ky][col + kx] at image row start `r<i>` (channel 0) and column `c<i>`, offset by the
// block's `Pattern`.
struct Origins {
    r0: u32,
    r1: u32,
    r2: u32,
    r3: u32,
    r4: u32,
    r5: u32,
    r6: u32,
    r7: u32,
    c0: u32,
    c1: u32,
    c2: u32,
    c3: u32,
    c4: u32,
    c5: u32,
    c6: u32,
    c7: u32,
}

// The 4 positions of a Tile relative to its origin: elements to add to the row start, and
// columns to add to the column (clamped to the last column: clamped positions only feed sums
// never stored). Rows: 4 columns of one row; windows: 2 columns of 2 rows.
struct Pattern {
    row: vec4<u32>,
    col: vec4<u32>,
}

// The 8 Tiles of sums of a forward block, one per row.
struct Block {
    t0: Tile,
    t1: Tile,
    t2: Tile,
    t3: Tile,
    t4: Tile,
    t5: Tile,
    t6: Tile,
    t7: Tile,
}

// Where x row oy of image `img` starts (channel 0).
fn x_row(img: u32, oy: u32) -> u32 {
    return (img * params.in_channels * params.in_height + oy) * params.in_width;
}

// Where output row segment `seg` (clamped to the last) reads x.
fn fwd_origin(seg: u32) -> u32 {
    let s = min(seg, params.batch * params.out_height - 1u);
    return x_row(s / params.out_height, s % params.out_height);
}

fn fwd_origins(seg0: u32, col: u32) -> Origins {
    return Origins(fwd_origin(seg0), fwd_origin(seg0 + 1u), fwd_origin(seg0 + 2u), fwd_origin(seg0 + 3u), fwd_origin(seg0 + 4u), fwd_origin(seg0 + 5u), fwd_origin(seg0 + 6u), fwd_origin(seg0 + 7u), col, col, col, col, col, col, col, col);
}

fn fwd_store(t: Tile, seg: u32, co: u32, ox: u32) {
    if seg >= params.batch * params.out_height || co >= params.out_channels {
        return;
    }
    let img = seg / params.out_height;
    let oy = seg % params.out_height;
    let plane = params.out_height * params.out_width;
    let at = (img * params.out_channels + co) * plane + oy * params.out_width + ox;
    store_tile(t, at, plane, params.out_channels - co, min(params.out_width - ox, BLOCK_COLS), params.relu == 1u);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_block(block_place(wg, nwg, lid), false);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_block(block_place(wg, nwg, lid), true);
    }
}

fn forward_block(place: BlockPlace, packed: bool) {
    let b = forward_sums(place, fwd_origins(place.seg0, place.col0), Pattern(vec4<u32>(0u), vec4<u32>(0u, 1u, 2u, 3u)), packed);
    let co0 = place.channel_block * BLOCK_CHANNELS;
    let seg0 = place.seg0;
    let ox0 = place.col0;
    fwd_store(b.t0, seg0, co0, ox0);
    fwd_store(b.t1, seg0 + 1u, co0, ox0);
    fwd_store(b.t2, seg0 + 2u, co0, ox0);
    fwd_store(b.t3, seg0 + 3u, co0, ox0);
    fwd_store(b.t4, seg0 + 4u, co0, ox0);
    fwd_store(b.t5, seg0 + 5u, co0, ox0);
    fwd_store(b.t6, seg0 + 6u, co0, ox0);
    fwd_store(b.t7, seg0 + 7u, co0, ox0);
}

// The pooled output's height and width.
fn pooled_size() -> vec2<u32> {
    return vec2<u32>(params.out_height / 2u, params.out_width / 2u);
}

// Window `w` (clamped to the last) in (image, py, px) order: where its top left reads x
// (image row start, column), as a vec2.
fn window_origin(w: u32) -> vec2<u32> {
    let size = pooled_size();
    let v = min(w, params.batch * size.x * size.y - 1u);
    let within = v % (size.x * size.y);
    return vec2<u32>(x_row(v / (size.x * size.y), 2u * (within / size.y)), 2u * (within % size.y));
}

fn window_origins(w0: u32) -> Origins {
    let o0 = window_origin(w0);
    let o1 = window_origin(w0 + 1u);
    let o2 = window_origin(w0 + 2u);
    let o3 = window_origin(w0 + 3u);
    let o4 = window_origin(w0 + 4u);
    let o5 = window_origin(w0 + 5u);
    let o6 = window_origin(w0 + 6u);
    let o7 = window_origin(w0 + 7u);
    return Origins(o0.x, o1.x, o2.x, o3.x, o4.x, o5.x, o6.x, o7.x, o0.y, o1.y, o2.y, o3.y, o4.y, o5.y, o6.y, o7.y);
}

// Pools 4 channels over one window, given rectified sums top left, top right, bottom left,
// bottom right, and stores the maxima and their indices for the first `n` channels. `at`:
// the first channel's pooled output; `corner`: its window's top left within the image of y.
fn pool_store4(tl: vec4<f32>, tr: vec4<f32>, bl: vec4<f32>, br: vec4<f32>, at: u32, corner: u32, n: u32) {
    let width = params.out_width;
    var best = tl;
    var offset = vec4<u32>(0u);
    let right = tr > best;
    best = select(best, tr, right);
    offset = select(offset, vec4<u32>(1u), right);
    let below = bl > best;
    best = select(best, bl, below);
    offset = select(offset, vec4<u32>(width), below);
    let diagonal = br > best;
    best = select(best, br, diagonal);
    offset = select(offset, vec4<u32>(width + 1u), diagonal);
    let pooled = params.out_height / 2u * (width / 2u);
    let plane = params.out_height * width;
    if n > 0u {
        dst[at] = best.x;
        pool_argmax[at] = corner + offset.x;
    }
    if n > 1u {
        dst[at + pooled] = best.y;
        pool_argmax[at + pooled] = corner + plane + offset.y;
    }
    if n > 2u {
        dst[at + 2u * pooled] = best.z;
        pool_argmax[at + 2u * pooled] = corner + 2u * plane + offset.z;
    }
    if n > 3u {
        dst[at + 3u * pooled] = best.w;
        pool_argmax[at + 3u * pooled] = corner + 3u * plane + offset.w;
    }
}

// Pools 4 channels' window (4 positions, rectified here) and stores it (see pool_store4).
fn pool_quad(m: mat4x4<f32>, at: u32, corner: u32, n: u32) {
    let zero = vec4<f32>(0.0);
    pool_store4(max(m[0], zero), max(m[1], zero), max(m[2], zero), max(m[3], zero), at, corner, n);
}

// Pools Tile `t`, the sums of window `w` for 32 channels from `co`, and stores it.
fn pool_store_window(t: Tile, w: u32, co: u32) {
    let size = pooled_size();
    let pooled = size.x * size.y;
    if w >= params.batch * pooled || co >= params.out_channels {
        return;
    }
    let img = w / pooled;
    let py = (w % pooled) / size.y;
    let px = w % size.y;
    let at = (img * params.out_channels + co) * pooled + py * size.y + px;
    let corner = (co * params.out_height + 2u * py) * params.out_width + 2u * px;
    let pooled_4 = 4u * pooled;
    let plane_4 = 4u * params.out_height * params.out_width;
    let n = params.out_channels - co;
    pool_quad(t.q0, at, corner, n);
    pool_quad(t.q1, at + pooled_4, corner + plane_4, max(n, 4u) - 4u);
    pool_quad(t.q2, at + 2u * pooled_4, corner + 2u * plane_4, max(n, 8u) - 8u);
    pool_quad(t.q3, at + 3u * pooled_4, corner + 3u * plane_4, max(n, 12u) - 12u);
    pool_quad(t.q4, at + 4u * pooled_4, corner + 4u * plane_4, max(n, 16u) - 16u);
    pool_quad(t.q5, at + 5u * pooled_4, corner + 5u * plane_4, max(n, 20u) - 20u);
    pool_quad(t.q6, at + 6u * pooled_4, corner + 6u * plane_4, max(n, 24u) - 24u);
    pool_quad(t.q7, at + 7u * pooled_4, corner + 7u * plane_4, max(n, 28u) - 28u);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_pool_block(block_place(wg, nwg, lid), false);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_pool_block(block_place(wg, nwg, lid), true);
    }
}

// block_place's 8 row segments are 8 windows here.
fn forward_pool_block(place: BlockPlace, packed: bool) {
    let w0 = place.seg0;
    let width = params.in_width;
    let window = Pattern(vec4<u32>(0u, 0u, width, width), vec4<u32>(0u, 1u, 0u, 1u));
    let b = forward_sums(place, window_origins(w0), window, packed);
    let co0 = place.channel_block * BLOCK_CHANNELS;
    pool_store_window(b.t0, w0, co0);
    pool_store_window(b.t1, w0 + 1u, co0);
    pool_store_window(b.t2, w0 + 2u, co0);
    pool_store_window(b.t3, w0 + 3u, co0);
    pool_store_window(b.t4, w0 + 4u, co0);
    pool_store_window(b.t5, w0 + 5u, co0);
    pool_store_window(b.t6, w0 + 6u, co0);
    pool_store_window(b.t7, w0 + 7u, co0);
}

// The sums (bias included) of a forward block whose Tiles read x at `o`, in `pattern`.
fn forward_sums(place: BlockPlace, o: Origins, pattern: Pattern, packed: bool) -> Block {
    let k = params.kernel;
    let co0 = place.channel_block * BLOCK_CHANNELS;
    let slot0 = place.channel_block * params.block_steps;
    let last_co = params.out_channels - 1u;
    let w_stride = params.in_channels * k * k;

    // Every sum starts at its channel's bias.
    let bias = tile_splat(Channels(bias16(co0, last_co), bias16(co0 + 16u, last_co)));
    var b = Block(bias, bias, bias, bias, bias, bias, bias, bias);
    // One flat loop over the taps (ci, ky, kx) per binding of packed weights.
    let taps = params.in_channels * k * k;
    let lo_taps = select(taps, min(taps, max(params.packed_split, slot0) - slot0), packed);
    var t = vec3<u32>(0u);
    let first = vec2<u32>(0u);
    let end = vec2<u32>(k);
    for (var tap = 0u; tap < lo_taps; tap++) {
        let w = forward_weights(packed, slot0 + tap, tap, w_stride, co0, last_co, place.part);
        b = forward_tap(b, o, pattern, t, w);
        t = next_tap(t, first, end);
    }
    for (var tap = lo_taps; tap < taps; tap++) {
        b = forward_tap(b, o, pattern, t, forward_weights_hi(slot0 + tap, place.part));
        t = next_tap(t, first, end);
    }
    return b;
}

// The weights of a forward step, as step_weights and step_weights_hi. `part` is unused here:
// in the module that the host builds for adapters with subgroups (src/gpu/conv2d.rs,
// `SHARED_BODIES`), every lane of a workgroup needs the same weights, so each of 8 lanes
// gathers 4 of the 32 (those of `part`) and the 8 share them (see k3_dy).
fn forward_weights(packed: bool, slot: u32, base: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    // @forward_weights
    return step_weights(packed, slot, base, stride, first, last);
}

fn forward_weights_hi(slot: u32, part: u32) -> Channels {
    // @forward_weights_hi
    return step_weights_hi(slot);
}

// Adds tap t = (kx, ky, ci) of a forward block whose Tiles read x at `o`, in `pattern`.
fn forward_tap(b: Block, o: Origins, pattern: Pattern, t: vec3<u32>, w: Channels) -> Block {
    let last_col = params.in_width - 1u;
    let row = (t.z * params.in_height + t.y) * params.in_width;
    let kx = t.x;
    let x0 = src_pattern(o.r0 + row, o.c0 + kx, pattern, last_col);
    let x1 = src_pattern(o.r1 + row, o.c1 + kx, pattern, last_col);
    let x2 = src_pattern(o.r2 + row, o.c2 + kx, pattern, last_col);
    let x3 = src_pattern(o.r3 + row, o.c3 + kx, pattern, last_col);
    let x4 = src_pattern(o.r4 + row, o.c4 + kx, pattern, last_col);
    let x5 = src_pattern(o.r5 + row, o.c5 + kx, pattern, last_col);
    let x6 = src_pattern(o.r6 + row, o.c6 + kx, pattern, last_col);
    let x7 = src_pattern(o.r7 + row, o.c7 + kx, pattern, last_col);
    return Block(tile_fma(b.t0, w, x0), tile_fma(b.t1, w, x1), tile_fma(b.t2, w, x2), tile_fma(b.t3, w, x3), tile_fma(b.t4, w, x4), tile_fma(b.t5, w, x5), tile_fma(b.t6, w, x6), tile_fma(b.t7, w, x7));
}

// ---------------------------------------------------------------------------------------------
// conv2d_backward_input: dx[n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//   * w[co][ci][ky][kx] over the in-range dy positions (a gather, never a scatter).
// Bindings: src = dy, dst = dx, factor = w.
// conv2d_backward_input_packed: the same, reading the weights packed
//   (conv2d_pack_backward_input_weights).
// Position classes: the dx positions whose taps meet dy in the same (ky, kx) ranges form a
//   class: a run of rows with one ky range times a run of columns with one kx range (for 13 x
//   13 from 11 x 11: rows 0, 1, 2..10, 11, 12 times the same columns). Each invocation works
//   on 32 consecutive positions of one class, in (image, row, column) order, so its loop runs
//   over exactly the taps that meet dy: no sums on zeros, no bounds checks on dy loads, and a
//   class of few positions (a corner: one per image) wastes at most one invocation's part.
//   The host orders the classes by their number of taps, so that the lanes of a SIMD vector
//   mostly run loops of one length.
// Block: 32 input channels x 32 positions as 8 Tiles of 4 consecutive positions.
// Lanes: (channel block, lane within it: class by class, params.classes[i].x the first of
//   class i); params.block_groups workgroups per channel block, params.len in all.
// Loop: one flat loop over the class's taps (co, ky, kx); each step loads the 32 positions' dy
//   values and the 32 weights w[co][ci0..][ky][kx]: 32 + 32 loads for 32 * 32 FMAs.
// ---------------------------------------------------------------------------------------------

// The most row (or column) runs of the input gradient's position classes, and the most
// classes.
const MAX_RUNS: u32 = 16u;
const MAX_CLASSES: u32 = 256u;

// Where an input-gradient invocation works.
struct InputClass {
    channel_block: u32,
    // The class's row and column runs.
    rows: vec4<u32>,
    cols: vec4<u32>,
    // The invocation's first position within the class.
    first: u32,
}

fn input_class(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> InputClass {
    let group = block_group(wg, nwg);
    let lane = (group % params.block_groups) * BLOCK_WORKGROUP + lid;
    var found = 0u;
    for (var c = 1u; c < params.row_runs * params.col_runs; c++) {
        if lane >= params.classes[c].x {
            found = c;
        }
    }
    let class_entry = params.classes[found];
    let first = (lane - class_entry.x) * BLOCK_POSITIONS;
    return InputClass(group / params.block_groups, params.row_run[class_entry.y], params.col_run[class_entry.z], first);
}

// Positions per invocation: 8 Tiles of 4.
const BLOCK_POSITIONS: u32 = 32u;

// Where position `p` of a place (clamped to its last) reads dy (image and position, channel
// 0) and writes dx (image and position, channel 0), as a vec2.
fn class_position(place: InputClass, p: u32) -> vec2<u32> {
    let area = place.rows.y * place.cols.y;
    let q = min(p, params.batch * area - 1u);
    let image = q / area;
    let iy = place.rows.x + (q % area) / place.cols.y;
    let ix = place.cols.x + q % place.cols.y;
    let dy_at = (image * params.out_channels * params.out_height + iy) * params.out_width + ix;
    let dx_at = (image * params.in_channels * params.in_height + iy) * params.in_width + ix;
    return vec2<u32>(dy_at, dx_at);
}

// The dy and dx offsets of the 4 positions of a Tile from position `p`.
struct TilePositions {
    dy: vec4<u32>,
    dx: vec4<u32>,
}

fn tile_positions(place: InputClass, p: u32) -> TilePositions {
    let a = class_position(place, p);
    let b = class_position(place, p + 1u);
    let c = class_position(place, p + 2u);
    let d = class_position(place, p + 3u);
    return TilePositions(vec4<u32>(a.x, b.x, c.x, d.x), vec4<u32>(a.y, b.y, c.y, d.y));
}

// dy at the 4 positions `at` minus `back` elements (the tap's offset back from the position;
// the place guarantees that it stays in the image, so the wrapping u32 sum is exact).
fn dy_gather(at: vec4<u32>, back: u32) -> vec4<f32> {
    return vec4<f32>(src[at.x - back], src[at.y - back], src[at.z - back], src[at.w - back]);
}

// Stores the 32 channels from ci of a Tile's positions (dx offsets `at`, channel 0) for the
// first `positions` of them.
fn bwd_input_store(t: Tile, at: vec4<u32>, ci: u32, positions: u32) {
    if ci >= params.in_channels {
        return;
    }
    if positions > 0u {
        bwd_input_store_position(t, 0u, at.x, ci);
    }
    if positions > 1u {
        bwd_input_store_position(t, 1u, at.y, ci);
    }
    if positions > 2u {
        bwd_input_store_position(t, 2u, at.z, ci);
    }
    if positions > 3u {
        bwd_input_store_position(t, 3u, at.w, ci);
    }
}

fn bwd_input_store_position(t: Tile, p: u32, at: u32, ci: u32) {
    let plane = params.in_height * params.in_width;
    let n = params.in_channels - ci;
    let base = at + ci * plane;
    let plane_4 = 4u * plane;
    store_channels(t.q0[p], base, plane, n, false);
    store_channels(t.q1[p], base + plane_4, plane, max(n, 4u) - 4u, false);
    store_channels(t.q2[p], base + 2u * plane_4, plane, max(n, 8u) - 8u, false);
    store_channels(t.q3[p], base + 3u * plane_4, plane, max(n, 12u) - 12u, false);
    store_channels(t.q4[p], base + 4u * plane_4, plane, max(n, 16u) - 16u, false);
    store_channels(t.q5[p], base + 5u * plane_4, plane, max(n, 20u) - 20u, false);
    store_channels(t.q6[p], base + 6u * plane_4, plane, max(n, 24u) - 24u, false);
    store_channels(t.q7[p], base + 7u * plane_4, plane, max(n, 28u) - 28u, false);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        backward_input_block(input_class(wg, nwg, lid), false);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_input_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        backward_input_block(input_class(wg, nwg, lid), true);
    }
}

fn backward_input_block(place: InputClass, packed: bool) {
    let k = params.kernel;
    let kk = k * k;
    let ci0 = place.channel_block * BLOCK_CHANNELS;
    let slot0 = place.channel_block * params.block_steps;
    let last_ci = params.in_channels - 1u;
    let p0 = place.first;
    let s = InputPositions(tile_positions(place, p0), tile_positions(place, p0 + 4u), tile_positions(place, p0 + 8u), tile_positions(place, p0 + 12u), tile_positions(place, p0 + 16u), tile_positions(place, p0 + 20u), tile_positions(place, p0 + 24u), tile_positions(place, p0 + 28u));

    let zero = tile_splat(Channels(mat4x4<f32>(), mat4x4<f32>()));
    var b = Block(zero, zero, zero, zero, zero, zero, zero, zero);
    // One flat loop over the taps (co, ky, kx) that meet dy (see forward_sums) per binding of
    // packed weights; a block's slots start at a multiple of k * k, and so does packed_hi, so
    // the split falls between two output channels.
    let first = vec2<u32>(place.cols.z, place.rows.z);
    let end = first + vec2<u32>(place.cols.w, place.rows.w);
    let per_co = place.rows.w * place.cols.w;
    // Lanes past the last class run no taps.
    let positions = params.batch * place.rows.y * place.cols.y;
    let taps = select(0u, params.out_channels * per_co, p0 < positions);
    let lo_channels = min(params.out_channels, (max(params.packed_split, slot0) - slot0) / kk);
    let lo_taps = select(taps, min(taps, lo_channels * per_co), packed);
    var t = vec3<u32>(first, 0u);
    for (var tap = 0u; tap < lo_taps; tap++) {
        let step = (t.z * k + t.y) * k + t.x;
        let w = step_weights(packed, slot0 + step, t.z * params.in_channels * kk + t.y * k + t.x, kk, ci0, last_ci);
        b = backward_input_tap(b, s, t, w);
        t = next_tap(t, first, end);
    }
    for (var tap = lo_taps; tap < taps; tap++) {
        let w = step_weights_hi(slot0 + (t.z * k + t.y) * k + t.x);
        b = backward_input_tap(b, s, t, w);
        t = next_tap(t, first, end);
    }
    // Positions of the class left from each Tile's first.
    let left = max(positions, p0) - p0;
    bwd_input_store(b.t0, s.s0.dx, ci0, left);
    bwd_input_store(b.t1, s.s1.dx, ci0, max(left, 4u) - 4u);
    bwd_input_store(b.t2, s.s2.dx, ci0, max(left, 8u) - 8u);
    bwd_input_store(b.t3, s.s3.dx, ci0, max(left, 12u) - 12u);
    bwd_input_store(b.t4, s.s4.dx, ci0, max(left, 16u) - 16u);
    bwd_input_store(b.t5, s.s5.dx, ci0, max(left, 20u) - 20u);
    bwd_input_store(b.t6, s.s6.dx, ci0, max(left, 24u) - 24u);
    bwd_input_store(b.t7, s.s7.dx, ci0, max(left, 28u) - 28u);
}

// The positions of an input-gradient block's 8 Tiles.
struct InputPositions {
    s0: TilePositions,
    s1: TilePositions,
    s2: TilePositions,
    s3: TilePositions,
    s4: TilePositions,
    s5: TilePositions,
    s6: TilePositions,
    s7: TilePositions,
}

// Adds tap t = (kx, ky, co) of an input-gradient block: dy[n][co][iy - ky][ix - kx] at each
// position, as an offset back from dy[n][0][iy][ix].
fn backward_input_tap(b: Block, s: InputPositions, t: vec3<u32>, w: Channels) -> Block {
    let back = t.y * params.out_width + t.x - t.z * params.out_height * params.out_width;
    return Block(tile_fma(b.t0, w, dy_gather(s.s0.dy, back)), tile_fma(b.t1, w, dy_gather(s.s1.dy, back)), tile_fma(b.t2, w, dy_gather(s.s2.dy, back)), tile_fma(b.t3, w, dy_gather(s.s3.dy, back)), tile_fma(b.t4, w, dy_gather(s.s4.dy, back)), tile_fma(b.t5, w, dy_gather(s.s5.dy, back)), tile_fma(b.t6, w, dy_gather(s.s6.dy, back)), tile_fma(b.t7, w, dy_gather(s.s7.dy, back)));
}

// ---------------------------------------------------------------------------------------------
// conv2d_backward_weights: partial sums of the weight and bias gradients over chunks of the
//   output row segments (image, oy), params.chunk_rows segments per chunk (W = weight count):
//     partial[chunk][co][ci][ky][kx] = sum_(segments of the chunk, ox) dy[n][co][oy][ox]
//       * x[n][ci][oy+ky][ox+kx]
//     partial[chunk][W + co] = sum_(segments of the chunk, ox) dy[n][co][oy][ox]
//   conv2d_reduce then adds the chunks in chunk order.
// conv2d_backward_weights_narrow: the same with blocks of 4 pairs, for in_channels * k <= 4
//   (the first layer), where 8-pair blocks would be mostly empty.
// Bindings: src = x, dst = partials, factor = dy.
// Block: 32 output channels x 8 (or 4) (ci, ky) pairs x 4 kx (kx0..kx0+3; a Tile's positions
//   are kx) = 8 (or 4) Tiles, plus the 32 bias sums (stored by pair block 0, kx block 0).
// Lanes: (chunk, channel block, pair block, kx block), kx block fastest; params.len of them.
// Loop: over the chunk's segments and ox, each pair's window over x row oy+ky slides right one
//   column per ox (one load); the 32 dy values dy[n][co0..][oy][ox] are shared by all pairs.
//   Loads per position: 8 + 32 for 32 * 8 * 4 FMAs.
// ---------------------------------------------------------------------------------------------

// Where (ci, ky) pair `pair` (clamped to the last) reads x: image 0, channel ci, row ky.
fn pair_origin(pair: u32) -> u32 {
    let k = params.kernel;
    let p = min(pair, params.in_channels * k - 1u);
    return ((p / k) * params.in_height + p % k) * params.in_width;
}

// Stores the sums of pair `pair` (32 channels from co x 4 kx from kx) in its chunk's part.
fn bwd_weights_store(t: Tile, chunk_at: u32, pair: u32, co: u32, kx: u32) {
    let k = params.kernel;
    if pair >= params.in_channels * k {
        return;
    }
    let ci = pair / k;
    let ky = pair % k;
    let at = chunk_at + ((co * params.in_channels + ci) * k + ky) * k + kx;
    store_tile(t, at, params.in_channels * k * k, params.out_channels - co, min(k - kx, BLOCK_COLS), false);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weights_block(block_lane(wg, nwg, lid), true);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_narrow(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weights_block(block_lane(wg, nwg, lid), false);
}

// One block of the weight gradient: 8 pairs when `wide`, else 4. Both entry points pass a
// constant, so after inlining the code for pairs 4..7 is either always there or gone (lavapipe
// does not skip a branch that no lane takes: a runtime flag would cost the full block).
fn backward_weights_block(lane: u32, wide: bool) {
    if lane >= params.len {
        return;
    }
    let k = params.kernel;
    let kx_blocks = params.col_blocks;
    let pair_blocks = params.row_blocks;
    let co_blocks = (params.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let kx0 = (lane % kx_blocks) * BLOCK_COLS;
    let pair_block = (lane / kx_blocks) % pair_blocks;
    let co0 = ((lane / (kx_blocks * pair_blocks)) % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / (kx_blocks * pair_blocks * co_blocks);
    let pair0 = pair_block * select(BLOCK_ROWS / 2u, BLOCK_ROWS, wide);
    let last_co = params.out_channels - 1u;
    let last_col = params.in_width - 1u;
    let ow = params.out_width;
    let dy_plane = params.out_height * ow;

    let p0 = pair_origin(pair0);
    let p1 = pair_origin(pair0 + 1u);
    let p2 = pair_origin(pair0 + 2u);
    let p3 = pair_origin(pair0 + 3u);
    let p4 = pair_origin(pair0 + 4u);
    let p5 = pair_origin(pair0 + 5u);
    let p6 = pair_origin(pair0 + 6u);
    let p7 = pair_origin(pair0 + 7u);

    var bias_sum = Channels(mat4x4<f32>(), mat4x4<f32>());
    let zero = tile_splat(bias_sum);
    var t0 = zero;
    var t1 = zero;
    var t2 = zero;
    var t3 = zero;
    var t4 = zero;
    var t5 = zero;
    var t6 = zero;
    var t7 = zero;

    let first = chunk * params.chunk_rows;
    let end = min(first + params.chunk_rows, params.batch * params.out_height);
    for (var seg = first; seg < end; seg++) {
        let img = seg / params.out_height;
        let oy = seg % params.out_height;
        let row = (img * params.in_channels * params.in_height + oy) * params.in_width;
        let dy_at_ox0 = (img * params.out_channels * params.out_height + oy) * ow;
        var x0 = src_window(row + p0, kx0, last_col);
        var x1 = src_window(row + p1, kx0, last_col);
        var x2 = src_window(row + p2, kx0, last_col);
        var x3 = src_window(row + p3, kx0, last_col);
        var x4 = vec4<f32>();
        var x5 = vec4<f32>();
        var x6 = vec4<f32>();
        var x7 = vec4<f32>();
        if wide {
            x4 = src_window(row + p4, kx0, last_col);
            x5 = src_window(row + p5, kx0, last_col);
            x6 = src_window(row + p6, kx0, last_col);
            x7 = src_window(row + p7, kx0, last_col);
        }
        for (var ox = 0u; ox < ow; ox++) {
            // Now each window holds x columns ox + kx0 .. ox + kx0 + 3.
            let next = min(ox + kx0 + 3u, last_col);
            x0 = slide(x0, src[row + p0 + next]);
            x1 = slide(x1, src[row + p1 + next]);
            x2 = slide(x2, src[row + p2 + next]);
            x3 = slide(x3, src[row + p3 + next]);
            let d = factor32(dy_at_ox0 + ox, dy_plane, co0, last_co);
            bias_sum = Channels(bias_sum.lo + d.lo, bias_sum.hi + d.hi);
            t0 = tile_fma(t0, d, x0);
            t1 = tile_fma(t1, d, x1);
            t2 = tile_fma(t2, d, x2);
            t3 = tile_fma(t3, d, x3);
            if wide {
                x4 = slide(x4, src[row + p4 + next]);
                x5 = slide(x5, src[row + p5 + next]);
                x6 = slide(x6, src[row + p6 + next]);
                x7 = slide(x7, src[row + p7 + next]);
                t4 = tile_fma(t4, d, x4);
                t5 = tile_fma(t5, d, x5);
                t6 = tile_fma(t6, d, x6);
                t7 = tile_fma(t7, d, x7);
            }
        }
    }
    let chunk_at = chunk * params.partial_stride;
    bwd_weights_store(t0, chunk_at, pair0, co0, kx0);
    bwd_weights_store(t1, chunk_at, pair0 + 1u, co0, kx0);
    bwd_weights_store(t2, chunk_at, pair0 + 2u, co0, kx0);
    bwd_weights_store(t3, chunk_at, pair0 + 3u, co0, kx0);
    if wide {
        bwd_weights_store(t4, chunk_at, pair0 + 4u, co0, kx0);
        bwd_weights_store(t5, chunk_at, pair0 + 5u, co0, kx0);
        bwd_weights_store(t6, chunk_at, pair0 + 6u, co0, kx0);
        bwd_weights_store(t7, chunk_at, pair0 + 7u, co0, kx0);
    }
    if pair_block == 0u && kx0 == 0u {
        // Position 0 of a Tile of the bias sums, stored at channel stride 1.
        let at = chunk_at + params.out_channels * params.in_channels * k * k + co0;
        store_tile(tile_splat(bias_sum), at, 1u, params.out_channels - co0, 1u, false);
    }
}

// =============================================================================================
// Tiled variant (real GPUs): each pass is an implicit GEMM, C (M x N) = A (M x K) B (K x N),
// with A and B read straight from the tensors (nothing is lowered to columns in memory):
// The tiled kernels alone handle strides and padding: x's position under tap (ky, kx) of
// output (oy, ox) is (oy * stride + ky - pad, ox * stride + kx - pad), and a tap on the
// padding reads 0.
//   conv2d_forward_tiled           M: out channels co   N: output positions (n, oy, ox)
//       K: (ci, ky, kx)            A = w[co][ci][ky][kx], B = x[n][ci] at that position;
//       C starts at the bias and is rectified on store when params.relu == 1; stored as y.
//   conv2d_backward_input_tiled    M: in channels ci    N: input positions (n, iy, ix)
//       K: (co, ky, kx)            A = w[co][ci][ky][kx], B = dy[n][co] at the output position
//       whose tap (ky, kx) reads (iy, ix) (0 where there is none); stored as dx, or, where
//       the host splits K into chunks of params.chunk_k terms (a small N fills too few
//       workgroups to keep a large GPU busy), as chunk c's partial dx at c * partial_stride,
//       which conv2d_reduce adds in chunk order.
//   conv2d_backward_weights_tiled  M: out channels co   N: weights (ci, ky, kx), then one more
//       K: the output positions (n, oy, ox) of one chunk of row segments
//       A = dy[n][co][oy][ox], B = x[n][ci] under tap (ky, kx) of (oy, ox), and 1 in the extra
//       last column, whose sums are the bias gradient; stored as the chunk's partial sums.
// Positions (n, y, x) are numbered image by image, row by row, so N spans the whole batch.
//
// A workgroup of TILE_THREADS_N x TILE_THREADS_M invocations computes one TILE_M x TILE_N tile
// of C. For each step of TILE_K along K it stages the TILE_M x TILE_K slice of A and the
// TILE_K x TILE_N slice of B in workgroup memory (zeros past the edges of A, B and K), waits,
// and every invocation adds the products for its 4 x 4 outputs: rows m0 + ty + TILE_THREADS_M
// * i and columns n0 + tx + TILE_THREADS_N * j (i, j < 4), so that neighbouring invocations
// read neighbouring words of b_tile and store neighbouring outputs. Staging: an invocation
// loads A at one k for TILE_M * TILE_K / TILE_THREADS rows (neighbours take neighbouring k,
// which lie next to each other in w and dy), and B at one column for TILE_K * TILE_N /
// TILE_THREADS k (neighbours take neighbouring positions, next to each other in x and dy).
// Each output is summed over k in increasing order by one invocation: deterministic.
// Workgroups: (chunk, m tile, n tile), n tile fastest, folded into 2-D past 65535
// (tile_index); params.len of them do work (chunks: backward weights and input only).
// Workgroup memory: TILE_K x (TILE_M + 1) + TILE_K x TILE_N floats = 10,304 bytes.
// =============================================================================================

// The tile of one workgroup and its invocations; the host mirrors TILE_M and TILE_N.
const TILE_M: u32 = 32u;
const TILE_N: u32 = 128u;
const TILE_K: u32 = 16u;
const TILE_THREADS_M: u32 = 8u;
const TILE_THREADS_N: u32 = 32u;
const TILE_THREADS: u32 = 256u;
// Row stride of a_tile: one word of padding puts the TILE_K values that neighbouring
// invocations stage for one row into different memory banks.
const A_TILE_STRIDE: u32 = TILE_M + 1u;

// a_tile[k * A_TILE_STRIDE + m] = A(m0 + m, k0 + k); b_tile[k * TILE_N + n] = B(k0 + k, n0 + n).
var<workgroup> a_tile: array<f32, TILE_K * A_TILE_STRIDE>;
var<workgroup> b_tile: array<f32, TILE_K * TILE_N>;

// Which pass's product (A, B, M, N) a tiled kernel computes. Entry points pass constants, so
// each one's code is specialised when inlined.
const GEMM_FORWARD: u32 = 0u;
const GEMM_BACKWARD_INPUT: u32 = 1u;
const GEMM_BACKWARD_WEIGHTS: u32 = 2u;

// M of the product.
fn gemm_rows(gemm: u32) -> u32 {
    if gemm == GEMM_BACKWARD_INPUT {
        return params.in_channels;
    }
    return params.out_channels;
}

// The workgroup's place: its index in the launch and the first row, column and chunk of its
// tile.
struct TileOrigin {
    index: u32,
    m0: u32,
    n0: u32,
    chunk: u32,
}

fn tile_origin(wg: vec3<u32>, nwg: vec3<u32>) -> TileOrigin {
    let t = wg.x + wg.y * nwg.x;
    let m_tile = (t / params.n_tiles) % params.m_tiles;
    return TileOrigin(t, m_tile * TILE_M, (t % params.n_tiles) * TILE_N, t / (params.n_tiles * params.m_tiles));
}

// What loading column n of B takes for every k, worked out once per invocation.
struct Column {
    // forward: where x holds image n's channel 0; backward input: where dy holds image n's
    // channel 0; backward weights: where x holds image 0's channel ci.
    at: u32,
    // forward: the output position (oy, ox); backward input: the input position (iy, ix);
    // backward weights: the kernel tap (ky, kx).
    y: u32,
    x: u32,
    // The column holds tensor values (inside N; backward weights: and not the bias column).
    live: bool,
    // backward weights: the bias column, all ones.
    ones: bool,
}

fn b_column(gemm: u32, n: u32) -> Column {
    let ks = params.kernel;
    let in_plane = params.in_height * params.in_width;
    let out_plane = params.out_height * params.out_width;
    if gemm == GEMM_FORWARD {
        let img = n / out_plane;
        let p = n % out_plane;
        let at = img * params.in_channels * in_plane;
        return Column(at, p / params.out_width, p % params.out_width, n < params.batch * out_plane, false);
    }
    if gemm == GEMM_BACKWARD_INPUT {
        let img = n / in_plane;
        let iy = (n % in_plane) / params.in_width;
        let ix = n % params.in_width;
        let at = img * params.out_channels * out_plane;
        return Column(at, iy, ix, n < params.batch * in_plane, false);
    }
    let weights = params.in_channels * ks * ks;
    let ci = n / (ks * ks);
    let ky = (n % (ks * ks)) / ks;
    return Column(ci * in_plane, ky, n % ks, n < weights, n == weights);
}

// The input offset (row * in_width + column) under kernel tap (ky, kx) of output position
// (oy, ox), or -1 where that tap falls on the padding.
fn input_offset(oy: u32, ox: u32, ky: u32, kx: u32) -> i32 {
    let iy = i32(oy * params.stride + ky) - i32(params.pad);
    let ix = i32(ox * params.stride + kx) - i32(params.pad);
    if iy < 0 || ix < 0 || iy >= i32(params.in_height) || ix >= i32(params.in_width) {
        return -1;
    }
    return iy * i32(params.in_width) + ix;
}

// The output offset (oy * out_width + ox) whose tap (ky, kx) reads input position (iy, ix), or
// -1 where there is none (outside the output, or between strides).
fn output_offset(iy: u32, ix: u32, ky: u32, kx: u32) -> i32 {
    let ty = i32(iy + params.pad) - i32(ky);
    let tx = i32(ix + params.pad) - i32(kx);
    let s = i32(params.stride);
    if ty < 0 || tx < 0 || ty % s != 0 || tx % s != 0 {
        return -1;
    }
    let oy = ty / s;
    let ox = tx / s;
    if oy >= i32(params.out_height) || ox >= i32(params.out_width) {
        return -1;
    }
    return oy * i32(params.out_width) + ox;
}

// A(m, k), or 0 past the edges of A and outside [0, k_end).
fn a_at(gemm: u32, m: u32, k: u32, k_end: u32) -> f32 {
    if m >= gemm_rows(gemm) || k >= k_end {
        return 0.0;
    }
    let kk = params.kernel * params.kernel;
    if gemm == GEMM_FORWARD {
        // w[co = m][(ci, ky, kx) = k]
        return factor[m * params.in_channels * kk + k];
    }
    if gemm == GEMM_BACKWARD_INPUT {
        // w[co][ci = m][ky][kx] with (co, ky, kx) = k
        return factor[((k / kk) * params.in_channels + m) * kk + k % kk];
    }
    // dy[n][co = m][oy][ox] with (n, oy, ox) = k
    let out_plane = params.out_height * params.out_width;
    return factor[((k / out_plane) * params.out_channels + m) * out_plane + k % out_plane];
}

// B(k, column), or 0 past the edges of B, outside [0, k_end) and on the padding.
fn b_at(gemm: u32, column: Column, k: u32, k_end: u32) -> f32 {
    if k >= k_end {
        return 0.0;
    }
    if column.ones {
        return 1.0;
    }
    if !column.live {
        return 0.0;
    }
    let ks = params.kernel;
    let in_plane = params.in_height * params.in_width;
    if gemm == GEMM_BACKWARD_WEIGHTS {
        // x[n][ci][oy * stride + ky - pad][ox * stride + kx - pad] with (n, oy, ox) = k
        let out_plane = params.out_height * params.out_width;
        let p = k % out_plane;
        let offset = input_offset(p / params.out_width, p % params.out_width, column.y, column.x);
        if offset < 0 {
            return 0.0;
        }
        return src[column.at + (k / out_plane) * params.in_channels * in_plane + u32(offset)];
    }
    let c = k / (ks * ks);
    let ky = (k % (ks * ks)) / ks;
    let kx = k % ks;
    if gemm == GEMM_FORWARD {
        // x[n][ci = c][oy * stride + ky - pad][ox * stride + kx - pad]
        let offset = input_offset(column.y, column.x, ky, kx);
        if offset < 0 {
            return 0.0;
        }
        return src[column.at + c * in_plane + u32(offset)];
    }
    // dy[n][co = c][oy][ox] for the output position whose tap (ky, kx) reads (iy, ix)
    let offset = output_offset(column.y, column.x, ky, kx);
    if offset < 0 {
        return 0.0;
    }
    return src[column.at + c * params.out_height * params.out_width + u32(offset)];
}

// The 4 x 4 outputs of invocation `tid` in the tile at (m0, n0) of the product `gemm`:
// `init` plus the sum over k_begin <= k < k_end, in increasing k. acc[j][i] is row
// m0 + tid.y + TILE_THREADS_M * i, column n0 + tid.x + TILE_THREADS_N * j. Holds barriers:
// every invocation of the workgroup must call it, with the same m0, n0, k_begin and k_end.
fn tiled_product(gemm: u32, tid: vec2<u32>, m0: u32, n0: u32, k_begin: u32, k_end: u32, init: mat4x4<f32>) -> mat4x4<f32> {
    let flat = tid.y * TILE_THREADS_N + tid.x;
    let a_k = flat % TILE_K;
    let b_n = flat % TILE_N;
    let column = b_column(gemm, n0 + b_n);
    var acc = init;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var r = 0u; r < TILE_M * TILE_K / TILE_THREADS; r++) {
            let m = flat / TILE_K + r * (TILE_THREADS / TILE_K);
            a_tile[a_k * A_TILE_STRIDE + m] = a_at(gemm, m0 + m, k0 + a_k, k_end);
        }
        for (var r = 0u; r < TILE_K * TILE_N / TILE_THREADS; r++) {
            let k = flat / TILE_N + r * (TILE_THREADS / TILE_N);
            b_tile[k * TILE_N + b_n] = b_at(gemm, column, k0 + k, k_end);
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            let a = k * A_TILE_STRIDE + tid.y;
            let b = k * TILE_N + tid.x;
            acc = outer_acc(acc, vec4<f32>(a_tile[a], a_tile[a + TILE_THREADS_M], a_tile[a + 2u * TILE_THREADS_M], a_tile[a + 3u * TILE_THREADS_M]), vec4<f32>(b_tile[b], b_tile[b + TILE_THREADS_N], b_tile[b + 2u * TILE_THREADS_N], b_tile[b + 3u * TILE_THREADS_N]));
        }
        workgroupBarrier();
    }
    return acc;
}

// Stores an invocation's outputs of a forward or backward-input tile: rows are channels of an
// NCHW tensor with `channels` channels of `plane` positions, columns its (image, position)
// pairs; only those inside the tensor, rectified when `relu`.
fn store_activation_tile(acc: mat4x4<f32>, tile: TileOrigin, tid: vec2<u32>, channels: u32, plane: u32, relu: bool, base: u32) {
    var sums = acc;
    for (var j = 0u; j < 4u; j++) {
        let n = tile.n0 + tid.x + j * TILE_THREADS_N;
        if n >= params.batch * plane {
            break;
        }
        let at = base + (n / plane) * channels * plane + n % plane;
        for (var i = 0u; i < 4u; i++) {
            let m = tile.m0 + tid.y + i * TILE_THREADS_M;
            if m < channels {
                let v = sums[j][i];
                dst[at + m * plane] = select(v, max(v, 0.0), relu);
            }
        }
    }
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= params.len {
        return;
    }
    // Every sum starts at its channel's bias.
    let last = params.out_channels - 1u;
    let m = tile.m0 + lid.y;
    let b = vec4<f32>(bias[min(m, last)], bias[min(m + TILE_THREADS_M, last)], bias[min(m + 2u * TILE_THREADS_M, last)], bias[min(m + 3u * TILE_THREADS_M, last)]);
    let reduction = params.in_channels * params.kernel * params.kernel;
    let acc = tiled_product(GEMM_FORWARD, lid.xy, tile.m0, tile.n0, 0u, reduction, splat4(b));
    store_activation_tile(acc, tile, lid.xy, params.out_channels, params.out_height * params.out_width, params.relu == 1u, 0u);
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_backward_input_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= params.len {
        return;
    }
    // Chunk c sums its params.chunk_k terms into its partial dx at c * partial_stride.
    let reduction = params.out_channels * params.kernel * params.kernel;
    let k_begin = tile.chunk * params.chunk_k;
    let k_end = min(k_begin + params.chunk_k, reduction);
    let acc = tiled_product(GEMM_BACKWARD_INPUT, lid.xy, tile.m0, tile.n0, k_begin, k_end, mat4x4<f32>());
    store_activation_tile(acc, tile, lid.xy, params.in_channels, params.in_height * params.in_width, false, tile.chunk * params.partial_stride);
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_backward_weights_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= params.len {
        return;
    }
    // The chunk's row segments, as a range of output positions.
    let first = tile.chunk * params.chunk_rows;
    let end = min(first + params.chunk_rows, params.batch * params.out_height);
    let sums = tiled_product(GEMM_BACKWARD_WEIGHTS, lid.xy, tile.m0, tile.n0, first * params.out_width, end * params.out_width, mat4x4<f32>());

    // Column `weights` (the bias column) goes to the chunk's db, the others to its dw.
    var acc = sums;
    let weights = params.in_channels * params.kernel * params.kernel;
    let chunk_at = tile.chunk * params.partial_stride;
    for (var j = 0u; j < 4u; j++) {
        let n = tile.n0 + lid.x + j * TILE_THREADS_N;
        if n > weights {
            break;
        }
        for (var i = 0u; i < 4u; i++) {
            let co = tile.m0 + lid.y + i * TILE_THREADS_M;
            if co < params.out_channels {
                let at = select(co * weights + n, params.out_channels * weights + co, n == weights);
                dst[chunk_at + at] = acc[j][i];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d_pack_forward_weights, conv2d_pack_backward_input_weights: packs w for the
//   register-blocked *_packed kernels: dst[slot * 32 + c] = the weight of channel c of slot
//   `slot` (see step_weights), 0 for channels past the last, for the params.len elements.
// Bindings: src = w (unused), dst = packed weights, factor = w. 1-D launch (flat_index).
// ---------------------------------------------------------------------------------------------

fn packed_weight(i: u32, forward: bool) -> f32 {
    let kk = params.kernel * params.kernel;
    let slot = i / BLOCK_CHANNELS;
    let step = slot % params.block_steps;
    let channel = (slot / params.block_steps) * BLOCK_CHANNELS + i % BLOCK_CHANNELS;
    if forward {
        // w[co = channel][(ci, ky, kx) = step]
        if channel >= params.out_channels {
            return 0.0;
        }
        return factor[channel * params.in_channels * kk + step];
    }
    // w[co][ci = channel][ky][kx] with (co, ky, kx) = step
    if channel >= params.in_channels {
        return 0.0;
    }
    return factor[((step / kk) * params.in_channels + channel) * kk + step % kk];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_forward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < params.len {
        dst[i] = packed_weight(i, true);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_backward_input_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < params.len {
        dst[i] = packed_weight(i, false);
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d_backward_weights_pooled: conv2d_backward_weights_narrow for a convolution whose
//   output went through ReLU and 2x2 max pooling (conv2d_forward_pool), reading the pooling's
//   output gradient instead of dy: dy is dpooled at each window's winner where the pooled
//   value is > 0, and 0 everywhere else (the backward of the pooling and of the ReLU, as
//   maxpool2d_backward with relu_mask computes it), so the pooling's backward pass and its
//   4x larger gradient are never needed. For layers without an input gradient (the first).
// Bindings: src = x, dst = partials, factor = dpooled, (4) pooled_y, (7) pooled_argmax (the
//   forward's pool_argmax, read only).
// Block and lanes as the narrow kernel (at most 4 (ci, ky) pairs, k <= 4: one kx block), but
//   chunks of pooled row segments (image, py), params.chunk_rows of them.
// Loop: one flat loop over the chunk's windows; per window the 32 channels' dpooled, pooled
//   value and argmax (96 loads) give the dy of its 4 positions, and each position adds
//   dy (x) the 4 columns of x from its column on each pair's row.
// ---------------------------------------------------------------------------------------------

@group(0) @binding(4) var<storage, read> pooled_y: array<f32>;
@group(0) @binding(7) var<storage, read> pooled_argmax: array<u32>;

// One channel's pooled gradient at window index `o` (channel c's): (dpooled, which position of
// the window takes it: 0 to 3 row-major, 4 for none, where the pooled value is not > 0).
// `window`: the window's top left within channel c of the image of y.
fn window_grad1(o: u32, c: u32, window: u32) -> vec2<f32> {
    let w = params.out_width;
    let rel = pooled_argmax[o] - c * params.out_height * w - window;
    let which = select(select(select(select(4.0, 3.0, rel == w + 1u), 2.0, rel == w), 1.0, rel == 1u), 0.0, rel == 0u);
    return vec2<f32>(factor[o], select(4.0, which, pooled_y[o] > 0.0));
}

// window_grad1 of 4 channels c0.. (clamped to the last): columns (dpooled, which).
fn window_grad4(base: u32, pooled: u32, c0: u32, window: u32) -> mat2x4<f32> {
    let last = params.out_channels - 1u;
    let a = window_grad1(base + min(c0, last) * pooled, min(c0, last), window);
    let b = window_grad1(base + min(c0 + 1u, last) * pooled, min(c0 + 1u, last), window);
    let c = window_grad1(base + min(c0 + 2u, last) * pooled, min(c0 + 2u, last), window);
    let d = window_grad1(base + min(c0 + 3u, last) * pooled, min(c0 + 3u, last), window);
    return mat2x4<f32>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}

// The pooled gradient of 32 channels at one window, 4 channels per entry.
struct WindowGrad {
    q0: mat2x4<f32>,
    q1: mat2x4<f32>,
    q2: mat2x4<f32>,
    q3: mat2x4<f32>,
    q4: mat2x4<f32>,
    q5: mat2x4<f32>,
    q6: mat2x4<f32>,
    q7: mat2x4<f32>,
}

fn window_grad(base: u32, pooled: u32, co: u32, window: u32) -> WindowGrad {
    return WindowGrad(window_grad4(base, pooled, co, window), window_grad4(base, pooled, co + 4u, window), window_grad4(base, pooled, co + 8u, window), window_grad4(base, pooled, co + 12u, window), window_grad4(base, pooled, co + 16u, window), window_grad4(base, pooled, co + 20u, window), window_grad4(base, pooled, co + 24u, window), window_grad4(base, pooled, co + 28u, window));
}

fn dy_at_position(q: mat2x4<f32>, position: f32) -> vec4<f32> {
    return select(vec4<f32>(0.0), q[0], q[1] == vec4<f32>(position));
}

// The 32 channels' dy at one position (0 to 3) of the window.
fn window_dy(g: WindowGrad, position: f32) -> Channels {
    let lo = mat4x4<f32>(dy_at_position(g.q0, position), dy_at_position(g.q1, position), dy_at_position(g.q2, position), dy_at_position(g.q3, position));
    let hi = mat4x4<f32>(dy_at_position(g.q4, position), dy_at_position(g.q5, position), dy_at_position(g.q6, position), dy_at_position(g.q7, position));
    return Channels(lo, hi);
}

// The 4 pairs' Tiles of the pooled weight gradient.
struct PairTiles {
    t0: Tile,
    t1: Tile,
    t2: Tile,
    t3: Tile,
}

// Adds one position's dy (x) the 4 x columns from `col` of each pair's row (`row`: the
// position's row of the image, channel 0).
fn pooled_position(t: PairTiles, d: Channels, row: u32, col: u32, p: vec4<u32>) -> PairTiles {
    let last_col = params.in_width - 1u;
    return PairTiles(tile_fma(t.t0, d, src_quad(row + p.x, col, last_col)), tile_fma(t.t1, d, src_quad(row + p.y, col, last_col)), tile_fma(t.t2, d, src_quad(row + p.z, col, last_col)), tile_fma(t.t3, d, src_quad(row + p.w, col, last_col)));
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_pooled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = block_lane(wg, nwg, lid);
    if lane >= params.len {
        return;
    }
    let co_blocks = (params.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let co0 = (lane % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / co_blocks;
    let ph = params.out_height / 2u;
    let pw = params.out_width / 2u;
    let pooled = ph * pw;
    let pairs = vec4<u32>(pair_origin(0u), pair_origin(1u), pair_origin(2u), pair_origin(3u));

    var bias_sum = Channels(mat4x4<f32>(), mat4x4<f32>());
    let zero = tile_splat(bias_sum);
    var t = PairTiles(zero, zero, zero, zero);

    let first = chunk * params.chunk_rows * pw;
    let end = min(first + params.chunk_rows * pw, params.batch * pooled);
    for (var w = first; w < end; w++) {
        let img = w / pooled;
        let py = (w % pooled) / pw;
        let px = w % pw;
        let window = 2u * py * params.out_width + 2u * px;
        let g = window_grad(img * params.out_channels * pooled + py * pw + px, pooled, co0, window);
        let top = (img * params.in_channels * params.in_height + 2u * py) * params.in_width;
        let d0 = window_dy(g, 0.0);
        let d1 = window_dy(g, 1.0);
        let d2 = window_dy(g, 2.0);
        let d3 = window_dy(g, 3.0);
        bias_sum = Channels(bias_sum.lo + d0.lo + d1.lo + d2.lo + d3.lo, bias_sum.hi + d0.hi + d1.hi + d2.hi + d3.hi);
        t = pooled_position(t, d0, top, 2u * px, pairs);
        t = pooled_position(t, d1, top, 2u * px + 1u, pairs);
        t = pooled_position(t, d2, top + params.in_width, 2u * px, pairs);
        t = pooled_position(t, d3, top + params.in_width, 2u * px + 1u, pairs);
    }
    let chunk_at = chunk * params.partial_stride;
    bwd_weights_store(t.t0, chunk_at, 0u, co0, 0u);
    bwd_weights_store(t.t1, chunk_at, 1u, co0, 0u);
    bwd_weights_store(t.t2, chunk_at, 2u, co0, 0u);
    bwd_weights_store(t.t3, chunk_at, 3u, co0, 0u);
    // Position 0 of a Tile of the bias sums, stored at channel stride 1.
    let at = chunk_at + params.out_channels * params.in_channels * params.kernel * params.kernel + co0;
    store_tile(tile_splat(bias_sum), at, 1u, params.out_channels - co0, 1u, false);
}

// ---------------------------------------------------------------------------------------------
// conv2d_backward_weights_k3: the partial sums of conv2d_backward_weights for k = 3, without
//   the kx = 3 column that a 3-wide kernel leaves empty in every Tile of the general block (a
//   quarter of its sums).
// Block: 32 output channels x the 36 weights (ci, ky, kx) of 4 input channels ci0..ci0+3, in
//   dw order, 4 per Tile = 9 Tiles; plus the 32 bias sums (stored by ci block 0).
// Lanes: (chunk, channel block, ci block), ci block fastest; params.len of them.
// Loop: over the chunk's row segments (image, oy), then along the row (ox), sliding a window
//   of x columns ox..ox+2 of the 12 x rows (ci, oy + ky): each position loads column ox + 2
//   and the 32 dy values, and keeps the two columns before it; Tile j takes weights 4j..4j+3
//   from the window. Loads per position: 12 + 32 for 32 * 36 FMAs (36 + 32 without the
//   window: on lavapipe, x's loads were a third of the kernel's time).
// ---------------------------------------------------------------------------------------------

// Input channels of a k3 block (the host mirrors it); the code below is written for 4.
const K3_BLOCK_CHANNELS: u32 = 4u;

// Stores Tile j of a k3 block (weights 4j..4j+3 from `at`) where some of them are live.
fn k3_store(t: Tile, at: u32, j: u32, live: u32, co0: u32) {
    if live > 4u * j {
        store_tile(t, at + 4u * j, 9u * params.in_channels, params.out_channels - co0, min(live - 4u * j, 4u), false);
    }
}

// Column `col` of the 12 x rows of a k3 block (`r`: where each starts, image 0; `at`: where
// the segment's row starts), 4 rows a vector.
fn k3_column(r: K3Rows, at: u32) -> K3Column {
    return K3Column(vec4<f32>(src[at + r.a.x], src[at + r.a.y], src[at + r.a.z], src[at + r.a.w]), vec4<f32>(src[at + r.b.x], src[at + r.b.y], src[at + r.b.z], src[at + r.b.w]), vec4<f32>(src[at + r.c.x], src[at + r.c.y], src[at + r.c.z], src[at + r.c.w]));
}

// Where the 12 x rows of a k3 block start (image 0), 4 a vector.
struct K3Rows {
    a: vec4<u32>,
    b: vec4<u32>,
    c: vec4<u32>,
}

// One x column of the 12 rows.
struct K3Column {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
}

// The 9 Tiles of a k3 block.
struct K3Tiles {
    t0: Tile,
    t1: Tile,
    t2: Tile,
    t3: Tile,
    t4: Tile,
    t5: Tile,
    t6: Tile,
    t7: Tile,
    t8: Tile,
}

// Adds dy (x) the window of columns `x0`, `x1`, `x2` of 4 rows to 3 Tiles: row i's weights
// are 3i..3i+2 of the Tiles' 12, column-major within a row.
fn k3_rows_fma(t: array<Tile, 3>, d: Channels, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>) -> array<Tile, 3> {
    return array<Tile, 3>(tile_fma(t[0], d, vec4<f32>(x0.x, x1.x, x2.x, x0.y)), tile_fma(t[1], d, vec4<f32>(x1.y, x2.y, x0.z, x1.z)), tile_fma(t[2], d, vec4<f32>(x2.z, x0.w, x1.w, x2.w)));
}

fn k3_fma(t: K3Tiles, d: Channels, x0: K3Column, x1: K3Column, x2: K3Column) -> K3Tiles {
    let a = k3_rows_fma(array<Tile, 3>(t.t0, t.t1, t.t2), d, x0.a, x1.a, x2.a);
    let b = k3_rows_fma(array<Tile, 3>(t.t3, t.t4, t.t5), d, x0.b, x1.b, x2.b);
    let c = k3_rows_fma(array<Tile, 3>(t.t6, t.t7, t.t8), d, x0.c, x1.c, x2.c);
    return K3Tiles(a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1], c[2]);
}

// Where x row (ci0 + i / 3, ky = i % 3) of image 0 starts (channels clamped to the last).
fn k3_row(ci0: u32, i: u32) -> u32 {
    return (min(ci0 + i / 3u, params.in_channels - 1u) * params.in_height + i % 3u) * params.in_width;
}

// The 32 dy values dy[n][first..first + 31][at] (channel stride `stride`, channels clamped to
// `last`) of a k3 step. `part` is unused here: in the module that the host builds for adapters
// with subgroups (src/gpu/conv2d.rs, `SHARED_DY`), the body below is replaced by one in which
// each of 8 lanes that need the same values loads 4 of them (those of `part`) and the 8 share
// them, saving 28 of the 32 storage loads (lavapipe loads storage lane by lane).
fn k3_dy(at: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    // @k3_dy
    return factor32(at, stride, first, last);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_k3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weights_k3_block(block_lane(wg, nwg, lid), 0u);
}

// One k3 block; `part` goes to k3_dy.
fn backward_weights_k3_block(lane: u32, part: u32) {
    if lane >= params.len {
        return;
    }
    let ci_blocks = params.row_blocks;
    let co_blocks = (params.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let ci0 = (lane % ci_blocks) * K3_BLOCK_CHANNELS;
    let co0 = ((lane / ci_blocks) % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / (ci_blocks * co_blocks);
    let last_co = params.out_channels - 1u;
    let ow = params.out_width;
    let dy_plane = params.out_height * ow;
    let rows = K3Rows(vec4<u32>(k3_row(ci0, 0u), k3_row(ci0, 1u), k3_row(ci0, 2u), k3_row(ci0, 3u)), vec4<u32>(k3_row(ci0, 4u), k3_row(ci0, 5u), k3_row(ci0, 6u), k3_row(ci0, 7u)), vec4<u32>(k3_row(ci0, 8u), k3_row(ci0, 9u), k3_row(ci0, 10u), k3_row(ci0, 11u)));

    var bias_sum = Channels(mat4x4<f32>(), mat4x4<f32>());
    let zero = tile_splat(bias_sum);
    var t = K3Tiles(zero, zero, zero, zero, zero, zero, zero, zero, zero);

    // The chunk's row segments (image, oy), each along its row with a sliding window.
    let first = chunk * params.chunk_rows;
    let end = min(first + params.chunk_rows, params.batch * params.out_height);
    for (var seg = first; seg < end; seg++) {
        let img = seg / params.out_height;
        let oy = seg % params.out_height;
        let at = (img * params.in_channels * params.in_height + oy) * params.in_width;
        let dy_at = (img * params.out_channels * params.out_height + oy) * ow;
        var x0 = k3_column(rows, at);
        var x1 = k3_column(rows, at + 1u);
        for (var ox = 0u; ox < ow; ox++) {
            let x2 = k3_column(rows, at + ox + 2u);
            let d = k3_dy(dy_at + ox, dy_plane, co0, last_co, part);
            bias_sum = Channels(bias_sum.lo + d.lo, bias_sum.hi + d.hi);
            t = k3_fma(t, d, x0, x1, x2);
            x0 = x1;
            x1 = x2;
        }
    }
    // dw[co][ci0 * 9 + t] for the block's weights t < 9 * (in_channels - ci0).
    let at = chunk * params.partial_stride + co0 * 9u * params.in_channels + ci0 * 9u;
    let live = 9u * (params.in_channels - ci0);
    k3_store(t.t0, at, 0u, live, co0);
    k3_store(t.t1, at, 1u, live, co0);
    k3_store(t.t2, at, 2u, live, co0);
    k3_store(t.t3, at, 3u, live, co0);
    k3_store(t.t4, at, 4u, live, co0);
    k3_store(t.t5, at, 5u, live, co0);
    k3_store(t.t6, at, 6u, live, co0);
    k3_store(t.t7, at, 7u, live, co0);
    k3_store(t.t8, at, 8u, live, co0);
    if ci0 == 0u {
        // Position 0 of a Tile of the bias sums, stored at channel stride 1.
        let bias_at = chunk * params.partial_stride + params.out_channels * params.in_channels * 9u + co0;
        store_tile(tile_splat(bias_sum), bias_at, 1u, params.out_channels - co0, 1u, false);
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d_reduce: dst[i] = sum_(c < chunks, in order) src[c * partial_stride + partial_first + i]
//   for i < params.len (i + out_skip for i >= out_split): adds up the chunks of partial sums of
//   either variant's weight gradient (dw, db, or both in one pass).
//   One invocation per element, 1-D launch (flat_index).
// conv2d_reduce_split: the same sums for many chunks, where one invocation's chain of dependent
//   loads would be long: one workgroup per element (2-D launch folded like tile_origin), whose
//   invocation t adds chunks t, t + WORKGROUP_SIZE, ... in order, then workgroup_sum adds those
//   in a fixed tree. Deterministic too; it rounds differently from conv2d_reduce.
// Bindings: src = partials, dst = dw or db.
// ---------------------------------------------------------------------------------------------

fn partial_at(c: u32, i: u32) -> f32 {
    return src[c * params.partial_stride + params.partial_first + i];
}

fn reduced_at(i: u32) -> u32 {
    return i + select(0u, params.out_skip, i >= params.out_split);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        sum += partial_at(c, i);
    }
    dst[reduced_at(i)] = sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x + wg.y * nwg.x;
    var sum = 0.0;
    if i < params.len {
        for (var c = t; c < params.chunks; c += WORKGROUP_SIZE) {
            sum += partial_at(c, i);
        }
    }
    let total = workgroup_sum(t, sum);
    if i < params.len && t == 0u {
        dst[reduced_at(i)] = total;
    }
}
