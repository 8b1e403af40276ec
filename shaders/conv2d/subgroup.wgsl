// Conv2d, register-blocked: the values that every lane of a workgroup needs, shared across
// subgroup lanes (share_per_lane.wgsl has the same functions with a load in every lane). Each
// lane of an aligned group of 8 subgroup lanes loads an eighth of the 32 values that all 8
// need (its `part`: its subgroup lane), and share_channels gives every lane all of them,
// saving 28 of 32 loads (lavapipe loads storage and gathers uniforms lane by lane). The sums
// are the same, in the same order: only who loads a value changes.
// Entry points: conv2d_forward_packed_shared, conv2d_forward_pool_packed_shared,
// conv2d_backward_weights_k3_shared (as the per-lane kernels of the same names without
// _shared), and conv2d_subgroup_probe, which the host runs once before offering the others.
// Bindings: as the per-lane kernels of the same names (share_per_lane.wgsl) say; the probe's
// only binding is 0 probe_flags (a read_write array of BLOCK_WORKGROUP f32).

// Channels 4q..4q+3 from the lane of part q in the group of 8 of `part`, for q < 8.
fn share_channels(mine: vec4<f32>, part: u32) -> Channels {
    let group = part & ~7u;
    return Channels(mat4x4<f32>(subgroupShuffle(mine, group), subgroupShuffle(mine, group + 1u), subgroupShuffle(mine, group + 2u), subgroupShuffle(mine, group + 3u)), mat4x4<f32>(subgroupShuffle(mine, group + 4u), subgroupShuffle(mine, group + 5u), subgroupShuffle(mine, group + 6u), subgroupShuffle(mine, group + 7u)));
}

// The weights of packed slot `slot` of a forward step: every lane of a workgroup needs the
// same 32, so each of 8 lanes gathers 4 of them (those of `part`) and the 8 share them.
fn forward_weights(slot: u32, part: u32) -> Channels {
    let q = part & 7u;
    return share_channels(select(packed_lo[slot].hi[q & 3u], packed_lo[slot].lo[q & 3u], q < 4u), part);
}

// The same from the second binding, which starts at slot `split`.
fn forward_weights_hi(slot: u32, split: u32, part: u32) -> Channels {
    let q = part & 7u;
    let s = slot - split;
    return share_channels(select(packed_hi[s].hi[q & 3u], packed_hi[s].lo[q & 3u], q < 4u), part);
}

// The 32 dy values of a k3 step (see share_per_lane.wgsl): the 8 lanes of a group have the same
// chunk and channel block (the host runs this kernel only where the input-channel blocks are a
// multiple of 8), so each loads 4 and the 8 share them.
fn k3_dy(at: u32, stride: u32, first: u32, last: u32, part: u32) -> Channels {
    return share_channels(dy4(offsets4(at, stride, first + 4u * (part & 7u), last)), part);
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_backward_weights_k3_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    backward_weights_k3_block(block_lane(wg, nwg, lid), sid);
}

// block_place, with the subgroup lane as the lane's part in sharing the weights.
fn shared_place(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, sid: u32) -> BlockPlace {
    var place = block_place(wg, nwg, lid);
    place.part = sid;
    return place;
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_packed_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        forward_block_packed(shared_place(wg, nwg, lid, sid));
    }
}

@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_forward_pool_packed_shared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    if block_group(wg, nwg) < forward_params.len {
        forward_pool_block_packed(shared_place(wg, nwg, lid, sid));
    }
}

@group(0) @binding(0) var<storage, read_write> probe_flags: array<f32>;

// Sets probe_flags[i] to 1 for each invocation i of a blocked workgroup whose subgroup lane is its
// local index modulo a subgroup size that is a multiple of 8 (so that groups of 8 subgroup
// lanes are groups of 8 consecutive lanes of the kernels above), else to 0.
@compute @workgroup_size(BLOCK_WORKGROUP)
fn conv2d_subgroup_probe(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) size: u32) {
    probe_flags[lid] = select(0.0, 1.0, size % 8u == 0u && sid == lid % size);
}
