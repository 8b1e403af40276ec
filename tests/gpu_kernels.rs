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
