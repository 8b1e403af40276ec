//! Int8 models: the description of a post-training-quantised model and the arithmetic that
//! makes one, independent of any device (docs/int8.md writes every formula down).
//!
//! A quantised model runs its folded plan (batch norm merged into the conv or dense layer
//! before it) with int8 weights, one f32 scale per output channel, int32 biases and, per
//! conv/dense layer, the f32 scale of its int8 input. Between two such layers only ReLU,
//! pooling, flatten and dropout may stand: they commute with a symmetric quantiser, so each
//! stretch of the network between two quantised layers shares one activation scale.

use super::arch::{Activation, Arch, Layer};
use super::params::{Params, Tensor};
use super::plan::{Plan, MNIST_INPUT};

/// The largest int8 magnitude used; -128 never is (the ONNX Runtime convention), so the range
/// is symmetric and negating a value never overflows.
pub const QMAX: i32 = 127;

/// What `quantize` did, stored as JSON in the checkpoint's `quantization` metadata.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scheme {
    /// Always [`SCHEME_NAME`]; a reader refuses any other.
    pub scheme: String,
    /// Always [`SCHEME_VERSION`].
    pub version: u32,
    /// `per-channel` (one weight scale per output channel) or `per-tensor`.
    pub weights: String,
    /// How the activation ranges were found: `minmax` or `percentile:P`.
    pub calibration: String,
    /// Training images the activation ranges were measured on.
    pub calibration_images: usize,
}

pub const SCHEME_NAME: &str = "int8-symmetric";
pub const SCHEME_VERSION: u32 = 1;

/// One conv or dense layer, quantised.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayer {
    /// Its name in checkpoints: `conv1`, `fc`, ...
    pub name: String,
    /// The float weight's shape (OIHW or out x in).
    pub shape: Vec<usize>,
    pub weight: Vec<i8>,
    /// Per output channel: the real value of weight 1.
    pub weight_scale: Vec<f32>,
    /// The real value of input 1.
    pub input_scale: f32,
    /// Per output channel, in units of `input_scale * weight_scale[o]`.
    pub bias: Vec<i32>,
}

/// A quantised model: its folded plan and one [`QuantizedLayer`] per conv/dense step, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    pub plan: Plan,
    pub layers: Vec<QuantizedLayer>,
    pub scheme: Scheme,
}

/// `x` rounded to the nearest integer, ties to even, then clamped to `[lo, hi]`. NaN is not
/// expected (scales are checked positive and finite); it would clamp to `lo`.
pub fn round_clamp(x: f32, lo: i32, hi: i32) -> i32 {
    let r = x.round_ties_even();
    if r.is_nan() || r < lo as f32 {
        lo
    } else if r > hi as f32 {
        hi
    } else {
        r as i32
    }
}

/// The scale that maps `max_abs` to 127. A range of zero (a layer whose input is always 0)
/// gets scale 1: any positive scale represents zeros exactly, and 0 would divide by zero.
pub fn scale_for(max_abs: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        max_abs / QMAX as f32
    } else {
        1.0
    }
}

/// `w` (`outputs` rows) as int8 with its scales: symmetric, `scale = absmax / 127` per output
/// channel, or one absmax over the tensor for `per_tensor` (repeated per channel).
pub fn quantize_weights(w: &[f32], outputs: usize, per_tensor: bool) -> (Vec<i8>, Vec<f32>) {
    let row = w.len() / outputs;
    let absmax = |xs: &[f32]| xs.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scales: Vec<f32> = if per_tensor {
        vec![scale_for(absmax(w)); outputs]
    } else {
        w.chunks_exact(row).map(|r| scale_for(absmax(r))).collect()
    };
    let q = (w.chunks_exact(row).zip(&scales))
        .flat_map(|(r, &s)| {
            r.iter()
                .map(move |&x| round_clamp(x / s, -QMAX, QMAX) as i8)
        })
        .collect();
    (q, scales)
}

/// The largest bias magnitude stored: 2^30, so that the bias plus a layer's products stays
/// within i32 for any fan-in below (2^31 - 2^30) / 127^2, about 66,000 (docs/int8.md).
pub const BIAS_LIMIT: i32 = 1 << 30;

