// Dense layer passes as matrix multiplies (twin of src/cpu/dense.rs).
//
// Every matmul entry point computes  c[m][p] = sum_k A(m, k) * B(k, p)  (+ bias[p] in the
// *_bias entries), with A as rows x inner, B as inner x cols and c row-major rows x cols.
// A and B are read through (row, column) strides in elements, so a transposed operand costs
// nothing: forward is x w^T (+ b), backward input is dy w, backward weights is dy^T x, and the
// bias gradient is the row sums of the same A = dy^T.
//
// Bindings (group 0), shared by every entry point (each uses a subset):
//   0 params: uniform MatmulParams
//   1 a: read            (also viewed as a4: array<vec4<f32>>)
//   2 c: read_write      (also viewed as c4: array<vec4<f32>>)
//   3 b: read            (also viewed as b4: array<vec4<f32>>)
//   4 bias: read         (the *_bias entries only)
//
// Two variants of the matmul (the host's dense::MatmulVariant); each sums every output in a
// fixed order, without atomics, so results are reproducible:
//
// Tiled (real GPUs): one TILE x TILE workgroup per output tile (2-D launch, x: columns, y: rows)
// staging TILE x TILE tiles of A and B in workgroup memory; each output summed over k in
// increasing order by one invocation.
//   dense_matmul, dense_matmul_bias
// For products with few outputs and a long k (the forward of a small classifier layer), where
// a handful of tiles would each walk k alone, the tiled variant splits k instead: one workgroup
// of WORKGROUP_SIZE per output element (2-D launch (cols, rows)); invocation t sums
// k = t, t + WORKGROUP_SIZE, ... in order, and workgroup_sum adds those in a fixed tree.
//   dense_matmul_split, dense_matmul_bias_split
//
// Register-blocked (CPU adapters such as lavapipe, where a workgroup is SIMD lanes on one CPU
// thread, and shared memory, barriers and every load instruction are expensive): no workgroup
// memory; each invocation keeps a block of outputs in registers and loads 4 floats per load
// where the layout allows. Out-of-range rows and columns of a block are clamped to the last
// one for loading (no divergent branches in the k loop) and skipped when storing.
//   dense_matmul_rb, dense_matmul_bias_rb   any strides. Block RB_M rows x RB_N columns; a
//       workgroup is RB_LANES invocations along rows sharing one column block.
//       Launch (ceil(cols / RB_N), ceil(rows / (RB_M * RB_LANES))).
//   dense_matmul_dot, dense_matmul_bias_dot   A and B contiguous along k (A row-major, B a
//       transposed row-major matrix), row strides and inner multiples of 4: A and B are read
//       as vec4 along k. Block DOT_M rows x DOT_N columns; a workgroup is DOT_LANES
//       invocations along rows sharing one column block.
//       Launch (ceil(cols / DOT_N), ceil(rows / (DOT_M * DOT_LANES))).
//   dense_matmul_axpy   B row-major with a row stride and cols multiples of 4: B and c are
//       read and written as vec4 along columns, A element by element. Block AXPY_M rows x
//       4 * AXPY_V columns; a workgroup is AXPY_LANES invocations along columns sharing one
//       row block, so they all read A at the same addresses.
//       Launch (ceil(cols / (4 * AXPY_V * AXPY_LANES)), ceil(rows / AXPY_M)).
//
// dense_backward_bias: c[m] = sum_k A(m, k), one workgroup per row of A (folded into 2-D past
// 65535 workgroups; the extra ones return), split over k like dense_matmul_split.

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

// The same buffers, four floats at a time (the dot and axpy kernels only). Every vec4 they
// touch lies inside the matrix, so a binding that is not a multiple of 16 bytes is fine.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;

fn a_at(row: u32, k: u32) -> f32 {
    return a[row * params.a_strides.x + k * params.a_strides.y];
}

fn b_at(k: u32, col: u32) -> f32 {
    return b[k * params.b_strides.x + col * params.b_strides.y];
}

// The last row and column of c, which clamped loads fall back to (0 for an empty matrix).
fn last_row() -> u32 {
    return max(params.rows, 1u) - 1u;
}

fn last_col() -> u32 {
    return max(params.cols, 1u) - 1u;
}

