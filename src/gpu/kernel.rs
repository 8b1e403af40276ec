//! The host-side plumbing every op shares: shader compilation (with `shaders/common.wgsl`
//! prepended), compute pipelines with explicit bind-group layouts, and prebuilt dispatches
//! (buffers and read-back are in `buffer.rs`).

use anyhow::Result;

use super::buffer::View;
use super::context::{GpuContext, ShaderChecks};
use super::texture::TextureCopy;

/// WGSL shared by every shader file.
pub const PREAMBLE: &str = include_str!("../../shaders/common.wgsl");
/// Threads per workgroup of 1-D kernels (`WORKGROUP_SIZE` in the preamble).
pub const WORKGROUP: u32 = 64;
const MAX_GROUPS_PER_DIM: u32 = 65535;

/// The per-step key of stochastic kernels (`StepKey` in `shaders/common.wgsl`): the run's
/// [`crate::rng::seed32`] and the step number, from 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepKey {
    pub seed: u32,
    pub step: u32,
    pub _pad: [u32; 2],
}

/// How a kernel sees the resource at `@binding(i)` of `@group(0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
    /// A float texture read with `textureLoad` (`texture_2d<f32>`).
    Texture,
    /// An unsigned integer texture read with `textureLoad` (`texture_2d<u32>`).
    UintTexture,
    /// An r32float storage texture, written only (`texture_storage_2d<r32float, write>`).
    WriteTexture,
}

impl Access {
    fn binding_type(self) -> wgpu::BindingType {
        let buffer = |ty| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        match self {
            Access::Uniform => buffer(wgpu::BufferBindingType::Uniform),
            Access::Read => buffer(wgpu::BufferBindingType::Storage { read_only: true }),
            Access::ReadWrite => buffer(wgpu::BufferBindingType::Storage { read_only: false }),
            Access::Texture => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            Access::UintTexture => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            Access::WriteTexture => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: wgpu::TextureFormat::R32Float,
                view_dimension: wgpu::TextureViewDimension::D2,
            },
        }
    }
}

/// The complete WGSL of one shader file: the preamble, then the file.
pub fn shader_source(body: &str) -> String {
    format!("{PREAMBLE}\n{body}")
}

/// One WGSL file: its path under `shaders/` and its text (or a struct the host declares,
/// `wgsl_struct!`).
#[derive(Clone, Copy, Debug)]
pub struct ShaderFile {
    pub path: &'static str,
    pub text: &'static str,
}

impl ShaderFile {
    /// Whether it is a file under `shaders/` (not a struct the host declares).
    pub fn is_file(&self) -> bool {
        self.path.ends_with(".wgsl")
    }
}

/// A `ShaderFile` for a path under `shaders/`, its text included at build time.
#[macro_export]
macro_rules! shader_file {
    ($path:literal) => {
        $crate::gpu::kernel::ShaderFile {
            path: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $path)),
        }
    };
}

/// A uniform struct declared once, for both sides: defines the `#[repr(C)]`, `Pod` Rust struct
/// and `NAME::WGSL`, a [`ShaderFile`] holding `struct NAME { ... }` with the same fields in the
/// same order, which the op's modules list before the files that use it (so the host's mirror
/// and the shader's struct cannot drift). A field's WGSL type is its Rust type's name unless
/// given after `=` (`a_strides: [u32; 2] = "vec2<u32>"`).
#[macro_export]
macro_rules! wgsl_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty $(= $wgsl:literal)? ),*
            $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty ),*
        }

        impl $name {
            /// The shader's declaration of this struct (see `wgsl_struct!`).
            #[allow(dead_code)]
            pub const WGSL: $crate::gpu::kernel::ShaderFile = $crate::gpu::kernel::ShaderFile {
                path: concat!("(declared by the host) ", stringify!($name)),
                text: concat!(
                    "struct ", stringify!($name), " {\n",
                    $( "    ", stringify!($field), ": ", $crate::wgsl_type!($ty $(, $wgsl)?), ",\n", )*
                    "}\n"
                ),
            };
        }
    };
}

/// The WGSL type of a `wgsl_struct!` field: the one given, else the Rust type's name.
#[doc(hidden)]
#[macro_export]
macro_rules! wgsl_type {
    ($ty:ty) => {
        stringify!($ty)
    };
    ($ty:ty, $wgsl:literal) => {
        $wgsl
    };
}

/// The WGSL of one shader module: the preamble, then `files` in order. The one way modules are
/// put together: a variant is a list of files (its kernels, and the files that provide the
/// functions they call), never text rewritten.
#[derive(Clone, Copy, Debug)]
pub struct WgslModule {
    pub label: &'static str,
    pub files: &'static [ShaderFile],
    /// Whether it uses subgroup operations (validated with them; compiled only where the
    /// adapter has them).
    pub subgroups: bool,
}

