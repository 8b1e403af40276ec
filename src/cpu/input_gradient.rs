//! The gradient of chosen logits with respect to the input, in inference mode, for explanations
//! (saliency maps, integrated gradients, Grad-CAM): batch norm normalises by its running
//! statistics (taken as constants, so its backward is `dy * gamma / sqrt(var + eps)`) and
//! dropout is the identity.
//!
//! It runs the training network's own forward and backward ops (`network.rs`), seeded at the
//! logits by the caller instead of by the loss: with a one-hot seed per image, each image's
//! input gradient is that of its chosen logit. Parameter gradients are skipped. Images are
//! independent here (no batch statistics), so the chunks run in parallel without waiting for
//! each other, as inference does.

use std::sync::Mutex;

use rayon::prelude::*;

use super::batchnorm::BatchNormStats;
use super::float::Float;
use super::network::{images, running_statistics, with_scratch, Job, Net, Scratch, CHUNK};
use crate::model::{Layer, Params, Plan};

/// What [`logit_gradients`] computes for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LogitGradients<T> {
    /// `n x classes`.
    pub logits: Vec<T>,
    /// `n x input`: the gradient of each image's seeded logits with respect to its input.
    pub input: Vec<T>,
    /// With a tapped step: its output and the gradient there, `n x output` each (Grad-CAM's
    /// feature maps and their gradients).
    pub tap: Option<(Vec<T>, Vec<T>)>,
}

/// For the `n` images of `x` (`n x plan.input`) and `seed` (`n x classes`), the logits and the
/// gradient of `sum_k seed[i][k] * logit[i][k]` with respect to image `i`, for every `i`; with
/// `tap` (a step index below the last), also the output of that step and the gradient there.
pub fn logit_gradients<T: Float>(
    plan: &Plan,
    params: &Params<T>,
    x: &[T],
    seed: &[T],
    tap: Option<usize>,
) -> LogitGradients<T> {
    let n = images(plan, x);
    let classes = plan.output().len();
    assert_eq!(
        seed.len(),
        n * classes,
        "logit_gradients: one seed per logit"
    );
    assert!(
        tap.is_none_or(|t| t + 1 < plan.steps.len()),
        "logit_gradients: the tapped step must precede the last"
    );
    let tap_len = tap.map_or(0, |t| plan.steps[t].output.len());
    let fixed: Vec<Option<BatchNormStats<T>>> = plan
        .steps
        .iter()
        .map(|step| {
            (step.layer == Layer::BatchNorm).then(|| {
                let (mean, var) = running_statistics(params, step);
                BatchNormStats::fixed(mean, var)
            })
        })
        .collect();
    let net = Net {
        plan,
        params,
        key: None,
        batch_norm: &fixed,
        parameter_gradients: false,
    };
    let mut out = LogitGradients {
        logits: vec![T::zero(); n * classes],
        input: vec![T::zero(); x.len()],
        tap: tap.map(|_| (vec![T::zero(); n * tap_len], vec![T::zero(); n * tap_len])),
    };
    let LogitGradients {
        logits: all_logits,
        input: all_input,
        tap: tapped,
    } = &mut out;
    // One (output, gradient) pair of slices per chunk, or none per chunk.
    let taps: Vec<Option<(&mut [T], &mut [T])>> = match tapped {
        Some((o, g)) => o
            .chunks_mut(CHUNK * tap_len)
            .zip(g.chunks_mut(CHUNK * tap_len))
            .map(Some)
            .collect(),
        None => (0..n.div_ceil(CHUNK)).map(|_| None).collect(),
    };
    let pool: Mutex<Vec<Scratch<T>>> = Mutex::default();
    // The backward pass sums no parameter gradients, so it needs no tensors to sum them in.
    let no_grads = Params {
        tensors: Vec::new(),
    };
    let steps = plan.steps.len();
    x.par_chunks(CHUNK * plan.input.len())
        .zip(seed.par_chunks(CHUNK * classes))
        .zip(all_logits.par_chunks_mut(CHUNK * classes))
        .zip(all_input.par_chunks_mut(CHUNK * plan.input.len()))
        .zip(taps.into_par_iter())
        .enumerate()
        .for_each(|(c, ((((x, seed), logits), input_grad), tap_out))| {
            with_scratch(&pool, plan, |scratch| {
                let first = c * CHUNK;
                net.forward(0..steps, first, x, scratch);
                let computed = scratch.outputs.last().expect("a plan has steps");
                logits.copy_from_slice(&computed[..logits.len()]);
                scratch.dy[..seed.len()].copy_from_slice(seed);
                let mut grads = no_grads.clone();
                let mut job = Job {
                    first,
                    x,
                    labels: &[],
                    input_grad: Some(input_grad),
                    scratch,
                    grads: &mut grads,
                };
                match (tap, tap_out) {
                    (Some(t), Some((output, grad))) => {
                        // The walk back to the tapped step leaves the gradient at its output.
                        net.backward(t + 1..steps, &mut job);
                        output.copy_from_slice(&job.scratch.outputs[t][..output.len()]);
                        grad.copy_from_slice(&job.scratch.dy[..grad.len()]);
                        net.backward(0..t + 1, &mut job);
                    }
                    _ => net.backward(0..steps, &mut job),
                }
            })
        });
    out
}
