//! Pruning: weights of a float model set to exactly zero by magnitude (unstructured), or whole
//! output channels of its convolutions removed by the L1 norm of their filters (structured),
//! which gives a smaller model with a smaller arch. Only conv and dense weights are pruned;
//! biases and batch-norm parameters never are. The rules are in docs/pruning.md.
//!
//! Masks are kept separate from the parameters so that masked training can keep the pruned
//! weights at zero through every step, and a [`PruneSchedule`] can raise the sparsity epoch by
//! epoch.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::quant::QuantizedModel;
use crate::model::transfer::layer_of;
use crate::model::{Arch, Layer, Params, Plan, Tensor};

/// Which weights compete for the zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// All prunable layers ranked together: sparsity S overall, more where weights are small.
    Global,
    /// Each layer pruned to S on its own.
    Layer,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Global => "global",
            Scope::Layer => "layer",
        })
    }
}

/// Zeros in one layer's weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSparsity {
    /// The layer's tensor prefix: `conv1`, `fc`...
    pub name: String,
    pub zeros: usize,
    pub weights: usize,
}

impl LayerSparsity {
    pub fn fraction(&self) -> f64 {
        self.zeros as f64 / self.weights.max(1) as f64
    }
}

/// The exactly-zero weights of a model's conv and dense layers, per layer in model order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sparsity {
    pub layers: Vec<LayerSparsity>,
}

impl Sparsity {
    /// Of a float model.
    pub fn of(plan: &Plan, params: &Params<f32>) -> Sparsity {
        let layers = prunable_weights(plan)
            .into_iter()
            .map(|at| layer_sparsity(&params.tensors[at]))
            .collect();
        Sparsity { layers }
    }

    /// Of an int8 model: its integer weights that are zero (pruned, or rounded to zero).
    pub fn of_int8(model: &QuantizedModel) -> Sparsity {
        let layers = (model.layers.iter())
            .map(|l| LayerSparsity {
                name: l.name.clone(),
                zeros: l.weight.iter().filter(|&&q| q == 0).count(),
                weights: l.weight.len(),
            })
            .collect();
        Sparsity { layers }
    }

    pub fn zeros(&self) -> usize {
        self.layers.iter().map(|l| l.zeros).sum()
    }

    pub fn weights(&self) -> usize {
        self.layers.iter().map(|l| l.weights).sum()
    }

    /// Zeros over weights, all layers together (0 for a model without any).
    pub fn fraction(&self) -> f64 {
        self.zeros() as f64 / self.weights().max(1) as f64
    }
}

fn layer_sparsity(tensor: &Tensor<f32>) -> LayerSparsity {
    LayerSparsity {
        name: layer_of(&tensor.name).to_string(),
        zeros: tensor.data.iter().filter(|&&w| w == 0.0).count(),
        weights: tensor.data.len(),
    }
}

/// Indices in [`Plan::params`] of the weights pruning may zero: those of conv and dense layers
/// (not their biases, not batch norm's), in model order.
pub fn prunable_weights(plan: &Plan) -> Vec<usize> {
    (plan.steps.iter())
        .filter(|s| matches!(s.layer, Layer::Conv2d { .. } | Layer::Dense { .. }))
        .filter_map(|s| s.weight_index)
        .collect()
}

/// `Ok` for a sparsity in [0, 1), else why not (1 would leave no model).
pub fn check_sparsity(sparsity: f64) -> Result<(), String> {
    match (0.0..1.0).contains(&sparsity) {
        true => Ok(()),
        false => Err(format!("{sparsity} is not a fraction in [0, 1)")),
    }
}

/// How many of `n` items a sparsity prunes: round(sparsity * n), halves away from zero.
pub fn pruned_count(sparsity: f64, n: usize) -> usize {
    ((sparsity * n as f64).round() as usize).min(n)
}

