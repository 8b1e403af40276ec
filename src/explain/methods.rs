//! The six methods on the CPU path. Each image's steps, samples or occluded copies go through
//! the network as one batch; sums run in f64.

use super::quadrature::gauss_legendre;
use super::resample::{blur, upsample_bilinear};
use super::settings::{Baseline, Method, Settings, BLUR_SIGMA};
use crate::cpu::input_gradient::logit_gradients;
use crate::cpu::network::{logits, Workspace};
use crate::model::{Params, Plan};
use crate::rng::{random_unit, seed32};

/// One image's attribution for one method.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// One value per input pixel, row-major.
    pub attribution: Vec<f32>,
    /// Integrated gradients: `sum(attribution) - (F(x) - F(baseline))`, the quadrature's error
    /// (zero for an exact integral, by the completeness axiom).
    pub completeness_error: Option<f64>,
    /// Integrated gradients: `F(x) - F(baseline)`, the target logit's change along the path.
    pub path_difference: Option<f64>,
}

impl Explanation {
    fn plain(attribution: Vec<f32>) -> Explanation {
        Explanation {
            attribution,
            completeness_error: None,
            path_difference: None,
        }
    }
}

/// Explains the target output `targets[i]` (an output index) of each image `i` of `x`
/// (`n x plan.input`, values in [0, 1]) by `method`. An error says which setting cannot run
/// on this model.
pub fn explain(
    plan: &Plan,
    params: &Params<f32>,
    x: &[f32],
    targets: &[usize],
    method: Method,
    settings: &Settings,
) -> Result<Vec<Explanation>, String> {
    let pixels = plan.input.len();
    assert_eq!(
        x.len(),
        targets.len() * pixels,
        "explain: one target per image"
    );
    let classes = plan.output().len();
    if let Some(&t) = targets.iter().find(|&&t| t >= classes) {
        return Err(format!("target {t} is not an output of the model"));
    }
    let images = || x.chunks_exact(pixels).zip(targets.iter().copied());
    Ok(match method {
        Method::Saliency | Method::InputXGradient => {
            let seed = one_hot(classes, targets);
            let grads = logit_gradients(plan, params, x, &seed, None).input;
            let attribution = |(image, grad): (&[f32], &[f32])| -> Vec<f32> {
                match method {
                    Method::Saliency => grad.iter().map(|g| g.abs()).collect(),
                    _ => image.iter().zip(grad).map(|(v, g)| v * g).collect(),
                }
            };
            x.chunks_exact(pixels)
                .zip(grads.chunks_exact(pixels))
                .map(|pair| Explanation::plain(attribution(pair)))
                .collect()
        }
        Method::IntegratedGradients => {
            if settings.steps == 0 {
                return Err("integrated gradients needs at least one step".into());
            }
            let ws = Workspace::new(plan);
            images()
                .map(|(image, t)| integrated_gradients(plan, params, &ws, image, t, settings))
                .collect()
        }
        Method::SmoothGrad => {
            if settings.samples == 0 {
                return Err("SmoothGrad needs at least one sample".into());
            }
            images()
                .map(|(image, t)| Explanation::plain(smoothgrad(plan, params, image, t, settings)))
                .collect()
        }
        Method::GradCam => grad_cam(plan, params, x, targets, settings.layer)?
            .into_iter()
            .map(Explanation::plain)
            .collect(),
        Method::Occlusion => {
            let side = plan.input.height.min(plan.input.width);
            if settings.window == 0 || settings.window > side || settings.stride == 0 {
                return Err(format!(
                    "occlusion needs a window of 1 to {side} pixels and a stride of at least 1"
                ));
            }
            let ws = Workspace::new(plan);
            images()
                .map(|(image, t)| {
                    Explanation::plain(occlusion(plan, params, &ws, image, t, settings))
                })
                .collect()
        }
    })
}

/// One row of `classes` per target: 1 at the target, 0 elsewhere.
fn one_hot(classes: usize, targets: &[usize]) -> Vec<f32> {
    let mut seed = vec![0.0; targets.len() * classes];
    for (row, &t) in targets.iter().enumerate() {
        seed[row * classes + t] = 1.0;
    }
    seed
}

