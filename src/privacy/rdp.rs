//! The RDP accountant of the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Rényi
//! Differential Privacy of the Sampled Gaussian Mechanism", section 3.3), computed as Opacus
//! (`opacus/accountants/analysis/rdp.py`) and TF Privacy do, in log space and f64 throughout:
//!
//! - at an integer order, `A_alpha` by its exact binomial series;
//! - at a fractional order, by the two-sided series Opacus calls `_compute_log_a_frac`: the
//!   integrals over `(-inf, z0]` and `[z0, inf)` with `z0 = sigma^2 log(1/q - 1) + 1/2`, each a
//!   series in the generalised binomial coefficients `binom(alpha, i)` (whose signs alternate
//!   past `i > alpha`) times Gaussian tails `erfc`, summed until both terms of an index fall
//!   below `e^-30`;
//! - RDP at order alpha is `log(A_alpha) / (alpha - 1)` per step, and `steps` times that for the
//!   composition.
//!
//! Then two conversions to (epsilon, delta)-DP, each minimised over the orders (see
//! [`epsilon`] and [`epsilon_basic`]).

use puruspe::{erfc, erfcx};

/// A fractional order's series stops here if it has not converged (only `q` within a hair of
/// 1 gets near it); that order's RDP then counts as infinite, which only drops it from the
/// minimum over orders, so the epsilon reported can only be larger, never smaller, than the
/// series' true one.
const MAX_SERIES_TERMS: usize = 100_000;

/// A fractional order's series stops once both terms of an index are below `e^CUTOFF`
/// (Opacus' and TF Privacy's rule; `A_alpha >= 1`, so the rest is negligible).
const SERIES_CUTOFF: f64 = -30.0;

/// Opacus' default orders (`RDPAccountant.DEFAULT_ALPHAS`): 1.1 to 10.9 by 0.1, then 12 to 63.
/// Computed as Opacus does (`1 + x / 10`), so that the whole ones among them (2, 3, ...) are
/// exactly whole and take the integer series.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((12..64).map(f64::from));
    orders
}

/// `steps` rounds of the sampled Gaussian mechanism: each example joins a step's lot with
/// probability `sample_rate` (Poisson sampling), and the lot's clipped sum gets Gaussian noise
/// of standard deviation `noise_multiplier` times the clipping norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampledGaussian {
    pub sample_rate: f64,
    pub noise_multiplier: f64,
    pub steps: u64,
}

impl SampledGaussian {
    /// The composition's RDP at each order (`steps` times one step's); infinite where there is
    /// no noise.
    pub fn rdp(&self, orders: &[f64]) -> Vec<f64> {
        orders
            .iter()
            .map(|&order| {
                self.steps as f64 * rdp_one_step(self.sample_rate, self.noise_multiplier, order)
            })
            .collect()
    }

    /// Epsilon both ways at `delta`, each with its best order among `orders`.
    pub fn privacy_spent(&self, delta: f64, orders: &[f64]) -> PrivacySpent {
        let rdp = self.rdp(orders);
        let current = epsilon(orders, &rdp, delta);
        let basic = epsilon_basic(orders, &rdp, delta);
        PrivacySpent {
            epsilon: current.epsilon,
            best_order: current.order,
            epsilon_basic: basic.epsilon,
            best_order_basic: basic.order,
        }
    }
}

/// What a run spends: epsilon by the current conversion and by the basic one, and the order at
/// which each is smallest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrivacySpent {
    pub epsilon: f64,
    pub best_order: f64,
    pub epsilon_basic: f64,
    pub best_order_basic: f64,
}

/// An epsilon and the order that gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conversion {
    pub epsilon: f64,
    pub order: f64,
}

