//! Criterion benches (`cargo bench`): the CPU reference ops of the seed model's hot layer, every
//! variant of its GPU kernels and of the GPU matrix multiplies (dense and the calibration gemm),
//! and whole training steps on each backend. GPU benches run when an adapter exists and are
//! skipped with a message otherwise. Timings only: nothing here asserts a speed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use mnist_wgpu::backend::Backend;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::{Split, IMAGE_PIXELS};
use mnist_wgpu::gpu::buffer::{storage_init, View};
use mnist_wgpu::gpu::conv2d::kernels::{Conv2dKernels, VARIANTS as CONV2D_VARIANTS};
use mnist_wgpu::gpu::conv2d::Conv2dPass;
use mnist_wgpu::gpu::dense::kernels::DenseKernels;
use mnist_wgpu::gpu::gemm::{self, GemmKernel};
use mnist_wgpu::gpu::kernel::Dispatch;
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::{init_params, Arch, Plan, Shape, MNIST_INPUT};
use mnist_wgpu::rng::random_vec;

/// The seed model's second convolution, 91% of its work.
const CONV2: Conv2dGeometry = Conv2dGeometry::new(Shape::new(32, 13, 13), 64, 3);

fn gpu() -> Option<GpuContext> {
    mnist_wgpu::gpu::context::quiet_window_system_noise();
    let ctx = GpuContext::new(None).ok().flatten();
    if ctx.is_none() {
        eprintln!("*** no GPU adapter: skipping the GPU benches ***");
    }
    ctx
}

fn cpu_conv2(c: &mut Criterion) {
    let n = 32;
    let g = CONV2;
    let out = g.output();
    let x = random_vec(n * g.input.len(), 1, -1.0, 1.0);
    let w = random_vec(g.out_channels * g.input.channels * 9, 2, -1.0, 1.0);
    let b = random_vec(g.out_channels, 3, -1.0, 1.0);
    let dy = random_vec(n * out.len(), 4, -1.0, 1.0);
    let mut group = c.benchmark_group("cpu conv2 n32");
    let mut y = vec![0.0f32; n * out.len()];
    group.bench_function("forward", |bench| {
        bench.iter(|| conv2d_forward(g, &x, &w, &b, &mut y))
    });
    let mut dx = vec![0.0f32; n * g.input.len()];
    group.bench_function("backward_input", |bench| {
        bench.iter(|| conv2d_backward_input(g, &dy, &w, &mut dx))
    });
    let (mut dw, mut db) = (vec![0.0f32; w.len()], vec![0.0f32; b.len()]);
    group.bench_function("backward_weights", |bench| {
        bench.iter(|| conv2d_backward_weights(g, &x, &dy, &mut dw, &mut db))
    });
    group.finish();
}

/// Runs `dispatches` `iters` times in one submit and returns the wall time.
fn gpu_time(ctx: &GpuContext, dispatches: &[Dispatch], iters: u64) -> Duration {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for _ in 0..iters {
            dispatches.iter().for_each(|d| d.record(&mut pass));
        }
    }
    let start = Instant::now();
    ctx.queue.submit([encoder.finish()]);
    ctx.wait().expect("the GPU finishes");
    start.elapsed()
}

