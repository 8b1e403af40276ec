//! Runs a [`Plan`] on the CPU: logits for inference, and the loss and its gradients for training
//! (with, on request, the gradient with respect to the input, which saliency maps need).
//!
//! The batch is cut into chunks of [`CHUNK`] images. Each chunk is one rayon task that runs the
//! whole layer stack forward and, for training, straight back again, so its activations are
//! still in cache when its backward pass reads them. A task borrows its activation buffers from
//! a pool that holds one set per running task, so a step allocates nothing and its working set
//! stays small. Each chunk sums its own parameter gradients; the chunk sums are then added in
//! chunk order, so the gradients do not depend on the number of threads.

use std::sync::Mutex;

use rayon::prelude::*;

use super::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use super::dense::{dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry};
use super::float::Float;
use super::maxpool2d::{maxpool2d_backward, maxpool2d_forward};
use super::relu::{relu_backward, relu_forward};
use super::softmax_xent::{softmax_cross_entropy_part, LossSums};
use crate::model::{Layer, Params, Plan, Step};

/// Images per task. Fixed, never derived from the thread count, so that the rounding of the
/// gradient sums is reproducible.
const CHUNK: usize = 4;

/// Buffers kept between calls, so that training steps do not allocate.
pub struct Workspace<T> {
    /// The parameter gradients from the last [`gradients`] call, summed over its batch.
    pub grads: Params<T>,
    /// Each chunk's parameter gradients, summed over its images.
    chunk_grads: Vec<Params<T>>,
    /// Buffers for the chunks being processed, one set per running task.
    scratch: Mutex<Vec<Scratch<T>>>,
}

impl<T: Float> Workspace<T> {
    pub fn new(plan: &Plan) -> Workspace<T> {
        Workspace {
            grads: Params::zeros(&plan.params),
            chunk_grads: Vec::new(),
            scratch: Mutex::default(),
        }
    }
}

/// What one chunk needs while it runs, sized for [`CHUNK`] images.
struct Scratch<T> {
    /// `outputs[i]` is the output of step `i`; the last one is the logits.
    outputs: Vec<Vec<T>>,
    /// Winning input indices of each max-pool step (empty for other steps).
    argmax: Vec<Vec<u32>>,
    /// The gradient flowing back: a step's output gradient (`dy`) becomes its input gradient
    /// (`dx`), and the two swap before the next step.
    dy: Vec<T>,
    dx: Vec<T>,
}

impl<T: Float> Scratch<T> {
    fn new(plan: &Plan) -> Scratch<T> {
        let output_len = |s: &Step| CHUNK * s.output.len();
        let largest = plan.steps.iter().map(output_len).max().unwrap_or(0);
        Scratch {
            outputs: plan
                .steps
                .iter()
                .map(|s| vec![T::zero(); output_len(s)])
                .collect(),
            argmax: plan
                .steps
                .iter()
                .map(|s| match s.layer {
                    Layer::MaxPool2d => vec![0; output_len(s)],
                    _ => Vec::new(),
                })
                .collect(),
            dy: vec![T::zero(); largest],
            dx: vec![T::zero(); largest],
        }
    }
}

/// Runs `f` on a scratch set taken from `pool` (or made, when all are in use) and puts it back.
fn with_scratch<T: Float, R>(
    pool: &Mutex<Vec<Scratch<T>>>,
    plan: &Plan,
    f: impl FnOnce(&mut Scratch<T>) -> R,
) -> R {
    let taken = pool.lock().expect("scratch pool lock").pop();
    let mut scratch = taken.unwrap_or_else(|| Scratch::new(plan));
    let result = f(&mut scratch);
    pool.lock().expect("scratch pool lock").push(scratch);
    result
}

fn weight_and_bias<'a, T>(params: &'a Params<T>, step: &Step) -> (&'a [T], &'a [T]) {
    let i = step.weight_index.expect("layer has parameters");
    (&params.tensors[i].data, &params.tensors[i + 1].data)
}

fn weight_and_bias_grads<'a, T>(
    grads: &'a mut Params<T>,
    step: &Step,
) -> (&'a mut [T], &'a mut [T]) {
    let i = step.weight_index.expect("layer has parameters");
    let [dw, db] = &mut grads.tensors[i..i + 2] else {
        unreachable!("a bias follows each weight")
    };
    (&mut dw.data, &mut db.data)
}

