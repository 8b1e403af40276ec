//! Safetensors checkpoints: round trip, PyTorch names and layouts, and clear errors.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{assert_bad_input, run_cli};
use mnist_wgpu::checkpoint::{load_checkpoint, save_checkpoint};
use mnist_wgpu::model::{init_params, Arch, Plan, MNIST_INPUT};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn seed_plan() -> Plan {
    Plan::new(&Arch::seed(), MNIST_INPUT).unwrap()
}

#[test]
fn round_trip_keeps_parameters_architecture_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/a/model.safetensors");
    let plan = seed_plan();
    let params = init_params(&plan, 11);
    save_checkpoint(&path, &plan, &params, &[("seed", "11".into())]).unwrap();
    let loaded = load_checkpoint(&path).unwrap();
    assert_eq!(loaded.plan, plan);
    assert_eq!(loaded.params, params);
    assert_eq!(loaded.metadata["seed"], "11");

    // The file itself has PyTorch's names and shapes.
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("conv1.weight").unwrap().shape(), [32, 1, 3, 3]);
    assert_eq!(file.tensor("fc.weight").unwrap().shape(), [10, 1600]);
    assert_eq!(file.tensor("fc.bias").unwrap().dtype(), Dtype::F32);
    // No temporary file is left beside it.
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn the_same_model_saves_to_the_same_bytes() {
    // The metadata is a hash map; its order must not reach the file, or two identical runs
    // save files with different checksums.
    let dir = tempfile::tempdir().unwrap();
    let plan = seed_plan();
    let params = init_params(&plan, 3);
    let extra: Vec<(&str, String)> = ["seed", "optimizer", "schedule", "augment", "epochs", "lr"]
        .into_iter()
        .map(|k| (k, format!("value of {k}")))
        .collect();
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let path = dir.path().join(format!("{i}.safetensors"));
            save_checkpoint(&path, &plan, &params, &extra).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert!(files.windows(2).all(|w| w[0] == w[1]));
    let loaded = load_checkpoint(&dir.path().join("0.safetensors")).unwrap();
    assert_eq!(loaded.metadata["lr"], "value of lr");
    assert_eq!(loaded.params, params);
}

/// Writes the seed model's tensors, letting `edit` change the list before serialising.
fn write_edited(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
    arch: &str,
) {
    let plan = seed_plan();
    let params = init_params(&plan, 1);
    let mut tensors: Vec<_> = params
        .tensors
        .into_iter()
        .map(|t| (t.name, t.shape, t.data))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(d)).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("arch".to_string(), arch.to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn expect_load_error(
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
    arch: &str,
    needle: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_edited(&path, edit, arch);
    let err = format!(
        "{:#}",
        load_checkpoint(&path).err().expect("load must fail")
    );
    assert!(
        err.contains(needle) && err.contains("bad.safetensors"),
        "expected '{needle}' in: {err}"
    );
    assert_eq!(
        mnist_wgpu::error::exit_code(&load_checkpoint(&path).err().unwrap()),
        2
    );
}

#[test]
fn mismatched_checkpoints_name_the_tensor() {
    let seed = "seed";
    expect_load_error(
        |t| {
            t[2] = (
                "conv2.weight".into(),
                vec![64, 32, 5, 1],
                vec![0.0; 64 * 32 * 5],
            )
        },
        seed,
        "tensor 'conv2.weight' has shape [64, 32, 5, 1], expected [64, 32, 3, 3]",
    );
    expect_load_error(
        |t| t.retain(|(n, ..)| n != "fc.bias"),
        seed,
        "tensor 'fc.bias' is missing",
    );
    expect_load_error(
        |t| t.push(("extra".into(), vec![1], vec![0.0])),
        seed,
        "unexpected tensor 'extra'",
    );
    expect_load_error(
        |_| {},
        "conv32k3-relu-pool2-flatten-dense10",
        "tensor 'fc.weight' has shape [10, 1600], expected [10, 5408]",
    );
    expect_load_error(
        |_| {},
        "conv32k3-bogus",
        "bad 'arch' metadata: token 2 'bogus'",
    );
}

#[test]
fn wrong_dtype_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f64.safetensors");
    let plan = seed_plan();
    let params = init_params(&plan, 1).map(f64::from);
    let views: Vec<_> = params
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(Dtype::F64, t.shape.clone(), bytemuck::cast_slice(&t.data))
                    .unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("arch".to_string(), "seed".to_string())]);
    std::fs::write(&path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    let err = format!("{:#}", load_checkpoint(&path).err().unwrap());
    assert!(
        err.contains("tensor 'conv1.weight' is F64, expected F32"),
        "{err}"
    );
}

#[test]
fn broken_and_missing_checkpoints_are_one_line_errors_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    assert_bad_input(
        &run_cli(&["eval", "--model", junk.to_str().unwrap()]),
        "junk.safetensors: not a safetensors checkpoint",
    );
    let missing = dir.path().join("missing.safetensors");
    assert_bad_input(
        &run_cli(&["eval", "--model", missing.to_str().unwrap()]),
        "missing.safetensors: cannot read checkpoint",
    );
}
