// Conv2d, register-blocked input gradient (see register_blocked.wgsl for the family).
// Entry points: conv2d_backward_input (reading w), conv2d_backward_input_packed.
// Bindings (see products.wgsl): 0 input_grad_params, 2 dy, 3 w (conv2d_backward_input) or
// 4, 5 packed_lo, packed_hi (conv2d_backward_input_packed), 9 dst, dx (products.wgsl).
//
// conv2d_backward_input: dx[n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//   * w[co][ci][ky][kx] over the in-range dy positions (a gather, never a scatter).
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
// Lanes: (channel block, lane within it: class by class, input_grad_params.classes[i].x the
//   first of class i); input_grad_params.block_groups workgroups per channel block,
//   input_grad_params.len in all.
// Loop: one flat loop over the class's taps (co, ky, kx) (packed: one per binding of packed
//   weights); each step loads the 32 positions' dy values and the 32 weights
//   w[co][ci0..][ky][kx]: 32 + 32 loads for 32 * 32 FMAs.

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
    let lane = (group % input_grad_params.block_groups) * BLOCK_WORKGROUP + lid;
    var found = 0u;
    for (var c = 1u; c < input_grad_params.row_runs * input_grad_params.col_runs; c++) {
        if lane >= input_grad_params.classes[c].x {
            found = c;
        }
    }
    let class_entry = input_grad_params.classes[found];
    let first = (lane - class_entry.x) * BLOCK_POSITIONS;
    return InputClass(group / input_grad_params.block_groups, input_grad_params.row_run[class_entry.y], input_grad_params.col_run[class_entry.z], first);
}

// Positions per invocation: 8 Tiles of 4.
const BLOCK_POSITIONS: u32 = 32u;

// Where position `p` of a place (clamped to its last) reads dy (image and position, channel
// 0) and writes dx (image and position, channel 0), as a vec2.
fn class_position(place: InputClass, p: u32) -> vec2<u32> {
    let area = place.rows.y * place.cols.y;
    let q = min(p, input_grad_params.shape.batch * area - 1u);
    let image = q / area;
    let iy = place.rows.x + (q % area) / place.cols.y;
    let ix = place.cols.x + q % place.cols.y;
    let dy_offset = (image * input_grad_params.shape.out_channels * input_grad_params.shape.out_height + iy) * input_grad_params.shape.out_width + ix;
    let dx_offset = (image * input_grad_params.shape.in_channels * input_grad_params.shape.in_height + iy) * input_grad_params.shape.in_width + ix;
    return vec2<u32>(dy_offset, dx_offset);
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
    return vec4<f32>(dy_at(at.x - back), dy_at(at.y - back), dy_at(at.z - back), dy_at(at.w - back));
}

// Stores the 32 channels from ci of a Tile's positions (dx offsets `at`, channel 0) for the
// first `positions` of them.
fn bwd_input_store(t: Tile, at: vec4<u32>, ci: u32, positions: u32) {
    if ci >= input_grad_params.shape.in_channels {
        return;
    }
    let n = input_grad_params.shape.in_channels - ci;
    bwd_input_store_position(t, 0u, at.x + ci * input_plane(), select(0u, n, positions > 0u));
    bwd_input_store_position(t, 1u, at.y + ci * input_plane(), select(0u, n, positions > 1u));
    bwd_input_store_position(t, 2u, at.z + ci * input_plane(), select(0u, n, positions > 2u));
    bwd_input_store_position(t, 3u, at.w + ci * input_plane(), select(0u, n, positions > 3u));
}

fn input_plane() -> u32 {
    return input_grad_params.shape.in_height * input_grad_params.shape.in_width;
}

