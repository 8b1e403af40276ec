//! Training settings shared by every backend: plain data, no device, no CLI.

use serde::{Deserialize, Serialize};

/// An optimiser and its hyperparameters. Defaults follow Keras.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
    /// Keras' form: `v = momentum * v - lr * g; p += v`.
    Sgd { lr: f32, momentum: f32 },
}

impl Optimizer {
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer::Sgd { lr, momentum: 0.9 }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam { .. } => "adam",
            Optimizer::Sgd { .. } => "sgd",
        }
    }
}

/// How the GPU path picks among kernel variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutotuneMode {
    /// Reuse the cached choice for this adapter, else time the variants and cache the fastest.
    On,
    /// No timing and no cache: a fixed rule by adapter type (CPU adapters get the
    /// register-blocked kernels, GPUs the tiled ones).
    Off,
    /// Time the variants again and overwrite the cached choices.
    Refresh,
}

impl AutotuneMode {
    pub fn name(self) -> &'static str {
        match self {
            AutotuneMode::On => "on",
            AutotuneMode::Off => "off",
            AutotuneMode::Refresh => "refresh",
        }
    }
}
