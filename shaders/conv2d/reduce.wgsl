// Conv2d: the sums of the weight gradient's (and the tiled input gradient's) chunks of partial
// sums, for every variant. Entry points: conv2d_reduce, conv2d_reduce_split.
// Module: common.wgsl, this file, pack.wgsl.
//
// conv2d_reduce: sums[i] = sum_(c < chunks, in order) partial_sums[c * stride + first + i]
//   for i < len (i + skip for i >= split): adds up the chunks of partial sums of any variant's
//   weight gradient (dw, db, or both in one pass) or of the tiled input gradient (dx).
//   One invocation per element, 1-D launch (flat_index).
// conv2d_reduce_split: the same sums for many chunks, where one invocation's chain of dependent
//   loads would be long: one workgroup per element (2-D launch folded like tile_origin), whose
//   invocation t adds chunks t, t + WORKGROUP_SIZE, ... in order, then workgroup_sum adds those
//   in a fixed tree. Deterministic too; it rounds differently from conv2d_reduce.
// Bindings: 0 reduce_params, 1 partial_sums, 2 sums (dw, db, dw and db, or dx).

// Conv2dReduceParams: the uniform, declared by the host (src/gpu/conv2d/sums.rs) with the
// fields' meaning, and listed before this file.

@group(0) @binding(0) var<uniform> reduce_params: Conv2dReduceParams;
@group(0) @binding(1) var<storage, read> partial_sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

fn partial_at(c: u32, i: u32) -> f32 {
    return partial_sums[c * reduce_params.stride + reduce_params.first + i];
}

fn reduced_at(i: u32) -> u32 {
    return i + select(0u, reduce_params.skip, i >= reduce_params.split);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= reduce_params.len {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < reduce_params.chunks; c++) {
        sum += partial_at(c, i);
    }
    sums[reduced_at(i)] = sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x + wg.y * nwg.x;
    var sum = 0.0;
    if i < reduce_params.len {
        for (var c = t; c < reduce_params.chunks; c += WORKGROUP_SIZE) {
            sum += partial_at(c, i);
        }
    }
    let total = workgroup_sum(t, sum);
    if i < reduce_params.len && t == 0u {
        sums[reduced_at(i)] = total;
    }
}
