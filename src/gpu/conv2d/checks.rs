//! The conv2d cross-checks: every variant's passes against the CPU twin (`cpu/conv2d.rs`) on
//! awkward sizes (batch 1, 7, 33; partial blocks and tiles everywhere), and every kernel run
//! twice for the same bits.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;

use super::kernels::{Conv2dKernels, VARIANTS};
use super::weight_len;
use super::Conv2dPass;
use crate::cpu::activation::activation_forward;
use crate::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use crate::cpu::pool2d::{maxpool2d_backward, maxpool2d_forward, pool2d_output};
use crate::gpu::buffer::{read_buffer, storage, storage_init, View};
use crate::gpu::check::{compare, compare_exact, Comparison, CrossCheck, LayerData};
use crate::gpu::context::GpuContext;
use crate::gpu::kernel::{run, Dispatch};
use crate::gpu::variant::Variant;
use crate::model::{Activation, Shape};
use crate::rng::random_vec;

/// One cross-check geometry: a batch of `n` images through `g`.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    g: Conv2dGeometry,
}

const fn case(n: usize, input: Shape, out_channels: usize, kernel: usize) -> Case {
    Case {
        n,
        g: Conv2dGeometry::new(input, out_channels, kernel),
    }
}

/// A case with a stride and padding (tiled kernels only).
const fn strided(case: Case, stride: usize, pad: usize) -> Case {
    Case {
        g: Conv2dGeometry {
            stride,
            pad,
            ..case.g
        },
        ..case
    }
}

/// The real first and second layers (the first takes the narrow register-blocked weight-gradient
/// kernel), then odd sizes: a small k2 on a non-square image with a batch of 33 (5 blocks of
/// images times 5 of columns: the register-blocked input gradient needs two workgroups per row,
/// the second partly idle), a k5 kernel
/// nearly as large as its 6x5 input, partial blocks everywhere (35 in and 37 out channels: a full
/// block of 32 and a partial one; 18 row segments; widths 9 and 14; 210 (ci, ky) pairs; a k6
/// kernel spanning two kx blocks), and a 1x1 kernel with one output channel. The last two stress
/// the tiled kernels' edges: a k8 kernel on 2 channels has 128 weights per output channel, so
/// the bias column of the weight gradient is alone in a second column tile, with 33 output
/// channels (a second row tile of one channel), 18 output and 270 input positions, and a
/// reduction of 2112 for the input gradient; and a batch of 40 has 4000 output positions (31
/// full column tiles and part of one), a reduction of 36 (2 full steps of 16 and part of one),
/// 40 output channels, and weight-gradient chunks of 4 rows that end inside images. The last
/// runs the register-blocked 3x3 weight gradient with a partial block of input channels (6 =
/// 4 + 2) and of output channels (35), at a batch of 9.
/// The register-blocked forward and input gradient read packed weights where they fit two
/// uniform bindings (the second layer fills both) and w itself where not (the k6 case, and the
/// k8 case's input gradient). The last case has two blocks of input and of output channels, so
/// that the second block of both passes switches from the first binding to the second
/// partway (after 16 channels of the input gradient's block).
const CASES: [Case; 10] = [
    case(1, Shape::new(1, 28, 28), 32, 3),
    case(7, Shape::new(32, 13, 13), 64, 3),
    case(33, Shape::new(3, 7, 17), 5, 2),
    case(2, Shape::new(5, 6, 5), 3, 5),
    case(3, Shape::new(35, 11, 14), 37, 6),
    case(5, Shape::new(2, 4, 4), 1, 1),
    case(3, Shape::new(2, 9, 10), 33, 8),
    case(40, Shape::new(4, 12, 12), 40, 3),
    case(9, Shape::new(6, 9, 10), 35, 3),
    case(5, Shape::new(40, 7, 8), 40, 3),
];