impl WgslModule {
    /// A module of `files` that uses no subgroup operations.
    pub const fn new(label: &'static str, files: &'static [ShaderFile]) -> WgslModule {
        WgslModule {
            label,
            files,
            subgroups: false,
        }
    }

    /// The files, in order, without the preamble.
    pub fn body(&self) -> String {
        let texts: Vec<&str> = self.files.iter().map(|f| f.text).collect();
        texts.join("\n")
    }

    /// The whole module: the preamble, then the files.
    pub fn source(&self) -> String {
        shader_source(&self.body())
    }

    /// A shader module with the context's runtime checks (see [`compile`]).
    pub fn compile(&self, ctx: &GpuContext) -> wgpu::ShaderModule {
        compile(ctx, self.label, &self.body())
    }

    /// The same with naga's loop bounds kept (see [`compile_register_blocked`]).
    pub fn compile_register_blocked(&self, ctx: &GpuContext) -> wgpu::ShaderModule {
        compile_register_blocked(ctx, self.label, &self.body())
    }
}

/// A shader file's WGSL (preamble prepended) parsed and validated by naga, with subgroup
/// operations allowed: for the tests of the shaders that the host writes or rewrites.
#[cfg(test)]
pub fn validated(body: &str) -> naga::Module {
    validated_with_info(body).0
}

/// The same with naga's analysis (which globals each entry point uses).
#[cfg(test)]
pub fn validated_with_info(body: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags};
    let module = naga::front::wgsl::parse_str(&shader_source(body)).expect("parses");
    let mut validator = naga::valid::Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP);
    validator
        .subgroup_stages(ShaderStages::COMPUTE)
        .subgroup_operations(SubgroupOperationSet::all());
    let info = validator.validate(&module).expect("validates");
    (module, info)
}

/// A shader module with the context's runtime checks.
pub fn compile(ctx: &GpuContext, label: &str, body: &str) -> wgpu::ShaderModule {
    compile_with(ctx, label, body, ctx.shader_checks)
}

/// A shader module for register-blocked kernels: with the context's runtime checks, but keeping
/// naga's loop bounds unless `none` was asked for. Those kernels are made for CPU adapters, which
/// run them as fast either way; without the bounds, the NVIDIA driver unrolls their long loops
/// and took tens of seconds to compile them (while the autotuner times every variant).
pub fn compile_register_blocked(ctx: &GpuContext, label: &str, body: &str) -> wgpu::ShaderModule {
    let checks = match ctx.shader_checks {
        ShaderChecks::Bounds => ShaderChecks::All,
        other => other,
    };
    compile_with(ctx, label, body, checks)
}

fn compile_with(
    ctx: &GpuContext,
    label: &str,
    body: &str,
    checks: ShaderChecks,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(shader_source(body).into()),
    };
    match checks {
        ShaderChecks::All => ctx.device.create_shader_module(desc),
        // SAFETY: every loop of our shaders ends (each is bounded by params or constants), which
        // is all that dropping naga's loop bound asks.
        ShaderChecks::Bounds => unsafe {
            let mut checks = wgpu::ShaderRuntimeChecks::checked();
            checks.force_loop_bounding = false;
            ctx.device.create_shader_module_trusted(desc, checks)
        },
        // SAFETY: as above, and every index is in bounds: the cross-checks run each kernel at
        // odd sizes, and the host asserts every binding's size before dispatching.
        ShaderChecks::None => unsafe {
            ctx.device
                .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        },
    }
}

/// One entry point of a shader, ready to dispatch. Created once per device (see
/// [`GpuContext::built_once`]); its pipeline is compiled on the first dispatch, because a driver
/// compiles at pipeline creation (lavapipe takes seconds for the largest entry points) and a
/// run uses only the variants it picked.
pub struct Kernel {
    pub name: &'static str,
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// A lock, not a cell, so that the kernels can be kept in the context and shared.
    pipeline: std::sync::OnceLock<wgpu::ComputePipeline>,
}

impl Kernel {
    /// `bindings[i]` describes `@group(0) @binding(i)`; an entry point may use a subset.
    pub fn new(
        ctx: &GpuContext,
        module: &wgpu::ShaderModule,
        name: &'static str,
        bindings: &[Access],
    ) -> Kernel {
        let numbered: Vec<(u32, Access)> = (0..).zip(bindings.iter().copied()).collect();
        Kernel::numbered(ctx, module, name, &numbered)
    }