/// Which weights survive: per tensor of the plan, `Some(keep)` for a prunable weight (true
/// where the weight stays), `None` for every other tensor. Serialised compactly (a training
/// checkpoint carries the mask of a masked run): per tensor `null` or `[len, hex]`, the flags
/// packed 8 to a byte, flag i in bit i % 8 of byte i / 8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<Option<(usize, String)>>")]
#[serde(try_from = "Vec<Option<(usize, String)>>")]
pub struct Mask {
    pub keep: Vec<Option<Vec<bool>>>,
}

impl Mask {
    /// Keeps every weight: the start of a schedule on a dense model.
    pub fn keep_all(plan: &Plan) -> Mask {
        let mut keep: Vec<Option<Vec<bool>>> = vec![None; plan.params.len()];
        for at in prunable_weights(plan) {
            keep[at] = Some(vec![true; plan.params[at].len()]);
        }
        Mask { keep }
    }

    /// Prunes exactly the prunable weights that are zero: what a pruned checkpoint's zeros
    /// mean.
    pub fn of_zeros(plan: &Plan, params: &Params<f32>) -> Mask {
        let mut mask = Mask::keep_all(plan);
        for (keep, tensor) in mask.keep.iter_mut().zip(&params.tensors) {
            if let Some(keep) = keep {
                *keep = tensor.data.iter().map(|&w| w != 0.0).collect();
            }
        }
        mask
    }

    /// Zeroes the weights the mask prunes.
    pub fn apply(&self, params: &mut Params<f32>) {
        for (tensor, keep) in params.tensors.iter_mut().zip(&self.keep) {
            let Some(keep) = keep else { continue };
            for (w, &kept) in tensor.data.iter_mut().zip(keep) {
                if !kept {
                    *w = 0.0;
                }
            }
        }
    }

    /// The weights the mask prunes.
    pub fn pruned(&self) -> usize {
        (self.keep.iter().flatten())
            .map(|k| k.iter().filter(|&&kept| !kept).count())
            .sum()
    }

    /// The pruned share of the prunable weights (0 without any).
    pub fn fraction(&self) -> f64 {
        let weights: usize = self.keep.iter().flatten().map(Vec::len).sum();
        self.pruned() as f64 / weights.max(1) as f64
    }

    /// This mask raised to `sparsity` by the magnitudes in `params`, ranked as
    /// [`magnitude_mask`] ranks them, except that the weights this mask prunes rank first
    /// whatever their value: a pruned weight stays pruned, and a mask already sparser than
    /// `sparsity` is returned as it is. `sparsity` must pass [`check_sparsity`].
    pub fn tightened(&self, params: &Params<f32>, sparsity: f64, scope: Scope) -> Mask {
        let mut keep = self.keep.clone();
        let weights: Vec<usize> = (0..keep.len()).filter(|&at| keep[at].is_some()).collect();
        let groups: Vec<Vec<usize>> = match scope {
            Scope::Global => vec![weights],
            Scope::Layer => weights.into_iter().map(|at| vec![at]).collect(),
        };
        for group in groups {
            // (magnitude, tensor, index), built in model order so that a stable sort breaks
            // ties by position; -1 for a weight already pruned.
            let mut ranked: Vec<(f32, usize, usize)> = (group.iter())
                .flat_map(|&at| {
                    let data = &params.tensors[at].data;
                    let kept = self.keep[at].as_ref().expect("a prunable weight");
                    (data.iter().zip(kept).enumerate())
                        .map(move |(i, (w, &k))| (if k { w.abs() } else { -1.0 }, at, i))
                })
                .collect();
            let k = pruned_count(sparsity, ranked.len());
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(_, at, i) in &ranked[..k] {
                keep[at].as_mut().expect("a prunable weight")[i] = false;
            }
        }
        Mask { keep }
    }
}

