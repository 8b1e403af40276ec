//! How faithful a map is to the model: the deletion and insertion curves of RISE (Petsiuk et al.
//! 2018). Pixels are taken in decreasing attribution order, [`PIXELS_PER_STEP`] at a time;
//! deletion sets them to the baseline 0 (no ink, MNIST's background, as occlusion fills its
//! windows), insertion starts from the all-zero image and puts them back. At each step the
//! target's softmax probability is recorded. A faithful map makes the deletion curve fall fast
//! (small area) and the insertion curve rise fast (large area); a random pixel order is the
//! yardstick, since on MNIST even a random deletion soon leaves no digit.

use crate::cpu::network::{logits, Workspace};
use crate::model::{Params, Plan};
use crate::predict::softmax;
use crate::rng::{random_u32, seed32};

/// Pixels removed or inserted per step: one image row's worth, so a 28x28 image takes 28 steps.
pub const PIXELS_PER_STEP: usize = 28;

/// The value a deleted pixel takes and an inserted image starts from.
pub const DELETED: f32 = 0.0;

/// One image's curves: the target's probability after 0, 1, ... steps, the last with every
/// pixel deleted (or inserted).
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    pub deletion: Vec<f64>,
    pub insertion: Vec<f64>,
}

/// The number of points on a curve of `pixels` pixels: the start and one per step.
pub fn points(pixels: usize) -> usize {
    pixels.div_ceil(PIXELS_PER_STEP) + 1
}

/// The pixels of `attribution` from largest to smallest (signed: a pixel that argues against the
/// target comes last); ties in index order, so the order is a function of the map alone.
pub fn attribution_order(attribution: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..attribution.len()).collect();
    order.sort_by(|&a, &b| attribution[b].total_cmp(&attribution[a]).then(a.cmp(&b)));
    order
}

/// A uniformly random order of `pixels` pixels (Fisher–Yates on the counter-based generator),
/// a function of `seed` and the image's number alone.
pub fn random_order(pixels: usize, seed: u64, image: usize) -> Vec<usize> {
    let key = seed32(seed);
    let mut order: Vec<usize> = (0..pixels).collect();
    for i in (1..pixels).rev() {
        // The modulo's bias is below 2^-22 for 784 pixels.
        let j = random_u32(key, image as u32, i as u32) as usize % (i + 1);
        order.swap(i, j);
    }
    order
}

/// The deletion and insertion curves of `image` for output `target`, taking pixels in `order`:
/// every step of both curves goes through the network as one batch.
pub fn curves(
    plan: &Plan,
    params: &Params<f32>,
    ws: &Workspace<f32>,
    image: &[f32],
    target: usize,
    order: &[usize],
) -> Curves {
    let pixels = image.len();
    assert_eq!(order.len(), pixels, "curves: one rank per pixel");
    let n = points(pixels);
    let mut batch = Vec::with_capacity(2 * n * pixels);
    for step in 0..n {
        let moved = &order[..(step * PIXELS_PER_STEP).min(pixels)];
        let mut deleted = image.to_vec();
        let mut inserted = vec![DELETED; pixels];
        for &p in moved {
            deleted[p] = DELETED;
            inserted[p] = image[p];
        }
        batch.extend(deleted);
        batch.extend(inserted);
    }
    let classes = plan.output().len();
    let out = logits(plan, params, &batch, ws);
    let probability = |row: usize| softmax(&out[row * classes..(row + 1) * classes])[target];
    Curves {
        deletion: (0..n).map(|s| probability(2 * s)).collect(),
        insertion: (0..n).map(|s| probability(2 * s + 1)).collect(),
    }
}

/// The area under `curve` by the trapezoid rule, its points evenly spaced over x in [0, 1].
pub fn area(curve: &[f64]) -> f64 {
    match curve.len() {
        0 => 0.0,
        1 => curve[0],
        n => {
            let inner: f64 = curve.windows(2).map(|w| w[0] + w[1]).sum();
            inner / (2.0 * (n - 1) as f64)
        }
    }
}

/// The per-point mean of `curves` (all of one length).
pub fn mean_curve<'a>(curves: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0;
    for curve in curves {
        if sum.is_empty() {
            sum = vec![0.0; curve.len()];
        }
        sum.iter_mut().zip(curve).for_each(|(s, &v)| *s += v);
        n += 1;
    }
    sum.iter().map(|s| s / n.max(1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trapezoid_area_is_exact_for_lines() {
        assert_eq!(area(&[0.5; 29]), 0.5);
        let ramp: Vec<f64> = (0..=28).map(|k| k as f64 / 28.0).collect();
        assert!((area(&ramp) - 0.5).abs() < 1e-12);
        assert!((area(&[1.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn orders_rank_every_pixel_once() {
        assert_eq!(attribution_order(&[0.1, -2.0, 3.0, 0.1]), vec![2, 0, 3, 1]);
        let a = random_order(784, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<_>>());
        assert_eq!(a, random_order(784, 7, 0));
        assert_ne!(a, random_order(784, 7, 1));
        assert_ne!(a, random_order(784, 8, 0));
        // Not the identity, nor close to it: a shuffled order moves almost every pixel.
        assert!(a.iter().enumerate().filter(|(i, &p)| *i == p).count() < 10);
    }

    #[test]
    fn a_curve_has_a_point_per_step_and_the_start() {
        assert_eq!(points(784), 29);
        assert_eq!(points(785), 30);
        let mean = mean_curve([&[1.0, 0.0][..], &[0.0, 0.0][..]].into_iter());
        assert_eq!(mean, vec![0.5, 0.0]);
    }
}
