//! Adapter choice and the device: discrete GPU first, then integrated, then anything else;
//! `--adapter SUBSTRING` picks by name and `WGPU_BACKEND` (vulkan, metal, dx12, gl) restricts
//! the APIs searched. Device errors are recorded, never panicked on, and surface as one-line
//! errors at the next read-back.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use crate::error::{bad_input, DeviceLost};

/// A device and queue on the chosen adapter, created with every limit the adapter offers.
/// Cloning shares the device.
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The runtime checks every shader is compiled with.
    pub shader_checks: ShaderChecks,
    errors: Arc<Mutex<Option<DeviceError>>>,
    /// What [`GpuContext::built_once`] keeps, one value per type, for as long as any clone of
    /// the context lives.
    built: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

/// The first error the device reported, and whether it was the device's loss.
struct DeviceError {
    message: String,
    lost: bool,
}

/// Mesa's window-system code prints "XDG_RUNTIME_DIR is invalid or not set" even for compute.
/// Pointing the variable at a private directory silences it. Call before any thread starts.
pub fn quiet_window_system_noise() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if valid {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mnist-wgpu-runtime-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter of the APIs that `WGPU_BACKEND` allows (all of them when unset).
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance().enumerate_adapters(backends))
}

/// Lower is better: discrete, integrated, virtual, then software and unknown.
fn preference(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// The best adapter, or the best whose name contains `name` (case-insensitive). `Ok(None)`
/// when there is no adapter at all; an error when `name` matches none of those that exist.
pub fn choose_adapter(name: Option<&str>) -> Result<Option<wgpu::Adapter>> {
    let mut adapters = list_adapters();
    // Prefer Vulkan/Metal/DX12 over GL for the same kind of device: GL lacks features we use.
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            preference(info.device_type),
            info.backend == wgpu::Backend::Gl,
        )
    });
    let Some(name) = name else {
        return Ok(adapters.into_iter().next());
    };
    let wanted = name.to_lowercase();
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            format!("{} ({})", info.name, info.backend.to_str())
        })
        .collect();
    match adapters
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
    {
        Some(a) => Ok(Some(a)),
        None if names.is_empty() => {
            Err(bad_input(format!("--adapter {name}: no GPU adapter found")))
        }
        None => Err(bad_input(format!(
            "--adapter {name}: no adapter matches; found: {}",
            names.join(", ")
        ))),
    }
}

impl GpuContext {
    /// A context on the adapter that [`choose_adapter`] picks, or `None` without an adapter.
    pub fn new(adapter_name: Option<&str>) -> Result<Option<GpuContext>> {
        match choose_adapter(adapter_name)? {
            Some(adapter) => Ok(Some(GpuContext::on_adapter(&adapter)?)),
            None => Ok(None),
        }
    }

