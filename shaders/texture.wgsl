// Staging of a storage buffer into an r32float texture (twin: the identity; src/gpu/texture.rs
// checks it). Why: lavapipe (Mesa 22.3) loads storage lane by lane, inserting each value into
// the SIMD vector through the stack, which costs a store-forwarding stall per lane on CPUs
// without AVX-512 (3.7 ns per float and lane on a 2-core AMD EPYC, against 1.0 ns for an
// r32float textureLoad). Kernels that load the same values many times read them from the
// texture instead (conv2d's register-blocked texture variant).
//
// texture_stage: staged[i % TEXTURE_WIDTH][i / TEXTURE_WIDTH] = src[i] for i < params.len:
//   element i at column i % TEXTURE_WIDTH of row i / TEXTURE_WIDTH. 1-D launch (flat_index).
//
// @binding(0) params: uniform TextureParams; (1) src: read; (2) staged: write-only r32float
// storage texture, TEXTURE_WIDTH wide and at least ceil(len / TEXTURE_WIDTH) rows high.

// Texels per row (the host's texture::TEXTURE_WIDTH): a power of two, so that readers find
// element i with a mask and a shift.
const TEXTURE_WIDTH: u32 = 4096u;

struct TextureParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: TextureParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var staged: texture_storage_2d<r32float, write>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn texture_stage(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < params.len {
        textureStore(staged, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), vec4<f32>(src[i], 0.0, 0.0, 1.0));
    }
}