/// A float bias in units of `input_scale * weight_scale[o]`, rounded half to even (in f64, so
/// the one rounding is the last) and clamped to [`BIAS_LIMIT`].
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scale: &[f32]) -> Vec<i32> {
    (b.iter().zip(weight_scale))
        .map(|(&b, &ws)| {
            let x = f64::from(b) / (f64::from(input_scale) * f64::from(ws));
            let limit = f64::from(BIAS_LIMIT);
            x.round_ties_even().clamp(-limit, limit) as i32
        })
        .collect()
}

/// The requantisation multiplier of output channel `o` of a layer whose output feeds a
/// stretch of scale `output_scale`: `(input_scale * weight_scale[o]) / output_scale`, in f32,
/// in that order, computed once when a model is loaded.
pub fn requant_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f32 {
    (input_scale * weight_scale) / output_scale
}

/// An int32 accumulator requantised to int8: one f32 multiply, round half to even, clamp to
/// `[-127, 127]`. A ReLU after it is its own op, `max(q, 0)`, not a clamp here: between the
/// layer and the ReLU there may be an average pool, which does not commute with it.
pub fn requantize(acc: i32, multiplier: f32) -> i8 {
    round_clamp(acc as f32 * multiplier, -QMAX, QMAX) as i8
}

/// The plan with every batch norm folded into the conv or dense layer before it, and the
/// folded parameters, in f64 (callers convert; quantising stores the result in f32):
/// `w'[o] = w[o] * g[o] / sqrt(var[o] + eps)`, `b'[o] = (b[o] - mean[o]) * g[o] / sqrt(var[o]
/// + eps) + beta[o]`. A batch norm after anything else cannot be folded: an error says which.
pub fn fold_batch_norm(
    plan: &Plan,
    params: &Params<f64>,
    eps: f64,
) -> Result<(Plan, Params<f64>), String> {
    let mut layers = Vec::new();
    // The folded tensors by their float name, in the folded plan's order.
    let mut folded: Vec<Vec<f64>> = Vec::new();
    let mut last_owner: Option<(usize, usize)> = None; // (index in `folded` of weight, outputs)
    for (i, step) in plan.steps.iter().enumerate() {
        match step.layer {
            Layer::BatchNorm => {
                let Some((w_at, outputs)) = last_owner.take() else {
                    return Err(format!(
                        "layer {} 'bn' does not follow a conv or dense layer, so it cannot be folded",
                        i + 1
                    ));
                };
                let at = step.weight_index.expect("batch norm has parameters");
                let stats = step.stats_index.expect("batch norm has statistics");
                let t = |k: usize| &params.tensors[k].data;
                let (gamma, beta, mean, var) = (t(at), t(at + 1), t(stats), t(stats + 1));
                let row = folded[w_at].len() / outputs;
                for o in 0..outputs {
                    let k = gamma[o] / (var[o] + eps).sqrt();
                    for w in &mut folded[w_at][o * row..(o + 1) * row] {
                        *w *= k;
                    }
                    let b = &mut folded[w_at + 1][o];
                    *b = (*b - mean[o]) * k + beta[o];
                }
            }
            layer => {
                if let Some(at) = step.weight_index {
                    folded.push(params.tensors[at].data.clone());
                    folded.push(params.tensors[at + 1].data.clone());
                    last_owner = Some((folded.len() - 2, step.output.channels));
                } else if !matches!(layer, Layer::Dropout { .. }) {
                    // Folding into a layer across an activation or pool would be wrong.
                    last_owner = None;
                }
                layers.push(layer);
            }
        }
    }
    let arch = Arch { layers };
    let folded_plan = Plan::new(&arch, plan.input)?;
    let tensors = (folded_plan.params.iter().zip(folded))
        .map(|(spec, data)| Tensor {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            data,
        })
        .collect();
    Ok((folded_plan, Params { tensors }))
}

