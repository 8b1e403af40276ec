// Conv2d, register-blocked: the values that every lane of a workgroup needs, loaded by each
// lane itself (subgroup.wgsl has the same functions sharing one load across 8 subgroup lanes),
// and the kernels that use them with no subgroup lane to pass.
// Entry points: conv2d_forward_packed, conv2d_forward_pool_packed (register_blocked_forward
// .wgsl), conv2d_backward_weights_k3 (register_blocked_backward_weights.wgsl).
// Bindings: as those files say.

// The weights of a forward step, as step_weights and step_weights_hi. `part` (the lane's part
// in sharing them) is unused here.
fn forward_weights(packed: bool, slot: u32, base: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    return step_weights(packed, slot, base, stride, first, last);
}

fn forward_weights_hi(slot: u32, part: u32) -> Channels {
    return step_weights_hi(slot);
}

// The 32 dy values dy[n][first..first + 31][at] (channel stride `stride`, channels clamped to
// `last`) of a k3 step. `part` is unused here.
fn k3_dy(at: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    return factor32(at, stride, first, last);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_block(block_place(wg, nwg, lid), true);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool_packed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if block_group(wg, nwg) < params.len {
        forward_pool_block(block_place(wg, nwg, lid), true);
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_k3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weights_k3_block(block_lane(wg, nwg, lid), 0u);
}
