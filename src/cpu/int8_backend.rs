//! An int8 model behind the [`Backend`] interface, so that `eval` and `predict` run it like
//! any model. It only infers: the training calls fail (a quantised model is not trained).

use anyhow::{bail, Result};

use super::int8::Int8Net;
use crate::backend::{Backend, BackendInfo, OptimizerState};
use crate::config::Augment;
use crate::data::Split;
use crate::model::quant::QuantizedModel;
use crate::model::Params;

pub struct Int8Backend {
    net: Int8Net,
}

impl Int8Backend {
    pub fn new(model: QuantizedModel) -> Int8Backend {
        Int8Backend {
            net: Int8Net::new(model),
        }
    }
}

const INFERENCE_ONLY: &str = "an int8 model only infers; train the float model";

impl Backend for Int8Backend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            adapter: "int8 reference".into(),
        }
    }

    fn set_train_data(&mut self, _train: &Split) -> Result<()> {
        bail!(INFERENCE_ONLY)
    }

    fn set_seed(&mut self, _seed: u64) {}

    fn set_augmentation(&mut self, _augment: Option<Augment>) {}

    fn set_learning_rate(&mut self, _lr: f32) {}

    fn set_frozen(&mut self, _frozen: &[bool]) -> Result<()> {
        bail!(INFERENCE_ONLY)
    }

    fn set_mask(&mut self, _mask: Option<&crate::prune::Mask>) -> Result<()> {
        bail!(INFERENCE_ONLY)
    }

    fn train_step(&mut self, _indices: &[u32]) -> Result<()> {
        bail!(INFERENCE_ONLY)
    }

    fn take_train_stats(&mut self) -> Result<crate::backend::TrainStats> {
        bail!(INFERENCE_ONLY)
    }

    fn classes(&self) -> usize {
        self.net.classes()
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        Ok(self.net.logits(images))
    }

    fn params(&mut self) -> Result<Params<f32>> {
        bail!("an int8 model has no float parameters")
    }

    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        bail!(INFERENCE_ONLY)
    }

    fn set_optimizer_state(&mut self, _state: &OptimizerState) -> Result<()> {
        bail!(INFERENCE_ONLY)
    }
}
