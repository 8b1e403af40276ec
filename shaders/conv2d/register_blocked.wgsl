// Conv2d, register-blocked: what every register-blocked kernel shares (blocks, Tiles, weight
// loads). The kernels are in register_blocked_forward.wgsl,
// register_blocked_backward_input.wgsl and register_blocked_backward_weights.wgsl, which read
// x, dy, dpooled, w, pooled_y and pooled_argmax only through the accessors of
// reads_storage.wgsl or reads_texture.wgsl (x_at, ...), and take how lanes get shared values
// (forward_weights, forward_weights_hi, k3_dy) from share_per_lane.wgsl or subgroup.wgsl. Each
// pass reads its own uniform and writes its output, `dst` (both in products.wgsl), through
// store_tile and store_channels here; a kernel declares only what it uses.
// Bindings: 4 packed_lo, 5 packed_hi (uniform, declared here); the rest as products.wgsl says.
//
// Why this shape (CPU adapters: lavapipe/llvmpipe): there a workgroup runs as 8-wide
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

// The block of one invocation (and BLOCK_CHANNELS, in common.wgsl); the host mirrors these
// (src/gpu/conv2d/register_blocked.rs).
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

// A block of 8 Tiles: the forward's 8 rows (or windows), the input gradient's 32 positions.
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

// A Tile holding `c` at every position.
fn tile_splat(c: Channels) -> Tile {
    return Tile(splat4(c.lo[0]), splat4(c.lo[1]), splat4(c.lo[2]), splat4(c.lo[3]), splat4(c.hi[0]), splat4(c.hi[1]), splat4(c.hi[2]), splat4(c.hi[3]));
}

// t += a (x) b: 32 channels times 4 positions.
fn tile_fma(t: Tile, a: Channels, b: vec4<f32>) -> Tile {
    return Tile(outer_acc(t.q0, a.lo[0], b), outer_acc(t.q1, a.lo[1], b), outer_acc(t.q2, a.lo[2], b), outer_acc(t.q3, a.lo[3], b), outer_acc(t.q4, a.hi[0], b), outer_acc(t.q5, a.hi[1], b), outer_acc(t.q6, a.hi[2], b), outer_acc(t.q7, a.hi[3], b));
}

// The stores are written out, without loops: they run once per invocation, but with the whole
// block of sums live, and on lavapipe every loop boundary then costs as much as many stores
// (looping them made the weight and input gradients twice as slow).

// Stores r[i] at dst[at + i * stride] for the first `n` of its 4 channels (all 4 for n >= 4),
// rectified when `relu`.
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
    store_channels(m[0], at, stride, select(0u, n, cols > 0u), relu);
    store_channels(m[1], at + 1u, stride, select(0u, n, cols > 1u), relu);
    store_channels(m[2], at + 2u, stride, select(0u, n, cols > 2u), relu);
    store_channels(m[3], at + 3u, stride, select(0u, n, cols > 3u), relu);
}

// Stores a Tile at dst[at + channel * stride + position] for the first `channels` (at most 32
// are stored) and `cols` positions, rectified when `relu`.
fn store_tile(t: Tile, at: u32, stride: u32, channels: u32, cols: u32, relu: bool) {
    store_quad(t.q0, at, stride, channels, cols, relu);
    store_quad(t.q1, at + 4u * stride, stride, max(channels, 4u) - 4u, cols, relu);
    store_quad(t.q2, at + 8u * stride, stride, max(channels, 8u) - 8u, cols, relu);
    store_quad(t.q3, at + 12u * stride, stride, max(channels, 12u) - 12u, cols, relu);
    store_quad(t.q4, at + 16u * stride, stride, max(channels, 16u) - 16u, cols, relu);
    store_quad(t.q5, at + 20u * stride, stride, max(channels, 20u) - 20u, cols, relu);
    store_quad(t.q6, at + 24u * stride, stride, max(channels, 24u) - 24u, cols, relu);
    store_quad(t.q7, at + 28u * stride, stride, max(channels, 28u) - 28u, cols, relu);
}

// The offsets base + min(c, last) * stride of the 4 channels c = first.. (clamped channels
// only feed sums that are never stored).
fn offsets4(base: u32, stride: u32, first: u32, last: u32) -> vec4<u32> {
    return vec4<u32>(base) + min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * stride;
}

// w_at for the 32 channels first.. (offsets4).
fn w32(base: u32, stride: u32, first: u32, last: u32) -> Channels {
    return Channels(mat4x4<f32>(w4(offsets4(base, stride, first, last)), w4(offsets4(base, stride, first + 4u, last)), w4(offsets4(base, stride, first + 8u, last)), w4(offsets4(base, stride, first + 12u, last))), mat4x4<f32>(w4(offsets4(base, stride, first + 16u, last)), w4(offsets4(base, stride, first + 20u, last)), w4(offsets4(base, stride, first + 24u, last)), w4(offsets4(base, stride, first + 28u, last))));
}

