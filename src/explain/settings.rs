//! What the explanation methods take: the method, its settings, the integrated-gradients
//! baseline, and the model's convolutions by name (Grad-CAM's `--layer`).

use crate::data::IMAGE_PIXELS;
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
}
