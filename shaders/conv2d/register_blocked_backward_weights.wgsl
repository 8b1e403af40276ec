// Conv2d, register-blocked weight gradient (see register_blocked.wgsl for the family): partial
// sums per chunk of the batch, which conv2d_reduce (reduce.wgsl) adds.
// Entry points: conv2d_backward_weights, conv2d_backward_weights_narrow,
// conv2d_backward_weights_pooled here; the 3x3 kernel's conv2d_backward_weights_k3
// (share_per_lane.wgsl) or conv2d_backward_weights_k3_shared (subgroup.wgsl).
// Bindings (see products.wgsl): 0 weight_grad_params, 1 x, 2 dy (dpooled in the pooled
// kernel), 7 pooled_y, 8 pooled_argmax (the pooled kernel only), 9 dst, the partial sums
// (products.wgsl).
//
// conv2d_backward_weights: partial sums of the weight and bias gradients over chunks of the
//   output row segments (image, oy), weight_grad_params.chunk_rows segments per chunk
//   (W = weight count):
//     partial[chunk][co][ci][ky][kx] = sum_(segments of the chunk, ox) dy[n][co][oy][ox]
//       * x[n][ci][oy+ky][ox+kx]
//     partial[chunk][W + co] = sum_(segments of the chunk, ox) dy[n][co][oy][ox]
//   conv2d_reduce then adds the chunks in chunk order.
// conv2d_backward_weights_narrow: the same with blocks of 4 pairs, for in_channels * k <= 4
//   (the first layer), where 8-pair blocks would be mostly empty.
// Block: 32 output channels x 8 (or 4) (ci, ky) pairs x 4 kx (kx0..kx0+3; a Tile's positions
//   are kx) = 8 (or 4) Tiles, plus the 32 bias sums (stored by pair block 0, kx block 0).
// Lanes: (chunk, channel block, pair block, kx block), kx block fastest;
//   weight_grad_params.len of them.
// Loop: over the chunk's segments and ox, each pair's window over x row oy+ky slides right one
//   column per ox (one load); the 32 dy values dy[n][co0..][oy][ox] are shared by all pairs.
//   Loads per position: 8 + 32 for 32 * 8 * 4 FMAs.

// The output row segments (image, oy) of chunk `chunk`: [x, y).
fn chunk_segments(chunk: u32) -> vec2<u32> {
    let first = chunk * weight_grad_params.chunk_rows;
    return vec2<u32>(first, min(first + weight_grad_params.chunk_rows, weight_grad_params.shape.batch * weight_grad_params.shape.out_height));
}

// Where row segment `seg` starts: in x (row oy, channel 0) and in dy (row oy, channel 0).
fn segment_rows(seg: u32) -> vec2<u32> {
    let img = seg / weight_grad_params.shape.out_height;
    let oy = seg % weight_grad_params.shape.out_height;
    let x_row = (img * weight_grad_params.shape.in_channels * weight_grad_params.shape.in_height + oy) * weight_grad_params.shape.in_width;
    return vec2<u32>(x_row, (img * weight_grad_params.shape.out_channels * weight_grad_params.shape.out_height + oy) * weight_grad_params.shape.out_width);
}

// Where (ci, ky) pair `pair` (clamped to the last) reads x: image 0, channel ci, row ky.
fn pair_origin(pair: u32) -> u32 {
    let k = weight_grad_params.shape.kernel;
    let p = min(pair, weight_grad_params.shape.in_channels * k - 1u);
    return ((p / k) * weight_grad_params.shape.in_height + p % k) * weight_grad_params.shape.in_width;
}

