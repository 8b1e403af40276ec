//! The noise for a privacy budget: the smallest noise multiplier whose epsilon (the current
//! conversion, over the given orders) stays within a target, found by bisection on the RDP
//! accountant. Epsilon falls as the noise grows, so the answer is where it crosses the target.

use super::rdp::{PrivacySpent, SampledGaussian};

/// The largest noise multiplier tried (Opacus' `MAX_SIGMA`): a target that even this much
/// noise misses cannot be reached. With finitely many orders, epsilon has a floor above 0
/// however large the noise (at delta 1e-5 and orders up to 63, about 0.1).
pub const MAX_NOISE_MULTIPLIER: f64 = 1e6;

/// The bisection stops when its bracket is narrower than this fraction of the noise multiplier
/// it returns: that one meets the target, and one 0.01% smaller might too.
pub const NOISE_TOLERANCE: f64 = 1e-4;

/// What the bisection found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseForBudget {
    /// The noise multiplier (the upper end of the final bracket, so its epsilon is at most the
    /// target) and what it spends.
    Found {
        noise_multiplier: f64,
        spent: PrivacySpent,
    },
    /// Even [`MAX_NOISE_MULTIPLIER`] spends more than the target: this is its epsilon.
    Unreachable { epsilon_at_max: f64 },
}

/// The smallest noise multiplier (to [`NOISE_TOLERANCE`]) that keeps epsilon at most
/// `target_epsilon` over `steps` steps at `sample_rate` and `delta`. The bracket starts at
/// [0, 1] and doubles its top until that meets the target (epsilon at 0 noise is infinite).
pub fn noise_for_epsilon(
    target_epsilon: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
    orders: &[f64],
) -> NoiseForBudget {
    let spent = |noise_multiplier: f64| {
        SampledGaussian {
            sample_rate,
            noise_multiplier,
            steps,
        }
        .privacy_spent(delta, orders)
    };
    let (mut low, mut high) = (0.0, 1.0);
    let mut at_high = spent(high);
    while at_high.epsilon > target_epsilon {
        if high >= MAX_NOISE_MULTIPLIER {
            return NoiseForBudget::Unreachable {
                epsilon_at_max: at_high.epsilon,
            };
        }
        low = high;
        high = (2.0 * high).min(MAX_NOISE_MULTIPLIER);
        at_high = spent(high);
    }
    // Invariant: epsilon(low) > target >= epsilon(high).
    while high - low > NOISE_TOLERANCE * high {
        let mid = 0.5 * (low + high);
        let at_mid = spent(mid);
        if at_mid.epsilon <= target_epsilon {
            (high, at_high) = (mid, at_mid);
        } else {
            low = mid;
        }
    }
    NoiseForBudget::Found {
        noise_multiplier: high,
        spent: at_high,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::rdp::default_orders;

    fn epsilon(sample_rate: f64, noise_multiplier: f64, steps: u64) -> f64 {
        SampledGaussian {
            sample_rate,
            noise_multiplier,
            steps,
        }
        .privacy_spent(1e-5, &default_orders())
        .epsilon
    }

    /// The answer meets the target, and one a little below the tolerance would not: it is the
    /// smallest, to the tolerance.
    #[test]
    fn bisection_finds_the_smallest_noise_within_tolerance() {
        let orders = default_orders();
        for (target, q, steps) in [(8.0, 0.04, 2250), (1.0, 0.0025, 6000), (50.0, 0.5, 10)] {
            let NoiseForBudget::Found {
                noise_multiplier,
                spent,
            } = noise_for_epsilon(target, q, steps, 1e-5, &orders)
            else {
                panic!("target {target} unreachable");
            };
            assert!(spent.epsilon <= target);
            assert_eq!(spent.epsilon, epsilon(q, noise_multiplier, steps));
            let smaller = noise_multiplier * (1.0 - 2.0 * NOISE_TOLERANCE);
            assert!(
                epsilon(q, smaller, steps) > target,
                "target {target}: {smaller} also meets it"
            );
        }
    }

    #[test]
    fn a_target_below_the_floor_is_unreachable() {
        let got = noise_for_epsilon(0.01, 0.01, 100, 1e-5, &default_orders());
        let NoiseForBudget::Unreachable { epsilon_at_max } = got else {
            panic!("{got:?}");
        };
        assert!(epsilon_at_max > 0.01);
    }
}
