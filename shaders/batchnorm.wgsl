// Batch normalisation per channel of NCHW activations (twin of src/cpu/batchnorm.rs); a flat
// vector is n x C x 1 x 1. Channel c's values are x[(image * C + c) * plane + p].
//
// Each pair of per-channel tensors (gamma and beta, running mean and variance, their
// gradients) is bound as one view: the second tensor starts `pair_stride` elements after the
// first (the parameter buffers align every tensor).
//
// batchnorm_statistics:     one workgroup per channel. Training: the batch mean and biased
//                           variance (two passes, a fixed tree sum: deterministic) into
//                           stats = [mean C | var C | inv_std C], and the running statistics
//                           moved toward them (unbiased variance). Inference: stats from the
//                           running statistics instead.
// batchnorm_normalize:      one invocation per element: y = (x - mean) * (gamma * inv_std) + beta.
// batchnorm_backward_sums:  one workgroup per channel: dgamma = sum dy * xhat, dbeta = sum dy.
// batchnorm_backward_input: one invocation per element:
//                           dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma).
//
// @binding(0) params: uniform; (1) x: read; (2) stats: read_write; (3) running: read_write;
// (4) affine (gamma, beta): read_write (only read); (5) out (y or dx): read_write;
// (6) dy: read; (7) daffine (dgamma, dbeta): read_write. Every entry point uses a prefix of
// these. Writable declarations where an entry only reads keep two views of the parameter
// buffer in one dispatch from mixing read-only and writable use.

struct BatchNormParams {
    n: u32,
    channels: u32,
    plane: u32,
    pair_stride: u32,
    epsilon: f32,
    momentum: f32,
    keep: f32,
    unbias: f32,
    training: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: BatchNormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> running: array<f32>;
@group(0) @binding(4) var<storage, read_write> affine: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> daffine: array<f32>;

// Values per channel.
fn count() -> u32 {
    return params.n * params.plane;
}

// The index of channel c's e-th value.
fn element(c: u32, e: u32) -> u32 {
    return ((e / params.plane) * params.channels + c) * params.plane + e % params.plane;
}

// The channel of element i.
fn channel_of(i: u32) -> u32 {
    return (i / params.plane) % params.channels;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_statistics(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let t = lid.x;
    let channels = params.channels;
    let pair = params.pair_stride;
    if params.training == 0u {
        if t == 0u {
            stats[c] = running[c];
            stats[channels + c] = running[pair + c];
            stats[2u * channels + c] = 1.0 / sqrt(running[pair + c] + params.epsilon);
        }
        return;
    }
    let m = f32(count());
    var sum = 0.0;
    for (var e = t; e < count(); e += WORKGROUP_SIZE) {
        sum += x[element(c, e)];
    }
    let mean = workgroup_sum(t, sum) / m;
    var squares = 0.0;
    for (var e = t; e < count(); e += WORKGROUP_SIZE) {
        let d = x[element(c, e)] - mean;
        squares += d * d;
    }
    let variance = workgroup_sum(t, squares) / m;
    if t == 0u {
        stats[c] = mean;
        stats[channels + c] = variance;
        stats[2u * channels + c] = 1.0 / sqrt(variance + params.epsilon);
        running[c] = params.keep * running[c] + params.momentum * mean;
        running[pair + c] = params.keep * running[pair + c] + params.momentum * (variance * params.unbias);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.channels * params.plane {
        return;
    }
    let c = channel_of(i);
    let scale = affine[c] * stats[2u * params.channels + c];
    out[i] = (x[i] - stats[c]) * scale + affine[params.pair_stride + c];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_backward_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let t = lid.x;
    let mean = stats[c];
    let inv_std = stats[2u * params.channels + c];
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var e = t; e < count(); e += WORKGROUP_SIZE) {
        let i = element(c, e);
        dbeta += dy[i];
        dgamma += dy[i] * (x[i] - mean) * inv_std;
    }
    let total_dbeta = workgroup_sum(t, dbeta);
    let total_dgamma = workgroup_sum(t, dgamma);
    if t == 0u {
        daffine[c] = total_dgamma;
        daffine[params.pair_stride + c] = total_dbeta;
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn batchnorm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.channels * params.plane {
        return;
    }
    let c = channel_of(i);
    let inv_std = stats[2u * params.channels + c];
    // A frozen layer trains in inference mode: its statistics are constants.
    if params.training == 0u {
        out[i] = affine[c] * inv_std * dy[i];
        return;
    }
    let m = f32(count());
    let scale = affine[c] * inv_std / m;
    let xhat = (x[i] - stats[c]) * inv_std;
    out[i] = scale * (m * dy[i] - daffine[params.pair_stride + c] - xhat * daffine[c]);
}
