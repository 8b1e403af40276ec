//! Int8 checkpoints, written by `quantize`: safetensors again, with per quantised layer `L`
//! (the float checkpoint's names) `L.weight` I8 in the float shape, `L.weight_scale` F32
//! `[out]`, `L.input_scale` F32 scalar and `L.bias` I32 `[out]`. The metadata holds the folded
//! `arch` and `quantization`, the JSON of [`Scheme`]; a float reader refuses such a file, and
//! this one a float file, each in one line.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::checkpoint::{
    fail, metadata, parse_checkpoint, read, read_labels, sort_header, Checkpoint, QUANTIZATION_KEY,
};
use crate::fsutil::write_atomic;
use crate::model::quant::{
    check_quantizable, QuantizedLayer, QuantizedModel, Scheme, BIAS_LIMIT, QMAX, SCHEME_NAME,
    SCHEME_VERSION,
};
use crate::model::{Arch, Plan, MNIST_INPUT};

/// An int8 model read back from disk.
pub struct Int8Checkpoint {
    pub model: QuantizedModel,
    pub metadata: HashMap<String, String>,
    /// The data set's label of each output, as in [`Checkpoint::labels`].
    pub labels: Vec<usize>,
}

/// A checkpoint of either kind, for the commands that run both (`eval`, `predict`).
pub enum AnyCheckpoint {
    Float(Checkpoint),
    Int8(Int8Checkpoint),
}

impl AnyCheckpoint {
    pub fn plan(&self) -> &Plan {
        match self {
            AnyCheckpoint::Float(c) => &c.plan,
            AnyCheckpoint::Int8(c) => &c.model.plan,
        }
    }

    pub fn labels(&self) -> &[usize] {
        match self {
            AnyCheckpoint::Float(c) => &c.labels,
            AnyCheckpoint::Int8(c) => &c.labels,
        }
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        match self {
            AnyCheckpoint::Float(c) => &c.metadata,
            AnyCheckpoint::Int8(c) => &c.metadata,
        }
    }
}

/// Reads a float or an int8 checkpoint, by its `quantization` metadata.
pub fn load_any_checkpoint(path: &Path) -> Result<AnyCheckpoint> {
    let bytes = read(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(path, format!("not a safetensors checkpoint: {e}")))?;
    let int8 = (header.metadata().as_ref()).is_some_and(|m| m.contains_key(QUANTIZATION_KEY));
    Ok(match int8 {
        true => AnyCheckpoint::Int8(parse_int8_checkpoint(path, &bytes)?),
        false => AnyCheckpoint::Float(parse_checkpoint(path, &bytes)?),
    })
}

