//! The GPU backend: the training set lives on the GPU, each step is one command buffer (gather,
//! forward, loss, backward, update) and nothing is read back per step. Loss and accuracy
//! counters are mapped asynchronously a few times per second.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;

use anyhow::{anyhow, bail, Result};

use super::autotune::{Autotuner, Claims};
use super::buffer::ParamBuffers;
use super::buffer::{read_buffer, storage, storage_init, uniform, View};
use super::check::{compare, compare_exact, Comparison, CrossCheck};
use super::context::GpuContext;
use super::gather::pack_bytes;
use super::kernel::{record_passes, Dispatch, StepKey};
use super::network::{CompiledNet, Kernels, Shared};
use super::optim::OptimStep;
use super::softmax_xent::GpuStats;
use crate::backend::{Backend, BackendInfo, KernelChoice, OptimizerState, TrainStats};
use crate::config::{Augment, AutotuneMode, Optimizer};
use crate::cpu::{check_mask, CpuBackend};
use crate::data::{Split, IMAGE_PIXELS};
use crate::error::bad_input;
use crate::model::transfer::frozen_mask;
use crate::model::{init_params, Arch, Params, Plan, Tensor, MNIST_INPUT};
use crate::prune::Mask;
use crate::rng::random_vec;
use crate::train::epoch_order;

/// Steps queued ahead of the GPU before `train_step` waits: enough to keep it busy, few enough
/// that progress reports stay current.
const MAX_IN_FLIGHT: usize = 3;
/// Compiled batch sizes kept (training size, last partial batch, inference sizes).
const MAX_COMPILED: usize = 6;
/// Threads (each with a device of its own) that compile kernels before a first tuning, at most,
/// unless `COMPILE_THREADS` says otherwise: a device costs memory on a GPU, and past 8 the
/// largest kernel alone (12 s of the 90 s that the seed model's variants take on lavapipe)
/// bounds the time.
const MAX_COMPILERS: usize = 8;
const COMPILE_THREADS: &str = "MNIST_WGPU_COMPILE_THREADS";

/// The threads that compile kernels before a first tuning: `$MNIST_WGPU_COMPILE_THREADS`, else
/// one per core up to [`MAX_COMPILERS`].
fn compile_threads() -> Result<usize> {
    let Some(value) = std::env::var_os(COMPILE_THREADS) else {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cores.min(MAX_COMPILERS));
    };
    value
        .to_str()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            bad_input(format!(
                "{COMPILE_THREADS}: expected a whole number of at least 1, got '{}'",
                value.to_string_lossy()
            ))
        })
}

pub struct GpuBackend {
    ctx: GpuContext,
    plan: Plan,
    optimizer: Optimizer,
    /// Per parameter tensor: left alone by training steps (see [`Backend::set_frozen`]).
    frozen: Vec<bool>,
    /// Masked training (see [`Backend::set_mask`]): the keep flags, one u32 per parameter.
    keep: Option<wgpu::Buffer>,
    /// The context's kernels, shared with every backend built on it.
    kernels: std::sync::Arc<Kernels>,
    tuner: Autotuner,
    params: ParamBuffers,
    optim_step: wgpu::Buffer,
    /// The [`StepKey`] of stochastic kernels, rewritten before every step.
    step_key: wgpu::Buffer,
    seed: u32,
    augment: Option<Augment>,
    stats: wgpu::Buffer,
    train_images: wgpu::Buffer,
    train_labels: wgpu::Buffer,
    /// (batch size, training?) -> compiled network.
    nets: HashMap<(usize, bool), CompiledNet>,
    step: u32,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
    pending_read: Option<PendingRead>,
}