/// More first layers for the weight gradient from a fused ReLU and max pooling: 2 input
/// channels with a k2 kernel (4 (ci, ky) pairs), 5 output channels and an odd pooled width;
/// 40 output channels (a second block) at a batch of 33 with an odd width too.
const POOLED_CASES: [Case; 2] = [
    case(7, Shape::new(2, 9, 8), 5, 2),
    case(33, Shape::new(1, 12, 11), 40, 3),
];

/// Strides and padding, for the tiled kernels: `same` padding at stride 1 (the k3 second layer
/// of a padded model, and k5 with two zeros a side), stride 2 with and without padding on odd
/// sizes (the last input rows are never read), and stride 3 with a k2 kernel (inputs between
/// windows are never read, so their gradient is 0).
const STRIDED_CASES: [Case; 5] = [
    strided(case(7, Shape::new(32, 14, 14), 64, 3), 1, 1),
    strided(case(1, Shape::new(3, 9, 8), 5, 5), 1, 2),
    strided(case(33, Shape::new(8, 13, 11), 16, 3), 2, 1),
    strided(case(3, Shape::new(5, 10, 9), 7, 3), 2, 0),
    strided(case(2, Shape::new(4, 11, 11), 9, 2), 3, 0),
];

/// What one cross-check runs.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    ForwardRelu,
    BackwardInput,
    BackwardWeights,
}

impl Pass {
    /// The op's pass that this check runs.
    fn of_op(self) -> Conv2dPass {
        match self {
            Pass::Forward | Pass::ForwardRelu => Conv2dPass::Forward,
            Pass::BackwardInput => Conv2dPass::BackwardInput,
            Pass::BackwardWeights => Conv2dPass::BackwardWeights,
        }
    }
}

/// The check names of one variant, one per pass.
struct CheckNames {
    forward: String,
    forward_relu: String,
    backward_input: String,
    backward_weights: String,
    reproducible: String,
    forward_relu_maxpool: String,
    backward_weights_maxpool: String,
}

impl CheckNames {
    fn of(variant: Variant) -> CheckNames {
        let named = |pass: &str| format!("conv2d_{pass}[{variant}]");
        CheckNames {
            forward: named("forward"),
            forward_relu: named("forward+relu"),
            backward_input: named("backward_input"),
            backward_weights: named("backward_weights+bias"),
            reproducible: format!("conv2d[{variant}] (bit-reproducible)"),
            forward_relu_maxpool: named("forward+relu+maxpool"),
            backward_weights_maxpool: named("backward_weights+maxpool"),
        }
    }
}

fn case_shape(case: Case) -> String {
    let g = case.g;
    let mut shape = format!(
        "n {}, {}x{}x{} -> {} k{}",
        case.n, g.input.channels, g.input.height, g.input.width, g.out_channels, g.kernel
    );
    if !g.is_dense() {
        shape += &format!(" s{} p{}", g.stride, g.pad);
    }
    shape
}

/// The kernels the cross-checks share, compiled once per device: compiling every variant's
/// pipelines for each check would take most of `check`'s time on lavapipe.
#[derive(Clone, Default)]
struct SharedKernels(Rc<RefCell<Option<CompiledFor>>>);

/// Kernels and the device they were compiled for.
type CompiledFor = (wgpu::Device, Rc<Conv2dKernels>);

impl SharedKernels {
    fn get(&self, ctx: &GpuContext) -> Rc<Conv2dKernels> {
        let mut slot = self.0.borrow_mut();
        if let Some((device, kernels)) = slot.as_ref() {
            if *device == ctx.device {
                return kernels.clone();
            }
        }
        let kernels = Rc::new(Conv2dKernels::new(ctx));
        *slot = Some((ctx.device.clone(), kernels.clone()));
        kernels
    }
}