fn w4(at: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(w_at(at.x), w_at(at.y), w_at(at.z), w_at(at.w));
}

// The same for dy (dy_at).
fn dy32(base: u32, stride: u32, first: u32, last: u32) -> Channels {
    return Channels(mat4x4<f32>(dy4(offsets4(base, stride, first, last)), dy4(offsets4(base, stride, first + 4u, last)), dy4(offsets4(base, stride, first + 8u, last)), dy4(offsets4(base, stride, first + 12u, last))), mat4x4<f32>(dy4(offsets4(base, stride, first + 16u, last)), dy4(offsets4(base, stride, first + 20u, last)), dy4(offsets4(base, stride, first + 24u, last)), dy4(offsets4(base, stride, first + 28u, last))));
}

fn dy4(at: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(dy_at(at.x), dy_at(at.y), dy_at(at.z), dy_at(at.w));
}

// Weights packed for the register-blocked forward and backward input (conv2d_pack_*_weights):
// slot block * block_steps + step holds, as Channels, the 32 weights that step of channel
// block `block` multiplies (forward: step (ci, ky, kx), channels co; backward input: step
// (co, ky, kx), channels ci). Uniform, because lavapipe (Mesa 22.3) loads storage lane by lane
// in a loop with a bounds check and branches (about 19 instructions a lane), but gathers from
// a uniform binding without branches (about 27 instructions for 8 lanes; only a constant index
// would make it one load). A uniform binding holds at most 64 KiB, so the slots span two
// bindings: packed_lo from slot 0, packed_hi from the pass's packed_split (a multiple of
// k * k; the host binds one range twice when it suffices). The kernels whose weights do not
// fit read w itself (w32) and declare neither binding.
const PACKED_SLOTS: u32 = 512u;
@group(0) @binding(4) var<uniform> packed_lo: array<Channels, PACKED_SLOTS>;
@group(0) @binding(5) var<uniform> packed_hi: array<Channels, PACKED_SLOTS>;

// The 32 weights of packed slot `slot` from the first binding.
fn packed_weights(slot: u32) -> Channels {
    return packed_lo[slot];
}

// The 32 weights of packed slot `slot` from the second binding, which starts at slot `split`
// (the pass's packed_split). The kernels run the steps of each binding in a loop of their own:
// lavapipe runs both sides of an `if` whose condition may differ between lanes, and a gather
// from either binding costs as much as a quarter of a step's sums.
fn packed_weights_hi(slot: u32, split: u32) -> Channels {
    return packed_hi[slot - split];
}

// Steps (kx, ky, channel) to the next tap of a flat loop over channels, then ky in
// [first.y, end.y), then kx in [first.x, end.x), without divisions (lavapipe divides lane by
// lane).
fn next_tap(t: vec3<u32>, first: vec2<u32>, end: vec2<u32>) -> vec3<u32> {
    let next_row = t.x + 1u == end.x;
    let next_channel = next_row && t.y + 1u == end.y;
    return vec3<u32>(select(t.x + 1u, first.x, next_row), select(t.y + u32(next_row), first.y, next_channel), t.z + u32(next_channel));
}

// The window of x row `row` one slide before columns col..col+3: (unused, col, col + 1,
// col + 2). Columns are clamped to `last_col`: clamped ones only feed sums never stored.
fn x_window(row: u32, col: u32, last_col: u32) -> vec4<f32> {
    return vec4<f32>(0.0, x_at(row + min(col, last_col)), x_at(row + min(col + 1u, last_col)), x_at(row + min(col + 2u, last_col)));
}

// x row `row` at columns col..col+3, each clamped to `last_col` (clamped ones only feed sums
// never stored).
fn x_quad(row: u32, col: u32, last_col: u32) -> vec4<f32> {
    return vec4<f32>(x_at(row + min(col, last_col)), x_at(row + min(col + 1u, last_col)), x_at(row + min(col + 2u, last_col)), x_at(row + min(col + 3u, last_col)));
}

// x at the 4 positions of `p` from the row starting at `row` and column `col` (columns
// clamped to `last_col`).
fn x_pattern(row: u32, col: u32, p: Pattern, last_col: u32) -> vec4<f32> {
    return vec4<f32>(x_at(row + p.row.x + min(col + p.col.x, last_col)), x_at(row + p.row.y + min(col + p.col.y, last_col)), x_at(row + p.row.z + min(col + p.col.z, last_col)), x_at(row + p.row.w + min(col + p.col.w, last_col)));
}

// Slides a window one column right: (v.x, v.y, v.z, v.w) -> (v.y, v.z, v.w, next).
fn slide(v: vec4<f32>, next: f32) -> vec4<f32> {
    return vec4<f32>(v.yzw, next);
}
