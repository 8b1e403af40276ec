// Preamble prepended to every shader file by src/gpu/kernel.rs.

// Threads per workgroup of every 1-D kernel (the host's gpu::kernel::WORKGROUP).
const WORKGROUP_SIZE: u32 = 64u;

// The index of this invocation in a 1-D launch that the host folds into 2-D when it needs
// more than 65535 workgroups (gpu::kernel::grid_1d).
fn flat_index(gid: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE;
}

// WGSL has no isNan/isInf: a float is finite unless its exponent bits are all ones.
fn is_finite_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}
