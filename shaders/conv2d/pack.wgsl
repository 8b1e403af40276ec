// Conv2d: the weight packing of the register-blocked variants.
// conv2d_pack_forward_weights, conv2d_pack_backward_input_weights: packs w for the
//   register-blocked *_packed kernels: packed[slot * 32 + c] = the weight of channel c of slot
//   `slot` (see packed_weights), 0 for channels past the last, for the pack_params.len elements.
// Bindings: 0 pack_params, 1 w (always from storage: one read of each weight would not pay for
// a texture copy), 2 packed. 1-D launch (flat_index).
// Module: common.wgsl, the uniforms, reduce.wgsl, this file.

// Conv2dPackParams: the uniform, declared by the host with its fields' meaning
// (src/gpu/conv2d/sums.rs) and listed before this file.

@group(0) @binding(0) var<uniform> pack_params: Conv2dPackParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;

fn packed_weight(i: u32, forward: bool) -> f32 {
    let kk = pack_params.kernel * pack_params.kernel;
    let slot = i / BLOCK_CHANNELS;
    let step = slot % pack_params.block_steps;
    let channel = (slot / pack_params.block_steps) * BLOCK_CHANNELS + i % BLOCK_CHANNELS;
    if forward {
        // w[co = channel][(ci, ky, kx) = step]
        if channel >= pack_params.out_channels {
            return 0.0;
        }
        return w[channel * pack_params.in_channels * kk + step];
    }
    // w[co][ci = channel][ky][kx] with (co, ky, kx) = step
    if channel >= pack_params.in_channels {
        return 0.0;
    }
    return w[((step / kk) * pack_params.in_channels + channel) * kk + step % kk];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_forward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < pack_params.len {
        packed[i] = packed_weight(i, true);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_pack_backward_input_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < pack_params.len {
        packed[i] = packed_weight(i, false);
    }
}

