// Conv2d, register-blocked: the values that every lane of a workgroup needs, loaded by each
// lane itself (subgroup.wgsl has the same functions sharing one load across 8 subgroup lanes),
// and the kernels that use them with no subgroup lane to pass.
// Entry points: conv2d_forward_packed, conv2d_forward_pool_packed (as conv2d_forward and
// conv2d_forward_pool in register_blocked_forward.wgsl, with the weights packed),
// conv2d_backward_weights_k3 (register_blocked_backward_weights.wgsl).
// Bindings: as those files say (the packed forwards: 4, 5 packed_lo, packed_hi, no w).

// The weights of packed slot `slot` of a forward step, as packed_weights and
// packed_weights_hi (`split`: the second binding's first slot). `part` (the lane's part in
// sharing them) is unused here.
fn forward_weights(slot: u32, part: u32) -> Channels {
    return packed_weights(slot);
}

fn forward_weights_hi(slot: u32, split: u32, part: u32) -> Channels {
    return packed_weights_hi(slot, split);
}

// The 32 dy values dy[n][first..first + 31][at] (channel stride `stride`, channels clamped to
// `last`) of a k3 step. `part` is unused here.
fn k3_dy(at: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    return dy32(at, stride, first, last);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        forward_block_packed(block_place(wg, nwg, lid));
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        forward_pool_block_packed(block_place(wg, nwg, lid));
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_k3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weights_k3_block(block_lane(wg, nwg, lid), 0u);
}
