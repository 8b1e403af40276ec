//! Training-batch gather on the GPU (`shaders/gather.wgsl`), twin of `data::Split::gather`: the
//! dataset is uploaded once as packed bytes, and each step only uploads the batch's indices.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel};
use crate::data::{Split, IMAGE_PIXELS};

pub const SOURCE: &str = include_str!("../../shaders/gather.wgsl");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatherParams {
    n: u32,
    _pad: [u32; 3],
}

pub struct GatherKernels {
    gather: Kernel,
}

impl GatherKernels {
    pub fn new(ctx: &GpuContext) -> GatherKernels {
        let module = compile(ctx, "gather.wgsl", SOURCE);
        use Access::*;
        GatherKernels {
            gather: Kernel::new(
                ctx,
                &module,
                "gather_batch",
                &[Uniform, Read, Read, Read, ReadWrite, ReadWrite],
            ),
        }
    }

    /// images/labels: packed dataset bytes; indices: n u32; x: n*784 f32; labels_out: n u32.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &self,
        ctx: &GpuContext,
        n: usize,
        images: View,
        labels: View,
        indices: View,
        x: View,
        labels_out: View,
    ) -> Dispatch {
        let params = uniform(
            ctx,
            "gather params",
            &GatherParams {
                n: n as u32,
                _pad: [0; 3],
            },
        );
        self.gather.dispatch(
            ctx,
            &[View::whole(&params), images, labels, indices, x, labels_out],
            grid_1d(n * IMAGE_PIXELS / 4),
        )
    }
}

// The kernel writes 4 pixels per invocation, and every image starts on a packed word.
const _: () = assert!(IMAGE_PIXELS.is_multiple_of(4));

/// Packs bytes into little-endian u32 words, zero-padded to a multiple of 4 (for upload).
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|chunk| {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            u32::from_le_bytes(word)
        })
        .collect()
}

const SYNTHETIC_EXAMPLES: usize = 50;

/// Batches of 1, 7 and 33 from a synthetic 50-image dataset (a label count that is not a
/// multiple of 4), with shuffled, repeated indices that always include the last image.
pub fn checks() -> Vec<CrossCheck> {
    [1usize, 7, 33]
        .into_iter()
        .map(|n| {
            CrossCheck::new(
                "gather_batch",
                format!("n {n} of {SYNTHETIC_EXAMPLES}"),
                move |ctx| check_gather(ctx, n),
            )
        })
        .collect()
}

fn synthetic_split(rng: &mut ChaCha8Rng) -> Split {
    Split {
        images: (0..SYNTHETIC_EXAMPLES * IMAGE_PIXELS)
            .map(|_| rng.random())
            .collect(),
        labels: (0..SYNTHETIC_EXAMPLES)
            .map(|_| rng.random_range(0..10))
            .collect(),
    }
}

/// `n` random indices (repeats allowed) with the last example at a random position.
fn batch_indices(rng: &mut ChaCha8Rng, n: usize) -> Vec<u32> {
    let last = SYNTHETIC_EXAMPLES as u32 - 1;
    let mut indices: Vec<u32> = (0..n).map(|_| rng.random_range(0..=last)).collect();
    indices[rng.random_range(0..n)] = last;
    indices
}

fn check_gather(ctx: &GpuContext, n: usize) -> Result<Comparison> {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let split = synthetic_split(&mut rng);
    let indices = batch_indices(&mut rng, n);
    let images_buf = storage_init(ctx, "images", &pack_bytes(&split.images))?;
    let labels_buf = storage_init(ctx, "labels", &pack_bytes(&split.labels))?;
    let indices_buf = storage_init(ctx, "indices", &indices)?;
    let (x_buf, labels_out_buf) = (
        storage(ctx, "x", (4 * n * IMAGE_PIXELS) as u64)?,
        storage(ctx, "labels out", 4 * n as u64)?,
    );

    let kernels = GatherKernels::new(ctx);
    let gather = kernels.gather(
        ctx,
        n,
        (&images_buf).into(),
        (&labels_buf).into(),
        (&indices_buf).into(),
        (&x_buf).into(),
        (&labels_out_buf).into(),
    );
    run(ctx, &[&gather]);

    let (mut x, mut labels) = (Vec::new(), Vec::new());
    split.gather(&indices, &mut x, &mut labels);
    let labels: Vec<u32> = labels.into_iter().map(u32::from).collect();
    let gpu_x = read_buffer::<f32>(ctx, &x_buf, 0, n * IMAGE_PIXELS)?;
    let gpu_labels = read_buffer::<u32>(ctx, &labels_out_buf, 0, n)?;
    Ok(compare(&gpu_x, &x).merge(compare_exact(&gpu_labels, &labels)))
}
