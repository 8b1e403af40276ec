//! `info` (the adapters and their limits, and with `--kernels` the kernel variants a model
//! runs) and `check` (every kernel against its CPU twin).

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::args::ArchArgs;
use super::args::KernelArgs;
use super::print::align_columns;
use mnist_wgpu::backend::Backend;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::gpu::check::{ATOL, RTOL};
use mnist_wgpu::gpu::context::{choose_adapter, list_adapters};
use mnist_wgpu::gpu::ops::all_checks;
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::init_params;
use mnist_wgpu::text::count;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Also list the kernel variant that each op of a model runs on the chosen adapter, and
    /// why (autotuning first where needed).
    #[arg(long)]
    kernels: bool,
    #[command(flatten)]
    arch: ArchArgs,
    /// With --kernels: the batch size.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch_size: u64,
    /// With --kernels: the GPU adapter whose name contains this text.
    #[arg(long, value_name = "SUBSTRING")]
    adapter: Option<String>,
    #[command(flatten)]
    tuning: KernelArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Use the GPU adapter whose name contains this text.
    #[arg(long, value_name = "SUBSTRING")]
    adapter: Option<String>,
    /// Run only the checks whose kernel name contains this text (e.g. `batchnorm`).
    #[arg(long, value_name = "SUBSTRING")]
    only: Option<String>,
}

pub fn info(args: InfoArgs) -> Result<()> {
    list_adapters_with_limits()?;
    if args.kernels {
        print_kernels(&args)?;
    }
    Ok(())
}

fn list_adapters_with_limits() -> Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        outln!("no GPU adapter found; for a software one install mesa-vulkan-drivers (Vulkan) or libgl1-mesa-dri (GL)");
        return Ok(());
    }
    let chosen = choose_adapter(None)?.map(|a| a.get_info());
    for adapter in adapters {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mark = if chosen.as_ref() == Some(&info) {
            "  (chosen by default)"
        } else {
            ""
        };
        outln!("{}{mark}", info.name);
        outln!(
            "  backend {}, {:?}, driver {} {}",
            info.backend.to_str(),
            info.device_type,
            info.driver,
            info.driver_info
        );
        outln!(
            "  max storage buffer binding {} MiB, max uniform buffer binding {} KiB, max buffer {} MiB, workgroup storage {} KiB, invocations per workgroup {}, workgroups per dimension {}",
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_uniform_buffer_binding_size >> 10,
            limits.max_buffer_size >> 20,
            limits.max_compute_workgroup_storage_size >> 10,
            limits.max_compute_invocations_per_workgroup,
            limits.max_compute_workgroups_per_dimension
        );
        let yes_no = |feature| {
            if adapter.features().contains(feature) {
                "yes"
            } else {
                "no"
            }
        };
        outln!(
            "  timestamp queries: {}, subgroups: {}",
            yes_no(wgpu::Features::TIMESTAMP_QUERY),
            yes_no(wgpu::Features::SUBGROUP)
        );
    }
    Ok(())
}

/// Compiles the training and inference networks of `--arch` at `--batch-size` and prints the
/// variant of every op that has several.
fn print_kernels(args: &InfoArgs) -> Result<()> {
    let (arch, plan) = args.arch.plan()?;
    let tuning = args.tuning.load()?;
    let ctx = GpuContext::new(args.adapter.as_deref())?
        .ok_or_else(|| bad_input("info --kernels: no GPU adapter found"))?;
    let params = init_params(&plan, 0);
    let mut backend = GpuBackend::new(&ctx, plan, &params, Optimizer::adam(1e-3))?;
    tuning.apply(&mut backend);
    let start = Instant::now();
    let n = args.batch_size as usize;
    backend.prepare(&[n], &[n])?;
    outln!(
        "\nkernels for {arch}, batch {}, on {} ({}); ready in {:.2} s",
        args.batch_size,
        ctx.info.name,
        ctx.backend_name(),
        start.elapsed().as_secs_f64()
    );
    let header = ["op", "shape", "variant", "source"].map(String::from);
    let timings_header = "timings (us per run; compile seconds where compiled now)";
    let mut rows = vec![header.into_iter().chain([timings_header.into()]).collect()];
    for c in backend.kernel_choices() {
        let timings: Vec<String> = c
            .timings_us
            .iter()
            .map(|(variant, us)| match c.compile_seconds.get(variant) {
                Some(s) => format!("{variant} {us:.0} (compiled in {s:.2} s)"),
                None => format!("{variant} {us:.0}"),
            })
            .collect();
        rows.push(vec![c.op, c.shape, c.variant, c.source, timings.join(", ")]);
    }
    for line in align_columns(&rows) {
        outln!("{line}");
    }
    Ok(())
}