/// Every variant of each conv2d pass on the seed model's second layer, batch 32.
fn gpu_conv2(c: &mut Criterion) {
    let Some(ctx) = gpu() else { return };
    let kernels = Conv2dKernels::new(&ctx);
    let (n, g) = (32, CONV2);
    let tensor = |len: usize, seed: u64| {
        storage_init(&ctx, "conv operand", &random_vec(len, seed, -1.0, 1.0)).unwrap()
    };
    let x = tensor(n * g.input.len(), 1);
    let w = tensor(g.out_channels * g.input.channels * 9, 2);
    let b = tensor(g.out_channels, 3);
    let y = tensor(n * g.output().len(), 4);
    let dx = tensor(n * g.input.len(), 5);
    let dw = tensor(g.out_channels * g.input.channels * 9, 6);
    let db = tensor(g.out_channels, 7);
    let v = View::whole;
    let mut group = c.benchmark_group("gpu conv2 n32");
    group.sample_size(10);
    for variant in CONV2D_VARIANTS.iter().map(|r| r.variant) {
        let passes = [
            (
                "forward",
                kernels.forward(&ctx, variant, (g, n), true, [v(&x), v(&w), v(&b), v(&y)]),
            ),
            (
                "backward_input",
                kernels.backward_input(&ctx, variant, (g, n), [v(&y), v(&w), v(&dx)]),
            ),
            (
                "backward_weights",
                kernels.backward_weights(&ctx, variant, (g, n), [v(&x), v(&y)], [v(&dw), v(&db)]),
            ),
        ];
        for ((pass, dispatches), of_op) in passes.into_iter().zip([
            Conv2dPass::Forward,
            Conv2dPass::BackwardInput,
            Conv2dPass::BackwardWeights,
        ]) {
            // Only where the variant runs the pass itself (a subgroup variant changes some).
            if !kernels.runs(variant, of_op, g) {
                continue;
            }
            group.bench_function(BenchmarkId::new(pass, variant.name()), |bench| {
                bench.iter_custom(|iters| gpu_time(&ctx, &dispatches, iters))
            });
        }
    }
    group.finish();
}

fn gpu_matmul(c: &mut Criterion) {
    let Some(ctx) = gpu() else { return };
    let kernels = DenseKernels::new(&ctx);
    let mut group = c.benchmark_group("gpu matmul");
    group.sample_size(10);
    for size in [256usize, 512] {
        let data = random_vec(size * size, 5, -1.0, 1.0);
        let buffers: Vec<wgpu::Buffer> = (0..3)
            .map(|_| storage_init(&ctx, "matmul operand", &data).unwrap())
            .collect();
        for variant in kernels.variants() {
            let views = (
                View::whole(&buffers[0]),
                View::whole(&buffers[1]),
                View::whole(&buffers[2]),
            );
            let dispatch = kernels.matmul_row_major(&ctx, variant, (size, size, size), views);
            let id = BenchmarkId::new(variant.name(), format!("{size}^3"));
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| gpu_time(&ctx, std::slice::from_ref(&dispatch), iters))
            });
        }
        // The calibration multiply, on the same square sizes (its inner size is at most 256).
        let inner = size.min(gemm::MAX_INNER);
        let b = gemm::packed_b(&ctx, &data[..inner * size], (inner, size));
        for rows in gemm::ROW_CHOICES {
            let Some(kernel) = GemmKernel::new(&ctx, rows) else {
                break;
            };
            let views = (View::whole(&buffers[0]), &b, View::whole(&buffers[2]));
            let dispatches = kernel.multiply(&ctx, (size, inner, size), views);
            let id = BenchmarkId::new(
                format!("gemm {rows} rows"),
                format!("{size}x{inner}x{size}"),
            );
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| gpu_time(&ctx, &dispatches, iters))
            });
        }
    }
    group.finish();
}

fn synthetic(len: usize) -> Split {
    let noise = random_vec(len * IMAGE_PIXELS, 9, 0.0, 255.0);
    Split {
        images: noise.iter().map(|&v| v as u8).collect(),
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
    }
}

/// One optimiser step of the seed model, waiting for it to finish.
fn train_steps(c: &mut Criterion) {
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let params = init_params(&plan, 1);
    let optimizer = Optimizer::adam(1e-3);
    let mut group = c.benchmark_group("train step");
    group.sample_size(10);
    let ctx = gpu();
    for batch in [32usize, 128] {
        let data = synthetic(batch);
        let indices: Vec<u32> = (0..batch as u32).collect();
        let mut backends: Vec<(&str, Box<dyn Backend>)> = vec![(
            "cpu",
            Box::new(CpuBackend::new(plan.clone(), params.clone(), optimizer)),
        )];
        if let Some(ctx) = &ctx {
            let gpu = GpuBackend::new(ctx, plan.clone(), &params, optimizer).unwrap();
            backends.push(("gpu", Box::new(gpu)));
        }
        for (name, mut backend) in backends {
            backend.set_train_data(&data).unwrap();
            group.bench_function(BenchmarkId::new(name, batch), |bench| {
                bench.iter(|| {
                    backend.train_step(&indices).unwrap();
                    backend.take_train_stats().unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, cpu_conv2, gpu_conv2, gpu_matmul, train_steps);
criterion_main!(benches);
