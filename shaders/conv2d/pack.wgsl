// Conv2d: the weight packing of the register-blocked variants.
// conv2d_pack_forward_weights, conv2d_pack_backward_input_weights: packs w for the
//   register-blocked *_packed kernels: dst[slot * 32 + c] = the weight of channel c of slot
//   `slot` (see step_weights), 0 for channels past the last, for the params.len elements.
// Bindings: 0 params, 1 src = w (unused), 2 dst = packed weights, 3 factor = w (always from
// storage: one read of each weight would not pay for a texture copy). 1-D launch (flat_index).
// Module: common.wgsl, reads_storage.wgsl, reduce.wgsl, this file.

fn packed_weight(i: u32, forward: bool) -> f32 {
    let kk = params.kernel * params.kernel;
    let slot = i / BLOCK_CHANNELS;
    let step = slot % params.block_steps;
    let channel = (slot / params.block_steps) * BLOCK_CHANNELS + i % BLOCK_CHANNELS;
    if forward {
        // w[co = channel][(ci, ky, kx) = step]
        if channel >= params.out_channels {
            return 0.0;
        }
        return factor[channel * params.in_channels * kk + step];
    }
    // w[co][ci = channel][ky][kx] with (co, ky, kx) = step
    if channel >= params.in_channels {
        return 0.0;
    }
    return factor[((step / kk) * params.in_channels + channel) * kk + step % kk];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_forward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < params.len {
        dst[i] = packed_weight(i, true);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_backward_input_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < params.len {
        dst[i] = packed_weight(i, false);
    }
}