/// For every registered variant: forward (with and without the fused ReLU), backward input,
/// and backward weights and bias against the CPU, for every case where the variant runs the
/// pass itself (on adapters that build it); the forward with ReLU and max pooling fused, and
/// the weight gradient through them, where it has those kernels; then every kernel run twice on
/// the second layer must give the same bits.
pub fn checks() -> Vec<CrossCheck> {
    let shared = SharedKernels::default();
    let mut checks = Vec::new();
    for variant in VARIANTS.iter().map(|r| r.variant) {
        let names = CheckNames::of(variant);
        // Left out where the adapter does not run this variant's own kernels for the pass.
        let mut push = |check: CrossCheck, runs: Option<(Conv2dPass, Conv2dGeometry, bool)>| {
            let shared = shared.clone();
            checks.push(check.only_where(move |ctx| {
                let kernels = shared.get(ctx);
                match runs {
                    None => kernels.builds(variant),
                    Some((pass, g, false)) => kernels.runs(variant, pass, g),
                    Some((pass, g, true)) => kernels.fuses(variant, pass, g),
                }
            }))
        };
        for case in CASES.into_iter().chain(STRIDED_CASES) {
            for (name, pass) in [
                (&names.forward, Pass::Forward),
                (&names.forward_relu, Pass::ForwardRelu),
                (&names.backward_input, Pass::BackwardInput),
                (&names.backward_weights, Pass::BackwardWeights),
            ] {
                let check = on_gpu(&shared, variant, case, move |gpu| match pass {
                    Pass::Forward => check_forward(gpu, false),
                    Pass::ForwardRelu => check_forward(gpu, true),
                    Pass::BackwardInput => check_backward_input(gpu),
                    Pass::BackwardWeights => check_backward_weights(gpu),
                });
                let check = CrossCheck::new(name.as_str(), case_shape(case), check);
                push(check, Some((pass.of_op(), case.g, false)));
            }
        }
        let pooled_cases = CASES.into_iter().filter(|case| {
            let out = case.g.output();
            out.height >= 2 && out.width >= 2
        });
        for case in pooled_cases {
            let check = on_gpu(&shared, variant, case, check_forward_relu_maxpool);
            let name = names.forward_relu_maxpool.as_str();
            let check = CrossCheck::new(name, case_shape(case), check);
            push(check, Some((Conv2dPass::ForwardReluMaxpool, case.g, true)));
        }
        for case in CASES.into_iter().chain(POOLED_CASES) {
            let check = on_gpu(&shared, variant, case, check_backward_weights_pooled);
            let name = names.backward_weights_maxpool.as_str();
            let check = CrossCheck::new(name, case_shape(case), check);
            push(
                check,
                Some((Conv2dPass::BackwardWeightsMaxpool, case.g, true)),
            );
        }
        let rerun = CASES[1];
        let check = on_gpu(&shared, variant, rerun, check_reproducible);
        let shape = format!("{}, twice", case_shape(rerun));
        push(
            CrossCheck::new(names.reproducible.as_str(), shape, check),
            None,
        );
    }
    checks
}

/// A check of `case` on `variant`'s kernels, run on the inputs `OnGpu` makes.
fn on_gpu(
    shared: &SharedKernels,
    variant: Variant,
    case: Case,
    check: impl Fn(&OnGpu) -> Result<Comparison> + 'static,
) -> impl Fn(&GpuContext) -> Result<Comparison> + 'static {
    let shared = shared.clone();
    move |ctx| check(&OnGpu::new(ctx, &shared.get(ctx), variant, case)?)
}

/// One case's random inputs, reproducible from its shape.
fn case_data(case: Case) -> LayerData {
    let (g, n) = (case.g, case.n);
    let seed = (n * 1_000_003 + g.input.len() * 101 + g.out_channels * 7 + g.kernel) as u64;
    let lens = [
        n * g.input.len(),
        weight_len(g),
        g.out_channels,
        n * g.output().len(),
    ];
    LayerData::random(seed, lens)
}

/// A case's random inputs, on the CPU and the GPU, and the passes of one variant over them.
struct OnGpu<'a> {
    ctx: &'a GpuContext,
    kernels: &'a Conv2dKernels,
    variant: Variant,
    case: Case,
    data: LayerData,
    x: wgpu::Buffer,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    dy: wgpu::Buffer,
}