// ---- Tiled ----

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
        c[wid.y * params.cols + wid.x] = total;
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_matmul_bias_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let total = split_dot(t, wid.y, wid.x);
    if t == 0u {
        c[wid.y * params.cols + wid.x] = total + bias[wid.x];
    }
}

// ---- Register-blocked, any strides ----

// Block of one invocation and invocations per workgroup (the host's dense::RB_*).
const RB_M: u32 = 4u;
const RB_N: u32 = 4u;
const RB_LANES: u32 = 8u;

alias RbBlock = array<array<f32, RB_N>, RB_M>;

fn rb_sums(row0: u32, col0: u32) -> RbBlock {
    var rows: array<u32, RB_M>;
    for (var i = 0u; i < RB_M; i++) {
        rows[i] = min(row0 + i, last_row());
    }
    var cols: array<u32, RB_N>;
    for (var j = 0u; j < RB_N; j++) {
        cols[j] = min(col0 + j, last_col());
    }
    var acc: RbBlock;
    var k = 0u;
    // Four k at a time, then the rest; each sum still runs over k in increasing order.
    for (; k + 4u <= params.inner; k += 4u) {
        var bk: array<vec4<f32>, RB_N>;
        for (var j = 0u; j < RB_N; j++) {
            let col = cols[j];
            bk[j] = vec4(b_at(k, col), b_at(k + 1u, col), b_at(k + 2u, col), b_at(k + 3u, col));
        }
        for (var i = 0u; i < RB_M; i++) {
            let row = rows[i];
            let ak = vec4(a_at(row, k), a_at(row, k + 1u), a_at(row, k + 2u), a_at(row, k + 3u));
            for (var j = 0u; j < RB_N; j++) {
                var s = acc[i][j];
                s += ak.x * bk[j].x;
                s += ak.y * bk[j].y;
                s += ak.z * bk[j].z;
                s += ak.w * bk[j].w;
                acc[i][j] = s;
            }
        }
    }
    for (; k < params.inner; k++) {
        for (var i = 0u; i < RB_M; i++) {
            let ak = a_at(rows[i], k);
            for (var j = 0u; j < RB_N; j++) {
                acc[i][j] += ak * b_at(k, cols[j]);
            }
        }
    }
    return acc;
}

fn rb_store(row0: u32, col0: u32, acc: RbBlock, add: array<f32, RB_N>) {
    for (var i = 0u; i < RB_M; i++) {
        let row = row0 + i;
        for (var j = 0u; j < RB_N; j++) {
            let col = col0 + j;
            if row < params.rows && col < params.cols {
                c[row * params.cols + col] = acc[i][j] + add[j];
            }
        }
    }
}

@compute @workgroup_size(RB_LANES)
fn dense_matmul_rb(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = (wid.y * RB_LANES + lid.x) * RB_M;
    let col0 = wid.x * RB_N;
    var zero: array<f32, RB_N>;
    rb_store(row0, col0, rb_sums(row0, col0), zero);
}

@compute @workgroup_size(RB_LANES)
fn dense_matmul_bias_rb(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = (wid.y * RB_LANES + lid.x) * RB_M;
    let col0 = wid.x * RB_N;
    var add: array<f32, RB_N>;
    for (var j = 0u; j < RB_N; j++) {
        add[j] = bias[min(col0 + j, last_col())];
    }
    rb_store(row0, col0, rb_sums(row0, col0), add);
}

// ---- Register-blocked, A and B contiguous along k ----

// Block of one invocation and invocations per workgroup (the host's dense::DOT_*).
const DOT_M: u32 = 4u;
const DOT_N: u32 = 8u;
const DOT_LANES: u32 = 8u;

alias DotBlock = array<array<f32, DOT_N>, DOT_M>;

