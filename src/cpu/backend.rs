//! The CPU reference backend: trains in `f32` with the ops of this module.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::network::{backward_into, forward, forward_into, Backward, Forward};
use super::optim::{optimizer_update, OptimState};
use super::softmax_xent::softmax_cross_entropy;
use crate::backend::{Backend, BackendInfo, TrainStats};
use crate::config::Optimizer;
use crate::data::{pixel_value, Split, IMAGE_PIXELS};
use crate::model::{Params, Plan, NUM_CLASSES};

pub struct CpuBackend {
    plan: Plan,
    params: Params<f32>,
    optimizer: Optimizer,
    state: Vec<OptimState>,
    step: u32,
    train: Arc<Split>,
    stats: TrainStats,
    x: Vec<f32>,
    labels: Vec<u8>,
    /// Buffers of the training step, kept so that steps do not allocate.
    fwd: Forward<f32>,
    dlogits: Vec<f32>,
    bwd: Backward<f32>,
}

impl CpuBackend {
    pub fn new(plan: Plan, params: Params<f32>, optimizer: Optimizer) -> CpuBackend {
        let state = params
            .tensors
            .iter()
            .map(|t| OptimState::zeros(t.data.len()))
            .collect();
        let bwd = Backward::new(&plan);
        CpuBackend {
            plan,
            params,
            optimizer,
            state,
            step: 0,
            train: Arc::default(),
            stats: TrainStats::default(),
            x: Vec::new(),
            labels: Vec::new(),
            fwd: Forward::default(),
            dlogits: Vec::new(),
            bwd,
        }
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        let threads = rayon::current_num_threads();
        BackendInfo {
            backend: "cpu".into(),
            adapter: format!("CPU reference ({threads} threads)"),
        }
    }

    fn set_train_data(&mut self, train: &Split) -> Result<()> {
        self.train = Arc::new(train.clone());
        Ok(())
    }

    fn train_step(&mut self, indices: &[u32]) -> Result<()> {
        self.train.gather(indices, &mut self.x, &mut self.labels);
        forward_into(&self.plan, &self.params, &self.x, &mut self.fwd);
        let logits = self.fwd.logits();
        self.dlogits.resize(logits.len(), 0.0);
        let sums =
            softmax_cross_entropy(NUM_CLASSES, logits, &self.labels, Some(&mut self.dlogits));
        if !sums.loss_sum.is_finite() {
            bail!(
                "the training loss is {} (diverged; try a smaller --lr)",
                sums.loss_sum
            );
        }
        backward_into(
            &self.plan,
            &self.params,
            &self.x,
            &self.fwd,
            &self.dlogits,
            None,
            &mut self.bwd,
        );
        self.step += 1;
        for ((p, g), s) in self
            .params
            .tensors
            .iter_mut()
            .zip(&self.bwd.grads.tensors)
            .zip(&mut self.state)
        {
            optimizer_update(self.optimizer, self.step, &mut p.data, &g.data, s);
        }
        self.stats.loss_sum += sums.loss_sum;
        self.stats.correct += sums.correct as u64;
        self.stats.examples += indices.len() as u64;
        Ok(())
    }

    fn take_train_stats(&mut self) -> Result<TrainStats> {
        Ok(std::mem::take(&mut self.stats))
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        let x: Vec<f32> = images.iter().map(|&p| pixel_value(p)).collect();
        debug_assert_eq!(x.len() % IMAGE_PIXELS, 0);
        Ok(forward(&self.plan, &self.params, &x)
            .outputs
            .pop()
            .expect("plan has steps"))
    }

    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.params.clone())
    }
}
