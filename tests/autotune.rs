//! Kernel autotuning: choices are timed once per adapter and shape, cached on disk and reused,
//! refreshed on request, pinned from an earlier run, and every variant trains like the CPU.
//! Needs an adapter (skips loudly without one; fails with MNIST_WGPU_REQUIRE_GPU=1).

mod common;

use std::path::Path;

use mnist_wgpu::backend::{Backend, KernelChoice};
use mnist_wgpu::config::{AutotuneMode, Optimizer};
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::load_mnist;
use mnist_wgpu::gpu::check::compare;
use mnist_wgpu::gpu::dense;
use mnist_wgpu::gpu::variant::Variant;
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::{init_params, Arch, Plan, MNIST_INPUT};

const BATCH: usize = 7;

fn choices(
    ctx: &GpuContext,
    mode: AutotuneMode,
    cache: &Path,
    pinned: &[KernelChoice],
) -> Vec<KernelChoice> {
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let mut b = GpuBackend::new(
        ctx,
        plan.clone(),
        &init_params(&plan, 3),
        Optimizer::adam(1e-3),
    )
    .unwrap();
    b.set_autotune(mode, Some(cache.to_path_buf()), pinned);
    b.prepare(&[BATCH], &[BATCH]).unwrap();
    b.kernel_choices()
}

fn dense_ops(choices: &[KernelChoice]) -> Vec<&KernelChoice> {
    choices
        .iter()
        .filter(|c| c.op.starts_with("dense"))
        .collect()
}

#[test]
fn choices_are_timed_once_cached_and_reused() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("autotune.json");

    let tuned = choices(&ctx, AutotuneMode::On, &cache, &[]);
    assert_eq!(dense_ops(&tuned).len(), 3, "{tuned:?}");
    for c in &tuned {
        assert_eq!(c.source, "tuned", "{c:?}");
        assert!(c.timings_us.len() >= 2, "every variant timed: {c:?}");
        let fastest = c
            .timings_us
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(&c.variant, fastest.0, "the fastest variant wins: {c:?}");
        assert!(
            c.compile_seconds.keys().eq(c.timings_us.keys()),
            "every variant timed was compiled first, and says how long that took: {c:?}"
        );
    }
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let devices = file["devices"].as_object().unwrap();
    assert_eq!(devices.len(), 1);
    let entries = devices.values().next().unwrap().as_object().unwrap();
    assert_eq!(entries.len(), tuned.len());

    let cached = choices(&ctx, AutotuneMode::On, &cache, &[]);
    assert_eq!(cached.len(), tuned.len());
    for (c, t) in cached.iter().zip(&tuned) {
        assert_eq!((&c.op, &c.shape, &c.variant), (&t.op, &t.shape, &t.variant));
        assert_eq!(c.source, "cache");
        assert!(
            c.compile_seconds.keys().eq([&c.variant]),
            "the cached choice alone is compiled: {c:?}"
        );
    }

    let refreshed = choices(&ctx, AutotuneMode::Refresh, &cache, &[]);
    assert!(refreshed.iter().all(|c| c.source == "tuned"));

    let rule = Variant::for_adapter(&ctx.info).name();
    let off = choices(&ctx, AutotuneMode::Off, &cache, &[]);
    for c in dense_ops(&off) {
        assert_eq!((c.source.as_str(), c.variant.as_str()), ("rule", rule));
        assert!(c.timings_us.is_empty());
    }
}

#[test]
fn an_entry_without_a_newer_variant_is_timed_again() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("autotune.json");
    choices(&ctx, AutotuneMode::On, &cache, &[]);
    // Drop one variant's timing from every entry, as a cache written before that variant
    // existed would have it.
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let dropped = "register-blocked-texture";
    for entries in file["devices"].as_object_mut().unwrap().values_mut() {
        for entry in entries.as_object_mut().unwrap().values_mut() {
            let timings = entry["timings_us"].as_object_mut().unwrap();
            timings.remove(dropped);
            let other = timings.keys().next().unwrap().clone();
            if entry["variant"] == dropped {
                entry["variant"] = other.into();
            }
        }
    }
    std::fs::write(&cache, serde_json::to_vec(&file).unwrap()).unwrap();
    let again = choices(&ctx, AutotuneMode::On, &cache, &[]);
    for c in dense_ops(&again) {
        assert_eq!(c.source, "tuned", "{c:?}");
        assert!(c.timings_us.contains_key(dropped), "{c:?}");
    }
}

#[test]
fn a_corrupt_cache_is_replaced() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("autotune.json");
    std::fs::write(&cache, b"{ not json").unwrap();
    let tuned = choices(&ctx, AutotuneMode::On, &cache, &[]);
    assert!(tuned.iter().all(|c| c.source == "tuned"));
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert!(file["devices"].is_object());
}

