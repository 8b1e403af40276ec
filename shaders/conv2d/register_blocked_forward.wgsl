// Conv2d, register-blocked forward passes (see register_blocked.wgsl for the family).
// Entry points: conv2d_forward, conv2d_forward_pool here, reading w; their packed forms
// conv2d_forward_packed and conv2d_forward_pool_packed (share_per_lane.wgsl) or
// conv2d_forward_packed_shared and conv2d_forward_pool_packed_shared (subgroup.wgsl), which
// get each step's weights from forward_weights / forward_weights_hi.
// Bindings (see products.wgsl): 0 forward_params, 1 x, 3 w (conv2d_forward,
// conv2d_forward_pool) or 4, 5 packed_lo, packed_hi (the packed forms), 6 b, and
// 9 dst, y (conv2d_forward*; products.wgsl) or 7 pool_y, 8 pool_argmax (conv2d_forward_pool*):
// b, pool_y and pool_argmax declared here.
//
// conv2d_forward: y[n][co][oy][ox] = b[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//   * w[co][ci][ky][kx], then max(., 0) when forward_params.relu == 1.
// conv2d_forward_packed: the same, reading the weights packed (conv2d_pack_forward_weights).
// Block: 32 output channels x 8 row segments (image, oy) x 4 columns ox0..ox0+3 = 8 Tiles.
// Workgroups: (channel block, block_groups of lanes over (row block, column block)), see
//   block_place; forward_params.len of them.
// Loop: one flat loop over the taps (ci, ky, kx) (the packed forms: one per binding of packed
//   weights); each step loads the 4 columns of each segment's x row oy+ky from ox0+kx and the
//   32 weights w[co0..][ci][ky][kx], shared by all 32 positions: 32 + 32 loads for 32 * 32
//   FMAs (packed: 8 uniform vec4 loads instead of the 32 weights). Nested loops over ci, ky
//   and kx with windows that slide along kx load a third as much, but took 28 ms where this
//   takes 23 (conv2 at batch 128 on lavapipe): there every loop boundary costs as much as
//   many loads.
//
// conv2d_forward_pool, conv2d_forward_pool_packed: the same sums, then ReLU and 2x2 max
//   pooling (stride 2, odd sizes floor) before anything is stored, as maxpool2d_forward over
//   the rectified y: pool_y = the pooled y, pool_argmax = the winner's index within its image
//   of y (c*h*w space; the first maximum in row-major window order wins ties). y itself is
//   never written: storing it would cost 4x the pooled stores, and nothing reads it (the
//   pooling's backward needs only the pooled y and the argmax).
//   Block: 32 output channels x 8 windows, consecutive in (image, py, px) order; a Tile's 4
//   positions are one window's (top left, top right, bottom left, bottom right). So no sums
//   are spent on columns past the last window or on the conv rows and columns that no window
//   reads (the last of an odd size). Workgroups as conv2d_forward's, with blocks of 8 windows
//   for blocks of rows and one column block.

@group(0) @binding(6) var<storage, read> b: array<f32>;
@group(0) @binding(7) var<storage, read_write> pool_y: array<f32>;
@group(0) @binding(8) var<storage, read_write> pool_argmax: array<u32>;

// Where a forward invocation works: the first channel, row segment and column of its block.
// Each block of BLOCK_CHANNELS channels has forward_params.block_groups workgroups, whose lanes
// cover (row block, column block), column block fastest (lanes past the last row block store
// nothing). So the channel block follows from the workgroup alone, and so do the packed weight
// slots it reads (the same in every lane).
struct BlockPlace {
    channel_block: u32,
    seg0: u32,
    col0: u32,
    // The lane's part in sharing the weights (forward_weights); 0 where not shared.
    part: u32,
}

