//! An int8 model behind the [`Backend`] interface, so that `eval` and `predict` run it like
//! any model. It only infers: the training calls fail (a quantised model is not trained).

use anyhow::{bail, Result};

use super::int8::Int8Net;
use crate::backend::{Backend, BackendInfo};
use crate::inference_only_training;
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

    inference_only_training!(INFERENCE_ONLY);

    fn classes(&self) -> usize {
        self.net.classes()
    }

    fn predict_logits(&mut self, images: &[u8]) -> Result<Vec<f32>> {
        Ok(self.net.logits(images))
    }

    fn params(&mut self) -> Result<Params<f32>> {
        bail!("an int8 model has no float parameters")
    }
}
