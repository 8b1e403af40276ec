//! Runs a [`Plan`] on the CPU: the forward pass keeps every activation, the backward pass walks
//! the layers in reverse and returns parameter gradients (and, on request, the input gradient,
//! which saliency maps need).
//!
//! The batch is cut into chunks of [`CHUNK`] images and each chunk runs the whole layer stack as
//! one rayon task, so its activations stay in cache from one layer to the next and a pass has a
//! single parallel region. Each chunk sums its own parameter gradients; the chunk sums are then
//! added in chunk order, so the gradients do not depend on the number of threads.

use rayon::prelude::*;

use super::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use super::dense::{dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry};
use super::float::Float;
use super::maxpool2d::{maxpool2d_backward, maxpool2d_forward};
use super::relu::{relu_backward, relu_forward};
use crate::model::{Layer, Params, Plan, Step};

/// Images per task. Fixed, never derived from the thread count, so that the rounding of the
/// gradient sums is reproducible.
const CHUNK: usize = 4;

/// Everything the backward pass needs from the forward pass of `n` examples. Reused between
/// passes (see [`forward_into`]), so that training does not allocate.
#[derive(Default)]
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

/// The buffers of the backward pass, reused between passes (see [`backward_into`]).
pub struct Backward<T> {
    /// The parameter gradients summed over the batch.
    pub grads: Params<T>,
    chunks: Vec<ChunkBuffers<T>>,
}

/// One chunk's gradient sums and the two activation gradients that its layers pass along, each
/// a layer's output gradient (`dy`) or input gradient (`dx`) in turn.
struct ChunkBuffers<T> {
    grads: Params<T>,
    dy: Vec<T>,
    dx: Vec<T>,
}

impl<T: Float> Backward<T> {
    pub fn new(plan: &Plan) -> Backward<T> {
        Backward {
            grads: Params::zeros(&plan.params),
            chunks: Vec::new(),
        }
    }
}

fn weight_and_bias<'a, T>(params: &'a Params<T>, step: &Step) -> (&'a [T], &'a [T]) {
    let i = step.weight_index.expect("layer has parameters");
    (&params.tensors[i].data, &params.tensors[i + 1].data)
}

/// The images `first..first + count` of `items`, which holds items of `len` elements each.
fn images<U>(items: &[U], len: usize, first: usize, count: usize) -> &[U] {
    &items[first * len..(first + count) * len]
}

/// `views[c][i]` is chunk `c` of `buffers[i]`: `chunk_lens[i]` elements, fewer in the last chunk
/// and none where the buffer is empty.
fn split_into_chunks<U>(
    buffers: &mut [Vec<U>],
    chunk_lens: impl Iterator<Item = usize>,
    chunks: usize,
) -> Vec<Vec<&mut [U]>> {
    let mut views: Vec<Vec<&mut [U]>> = (0..chunks)
        .map(|_| Vec::with_capacity(buffers.len()))
        .collect();
    for (buffer, len) in buffers.iter_mut().zip(chunk_lens) {
        let mut rest = buffer.as_mut_slice();
        for view in &mut views {
            let (chunk, tail) = rest.split_at_mut(len.min(rest.len()));
            view.push(chunk);
            rest = tail;
        }
    }
    views
}

/// Forward pass of `x` (`n x plan.input`).
pub fn forward<T: Float>(plan: &Plan, params: &Params<T>, x: &[T]) -> Forward<T> {
    let mut fwd = Forward::default();
    forward_into(plan, params, x, &mut fwd);
    fwd
}

