//! Data sets of K classes: an arch ending in denseK trains on labels 0..K-1 (metrics, the
//! confusion matrix and `predict` follow the model's width), `--classes` picks and relabels a
//! subset, `--per-class-limit` keeps a few images per class, and a label the model cannot
//! output is a one-line error naming the file.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_bad_input, run_cli, run_cli_ok, write_split};

const SMALL: &str = "conv4k3-relu-pool2-flatten-dense";

/// IDX files in `dir` whose labels are `label(i)`: `train` and `test` images of faint noise
/// with a bright bar whose row is the label, so that a model can learn them.
fn write_dataset(dir: &Path, train: u32, test: u32, label: impl Fn(u32) -> u8) {
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(&label).collect();
        let mut images = Vec::with_capacity(n as usize * 784);
        for (i, &l) in labels.iter().enumerate() {
            for p in 0..784usize {
                let row = p / 28;
                let bar = row == 2 + 2 * usize::from(l) % 24;
                images.push(if bar {
                    255
                } else {
                    ((i * 31 + p * 7) % 40) as u8
                });
            }
        }
        write_split(dir, prefix, &images, &labels);
    }
}

/// A `data` directory in `tmp` holding [`write_dataset`]'s files.
fn dataset_in(tmp: &Path, train: u32, test: u32, label: impl Fn(u32) -> u8) -> PathBuf {
    let data = tmp.join("data");
    std::fs::create_dir(&data).unwrap();
    write_dataset(&data, train, test, label);
    data
}

fn metrics(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn train_args<'a>(data: &'a str, run: &'a str, arch: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--data-dir",
        data,
        "--run-dir",
        run,
        "--arch",
        arch,
    ]
}

#[test]
fn a_five_class_data_set_trains_evaluates_and_predicts_with_five_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 400, 100, |i| (i % 5) as u8);
    let (d, run) = (data.to_str().unwrap(), tmp.path().join("run"));
    let arch = format!("{SMALL}5");
    run_cli_ok(&train_args(d, run.to_str().unwrap(), &arch));
    let m = metrics(&run.join("metrics.json"));
    let confusion = m["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 5);
    assert!(confusion
        .iter()
        .all(|row| row.as_array().unwrap().len() == 5));
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 100);
    assert_eq!(m["per_class"].as_array().unwrap().len(), 5);
    assert!(m["accuracy"].as_f64().unwrap() > 0.6, "{}", m["accuracy"]);
    assert!(run.join("confusion.png").is_file());

    let model = run.join("model.safetensors");
    let model = model.to_str().unwrap();
    let out = run_cli_ok(&[
        "eval",
        "--backend",
        "cpu",
        "--model",
        model,
        "--data-dir",
        d,
    ]);
    assert!(out.contains("accuracy"), "{out}");

    let square = |x: u32, y: u32| (8..18).contains(&x) && (8..18).contains(&y);
    let digit = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([square(x, y) as u8 * 255]));
    let png = tmp.path().join("bar.png");
    digit.save(&png).unwrap();
    let out = run_cli_ok(&[
        "predict",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model,
        png.to_str().unwrap(),
    ]);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let top = line["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(
        top.iter().all(|c| c["class"].as_u64().unwrap() < 5),
        "{out}"
    );
}

#[test]
fn a_label_the_model_cannot_output_is_one_line_naming_the_file_and_label() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 40, 10, |i| (i % 10) as u8);
    let (d, run) = (data.to_str().unwrap(), tmp.path().join("run"));
    let arch = format!("{SMALL}5");
    let out = run_cli(&train_args(d, run.to_str().unwrap(), &arch));
    assert_bad_input(&out, "train-labels-idx1-ubyte: label 5 at index 5");
    assert!(
        !run.join("last.safetensors").exists(),
        "trained before failing"
    );
}

#[test]
fn classes_picks_a_subset_and_relabels_it_in_the_order_given() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 600, 200, |i| (i % 10) as u8);
    let (d, run) = (data.to_str().unwrap(), tmp.path().join("run"));
    let arch = format!("{SMALL}3");
    let mut args = train_args(d, run.to_str().unwrap(), &arch);
    args.extend(["--classes", "7,2,9", "--per-class-limit", "25"]);
    let out = run_cli_ok(&args);
    assert!(out.contains("on 75 images"), "{out}");
    let m = metrics(&run.join("metrics.json"));
    let confusion = m["confusion"].as_array().unwrap();
    // 20 test images of each of 7, 2 and 9.
    for row in confusion {
        let support: u64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(support, 20);
    }
    assert!(m["accuracy"].as_f64().unwrap() > 0.6, "{}", m["accuracy"]);
    // eval picks the same classes; without them label 2 is out of range.
    let model = run.join("model.safetensors");
    let model = model.to_str().unwrap();
    let eval = [
        "eval",
        "--backend",
        "cpu",
        "--model",
        model,
        "--data-dir",
        d,
    ];
    let out = run_cli_ok(&[&eval[..], &["--classes", "7,2,9"]].concat());
    assert!(out.contains("accuracy"), "{out}");
    assert_bad_input(
        &run_cli(&eval),
        "t10k-labels-idx1-ubyte: label 3 at index 3",
    );
}

#[test]
fn a_bad_class_list_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 40, 10, |i| (i % 4) as u8);
    let (d, run) = (data.to_str().unwrap(), tmp.path().join("run"));
    let arch3 = format!("{SMALL}3");
    let base = train_args(d, run.to_str().unwrap(), &arch3);
    let with = |extra: &[&'static str]| run_cli(&[&base[..], extra].concat());
    assert_bad_input(
        &with(&["--classes", "1,2"]),
        "--classes: lists 2 classes but the model has 3 outputs",
    );
    assert_bad_input(
        &with(&["--classes", "1,2,7"]),
        "--classes: no training image has label 7",
    );
    assert_bad_input(&with(&["--classes", "1,2,1"]), "lists 1 twice");
    assert_bad_input(&with(&["--classes", "1,x,2"]), "'x'");
    assert!(!run.join("last.safetensors").exists());
}