/// A copy of the stats record on its way back to the host.
struct PendingRead {
    staging: wgpu::Buffer,
    done: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

impl GpuBackend {
    pub fn new(
        ctx: &GpuContext,
        plan: Plan,
        params: &Params<f32>,
        optimizer: Optimizer,
    ) -> Result<GpuBackend> {
        let ctx = ctx.clone();
        let kernels = ctx.built_once(|| Kernels::new(&ctx));
        let lens: Vec<usize> = params.tensors.iter().map(|t| t.data.len()).collect();
        let buffers = ParamBuffers::new(&ctx, &lens)?;
        for (tensor, &(offset, _)) in params.tensors.iter().zip(&buffers.ranges) {
            ctx.queue
                .write_buffer(&buffers.params, offset, bytemuck::cast_slice(&tensor.data));
        }
        let optim_step = uniform(&ctx, "optimiser step", &OptimStep::new(optimizer, 1));
        let step_key = uniform(&ctx, "step key", &StepKey::default());
        let stats = storage(&ctx, "train stats", std::mem::size_of::<GpuStats>() as u64)?;
        let empty = storage(&ctx, "no training data", 4)?;
        let backend = GpuBackend {
            frozen: vec![false; lens.len()],
            keep: None,
            kernels,
            tuner: Autotuner::new(&ctx, AutotuneMode::Off, None),
            params: buffers,
            optim_step,
            step_key,
            seed: 0,
            augment: None,
            stats,
            train_images: empty.clone(),
            train_labels: empty,
            plan,
            optimizer,
            nets: HashMap::new(),
            step: 0,
            in_flight: VecDeque::new(),
            pending_read: None,
            ctx,
        };
        backend.ctx.check_errors()?;
        Ok(backend)
    }

    fn net(&mut self, n: usize, train: bool) -> Result<&CompiledNet> {
        if !self.nets.contains_key(&(n, train)) {
            if self.nets.len() >= MAX_COMPILED {
                self.nets.retain(|&(_, t), _| t);
            }
            // Inference gathers from its own upload buffer through identity indices.
            let upload = if train {
                None
            } else {
                let images = storage(&self.ctx, "inference images", (n * IMAGE_PIXELS) as u64)?;
                let labels = storage(&self.ctx, "inference labels (unused)", n as u64)?;
                Some((images, labels))
            };
            let (images, labels) = upload
                .as_ref()
                .map_or((&self.train_images, &self.train_labels), |(i, l)| (i, l));
            let shared = Shared {
                kernels: &self.kernels,
                params: &self.params,
                images: View::whole(images),
                labels: View::whole(labels),
                optim_step: &self.optim_step,
                step_key: &self.step_key,
                stats: View::whole(&self.stats),
                optimizer: self.optimizer,
                frozen: &self.frozen,
                keep: self.keep.as_ref(),
                augment: self.augment,
            };
            let mut net =
                CompiledNet::new(&self.ctx, &self.plan, &shared, &mut self.tuner, (n, train))?;
            if let Some((images, _)) = upload {
                let identity: Vec<u32> = (0..n as u32).collect();
                self.ctx
                    .queue
                    .write_buffer(&net.indices, 0, bytemuck::cast_slice(&identity));
                net.upload = Some(images);
            }
            let kind = if train { "training" } else { "inference" };
            log::debug!(
                "compiled the {kind} network for batch {n}: {} dispatches",
                net.dispatches.len()
            );
            self.nets.insert((n, train), net);
        }
        Ok(&self.nets[&(n, train)])
    }

    fn submit(&mut self, net_key: (usize, bool)) -> Result<()> {
        let net = &self.nets[&net_key];
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let dispatches: Vec<&Dispatch> = net.dispatches.iter().collect();
        record_passes(&mut encoder, &dispatches, |pass, _, d| d.record(pass));
        self.in_flight
            .push_back(self.ctx.queue.submit([encoder.finish()]));
        while self.in_flight.len() > MAX_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("queue is not empty");
            self.ctx.poll(wgpu::PollType::Wait {
                submission_index: Some(oldest),
                timeout: None,
            })?;
        }
        self.ctx.check_errors()
    }

    /// Copies the stats record to a staging buffer, clears it, and starts mapping the copy.
    fn start_stats_read(&mut self) -> PendingRead {
        let size = std::mem::size_of::<GpuStats>() as u64;
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("stats read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.stats, 0, &staging, 0, size);
        encoder.clear_buffer(&self.stats, 0, None);
        self.ctx.queue.submit([encoder.finish()]);
        let (tx, done) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        PendingRead { staging, done }
    }

    /// The stats of a finished read; `None` if it is still in flight and `wait` is false.
    fn read_stats(&self, read: &PendingRead, wait: bool) -> Result<Option<TrainStats>> {
        let poll = if wait {
            wgpu::PollType::wait_indefinitely()
        } else {
            wgpu::PollType::Poll
        };
        self.ctx.poll(poll)?;
        let outcome = if wait {
            read.done
                .recv()
                .map_err(|_| anyhow!("GPU stats read-back was never completed"))?
        } else {
            match read.done.try_recv() {
                Ok(outcome) => outcome,
                Err(_) => return Ok(None),
            }
        };
        outcome.map_err(|e| anyhow!("GPU stats read-back failed: {e}"))?;
        let stats: GpuStats = {
            let view = read
                .staging
                .get_mapped_range(..)
                .map_err(|e| anyhow!("GPU stats read-back failed: {e}"))?;
            bytemuck::pod_read_unaligned(&view)
        };
        read.staging.unmap();
        if stats.nonfinite != 0 {
            bail!("a loss or gradient is not finite (diverged; try a smaller --lr)");
        }
        Ok(Some(TrainStats {
            loss_sum: f64::from(stats.loss_sum),
            correct: u64::from(stats.correct),
            examples: u64::from(stats.examples),
        }))
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: self.ctx.backend_name(),
            adapter: self.ctx.info.name.clone(),
        }
    }

