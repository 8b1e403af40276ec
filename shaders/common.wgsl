// Preamble prepended to every shader file by src/gpu/kernel.rs.

// Threads per workgroup of every 1-D kernel (the host's gpu::kernel::WORKGROUP).
const WORKGROUP_SIZE: u32 = 64u;

// The index of this invocation in a 1-D launch that the host folds into 2-D when it needs
// more than 65535 workgroups (gpu::kernel::grid_1d).
fn flat_index(gid: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE;
}

// Workgroup memory of workgroup_sum.
var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

// The total of `value` over a 1-D workgroup of WORKGROUP_SIZE invocations (t: this one's local
// index), by a fixed tree, so the same bits every run. Holds barriers: every invocation of the
// workgroup must call it.
fn workgroup_sum(t: u32, value: f32) -> f32 {
    partial[t] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if t < stride {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// WGSL has no isNan/isInf: a float is finite unless its exponent bits are all ones.
fn is_finite_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Counter-based random numbers, twin of src/rng.rs: a pure function of (seed, step, counter).
fn mix32(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

fn random_u32(seed: u32, step: u32, counter: u32) -> u32 {
    return mix32(counter ^ mix32(step ^ mix32(seed)));
}

// Uniform in [0, 1) with 24 random bits, exact in f32.
fn random_unit(seed: u32, step: u32, counter: u32) -> f32 {
    return f32(random_u32(seed, step, counter) >> 8u) * (1.0 / 16777216.0);
}

// The per-step key of stochastic kernels (dropout, augmentation), rewritten by the host before
// every training step: the run's seed32 and the step number (from 1).
struct StepKey {
    seed: u32,
    step: u32,
    _pad0: u32,
    _pad1: u32,
}
