//! Activations reference (ReLU, sigmoid, tanh), element-wise over any layout. Each backward
//! pass reads the forward output `y`, not the input, so the input need not be kept.

use super::float::Float;
use crate::model::Activation;

pub fn activation_forward<T: Float>(a: Activation, x: &[T], y: &mut [T]) {
    let f: fn(T) -> T = match a {
        Activation::Relu => |x| x.max(T::zero()),
        Activation::Sigmoid => |x| T::one() / (T::one() + (-x).exp()),
        Activation::Tanh => |x| x.tanh(),
    };
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x));
}

/// `dx = dy * f'(x)`, written in terms of `y = f(x)`: ReLU passes `dy` where `y > 0` (the
/// subgradient at 0 is 0), sigmoid scales by `y (1 - y)`, tanh by `1 - y^2`.
pub fn activation_backward<T: Float>(a: Activation, y: &[T], dy: &[T], dx: &mut [T]) {
    let df: fn(T, T) -> T = match a {
        Activation::Relu => |y, dy| if y > T::zero() { dy } else { T::zero() },
        Activation::Sigmoid => |y, dy| dy * y * (T::one() - y),
        Activation::Tanh => |y, dy| dy * (T::one() - y * y),
    };
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = df(y, dy);
    }
}
