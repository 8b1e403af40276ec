//! Training on the GPU backend: it learns, it is deterministic, it reports divergence, and the
//! CLI records the adapter. Skips loudly without an adapter (fails with MNIST_WGPU_REQUIRE_GPU=1).

mod common;

use common::{bundled_data, run_cli, run_cli_ok};
use mnist_wgpu::backend::{Backend, KernelChoice};
use mnist_wgpu::config::{AutotuneMode, Optimizer};
use mnist_wgpu::data::{load_mnist, Mnist};
use mnist_wgpu::gpu::dense::kernels::VARIANTS as DENSE_VARIANTS;
use mnist_wgpu::gpu::profile::{DispatchTiming, Profiler, TimingSource, TEXTURE_COPIES};
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::{init_params, Arch, Params, Plan, MNIST_INPUT};
use mnist_wgpu::train::{evaluate, train};

fn data(train_len: usize, test_len: usize) -> Mnist {
    let mut m = load_mnist(&bundled_data()).unwrap();
    m.train = m.train.truncated(train_len);
    m.test = m.test.truncated(test_len);
    m
}

fn backend(ctx: &GpuContext, seed: u64, optimizer: Optimizer) -> GpuBackend {
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let params = init_params(&plan, seed);
    GpuBackend::new(ctx, plan, &params, optimizer).unwrap()
}

fn trained_params(ctx: &GpuContext, mnist: &Mnist, seed: u64) -> Params<f32> {
    let mut b = backend(ctx, seed, Optimizer::adam(1e-3));
    train(
        &mut b,
        &mnist.train,
        None,
        &common::config(1, 32, seed, 1e-3),
        &mut |_| {},
    )
    .unwrap();
    b.params().unwrap()
}

#[test]
fn gpu_training_learns_the_digits() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let mnist = data(640, 500);
    let mut b = backend(&ctx, 1, Optimizer::adam(1e-3));
    let history = train(
        &mut b,
        &mnist.train,
        None,
        &common::config(1, 32, 1, 1e-3),
        &mut |_| {},
    )
    .unwrap()
    .history;
    let eval = evaluate(&mut b, &mnist.test).unwrap();
    // 20 steps take the tutorial CNN from 10% to 62.6% on the CPU path (measured, seed 1).
    assert!(
        eval.confusion.accuracy() > 0.5,
        "accuracy after 20 GPU steps: {}",
        eval.confusion.accuracy()
    );
    assert_eq!(eval.confusion.total(), 500);
    assert_eq!(history.len(), 1);
    assert!(history[0].train_loss.is_finite() && history[0].train_loss < 2.3);
}

#[test]
fn same_seed_gives_bit_identical_gpu_parameters() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let mnist = data(96, 1);
    let a = trained_params(&ctx, &mnist, 7);
    assert_eq!(
        a,
        trained_params(&ctx, &mnist, 7),
        "two GPU runs with the same seed differ"
    );
    assert_ne!(a, trained_params(&ctx, &mnist, 8));
}

#[test]
fn a_diverging_gpu_run_stops_with_an_error() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let mnist = data(256, 1);
    // Adam moves each parameter by about lr per step: 1e38 overflows f32 within a few steps.
    // (Shader compilers may squash NaN activations through ReLU's max, so the GPU detects
    // divergence by its losses, gradients and updated parameters.)
    let mut b = backend(&ctx, 3, Optimizer::adam(1e38));
    let err = train(
        &mut b,
        &mnist.train,
        None,
        &common::config(1, 32, 3, 1e38),
        &mut |_| {},
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with("epoch 1, step ") && text.contains("not finite"),
        "{text}"
    );
}

