//! Softmax cross-entropy on the GPU (`shaders/softmax_xent.wgsl`), twin of
//! `cpu/softmax_xent.rs`: per-example losses, correct flags and the gradient of the batch-mean
//! loss, then a reproducible reduction into a stats record that accumulates across steps.

use anyhow::Result;
use bytemuck::{Pod, Zeroable};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile, grid_1d, run, Access, Dispatch, Kernel};
use crate::cpu::softmax_xent::softmax_cross_entropy;
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/softmax_xent.wgsl");

/// The 16-byte stats record the GPU accumulates; `loss_sum` is f32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct GpuStats {
    pub loss_sum: f32,
    pub correct: u32,
    pub examples: u32,
    pub nonfinite: u32,
}

/// Mirrors `SoftmaxXentParams` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SoftmaxXentParams {
    n: u32,
    classes: u32,
    _pad: [u32; 2],
}

impl SoftmaxXentParams {
    fn new(n: usize, classes: usize) -> SoftmaxXentParams {
        let u = |v: usize| u32::try_from(v).expect("softmax_xent: size fits in u32");
        SoftmaxXentParams {
            n: u(n),
            classes: u(classes),
            _pad: [0; 2],
        }
    }
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_words(view: &View, words: usize, name: &str) {
    assert!(
        view.size >= 4 * words as u64,
        "softmax_xent: {name} holds {} bytes, needs {words} words",
        view.size
    );
}

pub struct SoftmaxXentKernels {
    forward_backward: Kernel,
    accumulate: Kernel,
}

impl SoftmaxXentKernels {
    pub fn new(ctx: &GpuContext) -> SoftmaxXentKernels {
        let module = compile(ctx, "softmax_xent.wgsl", SOURCE);
        use Access::*;
        SoftmaxXentKernels {
            forward_backward: Kernel::new(
                ctx,
                &module,
                "softmax_xent_forward_backward",
                &[Uniform, ReadWrite, ReadWrite, Read, Read, ReadWrite],
            ),
            accumulate: Kernel::new(
                ctx,
                &module,
                "softmax_xent_accumulate",
                &[Uniform, ReadWrite, ReadWrite, ReadWrite],
            ),
        }
    }

    /// Per-example `losses` (f32) and `correct` flags (u32 0/1), and `dlogits`, the gradient of
    /// the mean loss, for `n` rows of `classes` logits and their u32 `labels`. A row with a
    /// non-finite logit gets a NaN loss.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &self,
        ctx: &GpuContext,
        classes: usize,
        n: usize,
        logits: View,
        labels: View,
        dlogits: View,
        losses: View,
        correct: View,
    ) -> Dispatch {
        expect_words(&logits, n * classes, "logits");
        expect_words(&labels, n, "labels");
        expect_words(&dlogits, n * classes, "dlogits");
        expect_words(&losses, n, "losses");
        expect_words(&correct, n, "correct");
        let params = uniform(
            ctx,
            "softmax_xent params",
            &SoftmaxXentParams::new(n, classes),
        );
        let buffers = [
            View::whole(&params),
            losses,
            correct,
            logits,
            labels,
            dlogits,
        ];
        self.forward_backward.dispatch(ctx, &buffers, grid_1d(n))
    }

    /// Adds the sum of the `n` losses, the number correct and `n` to the `GpuStats` in `stats`,
    /// and sets its `nonfinite` to 1 when a loss is not finite. It accumulates until the host
    /// clears it.
    pub fn accumulate(
        &self,
        ctx: &GpuContext,
        n: usize,
        losses: View,
        correct: View,
        stats: View,
    ) -> Dispatch {
        expect_words(&losses, n, "losses");
        expect_words(&correct, n, "correct");
        expect_words(&stats, std::mem::size_of::<GpuStats>() / 4, "stats");
        let params = uniform(ctx, "softmax_xent params", &SoftmaxXentParams::new(n, 0));
        self.accumulate.dispatch(
            ctx,
            &[View::whole(&params), losses, correct, stats],
            [1, 1, 1],
        )
    }
}

const CLASSES: usize = 10;

/// Batches of 1, 7, 33 and 1000 examples against the CPU, and the stats after two
/// accumulations; then rows with a NaN and with a +inf logit, which must set `nonfinite`.
pub fn checks() -> Vec<CrossCheck> {
    let batches = [1usize, 7, 33, 1000].into_iter().map(|n| {
        CrossCheck::new(
            "softmax_xent_forward_backward+accumulate",
            format!("n {n}, {CLASSES} classes"),
            move |ctx| check_batch(ctx, n),
        )
    });
    let nonfinite = [f32::NAN, f32::INFINITY].into_iter().map(|bad| {
        CrossCheck::new(
            "softmax_xent_accumulate nonfinite",
            format!("n 7, a logit {bad}"),
            move |ctx| check_nonfinite(ctx, 7, bad),
        )
    });
    batches.chain(nonfinite).collect()
}

