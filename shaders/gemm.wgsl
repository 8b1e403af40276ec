// Register-blocked matrix multiply for CPU-like adapters (lavapipe), `bench`'s calibration
// yardstick: the fastest product we know on such an adapter, so that "how close is a training
// step to the adapter's matrix-multiply speed" is asked against a strong bound (twin:
// src/cpu/gemm.rs).
//
// gemm_register_blocked: c[m][p] = sum_k a[m][k] * b[k][p], summed over k in increasing order,
//   for a row-major rows x inner A, an inner x cols B and a row-major rows x cols C, with
//   inner a multiple of 4 (at most 256) and cols a multiple of 64.
//
// Why it is shaped so (measured on lavapipe, where an invocation is one lane of 8-wide SIMD on
// a CPU thread): every storage-buffer load is a loop over the lanes and costs as much as dozens
// of FMAs, while a uniform-buffer load is a cheap gather, and FMAs on accumulators held across
// the whole k loop are what is left. So an invocation owns a block of GEMM_ROWS rows x 64
// columns of C (in named vec4 accumulators; a private array indexed by a loop counter would live
// in memory), loads its A rows as vec4 along k (one load per row per 4 k), and reads B from a
// uniform binding that holds one 64-column block of B (inner x 64, row-major: the host packs B
// block by block, see cpu/gemm.rs). One dispatch per column block; params.block says which.
//
// The body of the entry point repeats per row and per column, so the host writes it out
// (src/gpu/gemm.rs, `expand`) at the `@block` line below, for GEMM_ROWS rows; as stored here
// the entry point does nothing, which keeps the file valid WGSL on its own.
//
// Launch: ceil(rows / (GEMM_ROWS * GEMM_WORKGROUP)) workgroups along rows. Rows past the end
// are clamped to the last row for loading (no divergent branches in the k loop) and skipped
// when storing.
//
// @binding(0) params: uniform GemmParams; (1) a: read, row-major, as vec4 along k;
// (2) b_block: uniform, one packed column block of B; (3) c: read_write, row-major, as vec4.

struct GemmParams {
    rows: u32,
    // inner / 4 and cols / 4: A's and C's row lengths in vec4.
    inner4: u32,
    cols4: u32,
    // Which 64-column block of C this dispatch computes.
    block: u32,
}

// One column block of C is 16 vec4 wide; invocations per workgroup. The host mirrors both
// (src/gpu/gemm.rs).
const GEMM_BLOCK_COLS4: u32 = 16u;
const GEMM_WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> params: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> b_block: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

// Where row `row` of A starts (in vec4), clamped to the last row.
fn gemm_a_start(row: u32) -> u32 {
    return min(row, params.rows - 1u) * params.inner4;
}

// Row k of the column block, columns 4 * j .. 4 * j + 3.
fn gemm_b(k: u32, j: u32) -> vec4<f32> {
    return b_block[k * GEMM_BLOCK_COLS4 + j];
}

fn gemm_store(row: u32, j: u32, value: vec4<f32>) {
    if row < params.rows {
        c[row * params.cols4 + params.block * GEMM_BLOCK_COLS4 + j] = value;
    }
}

@compute @workgroup_size(GEMM_WORKGROUP)
fn gemm_register_blocked(@builtin(global_invocation_id) gid: vec3<u32>) {
    // @block
}
