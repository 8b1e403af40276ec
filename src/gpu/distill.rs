//! The distillation loss on the GPU (`shaders/distill.wgsl`), twin of `cpu/distill.rs`:
//! per-example losses, correct flags and the gradient of the batch-mean loss w.r.t. the
//! student's logits. The losses and flags are laid out as softmax_xent's, so its `accumulate`
//! adds them to the same stats record.

use anyhow::Result;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{grid_1d, run, Access, Dispatch, Kernel, ShaderFile, WgslModule};
use super::softmax_xent::{GpuStats, SoftmaxXentKernels};
use crate::cpu::distill::{distillation_loss, Distill};
use crate::rng::random_vec;
use crate::{shader_file, wgsl_struct};

wgsl_struct! {
    /// The kernel's uniform (`params` in `distill.wgsl`).
    struct DistillParams {
        n: u32,
        classes: u32,
        temperature: f32,
        alpha: f32,
    }
}

impl DistillParams {
    fn new(n: usize, classes: usize, distill: Distill<f32>) -> DistillParams {
        let u = |v: usize| u32::try_from(v).expect("distill: size fits in u32");
        DistillParams {
            n: u(n),
            classes: u(classes),
            temperature: distill.temperature,
            alpha: distill.alpha,
        }
    }
}

/// The module: the uniform's declaration, then the kernel.
pub fn modules() -> Vec<WgslModule> {
    const FILES: &[ShaderFile] = &[DistillParams::WGSL, shader_file!("distill.wgsl")];
    vec![WgslModule::new("distill.wgsl", FILES)]
}

/// Catches a view that is too small for its tensor (the shader would read or write garbage).
fn expect_words(view: &View, words: usize, name: &str) {
    assert!(
        view.size >= 4 * words as u64,
        "distill: {name} holds {} bytes, needs {words} words",
        view.size
    );
}

/// The student's and teacher's logits (`n x classes` each) and the u32 labels of a batch.
#[derive(Clone, Copy)]
pub struct DistillInputs<'a> {
    pub student: View<'a>,
    pub teacher: View<'a>,
    pub labels: View<'a>,
}

pub struct DistillKernels {
    forward_backward: Kernel,
}

impl DistillKernels {
    pub fn new(ctx: &GpuContext) -> DistillKernels {
        let module = modules()[0].compile(ctx);
        use Access::*;
        DistillKernels {
            forward_backward: Kernel::new(
                ctx,
                &module,
                "distill_forward_backward",
                &[Uniform, ReadWrite, ReadWrite, Read, Read, Read, ReadWrite],
            ),
        }
    }

    /// Per-example `losses` (f32) and `correct` flags (u32 0/1), and `dlogits`, the gradient of
    /// the mean loss w.r.t. the student's logits. A row with a non-finite logit (student's or
    /// teacher's) gets a NaN loss.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &self,
        ctx: &GpuContext,
        classes: usize,
        n: usize,
        distill: Distill<f32>,
        inputs: DistillInputs,
        dlogits: View,
        losses: View,
        correct: View,
    ) -> Dispatch {
        expect_words(&inputs.student, n * classes, "student");
        expect_words(&inputs.teacher, n * classes, "teacher");
        expect_words(&inputs.labels, n, "labels");
        expect_words(&dlogits, n * classes, "dlogits");
        expect_words(&losses, n, "losses");
        expect_words(&correct, n, "correct");
        let params = uniform(
            ctx,
            "distill params",
            &DistillParams::new(n, classes, distill),
        );
        let buffers = [
            View::whole(&params),
            losses,
            correct,
            inputs.student,
            inputs.teacher,
            inputs.labels,
            dlogits,
        ];
        self.forward_backward.dispatch(ctx, &buffers, grid_1d(n))
    }
}

const TEMPERATURES: [f32; 3] = [1.0, 4.0, 20.0];
const ALPHAS: [f32; 3] = [0.0, 0.5, 1.0];

/// Batches of 1, 7 and 33 examples of 10 and 3 classes against the CPU, each at every
/// temperature and alpha; then a NaN student logit and an infinite teacher logit, which must
/// set the stats' `nonfinite`.
pub fn checks() -> Vec<CrossCheck> {
    let shapes = [1usize, 7, 33]
        .into_iter()
        .flat_map(|n| [10usize, 3].map(|classes| (n, classes)));
    let batches = shapes.map(|(n, classes)| {
        CrossCheck::new(
            "distill_forward_backward+softmax_xent_accumulate",
            format!("n {n}, {classes} classes, T {TEMPERATURES:?}, alpha {ALPHAS:?}"),
            move |ctx| check_batch(ctx, n, classes),
        )
    });
    let nonfinite =
        [(true, f32::NAN), (false, f32::INFINITY)]
            .into_iter()
            .map(|(in_student, bad)| {
                let whose = if in_student { "student" } else { "teacher" };
                CrossCheck::new(
                    "distill_forward_backward nonfinite",
                    format!("n 7, a {whose} logit {bad}"),
                    move |ctx| check_nonfinite(ctx, 7, in_student, bad),
                )
            });
    batches.chain(nonfinite).collect()
}

/// Student and teacher logits in [-30, 30), large enough to need the max shift, and labels.
fn random_batch(n: usize, classes: usize) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let seed = (n * 31 + classes) as u64 * 7919;
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let labels = (0..n).map(|_| rng.random_range(0..classes as u8)).collect();
    let student = random_vec(n * classes, seed, -30.0, 30.0);
    (
        student,
        random_vec(n * classes, seed + 1, -30.0, 30.0),
        labels,
    )
}