impl<'a> OnGpu<'a> {
    fn new(
        ctx: &'a GpuContext,
        kernels: &'a Conv2dKernels,
        variant: Variant,
        case: Case,
    ) -> Result<OnGpu<'a>> {
        let data = case_data(case);
        Ok(OnGpu {
            ctx,
            kernels,
            variant,
            case,
            x: storage_init(ctx, "x", &data.x)?,
            w: storage_init(ctx, "w", &data.w)?,
            b: storage_init(ctx, "b", &data.b)?,
            dy: storage_init(ctx, "dy", &data.dy)?,
            data,
        })
    }

    fn forward(&self, relu: bool, y: &wgpu::Buffer) -> Vec<Dispatch> {
        let (x, w, b) = ((&self.x).into(), (&self.w).into(), (&self.b).into());
        let (g, n) = (self.case.g, self.case.n);
        let k = self.kernels;
        k.forward(self.ctx, self.variant, (g, n), relu, [x, w, b, y.into()])
    }

    fn backward_input(&self, dx: &wgpu::Buffer) -> Vec<Dispatch> {
        let (dy, w) = ((&self.dy).into(), (&self.w).into());
        let (g, n) = (self.case.g, self.case.n);
        let k = self.kernels;
        k.backward_input(self.ctx, self.variant, (g, n), [dy, w, dx.into()])
    }

    fn backward_weights(&self, dw: View, db: View) -> Vec<Dispatch> {
        let (x, dy) = ((&self.x).into(), (&self.dy).into());
        let (g, n) = (self.case.g, self.case.n);
        let k = self.kernels;
        k.backward_weights(self.ctx, self.variant, (g, n), [x, dy], [dw, db])
    }
}

fn check_forward(gpu: &OnGpu, relu: bool) -> Result<Comparison> {
    let (ctx, case) = (gpu.ctx, gpu.case);
    let (g, n, data) = (case.g, case.n, &gpu.data);
    let len = n * g.output().len();
    let y = storage(ctx, "y", 4 * len as u64)?;
    run(ctx, &gpu.forward(relu, &y).iter().collect::<Vec<_>>());
    let mut cpu = vec![0.0; len];
    conv2d_forward(g, &data.x, &data.w, &data.b, &mut cpu);
    if relu {
        let pre_activation = cpu.clone();
        activation_forward(Activation::Relu, &pre_activation, &mut cpu);
    }
    Ok(compare(&read_buffer::<f32>(ctx, &y, 0, len)?, &cpu))
}

/// The CPU's max(conv(x, w) + b, 0) for a case, then its 2x2 max pooling and argmax.
fn cpu_relu_maxpool(case: Case, data: &LayerData) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let (g, n) = (case.g, case.n);
    let out = g.output();
    let mut y = vec![0.0; n * out.len()];
    conv2d_forward(g, &data.x, &data.w, &data.b, &mut y);
    let pre_activation = y.clone();
    activation_forward(Activation::Relu, &pre_activation, &mut y);
    let len = n * pool2d_output(out).len();
    let (mut pooled, mut argmax) = (vec![0.0; len], vec![0; len]);
    maxpool2d_forward(out, &y, &mut pooled, &mut argmax);
    (y, pooled, argmax)
}

