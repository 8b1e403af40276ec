//! ReLU reference, element-wise over any layout.

use super::float::Float;

pub fn relu_forward<T: Float>(x: &[T], y: &mut [T]) {
    y.iter_mut()
        .zip(x)
        .for_each(|(y, &x)| *y = x.max(T::zero()));
}

/// `dx = dy` where the output was positive, else 0 (the subgradient at 0 is taken as 0).
pub fn relu_backward<T: Float>(y: &[T], dy: &[T], dx: &mut [T]) {
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = if y > T::zero() { dy } else { T::zero() };
    }
}