impl From<Mask> for Vec<Option<(usize, String)>> {
    fn from(mask: Mask) -> Self {
        let hex = |keep: &Vec<bool>| -> String {
            (keep.chunks(8))
                .map(|byte| {
                    let bits =
                        (byte.iter().enumerate()).fold(0u8, |b, (i, &k)| b | u8::from(k) << i);
                    format!("{bits:02x}")
                })
                .collect()
        };
        (mask.keep.iter())
            .map(|keep| keep.as_ref().map(|k| (k.len(), hex(k))))
            .collect()
    }
}

impl TryFrom<Vec<Option<(usize, String)>>> for Mask {
    type Error = String;

    fn try_from(record: Vec<Option<(usize, String)>>) -> Result<Mask, String> {
        let tensor = |(len, hex): (usize, String)| -> Result<Vec<bool>, String> {
            if hex.len() != 2 * len.div_ceil(8) || !hex.is_ascii() {
                return Err(format!("a mask of {len} flags in {} hex digits", hex.len()));
            }
            let bytes = (0..hex.len() / 2)
                .map(|b| u8::from_str_radix(&hex[2 * b..2 * b + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| format!("a mask's hex digits: {e}"))?;
            Ok((0..len).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect())
        };
        let keep = (record.into_iter())
            .map(|t| t.map(tensor).transpose())
            .collect::<Result<_, _>>()?;
        Ok(Mask { keep })
    }
}

/// The mask that prunes round(`sparsity` x n) of the n prunable weights with the smallest
/// magnitude, n counted over all layers (`Global`) or each layer's own (`Layer`). Ties go by
/// position: of equal magnitudes, the earlier layer's, then the lower index in the tensor's
/// (PyTorch) layout, is pruned first, so the count is exact and the same on every run. A
/// weight that is already zero ranks first. NaN ranks last. `sparsity` must pass
/// [`check_sparsity`].
pub fn magnitude_mask(plan: &Plan, params: &Params<f32>, sparsity: f64, scope: Scope) -> Mask {
    Mask::keep_all(plan).tightened(params, sparsity, scope)
}

/// A pruning schedule (`train --prune-schedule S0:S1`): the sparsity rises polynomially from
/// `initial` to `target` over a run, as TensorFlow Model Optimization's `PolynomialDecay`
/// raises it, and the mask is recomputed at the start of every epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneSchedule {
    /// S0, the sparsity of the first epoch.
    pub initial: f64,
    /// S1, the sparsity of the last epoch.
    #[serde(rename = "final")]
    pub target: f64,
    /// The polynomial's degree: 3, TF-MOT's default, prunes fast while there is slack and
    /// slowly near the end.
    pub power: i32,
    pub scope: Scope,
}

/// TF-MOT's default degree of the schedule's polynomial.
pub const SCHEDULE_POWER: i32 = 3;

impl PruneSchedule {
    /// A schedule from `initial` to `target`, both passing [`check_sparsity`], `initial` <=
    /// `target`; else why not.
    pub fn new(initial: f64, target: f64, scope: Scope) -> Result<PruneSchedule, String> {
        check_sparsity(initial)?;
        check_sparsity(target)?;
        if target < initial {
            return Err(format!(
                "the final sparsity {target} is below the initial {initial}; a schedule only raises it"
            ));
        }
        Ok(PruneSchedule {
            initial,
            target,
            power: SCHEDULE_POWER,
            scope,
        })
    }

    /// The sparsity epoch `epoch` (from 1) of `epochs` trains at: S1 + (S0 - S1)(1 - t/T)^power
    /// with t = epoch - 1 and T = epochs - 1, so that the first epoch is at S0 and the last at
    /// S1 (a run of one epoch at S1).
    pub fn sparsity_at(&self, epoch: usize, epochs: usize) -> f64 {
        let t = match epochs {
            0 | 1 => 1.0,
            _ => (epoch.saturating_sub(1) as f64 / (epochs - 1) as f64).min(1.0),
        };
        self.target + (self.initial - self.target) * (1.0 - t).powi(self.power)
    }
}

impl fmt::Display for PruneSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.initial, self.target)
    }
}

