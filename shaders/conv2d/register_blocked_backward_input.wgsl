// Conv2d, register-blocked input gradient (see register_blocked.wgsl for the family).
// Entry points: conv2d_backward_input, conv2d_backward_input_packed.
// Bindings: 0 params, 1 src = dy, 2 dst = dx, 3 factor = w, 5, 6 packed weights.
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
// Lanes: (channel block, lane within it: class by class, params.classes[i].x the first of
//   class i); params.block_groups workgroups per channel block, params.len in all.
// Loop: one flat loop over the class's taps (co, ky, kx); each step loads the 32 positions' dy
//   values and the 32 weights w[co][ci0..][ky][kx]: 32 + 32 loads for 32 * 32 FMAs.

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
    return vec4<f32>(src_at(at.x - back), src_at(at.y - back), src_at(at.z - back), src_at(at.w - back));
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

