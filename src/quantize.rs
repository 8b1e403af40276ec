//! Post-training static quantisation: a float model and some training images in, an int8
//! model out (the arithmetic is in [`crate::model::quant`], the steps in docs/int8.md).

use std::fmt;

use crate::cpu::batchnorm::EPSILON;
use crate::cpu::int8::layer_inputs;
use crate::cpu::softmax_xent::argmax;
use crate::model::quant::{
    check_quantizable, fold_batch_norm, quantize_bias, quantize_weights, scale_for, QuantizedLayer,
    QuantizedModel, Scheme, SCHEME_NAME, SCHEME_VERSION,
};
use crate::model::{Params, Plan};

/// How an activation range is measured on the calibration images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The largest |x| seen.
    MinMax,
    /// The P-th percentile of |x| (nearest rank), P in (0, 100]: clips rare outliers.
    Percentile(f64),
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calibration::MinMax => f.write_str("minmax"),
            Calibration::Percentile(p) => write!(f, "percentile:{p}"),
        }
    }
}

impl Calibration {
    /// `minmax` or `percentile:P`, or why not.
    pub fn parse(text: &str) -> Result<Calibration, String> {
        if text == "minmax" {
            return Ok(Calibration::MinMax);
        }
        let bad = || format!("'{text}' is not minmax or percentile:P with P in (0, 100]");
        let p: f64 = (text.strip_prefix("percentile:"))
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        match p > 0.0 && p <= 100.0 {
            true => Ok(Calibration::Percentile(p)),
            false => Err(bad()),
        }
    }

    /// The range of `values` by this rule.
    pub fn range(&self, values: &[f32]) -> f32 {
        let mut abs: Vec<f32> = values.iter().map(|x| x.abs()).collect();
        match *self {
            Calibration::MinMax => abs.iter().fold(0f32, |m, &x| m.max(x)),
            Calibration::Percentile(p) => {
                if abs.is_empty() {
                    return 0.0;
                }
                // Nearest rank: the smallest value with at least p% of the values <= it.
                let rank = ((p / 100.0) * abs.len() as f64).ceil() as usize;
                let at = rank.clamp(1, abs.len()) - 1;
                *abs.select_nth_unstable_by(at, f32::total_cmp).1
            }
        }
    }
}

/// What `quantize` is asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantizeOptions {
    pub calibration: Calibration,
    /// One weight scale per tensor instead of per output channel (for comparison).
    pub per_tensor: bool,
}

/// The float model with every batch norm folded into the layer before it (in f64, then
/// rounded once to f32), or why it cannot be.
pub fn fold(plan: &Plan, params: &Params<f32>) -> Result<(Plan, Params<f32>), String> {
    let (plan, params) = fold_batch_norm(plan, &params.map(f64::from), EPSILON)?;
    Ok((plan, params.map(|x| x as f32)))
}

/// Quantises `plan` with `params`, calibrating the activations on `images` (raw, `n x 784`
/// bytes, at least one). Errors say why the model cannot be quantised.
pub fn quantize(
    plan: &Plan,
    params: &Params<f32>,
    images: &[u8],
    options: QuantizeOptions,
) -> Result<QuantizedModel, String> {
    let (plan, params) = fold(plan, params)?;
    check_quantizable(&plan)?;
    let inputs = layer_inputs(&plan, &params, images);
    let owners = plan.steps.iter().filter_map(|s| s.weight_index);
    let layers = (owners.zip(&inputs))
        .map(|(at, input)| {
            let (w, b) = (&params.tensors[at], &params.tensors[at + 1]);
            let input_scale = scale_for(options.calibration.range(input));
            let outputs = w.shape[0];
            let (weight, weight_scale) = quantize_weights(&w.data, outputs, options.per_tensor);
            let bias = quantize_bias(&b.data, input_scale, &weight_scale);
            QuantizedLayer {
                name: w
                    .name
                    .strip_suffix(".weight")
                    .unwrap_or(&w.name)
                    .to_string(),
                shape: w.shape.clone(),
                weight,
                weight_scale,
                input_scale,
                bias,
            }
        })
        .collect();
    let scheme = Scheme {
        scheme: SCHEME_NAME.into(),
        version: SCHEME_VERSION,
        weights: if options.per_tensor {
            "per-tensor"
        } else {
            "per-channel"
        }
        .into(),
        calibration: options.calibration.to_string(),
        calibration_images: images.len() / crate::data::IMAGE_PIXELS,
    };
    Ok(QuantizedModel {
        plan,
        layers,
        scheme,
    })
}

/// Float against int8 on the same images: how many each gets right and on how many their
/// top-1 predictions agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub images: usize,
    pub float_correct: usize,
    pub int8_correct: usize,
    pub agree: usize,
}

impl Comparison {
    /// From both models' logits (`n x classes`) and the `n` labels.
    pub fn of(float: &[f32], int8: &[f32], labels: &[u8], classes: usize) -> Comparison {
        let mut c = Comparison {
            images: labels.len(),
            float_correct: 0,
            int8_correct: 0,
            agree: 0,
        };
        let rows = float.chunks_exact(classes).zip(int8.chunks_exact(classes));
        for ((f, q), &label) in rows.zip(labels) {
            let (f, q) = (argmax(f), argmax(q));
            c.float_correct += usize::from(f == usize::from(label));
            c.int8_correct += usize::from(q == usize::from(label));
            c.agree += usize::from(f == q);
        }
        c
    }

    /// A count as a percentage of the images.
    pub fn percent(&self, n: usize) -> f64 {
        100.0 * n as f64 / self.images.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_rules_parse_and_measure() {
        assert_eq!(Calibration::parse("minmax"), Ok(Calibration::MinMax));
        assert_eq!(
            Calibration::parse("percentile:99.9"),
            Ok(Calibration::Percentile(99.9))
        );
        for bad in [
            "percentile:0",
            "percentile:101",
            "percentile:",
            "max",
            "percentile:x",
        ] {
            assert!(Calibration::parse(bad).is_err(), "{bad}");
        }
        let values: Vec<f32> = (1..=100).map(|i| -(i as f32)).collect();
        assert_eq!(Calibration::MinMax.range(&values), 100.0);
        assert_eq!(Calibration::Percentile(99.0).range(&values), 99.0);
        assert_eq!(Calibration::Percentile(50.5).range(&values), 51.0);
        assert_eq!(Calibration::Percentile(100.0).range(&values), 100.0);
    }
}