fn block_place(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> BlockPlace {
    let group = block_group(wg, nwg);
    let lane = (group % forward_params.block_groups) * BLOCK_WORKGROUP + lid;
    return BlockPlace(group / forward_params.block_groups, (lane / forward_params.col_blocks) * BLOCK_ROWS, (lane % forward_params.col_blocks) * BLOCK_COLS, 0u);
}

fn b16(first: u32, last: u32) -> mat4x4<f32> {
    return mat4x4<f32>(b4(first, last), b4(first + 4u, last), b4(first + 8u, last), b4(first + 12u, last));
}

fn b4(first: u32, last: u32) -> vec4<f32> {
    return vec4<f32>(b[min(first, last)], b[min(first + 1u, last)], b[min(first + 2u, last)], b[min(first + 3u, last)]);
}

// Where the 8 Tiles of a forward block read x: Tile i's 4 positions are x[n][ci + ...][row
// + ky][col + kx] at image row start `r<i>` (channel 0) and column `c<i>`, offset by the
// block's `Pattern`. Scalars: the forward's loop reads them at every tap.
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

// Where x row oy of image `img` starts (channel 0).
fn x_row(img: u32, oy: u32) -> u32 {
    return (img * forward_params.shape.in_channels * forward_params.shape.in_height + oy) * forward_params.shape.in_width;
}

// Where output row segment `seg` (clamped to the last) reads x.
fn fwd_origin(seg: u32) -> u32 {
    let s = min(seg, forward_params.shape.batch * forward_params.shape.out_height - 1u);
    return x_row(s / forward_params.shape.out_height, s % forward_params.shape.out_height);
}

fn fwd_origins(seg0: u32, col: u32) -> Origins {
    return Origins(fwd_origin(seg0), fwd_origin(seg0 + 1u), fwd_origin(seg0 + 2u), fwd_origin(seg0 + 3u), fwd_origin(seg0 + 4u), fwd_origin(seg0 + 5u), fwd_origin(seg0 + 6u), fwd_origin(seg0 + 7u), col, col, col, col, col, col, col, col);
}

fn fwd_store(t: Tile, seg: u32, co: u32, ox: u32) {
    if seg >= forward_params.shape.batch * forward_params.shape.out_height || co >= forward_params.shape.out_channels {
        return;
    }
    let img = seg / forward_params.shape.out_height;
    let oy = seg % forward_params.shape.out_height;
    let plane = forward_params.shape.out_height * forward_params.shape.out_width;
    let at = (img * forward_params.shape.out_channels + co) * plane + oy * forward_params.shape.out_width + ox;
    store_tile(t, at, plane, forward_params.shape.out_channels - co, min(forward_params.shape.out_width - ox, BLOCK_COLS), forward_params.relu == 1u);
}

// The Pattern of a Tile of 4 columns of one row.
fn row_pattern() -> Pattern {
    return Pattern(vec4<u32>(0u), vec4<u32>(0u, 1u, 2u, 3u));
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        let place = block_place(wg, nwg, lid);
        forward_store(place, forward_sums(place, fwd_origins(place.seg0, place.col0), row_pattern()));
    }
}

// conv2d_forward's block with packed weights (the packed entry points).
fn forward_block_packed(place: BlockPlace) {
    forward_store(place, forward_sums_packed(place, fwd_origins(place.seg0, place.col0), row_pattern()));
}

// Stores the sums of a forward block.
fn forward_store(place: BlockPlace, sums: Block) {
    let co0 = place.channel_block * BLOCK_CHANNELS;
    let seg0 = place.seg0;
    let ox0 = place.col0;
    fwd_store(sums.t0, seg0, co0, ox0);
    fwd_store(sums.t1, seg0 + 1u, co0, ox0);
    fwd_store(sums.t2, seg0 + 2u, co0, ox0);
    fwd_store(sums.t3, seg0 + 3u, co0, ox0);
    fwd_store(sums.t4, seg0 + 4u, co0, ox0);
    fwd_store(sums.t5, seg0 + 5u, co0, ox0);
    fwd_store(sums.t6, seg0 + 6u, co0, ox0);
    fwd_store(sums.t7, seg0 + 7u, co0, ox0);
}

// The pooled output's height and width.
fn pooled_size() -> vec2<u32> {
    return vec2<u32>(forward_params.shape.out_height / 2u, forward_params.shape.out_width / 2u);
}

// Window `win` (clamped to the last) in (image, py, px) order: where its top left reads x
// (image row start, column), as a vec2.
fn window_origin(win: u32) -> vec2<u32> {
    let size = pooled_size();
    let v = min(win, forward_params.shape.batch * size.x * size.y - 1u);
    let within = v % (size.x * size.y);
    return vec2<u32>(x_row(v / (size.x * size.y), 2u * (within / size.y)), 2u * (within % size.y));
}

fn window_origins(w0: u32) -> Origins {
    let o = array<vec2<u32>, 8>(window_origin(w0), window_origin(w0 + 1u), window_origin(w0 + 2u), window_origin(w0 + 3u), window_origin(w0 + 4u), window_origin(w0 + 5u), window_origin(w0 + 6u), window_origin(w0 + 7u));
    return Origins(o[0].x, o[1].x, o[2].x, o[3].x, o[4].x, o[5].x, o[6].x, o[7].x, o[0].y, o[1].y, o[2].y, o[3].y, o[4].y, o[5].y, o[6].y, o[7].y);
}

