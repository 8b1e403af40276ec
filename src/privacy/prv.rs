//! The PRV accountant (Gopi, Lee, Wutschitz 2021, "Numerical Composition of Differential
//! Privacy"), computed as Opacus' `PRVAccountant` does: the privacy loss random variable (PRV)
//! of one step of the sampled Gaussian mechanism is truncated to a safe domain, discretised on a
//! mesh (its mean kept), composed `steps` times by FFT, and epsilon read off the composed
//! distribution for `delta`, with an error bound either way. Tighter than RDP's bound.

use quadrature::integrate;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

use super::rdp::{default_orders, SampledGaussian};

/// Opacus' default error allowed in epsilon (`eps_error`).
pub const EPSILON_ERROR: f64 = 0.01;

/// Opacus' default error allowed in delta (`delta_error = delta / 1000`), as a fraction of delta.
pub const DELTA_ERROR_FRACTION: f64 = 1e-3;

/// The most mesh points the accountant allocates (a few arrays of f64 each: about 200 MB at
/// most). Long runs need a finer mesh (it shrinks as `1/sqrt(steps)`) over a wider domain (it
/// grows with the RDP epsilon), so very long or very noisy-free runs exceed it; the RDP
/// accountant answers those.
pub const MAX_MESH_POINTS: usize = 1 << 22;

/// Epsilon from the composed PRV: the estimate, and the bounds of the method's error
/// (`upper` is what Opacus reports: a guarantee, not an estimate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrvEpsilon {
    pub lower: f64,
    pub estimate: f64,
    pub upper: f64,
}

/// Epsilon of `mechanism` at `delta` by the PRV accountant, with Opacus' default errors. An
/// error says why the method cannot answer (a delta too small for the mesh, a discretisation
/// too coarse).
pub fn prv_epsilon(mechanism: &SampledGaussian, delta: f64) -> Result<PrvEpsilon, String> {
    let (eps_error, delta_error) = (EPSILON_ERROR, delta * DELTA_ERROR_FRACTION);
    let steps = mechanism.steps;
    if steps == 0 {
        return Err("no steps: nothing spent".into());
    }
    let half_width = safe_domain_half_width(mechanism, eps_error, delta_error);
    let mesh = eps_error / (steps as f64 * (12.0 / delta_error).ln() / 2.0).sqrt();
    let points = 2.0 * half_width / mesh;
    if !points.is_finite() || points > MAX_MESH_POINTS as f64 {
        return Err(format!(
            "the PRV accountant would need {points:.3e} mesh points (at most {MAX_MESH_POINTS}); \
             the RDP accountant answers such runs"
        ));
    }
    let domain = Domain::aligned(-half_width, half_width, mesh);
    // Opacus refuses where rounding in the sums over the mesh (long double there) could reach
    // delta; in f64, a unit of rounding per point.
    if f64::EPSILON * domain.size as f64 > delta - delta_error {
        return Err(format!(
            "delta {delta} is too small for a mesh of {} points",
            domain.size
        ));
    }
    let prv = SubsampledGaussianPrv {
        q: mechanism.sample_rate,
        sigma: mechanism.noise_multiplier,
    };
    let truncated = TruncatedPrv::new(prv, domain.t_min, domain.t_max);
    let (pmf, domain) = discretise(&truncated, domain)?;
    let (pmf, domain) = compose(&pmf, domain, steps);
    let find = |target: f64| epsilon_for_delta(&pmf, &domain, target);
    Ok(PrvEpsilon {
        lower: find(delta + delta_error)? - eps_error,
        estimate: find(delta)?,
        upper: find(delta - delta_error)? + eps_error,
    })
}

/// Remark 5.6 of the paper, as Opacus: beyond the RDP bound on epsilon at `delta_error / 4`
/// (of the whole run) and at `delta_error / (8 steps)` (of one step), plus 3, the PRV's mass
/// is negligible.
fn safe_domain_half_width(mechanism: &SampledGaussian, eps_error: f64, delta_error: f64) -> f64 {
    let orders = default_orders();
    let whole = mechanism.privacy_spent(delta_error / 4.0, &orders).epsilon;
    let one_step = SampledGaussian {
        steps: 1,
        ..*mechanism
    };
    let per_step = delta_error / (8.0 * mechanism.steps as f64);
    let single = one_step.privacy_spent(per_step, &orders).epsilon;
    whole.max(single).max(eps_error) + 3.0
}

/// An evenly spaced grid of `size` points (even) from `t_min` to `t_max`, moved by `shifts` in
/// all.
#[derive(Clone, Copy, Debug)]
struct Domain {
    t_min: f64,
    t_max: f64,
    size: usize,
    shifts: f64,
}

