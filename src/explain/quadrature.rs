//! Gauss–Legendre quadrature on [0, 1], the rule integrated gradients uses (as Captum's default,
//! `method="gausslegendre"`): `n` nodes integrate every polynomial of degree up to `2n - 1`
//! exactly, and a smooth integrand's error falls faster than any power of `n`. A path through
//! ReLU kinks has a piecewise smooth integrand, for which the error still falls as `1 / n`.

/// The `n` nodes in (0, 1), increasing, and their weights (summing to 1), in f64.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(n > 0, "gauss_legendre: at least one node");
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n.div_ceil(2) {
        // Newton's method on P_n from the Tricomi-style first guess; each root of P_n is
        // simple, and the guess is close enough that a handful of steps reach f64 precision.
        let mut t = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (p, dp) = legendre(n, t);
            derivative = dp;
            let step = p / dp;
            t -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        let (_, dp) = legendre(n, t);
        derivative = if dp != 0.0 { dp } else { derivative };
        let w = 2.0 / ((1.0 - t * t) * derivative * derivative);
        // Roots come in pairs +-t; mapped from [-1, 1] to [0, 1], each weight halves.
        nodes[i] = (1.0 - t) / 2.0;
        nodes[n - 1 - i] = (1.0 + t) / 2.0;
        weights[i] = w / 2.0;
        weights[n - 1 - i] = w / 2.0;
    }
    (nodes, weights)
}

/// `P_n(t)` and `P_n'(t)`, by the three-term recurrence.
fn legendre(n: usize, t: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, t);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let k = k as f64;
        let p2 = ((2.0 * k - 1.0) * t * p1 - (k - 1.0) * p0) / k;
        (p0, p1) = (p1, p2);
    }
    let dp = n as f64 * (t * p1 - p0) / (t * t - 1.0);
    (p1, dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integrate(n: usize, f: impl Fn(f64) -> f64) -> f64 {
        let (nodes, weights) = gauss_legendre(n);
        nodes.iter().zip(&weights).map(|(&t, &w)| w * f(t)).sum()
    }

    #[test]
    fn nodes_are_increasing_inside_the_interval_and_weights_sum_to_one() {
        for n in [1, 2, 3, 7, 64, 257] {
            let (nodes, weights) = gauss_legendre(n);
            assert!(nodes.windows(2).all(|w| w[0] < w[1]), "n = {n}");
            assert!(nodes.iter().all(|&t| 0.0 < t && t < 1.0), "n = {n}");
            let total: f64 = weights.iter().sum();
            assert!((total - 1.0).abs() < 1e-13, "n = {n}: {total}");
        }
        assert_eq!(gauss_legendre(1), (vec![0.5], vec![1.0]));
    }

    #[test]
    fn n_nodes_integrate_polynomials_of_degree_2n_minus_1_exactly_but_not_2n() {
        for n in 1..=12 {
            // The integral of t^d over [0, 1] is 1 / (d + 1).
            let error = |d: i32| integrate(n, |t| t.powi(d)) - 1.0 / (d as f64 + 1.0);
            assert!(error(2 * n as i32 - 1).abs() < 1e-13, "n = {n}");
        }
        for n in 1..=6 {
            // For t^(2n) the error is the rule's error constant exactly:
            // (n!)^4 / ((2n + 1) ((2n)!)^2) on [0, 1], the rule falling short of the integral.
            let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
            let expected = factorial(n).powi(4) / ((2 * n + 1) as f64 * factorial(2 * n).powi(2));
            let error = -(integrate(n, |t| t.powi(2 * n as i32)) - 1.0 / (2 * n + 1) as f64);
            assert!(
                (error / expected - 1.0).abs() < 1e-3,
                "n = {n}: error {error:e}, expected {expected:e}"
            );
        }
    }

    #[test]
    fn a_smooth_integrand_converges_geometrically() {
        // The integral of cos(6t) over [0, 1] is sin(6) / 6. Gauss–Legendre's error on an
        // analytic integrand falls like rho^(-2n): doubling n squares it, or better.
        let exact = 6.0f64.sin() / 6.0;
        let error = |n: usize| (integrate(n, |t| (6.0 * t).cos()) - exact).abs();
        let errors: Vec<f64> = [2, 4, 8].iter().map(|&n| error(n)).collect();
        assert!(errors[0] > 1e-3, "{errors:?}");
        assert!(errors[1] < errors[0].powi(2), "{errors:?}");
        assert!(errors[2] < errors[1].powi(2) * 1e-3, "{errors:?}");
    }
}
