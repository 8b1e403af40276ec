//! What a run reads: the data files, the classes kept and the limits, checked against the
//! model before any work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::args::load_mnist_from;
use mnist_wgpu::data::{check_labels, labels_file, Mnist};
use mnist_wgpu::error::bad_input;

/// What a run reads: the files, and how much of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DataSource {
    /// `None` (null) for the copy built into the program.
    pub data_dir: Option<PathBuf>,
    pub train_limit: Option<u64>,
    pub test_limit: Option<u64>,
    /// `--classes`: the labels kept, relabelled by their position (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u8>>,
    /// `--per-class-limit`: training images kept per class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class_limit: Option<u64>,
}

/// The data of `source` for a model of `classes` outputs: the classes chosen, the limits
/// applied, and every label checked to be below `classes` (a one-line error naming the file);
/// for `training`, or else only for the test split (which is all `eval` reads).
pub(crate) fn load_data(source: &DataSource, classes: usize, training: bool) -> Result<Mnist> {
    let start = Instant::now();
    let dir = source.data_dir.as_deref();
    let mut mnist = load_mnist_from(dir)?;
    if let Some(list) = &source.classes {
        if list.len() != classes {
            return Err(bad_input(format!(
                "--classes: lists {} classes but the model has {classes} outputs (end the arch in dense{})",
                list.len(),
                list.len()
            )));
        }
        let (checked, which) = match training {
            true => (&mnist.train, "training"),
            false => (&mnist.test, "test"),
        };
        if let Some(missing) = list.iter().find(|&&c| !checked.labels.contains(&c)) {
            return Err(bad_input(format!(
                "--classes: no {which} image has label {missing} in {}",
                labels_file(dir, training).display()
            )));
        }
        mnist.train = mnist.train.select_classes(list);
        mnist.test = mnist.test.select_classes(list);
    }
    if let Some(n) = source.per_class_limit {
        mnist.train = mnist.train.per_class_limit(n as usize);
    }
    if training {
        check_labels(&mnist.train, classes, &labels_file(dir, true))?;
    }
    check_labels(&mnist.test, classes, &labels_file(dir, false))?;
    if let Some(n) = source.train_limit {
        mnist.train = mnist.train.truncated(n as usize);
    }
    if let Some(n) = source.test_limit {
        mnist.test = mnist.test.truncated(n as usize);
    }
    log::debug!(
        "loaded {} training and {} test images from {} in {:.2?}",
        mnist.train.len(),
        mnist.test.len(),
        (source.data_dir.as_deref()).map_or("the bundled copy".into(), Path::to_string_lossy),
        start.elapsed()
    );
    Ok(mnist)
}

/// The data set's label of each of a model's `outputs` outputs: `--classes` in its order, else
/// the outputs' own numbers.
pub(crate) fn labels_of(source: &DataSource, outputs: usize) -> Vec<usize> {
    match &source.classes {
        Some(list) => list.iter().map(|&l| usize::from(l)).collect(),
        None => (0..outputs).collect(),
    }
}
