//! Privacy accounting for DP-SGD: how much (epsilon, delta)-differential privacy a run of the
//! sampled Gaussian mechanism (Poisson-sampled lots, clipped gradients, Gaussian noise) spends,
//! and the noise that keeps it within a budget. See docs/privacy.md.
//!
//! [`rdp`] is the RDP accountant (Rényi DP of the sampled Gaussian mechanism and its conversions
//! to (epsilon, delta)); [`prv`] the PRV accountant (privacy loss random variables composed by
//! FFT), tighter; [`calibrate`] finds the noise multiplier for a target epsilon. Knows nothing
//! of training, the CLI or the GPU.

pub mod calibrate;
pub mod prv;
pub mod rdp;

/// How close to a whole number `epochs / sample_rate` must come to count as it (relative).
const WHOLE_STEPS_TOLERANCE: f64 = 1e-9;

/// The steps that `epochs` epochs take at Poisson sampling rate `sample_rate`: one epoch is
/// `1 / sample_rate` steps in expectation, and a fraction of a step counts as a whole one, as
/// TF Privacy's `compute_dp_sgd_privacy` does (`ceil(epochs * n / batch_size)`). A quotient
/// within one part in 10^9 of a whole number is that number, so that rounding in a rate such as
/// 150 / 60000 adds no step. Opacus truncates instead (`int(epochs / sample_rate)`); the two
/// agree whenever `epochs / sample_rate` is whole. `None` when the count is not a finite number
/// of at least one step that fits in a `u64`.
pub fn steps_for_epochs(epochs: f64, sample_rate: f64) -> Option<u64> {
    let exact = epochs / sample_rate;
    let nearest = exact.round();
    let steps = if (exact - nearest).abs() <= WHOLE_STEPS_TOLERANCE * nearest {
        nearest
    } else {
        exact.ceil()
    };
    // u64::MAX as f64 rounds up to 2^64, which does not fit: the bound is strict.
    (steps.is_finite() && steps >= 1.0 && steps < u64::MAX as f64).then_some(steps as u64)
}

#[cfg(test)]
mod tests {
    use super::steps_for_epochs;

    #[test]
    fn steps_for_epochs_rounds_up_partial_steps_but_not_rounding_error() {
        // 15 epochs of 150 out of 60000: TF Privacy's 6000 steps, though 150 / 60000 is inexact.
        assert_eq!(steps_for_epochs(15.0, 150.0 / 60000.0), Some(6000));
        // 60 epochs of 256 out of 60000: 14062.5 steps, counted as 14063.
        assert_eq!(steps_for_epochs(60.0, 256.0 / 60000.0), Some(14063));
        assert_eq!(steps_for_epochs(90.0, 0.04), Some(2250));
        assert_eq!(steps_for_epochs(0.5, 1.0), Some(1));
        assert_eq!(steps_for_epochs(1e-30, 1.0), Some(1));
        assert_eq!(steps_for_epochs(f64::INFINITY, 0.5), None);
        assert_eq!(steps_for_epochs(1e30, 1e-10), None);
    }
}
