//! Dense (fully connected) reference: `y = x w^T + b` with `x` as `n x in`, `w` as `out x in`
//! (PyTorch's layout), `y` as `n x out`. One GEMM per pass; the batch sum of the weight gradient
//! is inside the GEMM, so it is deterministic.

use super::float::{Float, MatMut, MatRef};
use crate::model::Step;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseGeometry {
    pub inputs: usize,
    pub outputs: usize,
}

impl DenseGeometry {
    /// The geometry of a dense step of a plan.
    pub fn of(step: &Step) -> DenseGeometry {
        DenseGeometry {
            inputs: step.input.len(),
            outputs: step.output.len(),
        }
    }
}

pub fn dense_forward<T: Float>(g: DenseGeometry, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    let n = x.len() / g.inputs;
    for row in y.chunks_exact_mut(g.outputs) {
        row.copy_from_slice(b);
    }
    let x = MatRef::row_major(x, n, g.inputs);
    let wt = MatRef::row_major(w, g.outputs, g.inputs).t();
    T::gemm(
        T::one(),
        x,
        wt,
        T::one(),
        MatMut::row_major(y, n, g.outputs),
    );
}

/// `dx = dy w`.
pub fn dense_backward_input<T: Float>(g: DenseGeometry, dy: &[T], w: &[T], dx: &mut [T]) {
    let n = dy.len() / g.outputs;
    let dy = MatRef::row_major(dy, n, g.outputs);
    let w = MatRef::row_major(w, g.outputs, g.inputs);
    T::gemm(
        T::one(),
        dy,
        w,
        T::zero(),
        MatMut::row_major(dx, n, g.inputs),
    );
}

/// `dw = dy^T x` and `db = sum over the batch of dy`.
pub fn dense_backward_weights<T: Float>(
    g: DenseGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
) {
    let n = x.len() / g.inputs;
    let dyt = MatRef::row_major(dy, n, g.outputs).t();
    let x = MatRef::row_major(x, n, g.inputs);
    T::gemm(
        T::one(),
        dyt,
        x,
        T::zero(),
        MatMut::row_major(dw, g.outputs, g.inputs),
    );
    db.fill(T::zero());
    for row in dy.chunks_exact(g.outputs) {
        db.iter_mut().zip(row).for_each(|(s, &d)| *s = *s + d);
    }
}