    /// The same with each binding's number given, `(n, access)` for `@group(0) @binding(n)`:
    /// for a kernel whose numbers have gaps. Its dispatches bind exactly these
    /// ([`Kernel::dispatch_numbered`]).
    pub fn numbered(
        ctx: &GpuContext,
        module: &wgpu::ShaderModule,
        name: &'static str,
        bindings: &[(u32, Access)],
    ) -> Kernel {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(binding, access)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: access.binding_type(),
                count: None,
            })
            .collect();
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(name),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        Kernel {
            name,
            module: module.clone(),
            layout,
            pipeline_layout,
            pipeline: std::sync::OnceLock::new(),
        }
    }

    fn pipeline(&self, ctx: &GpuContext) -> &wgpu::ComputePipeline {
        self.pipeline.get_or_init(|| {
            let start = std::time::Instant::now();
            let pipeline = ctx
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(self.name),
                    layout: Some(&self.pipeline_layout),
                    module: &self.module,
                    entry_point: Some(self.name),
                    // Every kernel writes its workgroup memory before reading it, so the zeroing
                    // that WebGPU asks for by default is wasted work at each workgroup's start.
                    compilation_options: wgpu::PipelineCompilationOptions {
                        zero_initialize_workgroup_memory: false,
                        ..Default::default()
                    },
                    cache: None,
                });
            let seconds = start.elapsed().as_secs_f64();
            log::debug!("created the pipeline of {} in {seconds:.2} s", self.name);
            pipeline
        })
    }

    /// A dispatch of this kernel over `workgroups` with `buffers` bound in binding order.
    pub fn dispatch(&self, ctx: &GpuContext, buffers: &[View], workgroups: [u32; 3]) -> Dispatch {
        let resources: Vec<Resource> = buffers.iter().map(|&view| view.into()).collect();
        self.dispatch_resources(ctx, &resources, workgroups)
    }

    /// The same with textures among the bindings.
    pub fn dispatch_resources(
        &self,
        ctx: &GpuContext,
        resources: &[Resource],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let numbered: Vec<(u32, Resource)> = (0..).zip(resources.iter().copied()).collect();
        self.dispatch_numbered(ctx, &numbered, workgroups)
    }

    /// The same with each resource's binding number given (see [`Kernel::numbered`]).
    pub fn dispatch_numbered(
        &self,
        ctx: &GpuContext,
        resources: &[(u32, Resource)],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .map(|&(binding, resource)| wgpu::BindGroupEntry {
                binding,
                resource: match resource {
                    Resource::Buffer(view) => view.binding(),
                    Resource::Texture(view) => wgpu::BindingResource::TextureView(view),
                },
            })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.layout,
            entries: &entries,
        });
        Dispatch {
            kernel: self.name,
            pipeline: self.pipeline(ctx).clone(),
            bind_group,
            workgroups,
            cost: Cost::default(),
            variant: "",
            copies: Vec::new(),
        }
    }
}

/// What one dispatch computes, for the profiler: a shape label and the useful work it does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub shape: String,
    /// Floating-point operations (a multiply-add counts two).
    pub flops: u64,
    /// Bytes read and written, counting each tensor once.
    pub bytes: u64,
}

/// A kernel with its buffers bound: recorded as often as needed, built once.
pub struct Dispatch {
    pub kernel: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    pub cost: Cost,
    /// The kernel variant this dispatch belongs to, for ops that have several (else empty).
    pub variant: &'static str,
    /// Buffers copied into the textures this dispatch reads, just before it (outside compute
    /// passes: see [`record_passes`]).
    pub copies: Vec<TextureCopy>,
}

impl Dispatch {
    pub fn with_cost(mut self, cost: Cost) -> Dispatch {
        self.cost = cost;
        self
    }

    pub fn with_variant(mut self, variant: &'static str) -> Dispatch {
        self.variant = variant;
        self
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass) {
        self.record_workgroups(pass, self.workgroups);
    }

    /// Records the first `1 / parts` of the dispatch's workgroups (see [`Dispatch::part`]).
    pub fn record_part(&self, pass: &mut wgpu::ComputePass, parts: u32) {
        self.record_workgroups(pass, self.part(parts));
    }

    /// The first `1 / parts` of the workgroups, at least one: rows of the grid (y) where it
    /// has several, else columns (x). The kernels number their workgroups x + y * nwg.x and
    /// never read nwg.y, so these do what they do in the whole dispatch: a part of its work.
    pub fn part(&self, parts: u32) -> [u32; 3] {
        let [x, y, z] = self.workgroups;
        if y > 1 {
            [x, y.div_ceil(parts), z]
        } else {
            [x.div_ceil(parts), y, z]
        }
    }

    fn record_workgroups(&self, pass: &mut wgpu::ComputePass, [x, y, z]: [u32; 3]) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }

    /// Records the texture copies that must come before the dispatch.
    pub fn record_copies(&self, encoder: &mut wgpu::CommandEncoder) {
        for copy in &self.copies {
            copy.record(encoder);
        }
    }

    /// Bytes that the texture copies move.
    pub fn copied_bytes(&self) -> u64 {
        self.copies.iter().map(|c| c.bytes()).sum()
    }
}

