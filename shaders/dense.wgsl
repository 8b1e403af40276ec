// Dense layer passes as one tiled matrix multiply (twin of src/cpu/dense.rs).
//
// dense_matmul:        c[m][p] = sum_k A(m, k) * B(k, p)             bindings 0..3
// dense_matmul_bias:   c[m][p] = sum_k A(m, k) * B(k, p) + bias[p]   bindings 0..4
// dense_backward_bias: c[m]    = sum_k A(m, k)                       bindings 0..2
//
// A is rows x inner and B is inner x cols, each read through (row, column) strides in elements,
// so a transposed operand costs nothing: forward is x w^T (+ b), backward input is dy w,
// backward weights is dy^T x, and the bias gradient is the row sums of the same A = dy^T.
// c is row-major rows x cols (a vector of rows for dense_backward_bias).
//
// @binding(0) params: uniform MatmulParams; (1) a: read; (2) c: read_write; (3) b: read;
// (4) bias: read.
// The matmuls run one TILE x TILE workgroup per output tile (x: columns, y: rows, 2-D launch);
// dense_backward_bias runs one invocation per row of A (1-D launch, flat_index).
// Every sum runs over k in increasing order in one invocation, so results are reproducible.

struct MatmulParams {
    rows: u32,
    cols: u32,
    inner: u32,
    _pad: u32,
    // (row stride, column stride) in elements of each operand.
    a_strides: vec2<u32>,
    b_strides: vec2<u32>,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Side of the square output tile of a workgroup (the host's dense::TILE).
const TILE: u32 = 16u;

var<workgroup> a_tile: array<array<f32, TILE>, TILE>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE>;

fn a_at(row: u32, k: u32) -> f32 {
    return a[row * params.a_strides.x + k * params.a_strides.y];
}

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
        return b[k * params.b_strides.x + col * params.b_strides.y];
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

@compute @workgroup_size(TILE, TILE)
fn dense_matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let sum = tiled_dot(lid.xy, row, col);
    if row < params.rows && col < params.cols {
        c[row * params.cols + col] = sum;
    }
}

@compute @workgroup_size(TILE, TILE)
fn dense_matmul_bias(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let sum = tiled_dot(lid.xy, row, col);
    if row < params.rows && col < params.cols {
        c[row * params.cols + col] = sum + bias[col];
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if row >= params.rows {
        return;
    }
    var sum = 0.0;
    for (var k = 0u; k < params.inner; k++) {
        sum += a_at(row, k);
    }
    c[row] = sum;
}
