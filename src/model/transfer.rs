//! Transfer learning: a model started from another's parameters, and the layers that stay
//! fixed while it trains. A layer is named by its tensors' prefix (`conv1` of `conv1.weight`,
//! `bn1` of `bn1.running_mean`, `fc` or `fc1`), as the checkpoints name them.

use super::params::{init_params, Params};
use super::plan::Plan;

/// The layer a tensor belongs to: its name up to the first dot.
pub fn layer_of(tensor: &str) -> &str {
    tensor.split('.').next().unwrap_or(tensor)
}

/// The names of the layers that own parameters, in the plan's order.
pub fn layer_names(plan: &Plan) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for spec in &plan.params {
        let layer = layer_of(&spec.name);
        if !names.contains(&layer) {
            names.push(layer);
        }
    }
    names
}

/// An error naming the first of `names` that is not a layer of `plan`, and the known ones.
pub fn check_layer_names(plan: &Plan, names: &[String]) -> Result<(), String> {
    let known = layer_names(plan);
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        None => Ok(()),
        Some(name) => Err(format!(
            "'{name}' is not a layer of '{}'; its layers are {}",
            plan.arch,
            known.join(", ")
        )),
    }
}

/// Where a tensor of a model started from a checkpoint came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The checkpoint's tensor of the same name and shape.
    Loaded,
    /// Initialised by the seed: its layer was asked to start afresh.
    Reinit,
    /// Initialised by the seed: the checkpoint has no tensor of that name.
    Missing,
    /// Initialised by the seed: the checkpoint's tensor of that name has this other shape.
    ShapeDiffers(Vec<usize>),
}

/// The parameters of `plan`: each tensor of `pretrained` with the same name and shape, unless
/// its layer is in `reinit`; every other one as [`init_params`] with `seed` initialises it, so
/// that those are exactly a fresh run's. With each tensor's name and origin, in plan order.
pub fn init_from(
    plan: &Plan,
    seed: u64,
    pretrained: &Params<f32>,
    reinit: &[String],
) -> (Params<f32>, Vec<(String, Origin)>) {
    let mut params = init_params(plan, seed);
    let mut origins = Vec::with_capacity(params.tensors.len());
    for tensor in &mut params.tensors {
        let origin = match pretrained.get(&tensor.name) {
            _ if reinit.iter().any(|r| r == layer_of(&tensor.name)) => Origin::Reinit,
            None => Origin::Missing,
            Some(p) if p.shape != tensor.shape => Origin::ShapeDiffers(p.shape.clone()),
            Some(p) => {
                tensor.data.clone_from(&p.data);
                Origin::Loaded
            }
        };
        origins.push((tensor.name.clone(), origin));
    }
    (params, origins)
}

/// "loaded conv1.weight, conv1.bias; initialised fc.weight (--reinit), fc2.bias (missing)".
pub fn describe_origins(origins: &[(String, Origin)]) -> String {
    let loaded: Vec<&str> = (origins.iter())
        .filter(|(_, o)| *o == Origin::Loaded)
        .map(|(n, _)| n.as_str())
        .collect();
    let fresh: Vec<String> = (origins.iter())
        .filter_map(|(name, origin)| {
            let why = match origin {
                Origin::Loaded => return None,
                Origin::Reinit => "--reinit".to_string(),
                Origin::Missing => "missing".to_string(),
                Origin::ShapeDiffers(shape) => format!("shape differs: {shape:?} there"),
            };
            Some(format!("{name} ({why})"))
        })
        .collect();
    let list = |items: String| {
        if items.is_empty() {
            "none".into()
        } else {
            items
        }
    };
    format!(
        "loaded {}; initialised {}",
        list(loaded.join(", ")),
        list(fresh.join(", "))
    )
}

/// Per tensor of `plan`, whether its layer is in `freeze` (its running statistics included).
pub fn frozen_mask(plan: &Plan, freeze: &[String]) -> Vec<bool> {
    (plan.params.iter())
        .map(|spec| freeze.iter().any(|f| f == layer_of(&spec.name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, MNIST_INPUT};

    fn plan(spec: &str) -> Plan {
        Plan::new(&Arch::parse(spec).unwrap(), MNIST_INPUT).unwrap()
    }

    #[test]
    fn layers_are_the_tensor_name_prefixes_in_order() {
        let p = plan("conv4k3-bn-relu-flatten-dense8-dense5");
        assert_eq!(layer_names(&p), ["conv1", "bn1", "fc1", "fc2"]);
        assert!(check_layer_names(&p, &["fc2".into(), "bn1".into()]).is_ok());
        let err = check_layer_names(&p, &["fc".into()]).unwrap_err();
        assert!(
            err.contains("'fc'") && err.ends_with("conv1, bn1, fc1, fc2"),
            "{err}"
        );
        let mask = frozen_mask(&p, &["conv1".into(), "bn1".into()]);
        let names: Vec<&str> = (p.params.iter().zip(&mask))
            .filter(|(_, &f)| f)
            .map(|(s, _)| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "bn1.weight",
                "bn1.bias",
                "bn1.running_mean",
                "bn1.running_var"
            ]
        );
    }

    #[test]
    fn matching_tensors_load_and_the_rest_start_as_a_fresh_run() {
        let old = plan("conv4k3-relu-flatten-dense10");
        let pretrained = init_params(&old, 1);
        let new = plan("conv4k3-relu-conv2k3-flatten-dense5");
        let (params, origins) = init_from(&new, 2, &pretrained, &[]);
        let fresh = init_params(&new, 2);
        assert_eq!(params.get("conv1.weight"), pretrained.get("conv1.weight"));
        assert_eq!(params.get("conv1.bias"), pretrained.get("conv1.bias"));
        assert_eq!(params.get("conv2.weight"), fresh.get("conv2.weight"));
        assert_eq!(params.get("fc.weight"), fresh.get("fc.weight"));
        assert_eq!(origins[2].1, Origin::Missing);
        assert_eq!(origins[4].1, Origin::ShapeDiffers(vec![10, 2704]));
        let line = describe_origins(&origins);
        assert!(
            line.starts_with("loaded conv1.weight, conv1.bias; initialised conv2.weight (missing)"),
            "{line}"
        );

        let (params, origins) = init_from(&new, 2, &pretrained, &["conv1".into()]);
        assert_eq!(params, fresh);
        assert_eq!(origins[0].1, Origin::Reinit);
        assert!(describe_origins(&origins).starts_with("loaded none; "));
    }
}