/// `params` with the smallest-magnitude weights zeroed ([`magnitude_mask`]), and the mask.
pub fn prune_unstructured(
    plan: &Plan,
    params: &Params<f32>,
    sparsity: f64,
    scope: Scope,
) -> (Params<f32>, Mask) {
    let mask = magnitude_mask(plan, params, sparsity, scope);
    let mut pruned = params.clone();
    mask.apply(&mut pruned);
    (pruned, mask)
}

/// The channels one convolution keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelCut {
    /// The layer's tensor prefix: `conv1`...
    pub name: String,
    /// Its output channels before pruning.
    pub channels: usize,
    /// The channels kept, ascending: channel `kept[j]` of the original is channel `j` now.
    pub kept: Vec<usize>,
}

/// A model with whole convolution channels removed.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPruning {
    pub plan: Plan,
    pub params: Params<f32>,
    /// One per convolution, in model order.
    pub cuts: Vec<ChannelCut>,
}

/// Removes round(`sparsity` x n) output channels of the convolutions, those whose filters
/// have the smallest L1 norm, with n the channels of each convolution (`Layer`) or of all of
/// them (`Global`, where a filter's L1 norm is divided by its size so that layers of different
/// fan-in compare; within a layer the order is the same). Ties go by position, like
/// [`magnitude_mask`]'s. The layers that read a removed channel lose it too: the next
/// convolution its input channel, a dense layer after flatten its inputs from that channel,
/// a batch norm in between its entry. The result computes what the original computes with
/// the next layer's weights from the removed channels set to zero. Errors say why not: a
/// convolution would lose every channel. `sparsity` must pass [`check_sparsity`].
pub fn prune_channels(
    plan: &Plan,
    params: &Params<f32>,
    sparsity: f64,
    scope: Scope,
) -> Result<ChannelPruning, String> {
    let convs: Vec<usize> = (plan.steps.iter().enumerate())
        .filter(|(_, s)| matches!(s.layer, Layer::Conv2d { .. }))
        .map(|(i, _)| i)
        .collect();
    // Per convolution, each output channel's score, in f64 so that the sums do not round.
    let scores: Vec<Vec<f64>> = (convs.iter())
        .map(|&i| {
            let w = &params.tensors[plan.steps[i].weight_index.expect("a conv has weights")];
            let filter = w.data.len() / w.shape[0];
            let scale = match scope {
                Scope::Global => filter as f64,
                Scope::Layer => 1.0,
            };
            (w.data.chunks_exact(filter))
                .map(|f| f.iter().map(|x| f64::from(x.abs())).sum::<f64>() / scale)
                .collect()
        })
        .collect();
    let mut removed: Vec<Vec<bool>> = scores.iter().map(|s| vec![false; s.len()]).collect();
    let groups: Vec<Vec<usize>> = match scope {
        Scope::Global => vec![(0..convs.len()).collect()],
        Scope::Layer => (0..convs.len()).map(|c| vec![c]).collect(),
    };
    for group in groups {
        let mut ranked: Vec<(f64, usize, usize)> = (group.iter())
            .flat_map(|&c| (scores[c].iter().enumerate()).map(move |(ch, &s)| (s, c, ch)))
            .collect();
        let k = pruned_count(sparsity, ranked.len());
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(_, c, ch) in &ranked[..k] {
            removed[c][ch] = true;
        }
    }
    let mut cuts = Vec::new();
    let mut layers = plan.arch.layers.clone();
    for (&i, removed) in convs.iter().zip(&removed) {
        let w = &params.tensors[plan.steps[i].weight_index.expect("a conv has weights")];
        let kept: Vec<usize> = (0..removed.len()).filter(|&ch| !removed[ch]).collect();
        let name = layer_of(&w.name).to_string();
        if kept.is_empty() {
            return Err(format!(
                "removes all {} channels of {name}; every convolution must keep one",
                removed.len()
            ));
        }
        if let Layer::Conv2d { out_channels, .. } = &mut layers[i] {
            *out_channels = kept.len();
        }
        cuts.push(ChannelCut {
            name,
            channels: removed.len(),
            kept,
        });
    }
    let arch = Arch { layers };
    let pruned_plan = Plan::new(&arch, plan.input).map_err(|e| format!("the pruned arch: {e}"))?;
    let params = select_kept(plan, params, &pruned_plan, &convs, &cuts);
    Ok(ChannelPruning {
        plan: pruned_plan,
        params,
        cuts,
    })
}

