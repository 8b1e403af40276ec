//! An int8 model on the GPU behind the [`Backend`] interface (twin of `cpu/int8_backend.rs`):
//! the plan's steps as `int8.wgsl` dispatches, activations packed int8 from the input to the
//! last layer's f32 logits. Inference only. Its cross-check runs whole random models against
//! the CPU's `Int8Net` and compares the logits' bits.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::buffer::{read_buffer, storage, storage_init, View};
use super::check::{compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::int8::{
    image_words, pack_images, pack_layer_weights, pad_channels, random_int8s, stored_inputs,
    Int8Kernels, LayerViews,
};
use super::kernel::{run, Dispatch};
use crate::backend::{Backend, BackendInfo};
use crate::cpu::int8::Int8Net;
use crate::data::IMAGE_PIXELS;
use crate::inference_only_training;
use crate::model::quant::{QuantizedLayer, QuantizedModel, Scheme, SCHEME_NAME, SCHEME_VERSION};
use crate::model::{Activation, Arch, Layer, Params, Plan, MNIST_INPUT};
use crate::rng::{random_u32, random_vec};

/// Images per batch of dispatches (bounds the activation buffers).
const BATCH: usize = 1024;

/// One quantised layer's buffers: packed weights, biases, multipliers.
struct LayerBuffers {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    multiplier: wgpu::Buffer,
}

pub struct GpuInt8Backend {
    ctx: GpuContext,
    /// The CPU twin: the model, its input table and its multipliers, which the GPU uses as is.
    net: Int8Net,
    kernels: Arc<Int8Kernels>,
    layers: Vec<LayerBuffers>,
}

impl GpuInt8Backend {
    pub fn new(ctx: &GpuContext, model: QuantizedModel) -> Result<GpuInt8Backend> {
        let net = Int8Net::new(model);
        let plan = &net.model.plan;
        let stored = stored_inputs(plan);
        let steps = (plan.steps.iter().zip(stored)).filter(|(s, _)| s.weight_index.is_some());
        let layers = (steps.zip(&net.model.layers).zip(net.multipliers()))
            .map(|(((step, stored), l), m)| {
                let weight = pack_layer_weights(step, stored, &l.weight);
                Ok(LayerBuffers {
                    weight: storage_init(ctx, &format!("{} weight", l.name), &weight)?,
                    bias: storage_init(ctx, &format!("{} bias", l.name), &pad_channels(&l.bias))?,
                    multiplier: storage_init(
                        ctx,
                        &format!("{} multiplier", l.name),
                        &pad_channels(m),
                    )?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(GpuInt8Backend {
            ctx: ctx.clone(),
            kernels: ctx.built_once(|| Int8Kernels::new(ctx)),
            net,
            layers,
        })
    }

    /// Logits (`n x classes`) of `n` raw images (`n x 784` bytes), `BATCH` at a time.
    pub fn logits(&self, images: &[u8]) -> Result<Vec<f32>> {
        let mut logits = Vec::with_capacity(images.len() / IMAGE_PIXELS * self.net.classes());
        for batch in images.chunks(BATCH * IMAGE_PIXELS) {
            logits.extend(self.batch_logits(batch)?);
        }
        Ok(logits)
    }

    fn batch_logits(&self, images: &[u8]) -> Result<Vec<f32>> {
        let (ctx, plan) = (&self.ctx, &self.net.model.plan);
        let n = images.len() / IMAGE_PIXELS;
        let table = self.net.input_table();
        let x: Vec<i8> = images.iter().map(|&p| table[p as usize]).collect();
        let input = storage_init(ctx, "int8 images", &pack_images(&x, plan.input))?;
        // Two buffers in turn, each large enough for any step's packed output or the logits.
        let largest = (plan.steps.iter())
            .map(|s| image_words(s.output).max(s.output.len()))
            .max()
            .unwrap_or(1);
        let ping = [
            storage(ctx, "int8 activations a", 4 * (n * largest) as u64)?,
            storage(ctx, "int8 activations b", 4 * (n * largest) as u64)?,
        ];
        let mut dispatches: Vec<Dispatch> = Vec::new();
        let (mut x, mut next, mut layer) = (View::whole(&input), 0, 0);
        let mut relu_logits = false;
        for (step, stored) in plan.steps.iter().zip(stored_inputs(plan)) {
            if layer == self.layers.len() {
                // After the last quantised layer only ReLU, flatten and dropout remain.
                relu_logits |= step.layer == Layer::Activation(Activation::Relu);
                continue;
            }
            let y = View::whole(&ping[next]);
            let dispatch = match step.layer {
                Layer::Conv2d { .. } | Layer::Dense { .. } => {
                    let b = &self.layers[layer];
                    let views = LayerViews {
                        weight: View::whole(&b.weight),
                        bias: View::whole(&b.bias),
                        multiplier: View::whole(&b.multiplier),
                    };
                    layer += 1;
                    let last = layer == self.layers.len();
                    (self.kernels).layer(ctx, (step, stored), n, last, (x, views), y)
                }
                Layer::Activation(_) => self.kernels.relu(ctx, stored, n, x, y),
                Layer::Pool2d(pool) => self.kernels.pool(ctx, pool, step.input, n, x, y),
                Layer::Flatten | Layer::Dropout { .. } | Layer::BatchNorm => continue,
            };
            dispatches.push(dispatch);
            (x, next) = (y, 1 - next);
        }
        run(ctx, &dispatches.iter().collect::<Vec<_>>());
        ctx.check_errors()?;
        let mut logits = read_buffer::<f32>(ctx, x.buffer, 0, n * self.net.classes())?;
        if relu_logits {
            logits.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok(logits)
    }
}

const INFERENCE_ONLY: &str = "an int8 model only infers; train the float model";

impl Backend for GpuInt8Backend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: self.ctx.backend_name(),
            adapter: format!("{} (int8)", self.ctx.info.name),
        }
    }

    inference_only_training!(INFERENCE_ONLY);

    fn classes(&self) -> usize {
        self.net.classes()
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        self.logits(images)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        bail!("an int8 model has no float parameters")
    }
}

/// A random int8 model of `spec`: random int8 weights, biases and positive scales that keep
/// the activations spread over the int8 range.
pub fn random_model(spec: &str, seed: u32) -> QuantizedModel {
    let plan = Plan::new(&Arch::parse(spec).expect("a valid spec"), MNIST_INPUT).expect("a plan");
    let steps = plan.steps.iter().filter(|s| s.weight_index.is_some());
    let layers = (steps.enumerate())
        .map(|(i, step)| {
            let shape = plan.params[step.weight_index.expect("a weight")]
                .shape
                .clone();
            let (outputs, seed) = (shape[0], seed + 10 * i as u32);
            let taps: usize = shape[1..].iter().product();
            let spread = 1.0 / (taps as f32).sqrt();
            QuantizedLayer {
                name: format!("l{i}"),
                weight: random_int8s(outputs * taps, seed),
                weight_scale: random_vec(
                    outputs,
                    u64::from(seed) + 1,
                    5e-4 * spread,
                    1e-2 * spread,
                ),
                input_scale: 0.01 + (random_u32(seed, 1, 0) % 100) as f32 * 1e-4,
                bias: (0..outputs as u32)
                    .map(|o| (random_u32(seed, 2, o) % 2001) as i32 - 1000)
                    .collect(),
                shape,
            }
        })
        .collect();
    QuantizedModel {
        plan,
        layers,
        scheme: Scheme {
            scheme: SCHEME_NAME.into(),
            version: SCHEME_VERSION,
            weights: "per-channel".into(),
            calibration: "minmax".into(),
            calibration_images: 0,
        },
    }
}

/// Whole random models on random images, batches 1, 7 and 33: the logits' bits against
/// `Int8Net`'s.
pub fn checks() -> Vec<CrossCheck> {
    const SPECS: [&str; 2] = [
        "conv5k3s2same-relu-conv6k4-avgpool2-flatten-dense10",
        "conv8k5-relu-maxpool2-conv13k3same-maxpool2-flatten-relu-dense33-relu-dropout0.5-dense10-relu",
    ];
    let mut checks = Vec::new();
    for (s, spec) in SPECS.into_iter().enumerate() {
        for n in [1, 7, 33] {
            let shape = format!("{spec}, n {n}");
            checks.push(CrossCheck::new("int8_net", shape, move |ctx| {
                check_net(ctx, spec, n, 7 + s as u32)
            }));
        }
    }
    checks
}

fn check_net(ctx: &GpuContext, spec: &str, n: usize, seed: u32) -> Result<Comparison> {
    let model = random_model(spec, seed);
    let images: Vec<u8> = (0..(n * IMAGE_PIXELS) as u32)
        .map(|i| random_u32(seed + 99, 0, i) as u8)
        .collect();
    let cpu = Int8Net::new(model.clone()).logits(&images);
    let gpu = GpuInt8Backend::new(ctx, model)?.logits(&images)?;
    // A model whose logits are all alike would pass while checking little.
    if gpu.iter().all(|&v| v == gpu[0]) || cpu.iter().all(|&v| v == cpu[0]) {
        bail!("degenerate random model: every logit is {}", cpu[0]);
    }
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
    Ok(compare_exact(&bits(&gpu), &bits(&cpu)))
}
