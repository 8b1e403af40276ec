//! Data sets of K classes: an arch ending in denseK trains on labels 0..K-1 (metrics, the
//! confusion matrix and `predict` follow the model's width), `--classes` picks and relabels a
//! subset, `--per-class-limit` keeps a few images per class, and a label the model cannot
//! output is a one-line error naming the file.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_bad_input, run_cli, run_cli_ok, write_split};
use mnist_wgpu::checkpoint::{classes_metadata, load_checkpoint, save_checkpoint};
use mnist_wgpu::model::{init_params, Arch, Plan, MNIST_INPUT};

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
    // Without --classes, eval takes the list the model was trained on; another is an error.
    assert_eq!(run_cli_ok(&eval), out);
    assert_bad_input(
        &run_cli(&[&eval[..], &["--classes", "2,7,9"]].concat()),
        "--classes 2,7,9: ",
    );
}

/// The first line of the confusion matrix's table: its column labels.
fn confusion_header(out: &str) -> Vec<String> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("confusion matrix"));
    let header = lines
        .nth(1)
        .unwrap_or_else(|| panic!("no confusion matrix: {out}"));
    header.split_whitespace().map(String::from).collect()
}

#[test]
fn a_model_of_classes_5_to_9_predicts_and_evaluates_by_those_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 600, 200, |i| (i % 10) as u8);
    let (d, run) = (data.to_str().unwrap(), tmp.path().join("run"));
    let arch = format!("{SMALL}5");
    let mut args = train_args(d, run.to_str().unwrap(), &arch);
    args.extend(["--classes", "5,6,7,8,9"]);
    let out = run_cli_ok(&args);
    let labels = ["5", "6", "7", "8", "9"];
    assert_eq!(confusion_header(&out), labels, "{out}");

    // The list is in every checkpoint's metadata, and the metrics name the classes by it.
    for file in ["model.safetensors", "last.safetensors"] {
        let checkpoint = load_checkpoint(&run.join(file)).unwrap();
        assert_eq!(checkpoint.labels, [5, 6, 7, 8, 9], "{file}");
        assert_eq!(checkpoint.metadata["classes"], "5,6,7,8,9", "{file}");
    }
    let m = metrics(&run.join("metrics.json"));
    assert_eq!(m["classes"], serde_json::json!([5, 6, 7, 8, 9]));
    let per_class: Vec<u64> = (m["per_class"].as_array().unwrap().iter())
        .map(|c| c["class"].as_u64().unwrap())
        .collect();
    assert_eq!(per_class, [5, 6, 7, 8, 9]);

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
    let out = run_cli_ok(&eval);
    assert_eq!(confusion_header(&out), labels, "{out}");

    let square = |x: u32, y: u32| (8..18).contains(&x) && (6..20).contains(&y);
    let digit = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([square(x, y) as u8 * 255]));
    let png = tmp.path().join("bar.png");
    digit.save(&png).unwrap();
    let png = png.to_str().unwrap();
    let predict = ["predict", "--backend", "cpu", "--model", model, png];
    let out = run_cli_ok(&[&predict[..], &["--json"]].concat());
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut top: Vec<u64> = (line["top"].as_array().unwrap().iter())
        .map(|c| c["class"].as_u64().unwrap())
        .collect();
    top.sort_unstable();
    top.dedup();
    assert_eq!(top.len(), 3, "{out}");
    assert!(top.iter().all(|c| (5..=9).contains(c)), "{out}");
    let out = run_cli_ok(&predict);
    let classes: Vec<&str> = (out.trim().split(": ").nth(1).unwrap().split(", "))
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    assert!(classes.iter().all(|c| labels.contains(c)), "{out}");
}

#[test]
fn the_class_list_round_trips_and_older_models_count_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = |spec: &str| Plan::new(&Arch::parse(spec).unwrap(), MNIST_INPUT).unwrap();
    let five = plan(&format!("{SMALL}5"));
    let params = init_params(&five, 1);
    let path = tmp.path().join("five.safetensors");
    let classes = ("classes", classes_metadata(&[9, 3, 5, 0, 7]));
    save_checkpoint(&path, &five, &params, &[classes]).unwrap();
    let back = load_checkpoint(&path).unwrap();
    assert_eq!(back.labels, [9, 3, 5, 0, 7]);
    assert_eq!(back.params.tensors, params.tensors);
    // The header stays sorted with the new key (the same run, the same bytes).
    let bytes = std::fs::read(&path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
    let (arch, classes) = (
        header.find("\"arch\"").unwrap(),
        header.find("\"classes\"").unwrap(),
    );
    assert!(
        arch < classes && classes < header.find("\"format\"").unwrap(),
        "{header}"
    );

    // A model saved before the key existed (the committed seed model) counts from 0.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-model.safetensors");
    let old = load_checkpoint(&fixture).unwrap();
    assert!(!old.metadata.contains_key("classes"));
    assert_eq!(old.labels, (0..10).collect::<Vec<_>>());

    // A list that does not fit the model is a one-line error naming the file.
    for (bad, why) in [
        ("1,2", "2 labels for 5 outputs"),
        ("1,2,3,4,1", "label 1 twice"),
        ("1,2,3,4,x", "expected labels 0-255"),
    ] {
        let path = tmp.path().join("bad.safetensors");
        save_checkpoint(&path, &five, &params, &[("classes", bad.into())]).unwrap();
        let err = load_checkpoint(&path).err().expect("refused").to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains(why),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn init_from_a_model_of_other_classes_saves_the_new_list_and_warns_of_a_loaded_head() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset_in(tmp.path(), 400, 100, |i| (i % 10) as u8);
    let d = data.to_str().unwrap();
    let arch = format!("{SMALL}5");
    let first = tmp.path().join("first");
    let mut args = train_args(d, first.to_str().unwrap(), &arch);
    args.extend(["--classes", "0,1,2,3,4"]);
    run_cli_ok(&args);
    let from = first.join("model.safetensors");
    let from = from.to_str().unwrap();
    let second = |name: &str, extra: &[&str]| {
        let run = tmp.path().join(name);
        let mut args = train_args(d, run.to_str().unwrap(), &arch);
        args.extend(["--classes", "5,6,7,8,9", "--init-from", from]);
        args.extend(extra);
        let out = run_cli(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            load_checkpoint(&run.join("model.safetensors"))
                .unwrap()
                .labels,
            [5, 6, 7, 8, 9]
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The head re-initialised: nothing to say.
    assert_eq!(second("reinit", &["--reinit", "fc"]), "");
    // The head loaded: its outputs meant 0-4 and now mean 5-9, which the run says once.
    let stderr = second("loaded", &[]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: --init-from ")
            && stderr.contains("its head 'fc' was trained on the labels 0,1,2,3,4, this run's are 5,6,7,8,9; add --reinit fc"),
        "{stderr}"
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
