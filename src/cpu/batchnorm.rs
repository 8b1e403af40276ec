//! Batch normalisation reference, per channel of NCHW activations (a flat vector is `n x C x
//! 1 x 1`). Training normalises by the batch's mean and biased variance over `n x H x W` and
//! moves the running statistics toward them (unbiased variance, momentum 0.1, as PyTorch);
//! inference normalises by the running statistics.
//!
//! The sums over the batch are split into per-chunk partial sums, added in chunk order, so the
//! network can compute them chunk by chunk in parallel and still get the same bits.

use super::float::Float;
use crate::model::Shape;

/// PyTorch's defaults.
pub const EPSILON: f64 = 1e-5;
pub const MOMENTUM: f64 = 0.1;

/// Per-channel sums over the images of `x`: of `x` itself, or of `(x - centre)^2`.
pub fn channel_sums<T: Float>(shape: Shape, x: &[T], centre: Option<&[T]>, sums: &mut [T]) {
    let plane = shape.height * shape.width;
    for (p, values) in x.chunks_exact(plane).enumerate() {
        let c = p % shape.channels;
        let sum = &mut sums[c];
        match centre {
            None => values.iter().for_each(|&v| *sum = *sum + v),
            Some(mean) => values.iter().for_each(|&v| {
                let d = v - mean[c];
                *sum = *sum + d * d
            }),
        }
    }
}

/// Per-channel means from per-channel sums of `count` values.
pub fn means<T: Float>(sum: &[T], count: usize) -> Vec<T> {
    let m = T::from_f64_lossy(count as f64);
    sum.iter().map(|&s| s / m).collect()
}

/// The batch statistics of one layer: per channel mean and `1 / sqrt(var + eps)`, the biased
/// variance (for the running statistics), and in the backward pass the totals of `dy` and
/// `dy * xhat`, which are the bias and scale gradients.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchNormStats<T> {
    pub mean: Vec<T>,
    pub var: Vec<T>,
    pub inv_std: Vec<T>,
    pub dbeta: Vec<T>,
    pub dgamma: Vec<T>,
    /// Values per channel: `n x H x W`.
    pub count: usize,
    /// The running statistics of a frozen layer, which trains in inference mode (as Keras
    /// runs a frozen batch norm): constants, so the input gradient is `dy * gamma * inv_std`.
    pub fixed: bool,
}

impl<T: Float> BatchNormStats<T> {
    /// From the partial sums of `x` and of squared deviations, each over all chunks in order.
    pub fn new(sum: &[T], squared_deviations: &[T], count: usize) -> BatchNormStats<T> {
        let m = T::from_f64_lossy(count as f64);
        let eps = T::from_f64_lossy(EPSILON);
        let var: Vec<T> = squared_deviations.iter().map(|&s| s / m).collect();
        BatchNormStats {
            mean: means(sum, count),
            inv_std: var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect(),
            var,
            dbeta: Vec::new(),
            dgamma: Vec::new(),
            count,
            fixed: false,
        }
    }

    /// A frozen layer's running statistics, used as constants while training.
    pub fn fixed(running_mean: &[T], running_var: &[T]) -> BatchNormStats<T> {
        let eps = T::from_f64_lossy(EPSILON);
        BatchNormStats {
            mean: running_mean.to_vec(),
            inv_std: running_var
                .iter()
                .map(|&v| T::one() / (v + eps).sqrt())
                .collect(),
            var: running_var.to_vec(),
            dbeta: Vec::new(),
            dgamma: Vec::new(),
            count: 0,
            fixed: true,
        }
    }

    /// Moves running statistics toward this batch's.
    pub fn update_running(&self, running_mean: &mut [T], running_var: &mut [T]) {
        let momentum = T::from_f64_lossy(MOMENTUM);
        let keep = T::one() - momentum;
        let unbias = if self.count > 1 {
            T::from_f64_lossy(self.count as f64 / (self.count - 1) as f64)
        } else {
            T::one()
        };
        for (r, &m) in running_mean.iter_mut().zip(&self.mean) {
            *r = keep * *r + momentum * m;
        }
        for (r, &v) in running_var.iter_mut().zip(&self.var) {
            *r = keep * *r + momentum * (v * unbias);
        }
    }
}

/// `y = gamma * (x - mean) * inv_std + beta`, per channel.
pub fn batchnorm_normalize<T: Float>(
    shape: Shape,
    x: &[T],
    (mean, inv_std): (&[T], &[T]),
    (gamma, beta): (&[T], &[T]),
    y: &mut [T],
) {
    let plane = shape.height * shape.width;
    for (p, (x, y)) in x
        .chunks_exact(plane)
        .zip(y.chunks_exact_mut(plane))
        .enumerate()
    {
        let c = p % shape.channels;
        let (scale, shift) = (gamma[c] * inv_std[c], beta[c]);
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - mean[c]) * scale + shift;
        }
    }
}

