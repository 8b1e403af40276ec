//! Runs a [`Plan`] on the CPU: logits for inference, and the loss and its gradients for training
//! (with, on request, the gradient with respect to the input, which saliency maps need).
//!
//! The batch is cut into chunks of [`CHUNK`] images, and each chunk is one rayon task that runs
//! the layer stack forward and, for training, straight back again, so its activations are still
//! in cache when its backward pass reads them. Batch normalisation needs statistics of the
//! whole batch, so in training it cuts the stack into segments: every chunk runs a segment,
//! then the batch statistics are summed chunk by chunk, then the next segment runs (and the
//! same backwards). Each chunk sums its own parameter gradients; every sum over chunks is taken
//! in chunk order, so results do not depend on the number of threads.

use std::ops::Range;
use std::sync::Mutex;

use rayon::prelude::*;

use super::activation::{activation_backward, activation_forward};
use super::batchnorm::{
    batchnorm_backward_input, batchnorm_backward_sums, batchnorm_forward_inference,
    batchnorm_normalize, channel_sums, means, BatchNormStats,
};
use super::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use super::dense::{dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry};
use super::dropout::{dropout_forward, DropoutKey};
use super::float::Float;
use super::pool2d::{avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward};
use super::softmax_xent::{softmax_cross_entropy_part, LossSums};
use crate::model::{Layer, Params, Plan, Pool, Step};

/// Images per task. Fixed, never derived from the thread count, so that the rounding of the
/// gradient sums is reproducible.
pub(super) const CHUNK: usize = 4;

/// What keys a training step's random numbers (dropout masks): the run's
/// [`crate::rng::seed32`] and the step number, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepKey {
    pub seed: u32,
    pub step: u32,
}

/// Buffers kept between calls, so that training steps do not allocate.
pub struct Workspace<T> {
    /// The parameter gradients from the last [`gradients`] call, summed over its batch.
    pub grads: Params<T>,
    /// The batch statistics of each batch-norm step in the last [`gradients`] call, by step.
    pub batch_norm: Vec<Option<BatchNormStats<T>>>,
    /// By step: a frozen batch norm, which trains in inference mode, on its running
    /// statistics ([`BatchNormStats::fixed`]). All false unless set.
    pub frozen_batch_norm: Vec<bool>,
    /// Each chunk's parameter gradients, summed over its images.
    chunk_grads: Vec<Params<T>>,
    /// Training with batch norm: one set of buffers per chunk, kept from the forward to the
    /// backward pass.
    chunks: Vec<Scratch<T>>,
    /// Otherwise: buffers for the chunks being processed, one set per running task.
    pool: Mutex<Vec<Scratch<T>>>,
}

impl<T: Float> Workspace<T> {
    pub fn new(plan: &Plan) -> Workspace<T> {
        Workspace {
            grads: Params::zeros(&plan.params),
            batch_norm: vec![None; plan.steps.len()],
            frozen_batch_norm: vec![false; plan.steps.len()],
            chunk_grads: Vec::new(),
            chunks: Vec::new(),
            pool: Mutex::default(),
        }
    }

    /// Room for a training batch of `chunks` chunks; a buffer set per chunk only when they
    /// must all be kept at once (`per_chunk`: batch norm's statistics need the whole batch).
    fn grow(&mut self, plan: &Plan, chunks: usize, per_chunk: bool) {
        if self.chunk_grads.len() < chunks {
            self.chunk_grads
                .resize_with(chunks, || Params::zeros(&plan.params));
        }
        if per_chunk && self.chunks.len() < chunks {
            self.chunks.resize_with(chunks, || Scratch::new(plan));
        }
    }
}

/// What one chunk needs while it runs, sized for [`CHUNK`] images.
pub(super) struct Scratch<T> {
    /// `outputs[i]` is the output of step `i`; the last one is the logits.
    pub(super) outputs: Vec<Vec<T>>,
    /// Winning input indices of each max-pool step (empty for other steps).
    argmax: Vec<Vec<u32>>,
    /// The gradient flowing back: a step's output gradient (`dy`) becomes its input gradient
    /// (`dx`), and the two swap before the next step.
    pub(super) dy: Vec<T>,
    dx: Vec<T>,
}

