//! The scalar type of the CPU reference path.
//!
//! Every CPU op is generic over [`Float`] so that the same code trains in `f32` and checks its
//! gradients in `f64` against finite differences. Matrix products go to the `matrixmultiply`
//! crate (single-threaded; callers parallelise over the batch with rayon).

use std::fmt::Debug;
use std::iter::Sum;

/// A strided, read-only matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A dense row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn last_index(&self) -> usize {
        last_index(self.rows, self.cols, self.row_stride, self.col_stride)
    }
}

/// A dense row-major output matrix.
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut { data, rows, cols }
    }
}

fn last_index(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride
    }
}

pub trait Float:
    num_traits::Float + num_traits::FromPrimitive + Default + Debug + Send + Sync + Sum + 'static
{
    /// `c = alpha * a * b + beta * c`. Panics on mismatched shapes or out-of-bounds views,
    /// which are programming errors, never user input.
    fn gemm(alpha: Self, a: MatRef<Self>, b: MatRef<Self>, beta: Self, c: MatMut<Self>);

    fn from_f64_lossy(x: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(x).expect("finite f64 converts")
    }

    fn to_f64_lossy(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).expect("float converts to f64")
    }
}

/// The sum of `xs` as eight interleaved partial sums, added together at the end. The order is
/// fixed, so the result is reproducible, and unlike one running sum it vectorises.
pub fn sum<T: Float>(xs: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = xs.chunks_exact(lanes.len());
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = *lane + x;
        }
    }
    lanes
        .iter()
        .chain(tail)
        .fold(T::zero(), |total, &x| total + x)
}

fn check_gemm_shapes<T>(a: &MatRef<T>, b: &MatRef<T>, c: &MatMut<T>) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    assert_eq!(
        (a.rows, b.cols),
        (c.rows, c.cols),
        "gemm: output shape differs"
    );
    let empty = |r: usize, k: usize| r == 0 || k == 0;
    assert!(
        empty(a.rows, a.cols) || a.last_index() < a.data.len(),
        "gemm: a out of bounds"
    );
    assert!(
        empty(b.rows, b.cols) || b.last_index() < b.data.len(),
        "gemm: b out of bounds"
    );
    assert!(c.rows * c.cols <= c.data.len(), "gemm: c out of bounds");
}

macro_rules! impl_float {
    ($t:ty, $gemm:path) => {
        impl Float for $t {
            fn gemm(alpha: $t, a: MatRef<$t>, b: MatRef<$t>, beta: $t, c: MatMut<$t>) {
                check_gemm_shapes(&a, &b, &c);
                // SAFETY: the views were bounds-checked above; `c` is exclusively borrowed and
                // cannot alias `a` or `b`.
                unsafe {
                    $gemm(
                        a.rows,
                        a.cols,
                        b.cols,
                        alpha,
                        a.data.as_ptr(),
                        a.row_stride as isize,
                        a.col_stride as isize,
                        b.data.as_ptr(),
                        b.row_stride as isize,
                        b.col_stride as isize,
                        beta,
                        c.data.as_mut_ptr(),
                        c.cols as isize,
                        1,
                    )
                }
            }
        }
    };
}

impl_float!(f32, matrixmultiply::sgemm);
impl_float!(f64, matrixmultiply::dgemm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_product_with_transposed_views() {
        let a: Vec<f64> = (0..6).map(|i| i as f64 - 2.5).collect(); // 2x3
        let b: Vec<f64> = (0..12).map(|i| (i * i) as f64 * 0.1).collect(); // 4x3, used as 3x4^T
        let mut c = vec![1.0; 8];
        f64::gemm(
            2.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 4, 3).t(),
            0.5,
            MatMut::row_major(&mut c, 2, 4),
        );
        for r in 0..2 {
            for col in 0..4 {
                let dot: f64 = (0..3).map(|k| a[r * 3 + k] * b[col * 3 + k]).sum();
                assert!((c[r * 4 + col] - (2.0 * dot + 0.5)).abs() < 1e-12);
            }
        }
    }
}