impl Domain {
    /// The grid of spacing `dt` whose ends are multiples of it around `[t_min, t_max]`, one
    /// point longer if that makes its size even (the FFT composition wants it even).
    fn aligned(t_min: f64, t_max: f64, dt: f64) -> Domain {
        let t_min = (t_min / dt).floor() * dt;
        let mut t_max = (t_max / dt).ceil() * dt;
        let mut size = ((t_max - t_min) / dt).round() as usize + 1;
        if !size.is_multiple_of(2) {
            size += 1;
            t_max += dt;
        }
        Domain {
            t_min,
            t_max,
            size,
            shifts: 0.0,
        }
    }

    fn dt(&self) -> f64 {
        (self.t_max - self.t_min) / (self.size - 1) as f64
    }

    /// The points, as numpy's `linspace` places them (the last one exactly `t_max`).
    fn ts(&self) -> Vec<f64> {
        let step = self.dt();
        let mut ts: Vec<f64> = (0..self.size)
            .map(|i| self.t_min + i as f64 * step)
            .collect();
        ts[self.size - 1] = self.t_max;
        ts
    }

    fn shift_right(&self, by: f64) -> Domain {
        Domain {
            t_min: self.t_min + by,
            t_max: self.t_max + by,
            size: self.size,
            shifts: self.shifts + by,
        }
    }
}

/// The PRV of one step of the Poisson-subsampled Gaussian mechanism (propositions B1 and B4 of
/// the paper): its distribution function.
#[derive(Clone, Copy)]
struct SubsampledGaussianPrv {
    q: f64,
    sigma: f64,
}

impl SubsampledGaussianPrv {
    fn cdf(&self, t: f64) -> f64 {
        let (q, sigma) = (self.q, self.sigma);
        if t <= (-q).ln_1p() {
            return 0.0;
        }
        let z = ((t.exp() + q - 1.0) / q).ln();
        let scale = 2.0 * std::f64::consts::SQRT_2 * sigma;
        let s2 = sigma * sigma;
        1.0 - q * puruspe::erfc((2.0 * z * s2 - 1.0) / scale) / 2.0
            - (1.0 - q) * puruspe::erfc((2.0 * z * s2 + 1.0) / scale) / 2.0
    }
}

/// The PRV conditioned on `[t_min, t_max)`.
struct TruncatedPrv {
    prv: SubsampledGaussianPrv,
    t_min: f64,
    t_max: f64,
    remaining_mass: f64,
}

impl TruncatedPrv {
    fn new(prv: SubsampledGaussianPrv, t_min: f64, t_max: f64) -> TruncatedPrv {
        let remaining_mass = prv.cdf(t_max) - prv.cdf(t_min);
        TruncatedPrv {
            prv,
            t_min,
            t_max,
            remaining_mass,
        }
    }

    fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (self.prv.cdf(t) - self.prv.cdf(self.t_min)) / self.remaining_mass
        } else {
            1.0
        }
    }

    /// The mean, by parts (`[t F(t)] - integral of F`) over pieces that crowd around 0, as
    /// Opacus splits it.
    fn mean(&self) -> f64 {
        let mut points = vec![self.t_min];
        points.extend([
            -1e-1, -1e-2, -1e-3, -1e-4, -1e-5, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
        ]);
        points.push(self.t_max);
        let mut mean = 0.0;
        for pair in points.windows(2) {
            let (left, right) = (pair[0], pair[1]);
            let integral = integrate(|t| self.cdf(t), left, right, 1e-14).integral;
            mean += right * self.cdf(right) - left * self.cdf(left) - integral;
        }
        mean
    }
}

/// The probability of each mesh cell (the distribution function's rise across it), with the
/// domain moved so that the discrete mean is the continuous one.
fn discretise(prv: &TruncatedPrv, domain: Domain) -> Result<(Vec<f64>, Domain), String> {
    let (ts, dt) = (domain.ts(), domain.dt());
    let pmf: Vec<f64> = ts
        .iter()
        .map(|&t| prv.cdf(t + dt / 2.0) - prv.cdf(t - dt / 2.0))
        .collect();
    let mean_discrete: f64 = ts.iter().zip(&pmf).map(|(t, p)| t * p).sum();
    let shift = prv.mean() - mean_discrete;
    if shift.abs() >= dt / 2.0 {
        return Err(format!(
            "the mesh (step {dt:.3e}) is too coarse for this run's privacy loss (its discrete \
             mean is {shift:.3e} off, half a step or more); the RDP accountant answers it"
        ));
    }
    Ok((pmf, domain.shift_right(shift)))
}

