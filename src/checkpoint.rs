//! Checkpoints in safetensors, with PyTorch's names and layouts so the file loads into the
//! equivalent `torch.nn` model: `conv1.weight` `[32, 1, 3, 3]` (OIHW), `conv1.bias`, ...,
//! `fc.weight` `[10, 1600]` whose input order is PyTorch's `Flatten` of NCHW (channel, row,
//! column). The metadata holds the architecture spec (`arch`) and what produced the file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::bad_input;
use crate::fsutil::write_atomic;
use crate::model::{Arch, Params, Plan, Tensor, MNIST_INPUT};

const FORMAT: &str = "mnist-wgpu/1";

/// A model read back from disk.
pub struct Checkpoint {
    pub plan: Plan,
    pub params: Params<f32>,
    pub metadata: HashMap<String, String>,
}

/// Writes `params` of `plan` atomically; `extra` metadata (seed, optimiser...) is stored too.
pub fn save_checkpoint(
    path: &Path,
    plan: &Plan,
    params: &Params<f32>,
    extra: &[(&str, String)],
) -> Result<()> {
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
    // safetensors is little-endian whatever the host is.
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))?;
    write_atomic(path, &bytes)
}

/// Reads a checkpoint and checks every tensor's name, dtype and shape against its architecture.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let fail = |why: String| bad_input(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read checkpoint: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(format!("not a safetensors checkpoint: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let spec = metadata
        .get("arch")
        .ok_or_else(|| fail("no 'arch' in the metadata".into()))?;
    let arch = Arch::parse(spec).map_err(|e| fail(format!("bad 'arch' metadata: {e}")))?;
    let plan =
        Plan::new(&arch, MNIST_INPUT).map_err(|e| fail(format!("bad 'arch' metadata: {e}")))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors checkpoint: {e}")))?;
    let mut tensors = Vec::with_capacity(plan.params.len());
    for spec in &plan.params {
        let view = file
            .tensor(&spec.name)
            .map_err(|_| fail(format!("tensor '{}' is missing (arch '{arch}')", spec.name)))?;
        if view.dtype() != Dtype::F32 {
            return Err(fail(format!(
                "tensor '{}' is {:?}, expected F32",
                spec.name,
                view.dtype()
            )));
        }
        if view.shape() != spec.shape.as_slice() {
            return Err(fail(format!(
                "tensor '{}' has shape {:?}, expected {:?}",
                spec.name,
                view.shape(),
                spec.shape
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push(Tensor {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            data,
        });
    }
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| plan.params.iter().all(|p| p.name != *n))
    {
        return Err(fail(format!(
            "unexpected tensor '{extra}' for arch '{arch}'"
        )));
    }
    Ok(Checkpoint {
        plan,
        params: Params { tensors },
        metadata,
    })
}
