// Conv2d, tiled (real GPUs). Entry points: conv2d_forward_tiled, conv2d_backward_input_tiled,
// conv2d_backward_weights_tiled. Bindings: 0 tiled_params (Conv2dTiledParams), 1 src (B's
// tensor: x, or dy for the input gradient), 2 dst (C's: y, dx, or partial sums), 3 factor (A's:
// w, or dy for the weight gradient), 4 bias (forward). One module of three entry points that
// share the product code, so the operands keep the product's names.
// Module: common.wgsl, this file.
//
// Each pass is an implicit GEMM, C (M x N) = A (M x K) B (K x N),
// with A and B read straight from the tensors (nothing is lowered to columns in memory):
// The tiled kernels alone handle strides and padding: x's position under tap (ky, kx) of
// output (oy, ox) is (oy * stride + ky - pad, ox * stride + kx - pad), and a tap on the
// padding reads 0.
//   conv2d_forward_tiled           M: out channels co   N: output positions (n, oy, ox)
//       K: (ci, ky, kx)            A = w[co][ci][ky][kx], B = x[n][ci] at that position;
//       C starts at the bias and is rectified on store when tiled_params.relu == 1; stored as y.
//   conv2d_backward_input_tiled    M: in channels ci    N: input positions (n, iy, ix)
//       K: (co, ky, kx)            A = w[co][ci][ky][kx], B = dy[n][co] at the output position
//       whose tap (ky, kx) reads (iy, ix) (0 where there is none); stored as dx, or, where
//       the host splits K into chunks of tiled_params.chunk_k terms (a small N fills too few
//       workgroups to keep a large GPU busy), as chunk c's partial dx at c * partial_stride,
//       which conv2d_reduce adds in chunk order.
//   conv2d_backward_weights_tiled  M: out channels co   N: weights (ci, ky, kx), then one more
//       K: the output positions (n, oy, ox) of one chunk of row segments
//       A = dy[n][co][oy][ox], B = x[n][ci] under tap (ky, kx) of (oy, ox), and 1 in the extra
//       last column, whose sums are the bias gradient; stored as the chunk's partial sums.
// Positions (n, y, x) are numbered image by image, row by row, so N spans the whole batch.
//
// A workgroup of TILE_THREADS_N x TILE_THREADS_M invocations computes one TILE_M x TILE_N tile
// of C. For each step of TILE_K along K it stages the TILE_M x TILE_K slice of A and the
// TILE_K x TILE_N slice of B in workgroup memory (zeros past the edges of A, B and K), waits,
// and every invocation adds the products for its 4 x 4 outputs: rows m0 + ty + TILE_THREADS_M
// * i and columns n0 + tx + TILE_THREADS_N * j (i, j < 4), so that neighbouring invocations
// read neighbouring words of b_tile and store neighbouring outputs. Staging: an invocation
// loads A at one k for TILE_M * TILE_K / TILE_THREADS rows (neighbours take neighbouring k,
// which lie next to each other in w and dy), and B at one column for TILE_K * TILE_N /
// TILE_THREADS k (neighbours take neighbouring positions, next to each other in x and dy).
// Each output is summed over k in increasing order by one invocation: deterministic.
// Workgroups: (chunk, m tile, n tile), n tile fastest, folded into 2-D past 65535
// (tile_index); tiled_params.len of them do work (chunks: backward weights and input only).
// Workgroup memory: TILE_K x (TILE_M + 1) + TILE_K x TILE_N floats = 10,304 bytes.

// Conv2dTiledParams (its first member a Conv2dShape): the uniform, declared by the host
// (src/gpu/conv2d/tiled.rs and mod.rs) with the fields' meaning, and listed before this file.

@group(0) @binding(0) var<uniform> tiled_params: Conv2dTiledParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> factor: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// The tile of one workgroup and its invocations; the host mirrors TILE_M and TILE_N.
const TILE_M: u32 = 32u;
const TILE_N: u32 = 128u;
const TILE_K: u32 = 16u;
const TILE_THREADS_M: u32 = 8u;
const TILE_THREADS_N: u32 = 32u;
const TILE_THREADS: u32 = 256u;
// Row stride of a_tile: one word of padding puts the TILE_K values that neighbouring
// invocations stage for one row into different memory banks.
const A_TILE_STRIDE: u32 = TILE_M + 1u;

// a_tile[k * A_TILE_STRIDE + m] = A(m0 + m, k0 + k); b_tile[k * TILE_N + n] = B(k0 + k, n0 + n).
var<workgroup> a_tile: array<f32, TILE_K * A_TILE_STRIDE>;
var<workgroup> b_tile: array<f32, TILE_K * TILE_N>;

