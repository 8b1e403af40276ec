//! Activations reference (ReLU, sigmoid, tanh), element-wise over any layout. Each backward
//! pass reads the forward output `y`, not the input, so the input need not be kept.

use super::float::Float;
use crate::model::Activation;

pub fn activation_forward<T: Float>(a: Activation, x: &[T], y: &mut [T]) {
    // One loop per function, so that each is inlined and vectorised.
    match a {
        Activation::Relu => map(x, y, |x| x.max(T::zero())),
        Activation::Sigmoid => map(x, y, |x| T::one() / (T::one() + (-x).exp())),
        Activation::Tanh => map(x, y, |x| x.tanh()),
    }
}

/// `dx = dy * f'(x)`, written in terms of `y = f(x)`: ReLU passes `dy` where `y > 0` (the
/// subgradient at 0 is 0), sigmoid scales by `y (1 - y)`, tanh by `1 - y^2`.
pub fn activation_backward<T: Float>(a: Activation, y: &[T], dy: &[T], dx: &mut [T]) {
    match a {
        Activation::Relu => map2(
            y,
            dy,
            dx,
            |y, dy| if y > T::zero() { dy } else { T::zero() },
        ),
        Activation::Sigmoid => map2(y, dy, dx, |y, dy| dy * y * (T::one() - y)),
        Activation::Tanh => map2(y, dy, dx, |y, dy| dy * (T::one() - y * y)),
    }
}

fn map<T: Float>(x: &[T], y: &mut [T], f: impl Fn(T) -> T) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x));
}

fn map2<T: Float>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
    for ((out, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *out = f(a, b);
    }
}
