//! Int8 inference on the CPU, the reference a GPU kernel (`dot4I8Packed`) must match bit for
//! bit, and the float forward pass that calibrates the activation ranges.
//!
//! Every conv and dense layer sums int8 x int8 products into an i32, which is exact whatever
//! the order, so the result does not depend on how a kernel tiles or splits the sum. The only
//! float arithmetic is one f32 multiply per output (requantisation, or dequantisation of the
//! logits) and the input table; each is written down in docs/int8.md.

use rayon::prelude::*;

use super::activation::activation_forward;
use super::conv2d::{conv2d_forward, Conv2dGeometry};
use super::dense::{dense_forward, DenseGeometry};
use super::pool2d::{avgpool2d_forward, maxpool2d_forward, pool2d_output};
use crate::data::{pixel_value, IMAGE_PIXELS};
use crate::model::quant::{
    requant_multiplier, requantize, round_clamp, QuantizedLayer, QuantizedModel, QMAX,
};
use crate::model::{Activation, Layer, Params, Plan, Pool, Shape, Step};

/// Images per parallel task; any value gives the same bits (each image is independent).
const CHUNK: usize = 16;

/// A quantised model ready to run: the model and the multipliers derived from its scales.
pub struct Int8Net {
    pub model: QuantizedModel,
    /// Pixel byte to int8 input: `round_clamp((p / 255) / input_scale)`, for every byte.
    input_table: [i8; 256],
    /// Per quantised layer, per output channel: the requantisation multiplier to the next
    /// layer's input scale, or for the last layer the dequantisation factor of its logits.
    multipliers: Vec<Vec<f32>>,
}

/// Where a quantised layer's output goes.
fn is_last(model: &QuantizedModel, layer: usize) -> bool {
    layer + 1 == model.layers.len()
}

impl Int8Net {
    pub fn new(model: QuantizedModel) -> Int8Net {
        let s0 = model.layers[0].input_scale;
        let mut input_table = [0i8; 256];
        for (p, q) in input_table.iter_mut().enumerate() {
            *q = round_clamp(pixel_value(p as u8) / s0, -QMAX, QMAX) as i8;
        }
        let multipliers = (0..model.layers.len())
            .map(|i| {
                let l = &model.layers[i];
                (l.weight_scale.iter())
                    .map(|&ws| match is_last(&model, i) {
                        true => l.input_scale * ws,
                        false => {
                            let next = model.layers[i + 1].input_scale;
                            requant_multiplier(l.input_scale, ws, next)
                        }
                    })
                    .collect()
            })
            .collect();
        Int8Net {
            model,
            input_table,
            multipliers,
        }
    }

    /// The int8 value of each pixel byte (the GPU path uploads images through it).
    pub fn input_table(&self) -> &[i8; 256] {
        &self.input_table
    }

    /// Per quantised layer, per output channel: the requantisation multiplier, or for the last
    /// layer the dequantisation factor (the GPU path uses the same values).
    pub fn multipliers(&self) -> &[Vec<f32>] {
        &self.multipliers
    }

    pub fn classes(&self) -> usize {
        self.model.plan.classes()
    }

    /// Logits (`n x classes`) of `n` raw images (`n x 784` bytes).
    pub fn logits(&self, images: &[u8]) -> Vec<f32> {
        let classes = self.classes();
        let mut logits = vec![0f32; images.len() / IMAGE_PIXELS * classes];
        (images.par_chunks(CHUNK * IMAGE_PIXELS))
            .zip(logits.par_chunks_mut(CHUNK * classes))
            .for_each(|(images, logits)| {
                for (image, out) in
                    (images.chunks_exact(IMAGE_PIXELS)).zip(logits.chunks_exact_mut(classes))
                {
                    self.image_logits(image, out);
                }
            });
        logits
    }