// Which pass's product (A, B, M, N) a tiled kernel computes. Entry points pass constants, so
// each one's code is specialised when inlined.
const GEMM_FORWARD: u32 = 0u;
const GEMM_BACKWARD_INPUT: u32 = 1u;
const GEMM_BACKWARD_WEIGHTS: u32 = 2u;

// M of the product.
fn gemm_rows(gemm: u32) -> u32 {
    if gemm == GEMM_BACKWARD_INPUT {
        return tiled_params.shape.in_channels;
    }
    return tiled_params.shape.out_channels;
}

// The workgroup's place: its index in the launch and the first row, column and chunk of its
// tile.
struct TileOrigin {
    index: u32,
    m0: u32,
    n0: u32,
    chunk: u32,
}

fn tile_origin(wg: vec3<u32>, nwg: vec3<u32>) -> TileOrigin {
    let t = wg.x + wg.y * nwg.x;
    let m_tile = (t / tiled_params.n_tiles) % tiled_params.m_tiles;
    return TileOrigin(t, m_tile * TILE_M, (t % tiled_params.n_tiles) * TILE_N, t / (tiled_params.n_tiles * tiled_params.m_tiles));
}

// What loading column n of B takes for every k, worked out once per invocation.
struct Column {
    // forward: where x holds image n's channel 0; backward input: where dy holds image n's
    // channel 0; backward weights: where x holds image 0's channel ci.
    at: u32,
    // forward: the output position (oy, ox); backward input: the input position (iy, ix);
    // backward weights: the kernel tap (ky, kx).
    y: u32,
    x: u32,
    // The column holds tensor values (inside N; backward weights: and not the bias column).
    live: bool,
    // backward weights: the bias column, all ones.
    ones: bool,
}

fn b_column(gemm: u32, n: u32) -> Column {
    let ks = tiled_params.shape.kernel;
    let in_plane = tiled_params.shape.in_height * tiled_params.shape.in_width;
    let out_plane = tiled_params.shape.out_height * tiled_params.shape.out_width;
    if gemm == GEMM_FORWARD {
        let img = n / out_plane;
        let p = n % out_plane;
        let at = img * tiled_params.shape.in_channels * in_plane;
        return Column(at, p / tiled_params.shape.out_width, p % tiled_params.shape.out_width, n < tiled_params.shape.batch * out_plane, false);
    }
    if gemm == GEMM_BACKWARD_INPUT {
        let img = n / in_plane;
        let iy = (n % in_plane) / tiled_params.shape.in_width;
        let ix = n % tiled_params.shape.in_width;
        let at = img * tiled_params.shape.out_channels * out_plane;
        return Column(at, iy, ix, n < tiled_params.shape.batch * in_plane, false);
    }
    let weights = tiled_params.shape.in_channels * ks * ks;
    let ci = n / (ks * ks);
    let ky = (n % (ks * ks)) / ks;
    return Column(ci * in_plane, ky, n % ks, n < weights, n == weights);
}

// The input offset (row * in_width + column) under kernel tap (ky, kx) of output position
// (oy, ox), or -1 where that tap falls on the padding.
fn input_offset(oy: u32, ox: u32, ky: u32, kx: u32) -> i32 {
    let iy = i32(oy * tiled_params.stride + ky) - i32(tiled_params.pad);
    let ix = i32(ox * tiled_params.stride + kx) - i32(tiled_params.pad);
    if iy < 0 || ix < 0 || iy >= i32(tiled_params.shape.in_height) || ix >= i32(tiled_params.shape.in_width) {
        return -1;
    }
    return iy * i32(tiled_params.shape.in_width) + ix;
}

// The output offset (oy * out_width + ox) whose tap (ky, kx) reads input position (iy, ix), or
// -1 where there is none (outside the output, or between strides).
fn output_offset(iy: u32, ix: u32, ky: u32, kx: u32) -> i32 {
    let ty = i32(iy + tiled_params.pad) - i32(ky);
    let tx = i32(ix + tiled_params.pad) - i32(kx);
    let s = i32(tiled_params.stride);
    if ty < 0 || tx < 0 || ty % s != 0 || tx % s != 0 {
        return -1;
    }
    let oy = ty / s;
    let ox = tx / s;
    if oy >= i32(tiled_params.shape.out_height) || ox >= i32(tiled_params.shape.out_width) {
        return -1;
    }
    return oy * i32(tiled_params.shape.out_width) + ox;
}