impl<T: Float> Scratch<T> {
    pub(super) fn new(plan: &Plan) -> Scratch<T> {
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
                    Layer::Pool2d(Pool::Max) => vec![0; output_len(s)],
                    _ => Vec::new(),
                })
                .collect(),
            dy: vec![T::zero(); largest],
            dx: vec![T::zero(); largest],
        }
    }
}

/// Runs `f` on a scratch set taken from `pool` (or made, when all are in use) and puts it back.
pub(super) fn with_scratch<T: Float, R>(
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

/// A batch-norm step's running mean and variance.
pub(super) fn running_statistics<'a, T>(params: &'a Params<T>, step: &Step) -> (&'a [T], &'a [T]) {
    let i = step.stats_index.expect("batch norm has running statistics");
    (&params.tensors[i].data, &params.tensors[i + 1].data)
}

/// Moves every batch-norm layer's running statistics toward the last training batch's.
pub fn update_running_statistics<T: Float>(
    plan: &Plan,
    params: &mut Params<T>,
    ws: &Workspace<T>,
    frozen: &[bool],
) {
    for (step, stats) in plan.steps.iter().zip(&ws.batch_norm) {
        if let (Some(i), Some(stats)) = (step.stats_index, stats) {
            if frozen.get(i).copied().unwrap_or(false) {
                continue;
            }
            let [mean, var] = &mut params.tensors[i..i + 2] else {
                unreachable!("the running variance follows the mean")
            };
            stats.update_running(&mut mean.data, &mut var.data);
        }
    }
}

/// The number of images in `x`.
pub(super) fn images<T>(plan: &Plan, x: &[T]) -> usize {
    let n = x.len() / plan.input.len();
    assert_eq!(x.len(), n * plan.input.len(), "network: input length");
    n
}

/// Logits (`n x classes`) for `x` (`n x plan.input`), in inference mode: batch norm uses its
/// running statistics and dropout keeps everything.
pub fn logits<T: Float>(plan: &Plan, params: &Params<T>, x: &[T], ws: &Workspace<T>) -> Vec<T> {
    let classes = plan.output().len();
    let mut logits = vec![T::zero(); images(plan, x) * classes];
    let net = Net {
        plan,
        params,
        key: None,
        batch_norm: &[],
        parameter_gradients: false,
    };
    x.par_chunks(CHUNK * plan.input.len())
        .zip(logits.par_chunks_mut(CHUNK * classes))
        .enumerate()
        .for_each(|(c, (x, logits))| {
            with_scratch(&ws.pool, plan, |scratch| {
                net.forward(0..plan.steps.len(), c * CHUNK, x, scratch);
                let computed = scratch.outputs.last().expect("a plan has steps");
                logits.copy_from_slice(&computed[..logits.len()]);
            })
        });
    logits
}

/// One chunk of a training batch and its buffers (or of an explanation's batch, see
/// `input_gradient.rs`).
pub(super) struct Job<'a, T> {
    /// The batch position of the chunk's first image.
    pub(super) first: usize,
    pub(super) x: &'a [T],
    /// Empty where no loss is taken: explanations seed the logits' gradient themselves.
    pub(super) labels: &'a [u8],
    pub(super) input_grad: Option<&'a mut [T]>,
    pub(super) scratch: &'a mut Scratch<T>,
    pub(super) grads: &'a mut Params<T>,
}

impl<T> Job<'_, T> {
    /// The input of step `i` for this chunk's images.
    fn input_of<'s>(&'s self, plan: &Plan, i: usize) -> &'s [T] {
        if i == 0 {
            self.x
        } else {
            &self.scratch.outputs[i - 1][..self.labels.len() * plan.steps[i].input.len()]
        }
    }
}

