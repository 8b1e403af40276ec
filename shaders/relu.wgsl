// ReLU, element-wise over any layout (twin of src/cpu/relu.rs).
//
// relu_forward:  dst[i] = max(src[i], 0)               bindings 0..2
// relu_backward: dst[i] = grad[i] if src[i] > 0 else 0 bindings 0..3 (src = the forward output y,
//                grad = dy, dst = dx; the subgradient at 0 is 0, as on the CPU)
//
// @binding(0) params: uniform ReluParams; (1) src: read; (2) dst: read_write; (3) grad: read.
// One invocation per element, 1-D launch (flat_index).

struct ReluParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ReluParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    dst[i] = max(src[i], 0.0);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    dst[i] = select(0.0, grad[i], src[i] > 0.0);
}