// A(m, k), or 0 past the edges of A and outside [0, k_end).
fn a_at(gemm: u32, m: u32, k: u32, k_end: u32) -> f32 {
    if m >= gemm_rows(gemm) || k >= k_end {
        return 0.0;
    }
    let kk = tiled_params.shape.kernel * tiled_params.shape.kernel;
    if gemm == GEMM_FORWARD {
        // w[co = m][(ci, ky, kx) = k]
        return factor[m * tiled_params.shape.in_channels * kk + k];
    }
    if gemm == GEMM_BACKWARD_INPUT {
        // w[co][ci = m][ky][kx] with (co, ky, kx) = k
        return factor[((k / kk) * tiled_params.shape.in_channels + m) * kk + k % kk];
    }
    // dy[n][co = m][oy][ox] with (n, oy, ox) = k
    let out_plane = tiled_params.shape.out_height * tiled_params.shape.out_width;
    return factor[((k / out_plane) * tiled_params.shape.out_channels + m) * out_plane + k % out_plane];
}

// B(k, column), or 0 past the edges of B, outside [0, k_end) and on the padding.
fn b_at(gemm: u32, column: Column, k: u32, k_end: u32) -> f32 {
    if k >= k_end {
        return 0.0;
    }
    if column.ones {
        return 1.0;
    }
    if !column.live {
        return 0.0;
    }
    let ks = tiled_params.shape.kernel;
    let in_plane = tiled_params.shape.in_height * tiled_params.shape.in_width;
    if gemm == GEMM_BACKWARD_WEIGHTS {
        // x[n][ci][oy * stride + ky - pad][ox * stride + kx - pad] with (n, oy, ox) = k
        let out_plane = tiled_params.shape.out_height * tiled_params.shape.out_width;
        let p = k % out_plane;
        let offset = input_offset(p / tiled_params.shape.out_width, p % tiled_params.shape.out_width, column.y, column.x);
        if offset < 0 {
            return 0.0;
        }
        return src[column.at + (k / out_plane) * tiled_params.shape.in_channels * in_plane + u32(offset)];
    }
    let c = k / (ks * ks);
    let ky = (k % (ks * ks)) / ks;
    let kx = k % ks;
    if gemm == GEMM_FORWARD {
        // x[n][ci = c][oy * stride + ky - pad][ox * stride + kx - pad]
        let offset = input_offset(column.y, column.x, ky, kx);
        if offset < 0 {
            return 0.0;
        }
        return src[column.at + c * in_plane + u32(offset)];
    }
    // dy[n][co = c][oy][ox] for the output position whose tap (ky, kx) reads (iy, ix)
    let offset = output_offset(column.y, column.x, ky, kx);
    if offset < 0 {
        return 0.0;
    }
    return src[column.at + c * tiled_params.shape.out_height * tiled_params.shape.out_width + u32(offset)];
}

// The 4 x 4 outputs of invocation `tid` in the tile at (m0, n0) of the product `gemm`:
// `init` plus the sum over k_begin <= k < k_end, in increasing k. acc[j][i] is row
// m0 + tid.y + TILE_THREADS_M * i, column n0 + tid.x + TILE_THREADS_N * j. Holds barriers:
// every invocation of the workgroup must call it, with the same m0, n0, k_begin and k_end.
fn tiled_product(gemm: u32, tid: vec2<u32>, m0: u32, n0: u32, k_begin: u32, k_end: u32, init: mat4x4<f32>) -> mat4x4<f32> {
    let flat = tid.y * TILE_THREADS_N + tid.x;
    let a_k = flat % TILE_K;
    let b_n = flat % TILE_N;
    let column = b_column(gemm, n0 + b_n);
    var acc = init;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var r = 0u; r < TILE_M * TILE_K / TILE_THREADS; r++) {
            let m = flat / TILE_K + r * (TILE_THREADS / TILE_K);
            a_tile[a_k * A_TILE_STRIDE + m] = a_at(gemm, m0 + m, k0 + a_k, k_end);
        }
        for (var r = 0u; r < TILE_K * TILE_N / TILE_THREADS; r++) {
            let k = flat / TILE_N + r * (TILE_THREADS / TILE_N);
            b_tile[k * TILE_N + b_n] = b_at(gemm, column, k0 + k, k_end);
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            let a = k * A_TILE_STRIDE + tid.y;
            let b = k * TILE_N + tid.x;
            acc = outer_acc(acc, vec4<f32>(a_tile[a], a_tile[a + TILE_THREADS_M], a_tile[a + 2u * TILE_THREADS_M], a_tile[a + 3u * TILE_THREADS_M]), vec4<f32>(b_tile[b], b_tile[b + TILE_THREADS_N], b_tile[b + 2u * TILE_THREADS_N], b_tile[b + 3u * TILE_THREADS_N]));
        }
        workgroupBarrier();
    }
    return acc;
}