/// The training loss sums over the batch `x` (`n x plan.input`) with `labels`, and the gradients
/// of the mean loss: with respect to the parameters into `ws.grads` and, when `input_grad` is
/// given, with respect to `x` into it. Dropout masks are keyed by `key`; batch norm uses the
/// batch's statistics and leaves them in `ws.batch_norm`.
pub fn gradients<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    (x, labels): (&[T], &[u8]),
    key: StepKey,
    input_grad: Option<&mut [T]>,
    ws: &mut Workspace<T>,
) -> LossSums {
    let n = images(plan, x);
    assert_eq!(labels.len(), n, "gradients: one label per image");
    let chunks = n.div_ceil(CHUNK);
    ws.grow(plan, chunks, plan.arch.has_batch_norm());
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
        batch_norm,
        frozen_batch_norm,
        chunk_grads,
        chunks: scratches,
        pool,
    } = ws;
    batch_norm.fill(None);
    let (x_chunks, label_chunks) = (x.chunks(CHUNK * plan.input.len()), labels.chunks(CHUNK));
    let sums = if plan.arch.has_batch_norm() {
        let mut jobs: Vec<Job<T>> = scratches
            .iter_mut()
            .zip(chunk_grads.iter_mut())
            .zip(x_chunks.zip(label_chunks))
            .zip(input_grads)
            .enumerate()
            .map(|(c, (((scratch, grads), (x, labels)), input_grad))| Job {
                first: c * CHUNK,
                x,
                labels,
                input_grad,
                scratch,
                grads,
            })
            .collect();
        run_segments(
            plan,
            params,
            key,
            n,
            &mut jobs,
            (batch_norm, frozen_batch_norm),
        )
    } else {
        // Without batch norm, chunks never wait for each other: each borrows buffers from the
        // pool for its whole pass, so memory grows with the threads, not the batch.
        let net = Net::training(plan, params, key, &[]);
        let steps = 0..plan.steps.len();
        let chunk_sums: Vec<LossSums> = chunk_grads[..chunks]
            .par_iter_mut()
            .zip(x_chunks.zip(label_chunks).collect::<Vec<_>>())
            .zip(input_grads)
            .enumerate()
            .map(|(c, ((grads, (x, labels)), input_grad))| {
                with_scratch(pool, plan, |scratch| {
                    let mut job = Job {
                        first: c * CHUNK,
                        x,
                        labels,
                        input_grad,
                        scratch,
                        grads,
                    };
                    net.forward(steps.clone(), job.first, x, job.scratch);
                    let sums = chunk_loss(plan, &mut job, n);
                    net.backward(steps.clone(), &mut job);
                    sums
                })
            })
            .collect();
        chunk_sums
            .into_iter()
            .fold(LossSums::default(), |total, s| total + s)
    };
    sum_chunk_grads(&chunk_grads[..chunks], grads);
    sums
}