    /// One image through the integer network.
    fn image_logits(&self, image: &[u8], out: &mut [f32]) {
        let mut x: Vec<i8> = image
            .iter()
            .map(|&p| self.input_table[p as usize])
            .collect();
        let mut layer = 0;
        let mut logits: Option<Vec<f32>> = None;
        for step in &self.model.plan.steps {
            if let Some(f) = logits.as_mut() {
                // After the last quantised layer only these remain (check_quantizable).
                if step.layer == Layer::Activation(Activation::Relu) {
                    f.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                continue;
            }
            match step.layer {
                Layer::Conv2d { .. } | Layer::Dense { .. } => {
                    let acc = accumulate(step, &self.model.layers[layer], &x);
                    let m = &self.multipliers[layer];
                    if is_last(&self.model, layer) {
                        logits = Some(dequantize_channels(&acc, m));
                    } else {
                        x = requantize_channels(&acc, m);
                    }
                    layer += 1;
                }
                Layer::Activation(_) => x.iter_mut().for_each(|q| *q = (*q).max(0)),
                Layer::Pool2d(pool) => x = pool_int8(pool, step.input, &x),
                Layer::Flatten | Layer::Dropout { .. } | Layer::BatchNorm => {}
            }
        }
        out.copy_from_slice(&logits.expect("the plan ends with a quantised layer"));
    }
}

/// A layer's int8 output: each channel's accumulators (channel-major) requantised with its
/// multiplier.
pub fn requantize_channels(acc: &[i32], multipliers: &[f32]) -> Vec<i8> {
    (acc.chunks_exact(acc.len() / multipliers.len())
        .zip(multipliers))
    .flat_map(|(a, &m)| a.iter().map(move |&a| requantize(a, m)))
    .collect()
}

/// The last layer's float logits: each channel's accumulators times its factor.
pub fn dequantize_channels(acc: &[i32], factors: &[f32]) -> Vec<f32> {
    (acc.chunks_exact(acc.len() / factors.len()).zip(factors))
        .flat_map(|(a, &m)| a.iter().map(move |&a| a as f32 * m))
        .collect()
}

/// The i32 accumulators of a conv or dense step (channel-major, like the float layout):
/// `bias[o] + sum of weight x input` over the taps inside the image (zero padding adds 0,
/// since the zero point is 0). Additions wrap like WGSL's i32; see docs/int8.md for why they
/// cannot overflow in practice.
pub fn accumulate(step: &Step, layer: &QuantizedLayer, x: &[i8]) -> Vec<i32> {
    let dot = |w: &[i8], x: &[i8]| -> i32 {
        (w.iter().zip(x)).fold(0i32, |s, (&w, &x)| {
            s.wrapping_add(i32::from(w) * i32::from(x))
        })
    };
    match step.layer {
        Layer::Dense { .. } => (layer.weight.chunks_exact(x.len()).zip(&layer.bias))
            .map(|(w, &b)| b.wrapping_add(dot(w, x)))
            .collect(),
        Layer::Conv2d { .. } => {
            let g = Conv2dGeometry::of(step);
            let out = g.output();
            let (k, positions) = (
                g.input.channels * g.kernel * g.kernel,
                out.height * out.width,
            );
            // Columns, one contiguous row of `k` taps per output position.
            let mut cols = vec![0i8; positions * k];
            for (p, col) in cols.chunks_exact_mut(k).enumerate() {
                let (oy, ox) = (p / out.width, p % out.width);
                let mut t = 0;
                for c in 0..g.input.channels {
                    for ky in 0..g.kernel {
                        for kx in 0..g.kernel {
                            let iy = (oy * g.stride + ky).checked_sub(g.pad);
                            let ix = (ox * g.stride + kx).checked_sub(g.pad);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                if iy < g.input.height && ix < g.input.width {
                                    let plane = c * g.input.height * g.input.width;
                                    col[t] = x[plane + iy * g.input.width + ix];
                                }
                            }
                            t += 1;
                        }
                    }
                }
            }
            let mut acc = Vec::with_capacity(out.len());
            for (w, &b) in layer.weight.chunks_exact(k).zip(&layer.bias) {
                acc.extend(cols.chunks_exact(k).map(|col| b.wrapping_add(dot(w, col))));
            }
            acc
        }
        _ => unreachable!("not a quantised layer"),
    }
}

/// 2x2 pooling of int8 values: the max is exact; the average is the window's sum / 4,
/// rounded half to even (exact in f32: |sum| <= 508).
pub fn pool_int8(pool: Pool, input: Shape, x: &[i8]) -> Vec<i8> {
    let out = pool2d_output(input);
    let mut y = Vec::with_capacity(out.len());
    for plane in x.chunks_exact(input.height * input.width) {
        for oy in 0..out.height {
            for ox in 0..out.width {
                let at = |dy: usize, dx: usize| plane[(2 * oy + dy) * input.width + 2 * ox + dx];
                let window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                y.push(match pool {
                    Pool::Max => window.into_iter().max().expect("four values"),
                    Pool::Avg => {
                        let sum: i32 = window.iter().map(|&q| i32::from(q)).sum();
                        round_clamp(sum as f32 * 0.25, -QMAX, QMAX) as i8
                    }
                });
            }
        }
    }
    y
}