#[test]
fn cli_on_the_gpu_records_adapter_and_backend() {
    if common::gpu_context().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let model = dir.path().join("m.safetensors");
    let data = bundled_data();
    let args = [
        "train",
        "--backend",
        "gpu",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--test-limit",
        "100",
        "--data-dir",
        data.to_str().unwrap(),
        "--save",
        model.to_str().unwrap(),
        "--metrics-json",
        json.to_str().unwrap(),
    ];
    let out = run_cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "window-system noise reached the user: {stderr}"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let ctx = common::gpu_context().unwrap();
    assert_eq!(metrics["backend"], ctx.backend_name());
    assert_eq!(metrics["adapter"], ctx.info.name);
    // Every op with variants is recorded, so --kernels-from can replay the run.
    let kernels = metrics["kernels"].as_array().unwrap();
    let ops: Vec<&str> = kernels.iter().map(|k| k["op"].as_str().unwrap()).collect();
    for op in [
        "dense_forward",
        "dense_backward_input",
        "dense_backward_weights",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    assert!(kernels
        .iter()
        .all(|k| ["tuned", "cache"].contains(&k["source"].as_str().unwrap())));

    // Replaying the recorded choices pins every one of them.
    let replay = dir.path().join("replay.json");
    let mut args = args.to_vec();
    let at = args
        .iter()
        .position(|a| *a == json.to_str().unwrap())
        .unwrap();
    args[at] = replay.to_str().unwrap();
    args.extend(["--kernels-from", json.to_str().unwrap()]);
    run_cli_ok(&args);
    let replayed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&replay).unwrap()).unwrap();
    let replayed = replayed["kernels"].as_array().unwrap();
    assert_eq!(replayed.len(), kernels.len());
    for (r, k) in replayed.iter().zip(kernels) {
        assert_eq!((&r["op"], &r["variant"]), (&k["op"], &k["variant"]));
        assert_eq!(r["source"], "pinned");
    }
}

#[test]
fn info_kernels_lists_the_variant_of_every_op() {
    if common::gpu_context().is_none() {
        return;
    }
    let stdout = run_cli_ok(&[
        "info",
        "--kernels",
        "--batch-size",
        "5",
        "--autotune",
        "off",
    ]);
    for op in [
        "dense_forward",
        "dense_backward_input",
        "dense_backward_weights",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(op))
            .unwrap_or_else(|| panic!("no {op} line in {stdout}"));
        assert!(
            line.contains("n 5, 1600 -> 10") && line.contains(" rule"),
            "{line}"
        );
    }
    // The columns line up: each starts where its heading does, after a gap, in every row.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("op "))
        .collect();
    let header = table
        .first()
        .unwrap_or_else(|| panic!("no table in {stdout}"));
    let starts: Vec<usize> = ["shape", "variant", "source"]
        .iter()
        .map(|h| header.find(&format!("  {h}")).expect("a heading") + 2)
        .collect();
    assert!(table.len() > 8, "{stdout}");
    for line in &table {
        for &at in &starts {
            let (before, after) = line.split_at(at);
            assert!(
                before.ends_with("  ") && !after.starts_with(' '),
                "column at {at} misaligned:\n{}",
                table.join("\n")
            );
        }
    }
}

