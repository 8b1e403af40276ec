//! Checkpoints in safetensors, with PyTorch's names and layouts so the file loads into the
//! equivalent `torch.nn` model: `conv1.weight` `[32, 1, 3, 3]` (OIHW), `conv1.bias`, ...,
//! `fc.weight` `[10, 1600]` whose input order is PyTorch's `Flatten` of NCHW (channel, row,
//! column). The metadata holds the architecture spec (`arch`) and what produced the file, and
//! for a model trained on a subset of the labels (`--classes`) the label of each output
//! (`classes`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::backend::OptimizerState;
use crate::error::bad_input;
use crate::fsutil::write_atomic;
use crate::model::{Arch, Params, Plan, Tensor, MNIST_INPUT};

pub(crate) const FORMAT: &str = "mnist-wgpu/1";
/// Metadata key that marks an int8 checkpoint (see `checkpoint_int8`): its JSON names the
/// scheme. A float reader refuses such a file by this key, before any tensor.
pub const QUANTIZATION_KEY: &str = "quantization";
/// Metadata key of the label of each output, as `--classes` writes them: "5,6,7,8,9".
pub const CLASSES_KEY: &str = "classes";

/// The value of [`CLASSES_KEY`] for `labels`.
pub fn classes_metadata(labels: &[u8]) -> String {
    let labels: Vec<String> = labels.iter().map(u8::to_string).collect();
    labels.join(",")
}

/// The labels of a model of `outputs` outputs from its metadata, or why they are bad.
pub(crate) fn read_labels(
    metadata: &HashMap<String, String>,
    outputs: usize,
) -> std::result::Result<Vec<usize>, String> {
    let Some(text) = metadata.get(CLASSES_KEY) else {
        return Ok((0..outputs).collect());
    };
    let bad = |why: String| format!("bad '{CLASSES_KEY}' metadata '{text}': {why}");
    let labels = (text.split(','))
        .map(|l| l.trim().parse::<u8>().map(usize::from))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| bad("expected labels 0-255 separated by commas".into()))?;
    if labels.len() != outputs {
        return Err(bad(format!(
            "{} labels for {outputs} outputs",
            labels.len()
        )));
    }
    if let Some((i, l)) = (labels.iter().enumerate()).find(|(i, l)| labels[..*i].contains(l)) {
        return Err(bad(format!("label {l} twice (output {i})")));
    }
    Ok(labels)
}

/// A model read back from disk.
pub struct Checkpoint {
    pub plan: Plan,
    pub params: Params<f32>,
    pub metadata: HashMap<String, String>,
    /// The data set's label of each output, in output order: the `classes` metadata, or
    /// 0, 1, ... for a model without it (one trained on every label, or an older file).
    pub labels: Vec<usize>,
}

/// A training checkpoint: a model plus the optimiser state that continues its run.
pub struct TrainingCheckpoint {
    pub checkpoint: Checkpoint,
    pub optimizer: OptimizerState,
}

/// Writes `params` of `plan` atomically; `extra` metadata (seed, optimiser...) is stored too.
pub fn save_checkpoint(
    path: &Path,
    plan: &Plan,
    params: &Params<f32>,
    extra: &[(&str, String)],
) -> Result<()> {
    let tensors = params.tensors.iter().map(|t| (t.name.clone(), t)).collect();
    write_tensors(path, tensors, metadata(plan, extra))
}

/// Like [`save_checkpoint`], with the optimiser's moments as `optimizer.m.<name>` and
/// `optimizer.v.<name>` and its step in the metadata. The parameters keep their names, so
/// `eval` and `predict` read the file like any model.
pub fn save_training_checkpoint(
    path: &Path,
    plan: &Plan,
    params: &Params<f32>,
    optimizer: &OptimizerState,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut tensors: Vec<(String, &Tensor<f32>)> =
        params.tensors.iter().map(|t| (t.name.clone(), t)).collect();
    for (moment, moments) in [("m", &optimizer.m), ("v", &optimizer.v)] {
        tensors.extend((moments.tensors.iter()).map(|t| (moment_name(moment, &t.name), t)));
    }
    let mut metadata = metadata(plan, extra);
    metadata.insert(TRAINING_FORMAT_KEY.into(), TRAINING_FORMAT.into());
    metadata.insert(STEP_KEY.into(), optimizer.step.to_string());
    write_tensors(path, tensors, metadata)
}

/// Metadata key and value that mark a training checkpoint, and the key of the optimiser step.
const TRAINING_FORMAT_KEY: &str = "training_format";
const TRAINING_FORMAT: &str = "mnist-wgpu-training/1";
const STEP_KEY: &str = "optimizer_step";

fn moment_name(moment: &str, tensor: &str) -> String {
    format!("optimizer.{moment}.{tensor}")
}

pub(crate) fn metadata(plan: &Plan, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("arch".into(), plan.arch.to_string());
    metadata.insert(
        "flatten_order".into(),
        "channel,row,column (PyTorch nn.Flatten of NCHW)".into(),
    );
    metadata
}

