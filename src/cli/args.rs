//! The argument groups that several subcommands share (architecture, data, device, kernel
//! choice), and what they resolve to: the data set, the backend, checked output paths.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;
use clap::{Args, ValueEnum};

use mnist_wgpu::backend::{Backend, KernelChoice};
use mnist_wgpu::checkpoint_int8::AnyCheckpoint;
use mnist_wgpu::config::{AutotuneMode, Optimizer};
use mnist_wgpu::cpu::{CpuBackend, Int8Backend};
use mnist_wgpu::data::{load_bundled_mnist, load_mnist, Mnist};
use mnist_wgpu::error::bad_input;
use mnist_wgpu::fsutil::{output_dir_problem, output_file_problem};
use mnist_wgpu::gpu::autotune::default_cache_path;
use mnist_wgpu::gpu::context::list_adapters;
use mnist_wgpu::gpu::int8_backend::GpuInt8Backend;
use mnist_wgpu::gpu::{GpuBackend, GpuContext};
use mnist_wgpu::model::{spec_from_file, Arch, Params, Plan, MNIST_INPUT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The GPU when an adapter exists, else the CPU reference path.
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerChoice {
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// SGD with momentum.
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleChoice {
    Constant,
    /// Multiply by --lr-gamma every --lr-step-epochs epochs.
    Step,
    /// Cosine down to 0 over the run.
    Cosine,
    /// Linear warm-up over --warmup-fraction of the run, then cosine down (PyTorch OneCycleLR).
    Onecycle,
}

/// The model: `--arch` or `--arch-file`.
#[derive(Args, Debug)]
pub struct ArchArgs {
    /// Architecture: a preset, seed (the tutorial CNN) or strong (our most accurate, see
    /// `summary --arch strong`), or a spec such as conv32k3-relu-pool2-flatten-dense10.
    #[arg(long, default_value = "seed")]
    pub arch: String,
    /// Read the architecture spec from a file: layers joined by '-' or on separate lines,
    /// '#' starts a comment.
    #[arg(long, value_name = "PATH", conflicts_with = "arch")]
    pub arch_file: Option<PathBuf>,
}

impl ArchArgs {
    /// The parsed architecture and its plan on MNIST, or a bad-input error naming the flag.
    pub fn plan(&self) -> Result<(Arch, Plan)> {
        let (spec, source) = match &self.arch_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad_input(format!("--arch-file {}: {e}", path.display())))?;
                (
                    spec_from_file(&text),
                    format!("--arch-file {}", path.display()),
                )
            }
            None => (self.arch.clone(), "--arch".to_string()),
        };
        let fail = |e: String| bad_input(format!("{source}: {e}"));
        let arch = Arch::parse(&spec).map_err(fail)?;
        let plan = Plan::new(&arch, MNIST_INPUT).map_err(fail)?;
        Ok((arch, plan))
    }
}

/// Flags shared by the commands that read MNIST.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Directory with the four MNIST IDX files (gzipped or raw) [default: $MNIST_WGPU_DATA_DIR,
    /// else the copy of data/mnist built into the program].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N test images.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub test_limit: Option<u64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl DataArgs {
    /// These flags as a command line would give them (a search passes them to its trials).
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut push = |flag: &str, value: String| flags.extend([flag.to_string(), value]);
        if let Some(dir) = &self.data_dir {
            push("--data-dir", dir.display().to_string());
        }
        if let Some(n) = self.test_limit {
            push("--test-limit", n.to_string());
        }
        let device = &self.device;
        let name = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
            v().map_or(String::new(), |v| v.get_name().to_string())
        };
        if let Some(backend) = device.backend {
            push("--backend", name(&|| backend.to_possible_value()));
        }
        if let Some(adapter) = &device.adapter {
            push("--adapter", adapter.clone());
        }
        let autotune = device.kernels.autotune;
        push("--autotune", name(&|| autotune.to_possible_value()));
        if let Some(path) = &device.kernels.kernels_from {
            push("--kernels-from", path.display().to_string());
        }
        flags
    }
}

/// Where a model runs: the backend, the adapter and the kernel choices.
#[derive(Args, Debug)]
pub struct DeviceArgs {
    /// Where to run: auto (the best GPU adapter, else the CPU), cpu or gpu [default: auto; with
    /// train --resume, the device the run trained on].
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Use the GPU adapter whose name contains this text (see `mnist-wgpu info`).
    #[arg(long, value_name = "SUBSTRING")]
    pub adapter: Option<String>,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

impl DeviceArgs {
    pub fn backend(&self) -> BackendChoice {
        self.backend.unwrap_or(BackendChoice::Auto)
    }

