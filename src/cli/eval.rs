//! `eval`: a saved model's test metrics (float or int8), on its own labels.

use std::collections::HashMap;

use anyhow::Result;

use super::args::{check_output_file, data_dir, inference_backend};
use super::summary::{sparsity_line, sparsity_of};
use super::train::{labels_of, load_data, prepare_kernels, report, DataSource, EvalArgs};
use mnist_wgpu::checkpoint::{classes_metadata, CLASSES_KEY};
use mnist_wgpu::checkpoint_int8::load_any_checkpoint;
use mnist_wgpu::error::bad_input;
use mnist_wgpu::train::eval_batch_sizes;

pub fn eval(args: EvalArgs) -> Result<()> {
    if let Some(path) = &args.metrics_json {
        check_output_file("--metrics-json", path, path)?;
    }
    let checkpoint = load_any_checkpoint(&args.model)?;
    let classes = eval_classes(&args, checkpoint.metadata(), checkpoint.labels())?;
    let source = DataSource {
        data_dir: data_dir(args.data.data_dir.as_deref())?,
        train_limit: None,
        test_limit: args.data.test_limit,
        classes,
        per_class_limit: None,
    };
    let plan = checkpoint.plan();
    let labels = labels_of(&source, plan.classes());
    let mnist = load_data(&source, plan.classes(), false)?;
    let arch = plan.arch.to_string();
    let metadata = checkpoint.metadata();
    let seed = metadata.get("seed").and_then(|s| s.parse().ok());
    let sparsity = sparsity_line(&sparsity_of(&checkpoint));
    let mut backend = inference_backend(&args.data.device, checkpoint)?;
    let info = backend.info();
    let on_gpu = info.backend != "cpu";
    outln!(
        "evaluating {} ({arch}) on {} ({})\n{sparsity}",
        args.model.display(),
        info.backend,
        info.adapter
    );
    if on_gpu {
        prepare_kernels(backend.as_mut(), &[], &eval_batch_sizes(mnist.test.len()))?;
    }
    report(
        backend.as_mut(),
        &mnist,
        (&[], None),
        arch,
        seed,
        &labels,
        &args.metrics_json.as_deref().into_iter().collect::<Vec<_>>(),
    )
    .map(drop)
}

/// The labels `eval` keeps: a model trained with `--classes` stored its list, which is the
/// default; a different `--classes` would score its outputs against labels they never meant,
/// so it is an error. A model without the list takes `--classes` as before.
fn eval_classes(
    args: &EvalArgs,
    metadata: &HashMap<String, String>,
    labels: &[usize],
) -> Result<Option<Vec<u8>>> {
    let flag = args.classes.clone().map(|c| c.0);
    let Some(stored) = metadata.get(CLASSES_KEY) else {
        return Ok(flag);
    };
    let stored_list: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    match flag {
        Some(list) if list != stored_list => Err(bad_input(format!(
            "--classes {}: {} was trained on the labels {stored}, in that order",
            classes_metadata(&list),
            args.model.display()
        ))),
        _ => Ok(Some(stored_list)),
    }
}
