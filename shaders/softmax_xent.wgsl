// Softmax cross-entropy fused with its gradient and the accuracy count (twin of
// src/cpu/softmax_xent.rs), then the batch's sums added to a running stats record.
//
// softmax_xent_forward_backward: one invocation per example i of the n x classes logits:
//   losses[i]  = logsumexp(row) - row[label] (the row maximum subtracted first);
//   correct[i] = 1 when the first maximum of the row is at the label, else 0;
//   dlogits    = (softmax(row) - onehot(label)) / n, the gradient of the batch-mean loss.
//   1-D launch (flat_index). Bindings 0..5.
// softmax_xent_accumulate: one workgroup adds the sum of losses[0..n], the sum of correct[0..n]
//   and n to stats, and sets stats.nonfinite to 1 when some loss is not finite. Each invocation
//   sums a fixed strided slice, then a fixed tree combines them: reproducible. Bindings 0..3.
//
// @binding(0) params: uniform SoftmaxXentParams; (1) losses: read_write f32;
// (2) correct: read_write u32 (0/1). Then, for softmax_xent_forward_backward: (3) logits: read;
// (4) labels: read u32; (5) dlogits: read_write. For softmax_xent_accumulate: (3) stats:
// read_write StatsRecord. The two entry points share bindings 0..2 and declare different
// resources at 3, which WGSL allows because no entry point uses both.

struct SoftmaxXentParams {
    n: u32,
    classes: u32,
    _pad0: u32,
    _pad1: u32,
}

// The host's GpuStats. Only softmax_xent_accumulate writes it within a dispatch; the optimizer
// sets nonfinite with atomicOr in its own dispatches, never concurrently with this one.
struct StatsRecord {
    loss_sum: f32,
    correct: u32,
    examples: u32,
    nonfinite: u32,
}

@group(0) @binding(0) var<uniform> params: SoftmaxXentParams;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> correct: array<u32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<u32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: StatsRecord;

// Quiet NaN, built from bits: WGSL has no NaN literal.
const NAN_BITS: u32 = 0x7fc00000u;

// Index of the largest logit in the row starting at `start`, the first one on ties.
fn argmax(start: u32) -> u32 {
    var best = 0u;
    for (var c = 1u; c < params.classes; c++) {
        if logits[start + c] > logits[start + best] {
            best = c;
        }
    }
    return best;
}

fn row_is_finite(start: u32) -> bool {
    var finite = true;
    for (var c = 0u; c < params.classes; c++) {
        finite = finite && is_finite_f32(logits[start + c]);
    }
    return finite;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn softmax_xent_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    let classes = params.classes;
    let start = i * classes;
    let label = labels[i];
    var row_max = logits[start];
    for (var c = 1u; c < classes; c++) {
        row_max = max(row_max, logits[start + c]);
    }
    var sum_exp = 0.0;
    for (var c = 0u; c < classes; c++) {
        sum_exp += exp(logits[start + c] - row_max);
    }
    let log_sum_exp = row_max + log(sum_exp);
    // WGSL lets compilers assume floats are finite, so inf and NaN logits need not propagate
    // into the loss: flag such rows explicitly, for softmax_xent_accumulate to count.
    losses[i] = select(bitcast<f32>(NAN_BITS), log_sum_exp - logits[start + label], row_is_finite(start));
    correct[i] = u32(argmax(start) == label);
    let inv_n = 1.0 / f32(params.n);
    for (var c = 0u; c < classes; c++) {
        let onehot = select(0.0, 1.0, c == label);
        dlogits[start + c] = (exp(logits[start + c] - log_sum_exp) - onehot) * inv_n;
    }
}

var<workgroup> partial_loss: array<f32, WORKGROUP_SIZE>;
var<workgroup> partial_correct: array<u32, WORKGROUP_SIZE>;
var<workgroup> partial_nonfinite: array<u32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn softmax_xent_accumulate(@builtin(local_invocation_index) lane: u32) {
    var loss = 0.0;
    var hits = 0u;
    var nonfinite = 0u;
    for (var i = lane; i < params.n; i += WORKGROUP_SIZE) {
        loss += losses[i];
        hits += correct[i];
        nonfinite |= u32(!is_finite_f32(losses[i]));
    }
    partial_loss[lane] = loss;
    partial_correct[lane] = hits;
    partial_nonfinite[lane] = nonfinite;
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if lane < half {
            partial_loss[lane] += partial_loss[lane + half];
            partial_correct[lane] += partial_correct[lane + half];
            partial_nonfinite[lane] |= partial_nonfinite[lane + half];
        }
    }
    if lane == 0u {
        stats.loss_sum += partial_loss[0];
        stats.correct += partial_correct[0];
        stats.examples += params.n;
        stats.nonfinite |= partial_nonfinite[0];
    }
}