/// Forward pass of `x` (`n x plan.input`) into the buffers of `fwd`.
pub fn forward_into<T: Float>(plan: &Plan, params: &Params<T>, x: &[T], fwd: &mut Forward<T>) {
    let n = x.len() / plan.input.len();
    assert_eq!(x.len(), n * plan.input.len(), "forward: input length");
    fwd.n = n;
    fwd.outputs.resize_with(plan.steps.len(), Vec::new);
    fwd.argmax.resize_with(plan.steps.len(), Vec::new);
    for ((step, y), argmax) in plan.steps.iter().zip(&mut fwd.outputs).zip(&mut fwd.argmax) {
        y.resize(n * step.output.len(), T::zero());
        let pooled = matches!(step.layer, Layer::MaxPool2d);
        argmax.resize(if pooled { y.len() } else { 0 }, 0);
    }
    let chunks = n.div_ceil(CHUNK);
    let output_lens = || plan.steps.iter().map(|s| CHUNK * s.output.len());
    let outputs = split_into_chunks(&mut fwd.outputs, output_lens(), chunks);
    let argmaxes = split_into_chunks(&mut fwd.argmax, output_lens(), chunks);
    x.par_chunks(CHUNK * plan.input.len())
        .zip(outputs)
        .zip(argmaxes)
        .for_each(|((x, mut outputs), mut argmax)| {
            forward_chunk(plan, params, x, &mut outputs, &mut argmax)
        });
}

/// Runs every step on the images of `x`; `outputs[i]` and `argmax[i]` receive step `i`'s results.
fn forward_chunk<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    outputs: &mut [&mut [T]],
    argmax: &mut [&mut [u32]],
) {
    for (i, step) in plan.steps.iter().enumerate() {
        let (done, rest) = outputs.split_at_mut(i);
        let input: &[T] = done.last().map_or(x, |y| y);
        let y = &mut *rest[0];
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
            Layer::MaxPool2d => maxpool2d_forward(step.input, input, y, argmax[i]),
            Layer::Flatten => y.copy_from_slice(input),
        }
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
    let mut bwd = Backward::new(plan);
    let mut dx = want_input_grad.then(|| vec![T::zero(); x.len()]);
    backward_into(plan, params, x, fwd, dlogits, dx.as_deref_mut(), &mut bwd);
    (bwd.grads, dx)
}

/// Like [`backward`], into the buffers of `bwd`; `dx`, when given, receives the input gradient.
pub fn backward_into<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    fwd: &Forward<T>,
    dlogits: &[T],
    dx: Option<&mut [T]>,
    bwd: &mut Backward<T>,
) {
    let n = fwd.n;
    let chunks = n.div_ceil(CHUNK);
    if bwd.chunks.len() < chunks {
        // Room for the largest activation gradient of a chunk, so that no layer resizes them.
        let largest = CHUNK * plan.steps.iter().map(|s| s.output.len()).max().unwrap_or(0);
        bwd.chunks.resize_with(chunks, || ChunkBuffers {
            grads: Params::zeros(&plan.params),
            dy: vec![T::zero(); largest],
            dx: vec![T::zero(); largest],
        });
    }
    let mut input_grads = dx.map_or_else(Vec::new, |dx| {
        dx.chunks_mut(CHUNK * plan.input.len()).map(Some).collect()
    });
    input_grads.resize_with(chunks, || None);
    bwd.chunks[..chunks]
        .par_iter_mut()
        .zip(input_grads)
        .enumerate()
        .for_each(|(c, (buffers, dx))| {
            let first = c * CHUNK;
            let count = CHUNK.min(n - first);
            let chunk = Chunk {
                x: images(x, plan.input.len(), first, count),
                fwd,
                first,
                count,
            };
            let dlogits = images(dlogits, plan.output().len(), first, count);
            backward_chunk(plan, params, &chunk, dlogits, dx, buffers);
        });
    sum_chunk_grads(&bwd.chunks[..chunks], &mut bwd.grads);
}

/// The images `first..first + count` of a forward pass.
struct Chunk<'a, T> {
    x: &'a [T],
    fwd: &'a Forward<T>,
    first: usize,
    count: usize,
}