/// The RDP of one step of the sampled Gaussian mechanism at `order` (> 1): infinite without
/// noise, `order / (2 sigma^2)` without subsampling (`q = 1`), else `log(A_alpha) /
/// (alpha - 1)`.
pub fn rdp_one_step(sample_rate: f64, noise_multiplier: f64, order: f64) -> f64 {
    let (q, sigma) = (sample_rate, noise_multiplier);
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 || order.is_infinite() {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    let log_a = if order.fract() == 0.0 && order <= f64::from(u32::MAX) {
        log_a_integer(q, sigma, order as u32)
    } else {
        log_a_fractional(q, sigma, order)
    };
    // A_alpha >= 1 (a Rényi divergence is never negative); rounding can put a sum of terms
    // near 1 a hair below.
    (log_a / (order - 1.0)).max(0.0)
}

/// `log(A_alpha)` at a whole order: `sum_i binom(alpha, i) q^i (1-q)^(alpha-i)
/// exp((i^2 - i) / (2 sigma^2))`, term by term in log space.
fn log_a_integer(q: f64, sigma: f64, alpha: u32) -> f64 {
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let two_var = 2.0 * sigma * sigma;
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0; // log binom(alpha, 0)
    for i in 0..=alpha {
        let (i, rest) = (f64::from(i), f64::from(alpha - i));
        let term = log_binom + i * log_q + rest * log_1mq + (i * i - i) / two_var;
        log_a = log_add(log_a, term);
        // binom(alpha, i + 1) = binom(alpha, i) (alpha - i) / (i + 1)
        log_binom += rest.ln() - (i + 1.0).ln();
    }
    log_a
}

/// `log(A_alpha)` at a fractional order, by the series of Opacus' `_compute_log_a_frac` (see
/// the module's header); infinite if it does not converge within [`MAX_SERIES_TERMS`].
fn log_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let two_var = 2.0 * sigma * sigma;
    let scale = std::f64::consts::SQRT_2 * sigma;
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log_half = 0.5f64.ln();
    let (mut below, mut above) = (SignedLogSum::ZERO, SignedLogSum::ZERO);
    // log |binom(alpha, i)| and its sign, updated by binom(alpha, i + 1) = binom(alpha, i)
    // (alpha - i) / (i + 1).
    let (mut log_binom, mut negative) = (0.0, false);
    for i in 0..MAX_SERIES_TERMS {
        let i = i as f64;
        let j = alpha - i;
        let log_t0 = log_binom + i * log_q + j * log_1mq;
        let log_t1 = log_binom + j * log_q + i * log_1mq;
        let log_e0 = log_half + log_erfc((i - z0) / scale);
        let log_e1 = log_half + log_erfc((z0 - j) / scale);
        let log_s0 = log_t0 + (i * i - i) / two_var + log_e0;
        let log_s1 = log_t1 + (j * j - j) / two_var + log_e1;
        below.add(log_s0, negative);
        above.add(log_s1, negative);
        if log_s0.max(log_s1) < SERIES_CUTOFF {
            return match (below.negative, above.negative) {
                (false, false) => log_add(below.log_abs, above.log_abs),
                // Each part is a positive integral; a negative sum is rounding gone wrong.
                _ => f64::INFINITY,
            };
        }
        log_binom += j.abs().ln() - (i + 1.0).ln();
        negative ^= j < 0.0;
    }
    f64::INFINITY
}

/// `log(erfc(x))`, accurate far into the tail where `erfc` itself underflows: there it is
/// `log(erfcx(x)) - x^2` (`erfcx(x) = e^(x^2) erfc(x)`, the scaled function).
fn log_erfc(x: f64) -> f64 {
    if x > 0.0 {
        erfcx(x).ln() - x * x
    } else {
        erfc(x).ln()
    }
}

/// `log(e^x + e^y)`.
fn log_add(x: f64, y: f64) -> f64 {
    let (small, large) = if x < y { (x, y) } else { (y, x) };
    if small == f64::NEG_INFINITY {
        return large;
    }
    (small - large).exp().ln_1p() + large
}

/// `log(e^x - e^y)` for `x >= y`, as `x + log(1 - e^(y - x))`, which neither overflows for a
/// large gap nor loses digits for a small one (`-expm1` keeps them).
fn log_sub(x: f64, y: f64) -> f64 {
    if y == f64::NEG_INFINITY {
        return x;
    }
    if x == y {
        return f64::NEG_INFINITY;
    }
    x + (-(y - x).exp_m1()).ln()
}

/// A sum of terms of either sign, kept as its sign and the log of its magnitude.
#[derive(Clone, Copy)]
struct SignedLogSum {
    negative: bool,
    log_abs: f64,
}

impl SignedLogSum {
    const ZERO: SignedLogSum = SignedLogSum {
        negative: false,
        log_abs: f64::NEG_INFINITY,
    };

    /// Adds `-e^log_term` if `negative`, else `e^log_term`.
    fn add(&mut self, log_term: f64, negative: bool) {
        if negative == self.negative {
            self.log_abs = log_add(self.log_abs, log_term);
        } else if self.log_abs >= log_term {
            self.log_abs = log_sub(self.log_abs, log_term);
        } else {
            self.log_abs = log_sub(log_term, self.log_abs);
            self.negative = negative;
        }
    }
}

/// The current conversion (Balle et al. 2020, "Hypothesis testing interpretations and Rényi
/// differential privacy", theorem 21; what Opacus' `get_privacy_spent` and TF Privacy use
/// now): `epsilon = min_a RDP(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)`. Never
/// below 0 (TF Privacy's floor: a smaller bound says nothing more).
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> Conversion {
    best(orders, rdp, |a, r| {
        r + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0)
    })
}

/// The basic conversion (Mironov 2017, "Rényi Differential Privacy", proposition 3; what the
/// published tables of TF Privacy used): `epsilon = min_a RDP(a) + log(1 / delta) / (a - 1)`.
/// Never below 0.
pub fn epsilon_basic(orders: &[f64], rdp: &[f64], delta: f64) -> Conversion {
    best(orders, rdp, |a, r| r + (1.0 / delta).ln() / (a - 1.0))
}

