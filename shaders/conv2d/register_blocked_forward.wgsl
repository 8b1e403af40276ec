// Conv2d, register-blocked forward passes (see register_blocked.wgsl for the family).
// Entry points: conv2d_forward, conv2d_forward_pool here; their packed forms
// conv2d_forward_packed and conv2d_forward_pool_packed (share_per_lane.wgsl) or
// conv2d_forward_packed_shared and conv2d_forward_pool_packed_shared (subgroup.wgsl), which
// get each step's weights from forward_weights / forward_weights_hi.
// Bindings: 0 params, 1 src = x, 2 dst = y (or the pooled y), 3 factor = w, 4 bias,
// 5, 6 packed weights, 7 pool_argmax (declared here; the pooling kernels only).
//
// conv2d_forward: y[n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//   * w[co][ci][ky][kx], then max(., 0) when params.relu == 1.
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