/// The parameters of `pruned` (the plan of `plan` with fewer conv channels): each tensor the
/// original's rows and columns that survive. Walks the layers tracking which of the
/// original's channels (or, after flatten, features) the current activation still holds.
fn select_kept(
    plan: &Plan,
    params: &Params<f32>,
    pruned: &Plan,
    convs: &[usize],
    cuts: &[ChannelCut],
) -> Params<f32> {
    let mut out = Params::zeros(&pruned.params);
    let mut current: Vec<usize> = (0..plan.input.channels).collect();
    for (i, (old, new)) in plan.steps.iter().zip(&pruned.steps).enumerate() {
        let all = |n: usize| (0..n).collect::<Vec<usize>>();
        // Rows (first axis) and columns (second axis, if any) of the weight, and the channels
        // of the output.
        let (rows, columns, output): (Vec<usize>, Vec<usize>, Vec<usize>) = match old.layer {
            Layer::Conv2d { .. } => {
                let c = convs.iter().position(|&at| at == i).expect("a conv");
                let kept = cuts[c].kept.clone();
                (kept.clone(), current.clone(), kept)
            }
            Layer::Dense { units } => (all(units), current.clone(), all(units)),
            Layer::BatchNorm => (current.clone(), Vec::new(), current.clone()),
            Layer::Flatten => {
                let plane = old.input.height * old.input.width;
                let features = (current.iter())
                    .flat_map(|&c| c * plane..(c + 1) * plane)
                    .collect();
                (Vec::new(), Vec::new(), features)
            }
            _ => (Vec::new(), Vec::new(), current.clone()),
        };
        let tensors = [old.weight_index, old.stats_index]
            .into_iter()
            .zip([new.weight_index, new.stats_index])
            .filter_map(|(o, n)| Some((o?, n?)));
        for (o, n) in tensors {
            for pair in 0..2 {
                let (from, to) = (&params.tensors[o + pair], &mut out.tensors[n + pair]);
                // A bias, a batch norm's entries and statistics: rows only.
                let columns = if from.shape.len() > 1 {
                    &columns[..]
                } else {
                    &[]
                };
                to.data = gather(from, &rows, columns);
                debug_assert_eq!(to.data.len(), to.shape.iter().product::<usize>());
            }
        }
        current = output;
    }
    out
}

