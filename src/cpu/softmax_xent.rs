//! Softmax cross-entropy reference, fused with its gradient and the accuracy count.
//! The loss is the batch mean (like Keras), so the gradient is `(softmax - onehot) / n`.

use super::float::Float;

/// Sums over a batch: `loss_sum` is the sum of per-example losses, not the mean.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    pub loss_sum: f64,
    pub correct: usize,
}

/// Index of the largest logit, the first one on ties.
pub fn argmax<T: Float>(row: &[T]) -> usize {
    (1..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

impl std::ops::Add for LossSums {
    type Output = LossSums;

    fn add(self, other: LossSums) -> LossSums {
        LossSums {
            loss_sum: self.loss_sum + other.loss_sum,
            correct: self.correct + other.correct,
        }
    }
}

/// Loss and correct count over `logits` (`n x classes`). When `dlogits` is given it receives the
/// gradient of the mean loss.
pub fn softmax_cross_entropy<T: Float>(
    classes: usize,
    logits: &[T],
    labels: &[u8],
    dlogits: Option<&mut [T]>,
) -> LossSums {
    softmax_cross_entropy_part(classes, logits, labels, labels.len(), dlogits)
}

/// [`softmax_cross_entropy`] over some of the `batch` examples of a batch: `dlogits` receives
/// their part of the gradient of the batch's mean loss.
pub fn softmax_cross_entropy_part<T: Float>(
    classes: usize,
    logits: &[T],
    labels: &[u8],
    batch: usize,
    mut dlogits: Option<&mut [T]>,
) -> LossSums {
    assert_eq!(
        logits.len(),
        labels.len() * classes,
        "softmax_cross_entropy: logits length"
    );
    let inv_n = T::one() / T::from_usize(batch).expect("batch size fits");
    let mut sums = LossSums::default();
    for (i, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let label = usize::from(label);
        // log-sum-exp with the maximum subtracted, so large logits cannot overflow.
        let max = row.iter().copied().fold(T::neg_infinity(), T::max);
        let sum_exp: T = row.iter().map(|&z| (z - max).exp()).sum();
        let log_sum_exp = max + sum_exp.ln();
        sums.loss_sum += (log_sum_exp - row[label]).to_f64_lossy();
        sums.correct += usize::from(argmax(row) == label);
        if let Some(d) = dlogits.as_deref_mut() {
            for (c, (d, &z)) in d[i * classes..][..classes].iter_mut().zip(row).enumerate() {
                let onehot = if c == label { T::one() } else { T::zero() };
                *d = ((z - log_sum_exp).exp() - onehot) * inv_n;
            }
        }
    }
    sums
}