fn integrated_gradients(
    plan: &Plan,
    params: &Params<f32>,
    ws: &Workspace<f32>,
    image: &[f32],
    target: usize,
    settings: &Settings,
) -> Explanation {
    let baseline = match &settings.baseline {
        Baseline::Black => vec![0.0; image.len()],
        Baseline::Blur => blur(image, BLUR_SIGMA),
        Baseline::Image(b) => b.clone(),
    };
    let (nodes, weights) = gauss_legendre(settings.steps);
    let path: Vec<f32> = nodes
        .iter()
        .flat_map(|&a| {
            image
                .iter()
                .zip(&baseline)
                .map(move |(&v, &b)| (b as f64 + a * (v as f64 - b as f64)) as f32)
        })
        .collect();
    let seed = one_hot(plan.output().len(), &vec![target; nodes.len()]);
    let grads = logit_gradients(plan, params, &path, &seed, None).input;
    let mut mean_grad = vec![0.0f64; image.len()];
    for (grad, &w) in grads.chunks_exact(image.len()).zip(&weights) {
        mean_grad
            .iter_mut()
            .zip(grad)
            .for_each(|(m, &g)| *m += w * g as f64);
    }
    let attribution: Vec<f32> = mean_grad
        .iter()
        .zip(image.iter().zip(&baseline))
        .map(|(m, (&v, &b))| (m * (v as f64 - b as f64)) as f32)
        .collect();
    let ends: Vec<f32> = image.iter().chain(&baseline).copied().collect();
    let end_logits = logits(plan, params, &ends, ws);
    let classes = plan.output().len();
    let difference = end_logits[target] as f64 - end_logits[classes + target] as f64;
    let total: f64 = attribution.iter().map(|&a| a as f64).sum();
    Explanation {
        attribution,
        completeness_error: Some(total - difference),
        path_difference: Some(difference),
    }
}

