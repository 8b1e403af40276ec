//! Explanations of a classifier's answer: which input pixels moved the target class's **logit**
//! (pre-softmax, as Captum attributes a logits model), for MNIST-sized inputs on the CPU path.
//! Every method runs the network in inference mode (batch norm on its running statistics,
//! dropout off) through [`crate::cpu::input_gradient`], and batches its interpolation steps,
//! noisy samples or occluded copies of an image through the network together.
//!
//! The methods follow Captum's definitions, so figures can be compared:
//! - saliency: `|dF/dx|` (Captum's `Saliency`, `abs=True`);
//! - input x gradient: `x * dF/dx`;
//! - integrated gradients: `(x - b) * integral over a in [0, 1] of dF/dx(b + a (x - b))`, by
//!   Gauss–Legendre quadrature ([`quadrature`]);
//! - SmoothGrad: the mean saliency over noisy copies `x + N(0, sigma^2)` (Captum's
//!   `NoiseTunnel(Saliency)`, `nt_type="smoothgrad"`), noise drawn from [`crate::rng`];
//! - Grad-CAM: `ReLU(sum_k alpha_k A_k)` over a convolution's feature maps `A_k` (after the
//!   batch norm and activation that follow it), with `alpha_k` the spatial mean of `dF/dA_k`,
//!   upsampled bilinearly to the input;
//! - occlusion: per pixel, the mean drop `F(x) - F(x with a window blacked out)` over the
//!   windows that cover it.

pub mod figure;
mod methods;
pub mod quadrature;

pub use methods::{explain, Explanation};

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::model::{Layer, Plan};

/// An explanation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Saliency,
    InputXGradient,
    IntegratedGradients,
    SmoothGrad,
    GradCam,
    Occlusion,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Saliency,
        Method::InputXGradient,
        Method::IntegratedGradients,
        Method::SmoothGrad,
        Method::GradCam,
        Method::Occlusion,
    ];

    /// The name users type and the JSON records.
    pub fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::InputXGradient => "input-x-gradient",
            Method::IntegratedGradients => "integrated-gradients",
            Method::SmoothGrad => "smoothgrad",
            Method::GradCam => "gradcam",
            Method::Occlusion => "occlusion",
        }
    }
}

/// The reference input of integrated gradients.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// All zeros: no ink, MNIST's background.
    Black,
    /// The image itself blurred by a Gaussian of [`BLUR_SIGMA`] pixels (Sturmfels et al. 2020,
    /// "Visualizing the impact of feature attribution baselines").
    Blur,
    /// A given image, e.g. the mean training image ([`mean_image`]).
    Image(Vec<f32>),
}

/// The blur baseline's standard deviation, in pixels: wide enough that a stroke (about two
/// pixels) is smeared into a faint cloud.
pub const BLUR_SIGMA: f64 = 4.0;

/// How each method is run.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Integrated gradients: quadrature nodes.
    pub steps: usize,
    pub baseline: Baseline,
    /// SmoothGrad: noisy copies per image, and the noise's standard deviation (inputs are in
    /// [0, 1]).
    pub samples: usize,
    pub noise: f32,
    /// SmoothGrad's noise stream.
    pub seed: u64,
    /// Occlusion: the side of the square window and the step between windows, in pixels.
    pub window: usize,
    pub stride: usize,
    /// Grad-CAM: the plan step of the convolution, see [`convolution_step`].
    pub layer: usize,
}

impl Settings {
    /// The defaults for `plan`: 64 steps from black, 32 samples of noise 0.15 (15% of the input
    /// range, within SmoothGrad's recommended 10-20%), seed 42, 4x4 windows every 2 pixels,
    /// Grad-CAM on the last convolution (none for a model without one: Grad-CAM then fails).
    pub fn defaults(plan: &Plan) -> Settings {
        Settings {
            steps: 64,
            baseline: Baseline::Black,
            samples: 32,
            noise: 0.15,
            seed: 42,
            window: 4,
            stride: 2,
            layer: convolutions(plan).last().map_or(usize::MAX, |c| c.1),
        }
    }
}

/// The model's convolutions by name (`conv1`, `conv2`, ...: their checkpoint prefixes) and plan
/// step, in order.
pub fn convolutions(plan: &Plan) -> Vec<(String, usize)> {
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.layer, Layer::Conv2d { .. }))
        .map(|(i, s)| {
            let w = s.weight_index.expect("a convolution has weights");
            let name = plan.params[w].name.trim_end_matches(".weight").to_string();
            (name, i)
        })
        .collect()
}