/// The float input of every conv and dense step of `plan` (inference mode: dropout keeps
/// everything; batch norm must be folded already), for `images` raw images: one vector per
/// such step, `n x its input length`. Calibration reads the ranges from them.
pub fn layer_inputs(plan: &Plan, params: &Params<f32>, images: &[u8]) -> Vec<Vec<f32>> {
    let chunks: Vec<Vec<Vec<f32>>> = images
        .par_chunks(CHUNK * IMAGE_PIXELS)
        .map(|images| {
            let n = images.len() / IMAGE_PIXELS;
            let mut x: Vec<f32> = images.iter().map(|&p| pixel_value(p)).collect();
            let mut inputs = Vec::new();
            for step in &plan.steps {
                let mut y = vec![0f32; n * step.output.len()];
                let wb = step
                    .weight_index
                    .map(|i| (&params.tensors[i].data, &params.tensors[i + 1].data));
                match (step.layer, wb) {
                    (Layer::Conv2d { .. }, Some((w, b))) => {
                        inputs.push(x.clone());
                        conv2d_forward(Conv2dGeometry::of(step), &x, w, b, &mut y);
                    }
                    (Layer::Dense { .. }, Some((w, b))) => {
                        inputs.push(x.clone());
                        dense_forward(DenseGeometry::of(step), &x, w, b, &mut y);
                    }
                    (Layer::Activation(a), _) => activation_forward(a, &x, &mut y),
                    (Layer::Pool2d(Pool::Max), _) => {
                        let mut argmax = vec![0u32; y.len()];
                        maxpool2d_forward(step.input, &x, &mut y, &mut argmax);
                    }
                    (Layer::Pool2d(Pool::Avg), _) => avgpool2d_forward(step.input, &x, &mut y),
                    (Layer::Flatten | Layer::Dropout { .. }, _) => y.copy_from_slice(&x),
                    _ => unreachable!("batch norm is folded before calibration"),
                }
                x = y;
            }
            inputs
        })
        .collect();
    let layers = chunks.first().map_or(0, Vec::len);
    (0..layers)
        .map(|l| chunks.iter().flat_map(|c| c[l].iter().copied()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, MNIST_INPUT};
    use crate::rng::random_u32;

    /// `len` int8 values in [-127, 127] from a counter-based generator.
    fn int8s(len: usize, seed: u32) -> Vec<i8> {
        (0..len as u32)
            .map(|i| (random_u32(seed, 0, i) % 255) as i32 - 127)
            .map(|q| q as i8)
            .collect()
    }

    fn layer(weight: Vec<i8>, shape: Vec<usize>, bias: Vec<i32>) -> QuantizedLayer {
        QuantizedLayer {
            name: "l".into(),
            weight_scale: vec![1.0; shape[0]],
            shape,
            weight,
            input_scale: 1.0,
            bias,
        }
    }

    /// The integer sums equal the float reference's conv and dense on the same integers in
    /// f64 (exact there too), with stride, `same` padding and odd sizes.
    #[test]
    fn integer_layers_match_the_float_reference_on_integers() {
        let spec = "conv5k3s2same-relu-conv4k4-avgpool2-flatten-dense7";
        let plan = Plan::new(&Arch::parse(spec).unwrap(), MNIST_INPUT).unwrap();
        let as_f64 = |q: &[i8]| q.iter().map(|&q| f64::from(q)).collect::<Vec<f64>>();
        for (i, step) in plan.steps.iter().enumerate() {
            let Some(at) = step.weight_index else {
                continue;
            };
            let shape = plan.params[at].shape.clone();
            let x = int8s(step.input.len(), 3 + i as u32);
            let w = int8s(shape.iter().product(), 50 + i as u32);
            let bias: Vec<i32> = (0..shape[0] as i32).map(|o| 1000 * o - 2500).collect();
            let acc = accumulate(step, &layer(w.clone(), shape, bias.clone()), &x);
            let b: Vec<f64> = bias.iter().map(|&b| f64::from(b)).collect();
            let mut y = vec![0f64; step.output.len()];
            match step.layer {
                Layer::Conv2d { .. } => conv2d_forward(
                    Conv2dGeometry::of(step),
                    &as_f64(&x),
                    &as_f64(&w),
                    &b,
                    &mut y,
                ),
                _ => dense_forward(
                    DenseGeometry::of(step),
                    &as_f64(&x),
                    &as_f64(&w),
                    &b,
                    &mut y,
                ),
            }
            let acc: Vec<f64> = acc.iter().map(|&a| f64::from(a)).collect();
            assert_eq!(acc, y, "step {i} '{}'", step.layer);
        }
    }

    #[test]
    fn int8_pooling_is_the_float_pooling_rounded() {
        let input = Shape::new(3, 7, 5);
        let x = int8s(input.len(), 9);
        let xf: Vec<f32> = x.iter().map(|&q| f32::from(q)).collect();
        let mut max = vec![0f32; pool2d_output(input).len()];
        let mut argmax = vec![0u32; max.len()];
        maxpool2d_forward(input, &xf, &mut max, &mut argmax);
        let got: Vec<f32> = (pool_int8(Pool::Max, input, &x).iter())
            .map(|&q| f32::from(q))
            .collect();
        assert_eq!(got, max);
        let mut avg = vec![0f32; max.len()];
        avgpool2d_forward(input, &xf, &mut avg);
        let rounded: Vec<i8> = avg.iter().map(|a| a.round_ties_even() as i8).collect();
        assert_eq!(pool_int8(Pool::Avg, input, &x), rounded);
        // A tie: (1 + 2 + 2 + 0) / 4 = 1.25 -> 1; (1 + 1 + 0 + 0) / 4 = 0.5 -> 0 (even).
        let tie = pool_int8(Pool::Avg, Shape::new(2, 2, 2), &[1, 2, 2, 0, 1, 1, 0, 0]);
        assert_eq!(tie, [1, 0]);
    }
}
