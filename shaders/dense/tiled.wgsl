// Dense, tiled (real GPUs). Entry points: dense_matmul, dense_matmul_bias (one TILE x TILE
// workgroup per output tile), dense_matmul_split, dense_matmul_bias_split (a workgroup per
// output, splitting k). Bindings: 0 params, 1 a, 2 c, 3 b, 4 bias (the *_bias entries).
// Module: common.wgsl, reads_storage.wgsl, this file.
//
// One TILE x TILE workgroup per output tile (2-D launch, x: columns, y: rows) staging TILE x TILE
// tiles of A and B in workgroup memory; each output summed over k in increasing order by one
// invocation.
// For products with few outputs and a long k (the forward of a small classifier layer), where
// a handful of tiles would each walk k alone, the tiled variant splits k instead: one workgroup
// of WORKGROUP_SIZE per output element (2-D launch (cols, rows)); invocation t sums
// k = t, t + WORKGROUP_SIZE, ... in order, and workgroup_sum adds those in a fixed tree.


// Side of the square output tile of a workgroup (the host's dense::TILE).
const TILE: u32 = 16u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

// A(row, k), or 0 past the edges of A.
fn a_or_zero(row: u32, k: u32) -> f32 {
    if row < params.rows && k < params.inner {
        return a_at(row, k);
    }
    return 0.0;
}

// B(k, col), or 0 past the edges of B.
fn b_or_zero(k: u32, col: u32) -> f32 {
    if k < params.inner && col < params.cols {
        return b_at(k, col);
    }
    return 0.0;
}

// sum_k A(row, k) * B(k, col) for this invocation's element of the workgroup's tile. Positions
// past the edges load as 0, which leaves in-range sums unchanged. Every invocation must call it
// (it holds barriers), even those whose element lies outside c.
fn tiled_dot(local: vec2<u32>, row: u32, col: u32) -> f32 {
    var sum = 0.0;
    for (var k0 = 0u; k0 < params.inner; k0 += TILE) {
        // a_tile[i][j] = A(tile row i, k0 + j); b_tile[i][j] = B(k0 + i, tile column j).
        a_tile[local.y][local.x] = a_or_zero(row, k0 + local.x);
        b_tile[local.y][local.x] = b_or_zero(k0 + local.y, col);
        workgroupBarrier();
        for (var j = 0u; j < TILE; j++) {
            sum += a_tile[local.y][j] * b_tile[j][local.x];
        }
        workgroupBarrier();
    }
    return sum;
}

// at = (column, row) of this invocation's element of c.
@compute @workgroup_size(TILE, TILE)
fn dense_matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let at = wid.xy * TILE + lid.xy;
    store_c(at.y, at.x, tiled_dot(lid.xy, at.y, at.x));
}

@compute @workgroup_size(TILE, TILE)
fn dense_matmul_bias(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let at = wid.xy * TILE + lid.xy;
    store_c(at.y, at.x, tiled_dot(lid.xy, at.y, at.x) + bias[min(at.x, last_col())]);
}

// ---- Split k ----

// sum_k A(row, k) * B(k, col): invocation t's share of k, then the workgroup's fixed tree.
// Every invocation must call it (it holds barriers).
fn split_dot(t: u32, row: u32, col: u32) -> f32 {
    var sum = 0.0;
    for (var k = t; k < params.inner; k += WORKGROUP_SIZE) {
        sum += a_at(row, k) * b_at(k, col);
    }
    return workgroup_sum(t, sum);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_matmul_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let total = split_dot(t, wid.y, wid.x);
    if t == 0u {
        store_c(wid.y, wid.x, total);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_matmul_bias_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let total = split_dot(t, wid.y, wid.x);
    if t == 0u {
        store_c(wid.y, wid.x, total + bias[wid.x]);
    }
}