/// Standard normal noise for sample `s`, pixel `p`, by Box–Muller from two uniforms of the
/// counter-based generator: the same noise for every image, so an image's map does not depend
/// on the others explained with it.
fn gaussian(key: u32, s: usize, p: usize, pixels: usize) -> f32 {
    let counter = 2 * (s * pixels + p) as u32;
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - random_unit(key, 0, counter) as f64;
    let u2 = random_unit(key, 0, counter.wrapping_add(1)) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn smoothgrad(
    plan: &Plan,
    params: &Params<f32>,
    image: &[f32],
    target: usize,
    settings: &Settings,
) -> Vec<f32> {
    let pixels = image.len();
    let key = seed32(settings.seed);
    let noisy: Vec<f32> = (0..settings.samples)
        .flat_map(|s| {
            image
                .iter()
                .enumerate()
                .map(move |(p, &v)| v + settings.noise * gaussian(key, s, p, pixels))
        })
        .collect();
    let seed = one_hot(plan.output().len(), &vec![target; settings.samples]);
    let grads = logit_gradients(plan, params, &noisy, &seed, None).input;
    let mut sum = vec![0.0f64; pixels];
    for grad in grads.chunks_exact(pixels) {
        sum.iter_mut()
            .zip(grad)
            .for_each(|(s, &g)| *s += g.abs() as f64);
    }
    sum.iter()
        .map(|&s| (s / settings.samples as f64) as f32)
        .collect()
}

fn grad_cam(
    plan: &Plan,
    params: &Params<f32>,
    x: &[f32],
    targets: &[usize],
    layer: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let is_conv = plan
        .steps
        .get(layer)
        .is_some_and(|s| matches!(s.layer, crate::model::Layer::Conv2d { .. }));
    if !is_conv {
        return Err("Grad-CAM needs a convolution".into());
    }
    let tap = feature_maps(plan, layer);
    let shape = plan.steps[tap].output;
    let seed = one_hot(plan.output().len(), targets);
    let out = logit_gradients(plan, params, x, &seed, Some(tap));
    let (maps, grads) = out.tap.expect("a tapped step");
    let plane = shape.height * shape.width;
    Ok(maps
        .chunks_exact(shape.len())
        .zip(grads.chunks_exact(shape.len()))
        .map(|(maps, grads)| {
            let mut cam = vec![0.0f64; plane];
            for (map, grad) in maps.chunks_exact(plane).zip(grads.chunks_exact(plane)) {
                let alpha = grad.iter().map(|&g| g as f64).sum::<f64>() / plane as f64;
                cam.iter_mut()
                    .zip(map)
                    .for_each(|(c, &a)| *c += alpha * a as f64);
            }
            let cam: Vec<f32> = cam.iter().map(|&c| c.max(0.0) as f32).collect();
            upsample_bilinear(&cam, (shape.height, shape.width))
        })
        .collect())
}

/// The step whose output Grad-CAM weighs: the convolution's feature maps after the batch norm
/// and activation that follow it, if any (as Grad-CAM reads a CNN's rectified maps; before the
/// ReLU, channels can be negative and the weighted sum cancel to nothing).
fn feature_maps(plan: &Plan, conv: usize) -> usize {
    let mut step = conv;
    while plan.steps.get(step + 2).is_some()
        && matches!(
            plan.steps[step + 1].layer,
            crate::model::Layer::BatchNorm | crate::model::Layer::Activation(_)
        )
    {
        step += 1;
    }
    step
}

/// Window origins along a side: every `stride` pixels, plus one flush with the far edge when the
/// stride skips it, so that every pixel is covered.
fn origins(side: usize, window: usize, stride: usize) -> Vec<usize> {
    let mut starts: Vec<usize> = (0..=side - window).step_by(stride).collect();
    if starts.last() != Some(&(side - window)) {
        starts.push(side - window);
    }
    starts
}

/// The occluded windows are filled with 0: no ink, MNIST's background.
fn occlusion(
    plan: &Plan,
    params: &Params<f32>,
    ws: &Workspace<f32>,
    image: &[f32],
    target: usize,
    settings: &Settings,
) -> Vec<f32> {
    let (h, w) = (plan.input.height, plan.input.width);
    let (window, stride) = (settings.window, settings.stride);
    let windows: Vec<(usize, usize)> = origins(h, window, stride)
        .into_iter()
        .flat_map(|r| origins(w, window, stride).into_iter().map(move |c| (r, c)))
        .collect();
    let inside = |(r0, c0): (usize, usize), p: usize| {
        let (r, c) = (p / w, p % w);
        (r0..r0 + window).contains(&r) && (c0..c0 + window).contains(&c)
    };
    let mut batch = image.to_vec();
    for &origin in &windows {
        batch.extend(
            image
                .iter()
                .enumerate()
                .map(|(p, &v)| match inside(origin, p) {
                    true => 0.0,
                    false => v,
                }),
        );
    }
    let classes = plan.output().len();
    let out = logits(plan, params, &batch, ws);
    let full = out[target] as f64;
    let mut sum = vec![0.0f64; image.len()];
    let mut count = vec![0u32; image.len()];
    for (k, &origin) in windows.iter().enumerate() {
        let drop = full - out[(k + 1) * classes + target] as f64;
        for p in (0..image.len()).filter(|&p| inside(origin, p)) {
            sum[p] += drop;
            count[p] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &n)| if n == 0 { 0.0 } else { (s / n as f64) as f32 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_pixel_even_when_the_stride_skips_the_edge() {
        assert_eq!(origins(28, 4, 2).len(), 13);
        assert_eq!(origins(28, 5, 4), vec![0, 4, 8, 12, 16, 20, 23]);
        assert_eq!(origins(28, 28, 3), vec![0]);
    }

    #[test]
    fn gaussian_noise_has_unit_variance() {
        let n = 20_000;
        let values: Vec<f64> = (0..n)
            .map(|s| gaussian(seed32(3), s, 0, 1) as f64)
            .collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 0.007 for the mean, 0.01 for the variance.
        assert!(mean.abs() < 0.035, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
