//! Every GPU kernel against its CPU twin (the same checks `mnist-wgpu check` runs), and every
//! shader validated by naga, which needs no adapter.

mod common;

use mnist_wgpu::gpu::check::all_checks;

#[test]
fn every_kernel_matches_its_cpu_twin() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let mut failures = Vec::new();
    for check in all_checks() {
        let result = (check.run)(&ctx);
        match result {
            Ok(c) if c.passed => {}
            Ok(c) => failures.push(format!(
                "{} [{}]: max abs {:e}, max rel {:e}",
                check.kernel, check.shape, c.max_abs, c.max_rel
            )),
            Err(e) => failures.push(format!("{} [{}]: {e:#}", check.kernel, check.shape)),
        }
    }
    assert!(
        failures.is_empty(),
        "GPU kernels differ from the CPU:\n{}",
        failures.join("\n")
    );
}

/// The autotuner compiles every chosen kernel by running it as a single workgroup (lavapipe
/// compiles at the first dispatch); the run must stay that small, or preparing a network would
/// cost a step per op.
#[test]
fn compiling_pipelines_runs_one_workgroup_of_each_dispatch() {
    use mnist_wgpu::gpu::activation::ActivationKernels;
    use mnist_wgpu::gpu::kernel::{compile_pipelines, read_buffer, storage_init, WORKGROUP};
    use mnist_wgpu::model::Activation;

    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let len = 3 * WORKGROUP as usize + 5;
    let x = storage_init(&ctx, "x", &vec![2.0f32; len]).unwrap();
    let y = storage_init(&ctx, "y", &vec![-7.0f32; len]).unwrap();
    let relu = ActivationKernels::new(&ctx).forward(
        &ctx,
        Activation::Relu,
        len,
        (&x).into(),
        (&y).into(),
    );
    compile_pipelines(&ctx, &[relu]).unwrap();
    let y = read_buffer::<f32>(&ctx, &y, 0, len).unwrap();
    let (first, rest) = y.split_at(WORKGROUP as usize);
    assert!(first.iter().all(|&v| v == 2.0), "{first:?}");
    assert!(rest.iter().all(|&v| v == -7.0), "{rest:?}");
}
