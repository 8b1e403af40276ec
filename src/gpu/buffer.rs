//! GPU buffers: ranges of them as bound to kernels, allocation within the adapter's limits,
//! blocking read-back, and the flat parameter buffers of a network.

use std::num::NonZeroU64;

use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

use super::context::GpuContext;

/// A range of a buffer, in bytes, as bound to a kernel.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> View<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> View<'a> {
        View {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    pub(super) fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: NonZeroU64::new(self.size),
        })
    }
}

impl<'a> From<&'a wgpu::Buffer> for View<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> View<'a> {
        View::whole(buffer)
    }
}

fn check_size(ctx: &GpuContext, label: &str, bytes: u64) -> Result<u64> {
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    if bytes > limit {
        bail!(
            "buffer '{label}' needs {bytes} bytes but the adapter's max_storage_buffer_binding_size is {limit}; use a smaller --batch-size"
        );
    }
    // Zero-sized bindings are invalid; round up to one element, and to whole vec4s, so that a
    // copy into an rgba32float texture (texture::Texel::Vec4) can take the last, partial one.
    Ok(bytes.max(4).next_multiple_of(16))
}

const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A zeroed storage buffer of `bytes` bytes.
pub fn storage(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    let size = check_size(ctx, label, bytes)?;
    Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: STORAGE_USAGE,
        mapped_at_creation: false,
    }))
}

/// A storage buffer holding `data`.
pub fn storage_init<T: bytemuck::Pod>(
    ctx: &GpuContext,
    label: &str,
    data: &[T],
) -> Result<wgpu::Buffer> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let size = check_size(ctx, label, bytes.len() as u64)?;
    if size as usize == bytes.len() {
        return Ok(ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: STORAGE_USAGE,
            }));
    }
    let buffer = storage(ctx, label, size)?;
    ctx.queue.write_buffer(&buffer, 0, bytes);
    Ok(buffer)
}

/// A uniform buffer holding `value` (WGSL uniform structs are padded to 16 bytes).
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    assert_eq!(
        std::mem::size_of::<T>() % 16,
        0,
        "uniform '{label}' must be a multiple of 16 bytes"
    );
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// Copies `count` elements of `T` from `buffer` (starting at byte `offset`) back to the host,
/// waiting for all submitted work first.
pub fn read_buffer<T: bytemuck::Pod>(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    count: usize,
) -> Result<Vec<T>> {
    let bytes = (count * std::mem::size_of::<T>()) as u64;
    let padded = bytes.max(4).next_multiple_of(4);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: padded,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
    ctx.queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("GPU read-back failed: {e}"),
        Err(_) => bail!("GPU read-back was never completed"),
    }
    let data = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| anyhow::anyhow!("GPU read-back failed: {e}"))?;
        bytemuck::pod_collect_to_vec::<u8, T>(&view[..bytes as usize])
    };
    staging.unmap();
    Ok(data)
}

/// The parameters, their gradients and optimiser moments, each one flat buffer in which every
/// tensor starts at an offset the adapter can bind.
pub struct ParamBuffers {
    pub params: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
    /// Byte offset and element count of each tensor, in `Plan::params` order.
    pub ranges: Vec<(u64, usize)>,
    /// Elements in each flat buffer, padding included.
    pub len: usize,
}

impl ParamBuffers {
    pub fn new(ctx: &GpuContext, tensor_lens: &[usize]) -> Result<ParamBuffers> {
        let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment).max(4);
        let mut ranges = Vec::with_capacity(tensor_lens.len());
        let mut offset = 0u64;
        for &len in tensor_lens {
            ranges.push((offset, len));
            offset = (offset + 4 * len as u64).next_multiple_of(align);
        }
        let buffer = |label: &str| storage(ctx, label, offset);
        Ok(ParamBuffers {
            params: buffer("parameters")?,
            grads: buffer("gradients")?,
            m: buffer("optimiser m")?,
            v: buffer("optimiser v")?,
            ranges,
            len: (offset / 4) as usize,
        })
    }

    pub fn view<'a>(&self, buffer: &'a wgpu::Buffer, tensor: usize) -> View<'a> {
        let (offset, len) = self.ranges[tensor];
        View {
            buffer,
            offset,
            size: 4 * len as u64,
        }
    }

    /// One view over tensor `first` and the next one, and the element offset of the second
    /// from the first.
    pub fn pair_view<'a>(&self, buffer: &'a wgpu::Buffer, first: usize) -> (View<'a>, usize) {
        let (offset, _) = self.ranges[first];
        let (second, len) = self.ranges[first + 1];
        let view = View {
            buffer,
            offset,
            size: second - offset + 4 * len as u64,
        };
        (view, ((second - offset) / 4) as usize)
    }
}