/// The GPU buffers of one batch, with the kernel's outputs zeroed.
struct Batch {
    student: wgpu::Buffer,
    teacher: wgpu::Buffer,
    labels: wgpu::Buffer,
    dlogits: wgpu::Buffer,
    losses: wgpu::Buffer,
    correct: wgpu::Buffer,
    stats: wgpu::Buffer,
}

impl Batch {
    fn new(ctx: &GpuContext, student: &[f32], teacher: &[f32], labels: &[u8]) -> Result<Batch> {
        let n = labels.len() as u64;
        let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        Ok(Batch {
            student: storage_init(ctx, "student", student)?,
            teacher: storage_init(ctx, "teacher", teacher)?,
            labels: storage_init(ctx, "labels", &labels)?,
            dlogits: storage(ctx, "dlogits", 4 * student.len() as u64)?,
            losses: storage(ctx, "losses", 4 * n)?,
            correct: storage(ctx, "correct", 4 * n)?,
            stats: storage(ctx, "stats", std::mem::size_of::<GpuStats>() as u64)?,
        })
    }

    /// Runs forward_backward, then softmax_xent's accumulate into zeroed stats, and reads them.
    fn run(
        &self,
        ctx: &GpuContext,
        kernels: &(DistillKernels, SoftmaxXentKernels),
        (n, classes): (usize, usize),
        distill: Distill<f32>,
    ) -> Result<GpuStats> {
        let (losses, correct): (View, View) = ((&self.losses).into(), (&self.correct).into());
        let inputs = DistillInputs {
            student: (&self.student).into(),
            teacher: (&self.teacher).into(),
            labels: (&self.labels).into(),
        };
        let dlogits = (&self.dlogits).into();
        let forward = kernels
            .0
            .forward_backward(ctx, classes, n, distill, inputs, dlogits, losses, correct);
        let stats = (&self.stats).into();
        let accumulate = kernels.1.accumulate(ctx, n, losses, correct, stats);
        ctx.queue
            .write_buffer(&self.stats, 0, bytemuck::bytes_of(&GpuStats::default()));
        run(ctx, &[&forward, &accumulate]);
        Ok(read_buffer::<GpuStats>(ctx, &self.stats, 0, 1)?[0])
    }
}

fn check_batch(ctx: &GpuContext, n: usize, classes: usize) -> Result<Comparison> {
    let (student, teacher, labels) = random_batch(n, classes);
    let batch = Batch::new(ctx, &student, &teacher, &labels)?;
    let kernels = (DistillKernels::new(ctx), SoftmaxXentKernels::new(ctx));
    let mut result = Comparison {
        passed: true,
        ..Default::default()
    };
    for temperature in TEMPERATURES {
        for alpha in ALPHAS {
            let distill = Distill { temperature, alpha };
            let stats = batch.run(ctx, &kernels, (n, classes), distill)?;
            let mut cpu_dlogits = vec![0.0f32; n * classes];
            let sums = distillation_loss(
                classes,
                &student,
                &teacher,
                &labels,
                distill,
                Some(&mut cpu_dlogits),
            );
            // The CPU reports only sums; one-example batches give the per-example losses.
            let (cpu_losses, cpu_correct): (Vec<f32>, Vec<u32>) = student
                .chunks_exact(classes)
                .zip(teacher.chunks_exact(classes))
                .zip(&labels)
                .map(|((s, t), &label)| {
                    let one = distillation_loss(classes, s, t, &[label], distill, None);
                    (one.loss_sum as f32, one.correct as u32)
                })
                .unzip();
            // Compare n * dlogits, the per-example gradients, which are O(1) like the
            // tolerance's absolute floor assumes (unscaled, a wrong 1/n could hide under it).
            let per_example_gradient =
                |d: Vec<f32>| -> Vec<f32> { d.into_iter().map(|v| v * n as f32).collect() };
            let gpu_dlogits = read_buffer(ctx, &batch.dlogits, 0, n * classes)?;
            result = result
                .merge(compare(
                    &per_example_gradient(gpu_dlogits),
                    &per_example_gradient(cpu_dlogits),
                ))
                .merge(compare(
                    &read_buffer(ctx, &batch.losses, 0, n)?,
                    &cpu_losses,
                ))
                .merge(compare_exact(
                    &read_buffer(ctx, &batch.correct, 0, n)?,
                    &cpu_correct,
                ))
                .merge(compare(&[stats.loss_sum], &[sums.loss_sum as f32]))
                .merge(compare_exact(
                    &[stats.correct, stats.examples, stats.nonfinite],
                    &[sums.correct as u32, n as u32, 0],
                ));
        }
    }
    Ok(result)
}

/// Row 3 of a random batch gets `bad` as one student or teacher logit; the stats must flag it.
fn check_nonfinite(ctx: &GpuContext, n: usize, in_student: bool, bad: f32) -> Result<Comparison> {
    let classes = 10;
    let (mut student, mut teacher, labels) = random_batch(n, classes);
    let poisoned = if in_student {
        &mut student
    } else {
        &mut teacher
    };
    poisoned[3 * classes + 4] = bad;
    let kernels = (DistillKernels::new(ctx), SoftmaxXentKernels::new(ctx));
    let distill = Distill {
        temperature: 4.0,
        alpha: 0.5,
    };
    let batch = Batch::new(ctx, &student, &teacher, &labels)?;
    let stats = batch.run(ctx, &kernels, (n, classes), distill)?;
    Ok(compare_exact(
        &[stats.nonfinite, stats.examples],
        &[1, n as u32],
    ))
}
