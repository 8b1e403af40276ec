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

/// Keras' Adam: `alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, `p -= alpha * m / (sqrt(v) + eps)`;
/// with L2 weight decay `g += wd * p` first, or decoupled (AdamW) `p -= lr * wd * p` first.
/// `step` counts from 1.
pub fn adam_update(opt: Optimizer, step: u32, p: &mut [f32], g: &[f32], state: &mut OptimState) {
    let Optimizer::Adam {
        lr,
        beta1,
        beta2,
        epsilon,
        ..
    } = opt
    else {
        panic!("adam_update needs Adam")
    };
    let alpha = adam_step_size(lr, beta1, beta2, step);
    let decay = WeightDecay::of(opt);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut state.m).zip(&mut state.v) {
        let g = g + decay.l2 * *p;
        *p -= decay.decoupled * *p;
        *m += (g - *m) * (1.0 - beta1);
        *v += (g * g - *v) * (1.0 - beta2);
        *p -= alpha * *m / (v.sqrt() + epsilon);
    }
}

/// The two forms of weight decay as per-step factors: `l2` scales the parameter added to the
/// gradient, `decoupled` (AdamW: lr times the decay) the parameter subtracted from itself.
/// Zero factors leave the update bit-identical to one without decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightDecay {
    pub l2: f32,
    pub decoupled: f32,
}

impl WeightDecay {
    pub fn of(opt: Optimizer) -> WeightDecay {
        match opt {
            Optimizer::Adam {
                lr,
                weight_decay,
                decoupled: true,
                ..
            } => WeightDecay {
                l2: 0.0,
                decoupled: lr * weight_decay,
            },
            Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => {
                WeightDecay {
                    l2: weight_decay,
                    decoupled: 0.0,
                }
            }
        }
    }
}

/// The bias-corrected step size, computed in f64 once per step (the GPU gets it as a uniform).
pub fn adam_step_size(lr: f32, beta1: f32, beta2: f32, step: u32) -> f32 {
    let t = f64::from(step);
    let (b1, b2) = (f64::from(beta1), f64::from(beta2));
    (f64::from(lr) * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))) as f32
}

/// Keras' SGD with momentum: `v = momentum * v - lr * g; p += v`, or with Nesterov
/// `p += momentum * v - lr * g`; L2 weight decay adds `wd * p` to the gradient first.
pub fn sgd_momentum_update(opt: Optimizer, p: &mut [f32], g: &[f32], state: &mut OptimState) {
    let Optimizer::Sgd {
        lr,
        momentum,
        nesterov,
        ..
    } = opt
    else {
        panic!("sgd_momentum_update needs Sgd")
    };
    let decay = WeightDecay::of(opt);
    for ((p, &g), v) in p.iter_mut().zip(g).zip(&mut state.m) {
        let g = g + decay.l2 * *p;
        *v = momentum * *v - lr * g;
        *p += if nesterov { momentum * *v - lr * g } else { *v };
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

/// [`optimizer_update`] under a mask: the entries `keep` prunes (false) end the step at exactly
/// zero, their moments too, whatever their gradient; the kept ones take the plain update.
/// Twin of optim.wgsl's masked entry points.
pub fn masked_optimizer_update(
    opt: Optimizer,
    step: u32,
    p: &mut [f32],
    g: &[f32],
    state: &mut OptimState,
    keep: &[bool],
) {
    optimizer_update(opt, step, p, g, state);
    for (i, _) in keep.iter().enumerate().filter(|(_, &kept)| !kept) {
        p[i] = 0.0;
        state.m[i] = 0.0;
        state.v[i] = 0.0;
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
        let opt = Optimizer::sgd(0.1);
        let mut p = vec![1.0];
        let mut s = OptimState::zeros(1);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        // v1 = -0.1, v2 = -0.09 - 0.1 = -0.19; p = 1 - 0.1 - 0.19
        assert!((p[0] - 0.71).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn nesterov_looks_ahead_along_the_velocity() {
        let opt = Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        let mut p = vec![1.0];
        let mut s = OptimState::zeros(1);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        sgd_momentum_update(opt, &mut p, &[1.0], &mut s);
        // v1 = -0.1, p1 = 1 + 0.9 * -0.1 - 0.1 = 0.81; v2 = -0.19, p2 = 0.81 - 0.171 - 0.1
        assert!((p[0] - 0.539).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn weight_decay_is_l2_for_adam_and_sgd_and_decoupled_for_adamw() {
        // L2: the same update as an undecayed step on g + wd * p.
        let (p0, g, wd) = (2.0f32, 0.5f32, 0.1f32);
        for plain in [Optimizer::adam(0.01), Optimizer::sgd(0.01)] {
            let decayed = plain.with_weight_decay(wd);
            let (mut a, mut b) = (vec![p0], vec![p0]);
            let (mut sa, mut sb) = (OptimState::zeros(1), OptimState::zeros(1));
            optimizer_update(decayed, 1, &mut a, &[g], &mut sa);
            optimizer_update(plain, 1, &mut b, &[g + wd * p0], &mut sb);
            assert_eq!(a, b, "{}", plain.name());
        }
        // AdamW: p shrinks by lr * wd * p, then takes the plain Adam step on g.
        let (mut a, mut b) = (vec![p0], vec![p0 - 0.01 * wd * p0]);
        let (mut sa, mut sb) = (OptimState::zeros(1), OptimState::zeros(1));
        optimizer_update(Optimizer::adamw(0.01, wd), 1, &mut a, &[g], &mut sa);
        optimizer_update(Optimizer::adam(0.01), 1, &mut b, &[g], &mut sb);
        assert_eq!(a, b);
    }

    #[test]
    fn a_masked_update_zeroes_the_pruned_and_leaves_the_kept_as_unmasked() {
        let keep = [true, false, true, false];
        for opt in [
            Optimizer::adam(0.01),
            Optimizer::sgd(0.05).with_weight_decay(0.1),
        ] {
            let (mut masked, mut plain) = (vec![0.5, 0.0, -1.0, 0.0], vec![0.5, 0.0, -1.0, 0.0]);
            let (mut sm, mut sp) = (OptimState::zeros(4), OptimState::zeros(4));
            for step in 1..=3 {
                let g = [0.3, -2.0, 1.5, f32::from(step as u8)];
                masked_optimizer_update(opt, step, &mut masked, &g, &mut sm, &keep);
                optimizer_update(opt, step, &mut plain, &g, &mut sp);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(
                bits(&masked),
                bits(&[plain[0], 0.0, plain[2], 0.0]),
                "{}",
                opt.name()
            );
            assert_eq!(bits(&sm.m), bits(&[sp.m[0], 0.0, sp.m[2], 0.0]));
            assert_eq!(bits(&sm.v), bits(&[sp.v[0], 0.0, sp.v[2], 0.0]));
            assert_ne!(
                plain[1], 0.0,
                "the gradient would have moved the pruned weight"
            );
        }
    }
}
