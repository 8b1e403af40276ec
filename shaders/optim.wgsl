// Parameter updates, element-wise, in the CPU's exact operation order (twin of src/cpu/optim.rs).
//
// Weight decay first (zero factors change nothing): g += l2 * p; p -= decoupled * p (AdamW).
// adam_update:         m += (g - m) * (1 - beta1); v += (g*g - v) * (1 - beta2);
//                      p -= alpha * m / (sqrt(v) + epsilon)   (alpha bias-corrected on the host)
//                      bindings 0..6
// sgd_momentum_update: m = beta1 * m - alpha * g; p += m, or with Nesterov
//                      p += beta1 * m - alpha * g  (m is the velocity, alpha = lr,
//                      beta1 = momentum)                       bindings 0..5
// adam_update_masked, sgd_momentum_update_masked: the same, except that a parameter whose
//                      keep[i] is 0 (pruned) is stored as exactly 0, its moments too, and its
//                      gradient is not read       bindings 0..6 and 7 (Adam), 0..5 and 7 (SGD)
// All set stats[3] (the step's non-finite flag) when a gradient or an updated parameter is NaN
// or infinite (shader compilers may assume floats are finite and squash NaNs in the layers, so
// a diverging run can show finite losses while its parameters overflow), and still apply the
// update, as the CPU does; the host decides what to do.
//
// @binding(0) step: uniform OptimStep (rewritten by the host every step); (1) size: uniform
// OptimSize; (2) params: read_write; (3) grads: read; (4) m: read_write; (5) stats: read_write,
// the 16-byte record [loss_sum, correct, examples, nonfinite]; (6) v: read_write; (7) keep:
// read, one u32 per parameter, 1 to train it, 0 to keep it at zero (masked entry points only).
// One invocation per parameter, 1-D launch (flat_index).

struct OptimStep {
    alpha: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    l2: f32,
    decoupled: f32,
    // 1 for Nesterov momentum, else 0.
    nesterov: u32,
    _pad: u32,
}

struct OptimSize {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const STATS_NONFINITE: u32 = 3u;

@group(0) @binding(0) var<uniform> step: OptimStep;
@group(0) @binding(1) var<uniform> size: OptimSize;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<atomic<u32>, 4>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;
@group(0) @binding(7) var<storage, read> keep: array<u32>;

// The gradient of parameter i (plus L2 decay of its value p), flagging the step when the
// gradient is not finite.
fn checked_grad(i: u32, p: f32) -> f32 {
    let g = grads[i];
    if !is_finite_f32(g) {
        atomicOr(&stats[STATS_NONFINITE], 1u);
    }
    return g + step.l2 * p;
}

// Stores the updated parameter i, flagging the step when it is not finite.
fn store_checked_param(i: u32, value: f32) {
    params[i] = value;
    if !is_finite_f32(value) {
        atomicOr(&stats[STATS_NONFINITE], 1u);
    }
}

// The update of parameter i, shared by the plain and the masked entry points (the masked ones
// call it for kept parameters only).
fn adam_at(i: u32) {
    var p = params[i];
    let g = checked_grad(i, p);
    p -= step.decoupled * p;
    var m_i = m[i];
    var v_i = v[i];
    m_i += (g - m_i) * (1.0 - step.beta1);
    v_i += (g * g - v_i) * (1.0 - step.beta2);
    m[i] = m_i;
    v[i] = v_i;
    store_checked_param(i, p - step.alpha * m_i / (sqrt(v_i) + step.epsilon));
}

fn sgd_momentum_at(i: u32) {
    let p = params[i];
    let g = checked_grad(i, p);
    let velocity = step.beta1 * m[i] - step.alpha * g;
    m[i] = velocity;
    let nesterov_velocity = step.beta1 * velocity - step.alpha * g;
    store_checked_param(i, p + select(velocity, nesterov_velocity, step.nesterov == 1u));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < size.len {
        adam_at(i);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_momentum_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < size.len {
        sgd_momentum_at(i);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam_update_masked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < size.len {
        if kept(i) {
            adam_at(i);
        } else {
            v[i] = 0.0;
        }
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_momentum_update_masked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i < size.len && kept(i) {
        sgd_momentum_at(i);
    }
}

// Whether parameter i trains. A pruned one is stored as exactly 0, and so is its first moment
// (Adam's caller zeroes the second: the SGD kernel has no v binding).
fn kept(i: u32) -> bool {
    if keep[i] == 0u {
        params[i] = 0.0;
        m[i] = 0.0;
        return false;
    }
    return true;
}