    fn set_train_data(&mut self, train: &Split) -> Result<()> {
        self.train_images = storage_init(&self.ctx, "training images", &pack_bytes(&train.images))?;
        self.train_labels = storage_init(&self.ctx, "training labels", &pack_bytes(&train.labels))?;
        // Compiled training networks bind the old data set.
        self.nets.retain(|&(_, train), _| !train);
        self.ctx.check_errors()
    }

    fn set_seed(&mut self, seed: u64) {
        self.seed = crate::rng::seed32(seed);
    }

    fn set_augmentation(&mut self, augment: Option<Augment>) {
        if augment != self.augment {
            self.augment = augment;
            // Compiled training networks have (or lack) the augment dispatch.
            self.nets.retain(|&(_, train), _| !train);
        }
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.optimizer = self.optimizer.with_lr(lr);
    }

    fn set_frozen(&mut self, frozen: &[bool]) -> Result<()> {
        anyhow::ensure!(
            frozen.len() == self.frozen.len(),
            "{} frozen flags for {} tensors",
            frozen.len(),
            self.frozen.len()
        );
        if frozen != self.frozen {
            self.frozen = frozen.to_vec();
            // Compiled training networks update (or skip) each tensor.
            self.nets.retain(|&(_, train), _| !train);
        }
        Ok(())
    }

    fn set_mask(&mut self, mask: Option<&Mask>) -> Result<()> {
        let Some(mask) = mask else {
            if self.keep.take().is_some() {
                // Compiled training networks run the masked update.
                self.nets.retain(|&(_, train), _| !train);
            }
            return Ok(());
        };
        let mut params = self.params()?;
        check_mask(mask, &params)?;
        let mut words = vec![1u32; self.params.len];
        for (keep, &(offset, _)) in mask.keep.iter().zip(&self.params.ranges) {
            let Some(keep) = keep else { continue };
            let start = (offset / 4) as usize;
            for (word, &kept) in words[start..].iter_mut().zip(keep) {
                *word = u32::from(kept);
            }
        }
        match &self.keep {
            Some(buffer) => self
                .ctx
                .queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(&words)),
            None => {
                self.keep = Some(storage_init(&self.ctx, "keep flags", &words)?);
                // Compiled training networks run the unmasked update.
                self.nets.retain(|&(_, train), _| !train);
            }
        }
        mask.apply(&mut params);
        for ((tensor, keep), &(offset, _)) in
            (params.tensors.iter().zip(&mask.keep)).zip(&self.params.ranges)
        {
            if keep.is_some() {
                self.ctx.queue.write_buffer(
                    &self.params.params,
                    offset,
                    bytemuck::cast_slice(&tensor.data),
                );
            }
        }
        self.ctx.check_errors()
    }

    fn train_step(&mut self, indices: &[u32]) -> Result<()> {
        self.prepare_train_step(indices)?;
        self.submit((indices.len(), true))
    }

    fn take_train_stats(&mut self) -> Result<TrainStats> {
        let mut total = TrainStats::default();
        let earlier = self.pending_read.take();
        let latest = self.start_stats_read();
        for read in earlier.iter().chain([&latest]) {
            let stats = self
                .read_stats(read, true)?
                .expect("a waited read completes");
            total.loss_sum += stats.loss_sum;
            total.correct += stats.correct;
            total.examples += stats.examples;
        }
        self.in_flight.clear();
        Ok(total)
    }

    fn poll_train_stats(&mut self) -> Result<Option<TrainStats>> {
        let Some(read) = self.pending_read.take() else {
            self.pending_read = Some(self.start_stats_read());
            return Ok(None);
        };
        let stats = self.read_stats(&read, false)?;
        if stats.is_none() {
            self.pending_read = Some(read);
        }
        Ok(stats)
    }

    fn classes(&self) -> usize {
        self.plan.classes()
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        let n = images.len() / IMAGE_PIXELS;
        self.net(n, false)?;
        let net = &self.nets[&(n, false)];
        let upload = net
            .upload
            .as_ref()
            .expect("inference networks own an upload buffer");
        self.ctx
            .queue
            .write_buffer(upload, 0, bytemuck::cast_slice(&pack_bytes(images)));
        self.submit((n, false))?;
        read_buffer(
            &self.ctx,
            &self.nets[&(n, false)].logits,
            0,
            n * self.plan.classes(),
        )
    }

    fn kernel_choices(&self) -> Vec<KernelChoice> {
        self.tuner.choices().to_vec()
    }

    /// Compiles (and autotunes) the training and inference networks for those batch sizes.
    fn prepare(&mut self, training: &[usize], inference: &[usize]) -> Result<()> {
        for &n in training {
            self.check_batch_fits(
                n,
                &format!("a training batch of {n} examples (--batch-size)"),
            )?;
        }
        for &n in inference {
            self.check_batch_fits(n, &format!("an evaluation batch of {n} examples"))?;
        }
        let threads = compile_threads()?;
        if threads > 1 && self.tuner.tunes_afresh() {
            self.compile_beside_helpers(threads, training, inference)?;
        }
        self.build_nets(training, inference)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.read_tensors(&self.params.params)
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(OptimizerState {
            step: self.step,
            m: self.read_tensors(&self.params.m)?,
            v: self.read_tensors(&self.params.v)?,
        })
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.params.ranges.iter().map(|&(_, len)| len).collect();
        state.check_lens(&lens)?;
        for (buffer, moments) in [(&self.params.m, &state.m), (&self.params.v, &state.v)] {
            for (tensor, &(offset, _)) in moments.tensors.iter().zip(&self.params.ranges) {
                self.ctx
                    .queue
                    .write_buffer(buffer, offset, bytemuck::cast_slice(&tensor.data));
            }
        }
        self.step = state.step;
        self.ctx.check_errors()
    }
}

