//! Int8 inference kernels (`shaders/int8.wgsl`), twin of `cpu/int8.rs`: conv and dense with
//! `dot4I8Packed` and one f32 multiply per output, pooling and ReLU on int8 values, activations
//! packed pixel by pixel, four channels to a u32. The sums are exact, so the GPU and the CPU
//! agree bit for bit; the checks compare bits. Here too the host side of the layout: packing
//! images and weights the way the kernels read them.

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
    /// images, and its packed sizes in words.
    pub struct Int8Params {
        n: u32,
        in_height: u32,
        in_width: u32,
        out_channels: u32,
        out_height: u32,
        out_width: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        /// Words of one image, in and out.
        in_words: u32,
        out_words: u32,
        /// Words of one pixel, in and out.
        in_channel_words: u32,
        out_channel_words: u32,
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

/// Words of one pixel of `channels` int8 channels, four to a word.
pub fn channel_words(channels: usize) -> usize {
    channels.div_ceil(4)
}

/// Words of one packed image of `shape`.
pub fn image_words(shape: Shape) -> usize {
    shape.height * shape.width * channel_words(shape.channels)
}

/// Four int8 values as a word, the first in the low byte.
fn word(lanes: [i8; 4]) -> u32 {
    u32::from_le_bytes(lanes.map(|q| q as u8))
}

/// Images of `shape` in the float layout (channel, row, column) packed as the kernels keep
/// them: pixel by pixel, four channels to a word (missing channels 0).
pub fn pack_images(values: &[i8], shape: Shape) -> Vec<u32> {
    let (plane, cw) = (shape.height * shape.width, channel_words(shape.channels));
    let mut packed = Vec::with_capacity(values.len() / shape.len() * image_words(shape));
    for image in values.chunks_exact(shape.len()) {
        for p in 0..plane {
            packed.extend((0..cw).map(|g| {
                word(std::array::from_fn(|l| {
                    let c = 4 * g + l;
                    if c < shape.channels {
                        image[c * plane + p]
                    } else {
                        0
                    }
                }))
            }));
        }
    }
    packed
}

/// Per channel values (biases, multipliers) padded with zeros to whole groups of four.
pub fn pad_channels<T: Copy + Default>(values: &[T]) -> Vec<T> {
    let mut padded = values.to_vec();
    padded.resize(4 * channel_words(values.len()), T::default());
    padded
}

/// Weights `w` of `outputs` rows as the kernels read them: for each group of four outputs, each
/// of `taps` positions and each of `words` input words, the four outputs' words side by side.
/// `at(o, tap, word, lane)` is the weight's index in `w`, or `None` for a padding lane.
fn pack_weights(
    w: &[i8],
    outputs: usize,
    (taps, words): (usize, usize),
    at: impl Fn(usize, usize, usize, usize) -> Option<usize>,
) -> Vec<u32> {
    let mut packed = Vec::with_capacity(4 * channel_words(outputs) * taps * words);
    for g in 0..channel_words(outputs) {
        for tap in 0..taps {
            for c in 0..words {
                packed.extend((0..4).map(|j| {
                    let o = 4 * g + j;
                    word(std::array::from_fn(|l| {
                        match (o < outputs, at(o, tap, c, l)) {
                            (true, Some(i)) => w[i],
                            _ => 0,
                        }
                    }))
                }));
            }
        }
    }
    packed
}

/// A conv's OIHW weights (`outputs x in_channels x kernel x kernel`) for `int8_conv`.
pub fn pack_conv_weights(w: &[i8], outputs: usize, in_channels: usize, kernel: usize) -> Vec<u32> {
    let taps = kernel * kernel;
    pack_weights(
        w,
        outputs,
        (taps, channel_words(in_channels)),
        |o, tap, g, l| {
            let c = 4 * g + l;
            (c < in_channels).then(|| (o * in_channels + c) * taps + tap)
        },
    )
}

/// A dense layer's weights (`outputs x stored.len()`, columns in the float layout of the
/// tensor it reads) for `int8_dense`, whose input is that tensor as stored: pixel-major words.
pub fn pack_dense_weights(w: &[i8], outputs: usize, stored: Shape) -> Vec<u32> {
    let (plane, cw) = (stored.height * stored.width, channel_words(stored.channels));
    pack_weights(w, outputs, (1, image_words(stored)), |o, _, word, l| {
        let (p, c) = (word / cw, 4 * (word % cw) + l);
        (c < stored.channels).then(|| o * stored.len() + c * plane + p)
    })
}

/// A conv or dense layer's weights packed for its kernel; `stored` is the shape of the tensor
/// it reads as the kernels store it (a dense layer after `flatten` reads the unflattened one).
pub fn pack_layer_weights(step: &Step, stored: Shape, weight: &[i8]) -> Vec<u32> {
    match step.layer {
        Layer::Conv2d { .. } => {
            let g = Conv2dGeometry::of(step);
            pack_conv_weights(weight, g.out_channels, g.input.channels, g.kernel)
        }
        _ => pack_dense_weights(weight, step.output.len(), stored),
    }
}

impl Int8Params {
    fn new(n: usize, input: Shape, output: Shape, (kernel, stride, pad): Window) -> Int8Params {
        Int8Params {
            n: n as u32,
            in_height: input.height as u32,
            in_width: input.width as u32,
            out_channels: output.channels as u32,
            out_height: output.height as u32,
            out_width: output.width as u32,
            kernel: kernel as u32,
            stride: stride as u32,
            pad: pad as u32,
            in_words: image_words(input) as u32,
            out_words: image_words(output) as u32,
            in_channel_words: channel_words(input.channels) as u32,
            out_channel_words: channel_words(output.channels) as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// A conv's kernel size, stride and padding.
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

    /// A conv or dense step on `n` packed images `x` (of `stored` shape, see
    /// [`pack_layer_weights`]): `y` packed int8 (requantised), or for the `last` layer the f32
    /// logits (n x outputs, the float layout).
    #[allow(clippy::too_many_arguments)]
    pub fn layer(
        &self,
        ctx: &GpuContext,
        (step, stored): (&Step, Shape),
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
                // A 1x1 image whose channels are the stored input's words, four at a time.
                let input = Shape::new(4 * image_words(stored), 1, 1);
                let output = Shape::new(step.output.len(), 1, 1);
                let kernel = if last {
                    &self.dense_logits
                } else {
                    &self.dense
                };
                (kernel, Int8Params::new(n, input, output, (1, 1, 0)))
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

    /// ReLU of `n` packed images of `stored` shape.
    pub fn relu(&self, ctx: &GpuContext, stored: Shape, n: usize, x: View, y: View) -> Dispatch {
        let params = Int8Params::new(n, stored, stored, (1, 1, 0));
        let words = n * image_words(stored);
        let params = uniform(ctx, "int8 params", &params);
        self.relu
            .dispatch(ctx, &[View::whole(&params), x, y], grid_1d(words))
    }
}

/// The shape each step of `plan` reads as the kernels store it: its input's, except after
/// `flatten` (and what follows it up to the next layer), which changes no byte: there it is the
/// shape before the flatten.
pub fn stored_inputs(plan: &Plan) -> Vec<Shape> {
    let mut stored = plan.input;
    let mut shapes = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        shapes.push(stored);
        if !matches!(
            step.layer,
            Layer::Flatten | Layer::Dropout { .. } | Layer::Activation(_) | Layer::BatchNorm
        ) {
            stored = step.output;
        }
    }
    shapes
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
        "conv3k5-maxpool2-relu-conv9k3same-flatten-relu-dense10",
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
            let stored = stored_inputs(&plan)[i];
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
                        check_step(ctx, (&step, stored), n, last, seed)
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
    (step, stored): (&Step, Shape),
    n: usize,
    last: bool,
    seed: u32,
) -> Result<Comparison> {
    let in_len = step.input.len();
    let x = random_int8s(n * in_len, seed);
    let x_buf = storage_init(ctx, "x", &pack_images(&x, stored))?;
    let kernels = Int8Kernels::new(ctx);
    let stored_out = match step.layer {
        Layer::Activation(_) => stored,
        _ => step.output,
    };
    let out_words = if last {
        n * step.output.len()
    } else {
        n * image_words(stored_out)
    };
    let y_buf = storage(ctx, "y", 4 * out_words as u64)?;
    let (x_view, y_view) = ((&x_buf).into(), (&y_buf).into());
    let mut cpu = Vec::with_capacity(out_words);
    match step.layer {
        Layer::Conv2d { .. } | Layer::Dense { .. } => {
            let (layer, m) = random_layer(step, seed + 1000);
            let w_buf = storage_init(ctx, "w", &pack_layer_weights(step, stored, &layer.weight))?;
            let b_buf = storage_init(ctx, "bias", &pad_channels(&layer.bias))?;
            let m_buf = storage_init(ctx, "multiplier", &pad_channels(&m))?;
            let views = LayerViews {
                weight: (&w_buf).into(),
                bias: (&b_buf).into(),
                multiplier: (&m_buf).into(),
            };
            let dispatch = kernels.layer(ctx, (step, stored), n, last, (x_view, views), y_view);
            run(ctx, &[&dispatch]);
            for image in x.chunks_exact(in_len) {
                let acc = accumulate(step, &layer, image);
                match last {
                    true => cpu.extend(dequantize_channels(&acc, &m).iter().map(|f| f.to_bits())),
                    false => cpu.extend(pack_images(&requantize_channels(&acc, &m), step.output)),
                }
            }
        }
        Layer::Pool2d(pool) => {
            run(
                ctx,
                &[&kernels.pool(ctx, pool, step.input, n, x_view, y_view)],
            );
            for image in x.chunks_exact(in_len) {
                cpu.extend(pack_images(
                    &pool_int8(pool, step.input, image),
                    step.output,
                ));
            }
        }
        _ => {
            run(ctx, &[&kernels.relu(ctx, stored, n, x_view, y_view)]);
            let relu: Vec<i8> = x.iter().map(|&q| q.max(0)).collect();
            cpu = pack_images(&relu, stored);
        }
    }
    let gpu = read_buffer::<u32>(ctx, &y_buf, 0, out_words)?;
    Ok(compare_exact(&gpu, &cpu))
}
