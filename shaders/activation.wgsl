// Activations, element-wise over any layout (twin of src/cpu/activation.rs). `params.op`
// selects the function: 0 ReLU, 1 sigmoid, 2 tanh (uniform, so the branch costs nothing).
//
// activation_forward:  dst[i] = f(src[i])                     bindings 0..2
// activation_backward: dst[i] = grad[i] * f'(x), from the forward output y = src[i]:
//                      ReLU: grad if y > 0 else 0 (the subgradient at 0 is 0, as on the CPU);
//                      sigmoid: grad * y * (1 - y); tanh: grad * (1 - y * y)  bindings 0..3
//
// @binding(0) params: uniform ActivationParams; (1) src: read; (2) dst: read_write;
// (3) grad: read. One invocation per element, 1-D launch (flat_index).

struct ActivationParams {
    len: u32,
    op: u32,
    _pad0: u32,
    _pad1: u32,
}

const RELU: u32 = 0u;
const SIGMOID: u32 = 1u;

@group(0) @binding(0) var<uniform> params: ActivationParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn activation_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    let x = src[i];
    if params.op == RELU {
        dst[i] = max(x, 0.0);
    } else if params.op == SIGMOID {
        dst[i] = 1.0 / (1.0 + exp(-x));
    } else {
        dst[i] = tanh(x);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn activation_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    let y = src[i];
    if params.op == RELU {
        dst[i] = select(0.0, grad[i], y > 0.0);
    } else if params.op == SIGMOID {
        dst[i] = grad[i] * y * (1.0 - y);
    } else {
        dst[i] = grad[i] * (1.0 - y * y);
    }
}
