// Conv2d: the sums of the weight gradient's (and the tiled input gradient's) chunks of partial
// sums, for every variant. Entry points: conv2d_reduce, conv2d_reduce_split.
// Module: common.wgsl, reads_storage.wgsl, this file, pack.wgsl.
//
// conv2d_reduce: dst[i] = sum_(c < chunks, in order) src[c * partial_stride + partial_first + i]
//   for i < params.len (i + out_skip for i >= out_split): adds up the chunks of partial sums of
//   either variant's weight gradient (dw, db, or both in one pass).
//   One invocation per element, 1-D launch (flat_index).
// conv2d_reduce_split: the same sums for many chunks, where one invocation's chain of dependent
//   loads would be long: one workgroup per element (2-D launch folded like tile_origin), whose
//   invocation t adds chunks t, t + WORKGROUP_SIZE, ... in order, then workgroup_sum adds those
//   in a fixed tree. Deterministic too; it rounds differently from conv2d_reduce.
// Bindings: 0 params, 1 src = partial sums, 2 dst = dw or db.

fn partial_at(c: u32, i: u32) -> f32 {
    return src[c * params.partial_stride + params.partial_first + i];
}

fn reduced_at(i: u32) -> u32 {
    return i + select(0u, params.out_skip, i >= params.out_split);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        sum += partial_at(c, i);
    }
    dst[reduced_at(i)] = sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_reduce_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x + wg.y * nwg.x;
    var sum = 0.0;
    if i < params.len {
        for (var c = t; c < params.chunks; c += WORKGROUP_SIZE) {
            sum += partial_at(c, i);
        }
    }
    let total = workgroup_sum(t, sum);
    if i < params.len && t == 0u {
        dst[reduced_at(i)] = total;
    }
}
