// Dense layer passes as matrix multiplies (twin of src/cpu/dense.rs; the host is
// src/gpu/dense/): the part of every module of the op.
//
// Every matmul entry point computes  c[m][p] = sum_k A(m, k) * B(k, p)  (+ bias[p] in the
// *_bias entries), with A as rows x inner, B as inner x cols and c row-major rows x cols.
// A and B are read through (row, column) strides in elements, so a transposed operand costs
// nothing: forward is x w^T (+ b), backward input is dy w, backward weights is dy^T x. The
// bias gradient, the row sums of the same dy^T, is a module of its own (backward_bias.wgsl,
// with its own params and bindings), which every variant runs.
//
// A module is MatmulParams (declared by the host, src/gpu/dense/scheme.rs), this file, one of
// reads_storage.wgsl / reads_texture.wgsl (how A and B are read:
// a_element(i) and a4_at(i), likewise for b), then the files of one variant family:
//   tiled.wgsl                          the tiled variant (real GPUs)
//   register_blocked.wgsl               the register-blocked variants (CPU adapters; with
//                                       reads_texture.wgsl, register-blocked-texture)
// Each host file lists its module's files (src/gpu/dense/tiled.rs, register_blocked.rs). Each
// sums every output in a fixed order, without atomics, so results are reproducible.
//
// Bindings (group 0), shared by every matmul entry point (each uses a subset):
//   0 params: uniform MatmulParams
//   1 a: read            (also viewed as a4: array<vec4<f32>>; see the reads files)
//   2 c: read_write      (also viewed as c4: array<vec4<f32>>)
//   3 b: read            (also viewed as b4: array<vec4<f32>>; see the reads files)
//   4 bias: read         (the *_bias entries only)

// MatmulParams: the uniform, declared by the host (src/gpu/dense/scheme.rs) with the fields'
// meaning, and listed before this file.

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// c four floats at a time (the axpy kernel only). Every vec4 it touches lies inside the
// matrix, so a binding that is not a multiple of 16 bytes is fine.
@group(0) @binding(2) var<storage, read_write> c4: array<vec4<f32>>;

fn a_at(row: u32, k: u32) -> f32 {
    return a_element(row * params.a_strides.x + k * params.a_strides.y);
}

fn b_at(k: u32, col: u32) -> f32 {
    return b_element(k * params.b_strides.x + col * params.b_strides.y);
}

// c[row][col] = v where (row, col) lies inside c (blocks and tiles past its edges skip it).
fn store_c(row: u32, col: u32, v: f32) {
    if row < params.rows && col < params.cols {
        c[row * params.cols + col] = v;
    }
}

// The last row and column of c, which clamped loads fall back to (0 for an empty matrix).
fn last_row() -> u32 {
    return max(params.rows, 1u) - 1u;
}

fn last_col() -> u32 {
    return max(params.cols, 1u) - 1u;
}