// Stores the sums of pair `pair` (32 channels from co x 4 kx from kx) in its chunk's part.
fn bwd_weights_store(t: Tile, chunk_at: u32, pair: u32, co: u32, kx: u32) {
    let k = weight_grad_params.shape.kernel;
    if pair >= weight_grad_params.shape.in_channels * k {
        return;
    }
    let ci = pair / k;
    let ky = pair % k;
    let at = chunk_at + ((co * weight_grad_params.shape.in_channels + ci) * k + ky) * k + kx;
    store_tile(t, at, weight_grad_params.shape.in_channels * k * k, weight_grad_params.shape.out_channels - co, min(k - kx, BLOCK_COLS), false);
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
    if lane >= weight_grad_params.len {
        return;
    }
    let k = weight_grad_params.shape.kernel;
    let kx_blocks = weight_grad_params.kx_blocks;
    let pair_blocks = weight_grad_params.pair_blocks;
    let co_blocks = (weight_grad_params.shape.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let kx0 = (lane % kx_blocks) * BLOCK_COLS;
    let pair_block = (lane / kx_blocks) % pair_blocks;
    let co0 = ((lane / (kx_blocks * pair_blocks)) % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / (kx_blocks * pair_blocks * co_blocks);
    let pair0 = pair_block * select(BLOCK_ROWS / 2u, BLOCK_ROWS, wide);
    let last_co = weight_grad_params.shape.out_channels - 1u;
    let last_col = weight_grad_params.shape.in_width - 1u;
    let ow = weight_grad_params.shape.out_width;
    let dy_plane = weight_grad_params.shape.out_height * ow;

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

    let segments = chunk_segments(chunk);
    for (var seg = segments.x; seg < segments.y; seg++) {
        let start = segment_rows(seg);
        var x0 = x_window(start.x + p0, kx0, last_col);
        var x1 = x_window(start.x + p1, kx0, last_col);
        var x2 = x_window(start.x + p2, kx0, last_col);
        var x3 = x_window(start.x + p3, kx0, last_col);
        var x4 = vec4<f32>();
        var x5 = vec4<f32>();
        var x6 = vec4<f32>();
        var x7 = vec4<f32>();
        if wide {
            x4 = x_window(start.x + p4, kx0, last_col);
            x5 = x_window(start.x + p5, kx0, last_col);
            x6 = x_window(start.x + p6, kx0, last_col);
            x7 = x_window(start.x + p7, kx0, last_col);
        }
        for (var ox = 0u; ox < ow; ox++) {
            // Now each window holds x columns ox + kx0 .. ox + kx0 + 3.
            let next = min(ox + kx0 + 3u, last_col);
            x0 = slide(x0, x_at(start.x + p0 + next));
            x1 = slide(x1, x_at(start.x + p1 + next));
            x2 = slide(x2, x_at(start.x + p2 + next));
            x3 = slide(x3, x_at(start.x + p3 + next));
            let d = dy32(start.y + ox, dy_plane, co0, last_co);
            bias_sum = Channels(bias_sum.lo + d.lo, bias_sum.hi + d.hi);
            t0 = tile_fma(t0, d, x0);
            t1 = tile_fma(t1, d, x1);
            t2 = tile_fma(t2, d, x2);
            t3 = tile_fma(t3, d, x3);
            if wide {
                x4 = slide(x4, x_at(start.x + p4 + next));
                x5 = slide(x5, x_at(start.x + p5 + next));
                x6 = slide(x6, x_at(start.x + p6 + next));
                x7 = slide(x7, x_at(start.x + p7 + next));
                t4 = tile_fma(t4, d, x4);
                t5 = tile_fma(t5, d, x5);
                t6 = tile_fma(t6, d, x6);
                t7 = tile_fma(t7, d, x7);
            }
        }
    }
    let chunk_at = chunk * weight_grad_params.partial_stride;
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
        let at = chunk_at + weight_grad_params.shape.out_channels * weight_grad_params.shape.in_channels * k * k + co0;
        store_tile(tile_splat(bias_sum), at, 1u, weight_grad_params.shape.out_channels - co0, 1u, false);
    }
}

// conv2d_backward_weights_pooled: conv2d_backward_weights_narrow for a convolution whose
//   output went through ReLU and 2x2 max pooling (conv2d_forward_pool), reading the pooling's
//   output gradient instead of dy: dy is dpooled at each window's winner where the pooled
//   value is > 0, and 0 everywhere else (the backward of the pooling and of the ReLU, as
//   maxpool2d_backward with relu_mask computes it), so the pooling's backward pass and its
//   4x larger gradient are never needed. For layers without an input gradient (the first).
//   Reads dpooled, pooled_y and pooled_argmax (the forward's pool_y and pool_argmax).
// Block and lanes as the narrow kernel (at most 4 (ci, ky) pairs, k <= 4: one kx block), but
//   chunks of pooled row segments (image, py), weight_grad_params.chunk_rows of them.
// Loop: one flat loop over the chunk's windows; per window the 32 channels' dpooled, pooled
//   value and argmax (96 loads) give the dy of its 4 positions, and each position adds
//   dy (x) the 4 columns of x from its column on each pair's row.

// One channel's pooled gradient at window index `o` (channel c's): (dpooled, which position of
// the window takes it: 0 to 3 row-major, 4 for none, where the pooled value is not > 0).
// `window`: the window's top left within channel c of the image of y.
fn window_grad1(o: u32, c: u32, window: u32) -> vec2<f32> {
    let width = weight_grad_params.shape.out_width;
    let rel = pooled_argmax_at(o) - c * weight_grad_params.shape.out_height * width - window;
    let which = select(select(select(select(4.0, 3.0, rel == width + 1u), 2.0, rel == width), 1.0, rel == 1u), 0.0, rel == 0u);
    return vec2<f32>(dpooled_at(o), select(4.0, which, pooled_y_at(o) > 0.0));
}

// window_grad1 of 4 channels c0.. (clamped to the last): columns (dpooled, which).
fn window_grad4(base: u32, pooled: u32, c0: u32, window: u32) -> mat2x4<f32> {
    let last = weight_grad_params.shape.out_channels - 1u;
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
    let last_col = weight_grad_params.shape.in_width - 1u;
    return PairTiles(tile_fma(t.t0, d, x_quad(row + p.x, col, last_col)), tile_fma(t.t1, d, x_quad(row + p.y, col, last_col)), tile_fma(t.t2, d, x_quad(row + p.z, col, last_col)), tile_fma(t.t3, d, x_quad(row + p.w, col, last_col)));
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_pooled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = block_lane(wg, nwg, lid);
    if lane >= weight_grad_params.len {
        return;
    }
    let co_blocks = (weight_grad_params.shape.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let co0 = (lane % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / co_blocks;
    let ph = weight_grad_params.shape.out_height / 2u;
    let pw = weight_grad_params.shape.out_width / 2u;
    let pooled = ph * pw;
    let pairs = vec4<u32>(pair_origin(0u), pair_origin(1u), pair_origin(2u), pair_origin(3u));

    var bias_sum = Channels(mat4x4<f32>(), mat4x4<f32>());
    let zero = tile_splat(bias_sum);
    var t = PairTiles(zero, zero, zero, zero);

    let first = chunk * weight_grad_params.chunk_rows * pw;
    let end = min(first + weight_grad_params.chunk_rows * pw, weight_grad_params.shape.batch * pooled);
    for (var win = first; win < end; win++) {
        let img = win / pooled;
        let py = (win % pooled) / pw;
        let px = win % pw;
        let window = 2u * py * weight_grad_params.shape.out_width + 2u * px;
        let g = window_grad(img * weight_grad_params.shape.out_channels * pooled + py * pw + px, pooled, co0, window);
        let top = (img * weight_grad_params.shape.in_channels * weight_grad_params.shape.in_height + 2u * py) * weight_grad_params.shape.in_width;
        let d0 = window_dy(g, 0.0);
        let d1 = window_dy(g, 1.0);
        let d2 = window_dy(g, 2.0);
        let d3 = window_dy(g, 3.0);
        bias_sum = Channels(bias_sum.lo + d0.lo + d1.lo + d2.lo + d3.lo, bias_sum.hi + d0.hi + d1.hi + d2.hi + d3.hi);
        t = pooled_position(t, d0, top, 2u * px, pairs);
        t = pooled_position(t, d1, top, 2u * px + 1u, pairs);
        t = pooled_position(t, d2, top + weight_grad_params.shape.in_width, 2u * px, pairs);
        t = pooled_position(t, d3, top + weight_grad_params.shape.in_width, 2u * px + 1u, pairs);
    }
    let chunk_at = chunk * weight_grad_params.partial_stride;
    bwd_weights_store(t.t0, chunk_at, 0u, co0, 0u);
    bwd_weights_store(t.t1, chunk_at, 1u, co0, 0u);
    bwd_weights_store(t.t2, chunk_at, 2u, co0, 0u);
    bwd_weights_store(t.t3, chunk_at, 3u, co0, 0u);
    // Position 0 of a Tile of the bias sums, stored at channel stride 1.
    let at = chunk_at + weight_grad_params.shape.out_channels * weight_grad_params.shape.in_channels * weight_grad_params.shape.kernel * weight_grad_params.shape.kernel + co0;
    store_tile(tile_splat(bias_sum), at, 1u, weight_grad_params.shape.out_channels - co0, 1u, false);
}

// conv2d_backward_weights_k3: the partial sums of conv2d_backward_weights for k = 3, without
//   the kx = 3 column that a 3-wide kernel leaves empty in every Tile of the general block (a
//   quarter of its sums).
// Block: 32 output channels x the 36 weights (ci, ky, kx) of 4 input channels ci0..ci0+3, in
//   dw order, 4 per Tile = 9 Tiles; plus the 32 bias sums (stored by ci block 0).
// Lanes: (chunk, channel block, ci block), ci block fastest; weight_grad_params.len of them.
// Loop: over the chunk's row segments (image, oy), then along the row (ox), sliding a window
//   of x columns ox..ox+2 of the 12 x rows (ci, oy + ky): each position loads column ox + 2
//   and the 32 dy values, and keeps the two columns before it; Tile j takes weights 4j..4j+3
//   from the window. Loads per position: 12 + 32 for 32 * 36 FMAs (36 + 32 without the
//   window: on lavapipe, x's loads were a third of the kernel's time). Entry points:
//   conv2d_backward_weights_k3 (share_per_lane.wgsl), conv2d_backward_weights_k3_shared
//   (subgroup.wgsl).

// Input channels of a k3 block (the host mirrors it); the code below is written for 4.
const K3_BLOCK_CHANNELS: u32 = 4u;

// Stores Tile j of a k3 block (weights 4j..4j+3 from `at`) where some of them are live.
fn k3_store(t: Tile, at: u32, j: u32, live: u32, co0: u32) {
    if live > 4u * j {
        store_tile(t, at + 4u * j, 9u * weight_grad_params.shape.in_channels, weight_grad_params.shape.out_channels - co0, min(live - 4u * j, 4u), false);
    }
}

// Column `col` of the 12 x rows of a k3 block (`r`: where each starts, image 0; `at`: where
// the segment's row starts), 4 rows a vector.
fn k3_column(r: K3Rows, at: u32) -> K3Column {
    return K3Column(vec4<f32>(x_at(at + r.a.x), x_at(at + r.a.y), x_at(at + r.a.z), x_at(at + r.a.w)), vec4<f32>(x_at(at + r.b.x), x_at(at + r.b.y), x_at(at + r.b.z), x_at(at + r.b.w)), vec4<f32>(x_at(at + r.c.x), x_at(at + r.c.y), x_at(at + r.c.z), x_at(at + r.c.w)));
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

// The 9 Tiles of a k3 block: a Block (Tiles 0 to 7) and Tile 8.
struct K3Tiles {
    head: Block,
    t8: Tile,
}

// Adds dy (x) the window of columns `x0`, `x1`, `x2` of 4 rows to 3 Tiles: row i's weights
// are 3i..3i+2 of the Tiles' 12, column-major within a row.
fn k3_rows_fma(t: array<Tile, 3>, d: Channels, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>) -> array<Tile, 3> {
    return array<Tile, 3>(tile_fma(t[0], d, vec4<f32>(x0.x, x1.x, x2.x, x0.y)), tile_fma(t[1], d, vec4<f32>(x1.y, x2.y, x0.z, x1.z)), tile_fma(t[2], d, vec4<f32>(x2.z, x0.w, x1.w, x2.w)));
}

fn k3_fma(t: K3Tiles, d: Channels, x0: K3Column, x1: K3Column, x2: K3Column) -> K3Tiles {
    let a = k3_rows_fma(array<Tile, 3>(t.head.t0, t.head.t1, t.head.t2), d, x0.a, x1.a, x2.a);
    let b = k3_rows_fma(array<Tile, 3>(t.head.t3, t.head.t4, t.head.t5), d, x0.b, x1.b, x2.b);
    let c = k3_rows_fma(array<Tile, 3>(t.head.t6, t.head.t7, t.t8), d, x0.c, x1.c, x2.c);
    return K3Tiles(Block(a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1]), c[2]);
}

// Where x row (ci0 + i / 3, ky = i % 3) of image 0 starts (channels clamped to the last).
fn k3_row(ci0: u32, i: u32) -> u32 {
    return (min(ci0 + i / 3u, weight_grad_params.shape.in_channels - 1u) * weight_grad_params.shape.in_height + i % 3u) * weight_grad_params.shape.in_width;
}

// One k3 block; `part` goes to k3_dy (share_per_lane.wgsl or subgroup.wgsl), which gives the
// 32 dy values of each step.
fn backward_weights_k3_block(lane: u32, part: u32) {
    if lane >= weight_grad_params.len {
        return;
    }
    let ci_blocks = weight_grad_params.pair_blocks;
    let co_blocks = (weight_grad_params.shape.out_channels + BLOCK_CHANNELS - 1u) / BLOCK_CHANNELS;
    let ci0 = (lane % ci_blocks) * K3_BLOCK_CHANNELS;
    let co0 = ((lane / ci_blocks) % co_blocks) * BLOCK_CHANNELS;
    let chunk = lane / (ci_blocks * co_blocks);
    let last_co = weight_grad_params.shape.out_channels - 1u;
    let ow = weight_grad_params.shape.out_width;
    let dy_plane = weight_grad_params.shape.out_height * ow;
    let rows = K3Rows(vec4<u32>(k3_row(ci0, 0u), k3_row(ci0, 1u), k3_row(ci0, 2u), k3_row(ci0, 3u)), vec4<u32>(k3_row(ci0, 4u), k3_row(ci0, 5u), k3_row(ci0, 6u), k3_row(ci0, 7u)), vec4<u32>(k3_row(ci0, 8u), k3_row(ci0, 9u), k3_row(ci0, 10u), k3_row(ci0, 11u)));

    var bias_sum = Channels(mat4x4<f32>(), mat4x4<f32>());
    let zero = tile_splat(bias_sum);
    var t = K3Tiles(Block(zero, zero, zero, zero, zero, zero, zero, zero), zero);

    // The chunk's row segments (image, oy), each along its row with a sliding window.
    let segments = chunk_segments(chunk);
    for (var seg = segments.x; seg < segments.y; seg++) {
        let start = segment_rows(seg);
        var x0 = k3_column(rows, start.x);
        var x1 = k3_column(rows, start.x + 1u);
        for (var ox = 0u; ox < ow; ox++) {
            let x2 = k3_column(rows, start.x + ox + 2u);
            let d = k3_dy(start.y + ox, dy_plane, co0, last_co, part);
            bias_sum = Channels(bias_sum.lo + d.lo, bias_sum.hi + d.hi);
            t = k3_fma(t, d, x0, x1, x2);
            x0 = x1;
            x1 = x2;
        }
    }
    // dw[co][ci0 * 9 + t] for the block's weights t < 9 * (in_channels - ci0).
    let at = chunk * weight_grad_params.partial_stride + co0 * 9u * weight_grad_params.shape.in_channels + ci0 * 9u;
    let live = 9u * (weight_grad_params.shape.in_channels - ci0);
    k3_store(t.head.t0, at, 0u, live, co0);
    k3_store(t.head.t1, at, 1u, live, co0);
    k3_store(t.head.t2, at, 2u, live, co0);
    k3_store(t.head.t3, at, 3u, live, co0);
    k3_store(t.head.t4, at, 4u, live, co0);
    k3_store(t.head.t5, at, 5u, live, co0);
    k3_store(t.head.t6, at, 6u, live, co0);
    k3_store(t.head.t7, at, 7u, live, co0);
    k3_store(t.t8, at, 8u, live, co0);
    if ci0 == 0u {
        // Position 0 of a Tile of the bias sums, stored at channel stride 1.
        let bias_at = chunk * weight_grad_params.partial_stride + weight_grad_params.shape.out_channels * weight_grad_params.shape.in_channels * 9u + co0;
        store_tile(tile_splat(bias_sum), bias_at, 1u, weight_grad_params.shape.out_channels - co0, 1u, false);
    }
}