// Stores an invocation's outputs of a forward or backward-input tile: rows are channels of an
// NCHW tensor with `channels` channels of `plane` positions, columns its (image, position)
// pairs; only those inside the tensor, rectified when `relu`.
fn store_activation_tile(acc: mat4x4<f32>, tile: TileOrigin, tid: vec2<u32>, channels: u32, plane: u32, relu: bool, base: u32) {
    var sums = acc;
    for (var j = 0u; j < 4u; j++) {
        let n = tile.n0 + tid.x + j * TILE_THREADS_N;
        if n >= tiled_params.shape.batch * plane {
            break;
        }
        let at = base + (n / plane) * channels * plane + n % plane;
        for (var i = 0u; i < 4u; i++) {
            let m = tile.m0 + tid.y + i * TILE_THREADS_M;
            if m < channels {
                let v = sums[j][i];
                dst[at + m * plane] = select(v, max(v, 0.0), relu);
            }
        }
    }
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= tiled_params.len {
        return;
    }
    // Every sum starts at its channel's bias.
    let last = tiled_params.shape.out_channels - 1u;
    let m = tile.m0 + lid.y;
    let b = vec4<f32>(bias[min(m, last)], bias[min(m + TILE_THREADS_M, last)], bias[min(m + 2u * TILE_THREADS_M, last)], bias[min(m + 3u * TILE_THREADS_M, last)]);
    let reduction = tiled_params.shape.in_channels * tiled_params.shape.kernel * tiled_params.shape.kernel;
    let acc = tiled_product(GEMM_FORWARD, lid.xy, tile.m0, tile.n0, 0u, reduction, splat4(b));
    store_activation_tile(acc, tile, lid.xy, tiled_params.shape.out_channels, tiled_params.shape.out_height * tiled_params.shape.out_width, tiled_params.relu == 1u, 0u);
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_backward_input_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= tiled_params.len {
        return;
    }
    // Chunk c sums its tiled_params.chunk_k terms into its partial dx at c * partial_stride.
    let reduction = tiled_params.shape.out_channels * tiled_params.shape.kernel * tiled_params.shape.kernel;
    let k_begin = tile.chunk * tiled_params.chunk_k;
    let k_end = min(k_begin + tiled_params.chunk_k, reduction);
    let acc = tiled_product(GEMM_BACKWARD_INPUT, lid.xy, tile.m0, tile.n0, k_begin, k_end, mat4x4<f32>());
    store_activation_tile(acc, tile, lid.xy, tiled_params.shape.in_channels, tiled_params.shape.in_height * tiled_params.shape.in_width, false, tile.chunk * tiled_params.partial_stride);
}

@compute @workgroup_size(TILE_THREADS_N, TILE_THREADS_M)
fn conv2d_backward_weights_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tile = tile_origin(wg, nwg);
    if tile.index >= tiled_params.len {
        return;
    }
    // The chunk's row segments, as a range of output positions.
    let first = tile.chunk * tiled_params.chunk_rows;
    let end = min(first + tiled_params.chunk_rows, tiled_params.shape.batch * tiled_params.shape.out_height);
    let sums = tiled_product(GEMM_BACKWARD_WEIGHTS, lid.xy, tile.m0, tile.n0, first * tiled_params.shape.out_width, end * tiled_params.shape.out_width, mat4x4<f32>());

    // Column `weights` (the bias column) goes to the chunk's db, the others to its dw.
    var acc = sums;
    let weights = tiled_params.shape.in_channels * tiled_params.shape.kernel * tiled_params.shape.kernel;
    let chunk_at = tile.chunk * tiled_params.partial_stride;
    for (var j = 0u; j < 4u; j++) {
        let n = tile.n0 + lid.x + j * TILE_THREADS_N;
        if n > weights {
            break;
        }
        for (var i = 0u; i < 4u; i++) {
            let co = tile.m0 + lid.y + i * TILE_THREADS_M;
            if co < tiled_params.shape.out_channels {
                let at = select(co * weights + n, tiled_params.shape.out_channels * weights + co, n == weights);
                dst[chunk_at + at] = acc[j][i];
            }
        }
    }
}