impl GpuBackend {
    /// Fails with a one-line bad-input error, before any work, where a batch of `n` examples
    /// needs a buffer larger than the adapter binds (the input batch or the largest
    /// activation), rather than with a validation error from the device midway.
    fn check_batch_fits(&self, n: usize, batch: &str) -> Result<()> {
        let per_example = self
            .plan
            .steps
            .iter()
            .map(|s| s.output.len())
            .fold(IMAGE_PIXELS, usize::max) as u64
            * 4;
        let limit = self
            .ctx
            .limits
            .max_storage_buffer_binding_size
            .min(self.ctx.limits.max_buffer_size);
        let bytes = per_example * n as u64;
        if bytes > limit {
            return Err(bad_input(format!(
                "{batch}: needs a buffer of {bytes} bytes, over the {limit} that adapter '{}' binds; at most {} examples fit in a batch",
                self.ctx.info.name,
                limit / per_example
            )));
        }
        Ok(())
    }

    fn build_nets(&mut self, training: &[usize], inference: &[usize]) -> Result<()> {
        for &n in training {
            self.net(n, true)?;
        }
        for &n in inference {
            self.net(n, false)?;
        }
        self.ctx.check_errors()
    }

    /// Before a first tuning: compiles every variant of every op of these networks, on this
    /// device and on `threads - 1` helper devices of the same adapter, a thread each, each taking the variants no other has taken, so that the cores
    /// compile at once (lavapipe compiles each kernel with LLVM, for up to 12 s, on one thread,
    /// at its first dispatch). The helpers' kernels reach this device through the driver's disk
    /// cache (Mesa's); where there is none, tuning compiles them again, as it would have anyway.
    /// A helper that fails is only logged.
    fn compile_beside_helpers(
        &mut self,
        threads: usize,
        training: &[usize],
        inference: &[usize],
    ) -> Result<()> {
        let claims = Claims::default();
        let helpers: Vec<_> = (1..threads)
            .map(|_| {
                let (ctx, plan, optimizer) = (self.ctx.clone(), self.plan.clone(), self.optimizer);
                let (claims, training, inference) =
                    (claims.clone(), training.to_vec(), inference.to_vec());
                std::thread::spawn(move || -> Result<()> {
                    let ctx = ctx.sibling()?;
                    let params = init_params(&plan, 0);
                    let mut helper = GpuBackend::new(&ctx, plan, &params, optimizer)?;
                    helper.tuner.set_compile_only(Some(claims));
                    helper.build_nets(&training, &inference)
                })
            })
            .collect();
        self.tuner.set_compile_only(Some(claims));
        let compiled = self.build_nets(training, inference);
        for helper in helpers {
            match helper.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("compiling kernels on a helper device failed: {e:#}"),
                Err(_) => log::warn!("compiling kernels on a helper device panicked"),
            }
        }
        self.tuner.set_compile_only(None);
        // Built with the rule's variants; tuning builds them again.
        self.nets.clear();
        compiled
    }

    /// One of the flat per-parameter buffers (parameters, moments) split into named tensors.
    fn read_tensors(&self, buffer: &wgpu::Buffer) -> Result<Params<f32>> {
        let flat: Vec<f32> = read_buffer(&self.ctx, buffer, 0, self.params.len)?;
        let tensors = (self.plan.params.iter().zip(&self.params.ranges))
            .map(|(spec, &(offset, len))| {
                let start = (offset / 4) as usize;
                Tensor {
                    name: spec.name.clone(),
                    shape: spec.shape.clone(),
                    data: flat[start..start + len].to_vec(),
                }
            })
            .collect();
        Ok(Params { tensors })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// How kernel variants are chosen from now on (a new backend uses each op's fixed rule,
    /// [`AutotuneMode::Off`]); `cache` is the autotune cache file, if any. `pinned` choices
    /// (from an earlier run's metrics) win over everything else.
    pub fn set_autotune(
        &mut self,
        mode: AutotuneMode,
        cache: Option<std::path::PathBuf>,
        pinned: &[KernelChoice],
    ) {
        self.tuner = Autotuner::new(&self.ctx, mode, cache);
        self.tuner.pin(pinned);
        // Compiled networks were built with the old choices.
        self.nets.clear();
    }

    /// Writes the step's example indices and optimiser uniform and returns the network to
    /// record (the profiler records it its own way).
    pub(crate) fn prepare_train_step(&mut self, indices: &[u32]) -> Result<&CompiledNet> {
        self.step += 1;
        let step = OptimStep::new(self.optimizer, self.step);
        self.ctx
            .queue
            .write_buffer(&self.optim_step, 0, bytemuck::bytes_of(&step));
        let key = StepKey {
            seed: self.seed,
            step: self.step,
            ..StepKey::default()
        };
        self.ctx
            .queue
            .write_buffer(&self.step_key, 0, bytemuck::bytes_of(&key));
        self.net(indices.len(), true)?;
        let net = &self.nets[&(indices.len(), true)];
        self.ctx
            .queue
            .write_buffer(&net.indices, 0, bytemuck::cast_slice(indices));
        Ok(net)
    }
}

