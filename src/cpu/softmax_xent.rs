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

/// Loss and correct count over `logits` (`n x classes`). When `dlogits` is given it receives the
/// gradient of the mean loss.
pub fn softmax_cross_entropy<T: Float>(
    classes: usize,
    logits: &[T],
    labels: &[u8],
    mut dlogits: Option<&mut [T]>,
) -> LossSums {
    let n = labels.len();
    assert_eq!(
        logits.len(),
        n * classes,
        "softmax_cross_entropy: logits length"
    );
    let inv_n = T::one() / T::from_usize(n).expect("batch size fits");
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