// Pools 4 channels over one window, given rectified sums top left, top right, bottom left,
// bottom right, and stores the maxima and their indices for the first `n` channels. `at`:
// the first channel's pooled output; `corner`: its window's top left within the image of y.
fn pool_store4(tl: vec4<f32>, tr: vec4<f32>, bl: vec4<f32>, br: vec4<f32>, at: u32, corner: u32, n: u32) {
    let width = forward_params.shape.out_width;
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
    let pooled = forward_params.shape.out_height / 2u * (width / 2u);
    let plane = forward_params.shape.out_height * width;
    if n > 0u {
        pool_y[at] = best.x;
        pool_argmax[at] = corner + offset.x;
    }
    if n > 1u {
        pool_y[at + pooled] = best.y;
        pool_argmax[at + pooled] = corner + plane + offset.y;
    }
    if n > 2u {
        pool_y[at + 2u * pooled] = best.z;
        pool_argmax[at + 2u * pooled] = corner + 2u * plane + offset.z;
    }
    if n > 3u {
        pool_y[at + 3u * pooled] = best.w;
        pool_argmax[at + 3u * pooled] = corner + 3u * plane + offset.w;
    }
}

// Pools 4 channels' window (4 positions, rectified here) and stores it (see pool_store4).
fn pool_quad(m: mat4x4<f32>, at: u32, corner: u32, n: u32) {
    let zero = vec4<f32>(0.0);
    pool_store4(max(m[0], zero), max(m[1], zero), max(m[2], zero), max(m[3], zero), at, corner, n);
}

// Pools Tile `t`, the sums of window `win` for 32 channels from `co`, and stores it.
fn pool_store_window(t: Tile, win: u32, co: u32) {
    let size = pooled_size();
    let pooled = size.x * size.y;
    if win >= forward_params.shape.batch * pooled || co >= forward_params.shape.out_channels {
        return;
    }
    let img = win / pooled;
    let py = (win % pooled) / size.y;
    let px = win % size.y;
    let at = (img * forward_params.shape.out_channels + co) * pooled + py * size.y + px;
    let corner = (co * forward_params.shape.out_height + 2u * py) * forward_params.shape.out_width + 2u * px;
    let pooled_4 = 4u * pooled;
    let plane_4 = 4u * forward_params.shape.out_height * forward_params.shape.out_width;
    let n = forward_params.shape.out_channels - co;
    pool_quad(t.q0, at, corner, n);
    pool_quad(t.q1, at + pooled_4, corner + plane_4, max(n, 4u) - 4u);
    pool_quad(t.q2, at + 2u * pooled_4, corner + 2u * plane_4, max(n, 8u) - 8u);
    pool_quad(t.q3, at + 3u * pooled_4, corner + 3u * plane_4, max(n, 12u) - 12u);
    pool_quad(t.q4, at + 4u * pooled_4, corner + 4u * plane_4, max(n, 16u) - 16u);
    pool_quad(t.q5, at + 5u * pooled_4, corner + 5u * plane_4, max(n, 20u) - 20u);
    pool_quad(t.q6, at + 6u * pooled_4, corner + 6u * plane_4, max(n, 24u) - 24u);
    pool_quad(t.q7, at + 7u * pooled_4, corner + 7u * plane_4, max(n, 28u) - 28u);
}

// The Pattern of a Tile of one 2x2 window.
fn window_pattern() -> Pattern {
    let width = forward_params.shape.in_width;
    return Pattern(vec4<u32>(0u, 0u, width, width), vec4<u32>(0u, 1u, 0u, 1u));
}

// block_place's 8 row segments are 8 windows here.
@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        let place = block_place(wg, nwg, lid);
        pool_store(place, forward_sums(place, window_origins(place.seg0), window_pattern()));
    }
}

// conv2d_forward_pool's block with packed weights (the packed entry points).
fn forward_pool_block_packed(place: BlockPlace) {
    pool_store(place, forward_sums_packed(place, window_origins(place.seg0), window_pattern()));
}