/// Why `plan` (already folded) cannot run in int8, if it cannot: sigmoid and tanh do not
/// commute with a symmetric quantiser, a batch norm left over has no int8 form.
pub fn check_quantizable(plan: &Plan) -> Result<(), String> {
    if plan.input != MNIST_INPUT {
        return Err(format!(
            "int8 models take 1x28x28 images, not {:?}",
            plan.input
        ));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let why = match step.layer {
            Layer::Activation(a @ (Activation::Sigmoid | Activation::Tanh)) => {
                format!("{a} has no int8 form here (only relu)")
            }
            Layer::BatchNorm => "batch norm must be folded first".into(),
            _ => continue,
        };
        return Err(format!("layer {} '{}': {why}", i + 1, step.layer));
    }
    let Some(last) = (plan.steps.iter()).rposition(|s| s.weight_index.is_some()) else {
        return Err("the model has no conv or dense layer to quantise".into());
    };
    // The last layer's output is dequantised to float logits; only what is cheap and exact
    // on floats may follow it.
    let trailing = |l: &Layer| {
        matches!(
            l,
            Layer::Activation(Activation::Relu) | Layer::Flatten | Layer::Dropout { .. }
        )
    };
    if let Some((i, step)) =
        (plan.steps.iter().enumerate().skip(last + 1)).find(|(_, s)| !trailing(&s.layer))
    {
        return Err(format!(
            "layer {} '{}' after the last conv or dense layer has no int8 form",
            i + 1,
            step.layer
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_and_clamped() {
        assert_eq!(round_clamp(0.5, -127, 127), 0);
        assert_eq!(round_clamp(1.5, -127, 127), 2);
        assert_eq!(round_clamp(2.5, -127, 127), 2);
        assert_eq!(round_clamp(-2.5, -127, 127), -2);
        assert_eq!(round_clamp(-3.5, -127, 127), -4);
        assert_eq!(round_clamp(2.5000002, -127, 127), 3);
        assert_eq!(round_clamp(126.5, -127, 127), 126);
        assert_eq!(round_clamp(127.5, -127, 127), 127);
        assert_eq!(round_clamp(1e9, -127, 127), 127);
        assert_eq!(round_clamp(-128.0, -127, 127), -127);
        assert_eq!(round_clamp(-3.0, 0, 127), 0);
        assert_eq!(requantize(5, 0.5), 2); // 2.5 -> 2
        assert_eq!(requantize(7, 0.5), 4); // 3.5 -> 4
        assert_eq!(requantize(-1000, 0.5), -127);
        assert_eq!(requantize(i32::MAX, 1.0), 127);
    }

    #[test]
    fn weights_get_one_scale_per_output_channel() {
        // Channel 0's absmax is 2, channel 1's is 0.5, channel 2 is all zeros.
        let w = [2.0, -1.0, 0.1, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0];
        let (q, s) = quantize_weights(&w, 3, false);
        assert_eq!(s, [2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(&q[..3], [127, -64, 6]); // -63.5 -> -64 (even), 6.35 -> 6
        assert_eq!(&q[3..6], [-127, 64, 0]); // 63.5 -> 64 (even)
        assert_eq!(&q[6..], [0, 0, 0]);
        // One scale for the tensor: channel 1 keeps only a few levels.
        let (q, s) = quantize_weights(&w, 3, true);
        assert_eq!(s, [2.0 / 127.0; 3]);
        assert_eq!(&q[3..6], [-32, 16, 0]); // -31.75, 15.875
        assert!(q.iter().all(|&v| v != -128));
    }

    #[test]
    fn biases_are_in_units_of_the_product_of_scales() {
        let b = quantize_bias(&[1.0, -0.375, 1e12], 0.25, &[0.5, 0.25, 1.0]);
        assert_eq!(b, [8, -6, BIAS_LIMIT]); // 1 / 0.125, -0.375 / 0.0625 = -6
        assert_eq!(quantize_bias(&[0.3125], 0.25, &[0.5]), [2]); // 2.5 -> 2
    }

    #[test]
    fn only_relu_networks_quantise() {
        let plan = |s: &str| Plan::new(&Arch::parse(s).unwrap(), MNIST_INPUT).unwrap();
        assert!(check_quantizable(&plan("seed")).is_ok());
        let err = check_quantizable(&plan("conv4k3-tanh-flatten-dense10")).unwrap_err();
        assert!(err.contains("layer 2 'tanh'"), "{err}");
        let err = check_quantizable(&plan("conv4k3-bn-relu-flatten-dense10")).unwrap_err();
        assert!(err.contains("folded first"), "{err}");
    }
}
