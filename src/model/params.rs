//! Parameter tensors in the order of [`Plan::params`], and their Keras-style initialisation.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::plan::{Init, ParamSpec, Plan};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// One tensor per [`ParamSpec`] of a plan, in the same order.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    pub tensors: Vec<Tensor<T>>,
}

impl<T: Copy + Default> Params<T> {
    /// Zero tensors shaped like `specs` (gradients, optimiser moments).
    pub fn zeros(specs: &[ParamSpec]) -> Params<T> {
        let tensors = specs
            .iter()
            .map(|s| Tensor {
                name: s.name.clone(),
                shape: s.shape.clone(),
                data: vec![T::default(); s.len()],
            })
            .collect();
        Params { tensors }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn len(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts every element, e.g. `f32` parameters to `f64` for gradient checks.
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Params<U> {
        let tensors = self
            .tensors
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: t.data.iter().map(|&x| f(x)).collect(),
            })
            .collect();
        Params { tensors }
    }
}

/// Glorot-uniform weights, zero biases, and batch norm's unit scales and variances, like Keras, reproducible from `seed`.
pub fn init_params(plan: &Plan, seed: u64) -> Params<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut params = Params::zeros(&plan.params);
    for (tensor, spec) in params.tensors.iter_mut().zip(&plan.params) {
        match spec.init {
            Init::GlorotUniform { fan_in, fan_out } => {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                tensor
                    .data
                    .iter_mut()
                    .for_each(|w| *w = rng.random_range(-limit..=limit));
            }
            Init::Ones => tensor.data.fill(1.0),
            Init::Zeros => {}
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, MNIST_INPUT};

    #[test]
    fn glorot_limits_and_zero_biases_and_reproducible() {
        let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
        let a = init_params(&plan, 7);
        assert_eq!(a, init_params(&plan, 7));
        assert_ne!(a, init_params(&plan, 8));
        let conv2 = a.get("conv2.weight").unwrap();
        let limit = (6.0f32 / (32.0 * 9.0 + 64.0 * 9.0)).sqrt();
        assert!(conv2.data.iter().all(|w| w.abs() <= limit));
        // Uniform on [-l, l] has variance l^2 / 3: a wrong limit would be far off.
        let var = conv2.data.iter().map(|w| w * w).sum::<f32>() / conv2.data.len() as f32;
        assert!(
            (var / (limit * limit / 3.0) - 1.0).abs() < 0.05,
            "variance {var}"
        );
        assert!(a.get("fc.bias").unwrap().data.iter().all(|&b| b == 0.0));
    }
}
