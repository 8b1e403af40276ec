//! MaxPool2d reference: 2x2 windows, stride 2, odd sizes floor (the last row/column is dropped,
//! like Keras' valid pooling). The forward pass records, per output, the index of the winning
//! input within its image (first maximum in row-major window order on ties) for the backward.

use rayon::prelude::*;

use super::float::Float;
use crate::model::Shape;

pub fn maxpool2d_output(input: Shape) -> Shape {
    Shape::new(input.channels, input.height / 2, input.width / 2)
}

/// `y` and `argmax` are `n x output`; `argmax` holds indices into the image's `input` elements.
pub fn maxpool2d_forward<T: Float>(input: Shape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    let out = maxpool2d_output(input);
    y.par_chunks_exact_mut(out.len())
        .zip(argmax.par_chunks_exact_mut(out.len()))
        .zip(x.par_chunks_exact(input.len()))
        .for_each(|((y, argmax), x)| {
            for c in 0..out.channels {
                for oy in 0..out.height {
                    for ox in 0..out.width {
                        let o = (c * out.height + oy) * out.width + ox;
                        let corner = (c * input.height + 2 * oy) * input.width + 2 * ox;
                        let window = [
                            corner,
                            corner + 1,
                            corner + input.width,
                            corner + input.width + 1,
                        ];
                        let best = window
                            .into_iter()
                            .reduce(|b, i| if x[i] > x[b] { i } else { b });
                        let best = best.expect("window has four elements");
                        y[o] = x[best];
                        argmax[o] = best as u32;
                    }
                }
            }
        });
}

/// Routes each output gradient to the input that won its window; the others get zero.
pub fn maxpool2d_backward<T: Float>(input: Shape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    let out = maxpool2d_output(input);
    dx.par_chunks_exact_mut(input.len())
        .zip(dy.par_chunks_exact(out.len()))
        .zip(argmax.par_chunks_exact(out.len()))
        .for_each(|((dx, dy), argmax)| {
            dx.fill(T::zero());
            // Windows do not overlap, so each input receives at most one gradient.
            dy.iter()
                .zip(argmax)
                .for_each(|(&g, &i)| dx[i as usize] = g);
        });
}