/// Logits in [-30, 30), large enough to need the max shift, and labels in 0..CLASSES.
fn random_batch(n: usize) -> (Vec<f32>, Vec<u8>) {
    let seed = n as u64 * 7919;
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let labels = (0..n).map(|_| rng.random_range(0..CLASSES as u8)).collect();
    (random_vec(n * CLASSES, seed, -30.0, 30.0), labels)
}

/// The GPU buffers of one batch, with its kernels' outputs zeroed.
struct Batch {
    logits: wgpu::Buffer,
    labels: wgpu::Buffer,
    dlogits: wgpu::Buffer,
    losses: wgpu::Buffer,
    correct: wgpu::Buffer,
    stats: wgpu::Buffer,
}

impl Batch {
    fn new(ctx: &GpuContext, logits: &[f32], labels: &[u8]) -> Result<Batch> {
        let n = labels.len() as u64;
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        Ok(Batch {
            logits: storage_init(ctx, "logits", logits)?,
            labels: storage_init(ctx, "labels", &labels)?,
            dlogits: storage(ctx, "dlogits", 4 * logits.len() as u64)?,
            losses: storage(ctx, "losses", 4 * n)?,
            correct: storage(ctx, "correct", 4 * n)?,
            stats: storage(ctx, "stats", std::mem::size_of::<GpuStats>() as u64)?,
        })
    }

    /// Runs forward_backward once, then accumulate `accumulations` times, and reads the stats.
    fn run(&self, ctx: &GpuContext, n: usize, accumulations: usize) -> Result<GpuStats> {
        let kernels = SoftmaxXentKernels::new(ctx);
        let (losses, correct): (View, View) = ((&self.losses).into(), (&self.correct).into());
        let forward = kernels.forward_backward(
            ctx,
            CLASSES,
            n,
            (&self.logits).into(),
            (&self.labels).into(),
            (&self.dlogits).into(),
            losses,
            correct,
        );
        let accumulate = kernels.accumulate(ctx, n, losses, correct, (&self.stats).into());
        let dispatches: Vec<&Dispatch> = std::iter::once(&forward)
            .chain(std::iter::repeat_n(&accumulate, accumulations))
            .collect();
        run(ctx, &dispatches);
        Ok(read_buffer::<GpuStats>(ctx, &self.stats, 0, 1)?[0])
    }
}

fn check_batch(ctx: &GpuContext, n: usize) -> Result<Comparison> {
    let (logits, labels) = random_batch(n);
    let batch = Batch::new(ctx, &logits, &labels)?;
    let stats = batch.run(ctx, n, 2)?;

    let mut cpu_dlogits = vec![0.0f32; n * CLASSES];
    let sums = softmax_cross_entropy(CLASSES, &logits, &labels, Some(&mut cpu_dlogits));
    // The CPU reports only sums; one-example batches give the per-example losses and flags.
    let (cpu_losses, cpu_correct): (Vec<f32>, Vec<u32>) = logits
        .chunks_exact(CLASSES)
        .zip(&labels)
        .map(|(row, &label)| {
            let one = softmax_cross_entropy(CLASSES, row, &[label], None);
            (one.loss_sum as f32, one.correct as u32)
        })
        .unzip();

    // dlogits are O(1/n): compare n * dlogits, the per-example gradients, which are O(1) like the
    // tolerance's absolute floor assumes (unscaled, a wrong 1/n could hide under that floor).
    let per_example_gradient =
        |d: Vec<f32>| -> Vec<f32> { d.into_iter().map(|v| v * n as f32).collect() };
    let gpu_dlogits = read_buffer(ctx, &batch.dlogits, 0, n * CLASSES)?;
    let per_example = compare(
        &per_example_gradient(gpu_dlogits),
        &per_example_gradient(cpu_dlogits),
    )
    .merge(compare(
        &read_buffer(ctx, &batch.losses, 0, n)?,
        &cpu_losses,
    ))
    .merge(compare_exact(
        &read_buffer(ctx, &batch.correct, 0, n)?,
        &cpu_correct,
    ));
    let twice = |v: usize| 2 * v as u32;
    let accumulated =
        compare(&[stats.loss_sum], &[(2.0 * sums.loss_sum) as f32]).merge(compare_exact(
            &[stats.correct, stats.examples, stats.nonfinite],
            &[twice(sums.correct), twice(n), 0],
        ));
    Ok(per_example.merge(accumulated))
}

/// Row 3 of a random batch gets `bad` as one logit; the stats must flag it.
fn check_nonfinite(ctx: &GpuContext, n: usize, bad: f32) -> Result<Comparison> {
    let (mut logits, labels) = random_batch(n);
    logits[3 * CLASSES + 4] = bad;
    let stats = Batch::new(ctx, &logits, &labels)?.run(ctx, n, 1)?;
    Ok(compare_exact(
        &[stats.nonfinite, stats.examples],
        &[1, n as u32],
    ))
}
