//! The CPU reference backend: trains in `f32` with the ops of this module.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::augment::augment_in_place;
use super::network::{gradients, logits, update_running_statistics, StepKey, Workspace};
use super::optim::{masked_optimizer_update, optimizer_update, OptimState};
use crate::backend::{Backend, BackendInfo, OptimizerState, TrainStats};
use crate::config::{Augment, Optimizer};
use crate::data::{pixel_value, Split, IMAGE_PIXELS};
use crate::model::{Params, Plan, Tensor};
use crate::prune::Mask;
use crate::text::count;

pub struct CpuBackend {
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
    state: Vec<OptimState>,
    /// Per tensor: left alone by every step (see [`Backend::set_frozen`]).
    frozen: Vec<bool>,
    /// Masked training (see [`Backend::set_mask`]).
    mask: Option<Mask>,
    step: u32,
    /// The run's [`crate::rng::seed32`], for dropout and augmentation.
    seed: u32,
    augment: Option<Augment>,
    train: Arc<Split>,
    stats: TrainStats,
    x: Vec<f32>,
    labels: Vec<u8>,
    /// Buffers kept between steps, so that steps do not allocate.
    workspace: Workspace<f32>,
}

impl CpuBackend {
    pub fn new(plan: Plan, params: Params<f32>, optimizer: Optimizer) -> CpuBackend {
        let state = params
            .tensors
            .iter()
            .map(|t| OptimState::zeros(t.data.len()))
            .collect();
        let workspace = Workspace::new(&plan);
        CpuBackend {
            frozen: vec![false; params.tensors.len()],
            mask: None,
            plan,
            params,
            optimizer,
            state,
            step: 0,
            seed: 0,
            augment: None,
            train: Arc::default(),
            stats: TrainStats::default(),
            x: Vec::new(),
            labels: Vec::new(),
            workspace,
        }
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        let threads = rayon::current_num_threads();
        BackendInfo {
            backend: "cpu".into(),
            adapter: format!("CPU reference ({})", count(threads, "thread")),
        }
    }

    fn set_train_data(&mut self, train: &Split) -> Result<()> {
        self.train = Arc::new(train.clone());
        Ok(())
    }

    fn set_seed(&mut self, seed: u64) {
        self.seed = crate::rng::seed32(seed);
    }

    fn set_augmentation(&mut self, augment: Option<Augment>) {
        self.augment = augment;
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.optimizer = self.optimizer.with_lr(lr);
    }

    fn set_frozen(&mut self, frozen: &[bool]) -> Result<()> {
        anyhow::ensure!(
            frozen.len() == self.params.tensors.len(),
            "{} frozen flags for {}",
            frozen.len(),
            count(self.params.tensors.len(), "tensor")
        );
        self.frozen = frozen.to_vec();
        // A frozen batch norm trains in inference mode, on its running statistics.
        self.workspace.frozen_batch_norm = (self.plan.steps.iter())
            .map(|step| step.stats_index.is_some_and(|i| frozen[i]))
            .collect();
        Ok(())
    }

    fn set_mask(&mut self, mask: Option<&Mask>) -> Result<()> {
        if let Some(mask) = mask {
            check_mask(mask, &self.params)?;
            mask.apply(&mut self.params);
        }
        self.mask = mask.cloned();
        Ok(())
    }

    fn train_step(&mut self, indices: &[u32]) -> Result<()> {
        self.train.gather(indices, &mut self.x, &mut self.labels);
        // Step numbers start at 1, as in the GPU's step key.
        self.step += 1;
        if let Some(augment) = &self.augment {
            augment_in_place(augment, (self.seed, self.step), &mut self.x);
        }
        let key = StepKey {
            seed: self.seed,
            step: self.step,
        };
        let sums = gradients(
            &self.plan,
            &self.params,
            (&self.x, &self.labels),
            key,
            None,
            &mut self.workspace,
        );
        if !sums.loss_sum.is_finite() {
            bail!(
                "the training loss is {} (diverged; try a smaller --lr)",
                sums.loss_sum
            );
        }
        let frozen = &self.frozen;
        let trainable =
            (self.plan.params.iter().zip(frozen)).map(|(spec, &f)| spec.trainable && !f);
        for (t, (((p, g), s), trainable)) in (self.params.tensors.iter_mut())
            .zip(&self.workspace.grads.tensors)
            .zip(&mut self.state)
            .zip(trainable)
            .enumerate()
        {
            let keep = (self.mask.as_ref()).and_then(|m| m.keep[t].as_deref());
            match (trainable, keep) {
                (false, _) => {}
                (true, None) => {
                    optimizer_update(self.optimizer, self.step, &mut p.data, &g.data, s)
                }
                (true, Some(keep)) => masked_optimizer_update(
                    self.optimizer,
                    self.step,
                    &mut p.data,
                    &g.data,
                    s,
                    keep,
                ),
            }
        }
        update_running_statistics(&self.plan, &mut self.params, &self.workspace, frozen);
        self.stats.loss_sum += sums.loss_sum;
        self.stats.correct += sums.correct as u64;
        self.stats.examples += indices.len() as u64;
        Ok(())
    }

    fn take_train_stats(&mut self) -> Result<TrainStats> {
        Ok(std::mem::take(&mut self.stats))
    }

    fn classes(&self) -> usize {
        self.plan.classes()
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        let x: Vec<f32> = images.iter().map(|&p| pixel_value(p)).collect();
        debug_assert_eq!(x.len() % IMAGE_PIXELS, 0);
        Ok(logits(&self.plan, &self.params, &x, &self.workspace))
    }

    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.params.clone())
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        let moments = |pick: fn(&OptimState) -> &Vec<f32>| Params {
            tensors: (self.params.tensors.iter().zip(&self.state))
                .map(|(p, s)| Tensor {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: pick(s).clone(),
                })
                .collect(),
        };
        Ok(OptimizerState {
            step: self.step,
            m: moments(|s| &s.m),
            v: moments(|s| &s.v),
        })
    }

    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.params.tensors.iter().map(|t| t.data.len()).collect();
        state.check_lens(&lens)?;
        self.step = state.step;
        self.state = (state.m.tensors.iter().zip(&state.v.tensors))
            .map(|(m, v)| OptimState {
                m: m.data.clone(),
                v: v.data.clone(),
            })
            .collect();
        Ok(())
    }
}

/// An error unless `mask` has one entry per tensor of `params`, each as long as its tensor.
pub fn check_mask(mask: &Mask, params: &Params<f32>) -> Result<()> {
    anyhow::ensure!(
        mask.keep.len() == params.tensors.len()
            && (mask.keep.iter().zip(&params.tensors))
                .all(|(k, t)| k.as_ref().is_none_or(|k| k.len() == t.data.len())),
        "a mask of another model ({} tensors for {})",
        mask.keep.len(),
        params.tensors.len()
    );
    Ok(())
}