/// `steps` self-compositions by FFT (`irfft(rfft(pmf)^steps)`), rolled as Opacus rolls them so
/// that the grid's points keep their meaning.
fn compose(pmf: &[f64], domain: Domain, steps: u64) -> (Vec<f64>, Domain) {
    let n = pmf.len();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let mut input = pmf.to_vec();
    let mut spectrum = forward.make_output_vec();
    forward
        .process(&mut input, &mut spectrum)
        .expect("buffer sizes from the plan");
    for c in &mut spectrum {
        *c = c.powf(steps as f64);
    }
    // The real transform's first and last coefficients are real; rounding must not say else.
    let last = spectrum.len() - 1;
    spectrum[0] = Complex::new(spectrum[0].re, 0.0);
    spectrum[last] = Complex::new(spectrum[last].re, 0.0);
    let mut composed = inverse.make_output_vec();
    inverse
        .process(&mut spectrum, &mut composed)
        .expect("buffer sizes from the plan");
    let scale = 1.0 / n as f64;
    composed.iter_mut().for_each(|p| *p *= scale);
    let mut roll = (steps - 1) as usize % n;
    if steps.is_multiple_of(2) {
        roll = (roll + n / 2) % n;
    }
    composed.rotate_right(roll);
    let domain = domain.shift_right(domain.shifts * (steps - 1) as f64);
    (composed, domain)
}

/// The smallest epsilon on the grid whose delta is at most `delta` (Opacus' `find_epsilon`):
/// `delta(eps) = sum_{t >= eps} p(t) (1 - e^(eps - t))`, read at the first grid point where
/// it falls to `delta`.
fn epsilon_for_delta(pmf: &[f64], domain: &Domain, delta: f64) -> Result<f64, String> {
    let ts = domain.ts();
    let n = pmf.len();
    // Tail sums from the end, one term at a time (numpy's cumsum of the flipped arrays).
    let (mut d1, mut d2) = (vec![0.0; n], vec![0.0; n]);
    let (mut s1, mut s2) = (0.0, 0.0);
    for i in (0..n).rev() {
        s1 += pmf[i];
        s2 += pmf[i] * (-ts[i]).exp();
        (d1[i], d2[i]) = (s1, s2);
    }
    let ndelta: Vec<f64> = (0..n).map(|i| ts[i].exp() * d2[i] - d1[i]).collect();
    // numpy's searchsorted(side="left"): the first index whose value is >= -delta.
    let (mut low, mut high) = (0, n);
    while low < high {
        let mid = low + (high - low) / 2;
        if ndelta[mid] < -delta {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    if low == 0 || low == n {
        return Err(format!(
            "cannot compute epsilon for delta {delta} on this domain"
        ));
    }
    Ok(((d1[low] - delta) / d2[low]).ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The discretised PRV keeps its mass and mean, and the domain is aligned and even.
    #[test]
    fn discretisation_keeps_mass_and_mean() {
        let domain = Domain::aligned(-5.0, 5.0, 0.01);
        assert_eq!(domain.size % 2, 0);
        assert!((domain.dt() - 0.01).abs() < 1e-12);
        let prv = SubsampledGaussianPrv { q: 0.1, sigma: 1.0 };
        let truncated = TruncatedPrv::new(prv, domain.t_min, domain.t_max);
        let (pmf, shifted) = discretise(&truncated, domain).unwrap();
        let mass: f64 = pmf.iter().sum();
        assert!((mass - 1.0).abs() < 1e-12, "{mass}");
        let mean: f64 = shifted.ts().iter().zip(&pmf).map(|(t, p)| t * p).sum();
        assert!((mean - truncated.mean()).abs() < 1e-12);
    }

    /// Composing once changes nothing; composing twice by FFT is the direct (circular)
    /// convolution placed on the same grid: on `t_k = (k - K) dt` with `K = n/2 - 1`, points `i`
    /// and `j` sum to point `i + j - K`.
    #[test]
    fn fft_composition_matches_direct_convolution() {
        let pmf = [0.1, 0.2, 0.3, 0.25, 0.1, 0.05];
        let domain = Domain::aligned(-2.0, 2.0, 1.0);
        assert_eq!((domain.t_min, domain.t_max, domain.size), (-2.0, 3.0, 6));
        let (once, _) = compose(&pmf, domain, 1);
        for (a, b) in once.iter().zip(&pmf) {
            assert!((a - b).abs() < 1e-15);
        }
        let (twice, _) = compose(&pmf, domain, 2);
        let mut direct = [0.0; 6];
        for (i, a) in pmf.iter().enumerate() {
            for (j, b) in pmf.iter().enumerate() {
                direct[(i + j + 6 - 2) % 6] += a * b;
            }
        }
        for (a, b) in twice.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-15, "{twice:?} against {direct:?}");
        }
    }
}
