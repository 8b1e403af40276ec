//! Buffers copied into r32float textures, for kernels that read their inputs many times on
//! adapters where a texture load is much cheaper than a storage load: lavapipe (Mesa 22.3) loads
//! storage lane by lane, inserting each value into the SIMD vector through the stack, which on
//! CPUs without AVX-512 fails store-to-load forwarding once per lane (3.7 ns per float and
//! lane on a 2-core AMD EPYC, against 1.0 ns through an r32float `textureLoad`). Element `i`
//! lies at column `i % TEXTURE_WIDTH` of row `i / TEXTURE_WIDTH`; readers find it with a mask
//! and a shift (conv2d's `src_at` and `factor_at`). A copy, not a kernel, fills the texture:
//! lavapipe copies with `memcpy`, where a kernel would pay the per-lane loads once more.

use anyhow::Result;

use super::check::{compare_exact, random_vec, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{read_buffer, storage_init, View};

/// Texels per row (`src_at` and `factor_at` in conv2d's texture module divide by it): a power
/// of two, and 16 KiB a row, a multiple of the 256 bytes a copy's rows must be.
pub const TEXTURE_WIDTH: usize = 4096;
const ROW_BYTES: u64 = 4 * TEXTURE_WIDTH as u64;

/// A copy of `len` floats from `buffer` at `offset` into `texture`, row by row.
pub struct TextureCopy {
    buffer: wgpu::Buffer,
    offset: u64,
    len: usize,
    texture: wgpu::Texture,
}

/// A texture and the copy that fills it (to record before every dispatch that reads it).
pub struct Staged {
    pub view: wgpu::TextureView,
    pub copy: TextureCopy,
}

/// Whether `len` elements fit one texture on this adapter.
pub fn fits(ctx: &GpuContext, len: usize) -> bool {
    let most = ctx.limits.max_texture_dimension_2d as usize;
    TEXTURE_WIDTH <= most && len.div_ceil(TEXTURE_WIDTH) <= most
}

/// A texture for the first `len` elements of `src` and the copy that fills it; `None` where
/// they do not fit (`fits`).
pub fn stage(ctx: &GpuContext, src: View, len: usize) -> Option<Staged> {
    if !fits(ctx, len) {
        return None;
    }
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("staged texture"),
        size: wgpu::Extent3d {
            width: TEXTURE_WIDTH as u32,
            height: len.div_ceil(TEXTURE_WIDTH).max(1) as u32,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_DST
            | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    let copy = TextureCopy {
        buffer: src.buffer.clone(),
        offset: src.offset,
        len,
        texture,
    };
    Some(Staged { view, copy })
}

impl TextureCopy {
    /// Records the copy: the full rows in one region, then the last, partial row.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let (rows, rest) = (self.len / TEXTURE_WIDTH, self.len % TEXTURE_WIDTH);
        let region = |first_row: usize, width: usize, height: usize| {
            (first_row, width as u32, height as u32)
        };
        let full = (rows > 0).then(|| region(0, TEXTURE_WIDTH, rows));
        let partial = (rest > 0).then(|| region(rows, rest, 1));
        for (first_row, width, height) in full.into_iter().chain(partial) {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: self.offset + first_row as u64 * ROW_BYTES,
                        bytes_per_row: Some(ROW_BYTES as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: first_row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
}

/// The texels of `texture` (r32float, `TEXTURE_WIDTH` wide), row by row.
fn read_texture(ctx: &GpuContext, texture: &wgpu::Texture) -> Result<Vec<f32>> {
    let size = texture.size();
    let bytes = ROW_BYTES * u64::from(size.height);
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
                bytes_per_row: Some(ROW_BYTES as u32),
                rows_per_image: None,
            },
        },
        size,
    );
    ctx.queue.submit([encoder.finish()]);
    read_buffer(ctx, &buffer, 0, bytes as usize / 4)
}

/// Lengths of 1, 7, 33 (inside the first row), one past a row, and several rows and a bit,
/// each copied from 3 floats into its buffer (a view that does not start at 0).
pub fn checks() -> Vec<CrossCheck> {
    [1usize, 7, 33, TEXTURE_WIDTH + 1, 3 * TEXTURE_WIDTH + 65]
        .into_iter()
        .map(|len| {
            CrossCheck::new("texture_copy", format!("{len} elements"), move |ctx| {
                check_copy(ctx, len)
            })
        })
        .collect()
}

const CHECK_OFFSET: usize = 3;

fn check_copy(ctx: &GpuContext, len: usize) -> Result<Comparison> {
    let data = random_vec(CHECK_OFFSET + len, len as u64, -3.0, 3.0);
    let src = storage_init(ctx, "texture src", &data)?;
    let view = View {
        buffer: &src,
        offset: 4 * CHECK_OFFSET as u64,
        size: 4 * len as u64,
    };
    let staged = stage(ctx, view, len).expect("a few rows fit any adapter's textures");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    staged.copy.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    let texels = read_texture(ctx, &staged.copy.texture)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    Ok(compare_exact(
        &bits(&texels[..len]),
        &bits(&data[CHECK_OFFSET..]),
    ))
}