/// The smallest of `bound(order, rdp)` over the orders, NaNs ignored, the first order winning
/// a tie (as numpy's `nanargmin`); infinite at the first order if every bound is infinite or
/// NaN (no noise: no privacy).
fn best(orders: &[f64], rdp: &[f64], bound: impl Fn(f64, f64) -> f64) -> Conversion {
    assert_eq!(orders.len(), rdp.len(), "one RDP value per order");
    let mut best = Conversion {
        epsilon: f64::INFINITY,
        order: orders.first().copied().unwrap_or(f64::NAN),
    };
    for (&order, &r) in orders.iter().zip(rdp) {
        let epsilon = bound(order, r);
        if epsilon < best.epsilon {
            best = Conversion { epsilon, order };
        }
    }
    best.epsilon = best.epsilon.max(0.0);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn default_orders_are_opacus_and_whole_ones_are_exact() {
        let orders = default_orders();
        assert_eq!(orders.len(), 99 + 52);
        assert_eq!((orders[0], orders[98], orders[99]), (1.1, 10.9, 12.0));
        assert_eq!(*orders.last().unwrap(), 63.0);
        let whole = orders.iter().filter(|a| a.fract() == 0.0).count();
        // 2..=10 from the first run, 12..=63 from the second.
        assert_eq!(whole, 9 + 52);
    }

    /// Without subsampling the mechanism is the Gaussian one, whose RDP is `alpha / (2
    /// sigma^2)`; the series at q -> 1 must approach it, at whole and fractional orders alike.
    #[test]
    fn series_approach_the_gaussian_mechanism_as_q_goes_to_one() {
        for order in [2.0, 5.0, 2.5, 7.3] {
            let exact = order / (2.0 * 2.0 * 2.0);
            let near = rdp_one_step(1.0 - 1e-9, 2.0, order);
            assert!(close(near, exact, 1e-6), "order {order}: {near} vs {exact}");
            assert_eq!(rdp_one_step(1.0, 2.0, order), exact);
        }
    }

    /// The fractional series agrees with the exact integer one just beside a whole order (RDP
    /// is continuous in the order), for small and large noise.
    #[test]
    fn fractional_series_meets_integer_series() {
        for (q, sigma) in [(0.01, 0.7), (0.04, 1.5), (0.2, 4.0), (1e-5, 0.1)] {
            for order in [2.0, 3.0, 8.0, 20.0] {
                let whole = rdp_one_step(q, sigma, order);
                let beside = rdp_one_step(q, sigma, order + 1e-7);
                assert!(
                    close(beside, whole, 1e-4),
                    "q {q} sigma {sigma} order {order}: {beside} vs {whole}"
                );
            }
        }
    }

    #[test]
    fn rdp_grows_with_order_and_falls_with_noise() {
        let orders = default_orders();
        let rdp = SampledGaussian {
            sample_rate: 0.01,
            noise_multiplier: 1.0,
            steps: 1,
        }
        .rdp(&orders);
        assert!(rdp.windows(2).all(|w| w[0] <= w[1]), "{rdp:?}");
        let noisier = rdp_one_step(0.01, 2.0, 8.5);
        assert!(noisier < rdp_one_step(0.01, 1.0, 8.5));
    }

    #[test]
    fn no_noise_is_infinite_epsilon() {
        let spent = SampledGaussian {
            sample_rate: 0.1,
            noise_multiplier: 0.0,
            steps: 10,
        }
        .privacy_spent(1e-5, &default_orders());
        assert!(spent.epsilon.is_infinite() && spent.epsilon_basic.is_infinite());
    }

    #[test]
    fn log_space_helpers() {
        assert!(close(log_add(2f64.ln(), 3f64.ln()), 5f64.ln(), 1e-15));
        assert!(close(log_sub(5f64.ln(), 3f64.ln()), 2f64.ln(), 1e-15));
        assert_eq!(log_sub(1000.0, -1000.0), 1000.0);
        assert!(close(log_sub(1e-12, 0.0), (1e-12f64).ln(), 1e-6));
        let mut sum = SignedLogSum::ZERO;
        sum.add(2f64.ln(), true);
        sum.add(5f64.ln(), false);
        assert!(!sum.negative && close(sum.log_abs, 3f64.ln(), 1e-15));
        // Deep in the tail, where erfc underflows, against its asymptotic series
        // erfc(x) ~ e^(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6)).
        for x in [100.0f64, 1e3, 1e8] {
            let x2 = x * x;
            let series =
                1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2);
            let expected = -x2 - (x * std::f64::consts::PI.sqrt()).ln() + series.ln();
            assert!(close(log_erfc(x), expected, 1e-14), "{x}: {}", log_erfc(x));
        }
        // Just past erfc's underflow, against mpmath (`log(erfc(30))` at 40 digits).
        assert!(close(log_erfc(30.0), -903.974_117_110_643_9, 1e-15));
        assert!(close(log_erfc(-3.0), (2.0 - erfc(3.0)).ln(), 1e-15));
    }
}