/// Training cuts the steps before each batch norm, whose statistics need the whole batch: every
/// segment but the first starts with one.
fn segments(plan: &Plan) -> Vec<Range<usize>> {
    let mut starts: Vec<usize> = (1..plan.steps.len())
        .filter(|&i| plan.steps[i].layer == Layer::BatchNorm)
        .collect();
    starts.insert(0, 0);
    starts.push(plan.steps.len());
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// The forward pass segment by segment, the loss, and the backward pass segment by segment
/// (each chunk's last segment runs forward, loss and backward in one task).
fn run_segments<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    key: StepKey,
    n: usize,
    jobs: &mut [Job<T>],
    (batch_norm, frozen): (&mut [Option<BatchNormStats<T>>], &[bool]),
) -> LossSums {
    let segments = segments(plan);
    let last = segments.len() - 1;
    let starts_with_bn = |seg: &Range<usize>| plan.steps[seg.start].layer == Layer::BatchNorm;
    // Batch norm's own backward runs once its gradient sums are known.
    let body = |seg: &Range<usize>| {
        let skip = usize::from(starts_with_bn(seg));
        seg.start + skip..seg.end
    };
    let mut loss = LossSums::default();
    for (s, seg) in segments.iter().enumerate() {
        if starts_with_bn(seg) {
            let i = seg.start;
            batch_norm[i] = Some(match frozen[i] {
                true => {
                    let (mean, var) = running_statistics(params, &plan.steps[i]);
                    BatchNormStats::fixed(mean, var)
                }
                false => batch_statistics(plan, i, jobs),
            });
        }
        let net = Net::training(plan, params, key, batch_norm);
        if s < last {
            jobs.par_iter_mut()
                .for_each(|job| net.forward(seg.clone(), job.first, job.x, job.scratch));
            continue;
        }
        let chunk_losses: Vec<LossSums> = jobs
            .par_iter_mut()
            .map(|job| {
                net.forward(seg.clone(), job.first, job.x, job.scratch);
                let sums = chunk_loss(plan, job, n);
                net.backward(body(seg), job);
                sums
            })
            .collect();
        loss = chunk_losses.into_iter().fold(loss, |total, s| total + s);
    }
    for (s, seg) in segments.iter().enumerate().rev() {
        let net = Net::training(plan, params, key, batch_norm);
        if s < last {
            jobs.par_iter_mut()
                .for_each(|job| net.backward(body(seg), job));
        }
        if starts_with_bn(seg) {
            let i = seg.start;
            let stats = batch_norm[i]
                .as_mut()
                .expect("computed in the forward pass");
            batch_norm_gradient_sums(plan, i, jobs, stats);
            let net = Net::training(plan, params, key, batch_norm);
            jobs.par_iter_mut()
                .for_each(|job| net.backward(i..i + 1, job));
        }
    }
    loss
}

/// The chunk's loss sums, and the logits' gradient in its `dy`.
fn chunk_loss<T: Float>(plan: &Plan, job: &mut Job<T>, batch: usize) -> LossSums {
    let classes = plan.output().len();
    let len = job.labels.len() * classes;
    let logits = &job.scratch.outputs.last().expect("a plan has steps")[..len];
    let dlogits = &mut job.scratch.dy[..len];
    softmax_cross_entropy_part(classes, logits, job.labels, batch, Some(dlogits))
}

/// Per-chunk partial sums, added in chunk order.
fn ordered_sum<T: Float>(parts: Vec<Vec<T>>) -> Vec<T> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().expect("a batch has a chunk");
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, p)| *t = *t + p);
    }
    total
}

/// The batch statistics at the input of batch-norm step `i`, from every chunk.
fn batch_statistics<T: Float>(plan: &Plan, i: usize, jobs: &[Job<T>]) -> BatchNormStats<T> {
    let shape = plan.steps[i].input;
    let sums = |centre: Option<&[T]>| {
        ordered_sum(
            jobs.par_iter()
                .map(|job| {
                    let mut sums = vec![T::zero(); shape.channels];
                    channel_sums(shape, job.input_of(plan, i), centre, &mut sums);
                    sums
                })
                .collect(),
        )
    };
    let images: usize = jobs.iter().map(|job| job.labels.len()).sum();
    let count = images * shape.height * shape.width;
    let sum = sums(None);
    let squares = sums(Some(&means(&sum, count)));
    BatchNormStats::new(&sum, &squares, count)
}

/// Batch-norm step `i`'s scale and bias gradients: each chunk's share into its gradients, and
/// the batch totals (which its input gradient needs) into `stats`.
fn batch_norm_gradient_sums<T: Float>(
    plan: &Plan,
    i: usize,
    jobs: &mut [Job<T>],
    stats: &mut BatchNormStats<T>,
) {
    let step = &plan.steps[i];
    let at_stats: &BatchNormStats<T> = stats;
    jobs.par_iter_mut().for_each(|job| {
        let len = job.labels.len() * step.output.len();
        let Job {
            x,
            scratch,
            grads,
            labels,
            ..
        } = job;
        let input = if i == 0 {
            *x
        } else {
            &scratch.outputs[i - 1][..labels.len() * step.input.len()]
        };
        let (dgamma, dbeta) = weight_and_bias_grads(grads, step);
        batchnorm_backward_sums(
            step.input,
            input,
            &scratch.dy[..len],
            at_stats,
            dbeta,
            dgamma,
        );
    });
    let w = step.weight_index.expect("batch norm has parameters");
    let total = |t: usize| {
        ordered_sum(
            jobs.iter()
                .map(|j| j.grads.tensors[t].data.clone())
                .collect(),
        )
    };
    stats.dgamma = total(w);
    stats.dbeta = total(w + 1);
}