/// Inference: normalises by the running statistics.
pub fn batchnorm_forward_inference<T: Float>(
    shape: Shape,
    x: &[T],
    (running_mean, running_var): (&[T], &[T]),
    gamma_beta: (&[T], &[T]),
    y: &mut [T],
) {
    let eps = T::from_f64_lossy(EPSILON);
    let inv_std: Vec<T> = running_var
        .iter()
        .map(|&v| T::one() / (v + eps).sqrt())
        .collect();
    batchnorm_normalize(shape, x, (running_mean, &inv_std), gamma_beta, y);
}

/// Per-channel partial sums of `dy` (into `dbeta`) and of `dy * xhat` (into `dgamma`).
pub fn batchnorm_backward_sums<T: Float>(
    shape: Shape,
    x: &[T],
    dy: &[T],
    stats: &BatchNormStats<T>,
    dbeta: &mut [T],
    dgamma: &mut [T],
) {
    let plane = shape.height * shape.width;
    dbeta.fill(T::zero());
    dgamma.fill(T::zero());
    for (p, (x, dy)) in x
        .chunks_exact(plane)
        .zip(dy.chunks_exact(plane))
        .enumerate()
    {
        let c = p % shape.channels;
        let (mean, inv_std) = (stats.mean[c], stats.inv_std[c]);
        for (&x, &dy) in x.iter().zip(dy) {
            dbeta[c] = dbeta[c] + dy;
            dgamma[c] = dgamma[c] + dy * (x - mean) * inv_std;
        }
    }
}

/// `dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma)`, with the batch totals in
/// `stats`.
pub fn batchnorm_backward_input<T: Float>(
    shape: Shape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    stats: &BatchNormStats<T>,
    dx: &mut [T],
) {
    let plane = shape.height * shape.width;
    if stats.fixed {
        for (p, (dy, dx)) in dy
            .chunks_exact(plane)
            .zip(dx.chunks_exact_mut(plane))
            .enumerate()
        {
            let c = p % shape.channels;
            let scale = gamma[c] * stats.inv_std[c];
            dx.iter_mut().zip(dy).for_each(|(dx, &dy)| *dx = scale * dy);
        }
        return;
    }
    let m = T::from_f64_lossy(stats.count as f64);
    let planes = x.chunks_exact(plane).zip(dy.chunks_exact(plane));
    for (p, ((x, dy), dx)) in planes.zip(dx.chunks_exact_mut(plane)).enumerate() {
        let c = p % shape.channels;
        let (mean, inv_std) = (stats.mean[c], stats.inv_std[c]);
        let scale = gamma[c] * inv_std / m;
        let (dbeta, dgamma) = (stats.dbeta[c], stats.dgamma[c]);
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let xhat = (x - mean) * inv_std;
            *dx = scale * (m * dy - dbeta - xhat * dgamma);
        }
    }
}

/// The whole training forward pass on one batch: its statistics, and `y`.
pub fn batchnorm_forward_training<T: Float>(
    shape: Shape,
    x: &[T],
    gamma_beta: (&[T], &[T]),
    y: &mut [T],
) -> BatchNormStats<T> {
    let c = shape.channels;
    let (mut sum, mut squares) = (vec![T::zero(); c], vec![T::zero(); c]);
    channel_sums(shape, x, None, &mut sum);
    let count = x.len() / c;
    channel_sums(shape, x, Some(&means(&sum, count)), &mut squares);
    let stats = BatchNormStats::new(&sum, &squares, count);
    batchnorm_normalize(shape, x, (&stats.mean, &stats.inv_std), gamma_beta, y);
    stats
}

/// The whole training backward pass on one batch: `dx`, `dgamma` and `dbeta`.
pub fn batchnorm_backward<T: Float>(
    shape: Shape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    stats: &mut BatchNormStats<T>,
    dx: &mut [T],
) {
    let c = shape.channels;
    let (mut dbeta, mut dgamma) = (vec![T::zero(); c], vec![T::zero(); c]);
    batchnorm_backward_sums(shape, x, dy, stats, &mut dbeta, &mut dgamma);
    (stats.dbeta, stats.dgamma) = (dbeta, dgamma);
    batchnorm_backward_input(shape, x, dy, gamma, stats, dx);
}
