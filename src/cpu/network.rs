//! Runs a [`Plan`] on the CPU: the forward pass keeps every activation, the backward pass walks
//! the layers in reverse and returns parameter gradients (and, on request, the input gradient,
//! which saliency maps need).

use super::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use super::dense::{dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry};
use super::float::Float;
use super::maxpool2d::{maxpool2d_backward, maxpool2d_forward};
use super::relu::{relu_backward, relu_forward};
use crate::model::{Layer, Params, Plan, Step};

/// Everything the backward pass needs from the forward pass of `n` examples.
pub struct Forward<T> {
    pub n: usize,
    /// `outputs[i]` is the output of step `i` for the whole batch; the last one is the logits.
    pub outputs: Vec<Vec<T>>,
    /// Winning input indices of each max-pool step (empty for other steps).
    pub argmax: Vec<Vec<u32>>,
}

impl<T> Forward<T> {
    pub fn logits(&self) -> &[T] {
        self.outputs.last().expect("a plan has at least one step")
    }
}

fn weight_and_bias<'a, T>(params: &'a Params<T>, step: &Step) -> (&'a [T], &'a [T]) {
    let i = step.weight_index.expect("layer has parameters");
    (&params.tensors[i].data, &params.tensors[i + 1].data)
}

/// Forward pass of `x` (`n x plan.input`).
pub fn forward<T: Float>(plan: &Plan, params: &Params<T>, x: &[T]) -> Forward<T> {
    let n = x.len() / plan.input.len();
    assert_eq!(x.len(), n * plan.input.len(), "forward: input length");
    let mut outputs: Vec<Vec<T>> = Vec::with_capacity(plan.steps.len());
    let mut argmaxes = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let input = outputs.last().map_or(x, Vec::as_slice);
        let mut y = vec![T::zero(); n * step.output.len()];
        let mut argmax = Vec::new();
        match step.layer {
            Layer::Conv2d { .. } => {
                let (w, b) = weight_and_bias(params, step);
                conv2d_forward(Conv2dGeometry::of(step), input, w, b, &mut y);
            }
            Layer::Dense { .. } => {
                let (w, b) = weight_and_bias(params, step);
                dense_forward(DenseGeometry::of(step), input, w, b, &mut y);
            }
            Layer::Relu => relu_forward(input, &mut y),
            Layer::MaxPool2d => {
                argmax = vec![0; y.len()];
                maxpool2d_forward(step.input, input, &mut y, &mut argmax);
            }
            Layer::Flatten => y.copy_from_slice(input),
        }
        outputs.push(y);
        argmaxes.push(argmax);
    }
    Forward {
        n,
        outputs,
        argmax: argmaxes,
    }
}

/// Parameter gradients for `dlogits` (the gradient of the loss with respect to the logits), and
/// the gradient with respect to `x` when `want_input_grad` is set.
pub fn backward<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    fwd: &Forward<T>,
    dlogits: &[T],
    want_input_grad: bool,
) -> (Params<T>, Option<Vec<T>>) {
    let mut grads = Params::zeros(&plan.params);
    let mut dy = dlogits.to_vec();
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let input = if i == 0 { x } else { &fwd.outputs[i - 1] };
        // The first layer's input gradient is skipped unless asked for: training never needs it.
        let need_dx = i > 0 || want_input_grad;
        let mut dx = vec![T::zero(); if need_dx { fwd.n * step.input.len() } else { 0 }];
        match step.layer {
            Layer::Conv2d { .. } => {
                let (w, _) = weight_and_bias(params, step);
                let wi = step.weight_index.expect("conv has parameters");
                let (dw, db) = grads.tensors.split_at_mut(wi + 1);
                conv2d_backward_weights(
                    Conv2dGeometry::of(step),
                    input,
                    &dy,
                    &mut dw[wi].data,
                    &mut db[0].data,
                );
                if need_dx {
                    conv2d_backward_input(Conv2dGeometry::of(step), &dy, w, &mut dx);
                }
            }
            Layer::Dense { .. } => {
                let (w, _) = weight_and_bias(params, step);
                let wi = step.weight_index.expect("dense has parameters");
                let (dw, db) = grads.tensors.split_at_mut(wi + 1);
                dense_backward_weights(
                    DenseGeometry::of(step),
                    input,
                    &dy,
                    &mut dw[wi].data,
                    &mut db[0].data,
                );
                if need_dx {
                    dense_backward_input(DenseGeometry::of(step), &dy, w, &mut dx);
                }
            }
            Layer::Relu if need_dx => relu_backward(&fwd.outputs[i], &dy, &mut dx),
            Layer::MaxPool2d if need_dx => {
                maxpool2d_backward(step.input, &dy, &fwd.argmax[i], &mut dx)
            }
            Layer::Flatten if need_dx => dx.copy_from_slice(&dy),
            _ => {}
        }
        dy = dx;
    }
    (grads, want_input_grad.then_some(dy))
}
