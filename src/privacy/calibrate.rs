//! The noise for a privacy budget: the smallest noise multiplier whose epsilon stays within a
//! target, found by bisection on an accountant (RDP's current conversion, or PRV's upper
//! bound). Epsilon falls as the noise grows, so the answer is where it crosses the target.

/// The largest noise multiplier tried (Opacus' `MAX_SIGMA`): a target that even this much
/// noise misses cannot be reached. With finitely many orders, RDP's epsilon has a floor above 0
/// however large the noise (at delta 1e-5 and orders up to 63, about 0.1).
pub const MAX_NOISE_MULTIPLIER: f64 = 1e6;

/// The bisection stops when its bracket is narrower than this fraction of the noise multiplier
/// it returns: that one meets the target, and one 0.01% smaller might too.
pub const NOISE_TOLERANCE: f64 = 1e-4;

/// What the bisection found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseForBudget {
    /// The noise multiplier (the upper end of the final bracket, so its epsilon is at most the
    /// target) and its epsilon.
    Found { noise_multiplier: f64, epsilon: f64 },
    /// Even [`MAX_NOISE_MULTIPLIER`] spends more than the target: this is its epsilon.
    Unreachable { epsilon_at_max: f64 },
}

/// The smallest noise multiplier (to [`NOISE_TOLERANCE`]) whose `epsilon_of(noise_multiplier)`
/// is at most `target_epsilon`, for an accountant's epsilon that falls as the noise grows (a
/// NaN, an accountant that cannot answer, counts as missing the target). The bracket starts at
/// [0, 1] and doubles its top until that meets the target (no noise: infinite epsilon).
pub fn noise_for_epsilon(target_epsilon: f64, epsilon_of: impl Fn(f64) -> f64) -> NoiseForBudget {
    let meets = |epsilon: f64| epsilon <= target_epsilon;
    let (mut low, mut high) = (0.0, 1.0);
    let mut at_high = epsilon_of(high);
    while !meets(at_high) {
        if high >= MAX_NOISE_MULTIPLIER {
            return NoiseForBudget::Unreachable {
                epsilon_at_max: at_high,
            };
        }
        low = high;
        high = (2.0 * high).min(MAX_NOISE_MULTIPLIER);
        at_high = epsilon_of(high);
    }
    // Invariant: epsilon(low) misses the target, epsilon(high) meets it.
    while high - low > NOISE_TOLERANCE * high {
        let mid = 0.5 * (low + high);
        let at_mid = epsilon_of(mid);
        if meets(at_mid) {
            (high, at_high) = (mid, at_mid);
        } else {
            low = mid;
        }
    }
    NoiseForBudget::Found {
        noise_multiplier: high,
        epsilon: at_high,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::rdp::{default_orders, SampledGaussian};

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
        for (target, q, steps) in [(8.0, 0.04, 2250), (1.0, 0.0025, 6000), (50.0, 0.5, 10)] {
            let found = noise_for_epsilon(target, |sigma| epsilon(q, sigma, steps));
            let NoiseForBudget::Found {
                noise_multiplier,
                epsilon: spent,
            } = found
            else {
                panic!("target {target} unreachable");
            };
            assert!(spent <= target);
            assert_eq!(spent, epsilon(q, noise_multiplier, steps));
            let smaller = noise_multiplier * (1.0 - 2.0 * NOISE_TOLERANCE);
            assert!(
                epsilon(q, smaller, steps) > target,
                "target {target}: {smaller} also meets it"
            );
        }
    }

    #[test]
    fn a_target_below_the_floor_is_unreachable() {
        let got = noise_for_epsilon(0.01, |sigma| epsilon(0.01, sigma, 100));
        let NoiseForBudget::Unreachable { epsilon_at_max } = got else {
            panic!("{got:?}");
        };
        assert!(epsilon_at_max > 0.01);
    }
}