// Pools and stores the sums of a block of 8 windows.
fn pool_store(place: BlockPlace, sums: Block) {
    let w0 = place.seg0;
    let co0 = place.channel_block * BLOCK_CHANNELS;
    pool_store_window(sums.t0, w0, co0);
    pool_store_window(sums.t1, w0 + 1u, co0);
    pool_store_window(sums.t2, w0 + 2u, co0);
    pool_store_window(sums.t3, w0 + 3u, co0);
    pool_store_window(sums.t4, w0 + 4u, co0);
    pool_store_window(sums.t5, w0 + 5u, co0);
    pool_store_window(sums.t6, w0 + 6u, co0);
    pool_store_window(sums.t7, w0 + 7u, co0);
}

// The block's first sums: every sum starts at its channel's bias.
fn bias_block(place: BlockPlace) -> Block {
    let co0 = place.channel_block * BLOCK_CHANNELS;
    let last_co = forward_params.shape.out_channels - 1u;
    let bias = tile_splat(Channels(b16(co0, last_co), b16(co0 + 16u, last_co)));
    return Block(bias, bias, bias, bias, bias, bias, bias, bias);
}

// The sums (bias included) of a forward block whose Tiles read x at `o`, in `pattern`, with
// the weights read from w: one flat loop over the taps (ci, ky, kx).
fn forward_sums(place: BlockPlace, o: Origins, pattern: Pattern) -> Block {
    let k = forward_params.shape.kernel;
    let co0 = place.channel_block * BLOCK_CHANNELS;
    let last_co = forward_params.shape.out_channels - 1u;
    let w_stride = forward_params.shape.in_channels * k * k;
    var sums = bias_block(place);
    let taps = forward_params.shape.in_channels * k * k;
    var t = vec3<u32>(0u);
    let first = vec2<u32>(0u);
    let end = vec2<u32>(k);
    for (var tap = 0u; tap < taps; tap++) {
        sums = forward_tap(sums, o, pattern, t, w32(tap, w_stride, co0, last_co));
        t = next_tap(t, first, end);
    }
    return sums;
}

// forward_sums with the weights packed: one flat loop over the taps per binding of packed
// weights.
fn forward_sums_packed(place: BlockPlace, o: Origins, pattern: Pattern) -> Block {
    let k = forward_params.shape.kernel;
    let slot0 = place.channel_block * forward_params.block_steps;
    let split = forward_params.packed_split;
    var sums = bias_block(place);
    let taps = forward_params.shape.in_channels * k * k;
    let lo_taps = min(taps, max(split, slot0) - slot0);
    var t = vec3<u32>(0u);
    let first = vec2<u32>(0u);
    let end = vec2<u32>(k);
    for (var tap = 0u; tap < lo_taps; tap++) {
        sums = forward_tap(sums, o, pattern, t, forward_weights(slot0 + tap, place.part));
        t = next_tap(t, first, end);
    }
    for (var tap = lo_taps; tap < taps; tap++) {
        sums = forward_tap(sums, o, pattern, t, forward_weights_hi(slot0 + tap, split, place.part));
        t = next_tap(t, first, end);
    }
    return sums;
}

// Adds tap t = (kx, ky, ci) of a forward block whose Tiles read x at `o`, in `pattern`.
fn forward_tap(sums: Block, o: Origins, pattern: Pattern, t: vec3<u32>, wt: Channels) -> Block {
    let last_col = forward_params.shape.in_width - 1u;
    let row = (t.z * forward_params.shape.in_height + t.y) * forward_params.shape.in_width;
    let kx = t.x;
    let x0 = x_pattern(o.r0 + row, o.c0 + kx, pattern, last_col);
    let x1 = x_pattern(o.r1 + row, o.c1 + kx, pattern, last_col);
    let x2 = x_pattern(o.r2 + row, o.c2 + kx, pattern, last_col);
    let x3 = x_pattern(o.r3 + row, o.c3 + kx, pattern, last_col);
    let x4 = x_pattern(o.r4 + row, o.c4 + kx, pattern, last_col);
    let x5 = x_pattern(o.r5 + row, o.c5 + kx, pattern, last_col);
    let x6 = x_pattern(o.r6 + row, o.c6 + kx, pattern, last_col);
    let x7 = x_pattern(o.r7 + row, o.c7 + kx, pattern, last_col);
    return Block(tile_fma(sums.t0, wt, x0), tile_fma(sums.t1, wt, x1), tile_fma(sums.t2, wt, x2), tile_fma(sums.t3, wt, x3), tile_fma(sums.t4, wt, x4), tile_fma(sums.t5, wt, x5), tile_fma(sums.t6, wt, x6), tile_fma(sums.t7, wt, x7));
}
