//! Buffers copied into r32float, r32uint or rgba32float textures, for kernels that read their
//! inputs many times on adapters where a texture load is much cheaper than a storage load:
//! lavapipe (Mesa 22.3) loads storage lane by lane, inserting each value into the SIMD vector
//! through the stack, which on CPUs without AVX-512 fails store-to-load forwarding once per lane
//! (3.7 ns per float and lane on a 2-core AMD EPYC, against 1.0 ns through an r32float
//! `textureLoad`, and 1.3 ns for the four floats of an rgba32float texel). Texel `i` (a float or
//! an integer, or four floats) lies at column `i % TEXTURE_WIDTH` of row `i / TEXTURE_WIDTH`;
//! readers find it with a mask and a shift (the accessors of `shaders/conv2d/reads_texture.wgsl`
//! and `shaders/dense/reads_texture.wgsl`). A copy, not a kernel, fills the texture:
//! lavapipe copies with `memcpy`, where a kernel would pay the per-lane loads once more.

use anyhow::Result;

use super::buffer::{read_buffer, storage, storage_init, View};
use super::check::{compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use crate::rng::random_vec;

/// Texels per row (`TEXTURE_WIDTH` in the shaders that read textures): a power of two, and rows
/// of 16 or 64 KiB, multiples of the 256 bytes a copy's rows must be.
pub const TEXTURE_WIDTH: usize = 4096;

/// What a texel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Texel {
    /// One float (r32float).
    F32,
    /// One unsigned integer (r32uint).
    U32,
    /// Four consecutive floats (rgba32float).
    Vec4,
}

impl Texel {
    fn format(self) -> wgpu::TextureFormat {
        match self {
            Texel::F32 => wgpu::TextureFormat::R32Float,
            Texel::U32 => wgpu::TextureFormat::R32Uint,
            Texel::Vec4 => wgpu::TextureFormat::Rgba32Float,
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            Texel::F32 | Texel::U32 => 4,
            Texel::Vec4 => 16,
        }
    }

    fn row_bytes(self) -> u64 {
        self.bytes() * TEXTURE_WIDTH as u64
    }
}

/// A copy of `len` texels from `buffer` at `offset` into `texture`, row by row.
pub struct TextureCopy {
    buffer: wgpu::Buffer,
    offset: u64,
    len: usize,
    texel: Texel,
    texture: wgpu::Texture,
}

/// A texture and the copy that fills it (to record before every dispatch that reads it).
pub struct Staged {
    pub view: wgpu::TextureView,
    pub copy: TextureCopy,
}

/// Whether `len` texels fit one texture on this adapter.
pub fn fits(ctx: &GpuContext, len: usize) -> bool {
    let most = ctx.limits.max_texture_dimension_2d as usize;
    TEXTURE_WIDTH <= most && len.div_ceil(TEXTURE_WIDTH) <= most
}

/// A texture for the first `len` texels of `src` and the copy that fills it; `None` where they
/// do not fit (`fits`), or where `src` does not start on a texel (a copy's rule).
pub fn stage(ctx: &GpuContext, src: View, len: usize, texel: Texel) -> Option<Staged> {
    if !fits(ctx, len) || !src.offset.is_multiple_of(texel.bytes()) {
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
        format: texel.format(),
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
        texel,
        texture,
    };
    Some(Staged { view, copy })
}

impl TextureCopy {
    /// Bytes copied.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * self.texel.bytes()
    }

    /// Records the copy: the full rows in one region, then the last, partial row.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let (rows, rest) = (self.len / TEXTURE_WIDTH, self.len % TEXTURE_WIDTH);
        let row_bytes = self.texel.row_bytes();
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
                        offset: self.offset + first_row as u64 * row_bytes,
                        bytes_per_row: Some(row_bytes as u32),
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

/// The floats of `texture` (`TEXTURE_WIDTH` texels of `texel` a row), row by row.
fn read_texture(ctx: &GpuContext, texture: &wgpu::Texture, texel: Texel) -> Result<Vec<f32>> {
    let size = texture.size();
    let bytes = texel.row_bytes() * u64::from(size.height);
    let buffer = storage(ctx, "texture read-back", bytes)?;
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(texel.row_bytes() as u32),
                rows_per_image: None,
            },
        },
        size,
    );
    ctx.queue.submit([encoder.finish()]);
    read_buffer(ctx, &buffer, 0, bytes as usize / 4)
}

/// Lengths of 1, 7, 33 texels (inside the first row), one past a row, and several rows and a
/// bit, of both kinds, each copied from a view that starts one texel into its buffer.
pub fn checks() -> Vec<CrossCheck> {
    [Texel::F32, Texel::U32, Texel::Vec4]
        .into_iter()
        .flat_map(|texel| {
            [1usize, 7, 33, TEXTURE_WIDTH + 1, 3 * TEXTURE_WIDTH + 65].map(move |len| {
                let name = match texel {
                    Texel::F32 => "texture_copy[r32float]",
                    Texel::U32 => "texture_copy[r32uint]",
                    Texel::Vec4 => "texture_copy[rgba32float]",
                };
                CrossCheck::new(name, format!("{len} texels"), move |ctx| {
                    check_copy(ctx, len, texel)
                })
            })
        })
        .collect()
}

fn check_copy(ctx: &GpuContext, len: usize, texel: Texel) -> Result<Comparison> {
    let per_texel = (texel.bytes() / 4) as usize;
    let floats = len * per_texel;
    let data = random_vec(per_texel + floats, len as u64, -3.0, 3.0);
    let src = storage_init(ctx, "texture src", &data)?;
    let view = View {
        buffer: &src,
        offset: texel.bytes(),
        size: 4 * floats as u64,
    };
    let staged = stage(ctx, view, len, texel).expect("a few rows fit any adapter's textures");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    staged.copy.record(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
    let texels = read_texture(ctx, &staged.copy.texture, texel)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    Ok(compare_exact(
        &bits(&texels[..floats]),
        &bits(&data[per_texel..]),
    ))
}