/// The elements of `t` (`[rows, columns, inner...]`, or 1-D) at the given rows and, for a
/// tensor of two axes or more, columns, in that order.
fn gather(t: &Tensor<f32>, rows: &[usize], columns: &[usize]) -> Vec<f32> {
    if t.shape.len() == 1 {
        return rows.iter().map(|&r| t.data[r]).collect();
    }
    let inner: usize = t.shape[2..].iter().product();
    let row_len = t.shape[1] * inner;
    let mut out = Vec::with_capacity(rows.len() * columns.len() * inner);
    for &r in rows {
        for &c in columns {
            let at = r * row_len + c * inner;
            out.extend_from_slice(&t.data[at..at + inner]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_params, MNIST_INPUT};

    fn model(spec: &str, seed: u64) -> (Plan, Params<f32>) {
        let plan = Plan::new(&Arch::parse(spec).unwrap(), MNIST_INPUT).unwrap();
        let params = init_params(&plan, seed);
        (plan, params)
    }

    #[test]
    fn sparsity_is_checked_and_counted_by_rounding() {
        assert!(check_sparsity(0.0).is_ok() && check_sparsity(0.999).is_ok());
        for bad in [1.0, -0.1, f64::NAN, f64::INFINITY] {
            assert!(check_sparsity(bad).is_err(), "{bad}");
        }
        assert_eq!(pruned_count(0.5, 7), 4); // 3.5 rounds away from zero
        assert_eq!(pruned_count(0.9, 288), 259); // 259.2
        assert_eq!(pruned_count(0.0, 10), 0);
    }

    #[test]
    fn ties_are_pruned_in_model_order() {
        let (plan, mut params) = model("flatten-dense2", 1);
        let w = &mut params.tensors[0].data;
        w.fill(1.0);
        w[10] = 0.5;
        // 1568 weights, 3 to prune: the smallest, then the first two of the equal ones.
        let mask = magnitude_mask(&plan, &params, 3.0 / 1568.0, Scope::Global);
        let keep = mask.keep[0].as_ref().unwrap();
        let pruned: Vec<usize> = (0..keep.len()).filter(|&i| !keep[i]).collect();
        assert_eq!(pruned, [0, 1, 10]);
        assert_eq!(mask.keep[1], None, "the bias is no candidate");
        assert_eq!(mask.pruned(), 3);
    }

    #[test]
    fn layer_scope_prunes_each_layer_to_its_share() {
        let (plan, params) = model("conv4k3-relu-flatten-dense10", 3);
        let (pruned, mask) = prune_unstructured(&plan, &params, 0.25, Scope::Layer);
        let sparsity = Sparsity::of(&plan, &pruned);
        let zeros: Vec<usize> = sparsity.layers.iter().map(|l| l.zeros).collect();
        assert_eq!(zeros, [pruned_count(0.25, 36), pruned_count(0.25, 27040)]);
        assert_eq!(mask.pruned(), sparsity.zeros());
    }

    #[test]
    fn channels_gather_rows_and_columns() {
        let t = Tensor {
            name: "w".into(),
            shape: vec![3, 2, 2],
            data: (0..12).map(|x| x as f32).collect(),
        };
        assert_eq!(gather(&t, &[2, 0], &[1]), [10.0, 11.0, 2.0, 3.0]);
        let b = Tensor {
            name: "b".into(),
            shape: vec![3],
            data: vec![5.0, 6.0, 7.0],
        };
        assert_eq!(gather(&b, &[1, 2], &[]), [6.0, 7.0]);
    }

    #[test]
    fn global_channel_scores_are_per_weight() {
        // conv1's filters have 9 weights of 1, conv2's 36 weights of 0.5: by raw L1 norm every
        // conv1 filter ranks lower, by mean magnitude every conv2 filter does.
        let (plan, mut params) = model("conv4k3-relu-conv4k3-relu-flatten-dense10", 1);
        params.tensors[0].data.fill(1.0);
        params.tensors[2].data.fill(0.5);
        let global = prune_channels(&plan, &params, 0.25, Scope::Global).unwrap();
        let kept: Vec<usize> = global.cuts.iter().map(|c| c.kept.len()).collect();
        assert_eq!(kept, [4, 2]);
        assert_eq!(
            global.plan.arch.to_string(),
            "conv4k3-relu-conv2k3-relu-flatten-dense10"
        );
        let layer = prune_channels(&plan, &params, 0.25, Scope::Layer).unwrap();
        assert_eq!(layer.cuts[0].kept, [1, 2, 3]); // ties: the first goes
        let err = prune_channels(&plan, &params, 0.9, Scope::Layer).unwrap_err();
        assert!(err.contains("all 4 channels of conv1"), "{err}");
    }

    #[test]
    fn a_tightened_mask_keeps_its_pruned_weights_and_reaches_the_count() {
        let (plan, mut params) = model("conv4k3-relu-flatten-dense10", 5);
        let first = magnitude_mask(&plan, &params, 0.3, Scope::Global);
        first.apply(&mut params);
        // Training moves the weights: a pruned one would now be the largest.
        let (at, i) = (first.keep.iter().enumerate())
            .find_map(|(at, k)| Some((at, k.as_ref()?.iter().position(|&kept| !kept)?)))
            .unwrap();
        params.tensors[at].data[i] = 100.0;
        let total: usize = first.keep.iter().flatten().map(Vec::len).sum();
        for scope in [Scope::Global, Scope::Layer] {
            let second = first.tightened(&params, 0.6, scope);
            assert!(!second.keep[at].as_ref().unwrap()[i], "pruned stays pruned");
            for (a, b) in first
                .keep
                .iter()
                .flatten()
                .zip(second.keep.iter().flatten())
            {
                assert!(a.iter().zip(b).all(|(&a, &b)| a || !b), "{scope}");
            }
            match scope {
                Scope::Global => assert_eq!(second.pruned(), pruned_count(0.6, total)),
                Scope::Layer => {
                    for (a, b) in first
                        .keep
                        .iter()
                        .flatten()
                        .zip(second.keep.iter().flatten())
                    {
                        let pruned = |k: &Vec<bool>| k.iter().filter(|&&kept| !kept).count();
                        let target = pruned_count(0.6, b.len()).max(pruned(a));
                        assert_eq!(pruned(b), target, "each layer to 0.6, or as it was");
                    }
                }
            }
        }
        // Lower than the mask already is: nothing changes.
        assert_eq!(first.tightened(&params, 0.1, Scope::Global), first);
        // From a mask keeping all, tightening is magnitude_mask.
        let fresh = Mask::keep_all(&plan).tightened(&params, 0.45, Scope::Layer);
        assert_eq!(fresh, magnitude_mask(&plan, &params, 0.45, Scope::Layer));
    }

    #[test]
    fn a_mask_of_zeros_and_its_serialised_form_round_trip() {
        let (plan, mut params) = model("conv4k3-relu-flatten-dense10", 2);
        let mask = magnitude_mask(&plan, &params, 0.37, Scope::Global);
        mask.apply(&mut params);
        assert_eq!(Mask::of_zeros(&plan, &params), mask);
        let json = serde_json::to_string(&mask).unwrap();
        assert!(json.len() < 27_076 / 3, "packed: {} bytes", json.len());
        assert_eq!(serde_json::from_str::<Mask>(&json).unwrap(), mask);
        let bad = json.replacen("\"", "\"zz", 1);
        assert!(serde_json::from_str::<Mask>(&bad).is_err());
        assert!((mask.fraction() - 0.37).abs() < 1e-4);
    }

    #[test]
    fn the_schedule_rises_from_s0_in_the_first_epoch_to_s1_in_the_last() {
        let s = PruneSchedule::new(0.0, 0.9, Scope::Global).unwrap();
        let at: Vec<f64> = (1..=5).map(|e| s.sparsity_at(e, 5)).collect();
        // 0.9 - 0.9 (1 - t)^3 at t = 0, 1/4, 1/2, 3/4, 1.
        let expected = [0.0, 0.5203125, 0.7875, 0.8859375, 0.9];
        for (a, e) in at.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{at:?}");
        }
        assert_eq!(s.sparsity_at(1, 1), 0.9);
        assert_eq!(s.sparsity_at(7, 5), 0.9, "past the end: S1");
        assert!(PruneSchedule::new(0.5, 0.4, Scope::Global).is_err());
        assert!(PruneSchedule::new(0.0, 1.0, Scope::Global).is_err());
        assert!(PruneSchedule::new(-0.1, 0.5, Scope::Layer).is_err());
    }
}
