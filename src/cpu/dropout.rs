//! Dropout reference. While training, each element is kept with probability `1 - rate` and
//! scaled by `1 / (1 - rate)` (inverted dropout, so inference is the identity). The mask is never
//! stored: it is a pure function of the run's seed, the layer, the step, the image's position in
//! the batch and the element (see [`crate::rng`]), so the backward pass and the GPU recompute it.

use super::float::Float;
use crate::rng::{mix32, random_unit};

/// Separates dropout's random numbers from augmentation's.
const DROPOUT_STREAM: u32 = 0x6d9a_3c51;

/// Where a chunk of images sits in a training step, for the mask's random numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    /// The run's seed32.
    pub seed: u32,
    /// The training step (from 1).
    pub step: u32,
    /// The plan step index of the dropout layer.
    pub layer: usize,
    /// The batch position of the first image given.
    pub first_image: usize,
}

/// The stream of layer `layer`'s masks, xor-ed into the seed (the GPU gets it as a uniform).
pub fn layer_stream(layer: usize) -> u32 {
    DROPOUT_STREAM ^ layer as u32
}

impl DropoutKey {
    /// The key of one image's masks; its element index is the counter.
    pub fn image_key(&self, image: usize) -> u32 {
        let layer = mix32(self.seed ^ layer_stream(self.layer));
        mix32(layer ^ (self.first_image + image) as u32)
    }
}

/// The factor of a kept element, computed in f32 as the GPU does.
pub fn keep_scale(rate: f32) -> f32 {
    1.0 / (1.0 - rate)
}

/// Whether element `i` of image `image` survives (compared in f32 on every device).
fn kept(rate: f32, key: &DropoutKey, image: usize, i: usize) -> bool {
    random_unit(key.image_key(image), key.step, i as u32) >= rate
}

/// `y = mask * x * scale` for images of `len` elements; also the backward (`dx = mask * dy *
/// scale`), since dropout is linear in its input.
pub fn dropout_forward<T: Float>(rate: f32, key: &DropoutKey, len: usize, x: &[T], y: &mut [T]) {
    let scale = T::from_f64_lossy(f64::from(keep_scale(rate)));
    let images = x.chunks_exact(len).zip(y.chunks_exact_mut(len));
    for (image, (x, y)) in images.enumerate() {
        for (i, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = if kept(rate, key, image, i) {
                x * scale
            } else {
                T::zero()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_rate_and_scales_the_rest() {
        let key = DropoutKey {
            seed: 3,
            step: 5,
            layer: 2,
            first_image: 0,
        };
        let x = vec![1.0f32; 4 * 10_000];
        let mut y = vec![0.0; x.len()];
        dropout_forward(0.25, &key, 10_000, &x, &mut y);
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        assert!((kept as f64 / x.len() as f64 - 0.75).abs() < 0.01, "{kept}");
        assert!(y.iter().all(|&v| v == 0.0 || v == keep_scale(0.25)));
        // The mask depends on the step and on where the images are, not on how they are cut.
        let mut y2 = vec![0.0; x.len()];
        let second_half = DropoutKey {
            first_image: 2,
            ..key
        };
        dropout_forward(0.25, &key, 10_000, &x[..20_000], &mut y2[..20_000]);
        dropout_forward(0.25, &second_half, 10_000, &x[20_000..], &mut y2[20_000..]);
        assert_eq!(y, y2);
        dropout_forward(0.25, &DropoutKey { step: 6, ..key }, 10_000, &x, &mut y2);
        assert_ne!(y, y2);
    }
}
