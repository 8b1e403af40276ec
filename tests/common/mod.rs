//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The bundled data set.
pub fn bundled_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// An autotune cache directory private to this test process, so that tests never read or
/// write the user's cache.
pub fn test_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("mnist-wgpu-test-cache-{}", std::process::id()))
}

/// The `mnist-wgpu` binary with `args`, the test process's own autotune cache, and none of the
/// user's settings for logging or the data directory.
pub fn cli_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-wgpu"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MNIST_WGPU_DATA_DIR")
        .env("MNIST_WGPU_CACHE_DIR", test_cache_dir());
    command
}

/// Runs the `mnist-wgpu` binary (see [`cli_command`]).
pub fn run_cli(args: &[&str]) -> Output {
    cli_command(args).output().expect("the binary runs")
}

/// [`run_cli`], asserting that the command succeeded; its standard output.
pub fn run_cli_ok(args: &[&str]) -> String {
    let out = run_cli(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a bad-input failure: exit code 2, one `error:` line containing `needle`, no panic.
pub fn assert_bad_input(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "panic: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected '{needle}' in: {stderr}"
    );
}

/// Asserts a usage error from the flag parser: exit code 2, no panic, clap's message starting
/// with `error:` and keeping its hints (every `needle`), without blank lines or the usage, and
/// ending with " (see --help)".
pub fn assert_usage_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "panic: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.trim_end().ends_with(" (see --help)"), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| !l.trim().is_empty() && !l.starts_with("Usage:")),
        "blank or usage lines: {stderr}"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    }
}

/// An IDX file: big-endian magic and sizes, then the body.
pub fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend(body);
    bytes
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A tiny valid data set (raw files): `train` and `test` images with labels `i % 10`.
pub fn write_tiny_dataset(dir: &Path, train: u32, test: u32) {
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let images: Vec<u8> = (0..n as usize * 784).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_split(dir, prefix, &images, &labels);
    }
}

/// The raw IDX files of one split (`prefix` train or t10k) of 28x28 `images` and `labels`.
pub fn write_split(dir: &Path, prefix: &str, images: &[u8], labels: &[u8]) {
    let n = labels.len() as u32;
    let images_file = dir.join(format!("{prefix}-images-idx3-ubyte"));
    std::fs::write(images_file, idx(0x803, &[n, 28, 28], images)).unwrap();
    let labels_file = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    std::fs::write(labels_file, idx(0x801, &[n], labels)).unwrap();
}

/// A GPU context, or `None` (with a loud message) when this machine has no adapter. With
/// `MNIST_WGPU_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu_context() -> Option<mnist_wgpu::gpu::GpuContext> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(mnist_wgpu::gpu::context::quiet_window_system_noise);
    let ctx = mnist_wgpu::gpu::GpuContext::new(None).expect("opening the GPU");
    if ctx.is_none() {
        if std::env::var("MNIST_WGPU_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("MNIST_WGPU_REQUIRE_GPU=1 but no GPU adapter was found (install mesa-vulkan-drivers)");
        }
        eprintln!("\n*** SKIPPED: no GPU adapter found; install mesa-vulkan-drivers for a software one ***\n");
    }
    ctx
}

/// The fields of a `bench --json` report that every backend fills, and their sanity.
pub fn assert_bench_figures(r: &serde_json::Value) {
    for field in [
        "warmup_seconds",
        "seconds_per_epoch",
        "train_images_per_second",
        "inference_images_per_second",
        "step_gflops",
        "calibration_gflops",
    ] {
        let v = r[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing: {r}"));
        assert!(v.is_finite() && v > 0.0, "{field} = {v}");
    }
    for field in ["arch", "kernel_share", "peak_rss_bytes", "gpu_bytes"] {
        assert!(r.get(field).is_some(), "{field} missing: {r}");
    }
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    // Consistent with each other: an epoch at the measured rate.
    let epoch =
        r["epoch_images"].as_f64().unwrap() / r["train_images_per_second"].as_f64().unwrap();
    assert!((epoch / r["seconds_per_epoch"].as_f64().unwrap() - 1.0).abs() < 1e-9);
}

/// A constant-rate training configuration.
pub fn config(
    epochs: usize,
    batch_size: usize,
    seed: u64,
    lr: f32,
) -> mnist_wgpu::config::TrainConfig {
    mnist_wgpu::config::TrainConfig {
        epochs,
        batch_size,
        seed,
        lr,
        schedule: mnist_wgpu::config::Schedule::Constant,
        early_stopping: None,
        augment: None,
        prune: None,
    }
}
