//! Conv2d reference (any stride, zero padding), NCHW activations and OIHW weights.
//!
//! Each image is lowered to columns (`im2col`, rows = (in channel, ky, kx), columns = output
//! positions) and multiplied by the weights as a GEMM, one image at a time. The ops run on one
//! thread: the network parallelises over chunks of the batch (see `network.rs`).

use super::float::{self, Float, MatMut, MatRef};
use crate::model::{conv_padding, Layer, Shape, Step};

/// The geometry of one convolution layer: `pad` zeros on every side of the input, then a
/// `kernel` x `kernel` window every `stride` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub input: Shape,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dGeometry {
    /// Stride 1, no padding.
    pub const fn new(input: Shape, out_channels: usize, kernel: usize) -> Conv2dGeometry {
        Conv2dGeometry {
            input,
            out_channels,
            kernel,
            stride: 1,
            pad: 0,
        }
    }

    /// The geometry of a conv step of a plan.
    pub fn of(step: &Step) -> Conv2dGeometry {
        let Layer::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
        } = step.layer
        else {
            unreachable!("not a conv step")
        };
        Conv2dGeometry {
            stride,
            pad: conv_padding(kernel, padding),
            ..Conv2dGeometry::new(step.input, out_channels, kernel)
        }
    }

    /// Stride 1 without padding: every window lies inside the image.
    pub fn is_dense(&self) -> bool {
        self.stride == 1 && self.pad == 0
    }

    pub fn output(&self) -> Shape {
        let out = |size: usize| (size + 2 * self.pad - self.kernel) / self.stride + 1;
        Shape::new(
            self.out_channels,
            out(self.input.height),
            out(self.input.width),
        )
    }

    /// The input pixel under kernel tap `k` of output position `o`, if it is not padding.
    fn source(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < size)
    }

    /// Rows of the column matrix: in channels x kernel x kernel (the GEMM's K).
    fn patch_len(&self) -> usize {
        self.input.channels * self.kernel * self.kernel
    }

    /// Columns of the column matrix: output positions.
    fn positions(&self) -> usize {
        let out = self.output();
        out.height * out.width
    }

    fn weights(self, w: &[impl Copy]) -> usize {
        assert_eq!(
            w.len(),
            self.out_channels * self.patch_len(),
            "conv2d: weight length"
        );
        self.patch_len()
    }
}

/// Replaces `cols` with the receptive fields of one image `x`, one per column
/// (`patch_len x positions`). Appending leaves nothing to zero first.
fn im2col<T: Float>(g: Conv2dGeometry, x: &[T], cols: &mut Vec<T>) {
    let (input, k, out) = (g.input, g.kernel, g.output());
    cols.clear();
    if !g.is_dense() {
        return im2col_strided(g, x, cols);
    }
    for c in 0..input.channels {
        for ky in 0..k {
            for kx in 0..k {
                for oy in 0..out.height {
                    let src = (c * input.height + oy + ky) * input.width + kx;
                    cols.extend_from_slice(&x[src..src + out.width]);
                }
            }
        }
    }
}