    /// Whether the user chose the device (--backend or --adapter).
    pub fn chosen(&self) -> bool {
        self.backend.is_some() || self.adapter.is_some()
    }
}

/// How the GPU path picks its kernel variants.
#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// on: reuse cached choices, time what is new; off: fixed rule, no timing; refresh: time
    /// everything again.
    #[arg(long, value_enum, default_value_t = AutotuneChoice::On)]
    pub autotune: AutotuneChoice,
    /// Run the kernel variants recorded in this metrics JSON (reproduces that run exactly).
    #[arg(long, value_name = "METRICS_JSON")]
    pub kernels_from: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AutotuneChoice {
    On,
    Off,
    Refresh,
}

impl KernelArgs {
    /// Reads `--kernels-from` (whatever the backend, so a bad file is always reported).
    pub fn load(&self) -> Result<Tuning> {
        let mode = match self.autotune {
            AutotuneChoice::On => AutotuneMode::On,
            AutotuneChoice::Off => AutotuneMode::Off,
            AutotuneChoice::Refresh => AutotuneMode::Refresh,
        };
        let pinned = match &self.kernels_from {
            Some(path) => read_kernel_choices(path)?,
            None => Vec::new(),
        };
        Ok(Tuning { mode, pinned })
    }
}

/// The kernel flags, read.
pub struct Tuning {
    pub mode: AutotuneMode,
    pub pinned: Vec<KernelChoice>,
}

impl Tuning {
    /// The autotune mode with the user's cache, and any pinned choices.
    pub fn apply(&self, backend: &mut GpuBackend) {
        backend.set_autotune(self.mode, default_cache_path(), &self.pinned);
    }
}

/// The `kernels` list of a metrics JSON.
pub fn read_kernel_choices(path: &std::path::Path) -> Result<Vec<KernelChoice>> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        kernels: Vec<KernelChoice>,
    }
    let fail = |why: String| bad_input(format!("--kernels-from {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let recorded: Recorded = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("not a metrics JSON with a kernels list ({e})")))?;
    Ok(recorded.kernels)
}

/// The variable naming the data directory where `--data-dir` is not given.
pub const DATA_DIR_VAR: &str = "MNIST_WGPU_DATA_DIR";

/// The data directory: `--data-dir`, else `$MNIST_WGPU_DATA_DIR` (set and not empty), else
/// `None` for the copy of MNIST built into the program. A directory that does not exist is a
/// bad input naming the flag or the variable.
pub fn data_dir(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    let (dir, source) = match (flag, std::env::var_os(DATA_DIR_VAR)) {
        (Some(dir), _) => (dir.to_path_buf(), "--data-dir "),
        (None, Some(var)) if !var.is_empty() => (PathBuf::from(var), "MNIST_WGPU_DATA_DIR="),
        _ => return Ok(None),
    };
    if !dir.is_dir() {
        return Err(bad_input(format!(
            "{source}{}: data directory not found",
            dir.display()
        )));
    }
    Ok(Some(dir))
}

/// MNIST from `dir`, or the copy built into the program (see [`data_dir`]).
pub fn load_mnist_from(dir: Option<&Path>) -> Result<Mnist> {
    match dir {
        Some(dir) => load_mnist(dir),
        None => load_bundled_mnist(),
    }
}

/// A bad-input error unless a file can be written at `path`: the value of `flag` or, for a
/// flag naming a directory, a file in it. Checked before any work, so that a run never fails
/// at its end for an output path it could have refused at its start.
pub fn check_output_file(flag: &str, value: &Path, path: &Path) -> Result<()> {
    output_error(flag, value, output_file_problem(path))
}

/// A bad-input error unless `value` of `flag` is, or can become, a directory.
pub fn check_output_dir(flag: &str, value: &Path) -> Result<()> {
    output_error(flag, value, output_dir_problem(value))
}

fn output_error(flag: &str, value: &Path, problem: Option<(PathBuf, String)>) -> Result<()> {
    let Some((path, why)) = problem else {
        return Ok(());
    };
    let culprit = if path == value {
        String::new()
    } else {
        format!("{} ", path.display())
    };
    Err(bad_input(format!(
        "{flag} {}: {culprit}{why}",
        value.display()
    )))
}

/// The GPU the flags ask for, or `None` for the CPU: `auto` takes the best adapter and falls back
/// to the CPU with a warning; `gpu` without an adapter is an error.
pub fn gpu_context(device: &DeviceArgs) -> Result<Option<GpuContext>> {
    if device.backend() == BackendChoice::Cpu {
        return Ok(None);
    }
    let adapter = device.adapter.as_deref();
    let fits = |ctx: &GpuContext| {
        adapter.is_none_or(|name| (ctx.info.name.to_lowercase()).contains(&name.to_lowercase()))
    };
    match shared_or_open(fits, || GpuContext::new(adapter))? {
        Some(ctx) => Ok(Some(ctx)),
        None if device.backend() == BackendChoice::Gpu => Err(bad_input(format!(
            "--backend gpu: no GPU adapter found; {SOFTWARE_ADAPTER_HINT}, or use --backend cpu"
        ))),
        None => {
            errln!("warning: no GPU adapter found, running on the CPU reference path; {SOFTWARE_ADAPTER_HINT}");
            Ok(None)
        }
    }
}

/// A context on the adapter named exactly `name` of the GPU API `api` (`vulkan`, `gl`...), or
/// `None` where there is none or it does not open.
pub fn exact_gpu_context(api: &str, name: &str) -> Option<GpuContext> {
    let fits = |ctx: &GpuContext| ctx.info.name == name && ctx.backend_name() == api;
    let open = || {
        let adapter = list_adapters().into_iter().find(|a| {
            let info = a.get_info();
            info.name == name && info.backend.to_str() == api
        });
        let ctx = adapter.and_then(|adapter| {
            (GpuContext::on_adapter(&adapter))
                .map_err(|e| log::debug!("{e:#}"))
                .ok()
        });
        Ok(ctx)
    };
    shared_or_open(fits, open).ok().flatten()
}

/// While a search runs, the GPU context its trials share: `None` when not sharing, `Some(None)`
/// until a trial opens one. The compiled kernels live in the context
/// ([`GpuContext::built_once`]), so sharing it compiles each pipeline once for the whole
/// search rather than once per trial (each trial still builds its own backend: buffers,
/// parameters, optimiser state, so it computes what it would alone, bit for bit).
static SHARED_GPU: Mutex<Option<Option<GpuContext>>> = Mutex::new(None);

/// Shares one GPU context between the runs of this process from now on (a search's trials),
/// or stops and lets it go.
pub fn share_gpu_context(on: bool) {
    *SHARED_GPU.lock().expect("the shared GPU context") = on.then_some(None);
}

/// The shared context where one is shared, `fits` and has reported no error (a trial that
/// lost or broke the device leaves it to no other); else `open`'s, shared from then on.
fn shared_or_open(
    fits: impl Fn(&GpuContext) -> bool,
    open: impl FnOnce() -> Result<Option<GpuContext>>,
) -> Result<Option<GpuContext>> {
    let mut shared = SHARED_GPU.lock().expect("the shared GPU context");
    let Some(slot) = shared.as_mut() else {
        drop(shared);
        return open();
    };
    if let Some(ctx) = (slot.as_ref()).filter(|ctx| fits(ctx) && ctx.check_errors().is_ok()) {
        log::debug!("reusing the search's GPU context and its compiled kernels");
        return Ok(Some(ctx.clone()));
    }
    let ctx = open()?;
    if let Some(ctx) = &ctx {
        *slot = Some(ctx.clone());
    }
    Ok(ctx)
}

/// Builds the backend the user asked for (see [`gpu_context`]).
pub fn make_backend(
    device: &DeviceArgs,
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
) -> Result<Box<dyn Backend>> {
    let tuning = device.kernels.load()?;
    backend_on(gpu_context(device)?, &tuning, plan, params, optimizer)
}

/// The backend that runs a saved model for inference (`eval`, `predict`): a float model on
/// the float path, an int8 model on the integer kernels (`gpu/int8.rs`) or, on the CPU, the
/// integer reference; either picks the device as training does (`auto`: the GPU if any).
pub fn inference_backend(
    device: &DeviceArgs,
    checkpoint: AnyCheckpoint,
) -> Result<Box<dyn Backend>> {
    match checkpoint {
        // Inference never steps the optimiser; any choice will do.
        AnyCheckpoint::Float(c) => make_backend(device, c.plan, c.params, Optimizer::adam(1e-3)),
        AnyCheckpoint::Int8(c) => match gpu_context(device)? {
            Some(ctx) => Ok(Box::new(GpuInt8Backend::new(&ctx, c.model)?)),
            None => {
                log::debug!("backend: CPU int8 path");
                Ok(Box::new(Int8Backend::new(c.model)))
            }
        },
    }
}

/// The backend on `ctx`, or on the CPU reference path for `None`.
pub fn backend_on(
    ctx: Option<GpuContext>,
    tuning: &Tuning,
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
) -> Result<Box<dyn Backend>> {
    if let Some(ctx) = ctx {
        let mut backend = GpuBackend::new(&ctx, plan, &params, optimizer)?;
        tuning.apply(&mut backend);
        return Ok(Box::new(backend));
    }
    log::debug!("backend: CPU reference path");
    Ok(Box::new(CpuBackend::new(plan, params, optimizer)))
}

const SOFTWARE_ADAPTER_HINT: &str =
    "for a software Vulkan adapter install Mesa's drivers (apt-get install mesa-vulkan-drivers libvulkan1)";