/// A plan with its parameters, in inference mode (`key` is `None`) or training mode.
pub(super) struct Net<'a, T> {
    pub(super) plan: &'a Plan,
    pub(super) params: &'a Params<T>,
    pub(super) key: Option<StepKey>,
    /// Training: the batch statistics of each batch-norm step computed so far. Explanations:
    /// every batch norm's running statistics, as fixed constants.
    pub(super) batch_norm: &'a [Option<BatchNormStats<T>>],
    /// Whether the backward pass sums parameter gradients: explanations want the input
    /// gradient alone, and skip the weight gradients' work.
    pub(super) parameter_gradients: bool,
}

impl<'a, T: Float> Net<'a, T> {
    fn training(
        plan: &'a Plan,
        params: &'a Params<T>,
        key: StepKey,
        batch_norm: &'a [Option<BatchNormStats<T>>],
    ) -> Net<'a, T> {
        Net {
            plan,
            params,
            key: Some(key),
            batch_norm,
            parameter_gradients: true,
        }
    }

    fn dropout_key(&self, layer: usize, first: usize) -> Option<DropoutKey> {
        self.key.map(|key| DropoutKey {
            seed: key.seed,
            step: key.step,
            layer,
            first_image: first,
        })
    }

    /// Runs `steps` on the images of `x` (the first at batch position `first`), leaving the
    /// outputs in `scratch`.
    pub(super) fn forward(
        &self,
        steps: Range<usize>,
        first: usize,
        x: &[T],
        scratch: &mut Scratch<T>,
    ) {
        let count = images(self.plan, x);
        for i in steps {
            let step = &self.plan.steps[i];
            let (done, rest) = scratch.outputs.split_at_mut(i);
            let input = match i {
                0 => x,
                _ => &done[i - 1][..count * step.input.len()],
            };
            let y = &mut rest[0][..count * step.output.len()];
            match step.layer {
                Layer::Conv2d { .. } => {
                    let (w, b) = weight_and_bias(self.params, step);
                    conv2d_forward(Conv2dGeometry::of(step), input, w, b, y);
                }
                Layer::Dense { .. } => {
                    let (w, b) = weight_and_bias(self.params, step);
                    dense_forward(DenseGeometry::of(step), input, w, b, y);
                }
                Layer::Activation(a) => activation_forward(a, input, y),
                Layer::Pool2d(Pool::Max) => {
                    let argmax = &mut scratch.argmax[i][..y.len()];
                    maxpool2d_forward(step.input, input, y, argmax);
                }
                Layer::Pool2d(Pool::Avg) => avgpool2d_forward(step.input, input, y),
                Layer::Dropout { rate } => match self.dropout_key(i, first) {
                    Some(key) => dropout_forward(rate, &key, step.input.len(), input, y),
                    None => y.copy_from_slice(input),
                },
                Layer::BatchNorm => self.batchnorm_forward(i, input, y),
                Layer::Flatten => y.copy_from_slice(input),
            }
        }
    }

    fn batchnorm_forward(&self, i: usize, x: &[T], y: &mut [T]) {
        let step = &self.plan.steps[i];
        let gamma_beta = weight_and_bias(self.params, step);
        match self.batch_norm.get(i).and_then(Option::as_ref) {
            Some(stats) => {
                batchnorm_normalize(step.input, x, (&stats.mean, &stats.inv_std), gamma_beta, y)
            }
            None => {
                let running = running_statistics(self.params, step);
                batchnorm_forward_inference(step.input, x, running, gamma_beta, y)
            }
        }
    }

    /// Walks `steps` in reverse for the chunk, from the gradient at the last step's output in
    /// its `dy`: parameter gradients go into its `grads`, and the gradient at the first step's
    /// input is left in `dy` (for step 0: in `input_grad`, when asked for).
    pub(super) fn backward(&self, steps: Range<usize>, job: &mut Job<T>) {
        let count = images(self.plan, job.x);
        let Job {
            x,
            input_grad,
            scratch,
            grads,
            first,
            ..
        } = job;
        let Scratch {
            outputs,
            argmax,
            dy,
            dx,
        } = &mut **scratch;
        for i in steps.rev() {
            let step = &self.plan.steps[i];
            let activations = Activations {
                input: if i == 0 {
                    x
                } else {
                    &outputs[i - 1][..count * step.input.len()]
                },
                output: &outputs[i][..count * step.output.len()],
                argmax: &argmax[i][..],
                first: *first,
            };
            let dy_step = &dy[..activations.output.len()];
            if i > 0 {
                let dx_step = &mut dx[..activations.input.len()];
                self.backward_step(i, &activations, dy_step, dx_step, grads);
                std::mem::swap(dy, dx);
            } else {
                // The first layer's input gradient is skipped unless asked for: training never
                // needs it.
                let dx_step = input_grad.as_deref_mut().unwrap_or_default();
                self.backward_step(i, &activations, dy_step, dx_step, grads);
            }
        }
    }

    /// One step's backward: its parameter gradients into `grads` and, unless `dx` is empty, its
    /// input gradient into `dx`. Batch norm's parameter gradients were summed beforehand.
    fn backward_step(
        &self,
        i: usize,
        activations: &Activations<T>,
        dy: &[T],
        dx: &mut [T],
        grads: &mut Params<T>,
    ) {
        let step = &self.plan.steps[i];
        let need_dx = !dx.is_empty();
        match step.layer {
            Layer::Conv2d { .. } => {
                let (w, _) = weight_and_bias(self.params, step);
                let g = Conv2dGeometry::of(step);
                if self.parameter_gradients {
                    let (dw, db) = weight_and_bias_grads(grads, step);
                    conv2d_backward_weights(g, activations.input, dy, dw, db);
                }
                if need_dx {
                    conv2d_backward_input(g, dy, w, dx);
                }
            }
            Layer::Dense { .. } => {
                let (w, _) = weight_and_bias(self.params, step);
                let g = DenseGeometry::of(step);
                if self.parameter_gradients {
                    let (dw, db) = weight_and_bias_grads(grads, step);
                    dense_backward_weights(g, activations.input, dy, dw, db);
                }
                if need_dx {
                    dense_backward_input(g, dy, w, dx);
                }
            }
            _ if !need_dx => {}
            Layer::Activation(a) => activation_backward(a, activations.output, dy, dx),
            Layer::Pool2d(Pool::Max) => {
                let argmax = &activations.argmax[..dy.len()];
                maxpool2d_backward(step.input, dy, argmax, dx)
            }
            Layer::Pool2d(Pool::Avg) => avgpool2d_backward(step.input, dy, dx),
            // Without a key (explanations, in inference mode) dropout is the identity.
            Layer::Dropout { rate } => match self.dropout_key(i, activations.first) {
                Some(key) => dropout_forward(rate, &key, step.input.len(), dy, dx),
                None => dx.copy_from_slice(dy),
            },
            Layer::BatchNorm => {
                let (gamma, _) = weight_and_bias(self.params, step);
                let stats = self.batch_norm[i].as_ref().expect("batch statistics");
                batchnorm_backward_input(step.input, activations.input, dy, gamma, stats, dx)
            }
            Layer::Flatten => dx.copy_from_slice(dy),
        }
    }
}

/// A step's input, output and (for max-pooling) winning indices, for the images of a chunk
/// whose first image is at batch position `first`.
struct Activations<'a, T> {
    input: &'a [T],
    output: &'a [T],
    argmax: &'a [u32],
    first: usize,
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