/// [`im2col`] with strides and padding, one element at a time (zeros for padding).
fn im2col_strided<T: Float>(g: Conv2dGeometry, x: &[T], cols: &mut Vec<T>) {
    let (input, k, out) = (g.input, g.kernel, g.output());
    for c in 0..input.channels {
        for ky in 0..k {
            for kx in 0..k {
                for oy in 0..out.height {
                    let row = g.source(oy, ky, input.height);
                    cols.extend((0..out.width).map(|ox| {
                        match (row, g.source(ox, kx, input.width)) {
                            (Some(iy), Some(ix)) => x[(c * input.height + iy) * input.width + ix],
                            _ => T::zero(),
                        }
                    }));
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column back onto the pixels it came from.
fn col2im<T: Float>(g: Conv2dGeometry, cols: &[T], dx: &mut [T]) {
    let (input, k, out) = (g.input, g.kernel, g.output());
    dx.fill(T::zero());
    if !g.is_dense() {
        return col2im_strided(g, cols, dx);
    }
    let mut rows = cols.chunks_exact(g.positions());
    for c in 0..input.channels {
        for ky in 0..k {
            for kx in 0..k {
                let row = rows.next().expect("one row per (channel, ky, kx)");
                for oy in 0..out.height {
                    let dst = (c * input.height + oy + ky) * input.width + kx;
                    let src = &row[oy * out.width..][..out.width];
                    dx[dst..dst + out.width]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d = *d + s);
                }
            }
        }
    }
}

/// [`col2im`] with strides and padding (padding taps are dropped).
fn col2im_strided<T: Float>(g: Conv2dGeometry, cols: &[T], dx: &mut [T]) {
    let (input, k, out) = (g.input, g.kernel, g.output());
    let mut rows = cols.chunks_exact(g.positions());
    for c in 0..input.channels {
        for ky in 0..k {
            for kx in 0..k {
                let row = rows.next().expect("one row per (channel, ky, kx)");
                for (oy, row) in row.chunks_exact(out.width).enumerate() {
                    let Some(iy) = g.source(oy, ky, input.height) else {
                        continue;
                    };
                    for (ox, &v) in row.iter().enumerate() {
                        if let Some(ix) = g.source(ox, kx, input.width) {
                            let d = &mut dx[(c * input.height + iy) * input.width + ix];
                            *d = *d + v;
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w) + b` for `n` images; `x` is `n x input`, `y` is `n x output`.
pub fn conv2d_forward<T: Float>(g: Conv2dGeometry, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    let (k, p, co) = (g.weights(w), g.positions(), g.out_channels);
    assert_eq!(b.len(), co, "conv2d: bias length");
    let mut cols = Vec::with_capacity(k * p);
    for (x, y) in x
        .chunks_exact(g.input.len())
        .zip(y.chunks_exact_mut(co * p))
    {
        im2col(g, x, &mut cols);
        for (plane, &bias) in y.chunks_exact_mut(p).zip(b) {
            plane.fill(bias);
        }
        T::gemm(
            T::one(),
            MatRef::row_major(w, co, k),
            MatRef::row_major(&cols, k, p),
            T::one(),
            MatMut::row_major(y, co, p),
        );
    }
}

/// `dx = conv_transpose(dy, w)`: the gradient with respect to the input.
pub fn conv2d_backward_input<T: Float>(g: Conv2dGeometry, dy: &[T], w: &[T], dx: &mut [T]) {
    let (k, p, co) = (g.weights(w), g.positions(), g.out_channels);
    let mut dcols = vec![T::zero(); k * p];
    for (dx, dy) in dx
        .chunks_exact_mut(g.input.len())
        .zip(dy.chunks_exact(co * p))
    {
        T::gemm(
            T::one(),
            MatRef::row_major(w, co, k).t(),
            MatRef::row_major(dy, co, p),
            T::zero(),
            MatMut::row_major(&mut dcols, k, p),
        );
        col2im(g, &dcols, dx);
    }
}

/// Gradients with respect to the weights and the bias, summed over the images in order.
pub fn conv2d_backward_weights<T: Float>(
    g: Conv2dGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
) {
    let (k, p, co) = (g.weights(dw), g.positions(), g.out_channels);
    dw.fill(T::zero());
    db.fill(T::zero());
    let mut cols = Vec::with_capacity(k * p);
    for (x, dy) in x.chunks_exact(g.input.len()).zip(dy.chunks_exact(co * p)) {
        im2col(g, x, &mut cols);
        T::gemm(
            T::one(),
            MatRef::row_major(dy, co, p),
            MatRef::row_major(&cols, k, p).t(),
            T::one(),
            MatMut::row_major(dw, co, k),
        );
        for (sum, plane) in db.iter_mut().zip(dy.chunks_exact(p)) {
            *sum = *sum + float::sum(plane);
        }
    }
}
