//! Parameter updates: Adam and SGD with momentum, element-wise, as Keras computes them.

use crate::config::Optimizer;

/// Per-parameter optimiser state: Adam's moments `m`, `v`, or SGD's velocity in `m`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl OptimState {
    pub fn zeros(len: usize) -> OptimState {
        OptimState {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }
}

/// Keras' Adam: `alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, `p -= alpha * m / (sqrt(v) + eps)`.
/// `step` counts from 1.
pub fn adam_update(opt: Optimizer, step: u32, p: &mut [f32], g: &[f32], state: &mut OptimState) {
    let Optimizer::Adam {
        lr,
        beta1,
        beta2,
        epsilon,
    } = opt
    else {
        panic!("adam_update needs Adam")
    };
    let alpha = adam_step_size(lr, beta1, beta2, step);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut state.m).zip(&mut state.v) {
        *m += (g - *m) * (1.0 - beta1);
        *v += (g * g - *v) * (1.0 - beta2);
        *p -= alpha * *m / (v.sqrt() + epsilon);
    }
}

/// The bias-corrected step size, computed in f64 once per step (the GPU gets it as a uniform).
pub fn adam_step_size(lr: f32, beta1: f32, beta2: f32, step: u32) -> f32 {
    let t = f64::from(step);
    let (b1, b2) = (f64::from(beta1), f64::from(beta2));
    (f64::from(lr) * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))) as f32
}

pub fn sgd_momentum_update(opt: Optimizer, p: &mut [f32], g: &[f32], state: &mut OptimState) {
    let Optimizer::Sgd { lr, momentum } = opt else {
        panic!("sgd_momentum_update needs Sgd")
    };
    for ((p, &g), v) in p.iter_mut().zip(g).zip(&mut state.m) {
        *v = momentum * *v - lr * g;
        *p += *v;
    }
}

/// Applies `opt` to one parameter tensor.
pub fn optimizer_update(
    opt: Optimizer,
    step: u32,
    p: &mut [f32],
    g: &[f32],
    state: &mut OptimState,
) {
    match opt {
        Optimizer::Adam { .. } => adam_update(opt, step, p, g, state),
        Optimizer::Sgd { .. } => sgd_momentum_update(opt, p, g, state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_each_parameter_by_about_lr() {
        // With m = v = 0, step 1 gives m = 0.1 g, v = 0.001 g^2 and a move of lr * sign(g).
        let opt = Optimizer::adam(1e-3);
        let mut p = vec![1.0, -2.0, 0.5];
        let mut s = OptimState::zeros(3);
        adam_update(opt, 1, &mut p, &[0.3, -5.0, 0.0], &mut s);
        assert!((p[0] - (1.0 - 1e-3)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - (-2.0 + 1e-3)).abs() < 1e-6, "{p:?}");
        assert_eq!(p[2], 0.5);
        // The moments are computed in f32 like Keras: (1 - 0.999f32) is not exactly 0.001.
        assert_eq!(
            (s.m[0], s.v[1]),
            (0.3 * (1.0 - 0.9f32), 25.0 * (1.0 - 0.999f32))
        );
    }

    #[test]
    fn sgd_momentum_accumulates_velocity() {
        let opt = Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
        };
        let mut p = vec![1.0];
        let mut s = OptimState::zeros(1);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        // v1 = -0.1, v2 = -0.09 - 0.1 = -0.19; p = 1 - 0.1 - 0.19
        assert!((p[0] - 0.71).abs() < 1e-6, "{p:?}");
    }
}