/// Whole training steps: the GPU backend against the CPU backend from the same initial weights
/// on the same batches, comparing every parameter (and running statistic) afterwards, then the
/// logits of inference. The seed model with Adam and SGD, with Adam on augmented batches (the
/// same seed and step numbers must give both backends the same images), and a model with every other layer
/// kind (batch norm, dropout, strides, padding, average pooling, sigmoid, tanh) with Nesterov
/// SGD and weight decay. Not Adam there: batch norm makes some gradients sums that cancel to
/// nearly 0 (a weight whose input is about the same for every image of the batch, a bias right
/// before batch norm), and Adam divides such rounding noise by its own size, turning it into
/// full steps of random sign on each device. SGD keeps it at the size of noise.
pub fn checks() -> Vec<CrossCheck> {
    let nesterov = Optimizer::Sgd {
        lr: 0.01,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
    };
    let none: &[&str] = &[];
    [
        (Optimizer::adam(1e-3), 7usize, "seed", None, none),
        (Optimizer::sgd(0.01), 33, "seed", None, none),
        (
            Optimizer::adam(1e-3),
            7,
            "seed",
            Some(Augment::mnist()),
            none,
        ),
        (nesterov, 7, EVERY_LAYER, None, none),
        (Optimizer::adam(1e-3), 7, "seed", None, &["conv1", "conv2"]),
        (nesterov, 7, EVERY_LAYER, None, &["conv1", "bn1", "fc1"]),
        (Optimizer::adam(1e-3), 7, FIVE_CLASSES, None, &["conv1"]),
    ]
    .into_iter()
    .map(|(opt, batch, arch, augment, frozen)| {
        let shape = format!(
            "{} model, {TRAIN_CHECK_STEPS} steps of {batch}, {}{}{}",
            match arch {
                "seed" => "seed",
                FIVE_CLASSES => "five-class",
                _ => "every-layer",
            },
            opt.name(),
            if augment.is_some() { ", augmented" } else { "" },
            match frozen.is_empty() {
                true => String::new(),
                false => format!(", {} frozen", frozen.join(", ")),
            }
        );
        CrossCheck::new("train_step", shape, move |ctx| {
            check_training(ctx, arch, opt, batch, augment, frozen)
        })
    })
    .collect()
}