/// The variant the rule would not pick on this adapter.
fn other_variant(ctx: &GpuContext) -> Variant {
    let rule = Variant::for_adapter(&ctx.info);
    let variants = dense::kernels::VARIANTS.iter().map(|r| r.variant);
    variants.into_iter().find(|&v| v != rule).unwrap()
}

#[test]
fn pinned_choices_win_and_every_variant_trains_like_the_cpu() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("autotune.json");
    let other = other_variant(&ctx).name();
    let pin: Vec<KernelChoice> = choices(&ctx, AutotuneMode::Off, &cache, &[])
        .into_iter()
        .map(|c| KernelChoice {
            variant: if c.op.starts_with("dense") {
                other.to_string()
            } else {
                c.variant
            },
            ..c
        })
        .collect();
    let pinned = choices(&ctx, AutotuneMode::On, &cache, &pin);
    for c in dense_ops(&pinned) {
        assert_eq!((c.source.as_str(), c.variant.as_str()), ("pinned", other));
    }
    assert!(!cache.exists(), "pinned choices are never timed or cached");

    // Both variants of every dense pass, in a real training run, against the CPU.
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let init = init_params(&plan, 5);
    let mut train = load_mnist(&common::bundled_data()).unwrap().train;
    train = train.truncated(4 * BATCH);
    let mut gpu = GpuBackend::new(&ctx, plan.clone(), &init, Optimizer::adam(1e-3)).unwrap();
    gpu.set_autotune(AutotuneMode::On, Some(cache.clone()), &pin);
    let mut cpu = CpuBackend::new(plan, init, Optimizer::adam(1e-3));
    for b in [&mut gpu as &mut dyn Backend, &mut cpu] {
        b.set_train_data(&train).unwrap();
        for step in 0..4u32 {
            let indices: Vec<u32> = (0..BATCH as u32).map(|i| step * 7 + i).collect();
            b.train_step(&indices).unwrap();
        }
    }
    let (g, c) = (gpu.params().unwrap(), cpu.params().unwrap());
    for (g, c) in g.tensors.iter().zip(&c.tensors) {
        let result = compare(&g.data, &c.data);
        assert!(result.passed, "{}: {result:?}", g.name);
    }
}

#[test]
fn a_pinned_variant_that_does_not_exist_is_an_error() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("autotune.json");
    let mut pin = choices(&ctx, AutotuneMode::Off, &cache, &[]);
    pin[0].variant = "warp-drive".into();
    let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
    let mut b = GpuBackend::new(
        &ctx,
        plan.clone(),
        &init_params(&plan, 3),
        Optimizer::adam(1e-3),
    )
    .unwrap();
    b.set_autotune(AutotuneMode::On, None, &pin);
    let err = b.prepare(&[BATCH], &[BATCH]).unwrap_err().to_string();
    assert!(err.contains("'warp-drive'"), "{err}");
}

/// The subgroup variants are offered only where the adapter runs them and they change the pass,
/// and there the autotuner times them in place of the per-lane forms (which a pin may name).
#[test]
fn subgroup_variants_are_offered_only_where_they_change_the_pass() {
    use mnist_wgpu::cpu::conv2d::Conv2dGeometry;
    use mnist_wgpu::gpu::conv2d::kernels::{Conv2dKernels, VARIANTS};
    use mnist_wgpu::gpu::conv2d::Conv2dPass;
    use mnist_wgpu::model::Shape;

    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let kernels = Conv2dKernels::new(&ctx);
    let conv2 = Conv2dGeometry::new(Shape::new(32, 13, 13), 64, 3);
    let names = |vs: &[Variant]| vs.iter().map(|v| v.name()).collect::<Vec<_>>();
    let input = kernels.offer(&ctx.info, Conv2dPass::BackwardInput, conv2);
    assert_eq!(
        names(&input.variants),
        ["register-blocked", "register-blocked-texture", "tiled"]
    );
    assert_eq!(input.timed, input.variants);
    for pass in [
        Conv2dPass::Forward,
        Conv2dPass::ForwardReluMaxpool,
        Conv2dPass::BackwardWeights,
    ] {
        let offer = kernels.offer(&ctx.info, pass, conv2);
        let subgroups = Variant::named("register-blocked-subgroup");
        if !kernels.builds(subgroups) {
            assert_eq!(offer, input, "{pass:?}");
            continue;
        }
        let registered: Vec<Variant> = VARIANTS.iter().map(|r| r.variant).collect();
        assert_eq!(offer.variants, registered, "{pass:?}");
        let timed = [
            "register-blocked-subgroup",
            "register-blocked-texture-subgroup",
            "tiled",
        ];
        assert_eq!(names(&offer.timed), timed, "{pass:?}");
        // The rule takes the subgroup form of its per-lane choice.
        let rule = match Variant::for_adapter(&ctx.info).name() {
            "register-blocked" => subgroups,
            _ => Variant::TILED,
        };
        assert_eq!(offer.rule, rule, "{pass:?}");
    }
}
