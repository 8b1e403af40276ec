//! Every GPU kernel against its CPU twin (the same checks `mnist-wgpu check` runs), one test per
//! op of `gpu::ops::OPS`.

mod common;

use mnist_wgpu::gpu::ops::OPS;

/// Runs every cross-check of `op` on the test adapter and fails with all that differ.
fn cross_check(op: &str) {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let op = OPS
        .iter()
        .find(|o| o.name == op)
        .expect("an op of gpu::ops::OPS");
    let checks = (op.checks)();
    assert!(!checks.is_empty(), "{} has no cross-checks", op.name);
    let mut failures = Vec::new();
    // Kernels this adapter does not run (it lacks a feature they need) are left out.
    for check in checks.iter().filter(|c| c.applies(&ctx)) {
        match (check.run)(&ctx) {
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

/// One test per op, so that `cargo test --release conv2d` runs just that op's checks.
macro_rules! cross_checks {
    ($($op:ident),* $(,)?) => {
        mod cross_check {
            $(#[test]
            fn $op() {
                super::cross_check(stringify!($op));
            })*
        }
        const TESTED: &[&str] = &[$(stringify!($op)),*];
    };
}

cross_checks!(
    gather,
    texture,
    augment,
    conv2d,
    activation,
    pool2d,
    dropout,
    batchnorm,
    dense,
    gemm,
    softmax_xent,
    distill,
    optim,
    int8,
    int8_net,
    training_step,
);

#[test]
fn every_op_has_a_cross_check_test() {
    let mut listed: Vec<&str> = OPS.iter().map(|o| o.name).collect();
    let mut tested = TESTED.to_vec();
    listed.sort();
    tested.sort();
    assert_eq!(listed, tested, "add the op to cross_checks! above");
}

/// The autotuner compiles every chosen kernel by running it as a single workgroup (lavapipe
/// compiles at the first dispatch); the run must stay that small, or preparing a network would
/// cost a step per op.
#[test]
fn compiling_pipelines_runs_one_workgroup_of_each_dispatch() {
    use mnist_wgpu::gpu::activation::ActivationKernels;
    use mnist_wgpu::gpu::buffer::{read_buffer, storage_init};
    use mnist_wgpu::gpu::kernel::{compile_pipelines, WORKGROUP};
    use mnist_wgpu::model::Activation;

    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let len = 3 * WORKGROUP as usize + 5;
    let x = storage_init(&ctx, "x", &vec![2.0f32; len]).unwrap();
    let y = storage_init(&ctx, "y", &vec![-7.0f32; len]).unwrap();
    let relu =
        ActivationKernels::new(&ctx).forward(&ctx, Activation::Relu, len, (&x).into(), (&y).into());
    compile_pipelines(&ctx, &[relu]).unwrap();
    let y = read_buffer::<f32>(&ctx, &y, 0, len).unwrap();
    let (first, rest) = y.split_at(WORKGROUP as usize);
    assert!(first.iter().all(|&v| v == 2.0), "{first:?}");
    assert!(rest.iter().all(|&v| v == -7.0), "{rest:?}");
}

/// The autotuner judges a variant that may be hopeless by the first part of its workgroups;
/// that part must do what those workgroups do in the whole dispatch, also where the grid is
/// folded into rows past 65,535 workgroups.
#[test]
fn a_part_of_a_dispatch_does_the_first_part_of_its_work() {
    use mnist_wgpu::gpu::activation::ActivationKernels;
    use mnist_wgpu::gpu::buffer::{read_buffer, storage_init};
    use mnist_wgpu::gpu::kernel::WORKGROUP;
    use mnist_wgpu::model::Activation;

    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let row = 65_535 * WORKGROUP as usize;
    for (len, parts, done) in [
        (3 * WORKGROUP as usize + 5, 2, 2 * WORKGROUP as usize),
        (2 * row + 100, 2, 2 * row),
    ] {
        let x = storage_init(&ctx, "x", &vec![2.0f32; len]).unwrap();
        let y = storage_init(&ctx, "y", &vec![-7.0f32; len]).unwrap();
        let relu = ActivationKernels::new(&ctx).forward(
            &ctx,
            Activation::Relu,
            len,
            (&x).into(),
            (&y).into(),
        );
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        relu.record_part(&mut encoder.begin_compute_pass(&Default::default()), parts);
        ctx.queue.submit([encoder.finish()]);
        let y = read_buffer::<f32>(&ctx, &y, 0, len).unwrap();
        let (first, rest) = y.split_at(done);
        assert!(
            first.iter().all(|&v| v == 2.0),
            "len {len}: the part's work"
        );
        assert!(rest.iter().all(|&v| v == -7.0), "len {len}: past the part");
    }
}