impl<T> Chunk<'_, T> {
    /// The input of step `i`.
    fn input(&self, plan: &Plan, i: usize) -> &[T] {
        if i == 0 {
            self.x
        } else {
            self.output(plan, i - 1)
        }
    }

    fn output(&self, plan: &Plan, i: usize) -> &[T] {
        images(
            &self.fwd.outputs[i],
            plan.steps[i].output.len(),
            self.first,
            self.count,
        )
    }

    fn argmax(&self, plan: &Plan, i: usize) -> &[u32] {
        images(
            &self.fwd.argmax[i],
            plan.steps[i].output.len(),
            self.first,
            self.count,
        )
    }
}

/// Walks the steps in reverse for one chunk, leaving its gradient sums in `buffers.grads` and,
/// when `input_grad` is given, the gradient with respect to its images there.
fn backward_chunk<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    chunk: &Chunk<T>,
    dlogits: &[T],
    mut input_grad: Option<&mut [T]>,
    buffers: &mut ChunkBuffers<T>,
) {
    let ChunkBuffers { grads, dy, dx } = buffers;
    dy[..dlogits.len()].copy_from_slice(dlogits);
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let dy_step = &dy[..chunk.count * step.output.len()];
        if i > 0 {
            let dx_step = &mut dx[..chunk.count * step.input.len()];
            backward_step(plan, params, chunk, i, dy_step, dx_step, grads);
            std::mem::swap(dy, dx);
        } else {
            // The first layer's input gradient is skipped unless asked for: training never needs it.
            let dx_step = input_grad.take().unwrap_or_default();
            backward_step(plan, params, chunk, i, dy_step, dx_step, grads);
        }
    }
}

/// Step `i`'s backward for one chunk: its parameter gradients into `grads` and, unless `dx` is
/// empty, its input gradient into `dx`.
fn backward_step<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    chunk: &Chunk<T>,
    i: usize,
    dy: &[T],
    dx: &mut [T],
    grads: &mut Params<T>,
) {
    let step = &plan.steps[i];
    let input = chunk.input(plan, i);
    let need_dx = !dx.is_empty();
    match step.layer {
        Layer::Conv2d { .. } => {
            let (w, _) = weight_and_bias(params, step);
            let (dw, db) = weight_and_bias_grads(grads, step);
            let g = Conv2dGeometry::of(step);
            conv2d_backward_weights(g, input, dy, dw, db);
            if need_dx {
                conv2d_backward_input(g, dy, w, dx);
            }
        }
        Layer::Dense { .. } => {
            let (w, _) = weight_and_bias(params, step);
            let (dw, db) = weight_and_bias_grads(grads, step);
            let g = DenseGeometry::of(step);
            dense_backward_weights(g, input, dy, dw, db);
            if need_dx {
                dense_backward_input(g, dy, w, dx);
            }
        }
        Layer::Relu if need_dx => relu_backward(chunk.output(plan, i), dy, dx),
        Layer::MaxPool2d if need_dx => {
            maxpool2d_backward(step.input, dy, chunk.argmax(plan, i), dx)
        }
        Layer::Flatten if need_dx => dx.copy_from_slice(dy),
        _ => {}
    }
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

/// Elements per task when summing the chunks' gradients.
const SUM_BLOCK: usize = 4096;

/// `grads = sum of the chunks' gradients`, added in chunk order.
fn sum_chunk_grads<T: Float>(chunks: &[ChunkBuffers<T>], grads: &mut Params<T>) {
    for (t, total) in grads.tensors.iter_mut().enumerate() {
        total
            .data
            .par_chunks_mut(SUM_BLOCK)
            .enumerate()
            .for_each(|(block, total)| {
                total.fill(T::zero());
                for chunk in chunks {
                    let part = &chunk.grads.tensors[t].data[block * SUM_BLOCK..][..total.len()];
                    total.iter_mut().zip(part).for_each(|(s, &p)| *s = *s + p);
                }
            });
    }
}