/// Every layer kind but max pooling (which the seed model has).
const EVERY_LAYER: &str =
    "conv8k3same-bn-relu-conv6k3s2-tanh-avgpool2-dropout0.25-flatten-dense16-bn-sigmoid-dense10";

/// A model of five classes (labels 0-4), as for a subset of the digits.
const FIVE_CLASSES: &str = "conv8k3-relu-pool2-conv8k3-relu-pool2-flatten-dense5";

const TRAIN_CHECK_STEPS: usize = 20;

/// Synthetic digits: blurry random strokes, labels cycling through 0 to `classes` - 1.
fn synthetic_split(len: usize, classes: usize) -> Split {
    let noise = random_vec(len * IMAGE_PIXELS, 99, 0.0, 1.0);
    let images = noise
        .iter()
        .map(|&u| if u < 0.8 { 0 } else { (u * 255.0) as u8 })
        .collect();
    Split {
        images,
        labels: (0..len).map(|i| (i % classes) as u8).collect(),
    }
}

fn check_training(
    ctx: &GpuContext,
    arch: &str,
    optimizer: Optimizer,
    batch: usize,
    augment: Option<Augment>,
    frozen: &[&str],
) -> Result<Comparison> {
    let arch = Arch::parse(arch).map_err(|e| anyhow!(e))?;
    let plan = Plan::new(&arch, MNIST_INPUT).map_err(|e| anyhow!(e))?;
    let init = init_params(&plan, 1);
    let frozen: Vec<String> = frozen.iter().map(|f| f.to_string()).collect();
    let frozen = frozen_mask(&plan, &frozen);
    let data = synthetic_split(batch * 4 + 3, plan.classes());
    let mut cpu = CpuBackend::new(plan.clone(), init.clone(), optimizer);
    let mut gpu = GpuBackend::new(ctx, plan, &init, optimizer)?;
    for backend in [&mut cpu as &mut dyn Backend, &mut gpu] {
        backend.set_train_data(&data)?;
        backend.set_seed(5);
        backend.set_augmentation(augment);
        backend.set_frozen(&frozen)?;
        for step in 0..TRAIN_CHECK_STEPS {
            let order = epoch_order(data.len(), 5, step / 4 + 1);
            let start = (step % 4) * batch;
            backend.train_step(&order[start..start + batch])?;
        }
    }
    let (cpu_stats, gpu_stats) = (cpu.take_train_stats()?, gpu.take_train_stats()?);
    let (cpu_params, gpu_params) = (cpu.params()?, gpu.params()?);
    let mut result = compare(&[gpu_stats.loss_sum as f32], &[cpu_stats.loss_sum as f32]);
    result = result.merge(compare_exact(
        &[gpu_stats.examples as u32],
        &[cpu_stats.examples as u32],
    ));
    for (g, c) in gpu_params.tensors.iter().zip(&cpu_params.tensors) {
        result = result.merge(compare(&g.data, &c.data));
    }
    // Frozen tensors (running statistics included) keep their bits on both devices.
    let bits = |t: &Tensor<f32>| t.data.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    for (i, _) in frozen.iter().enumerate().filter(|(_, &f)| f) {
        let start = bits(&init.tensors[i]);
        result = result.merge(compare_exact(&bits(&gpu_params.tensors[i]), &start));
        result = result.merge(compare_exact(&bits(&cpu_params.tensors[i]), &start));
    }
    let images = &data.images[..batch * IMAGE_PIXELS];
    let (cpu_logits, gpu_logits) = (cpu.predict_logits(images)?, gpu.predict_logits(images)?);
    Ok(result.merge(compare(&gpu_logits, &cpu_logits)))
}
