//! Int8 inference kernels (`shaders/int8.wgsl`), twin of `cpu/int8.rs`: conv and dense with
//! `dot4I8Packed` and one f32 multiply per output, pooling and ReLU on int8 values, activations
//! packed four to a u32. The sums are exact, so the GPU and the CPU agree bit for bit; the
//! checks compare bits.

use anyhow::Result;

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{grid_1d, run, Access, Dispatch, Kernel, WgslModule};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::cpu::int8::{accumulate, dequantize_channels, pool_int8, requantize_channels};
use crate::cpu::pool2d::pool2d_output;
use crate::model::quant::QuantizedLayer;
use crate::model::{Arch, Layer, Plan, Pool, Shape, Step, MNIST_INPUT};
use crate::rng::{random_u32, random_vec};
use crate::{shader_file, wgsl_struct};

wgsl_struct! {
    /// The uniform of every int8 kernel (`params` in `int8.wgsl`): one layer's shapes for `n`
    /// images, and its packed row lengths in words.
    pub struct Int8Params {
        n: u32,
        in_channels: u32,
        in_height: u32,
        in_width: u32,
        out_channels: u32,
        out_height: u32,
        out_width: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        in_words: u32,
        out_words: u32,
        w_words: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// The module: the uniform's declaration, then the kernels.
pub fn modules() -> Vec<WgslModule> {
    const FILES: &[crate::gpu::kernel::ShaderFile] = &[Int8Params::WGSL, shader_file!("int8.wgsl")];
    vec![WgslModule::new("int8.wgsl", FILES)]
}

/// Words of `len` int8 values packed four to a u32.
pub fn words(len: usize) -> usize {
    len.div_ceil(4)
}

/// Rows of `row` int8 values, each packed into `words(row)` words (low byte first, the last
/// word's unused lanes 0): the layout of the kernels' activations and weights.
pub fn pack_rows(values: &[i8], row: usize) -> Vec<u32> {
    let mut packed = Vec::with_capacity(values.len() / row.max(1) * words(row));
    for r in values.chunks_exact(row) {
        packed.extend(r.chunks(4).map(|lanes| {
            (lanes.iter().enumerate()).fold(0u32, |w, (l, &q)| w | u32::from(q as u8) << (8 * l))
        }));
    }
    packed
}

impl Int8Params {
    fn new(n: usize, input: Shape, output: Shape, (kernel, stride, pad): Window) -> Int8Params {
        Int8Params {
            n: n as u32,
            in_channels: input.channels as u32,
            in_height: input.height as u32,
            in_width: input.width as u32,
            out_channels: output.channels as u32,
            out_height: output.height as u32,
            out_width: output.width as u32,
            kernel: kernel as u32,
            stride: stride as u32,
            pad: pad as u32,
            in_words: words(input.len()) as u32,
            out_words: words(output.len()) as u32,
            w_words: words(input.channels * kernel * kernel) as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// A conv's kernel size, stride and padding (1, 1, 0 for a dense layer, whose inputs are
/// channels of a 1x1 image).
type Window = (usize, usize, usize);

/// A conv or dense layer's buffers: packed weights, i32 biases, f32 multipliers.
#[derive(Clone, Copy)]
pub struct LayerViews<'a> {
    pub weight: View<'a>,
    pub bias: View<'a>,
    pub multiplier: View<'a>,
}

pub struct Int8Kernels {
    conv: Kernel,
    conv_logits: Kernel,
    dense: Kernel,
    dense_logits: Kernel,
    maxpool: Kernel,
    avgpool: Kernel,
    relu: Kernel,
}

impl Int8Kernels {
    pub fn new(ctx: &GpuContext) -> Int8Kernels {
        let module = modules()[0].compile(ctx);
        use Access::*;
        let layer = |name| {
            Kernel::new(
                ctx,
                &module,
                name,
                &[Uniform, Read, ReadWrite, Read, Read, Read],
            )
        };
        let elementwise = |name| Kernel::new(ctx, &module, name, &[Uniform, Read, ReadWrite]);
        Int8Kernels {
            conv: layer("int8_conv"),
            conv_logits: layer("int8_conv_logits"),
            dense: layer("int8_dense"),
            dense_logits: layer("int8_dense_logits"),
            maxpool: elementwise("int8_maxpool"),
            avgpool: elementwise("int8_avgpool"),
            relu: elementwise("int8_relu"),
        }
    }

    /// A conv or dense step on `n` packed images `x`: `y` packed int8 (requantised), or for
    /// the `last` layer the f32 logits (n x outputs).
    pub fn layer(
        &self,
        ctx: &GpuContext,
        step: &Step,
        n: usize,
        last: bool,
        (x, layer): (View, LayerViews),
        y: View,
    ) -> Dispatch {
        let (kernel, params) = match step.layer {
            Layer::Conv2d { .. } => {
                let g = Conv2dGeometry::of(step);
                let window = (g.kernel, g.stride, g.pad);
                let kernel = if last { &self.conv_logits } else { &self.conv };
                (kernel, Int8Params::new(n, g.input, g.output(), window))
            }
            Layer::Dense { .. } => {
                let (input, output) = (step.input.len(), step.output.len());
                let flat = |len| Shape::new(len, 1, 1);
                let kernel = if last {
                    &self.dense_logits
                } else {
                    &self.dense
                };
                (
                    kernel,
                    Int8Params::new(n, flat(input), flat(output), (1, 1, 0)),
                )
            }
            _ => unreachable!("not a quantised layer"),
        };
        let outputs = match last {
            true => n * step.output.len(),
            false => n * params.out_words as usize,
        };
        let params = uniform(ctx, "int8 params", &params);
        let views = [
            View::whole(&params),
            x,
            y,
            layer.weight,
            layer.bias,
            layer.multiplier,
        ];
        kernel.dispatch(ctx, &views, grid_1d(outputs))
    }

    /// 2x2 pooling, stride 2, of `n` packed images of shape `input`.
    pub fn pool(
        &self,
        ctx: &GpuContext,
        pool: Pool,
        input: Shape,
        n: usize,
        x: View,
        y: View,
    ) -> Dispatch {
        let params = Int8Params::new(n, input, pool2d_output(input), (2, 2, 0));
        let words = n * params.out_words as usize;
        let params = uniform(ctx, "int8 params", &params);
        let kernel = match pool {
            Pool::Max => &self.maxpool,
            Pool::Avg => &self.avgpool,
        };
        kernel.dispatch(ctx, &[View::whole(&params), x, y], grid_1d(words))
    }

    /// ReLU of `n` packed images of `len` values each.
    pub fn relu(&self, ctx: &GpuContext, len: usize, n: usize, x: View, y: View) -> Dispatch {
        let flat = Shape::new(len, 1, 1);
        let params = Int8Params::new(n, flat, flat, (1, 1, 0));
        let params = uniform(ctx, "int8 params", &params);
        self.relu
            .dispatch(ctx, &[View::whole(&params), x, y], grid_1d(n * words(len)))
    }
}

/// `len` int8 values in [-127, 127], a stream of its own per seed.
pub fn random_int8s(len: usize, seed: u32) -> Vec<i8> {
    (0..len as u32)
        .map(|i| ((random_u32(seed, 0, i) % 255) as i32 - 127) as i8)
        .collect()
}

/// A random conv or dense layer for `step`: int8 weights, biases up to +-20,000, and
/// multipliers that spread the sums over the int8 range (some clamp).
fn random_layer(step: &Step, seed: u32) -> (QuantizedLayer, Vec<f32>) {
    let outputs = step.output.channels;
    let taps = match step.layer {
        Layer::Conv2d { kernel, .. } => step.input.channels * kernel * kernel,
        _ => step.input.len(),
    };
    let bias = (random_int8s(outputs, seed + 1).iter())
        .map(|&b| i32::from(b) * 157)
        .collect();
    let layer = QuantizedLayer {
        name: "l".into(),
        shape: vec![outputs, taps],
        weight: random_int8s(outputs * taps, seed),
        weight_scale: vec![1.0; outputs],
        input_scale: 1.0,
        bias,
    };
    let spread = 1.0 / (127.0 * (taps as f32).sqrt());
    let multipliers = random_vec(outputs, u64::from(seed) + 2, 0.3 * spread, 3.0 * spread);
    (layer, multipliers)
}

/// Every step of two small plans (stride 2 with `same` padding, odd sizes, both poolings,
/// ReLU, dense), each as a requantising and as a logits layer, at batch 1, 7 and 33.
pub fn checks() -> Vec<CrossCheck> {
    const SPECS: [&str; 2] = [
        "conv5k3s2same-relu-conv6k4-avgpool2-flatten-dense7",
        "conv3k5-maxpool2-relu-conv9k3same-flatten-dense10",
    ];
    let mut checks = Vec::new();
    for (s, spec) in SPECS.into_iter().enumerate() {
        let plan =
            Plan::new(&Arch::parse(spec).expect("a valid spec"), MNIST_INPUT).expect("a plan");
        for (i, step) in plan.steps.iter().enumerate() {
            let kind = match step.layer {
                Layer::Conv2d { .. } => "int8_conv",
                Layer::Dense { .. } => "int8_dense",
                Layer::Pool2d(Pool::Max) => "int8_maxpool",
                Layer::Pool2d(Pool::Avg) => "int8_avgpool",
                Layer::Activation(_) => "int8_relu",
                _ => continue,
            };
            let quantised = matches!(step.layer, Layer::Conv2d { .. } | Layer::Dense { .. });
            for n in [1, 7, 33] {
                for last in [false, true].into_iter().take(1 + usize::from(quantised)) {
                    let name = if last {
                        format!("{kind}_logits")
                    } else {
                        kind.to_string()
                    };
                    let shape = format!("{spec} step {i} '{}', n {n}", step.layer);
                    let step = step.clone();
                    let seed = (100 * s + 10 * i + n) as u32;
                    checks.push(CrossCheck::new(name, shape, move |ctx| {
                        check_step(ctx, &step, n, last, seed)
                    }));
                }
            }
        }
    }
    checks
}

/// One step on random int8 inputs, GPU against `cpu/int8.rs`, compared as bits: the packed
/// words (padding lanes included) or the logits' f32 bits.
fn check_step(
    ctx: &GpuContext,
    step: &Step,
    n: usize,
    last: bool,
    seed: u32,
) -> Result<Comparison> {
    let (in_len, out_len) = (step.input.len(), step.output.len());
    let x = random_int8s(n * in_len, seed);
    let x_buf = storage_init(ctx, "x", &pack_rows(&x, in_len))?;
    let kernels = Int8Kernels::new(ctx);
    let out_words = if last {
        n * out_len
    } else {
        n * words(out_len)
    };
    let y_buf = storage(ctx, "y", 4 * out_words as u64)?;
    let (x_view, y_view) = ((&x_buf).into(), (&y_buf).into());
    let mut cpu = Vec::with_capacity(out_words);
    match step.layer {
        Layer::Conv2d { .. } | Layer::Dense { .. } => {
            let (layer, m) = random_layer(step, seed + 1000);
            let row = layer.weight.len() / layer.bias.len();
            let w_buf = storage_init(ctx, "w", &pack_rows(&layer.weight, row))?;
            let b_buf = storage_init(ctx, "bias", &layer.bias)?;
            let m_buf = storage_init(ctx, "multiplier", &m)?;
            let views = LayerViews {
                weight: (&w_buf).into(),
                bias: (&b_buf).into(),
                multiplier: (&m_buf).into(),
            };
            let dispatch = kernels.layer(ctx, step, n, last, (x_view, views), y_view);
            run(ctx, &[&dispatch]);
            for image in x.chunks_exact(in_len) {
                let acc = accumulate(step, &layer, image);
                match last {
                    true => cpu.extend(dequantize_channels(&acc, &m).iter().map(|f| f.to_bits())),
                    false => cpu.extend(pack_rows(&requantize_channels(&acc, &m), out_len)),
                }
            }
        }
        Layer::Pool2d(pool) => {
            run(
                ctx,
                &[&kernels.pool(ctx, pool, step.input, n, x_view, y_view)],
            );
            for image in x.chunks_exact(in_len) {
                cpu.extend(pack_rows(&pool_int8(pool, step.input, image), out_len));
            }
        }
        _ => {
            run(ctx, &[&kernels.relu(ctx, in_len, n, x_view, y_view)]);
            let relu: Vec<i8> = x.iter().map(|&q| q.max(0)).collect();
            cpu = pack_rows(&relu, in_len);
        }
    }
    let gpu = read_buffer::<u32>(ctx, &y_buf, 0, out_words)?;
    Ok(compare_exact(&gpu, &cpu))
}
