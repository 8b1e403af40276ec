// Dense, register-blocked (CPU adapters such as lavapipe, where a workgroup is SIMD lanes on one
// CPU thread, and shared memory, barriers and every load instruction are expensive): no
// workgroup memory; each invocation keeps a block of outputs in registers and loads 4 floats
// per load where the layout allows. Out-of-range rows and columns of a block are clamped to the
// last one for loading (no divergent branches in the k loop) and skipped when storing. A and B
// are read only through the accessors of reads_storage.wgsl (register-blocked) or
// reads_texture.wgsl (register-blocked-texture). Bindings: 0 params, 1 a, 2 c (and c4), 3 b,
// 4 bias (the *_bias entries). Entry points:
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

// s + a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w, added in that order (the k order).
fn add_products4(s: f32, a: vec4<f32>, b: vec4<f32>) -> f32 {
    var sum = s;
    sum += a.x * b.x;
    sum += a.y * b.y;
    sum += a.z * b.z;
    sum += a.w * b.w;
    return sum;
}

// ---- Register-blocked, any strides ----

// Block of one invocation and invocations per workgroup (the host's `RB` in src/gpu/dense/scheme.rs).
const RB_M: u32 = 4u;
const RB_N: u32 = 4u;
const RB_LANES: u32 = 8u;

// The sums of one invocation's block: up to 4 rows (RB_M, DOT_M) x 8 columns (RB_N, DOT_N).
// Each scheme touches only its RB_N or DOT_N columns, constants after inlining, so the rest
// cost nothing.
alias Block = array<array<f32, 8>, 4>;

// The bias of a block's columns (col0.., clamped to the last); zeros (BlockBias()) for the
// kernels without a bias.
alias BlockBias = array<f32, 8>;

fn block_bias(col0: u32) -> BlockBias {
    var add: BlockBias;
    for (var j = 0u; j < 8u; j++) {
        add[j] = bias[min(col0 + j, last_col())];
    }
    return add;
}

// The first row and column of the block of invocation `lane` of workgroup `wid`, for blocks of
// size.x rows x size.y columns and size.z lanes a workgroup along rows.
fn block_origin(lane: u32, wid: vec3<u32>, size: vec3<u32>) -> vec2<u32> {
    return vec2<u32>((wid.y * size.z + lane) * size.x, wid.x * size.y);
}

// Stores the first size.x rows x size.y columns of `acc` plus `add` from row o.x, column o.y
// (store_c skips what lies outside c).
fn store_block(o: vec2<u32>, acc: Block, size: vec2<u32>, add: BlockBias) {
    for (var i = 0u; i < size.x; i++) {
        for (var j = 0u; j < size.y; j++) {
            store_c(o.x + i, o.y + j, acc[i][j] + add[j]);
        }
    }
}

fn rb_sums(row0: u32, col0: u32) -> Block {
    var rows: array<u32, RB_M>;
    for (var i = 0u; i < RB_M; i++) {
        rows[i] = min(row0 + i, last_row());
    }
    var cols: array<u32, RB_N>;
    for (var j = 0u; j < RB_N; j++) {
        cols[j] = min(col0 + j, last_col());
    }
    var acc: Block;
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
                acc[i][j] = add_products4(acc[i][j], ak, bk[j]);
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

// Runs the block of invocation `lane` of workgroup `wid` (lanes along rows share a column
// block) and stores it plus `add`.
fn rb_block(lane: u32, wid: vec3<u32>, add: BlockBias) {
    let o = block_origin(lane, wid, vec3<u32>(RB_M, RB_N, RB_LANES));
    store_block(o, rb_sums(o.x, o.y), vec2<u32>(RB_M, RB_N), add);
}

// ---- Register-blocked, A and B contiguous along k ----

// Block of one invocation and invocations per workgroup (the host's `DOT` in src/gpu/dense/scheme.rs).
const DOT_M: u32 = 4u;
const DOT_N: u32 = 8u;
const DOT_LANES: u32 = 8u;

// A(row, k) = a4_at(row * a_strides.x / 4 + k / 4)[k % 4]; B(k, col) likewise with b_strides.y.
fn dot_sums(row0: u32, col0: u32) -> Block {
    var a_rows: array<u32, DOT_M>;
    for (var i = 0u; i < DOT_M; i++) {
        a_rows[i] = min(row0 + i, last_row()) * (params.a_strides.x / 4u);
    }
    var b_cols: array<u32, DOT_N>;
    for (var j = 0u; j < DOT_N; j++) {
        b_cols[j] = min(col0 + j, last_col()) * (params.b_strides.y / 4u);
    }
    var acc: Block;
    for (var k4 = 0u; k4 < params.inner / 4u; k4++) {
        var bk: array<vec4<f32>, DOT_N>;
        for (var j = 0u; j < DOT_N; j++) {
            bk[j] = b4_at(b_cols[j] + k4);
        }
        for (var i = 0u; i < DOT_M; i++) {
            let ak = a4_at(a_rows[i] + k4);
            for (var j = 0u; j < DOT_N; j++) {
                acc[i][j] = add_products4(acc[i][j], ak, bk[j]);
            }
        }
    }
    return acc;
}

fn dot_block(lane: u32, wid: vec3<u32>, add: BlockBias) {
    let o = block_origin(lane, wid, vec3<u32>(DOT_M, DOT_N, DOT_LANES));
    store_block(o, dot_sums(o.x, o.y), vec2<u32>(DOT_M, DOT_N), add);
}

// ---- Entry points of the two schemes above (the bias forms add b along columns) ----

@compute @workgroup_size(RB_LANES)
fn dense_matmul_rb(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    rb_block(lid.x, wid, BlockBias());
}

@compute @workgroup_size(DOT_LANES)
fn dense_matmul_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    dot_block(lid.x, wid, BlockBias());
}

@compute @workgroup_size(RB_LANES)
fn dense_matmul_bias_rb(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    rb_block(lid.x, wid, block_bias(wid.x * RB_N));
}

@compute @workgroup_size(DOT_LANES)
fn dense_matmul_bias_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    dot_block(lid.x, wid, block_bias(wid.x * DOT_N));
}

// ---- Register-blocked, B and c contiguous along columns ----

// Block of one invocation (AXPY_M rows x AXPY_V vec4s of columns) and invocations per
// workgroup (the host's `AXPY` in src/gpu/dense/scheme.rs).
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
            bk[j] = b4_at(k * b_row + b_vecs[j]);
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