#[test]
fn bench_on_the_gpu_writes_every_field() {
    if common::gpu_context().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let data = bundled_data();
    run_cli_ok(&[
        "bench",
        "--backend",
        "gpu",
        "--batch-size",
        "8",
        "--seconds",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--int8",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let ctx = common::gpu_context().unwrap();
    assert_eq!(r["adapter"], ctx.info.name);
    assert_eq!(r["backend"], ctx.backend_name());
    assert_eq!(r["batch_size"], 8);
    common::assert_bench_figures(&r);
    // lavapipe has timestamp queries and Vulkan counts its buffers.
    let share = r["kernel_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 2.0, "{share}");
    assert!(r["gpu_bytes"].as_u64().unwrap() > 0);
    // --int8: the int8 model on this GPU, and float and int8 on the CPU path.
    for field in [
        "int8_images_per_second",
        "cpu_float_images_per_second",
        "cpu_int8_images_per_second",
    ] {
        let rate = r["int8"][field].as_f64();
        assert!(rate.is_some_and(|v| v > 0.0), "{field}: {}", r["int8"]);
    }
}

#[test]
fn check_command_passes_on_the_gl_backend_too() {
    if common::gpu_context().is_none() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
        .args(["check", "--json"])
        .env("WGPU_BACKEND", "gl")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if std::env::var("MNIST_WGPU_REQUIRE_GPU").as_deref() != Ok("1")
        && stderr.contains("no GPU adapter")
    {
        eprintln!("\n*** SKIPPED: no GL adapter (install libegl1 libgl1-mesa-dri) ***\n");
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "check on GL failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backend"], "gl");
    assert_eq!(report["passed"], true);
    assert!(report["checks"].as_array().unwrap().len() > 40);
}

#[test]
fn profile_prints_a_kernel_table_and_writes_a_chrome_trace() {
    if common::gpu_context().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let data = bundled_data();
    let args = [
        "profile",
        "--steps",
        "1",
        "--batch-size",
        "7",
        "--data-dir",
        data.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ];
    let stdout = run_cli_ok(&args);
    assert!(
        stdout.contains("conv2d_forward") && stdout.contains("GFLOP/s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("step (one submit, wall clock, timed beside the profiled steps)"),
        "{stdout}"
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let kernels: Vec<&serde_json::Value> = events.iter().filter(|e| e["cat"] == "kernel").collect();
    // gather, 5 forward, 2 loss, 9+ backward, 1 update: every dispatch of the step is there.
    assert!(kernels.len() >= 18, "{} kernel events", kernels.len());
    for e in kernels {
        assert_eq!(e["ph"], "X");
        assert!(e["dur"].as_f64().unwrap() >= 0.0 && e["ts"].as_f64().unwrap() >= 0.0);
        assert_eq!(e["args"]["workgroups"].as_array().unwrap().len(), 3);
    }
    // The table and the trace name the variant of every op that has several.
    assert!(stdout.contains("variant"), "{stdout}");
    let dense = events
        .iter()
        .find(|e| e["name"].as_str().unwrap().starts_with("dense_matmul"))
        .expect("a dense kernel event");
    let variant = dense["args"]["variant"].as_str().unwrap();
    assert!(
        DENSE_VARIANTS.iter().any(|r| r.variant.name() == variant),
        "{dense}"
    );
}

#[test]
fn profile_times_with_the_method_asked_for() {
    if common::gpu_context().is_none() {
        return;
    }
    let data = bundled_data();
    let args = [
        "profile",
        "--timing",
        "host-clock",
        "--steps",
        "1",
        "--batch-size",
        "7",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let stdout = run_cli_ok(&args);
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.ends_with(", 1 step; host clock, one submit per kernel"),
        "{stdout}"
    );
    assert!(stdout.contains("conv2d_forward"), "{stdout}");
}

/// Before a first tuning, kernels compile on `MNIST_WGPU_COMPILE_THREADS` threads (one per core
/// by default), each on a device of its own: with one (no helper) or more threads than cores,
/// every op is still tuned; a count that is not a whole number of at least 1 is refused.
#[test]
fn kernels_compile_on_the_threads_asked_for() {
    if common::gpu_context().is_none() {
        return;
    }
    let info = |threads: &str, cache: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
            .args(["info", "--kernels", "--batch-size", "7"])
            .env("MNIST_WGPU_COMPILE_THREADS", threads)
            .env("MNIST_WGPU_CACHE_DIR", cache)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    for threads in ["1", "3"] {
        let cache = tempfile::tempdir().unwrap();
        let out = info(threads, cache.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{threads}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tuned = stdout.lines().filter(|l| l.contains(" tuned ")).count();
        assert!(tuned >= 8, "{threads} threads: {tuned} ops tuned\n{stdout}");
    }
    let cache = tempfile::tempdir().unwrap();
    for bad in ["0", "two", "-1"] {
        common::assert_bad_input(
            &info(bad, cache.path()),
            &format!(
                "MNIST_WGPU_COMPILE_THREADS: expected a whole number of at least 1, got '{bad}'"
            ),
        );
    }
}

#[test]
fn every_shader_checks_mode_passes_the_dense_checks_and_a_bad_one_is_refused() {
    if common::gpu_context().is_none() {
        return;
    }
    let check = |mode: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"))
            .args(["check", "--only", "dense"])
            .env("MNIST_WGPU_SHADER_CHECKS", mode)
            .output()
            .unwrap()
    };
    for mode in ["all", "bounds", "none"] {
        let out = check(mode);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    common::assert_bad_input(
        &check("fast"),
        "MNIST_WGPU_SHADER_CHECKS: unknown value 'fast' (expected all, bounds or none)",
    );
}

/// A seed-model backend with every conv2d op pinned to the variant that reads textures (so
/// that its steps have texture copies), on a training set of 7 images.
fn backend_with_texture_copies(ctx: &GpuContext) -> GpuBackend {
    let mut backend = backend(ctx, 1, Optimizer::adam(1e-3));
    backend.set_autotune(AutotuneMode::Off, None, &[]);
    backend.prepare(&[7], &[]).unwrap();
    let pinned: Vec<KernelChoice> = backend
        .kernel_choices()
        .into_iter()
        .filter(|c| c.op.starts_with("conv2d"))
        .map(|c| KernelChoice {
            variant: "register-blocked-texture".into(),
            ..c
        })
        .collect();
    assert!(!pinned.is_empty());
    backend.set_autotune(AutotuneMode::Off, None, &pinned);
    backend
        .set_train_data(&data(7, 1).train)
        .expect("train data");
    backend
}

#[test]
fn the_profiler_times_the_texture_copies_before_a_pass() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let mut profiler = Profiler::new(&ctx);
    let encoders = wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if profiler.source != TimingSource::TimestampsInsidePass || !ctx.features.contains(encoders) {
        eprintln!("SKIPPED: this adapter cannot write timestamps between passes");
        return;
    }
    let mut backend = backend_with_texture_copies(&ctx);
    let indices: Vec<u32> = (0..7).collect();
    let step = profiler.profile_step(&mut backend, &indices).unwrap();
    let copies: Vec<_> = step.iter().filter(|t| t.kernel == TEXTURE_COPIES).collect();
    assert!(copies.len() >= 3, "{} timed copies", copies.len());
    for c in copies {
        assert_eq!(c.variant, "register-blocked-texture", "{c:?}");
        assert!(c.cost.bytes > 0 && c.duration_us >= 0.0, "{c:?}");
    }
}

/// Every method the adapter offers (`profile --timing`) times the same dispatches of a step, in
/// order, and the timestamp methods the texture copies too where timestamps can go between
/// passes; the host clock runs the dispatches one after another.
#[test]
fn every_timing_method_times_every_dispatch_of_a_step() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let offered = TimingSource::offered(ctx.features);
    assert_eq!(offered[0], TimingSource::best(ctx.features));
    assert_eq!(offered.last(), Some(&TimingSource::WallClockPerPass));
    let mut backend = backend_with_texture_copies(&ctx);
    let indices: Vec<u32> = (0..7).collect();
    let mut steps = Vec::new();
    for &source in &offered {
        let step = Profiler::with_source(source)
            .profile_step(&mut backend, &indices)
            .unwrap();
        backend.take_train_stats().unwrap();
        for t in &step {
            assert!(t.duration_us.is_finite() && t.duration_us >= 0.0, "{t:?}");
            assert!(t.start_us.is_finite() && t.start_us >= 0.0, "{t:?}");
        }
        assert!(step.iter().any(|t| t.duration_us > 0.0), "{source:?}");
        let copies = step.iter().filter(|t| t.kernel == TEXTURE_COPIES).count();
        let timed_copies = source != TimingSource::WallClockPerPass
            && ctx
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
        assert_eq!(
            copies >= 3,
            timed_copies,
            "{source:?}: {copies} timed copies"
        );
        if source == TimingSource::WallClockPerPass {
            for pair in step.windows(2) {
                let end = pair[0].start_us + pair[0].duration_us;
                assert!(pair[1].start_us >= end, "{source:?}: {pair:?}");
            }
        }
        steps.push((source, step));
    }
    let names = |step: &[DispatchTiming], with_copies: bool| -> Vec<&str> {
        step.iter()
            .map(|t| t.kernel)
            .filter(|&k| with_copies || k != TEXTURE_COPIES)
            .collect()
    };
    let first = &steps[0].1;
    // gather, 5 forward, 2 loss, 9+ backward, 1 update.
    assert!(names(first, false).len() >= 18);
    for (source, step) in &steps[1..] {
        assert_eq!(names(step, false), names(first, false), "{source:?}");
        if *source != TimingSource::WallClockPerPass {
            assert_eq!(names(step, true), names(first, true), "{source:?}");
        }
    }
}
