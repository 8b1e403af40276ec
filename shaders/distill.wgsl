// The distillation loss fused with its gradient and the accuracy count (twin of
// src/cpu/distill.rs, in the same operation order): per example, with p = softmax(logits / T),
//   alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(label).
//
// distill_forward_backward: one invocation per example i of the n x classes logits:
//   losses[i]  = that loss (NaN when a student or teacher logit is not finite);
//   correct[i] = 1 when the first maximum of the student's row is at the label, else 0;
//   dlogits    = (alpha * T * (p_student - p_teacher) + (1 - alpha) * (softmax - onehot)) / n,
//                the gradient of the batch-mean loss w.r.t. the student's logits.
//   1-D launch (flat_index). losses and correct are laid out as softmax_xent's, so that its
//   softmax_xent_accumulate adds them to the stats record.
//
// @binding(0) params: uniform DistillParams (declared by the host); (1) losses: read_write f32;
// (2) correct: read_write u32 (0/1); (3) student: read f32; (4) teacher: read f32;
// (5) labels: read u32; (6) dlogits: read_write f32.

@group(0) @binding(0) var<uniform> params: DistillParams;
@group(0) @binding(1) var<storage, read_write> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> correct: array<u32>;
@group(0) @binding(3) var<storage, read> student: array<f32>;
@group(0) @binding(4) var<storage, read> teacher: array<f32>;
@group(0) @binding(5) var<storage, read> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;

// Quiet NaN, built from bits: WGSL has no NaN literal.
const DISTILL_NAN_BITS: u32 = 0x7fc00000u;

// Log-sum-exp of the student's row at `start` divided by `temperature`, its maximum subtracted
// first (as the CPU's scaled_log_sum_exp).
fn student_log_sum_exp(start: u32, temperature: f32) -> f32 {
    var row_max = student[start];
    for (var c = 1u; c < params.classes; c++) {
        row_max = max(row_max, student[start + c]);
    }
    let scaled_max = row_max / temperature;
    var sum_exp = 0.0;
    for (var c = 0u; c < params.classes; c++) {
        sum_exp += exp(student[start + c] / temperature - scaled_max);
    }
    return scaled_max + log(sum_exp);
}

// The same for the teacher's row.
fn teacher_log_sum_exp(start: u32, temperature: f32) -> f32 {
    var row_max = teacher[start];
    for (var c = 1u; c < params.classes; c++) {
        row_max = max(row_max, teacher[start + c]);
    }
    let scaled_max = row_max / temperature;
    var sum_exp = 0.0;
    for (var c = 0u; c < params.classes; c++) {
        sum_exp += exp(teacher[start + c] / temperature - scaled_max);
    }
    return scaled_max + log(sum_exp);
}

// Index of the student's largest logit in the row at `start`, the first one on ties.
fn student_argmax(start: u32) -> u32 {
    var best = 0u;
    for (var c = 1u; c < params.classes; c++) {
        if student[start + c] > student[start + best] {
            best = c;
        }
    }
    return best;
}

fn rows_are_finite(start: u32) -> bool {
    var finite = true;
    for (var c = 0u; c < params.classes; c++) {
        finite = finite && is_finite_f32(student[start + c]) && is_finite_f32(teacher[start + c]);
    }
    return finite;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn distill_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n {
        return;
    }
    let classes = params.classes;
    let start = i * classes;
    let label = labels[i];
    let temperature = params.temperature;
    let alpha = params.alpha;
    let hard = 1.0 - alpha;
    let hard_lse = student_log_sum_exp(start, 1.0);
    let student_lse = student_log_sum_exp(start, temperature);
    let teacher_lse = teacher_log_sum_exp(start, temperature);
    // KL(p_t || p_s) from the log-probabilities, which stay finite where p underflows to 0.
    var kl = 0.0;
    for (var c = 0u; c < classes; c++) {
        let log_pt = teacher[start + c] / temperature - teacher_lse;
        let log_ps = student[start + c] / temperature - student_lse;
        kl += exp(log_pt) * (log_pt - log_ps);
    }
    let cross_entropy = hard_lse - student[start + label];
    let loss = alpha * temperature * temperature * kl + hard * cross_entropy;
    // WGSL lets compilers assume floats are finite: flag rows with inf or NaN explicitly, for
    // softmax_xent_accumulate to count.
    losses[i] = select(bitcast<f32>(DISTILL_NAN_BITS), loss, rows_are_finite(start));
    correct[i] = u32(student_argmax(start) == label);
    let inv_n = 1.0 / f32(params.n);
    for (var c = 0u; c < classes; c++) {
        let z = student[start + c];
        let onehot = select(0.0, 1.0, c == label);
        let soft = exp(z / temperature - student_lse) - exp(teacher[start + c] / temperature - teacher_lse);
        let hard_grad = exp(z - hard_lse) - onehot;
        dlogits[start + c] = (alpha * temperature * soft + hard * hard_grad) * inv_n;
    }
}