/// The plan step of the convolution called `name`, or why there is none.
pub fn convolution_step(plan: &Plan, name: &str) -> Result<usize, String> {
    let convs = convolutions(plan);
    if let Some((_, step)) = convs.iter().find(|(n, _)| n == name) {
        return Ok(*step);
    }
    let names: Vec<&str> = convs.iter().map(|(n, _)| n.as_str()).collect();
    Err(match names.is_empty() {
        true => format!("'{name}': the model has no convolution"),
        false => format!(
            "'{name}' is not a convolution of the model; its convolutions are {}",
            names.join(", ")
        ),
    })
}

/// The per-pixel mean of `images` (each [`IMAGE_PIXELS`] values), the `mean` baseline.
pub fn mean_image(images: &[f32]) -> Vec<f32> {
    let n = images.len() / IMAGE_PIXELS;
    let mut sum = vec![0.0f64; IMAGE_PIXELS];
    for image in images.chunks_exact(IMAGE_PIXELS) {
        sum.iter_mut().zip(image).for_each(|(s, &v)| *s += v as f64);
    }
    sum.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
}

/// `image` blurred by a Gaussian of `sigma` pixels, separably, with zeros outside (MNIST's
/// background) and the kernel cut at three sigma.
pub fn blur(image: &[f32], sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let side = IMAGE_SIDE as isize;
    let pass = |src: &[f64], along_rows: bool| -> Vec<f64> {
        let mut out = vec![0.0; src.len()];
        for r in 0..side {
            for c in 0..side {
                let mut acc = 0.0;
                for (k, d) in (-radius..=radius).enumerate() {
                    let (rr, cc) = if along_rows { (r, c + d) } else { (r + d, c) };
                    if (0..side).contains(&rr) && (0..side).contains(&cc) {
                        acc += kernel[k] * src[(rr * side + cc) as usize];
                    }
                }
                out[(r * side + c) as usize] = acc / total;
            }
        }
        out
    };
    let x: Vec<f64> = image.iter().map(|&v| v as f64).collect();
    pass(&pass(&x, true), false)
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// `map` (`h x w`) resized to the 28x28 input bilinearly, with pixel centres aligned as
/// PyTorch's `interpolate(mode="bilinear", align_corners=False)` aligns them (edges clamped).
pub fn upsample_bilinear(map: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let side = IMAGE_SIDE;
    let source = |dst: usize, len: usize| -> (usize, usize, f32) {
        let s = ((dst as f32 + 0.5) * len as f32 / side as f32 - 0.5).clamp(0.0, (len - 1) as f32);
        let lo = s.floor() as usize;
        (lo, (lo + 1).min(len - 1), s - lo as f32)
    };
    let mut out = vec![0.0; side * side];
    for r in 0..side {
        let (r0, r1, fr) = source(r, h);
        for c in 0..side {
            let (c0, c1, fc) = source(c, w);
            let at = |rr: usize, cc: usize| map[rr * w + cc];
            let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
            let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
            out[r * side + c] = top * (1.0 - fr) + bottom * fr;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, MNIST_INPUT};

    #[test]
    fn convolutions_are_named_as_in_checkpoints() {
        let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
        let convs = convolutions(&plan);
        assert_eq!(
            convs,
            vec![("conv1".to_string(), 0), ("conv2".to_string(), 3)]
        );
        assert_eq!(convolution_step(&plan, "conv2"), Ok(3));
        let err = convolution_step(&plan, "fc").unwrap_err();
        assert!(err.contains("conv1, conv2"), "{err}");
        assert_eq!(Settings::defaults(&plan).layer, 3);
    }

    #[test]
    fn blur_keeps_the_ink_away_from_edges_and_spreads_it() {
        let mut image = vec![0.0; IMAGE_PIXELS];
        image[14 * 28 + 14] = 1.0;
        let blurred = blur(&image, 2.0);
        let total: f32 = blurred.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(blurred[14 * 28 + 14] < 0.1);
        assert!(blurred[14 * 28 + 16] > 0.0 && blurred[14 * 28 + 16] < blurred[14 * 28 + 15]);
    }

    #[test]
    fn upsampling_keeps_constants_and_corners_and_interpolates_between() {
        let constant = upsample_bilinear(&[0.5; 4], (2, 2));
        assert!(constant.iter().all(|&v| (v - 0.5).abs() < 1e-6));
        // A left-to-right ramp stays a ramp, with the corners at the source's edge values.
        let ramp = upsample_bilinear(&[0.0, 1.0, 0.0, 1.0], (2, 2));
        assert_eq!(ramp[0], 0.0);
        assert_eq!(ramp[27], 1.0);
        assert!(ramp[13] < ramp[14] && ramp[13] > 0.0 && ramp[14] < 1.0);
    }
}