#[derive(Serialize)]
struct CheckRow {
    kernel: String,
    shape: String,
    max_abs_error: f64,
    max_rel_error: f64,
    passed: bool,
    error: Option<String>,
}

pub fn check(args: CheckArgs) -> Result<()> {
    let ctx = GpuContext::new(args.adapter.as_deref())?.ok_or_else(|| {
        bad_input("check: no GPU adapter found; install mesa-vulkan-drivers for a software Vulkan adapter")
    })?;
    let start = Instant::now();
    let selected: Vec<_> = all_checks()
        .into_iter()
        .filter(|check| {
            args.only
                .as_ref()
                .is_none_or(|only| check.kernel.contains(only.as_str()))
        })
        // Kernels this adapter does not run (it lacks a feature they need) are left out.
        .filter(|check| check.applies(&ctx))
        .collect();
    if selected.is_empty() {
        return Err(bad_input(format!(
            "--only {}: no check's kernel name contains it",
            args.only.as_deref().unwrap_or_default()
        )));
    }
    let rows: Vec<CheckRow> = selected
        .into_iter()
        .map(|check| {
            let (comparison, error) = match (check.run)(&ctx) {
                Ok(c) => (c, None),
                Err(e) => (Default::default(), Some(format!("{e:#}"))),
            };
            CheckRow {
                kernel: check.kernel,
                shape: check.shape,
                max_abs_error: comparison.max_abs,
                max_rel_error: comparison.max_rel,
                passed: comparison.passed && error.is_none(),
                error,
            }
        })
        .collect();
    let failed = rows.iter().filter(|r| !r.passed).count();
    if args.json {
        let report = serde_json::json!({
            "adapter": ctx.info.name, "backend": ctx.backend_name(), "rtol": RTOL, "atol": ATOL,
            "passed": failed == 0, "checks": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&ctx, &rows);
        outln!(
            "\n{} passed, {failed} failed ({:.1} s)",
            rows.len() - failed,
            start.elapsed().as_secs_f64()
        );
    }
    if failed > 0 {
        anyhow::bail!(
            "{} failed on '{}'",
            count(failed, "GPU kernel check"),
            ctx.info.name
        );
    }
    Ok(())
}

fn print_table(ctx: &GpuContext, rows: &[CheckRow]) {
    outln!(
        "adapter {} ({}); pass: |gpu - cpu| <= {RTOL:e} |cpu| + {ATOL:e} max(1, max |cpu|)\n",
        ctx.info.name,
        ctx.backend_name()
    );
    let width = rows
        .iter()
        .map(|r| r.kernel.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let shape_width = rows.iter().map(|r| r.shape.len()).max().unwrap_or(5).max(5);
    outln!(
        "{:width$}  {:shape_width$}  {:>12}  {:>12}  result",
        "kernel",
        "shape",
        "max abs err",
        "max rel err"
    );
    for r in rows {
        let result = match (&r.error, r.passed) {
            (Some(e), _) => format!("ERROR {e}"),
            (None, true) => "pass".into(),
            (None, false) => "FAIL".into(),
        };
        outln!(
            "{:width$}  {:shape_width$}  {:>12.3e}  {:>12.3e}  {result}",
            r.kernel,
            r.shape,
            r.max_abs_error,
            r.max_rel_error
        );
    }
}
