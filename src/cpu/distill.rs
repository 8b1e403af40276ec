//! The distillation loss (Hinton et al. 2015), fused with its gradient and the accuracy count:
//! per example, `alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(label)`, where
//! `p = softmax(logits / T)`. KL runs from the teacher to the student, as in Hinton et al. and
//! Keras' distillation example: the teacher's distribution is the target the student matches.
//! The loss is the batch mean, like the hard loss (`softmax_xent.rs`), so the gradient w.r.t.
//! the student's logits is `(alpha * T * (p_student - p_teacher) + (1 - alpha) * (softmax -
//! onehot)) / n`. The `T^2` factor keeps the soft gradient's scale comparable across
//! temperatures: without it, KL's gradient is `(p_student - p_teacher) / T`, and the difference
//! itself shrinks as `1/T` as both distributions flatten, so it falls as `1/T^2`.
//!
//! The GPU twin (`gpu/distill.rs`, `shaders/distill.wgsl`) follows the same operation order.

use super::float::Float;
use super::softmax_xent::{argmax, LossSums};

/// The mix of the two losses: `temperature` T > 0 softens both distributions of the KL term,
/// `alpha` in [0, 1] weighs it against the cross-entropy with the labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distill<T> {
    pub temperature: T,
    pub alpha: T,
}

/// Maximum and log-sum-exp of `row / temperature`, the maximum subtracted first so that large
/// logits cannot overflow.
fn scaled_log_sum_exp<T: Float>(row: &[T], temperature: T) -> T {
    let max = row.iter().copied().fold(T::neg_infinity(), T::max) / temperature;
    let sum_exp: T = row.iter().map(|&z| (z / temperature - max).exp()).sum();
    max + sum_exp.ln()
}

/// Loss and correct count (the student's argmax against the label) over `student` and
/// `teacher` logits (`n x classes` each). When `dlogits` is given it receives the gradient of
/// the mean loss w.r.t. the student's logits.
pub fn distillation_loss<T: Float>(
    classes: usize,
    student: &[T],
    teacher: &[T],
    labels: &[u8],
    distill: Distill<T>,
    mut dlogits: Option<&mut [T]>,
) -> LossSums {
    let n = labels.len();
    assert_eq!(
        student.len(),
        n * classes,
        "distillation_loss: student length"
    );
    assert_eq!(
        teacher.len(),
        n * classes,
        "distillation_loss: teacher length"
    );
    let Distill { temperature, alpha } = distill;
    let inv_n = T::one() / T::from_usize(n).expect("batch size fits");
    let hard = T::one() - alpha;
    let mut sums = LossSums::default();
    let rows = student
        .chunks_exact(classes)
        .zip(teacher.chunks_exact(classes));
    for (i, ((row, teacher_row), &label)) in rows.zip(labels).enumerate() {
        let label = usize::from(label);
        let hard_lse = scaled_log_sum_exp(row, T::one());
        let student_lse = scaled_log_sum_exp(row, temperature);
        let teacher_lse = scaled_log_sum_exp(teacher_row, temperature);
        // KL(p_t || p_s) = sum p_t * (log p_t - log p_s), from the log-probabilities, which stay
        // finite where a probability underflows to 0.
        let kl: T = row
            .iter()
            .zip(teacher_row)
            .map(|(&z, &t)| {
                let log_pt = t / temperature - teacher_lse;
                let log_ps = z / temperature - student_lse;
                log_pt.exp() * (log_pt - log_ps)
            })
            .sum();
        let cross_entropy = hard_lse - row[label];
        let loss = alpha * temperature * temperature * kl + hard * cross_entropy;
        sums.loss_sum += loss.to_f64_lossy();
        sums.correct += usize::from(argmax(row) == label);
        if let Some(d) = dlogits.as_deref_mut() {
            let d = &mut d[i * classes..][..classes];
            for (c, (d, (&z, &t))) in d.iter_mut().zip(row.iter().zip(teacher_row)).enumerate() {
                let onehot = if c == label { T::one() } else { T::zero() };
                let soft =
                    (z / temperature - student_lse).exp() - (t / temperature - teacher_lse).exp();
                let hard_grad = (z - hard_lse).exp() - onehot;
                *d = (alpha * temperature * soft + hard * hard_grad) * inv_n;
            }
        }
    }
    sums
}