/// The number of images in `x`.
fn images<T>(plan: &Plan, x: &[T]) -> usize {
    let n = x.len() / plan.input.len();
    assert_eq!(x.len(), n * plan.input.len(), "network: input length");
    n
}

/// Logits (`n x classes`) for `x` (`n x plan.input`).
pub fn logits<T: Float>(plan: &Plan, params: &Params<T>, x: &[T], ws: &Workspace<T>) -> Vec<T> {
    let classes = plan.output().len();
    let mut logits = vec![T::zero(); images(plan, x) * classes];
    x.par_chunks(CHUNK * plan.input.len())
        .zip(logits.par_chunks_mut(CHUNK * classes))
        .for_each(|(x, logits)| {
            with_scratch(&ws.scratch, plan, |scratch| {
                forward_chunk(plan, params, x, scratch);
                let computed = scratch.outputs.last().expect("a plan has steps");
                logits.copy_from_slice(&computed[..logits.len()]);
            })
        });
    logits
}

/// The loss sums over the batch `x` (`n x plan.input`) with `labels`, and the gradients of the
/// mean loss: with respect to the parameters into `ws.grads` and, when `input_grad` is given,
/// with respect to `x` into it.
pub fn gradients<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    labels: &[u8],
    input_grad: Option<&mut [T]>,
    ws: &mut Workspace<T>,
) -> LossSums {
    let n = images(plan, x);
    assert_eq!(labels.len(), n, "gradients: one label per image");
    let chunks = n.div_ceil(CHUNK);
    if ws.chunk_grads.len() < chunks {
        ws.chunk_grads
            .resize_with(chunks, || Params::zeros(&plan.params));
    }
    let mut input_grads: Vec<Option<&mut [T]>> = match input_grad {
        Some(dx) => {
            assert_eq!(dx.len(), x.len(), "gradients: input gradient length");
            dx.chunks_mut(CHUNK * plan.input.len()).map(Some).collect()
        }
        None => Vec::new(),
    };
    input_grads.resize_with(chunks, || None);
    let Workspace {
        grads,
        chunk_grads,
        scratch,
    } = ws;
    let chunk_sums: Vec<LossSums> = chunk_grads[..chunks]
        .par_iter_mut()
        .zip(x.par_chunks(CHUNK * plan.input.len()))
        .zip(labels.par_chunks(CHUNK))
        .zip(input_grads)
        .map(|(((grads, x), labels), input_grad)| {
            with_scratch(scratch, plan, |scratch| {
                let batch = ChunkOfBatch {
                    x,
                    labels,
                    batch: n,
                };
                chunk_gradients(plan, params, batch, input_grad, grads, scratch)
            })
        })
        .collect();
    sum_chunk_grads(&chunk_grads[..chunks], grads);
    chunk_sums
        .into_iter()
        .fold(LossSums::default(), |total, sums| total + sums)
}

/// A chunk's images and labels, and the size of the batch they belong to.
struct ChunkOfBatch<'a, T> {
    x: &'a [T],
    labels: &'a [u8],
    batch: usize,
}

/// [`gradients`] for one chunk: its loss sums, and its share of the gradients into `grads` and
/// `input_grad`.
fn chunk_gradients<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    chunk: ChunkOfBatch<T>,
    input_grad: Option<&mut [T]>,
    grads: &mut Params<T>,
    scratch: &mut Scratch<T>,
) -> LossSums {
    forward_chunk(plan, params, chunk.x, scratch);
    let classes = plan.output().len();
    let len = chunk.labels.len() * classes;
    let logits = &scratch.outputs.last().expect("a plan has steps")[..len];
    // The backward pass starts from the logits' gradient in `dy`.
    let dlogits = &mut scratch.dy[..len];
    let sums =
        softmax_cross_entropy_part(classes, logits, chunk.labels, chunk.batch, Some(dlogits));
    backward_chunk(plan, params, chunk.x, scratch, input_grad, grads);
    sums
}

