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
//!
//! [`faithfulness`] scores a map by the deletion and insertion curves of RISE.

pub mod faithfulness;
pub mod figure;
mod methods;
pub mod quadrature;
mod resample;
mod settings;

pub use methods::{explain, Explanation};
pub use resample::{blur, upsample_bilinear};
pub use settings::{
    convolution_step, convolutions, mean_image, Baseline, Method, Settings, BLUR_SIGMA,
};