// Stores position p of a Tile, its first `n` channels, from dx offset `at`.
fn bwd_input_store_position(t: Tile, p: u32, at: u32, n: u32) {
    let plane = input_plane();
    let plane_4 = 4u * plane;
    store_channels(t.q0[p], at, plane, n, false);
    store_channels(t.q1[p], at + plane_4, plane, max(n, 4u) - 4u, false);
    store_channels(t.q2[p], at + 2u * plane_4, plane, max(n, 8u) - 8u, false);
    store_channels(t.q3[p], at + 3u * plane_4, plane, max(n, 12u) - 12u, false);
    store_channels(t.q4[p], at + 4u * plane_4, plane, max(n, 16u) - 16u, false);
    store_channels(t.q5[p], at + 5u * plane_4, plane, max(n, 20u) - 20u, false);
    store_channels(t.q6[p], at + 6u * plane_4, plane, max(n, 24u) - 24u, false);
    store_channels(t.q7[p], at + 7u * plane_4, plane, max(n, 28u) - 28u, false);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < input_grad_params.len {
        let place = input_class(wg, nwg, lid);
        bwd_input_store_block(place, backward_input_sums(place));
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_input_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < input_grad_params.len {
        let place = input_class(wg, nwg, lid);
        bwd_input_store_block(place, backward_input_sums_packed(place));
    }
}

// The sums of an input-gradient block with the weights read from w: one flat loop over the
// taps (co, ky, kx) that meet dy (see forward_sums).
fn backward_input_sums(place: InputClass) -> Block {
    let k = input_grad_params.shape.kernel;
    let kk = k * k;
    let ci0 = place.channel_block * BLOCK_CHANNELS;
    let last_ci = input_grad_params.shape.in_channels - 1u;
    let s = input_positions(place);
    let first = vec2<u32>(place.cols.z, place.rows.z);
    let end = first + vec2<u32>(place.cols.w, place.rows.w);
    var sums = zero_block();
    var t = vec3<u32>(first, 0u);
    for (var tap = 0u; tap < input_taps(place); tap++) {
        let wt = w32(t.z * input_grad_params.shape.in_channels * kk + t.y * k + t.x, kk, ci0, last_ci);
        sums = backward_input_tap(sums, s, t, wt);
        t = next_tap(t, first, end);
    }
    return sums;
}

// backward_input_sums with the weights packed: one flat loop over the taps per binding of
// packed weights. A block's slots start at a multiple of k * k, and so does packed_hi, so the
// split falls between two output channels.
fn backward_input_sums_packed(place: InputClass) -> Block {
    let k = input_grad_params.shape.kernel;
    let kk = k * k;
    let slot0 = place.channel_block * input_grad_params.block_steps;
    let split = input_grad_params.packed_split;
    let s = input_positions(place);
    let first = vec2<u32>(place.cols.z, place.rows.z);
    let end = first + vec2<u32>(place.cols.w, place.rows.w);
    let taps = input_taps(place);
    let lo_channels = min(input_grad_params.shape.out_channels, (max(split, slot0) - slot0) / kk);
    let lo_taps = min(taps, lo_channels * place.rows.w * place.cols.w);
    var sums = zero_block();
    var t = vec3<u32>(first, 0u);
    for (var tap = 0u; tap < lo_taps; tap++) {
        sums = backward_input_tap(sums, s, t, packed_weights(slot0 + (t.z * k + t.y) * k + t.x));
        t = next_tap(t, first, end);
    }
    for (var tap = lo_taps; tap < taps; tap++) {
        sums = backward_input_tap(sums, s, t, packed_weights_hi(slot0 + (t.z * k + t.y) * k + t.x, split));
        t = next_tap(t, first, end);
    }
    return sums;
}

fn zero_block() -> Block {
    let zero = tile_splat(Channels(mat4x4<f32>(), mat4x4<f32>()));
    return Block(zero, zero, zero, zero, zero, zero, zero, zero);
}

// The positions of the 8 Tiles of an invocation's block.
fn input_positions(place: InputClass) -> InputPositions {
    let p0 = place.first;
    return InputPositions(tile_positions(place, p0), tile_positions(place, p0 + 4u), tile_positions(place, p0 + 8u), tile_positions(place, p0 + 12u), tile_positions(place, p0 + 16u), tile_positions(place, p0 + 20u), tile_positions(place, p0 + 24u), tile_positions(place, p0 + 28u));
}

// The positions of the place's class.
fn class_positions(place: InputClass) -> u32 {
    return input_grad_params.shape.batch * place.rows.y * place.cols.y;
}

// The taps of the place's loop: (co, ky, kx) that meet dy; none for lanes past the last class.
fn input_taps(place: InputClass) -> u32 {
    let per_co = place.rows.w * place.cols.w;
    return select(0u, input_grad_params.shape.out_channels * per_co, place.first < class_positions(place));
}

// Stores the sums of an input-gradient block (its positions found again: once per invocation,
// a small cost beside the sums, and the entry points stay one line of work).
fn bwd_input_store_block(place: InputClass, sums: Block) {
    let s = input_positions(place);
    let ci0 = place.channel_block * BLOCK_CHANNELS;
    // Positions of the class left from each Tile's first.
    let left = max(class_positions(place), place.first) - place.first;
    bwd_input_store(sums.t0, s.s0.dx, ci0, left);
    bwd_input_store(sums.t1, s.s1.dx, ci0, max(left, 4u) - 4u);
    bwd_input_store(sums.t2, s.s2.dx, ci0, max(left, 8u) - 8u);
    bwd_input_store(sums.t3, s.s3.dx, ci0, max(left, 12u) - 12u);
    bwd_input_store(sums.t4, s.s4.dx, ci0, max(left, 16u) - 16u);
    bwd_input_store(sums.t5, s.s5.dx, ci0, max(left, 20u) - 20u);
    bwd_input_store(sums.t6, s.s6.dx, ci0, max(left, 24u) - 24u);
    bwd_input_store(sums.t7, s.s7.dx, ci0, max(left, 28u) - 28u);
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
fn backward_input_tap(sums: Block, s: InputPositions, t: vec3<u32>, wt: Channels) -> Block {
    let back = t.y * input_grad_params.shape.out_width + t.x - t.z * input_grad_params.shape.out_height * input_grad_params.shape.out_width;
    return Block(tile_fma(sums.t0, wt, dy_gather(s.s0.dy, back)), tile_fma(sums.t1, wt, dy_gather(s.s1.dy, back)), tile_fma(sums.t2, wt, dy_gather(s.s2.dy, back)), tile_fma(sums.t3, wt, dy_gather(s.s3.dy, back)), tile_fma(sums.t4, wt, dy_gather(s.s4.dy, back)), tile_fma(sums.t5, wt, dy_gather(s.s5.dy, back)), tile_fma(sums.t6, wt, dy_gather(s.s6.dy, back)), tile_fma(sums.t7, wt, dy_gather(s.s7.dy, back)));
}

