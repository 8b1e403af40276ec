//! Pooling reference, max and average: 2x2 windows, stride 2, odd sizes floor (the last
//! row/column is dropped, like Keras' valid pooling). The max forward pass records, per output,
//! the index of the winning input within its image (first maximum in row-major window order on
//! ties) for the backward.

use super::float::Float;
use crate::model::Shape;

pub fn pool2d_output(input: Shape) -> Shape {
    Shape::new(input.channels, input.height / 2, input.width / 2)
}

/// `y` and `argmax` are `n x output`; `argmax` holds indices into the image's `input` elements.
pub fn maxpool2d_forward<T: Float>(input: Shape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    let out = pool2d_output(input);
    let (width, plane_len) = (input.width, input.height * input.width);
    let planes = x
        .chunks_exact(plane_len)
        .zip(y.chunks_exact_mut(out.height * out.width))
        .zip(argmax.chunks_exact_mut(out.height * out.width));
    for (plane, ((x, y), argmax)) in planes.enumerate() {
        let channel_start = (plane % input.channels) * plane_len;
        let rows = y
            .chunks_exact_mut(out.width)
            .zip(argmax.chunks_exact_mut(out.width));
        for (oy, (y, argmax)) in rows.enumerate() {
            let top_start = 2 * oy * width;
            let top = &x[top_start..top_start + 2 * out.width];
            let bottom = &x[top_start + width..top_start + width + 2 * out.width];
            let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
            for (ox, ((y, argmax), (top, bottom))) in
                y.iter_mut().zip(argmax).zip(windows).enumerate()
            {
                // Offsets in row-major window order; value and offset are tracked together so
                // that the comparisons compile to selects, which vectorise, not to branches.
                let (mut max, mut offset) = (top[0], 0);
                for (value, candidate) in [(top[1], 1), (bottom[0], width), (bottom[1], width + 1)]
                {
                    if value > max {
                        (max, offset) = (value, candidate);
                    }
                }
                *y = max;
                *argmax = (channel_start + top_start + 2 * ox + offset) as u32;
            }
        }
    }
}

/// Routes each output gradient to the input that won its window; the others get zero.
pub fn maxpool2d_backward<T: Float>(input: Shape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    let out = pool2d_output(input);
    dx.fill(T::zero());
    let images = dx
        .chunks_exact_mut(input.len())
        .zip(dy.chunks_exact(out.len()))
        .zip(argmax.chunks_exact(out.len()));
    for ((dx, dy), argmax) in images {
        // Windows do not overlap, so each input receives at most one gradient.
        for (&g, &i) in dy.iter().zip(argmax) {
            dx[i as usize] = g;
        }
    }
}

/// Each output is the mean of its 2x2 window.
pub fn avgpool2d_forward<T: Float>(input: Shape, x: &[T], y: &mut [T]) {
    let out = pool2d_output(input);
    let quarter = T::from_f64_lossy(0.25);
    let planes = x
        .chunks_exact(input.height * input.width)
        .zip(y.chunks_exact_mut(out.height * out.width));
    for (x, y) in planes {
        for (oy, y) in y.chunks_exact_mut(out.width).enumerate() {
            let top = &x[2 * oy * input.width..];
            let bottom = &top[input.width..];
            for (ox, y) in y.iter_mut().enumerate() {
                let (t, b) = (&top[2 * ox..], &bottom[2 * ox..]);
                *y = (t[0] + t[1] + b[0] + b[1]) * quarter;
            }
        }
    }
}

/// Spreads each output gradient evenly over its window; cropped rows and columns get zero.
pub fn avgpool2d_backward<T: Float>(input: Shape, dy: &[T], dx: &mut [T]) {
    let out = pool2d_output(input);
    let quarter = T::from_f64_lossy(0.25);
    dx.fill(T::zero());
    let planes = dx
        .chunks_exact_mut(input.height * input.width)
        .zip(dy.chunks_exact(out.height * out.width));
    for (dx, dy) in planes {
        for (oy, dy) in dy.chunks_exact(out.width).enumerate() {
            for (ox, &g) in dy.iter().enumerate() {
                let share = g * quarter;
                for (ry, rx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    dx[(2 * oy + ry) * input.width + 2 * ox + rx] = share;
                }
            }
        }
    }
}