// A(row, k) = a4[row * a_strides.x / 4 + k / 4][k % 4]; B(k, col) likewise with b_strides.y.
fn dot_sums(row0: u32, col0: u32) -> DotBlock {
    var a_rows: array<u32, DOT_M>;
    for (var i = 0u; i < DOT_M; i++) {
        a_rows[i] = min(row0 + i, last_row()) * (params.a_strides.x / 4u);
    }
    var b_cols: array<u32, DOT_N>;
    for (var j = 0u; j < DOT_N; j++) {
        b_cols[j] = min(col0 + j, last_col()) * (params.b_strides.y / 4u);
    }
    var acc: DotBlock;
    for (var k4 = 0u; k4 < params.inner / 4u; k4++) {
        var bk: array<vec4<f32>, DOT_N>;
        for (var j = 0u; j < DOT_N; j++) {
            bk[j] = b4[b_cols[j] + k4];
        }
        for (var i = 0u; i < DOT_M; i++) {
            let ak = a4[a_rows[i] + k4];
            for (var j = 0u; j < DOT_N; j++) {
                var s = acc[i][j];
                s += ak.x * bk[j].x;
                s += ak.y * bk[j].y;
                s += ak.z * bk[j].z;
                s += ak.w * bk[j].w;
                acc[i][j] = s;
            }
        }
    }
    return acc;
}

fn dot_store(row0: u32, col0: u32, acc: DotBlock, add: array<f32, DOT_N>) {
    for (var i = 0u; i < DOT_M; i++) {
        let row = row0 + i;
        for (var j = 0u; j < DOT_N; j++) {
            let col = col0 + j;
            if row < params.rows && col < params.cols {
                c[row * params.cols + col] = acc[i][j] + add[j];
            }
        }
    }
}

@compute @workgroup_size(DOT_LANES)
fn dense_matmul_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = (wid.y * DOT_LANES + lid.x) * DOT_M;
    let col0 = wid.x * DOT_N;
    var zero: array<f32, DOT_N>;
    dot_store(row0, col0, dot_sums(row0, col0), zero);
}

@compute @workgroup_size(DOT_LANES)
fn dense_matmul_bias_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = (wid.y * DOT_LANES + lid.x) * DOT_M;
    let col0 = wid.x * DOT_N;
    var add: array<f32, DOT_N>;
    for (var j = 0u; j < DOT_N; j++) {
        add[j] = bias[min(col0 + j, last_col())];
    }
    dot_store(row0, col0, dot_sums(row0, col0), add);
}

// ---- Register-blocked, B and c contiguous along columns ----

// Block of one invocation (AXPY_M rows x AXPY_V vec4s of columns) and invocations per
// workgroup (the host's dense::AXPY_*).
const AXPY_M: u32 = 4u;
const AXPY_V: u32 = 4u;
const AXPY_LANES: u32 = 8u;

// Each vec4 accumulator holds four columns of one row: acc += A(row, k) * B(k, 4 columns)
// keeps every column's sum in increasing k.
@compute @workgroup_size(AXPY_LANES)
fn dense_matmul_axpy(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let v0 = (wid.x * AXPY_LANES + lid.x) * AXPY_V;
    let row0 = wid.y * AXPY_M;
    let vecs = params.cols / 4u;
    var b_vecs: array<u32, AXPY_V>;
    for (var j = 0u; j < AXPY_V; j++) {
        b_vecs[j] = min(v0 + j, max(vecs, 1u) - 1u);
    }
    var rows: array<u32, AXPY_M>;
    for (var i = 0u; i < AXPY_M; i++) {
        rows[i] = min(row0 + i, last_row());
    }
    let b_row = params.b_strides.x / 4u;
    var acc: array<array<vec4<f32>, AXPY_V>, AXPY_M>;
    for (var k = 0u; k < params.inner; k++) {
        var bk: array<vec4<f32>, AXPY_V>;
        for (var j = 0u; j < AXPY_V; j++) {
            bk[j] = b4[k * b_row + b_vecs[j]];
        }
        for (var i = 0u; i < AXPY_M; i++) {
            let ak = a_at(rows[i], k);
            for (var j = 0u; j < AXPY_V; j++) {
                acc[i][j] += ak * bk[j];
            }
        }
    }
    for (var i = 0u; i < AXPY_M; i++) {
        let row = row0 + i;
        for (var j = 0u; j < AXPY_V; j++) {
            let v = v0 + j;
            if row < params.rows && v < vecs {
                c4[row * vecs + v] = acc[i][j];
            }
        }
    }
}

// ---- Bias gradient ----

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * nwg.x;
    var sum = 0.0;
    if row < params.rows {
        for (var k = t; k < params.inner; k += WORKGROUP_SIZE) {
            sum += a_at(row, k);
        }
    }
    let total = workgroup_sum(t, sum);
    if row < params.rows && t == 0u {
        c[row] = total;
    }
}