fn write_tensors(
    path: &Path,
    tensors: Vec<(String, &Tensor<f32>)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    // safetensors is little-endian whatever the host is.
    let bytes: Vec<(String, &[usize], Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let data = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, t.shape.as_slice(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.to_vec(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let mut bytes = safetensors::serialize(views, Some(metadata))?;
    sort_header(&mut bytes);
    write_atomic(path, &bytes)
}

/// Rewrites a serialised file's JSON header with its keys sorted. safetensors writes the
/// metadata map in hash order, which changes from one process to the next, so two identical
/// runs would save files with the same tensors but different bytes (and checksums). The
/// sorted header has the same length (the same compact JSON, keys reordered), so the tensor
/// offsets that follow it stay valid; the padding spaces are kept.
pub(crate) fn sort_header(bytes: &mut [u8]) {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    else {
        return;
    };
    let Some(header) = bytes.get_mut(8..8 + len as usize) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(header) else {
        return;
    };
    // serde_json's maps are ordered by key (no `preserve_order` feature).
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim_end()) else {
        return;
    };
    let Ok(sorted) = serde_json::to_vec(&value) else {
        return;
    };
    if sorted.len() <= header.len() {
        header[..sorted.len()].copy_from_slice(&sorted);
        header[sorted.len()..].fill(b' ');
    }
}

/// Reads a checkpoint and checks every tensor's name, dtype and shape against its architecture.
/// The optimiser tensors of a training checkpoint are allowed and skipped.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    parse_checkpoint(path, &read(path)?)
}

/// Reads a checkpoint written by [`save_training_checkpoint`], checking the moments like the
/// parameters.
pub fn load_training_checkpoint(path: &Path) -> Result<TrainingCheckpoint> {
    parse_training_checkpoint(path, &read(path)?)
}

/// [`load_checkpoint`] of a file's bytes; `path` names it in errors.
pub fn parse_checkpoint(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    Ok(parse(path, bytes)?.0)
}

/// [`load_training_checkpoint`] of a file's bytes; `path` names it in errors.
pub fn parse_training_checkpoint(path: &Path, bytes: &[u8]) -> Result<TrainingCheckpoint> {
    let (checkpoint, file) = parse(path, bytes)?;
    let fail = |why: String| fail(path, why);
    let metadata = &checkpoint.metadata;
    if metadata.get(TRAINING_FORMAT_KEY).map(String::as_str) != Some(TRAINING_FORMAT) {
        return Err(fail(format!(
            "not a training checkpoint ('{TRAINING_FORMAT_KEY}' is not '{TRAINING_FORMAT}')"
        )));
    }
    let step = (metadata.get(STEP_KEY))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("no valid '{STEP_KEY}' in the metadata")))?;
    let plan = &checkpoint.plan;
    let optimizer = OptimizerState {
        step,
        m: read_params(&file, plan, |name| moment_name("m", name)).map_err(fail)?,
        v: read_params(&file, plan, |name| moment_name("v", name)).map_err(fail)?,
    };
    Ok(TrainingCheckpoint {
        checkpoint,
        optimizer,
    })
}

pub(crate) fn fail(path: &Path, why: String) -> anyhow::Error {
    bad_input(format!("{}: {why}", path.display()))
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| fail(path, format!("cannot read checkpoint: {e}")))
}

/// The model in `bytes`, and the file for reading more tensors.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Checkpoint, SafeTensors<'a>)> {
    let fail = |why: String| fail(path, why);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| fail(format!("not a safetensors checkpoint: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.contains_key(QUANTIZATION_KEY) {
        return Err(fail(
            "an int8 checkpoint (written by quantize); this needs a float model".into(),
        ));
    }
    let spec = metadata
        .get("arch")
        .ok_or_else(|| fail("no 'arch' in the metadata".into()))?;
    let arch = Arch::parse(spec).map_err(|e| fail(format!("bad 'arch' metadata: {e}")))?;
    let plan =
        Plan::new(&arch, MNIST_INPUT).map_err(|e| fail(format!("bad 'arch' metadata: {e}")))?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(format!("not a safetensors checkpoint: {e}")))?;
    let params = read_params(&file, &plan, str::to_string).map_err(fail)?;
    let expected = |name: &str| {
        (plan.params.iter()).any(|p| {
            name == p.name || name == moment_name("m", &p.name) || name == moment_name("v", &p.name)
        })
    };
    if let Some(extra) = file.names().into_iter().find(|n| !expected(n)) {
        return Err(fail(format!(
            "unexpected tensor '{extra}' for arch '{arch}'"
        )));
    }
    let labels = read_labels(&metadata, plan.classes()).map_err(fail)?;
    let checkpoint = Checkpoint {
        plan,
        params,
        metadata,
        labels,
    };
    Ok((checkpoint, file))
}

/// One tensor per parameter of `plan`, stored under `stored(name)`, or why not.
fn read_params(
    file: &SafeTensors,
    plan: &Plan,
    stored: impl Fn(&str) -> String,
) -> std::result::Result<Params<f32>, String> {
    let tensors = (plan.params.iter())
        .map(|spec| {
            let data = read_tensor(file, &stored(&spec.name), &spec.shape, &plan.arch)?;
            Ok(Tensor {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                data,
            })
        })
        .collect::<std::result::Result<_, String>>()?;
    Ok(Params { tensors })
}

/// The data of tensor `name`, checked to be F32 of `shape`.
fn read_tensor(
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
    arch: &Arch,
) -> std::result::Result<Vec<f32>, String> {
    let view = file
        .tensor(name)
        .map_err(|_| format!("tensor '{name}' is missing (arch '{arch}')"))?;
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor '{name}' is {:?}, expected F32",
            view.dtype()
        ));
    }
    if view.shape() != shape {
        return Err(format!(
            "tensor '{name}' has shape {:?}, expected {shape:?}",
            view.shape()
        ));
    }
    let data = view.data().chunks_exact(4);
    Ok(data
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