/// Writes `model` atomically, with `extra` metadata (the float model's `classes`, ...).
pub fn save_int8_checkpoint(
    path: &Path,
    model: &QuantizedModel,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = metadata(&model.plan, extra);
    meta.insert(
        QUANTIZATION_KEY.into(),
        serde_json::to_string(&model.scheme)?,
    );
    let le = |xs: &mut dyn Iterator<Item = [u8; 4]>| xs.flatten().collect::<Vec<u8>>();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in &model.layers {
        let out = vec![l.shape[0]];
        let weight = l.weight.iter().map(|&q| q as u8).collect();
        let scales = le(&mut l.weight_scale.iter().map(|x| x.to_le_bytes()));
        let bias = le(&mut l.bias.iter().map(|x| x.to_le_bytes()));
        let input = l.input_scale.to_le_bytes().to_vec();
        tensors.push((
            format!("{}.weight", l.name),
            Dtype::I8,
            l.shape.clone(),
            weight,
        ));
        tensors.push((
            format!("{}.weight_scale", l.name),
            Dtype::F32,
            out.clone(),
            scales,
        ));
        tensors.push((format!("{}.input_scale", l.name), Dtype::F32, vec![], input));
        tensors.push((format!("{}.bias", l.name), Dtype::I32, out, bias));
    }
    let views = (tensors.iter())
        .map(|(name, dtype, shape, data)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let mut bytes = safetensors::serialize(views, Some(meta))?;
    sort_header(&mut bytes);
    write_atomic(path, &bytes)
}

/// Reads an int8 checkpoint, checking every tensor's dtype, shape and values.
pub fn load_int8_checkpoint(path: &Path) -> Result<Int8Checkpoint> {
    parse_int8_checkpoint(path, &read(path)?)
}

/// [`load_int8_checkpoint`] of a file's bytes; `path` names it in errors.
pub fn parse_int8_checkpoint(path: &Path, bytes: &[u8]) -> Result<Int8Checkpoint> {
    parse(bytes).map_err(|why| fail(path, why))
}

fn parse(bytes: &[u8]) -> Result<Int8Checkpoint, String> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a safetensors checkpoint: {e}"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let scheme = metadata.get(QUANTIZATION_KEY).ok_or(
        "a float checkpoint (no 'quantization' metadata); this needs an int8 model from quantize",
    )?;
    let scheme: Scheme = serde_json::from_str(scheme)
        .map_err(|e| format!("bad '{QUANTIZATION_KEY}' metadata: {e}"))?;
    if scheme.scheme != SCHEME_NAME || scheme.version != SCHEME_VERSION {
        return Err(format!(
            "quantization scheme '{}' version {} is not {SCHEME_NAME} version {SCHEME_VERSION}",
            scheme.scheme, scheme.version
        ));
    }
    let spec = metadata.get("arch").ok_or("no 'arch' in the metadata")?;
    let bad_arch = |e: String| format!("bad 'arch' metadata: {e}");
    let arch = Arch::parse(spec).map_err(bad_arch)?;
    let plan = Plan::new(&arch, MNIST_INPUT).map_err(bad_arch)?;
    check_quantizable(&plan).map_err(bad_arch)?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a safetensors checkpoint: {e}"))?;
    let mut layers = Vec::new();
    let mut expected = Vec::new();
    for at in plan.steps.iter().filter_map(|s| s.weight_index) {
        let spec = &plan.params[at];
        let name = spec.name.strip_suffix(".weight").unwrap_or(&spec.name);
        let layer = read_layer(&file, name, &spec.shape, &arch)?;
        expected.extend(
            ["weight", "weight_scale", "input_scale", "bias"].map(|t| format!("{name}.{t}")),
        );
        layers.push(layer);
    }
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| !expected.iter().any(|e| e == *n))
    {
        return Err(format!("unexpected tensor '{extra}' for arch '{arch}'"));
    }
    let labels = read_labels(&metadata, plan.classes())?;
    Ok(Int8Checkpoint {
        model: QuantizedModel {
            plan,
            layers,
            scheme,
        },
        metadata,
        labels,
    })
}

/// One layer's four tensors, checked.
fn read_layer(
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
    arch: &Arch,
) -> Result<QuantizedLayer, String> {
    let out = [shape[0]];
    let tensor = |suffix: &str, dtype: Dtype, shape: &[usize]| {
        let full = format!("{name}.{suffix}");
        let view = (file.tensor(&full))
            .map_err(|_| format!("tensor '{full}' is missing (arch '{arch}')"))?;
        if view.dtype() != dtype {
            return Err(format!(
                "tensor '{full}' is {:?}, expected {dtype:?}",
                view.dtype()
            ));
        }
        if view.shape() != shape {
            return Err(format!(
                "tensor '{full}' has shape {:?}, expected {shape:?}",
                view.shape()
            ));
        }
        Ok((full, view.data().to_vec()))
    };
    let f32s = |b: Vec<u8>| -> Vec<f32> {
        (b.chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (wname, weight) = tensor("weight", Dtype::I8, shape)?;
    let weight: Vec<i8> = weight.into_iter().map(|b| b as i8).collect();
    if let Some(i) = weight.iter().position(|&q| i32::from(q) < -QMAX) {
        return Err(format!(
            "tensor '{wname}' holds -128 at {i}; int8 weights are in [-127, 127]"
        ));
    }
    let (sname, weight_scale) = tensor("weight_scale", Dtype::F32, &out)?;
    let weight_scale = f32s(weight_scale);
    let (iname, input_scale) = tensor("input_scale", Dtype::F32, &[])?;
    let input_scale = f32s(input_scale)[0];
    for (tensor, scales) in [(&sname, &weight_scale[..]), (&iname, &[input_scale][..])] {
        if let Some((i, s)) =
            (scales.iter().enumerate()).find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(format!(
                "tensor '{tensor}' holds the scale {s} at {i}; scales must be positive and finite"
            ));
        }
    }
    let (bname, bias) = tensor("bias", Dtype::I32, &out)?;
    let bias: Vec<i32> = (bias.chunks_exact(4))
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = bias
        .iter()
        .position(|b| b.unsigned_abs() > BIAS_LIMIT as u32)
    {
        return Err(format!(
            "tensor '{bname}' holds {} at {i}, beyond the bias limit +-2^30",
            bias[i]
        ));
    }
    Ok(QuantizedLayer {
        name: name.to_string(),
        shape: shape.to_vec(),
        weight,
        weight_scale,
        input_scale,
        bias,
    })
}