/// The pooled output must match the CPU's conv, ReLU and max pooling, and each argmax must
/// point at a maximum of its window: the CPU's rectified output there must equal the CPU's
/// pooled value (within the tolerance, so that a near tie that rounding decides either way
/// passes, and a wrong index does not).
fn check_forward_relu_maxpool(gpu: &OnGpu) -> Result<Comparison> {
    let (ctx, case) = (gpu.ctx, gpu.case);
    let (g, n, data) = (case.g, case.n, &gpu.data);
    let out = g.output();
    let pooled_shape = pool2d_output(out);
    let len = n * pooled_shape.len();
    let pooled = storage(ctx, "pooled", 4 * len as u64)?;
    let argmax = storage(ctx, "argmax", 4 * len as u64)?;
    let views = [(&gpu.x).into(), (&gpu.w).into(), (&gpu.b).into()];
    let outputs = [(&pooled).into(), (&argmax).into()];
    let (kernels, variant) = (gpu.kernels, gpu.variant);
    let Some(dispatches) = kernels.forward_relu_maxpool(ctx, variant, (g, n), views, outputs)
    else {
        anyhow::bail!("conv2d: the {} variant does not pool", variant.name());
    };
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let (y, cpu, _) = cpu_relu_maxpool(case, data);
    let gpu_argmax = read_buffer::<u32>(ctx, &argmax, 0, len)?;
    let at_gpu_argmax: Vec<f32> = gpu_argmax
        .iter()
        .enumerate()
        .map(|(o, &i)| {
            let (image, i) = (o / pooled_shape.len() * out.len(), i as usize);
            if i < out.len() {
                y[image + i]
            } else {
                f32::NAN
            }
        })
        .collect();
    let values = compare(&read_buffer::<f32>(ctx, &pooled, 0, len)?, &cpu);
    Ok(values.merge(compare(&at_gpu_argmax, &cpu)))
}

fn check_backward_input(gpu: &OnGpu) -> Result<Comparison> {
    let (ctx, case) = (gpu.ctx, gpu.case);
    let (g, n, data) = (case.g, case.n, &gpu.data);
    let len = n * g.input.len();
    let dx = storage(ctx, "dx", 4 * len as u64)?;
    run(ctx, &gpu.backward_input(&dx).iter().collect::<Vec<_>>());
    let mut cpu = vec![0.0; len];
    conv2d_backward_input(g, &data.dy, &data.w, &mut cpu);
    Ok(compare(&read_buffer::<f32>(ctx, &dx, 0, len)?, &cpu))
}

/// dw and db in buffers of their own, then in one buffer as the parameter buffers lay them
/// out (db at the next bindable offset after dw, which one reduction pass fills): both against
/// the CPU, and the gap between them, filled with a marker, must be left as it was.
fn check_backward_weights(gpu: &OnGpu) -> Result<Comparison> {
    let (ctx, case) = (gpu.ctx, gpu.case);
    let (g, data) = (case.g, &gpu.data);
    let (weights, channels) = (weight_len(g), g.out_channels);
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; weights], vec![0.0; channels]);
    conv2d_backward_weights(g, &data.x, &data.dy, &mut cpu_dw, &mut cpu_db);
    let gradients = |dw: View, db: View| {
        run(
            ctx,
            &gpu.backward_weights(dw, db).iter().collect::<Vec<_>>(),
        );
    };

    let dw = storage(ctx, "dw", 4 * weights as u64)?;
    let db = storage(ctx, "db", 4 * channels as u64)?;
    gradients((&dw).into(), (&db).into());
    let apart = compare(&read_buffer::<f32>(ctx, &dw, 0, weights)?, &cpu_dw).merge(compare(
        &read_buffer::<f32>(ctx, &db, 0, channels)?,
        &cpu_db,
    ));

    const MARKER: f32 = 12345.0;
    let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment).max(4);
    let db_at = (4 * weights as u64).next_multiple_of(align) / 4;
    let len = db_at as usize + channels;
    let both = storage_init(ctx, "dw and db", &vec![MARKER; len])?;
    let view = |offset: u64, elements: usize| View {
        buffer: &both,
        offset: 4 * offset,
        size: 4 * elements as u64,
    };
    gradients(view(0, weights), view(db_at, channels));
    let got = read_buffer::<f32>(ctx, &both, 0, len)?;
    let (gpu_dw, rest) = got.split_at(weights);
    let (gap, gpu_db) = rest.split_at(db_at as usize - weights);
    let together = compare(gpu_dw, &cpu_dw)
        .merge(compare(gpu_db, &cpu_db))
        .merge(compare(gap, &vec![MARKER; gap.len()]));
    Ok(apart.merge(together))
}