/// Workgroups for `n` invocations of a 1-D kernel, folded into 2-D past 65535 groups (the
/// shader recovers the index with `flat_index`). Extra invocations must return early.
pub fn grid_1d(n: usize) -> [u32; 3] {
    let groups = (n as u64).div_ceil(u64::from(WORKGROUP)).max(1);
    let x = groups.min(u64::from(MAX_GROUPS_PER_DIM));
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// What a dispatch binds at one binding: a range of a buffer, or a texture.
#[derive(Clone, Copy)]
pub enum Resource<'a> {
    Buffer(View<'a>),
    Texture(&'a wgpu::TextureView),
}

impl<'a> From<View<'a>> for Resource<'a> {
    fn from(view: View<'a>) -> Resource<'a> {
        Resource::Buffer(view)
    }
}

/// Records `dispatches` in order into compute passes of `encoder`: one pass, except that a
/// dispatch with texture copies (which cannot be recorded inside a pass) starts a new pass
/// after them. `each` records dispatch `i` into the open pass.
pub fn record_passes(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: &[&Dispatch],
    each: impl FnMut(&mut wgpu::ComputePass, usize, &Dispatch),
) {
    let copies = |encoder: &mut wgpu::CommandEncoder, _, d: &Dispatch| d.record_copies(encoder);
    record_passes_with_copies(encoder, dispatches, copies, each);
}

/// `record_passes`, with `copies` recording the copies of dispatch `i` (the profiler times
/// them).
pub fn record_passes_with_copies(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: &[&Dispatch],
    mut copies: impl FnMut(&mut wgpu::CommandEncoder, usize, &Dispatch),
    mut each: impl FnMut(&mut wgpu::ComputePass, usize, &Dispatch),
) {
    let mut start = 0;
    while start < dispatches.len() {
        let end = (start + 1..dispatches.len())
            .find(|&i| !dispatches[i].copies.is_empty())
            .unwrap_or(dispatches.len());
        if !dispatches[start].copies.is_empty() {
            copies(encoder, start, dispatches[start]);
        }
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for (i, d) in dispatches.iter().enumerate().take(end).skip(start) {
            each(&mut pass, i, d);
        }
        start = end;
    }
}

/// Records `dispatches` (in as few compute passes as their copies allow) and submits them.
pub fn run(ctx: &GpuContext, dispatches: &[&Dispatch]) {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    record_passes(&mut encoder, dispatches, |pass, _, d| d.record(pass));
    ctx.queue.submit([encoder.finish()]);
}

/// Runs each of `dispatches` as a single workgroup and waits, so that drivers that compile a
/// pipeline at its first dispatch (lavapipe compiles there, for seconds per large kernel, and
/// again where a texture's size changes its key) compile now, at a negligible cost in running
/// time. The dispatches write what one workgroup writes into their outputs: only for
/// dispatches whose outputs are recomputed before anything reads them (activations and
/// gradients, never parameters or optimizer state). Returns the seconds it took: the
/// compilation, where the driver compiles there.
pub fn compile_pipelines(ctx: &GpuContext, dispatches: &[Dispatch]) -> Result<f64> {
    let start = std::time::Instant::now();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record_workgroups(&mut pass, [1, 1, 1]);
        }
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Checks that `module` validates and has exactly the entry points `expected` (any order).
#[cfg(test)]
pub(crate) fn assert_entry_points(module: WgslModule, expected: &[&str]) {
    let validated = validated(&module.body());
    let mut names: Vec<&str> = validated
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let mut expected = expected.to_vec();
    names.sort();
    expected.sort();
    assert_eq!(names, expected, "{}", module.label);
}

/// Checks that a host mirror of the WGSL struct `name` in `module` (a uniform) has the
/// shader's size, `host` bytes: the fields are in the same order, so a size that differs means
/// a field or a gap is missing.
#[cfg(test)]
pub(crate) fn assert_struct_size(module: WgslModule, name: &str, host: usize) {
    let validated = validated(&module.body());
    let size = validated
        .types
        .iter()
        .find_map(|(_, ty)| match ty.inner {
            naga::TypeInner::Struct { span, .. } if ty.name.as_deref() == Some(name) => {
                Some(span as usize)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{} has no struct {name}", module.label));
    assert_eq!(size, host, "{name}: shader against host bytes");
}

/// The value of `const NAME: u32 = Vu;` in a shader's source, for tests that check the host's
/// copies of a shader's constants.
#[cfg(test)]
pub(crate) fn shader_const(source: &str, name: &str) -> usize {
    let prefix = format!("const {name}: u32 = ");
    let line = source
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the shader has no {name}"));
    line.trim_end_matches(';')
        .trim_end_matches('u')
        .parse()
        .unwrap()
}
