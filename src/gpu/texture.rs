//! Staging of storage buffers into r32float textures (`shaders/texture.wgsl`), twin of the
//! identity: for kernels that read their inputs many times on adapters where a texture load is
//! cheaper than a storage load (lavapipe on CPUs without AVX-512; see the shader's header).
//! Element `i` lies at column `i % TEXTURE_WIDTH` of row `i / TEXTURE_WIDTH`.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};

use super::check::{compare_exact, random_vec, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, storage_init, uniform, Access, Dispatch, Kernel, View};

pub const SOURCE: &str = include_str!("../../shaders/texture.wgsl");

/// Texels per row (`TEXTURE_WIDTH` in the shader, and in the readers' accessors).
pub const TEXTURE_WIDTH: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TextureParams {
    len: u32,
    _pad: [u32; 3],
}

pub struct TextureKernels {
    stage: Kernel,
}

/// A texture that a staging dispatch fills from a buffer.
pub struct Staged {
    pub view: wgpu::TextureView,
    pub texture: wgpu::Texture,
    pub dispatch: Dispatch,
}

impl TextureKernels {
    pub fn new(ctx: &GpuContext) -> TextureKernels {
        let module = compile(ctx, "texture.wgsl", SOURCE);
        use Access::*;
        TextureKernels {
            stage: Kernel::new(
                ctx,
                &module,
                "texture_stage",
                &[Uniform, Read, WriteTexture],
            ),
        }
    }

    /// Whether `len` elements fit one texture on this adapter.
    pub fn fits(ctx: &GpuContext, len: usize) -> bool {
        let rows = len.div_ceil(TEXTURE_WIDTH).max(1);
        let most = ctx.limits.max_texture_dimension_2d as usize;
        TEXTURE_WIDTH <= most && rows <= most
    }

    /// A texture for the first `len` elements of `src`, and the dispatch that copies them into
    /// it (to record before every dispatch that reads it); `None` where they do not fit.
    pub fn stage(&self, ctx: &GpuContext, src: View, len: usize) -> Option<Staged> {
        if !TextureKernels::fits(ctx, len) {
            return None;
        }
        let size = wgpu::Extent3d {
            width: TEXTURE_WIDTH as u32,
            height: len.div_ceil(TEXTURE_WIDTH).max(1) as u32,
            depth_or_array_layers: 1,
        };
        let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("staged texture"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::R32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        let params = TextureParams {
            len: len as u32,
            _pad: [0; 3],
        };
        let params = uniform(ctx, "texture params", &params);
        let dispatch = self.stage.dispatch_resources(
            ctx,
            &[
                View::whole(&params).into(),
                src.into(),
                super::kernel::Resource::Texture(&view),
            ],
            grid_1d(len),
        );
        Some(Staged {
            view,
            texture,
            dispatch,
        })
    }
}

/// The texels of `texture` (r32float, `TEXTURE_WIDTH` wide), row by row.
fn read_texture(ctx: &GpuContext, texture: &wgpu::Texture) -> Result<Vec<f32>> {
    let size = texture.size();
    let bytes = 4 * TEXTURE_WIDTH as u64 * u64::from(size.height);
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("texture read-back"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * TEXTURE_WIDTH as u32),
                rows_per_image: None,
            },
        },
        size,
    );
    ctx.queue.submit([encoder.finish()]);
    super::kernel::read_buffer(ctx, &buffer, 0, bytes as usize / 4)
}

/// Lengths of 1, 7, 33 (inside the first row), one past a row, and several rows and a bit.
pub fn checks() -> Vec<CrossCheck> {
    [1usize, 7, 33, TEXTURE_WIDTH + 1, 3 * TEXTURE_WIDTH + 65]
        .into_iter()
        .map(|len| {
            CrossCheck::new("texture_stage", format!("{len} elements"), move |ctx| {
                check_stage(ctx, len)
            })
        })
        .collect()
}

fn check_stage(ctx: &GpuContext, len: usize) -> Result<Comparison> {
    let data = random_vec(len, len as u64, -3.0, 3.0);
    let src = storage_init(ctx, "texture src", &data)?;
    let kernels = TextureKernels::new(ctx);
    let staged = kernels
        .stage(ctx, (&src).into(), len)
        .expect("a few rows fit any adapter's textures");
    run(ctx, &[&staged.dispatch]);
    let texels = read_texture(ctx, &staged.texture)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    Ok(compare_exact(&bits(&texels[..len]), &bits(&data)))
}