/// The weight gradient from the pooled gradient against the CPU's max pooling backward (masked
/// by the pooled ReLU outputs), then its weight gradient, with the pooled outputs and argmax of
/// the CPU's forward.
fn check_backward_weights_pooled(gpu: &OnGpu) -> Result<Comparison> {
    let (ctx, case) = (gpu.ctx, gpu.case);
    let (g, n, data) = (case.g, case.n, &gpu.data);
    let out = g.output();
    let len = n * pool2d_output(out).len();
    let (_, pooled, argmax) = cpu_relu_maxpool(case, data);
    let dpooled = random_vec(len, len as u64, -1.0, 1.0);
    let masked: Vec<f32> = dpooled
        .iter()
        .zip(&pooled)
        .map(|(&d, &p)| if p > 0.0 { d } else { 0.0 })
        .collect();
    let mut dy = vec![0.0; n * out.len()];
    maxpool2d_backward(out, &masked, &argmax, &mut dy);
    let (mut cpu_dw, mut cpu_db) = (vec![0.0; weight_len(g)], vec![0.0; g.out_channels]);
    conv2d_backward_weights(g, &data.x, &dy, &mut cpu_dw, &mut cpu_db);

    let (dpooled, pooled) = (
        storage_init(ctx, "dpooled", &dpooled)?,
        storage_init(ctx, "pooled", &pooled)?,
    );
    let argmax = storage_init(ctx, "argmax", &argmax)?;
    let dw = storage(ctx, "dw", 4 * weight_len(g) as u64)?;
    let db = storage(ctx, "db", 4 * g.out_channels as u64)?;
    let pooling = [(&dpooled).into(), (&pooled).into(), (&argmax).into()];
    let grads = [(&dw).into(), (&db).into()];
    let (kernels, variant, x) = (gpu.kernels, gpu.variant, (&gpu.x).into());
    let Some(dispatches) = kernels.backward_weights_pooled(ctx, variant, (g, n), x, pooling, grads)
    else {
        anyhow::bail!(
            "conv2d: the {} variant does not fold the pooling",
            variant.name()
        );
    };
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let gpu_dw = read_buffer::<f32>(ctx, &dw, 0, weight_len(g))?;
    let gpu_db = read_buffer::<f32>(ctx, &db, 0, g.out_channels)?;
    Ok(compare(&gpu_dw, &cpu_dw).merge(compare(&gpu_db, &cpu_db)))
}

/// Every output of every pass, as bits, from one run into fresh output buffers.
fn run_all_bits(gpu: &OnGpu) -> Result<Vec<u32>> {
    let (ctx, case, g) = (gpu.ctx, gpu.case, gpu.case.g);
    let outputs = [
        case.n * g.output().len(),
        case.n * g.input.len(),
        weight_len(g),
        g.out_channels,
    ];
    let [y, dx, dw, db] = outputs.map(|len| storage(ctx, "output", 4 * len as u64));
    let [y, dx, dw, db] = [y?, dx?, dw?, db?];
    let mut dispatches = gpu.forward(true, &y);
    dispatches.extend(gpu.backward_input(&dx));
    dispatches.extend(gpu.backward_weights((&dw).into(), (&db).into()));
    run(ctx, &dispatches.iter().collect::<Vec<_>>());
    let mut bits = Vec::new();
    for (buffer, len) in [y, dx, dw, db].iter().zip(outputs) {
        bits.extend(
            read_buffer::<f32>(ctx, buffer, 0, len)?
                .iter()
                .map(|v| v.to_bits()),
        );
    }
    Ok(bits)
}

fn check_reproducible(gpu: &OnGpu) -> Result<Comparison> {
    let first = run_all_bits(gpu)?;
    let second = run_all_bits(gpu)?;
    Ok(compare_exact(&second, &first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_name_their_variant() {
        for variant in VARIANTS.iter().map(|r| r.variant) {
            assert!(CheckNames::of(variant).forward.contains(variant.name()));
            assert!(CheckNames::of(variant)
                .reproducible
                .contains(variant.name()));
        }
    }
}