    pub fn on_adapter(adapter: &wgpu::Adapter) -> Result<GpuContext> {
        let shader_checks = ShaderChecks::from_env()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Timestamps only serve the profiler, subgroups one kernel variant; take them where the
        // adapter has them.
        let optional = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP;
        let features = adapter.features() & optional;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("mnist-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = match pollster::block_on(adapter.request_device(&descriptor)) {
            Ok(pair) => pair,
            Err(e) => bail!("adapter '{}': cannot open the device: {e}", info.name),
        };
        let errors = Arc::new(Mutex::new(None));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            record(&sink, e.to_string(), false)
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |_, message| {
            let why = match message.trim() {
                "" => String::new(),
                message => format!(": {message}"),
            };
            record(&sink, format!("the GPU device was lost{why}"), true)
        });
        log::debug!(
            "GPU adapter: {} ({:?}, {:?}, driver {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver
        );
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            shader_checks,
            errors,
            built: Arc::default(),
        })
    }

    /// The value of type `T` built on this device, built by `build` the first time it is
    /// asked for. The compiled kernels live here: building them means compiling every shader
    /// module (and, at the first dispatch, each pipeline), so backends made one after another
    /// on one context (a search's trials) share them, and compile each pipeline once. They die
    /// with the last clone of the context, never outliving the device.
    pub fn built_once<T: Any + Send + Sync>(&self, build: impl FnOnce() -> T) -> Arc<T> {
        let mut built = self.built.lock().expect("the built values");
        let value = (built.entry(TypeId::of::<T>()))
            .or_insert_with(|| Arc::new(build()) as Arc<dyn Any + Send + Sync>)
            .clone();
        value.downcast().expect("stored under its own type")
    }

    /// A second device on the same adapter (its own queue, so its own compiler thread on
    /// lavapipe).
    pub fn sibling(&self) -> Result<GpuContext> {
        let adapter = list_adapters()
            .into_iter()
            .find(|a| a.get_info() == self.info)
            .ok_or_else(|| anyhow::anyhow!("adapter '{}' is gone", self.info.name))?;
        GpuContext::on_adapter(&adapter)
    }

    /// `vulkan`, `metal`, `dx12` or `gl`.
    pub fn backend_name(&self) -> String {
        self.info.backend.to_str().to_string()
    }

    /// Fails with the first device error recorded since the context was made.
    pub fn check_errors(&self) -> Result<()> {
        match self.errors.lock().expect("error slot").as_ref() {
            Some(e) => {
                let message = format!(
                    "GPU error on '{}': {}",
                    self.info.name,
                    first_line(&e.message)
                );
                match e.lost {
                    true => Err(anyhow::Error::new(DeviceLost(message))),
                    false => bail!(message),
                }
            }
            None => Ok(()),
        }
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.poll(wgpu::PollType::wait_indefinitely())
    }

    /// Polls the device, failing with the first device error recorded. A failed poll usually
    /// follows a submission that failed because the device is gone: one more poll lets wgpu
    /// run the device-lost callback, so that the error says so rather than naming a submission.
    pub fn poll(&self, poll: wgpu::PollType) -> Result<()> {
        if let Err(e) = self.device.poll(poll) {
            self.check_errors()?;
            let _ = self.device.poll(wgpu::PollType::Poll);
            self.check_errors()?;
            bail!("GPU error on '{}': {e}", self.info.name);
        }
        self.check_errors()
    }
}

fn record(slot: &Mutex<Option<DeviceError>>, message: String, lost: bool) {
    log::debug!("GPU: {message}");
    let mut slot = slot.lock().expect("error slot");
    // The first error is the cause; a loss that follows it is still a loss, so that the user
    // hears the run can be resumed.
    match slot.as_mut() {
        None => *slot = Some(DeviceError { message, lost }),
        Some(first) => first.lost |= lost,
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
}

/// Which of naga's runtime checks the shaders are compiled with, from
/// `MNIST_WGPU_SHADER_CHECKS`:
/// - `bounds` (the default): indices clamped into their arrays (where the driver does not
///   guarantee that itself), but no loop bounds (except in the register-blocked kernels, see
///   [`super::kernel::compile_register_blocked`]). naga bounds every loop with a counter so that untrusted
///   shaders cannot hang; on an NVIDIA H200 that counter made the training step 1.9x slower
///   (it stops the driver from unrolling), and our loops all end.
/// - `all`: WebGPU's checks, loop bounds included.
/// - `none`: no checks at all, to measure what the clamping costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShaderChecks {
    All,
    Bounds,
    None,
}

impl ShaderChecks {
    pub const VARIABLE: &'static str = "MNIST_WGPU_SHADER_CHECKS";

    pub fn from_env() -> Result<ShaderChecks> {
        match std::env::var(Self::VARIABLE) {
            Err(std::env::VarError::NotPresent) => Ok(ShaderChecks::Bounds),
            Ok(value) => match value.as_str() {
                "all" => Ok(ShaderChecks::All),
                "bounds" | "" => Ok(ShaderChecks::Bounds),
                "none" => Ok(ShaderChecks::None),
                other => Err(bad_input(format!(
                    "{}: unknown value '{other}' (expected all, bounds or none)",
                    Self::VARIABLE
                ))),
            },
            Err(_) => Err(bad_input(format!(
                "{}: the value is not valid UTF-8",
                Self::VARIABLE
            ))),
        }
    }
}