/// Runs every step on the images of `x`, leaving the outputs in `scratch`.
fn forward_chunk<T: Float>(plan: &Plan, params: &Params<T>, x: &[T], scratch: &mut Scratch<T>) {
    let count = images(plan, x);
    for (i, step) in plan.steps.iter().enumerate() {
        let (done, rest) = scratch.outputs.split_at_mut(i);
        let input = done.last().map_or(x, |y| &y[..count * step.input.len()]);
        let y = &mut rest[0][..count * step.output.len()];
        match step.layer {
            Layer::Conv2d { .. } => {
                let (w, b) = weight_and_bias(params, step);
                conv2d_forward(Conv2dGeometry::of(step), input, w, b, y);
            }
            Layer::Dense { .. } => {
                let (w, b) = weight_and_bias(params, step);
                dense_forward(DenseGeometry::of(step), input, w, b, y);
            }
            Layer::Relu => relu_forward(input, y),
            Layer::MaxPool2d => {
                let argmax = &mut scratch.argmax[i][..y.len()];
                maxpool2d_forward(step.input, input, y, argmax);
            }
            Layer::Flatten => y.copy_from_slice(input),
        }
    }
}

/// Walks the steps in reverse for the images of `x`, starting from the logits' gradient in
/// `scratch.dy`: their parameter gradients go into `grads` and, when `input_grad` is given,
/// their input gradient there.
fn backward_chunk<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    scratch: &mut Scratch<T>,
    mut input_grad: Option<&mut [T]>,
    grads: &mut Params<T>,
) {
    let count = images(plan, x);
    let Scratch {
        outputs,
        argmax,
        dy,
        dx,
    } = scratch;
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let activations = Activations {
            input: if i == 0 {
                x
            } else {
                &outputs[i - 1][..count * step.input.len()]
            },
            output: &outputs[i][..count * step.output.len()],
            argmax: &argmax[i][..],
        };
        let dy_step = &dy[..activations.output.len()];
        if i > 0 {
            let dx_step = &mut dx[..activations.input.len()];
            backward_step(step, params, &activations, dy_step, dx_step, grads);
            std::mem::swap(dy, dx);
        } else {
            // The first layer's input gradient is skipped unless asked for: training never needs it.
            let dx_step = input_grad.take().unwrap_or_default();
            backward_step(step, params, &activations, dy_step, dx_step, grads);
        }
    }
}

/// A step's input, output and (for max-pooling) winning indices, for the images of a chunk.
struct Activations<'a, T> {
    input: &'a [T],
    output: &'a [T],
    argmax: &'a [u32],
}

/// One step's backward: its parameter gradients into `grads` and, unless `dx` is empty, its
/// input gradient into `dx`.
fn backward_step<T: Float>(
    step: &Step,
    params: &Params<T>,
    activations: &Activations<T>,
    dy: &[T],
    dx: &mut [T],
    grads: &mut Params<T>,
) {
    let need_dx = !dx.is_empty();
    match step.layer {
        Layer::Conv2d { .. } => {
            let (w, _) = weight_and_bias(params, step);
            let (dw, db) = weight_and_bias_grads(grads, step);
            let g = Conv2dGeometry::of(step);
            conv2d_backward_weights(g, activations.input, dy, dw, db);
            if need_dx {
                conv2d_backward_input(g, dy, w, dx);
            }
        }
        Layer::Dense { .. } => {
            let (w, _) = weight_and_bias(params, step);
            let (dw, db) = weight_and_bias_grads(grads, step);
            let g = DenseGeometry::of(step);
            dense_backward_weights(g, activations.input, dy, dw, db);
            if need_dx {
                dense_backward_input(g, dy, w, dx);
            }
        }
        Layer::Relu if need_dx => relu_backward(activations.output, dy, dx),
        Layer::MaxPool2d if need_dx => {
            let argmax = &activations.argmax[..dy.len()];
            maxpool2d_backward(step.input, dy, argmax, dx)
        }
        Layer::Flatten if need_dx => dx.copy_from_slice(dy),
        _ => {}
    }
}

/// Elements per task when summing the chunks' gradients.
const SUM_BLOCK: usize = 4096;

/// `grads = sum of the chunks' gradients`, added in chunk order.
fn sum_chunk_grads<T: Float>(chunks: &[Params<T>], grads: &mut Params<T>) {
    for (t, total) in grads.tensors.iter_mut().enumerate() {
        total
            .data
            .par_chunks_mut(SUM_BLOCK)
            .enumerate()
            .for_each(|(block, total)| {
                total.fill(T::zero());
                for chunk in chunks {
                    let part = &chunk.tensors[t].data[block * SUM_BLOCK..][..total.len()];
                    total.iter_mut().zip(part).for_each(|(s, &p)| *s = *s + p);
                }
            });
    }
}
