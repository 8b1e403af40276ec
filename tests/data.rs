//! Loading MNIST: the bundled files, and every kind of bad file as a one-line error, exit code 2.

mod common;

use std::fs;
use std::path::Path;

use common::{assert_bad_input, bundled_data, cli_command, gzip, idx, run_cli, write_tiny_dataset};
use mnist_wgpu::data::{load_bundled_mnist, load_mnist};

/// Official per-digit counts of the training and test sets.
const TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

fn label_counts(labels: &[u8]) -> [usize; 10] {
    let mut counts = [0; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    counts
}

#[test]
fn bundled_data_has_the_official_sizes_and_label_counts() {
    let mnist = load_mnist(&bundled_data()).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60000, 10000));
    assert_eq!(label_counts(&mnist.train.labels), TRAIN_COUNTS);
    assert_eq!(label_counts(&mnist.test.labels), TEST_COUNTS);
}

#[test]
fn the_copy_built_in_is_the_bundled_directory() {
    assert!(load_bundled_mnist().unwrap() == load_mnist(&bundled_data()).unwrap());
}

#[test]
fn our_reader_agrees_with_the_mnist_crate() {
    // The mnist crate reads raw files only: decompress the bundled files for it.
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(bundled_data()).unwrap() {
        let path = entry.unwrap().path();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(fs::File::open(&path).unwrap()),
            &mut raw,
        )
        .unwrap();
        fs::write(dir.path().join(path.file_stem().unwrap()), raw).unwrap();
    }
    let base = dir.path().to_str().unwrap();
    let theirs = mnist::MnistBuilder::new()
        .base_path(base)
        .training_set_length(60000)
        .test_set_length(10000)
        .finalize();
    let ours = load_mnist(dir.path()).unwrap();
    assert_eq!(ours.train.images, theirs.trn_img);
    assert_eq!(ours.train.labels, theirs.trn_lbl);
    assert_eq!(ours.test.images, theirs.tst_img);
    assert_eq!(ours.test.labels, theirs.tst_lbl);
}

#[test]
fn gzipped_and_raw_files_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_dataset(dir.path(), 20, 10);
    let raw = load_mnist(dir.path()).unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let gz = path.with_file_name(format!(
            "{}.gz",
            path.file_name().unwrap().to_str().unwrap()
        ));
        fs::write(gz, gzip(&fs::read(&path).unwrap())).unwrap();
        fs::remove_file(path).unwrap();
    }
    assert_eq!(load_mnist(dir.path()).unwrap(), raw);
    assert_eq!(raw.train.len(), 20);
}

/// Writes a valid tiny data set, lets `corrupt` damage it, and expects `needle` in the error.
fn expect_data_error(corrupt: impl FnOnce(&Path), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_dataset(dir.path(), 20, 10);
    corrupt(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    let out = run_cli(&[
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "1",
        "--data-dir",
        data_dir,
    ]);
    assert_bad_input(&out, needle);
}

#[test]
fn truncated_file_reports_expected_and_found_bytes() {
    expect_data_error(
        |d| {
            let p = d.join("train-labels-idx1-ubyte");
            let bytes = fs::read(&p).unwrap();
            fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        },
        "train-labels-idx1-ubyte: expected 28 bytes, found 25",
    );
}

#[test]
fn truncated_gzip_file_is_reported() {
    expect_data_error(
        |d| {
            let p = d.join("t10k-images-idx3-ubyte");
            let gz = gzip(&fs::read(&p).unwrap());
            fs::write(d.join("t10k-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
            fs::remove_file(p).unwrap();
        },
        "t10k-images-idx3-ubyte.gz: ",
    );
}

#[test]
fn wrong_magic_number_is_reported() {
    expect_data_error(
        |d| {
            let p = d.join("train-images-idx3-ubyte");
            let mut bytes = fs::read(&p).unwrap();
            bytes[3] = 0x01;
            fs::write(&p, bytes).unwrap();
        },
        "train-images-idx3-ubyte: bad magic number 0x00000801, expected 0x00000803",
    );
}

#[test]
fn label_at_or_above_the_output_width_is_reported() {
    expect_data_error(
        |d| {
            let labels: Vec<u8> = (0..10).map(|i| if i == 4 { 11 } else { 1 }).collect();
            fs::write(d.join("t10k-labels-idx1-ubyte"), idx(0x801, &[10], &labels)).unwrap();
        },
        "t10k-labels-idx1-ubyte: label 11 at index 4 is not below the model's 10 outputs",
    );
}

#[test]
fn missing_file_is_reported() {
    expect_data_error(
        |d| fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap(),
        "t10k-labels-idx1-ubyte.gz: file not found (nor t10k-labels-idx1-ubyte)",
    );
}

#[test]
fn empty_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["train", "--data-dir", dir.path().to_str().unwrap()]);
    assert_bad_input(&out, "train-images-idx3-ubyte.gz: file not found");
}

#[test]
fn missing_directory_is_reported() {
    let out = run_cli(&["train", "--data-dir", "/nonexistent/mnist"]);
    assert_bad_input(&out, "/nonexistent/mnist: data directory not found");
}

#[test]
fn header_claiming_four_billion_images_is_rejected_without_allocating() {
    // 4e9 images would be 3.1 TB: reading must stop at the bytes that exist.
    expect_data_error(
        |d| {
            let bytes = idx(0x803, &[4_000_000_000, 28, 28], &[0; 784]);
            fs::write(d.join("train-images-idx3-ubyte"), bytes).unwrap();
        },
        "expected 3136000000016 bytes, found 800",
    );
}

#[test]
fn wrong_image_size_and_count_mismatch_are_reported() {
    expect_data_error(
        |d| {
            fs::write(
                d.join("train-images-idx3-ubyte"),
                idx(0x803, &[1, 32, 32], &[0; 1024]),
            )
            .unwrap()
        },
        "images are 32x32, expected 28x28",
    );
    expect_data_error(
        |d| {
            fs::write(
                d.join("train-labels-idx1-ubyte"),
                idx(0x801, &[19], &[0; 19]),
            )
            .unwrap()
        },
        "has 20 images but",
    );
}

#[test]
fn a_file_that_is_not_gzip_is_reported() {
    expect_data_error(
        |d| {
            fs::write(
                d.join("train-images-idx3-ubyte.gz"),
                b"this is not gzip at all",
            )
            .unwrap();
        },
        "train-images-idx3-ubyte.gz: cannot read",
    );
}

/// Runs the binary in `cwd` with these extra environment variables; exit code, stdout, stderr.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = cli_command(args);
    command.current_dir(cwd);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn stdout_of(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Outside the checkout, with no --data-dir, train and eval read the copy of data/mnist built
/// into the binary (the same images: eval's metrics match those from the directory).
#[test]
fn the_binary_runs_from_any_directory_on_its_built_in_data() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let model = run.join("model.safetensors");
    let limits = ["--backend", "cpu", "--test-limit", "256"];
    let mut train = vec!["train", "--epochs", "1", "--train-limit", "256"];
    train.extend(limits);
    train.extend(["--run-dir", run.to_str().unwrap()]);
    let stdout = stdout_of(&run_in(tmp.path(), &train, &[]));
    assert!(
        stdout.contains(" on 256 images") && stdout.contains("test accuracy"),
        "{stdout}"
    );
    let (built_in, from_dir) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    let data = bundled_data();
    for (json, data_dir) in [(&built_in, None), (&from_dir, Some(data.to_str().unwrap()))] {
        let mut eval = vec!["eval", "--model", model.to_str().unwrap()];
        eval.extend(limits);
        eval.extend(["--metrics-json", json.to_str().unwrap()]);
        eval.extend(data_dir.map(|d| ["--data-dir", d]).into_iter().flatten());
        let stdout = stdout_of(&run_in(tmp.path(), &eval, &[]));
        assert!(stdout.contains("test accuracy"), "{stdout}");
    }
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    };
    let (a, b) = (read(&built_in), read(&from_dir));
    assert_eq!(a["confusion"], b["confusion"]);
    assert_eq!(a["loss"], b["loss"]);
}

/// MNIST_WGPU_DATA_DIR replaces the built-in data; --data-dir replaces both; a variable naming
/// no directory is a one-line error that names it.
#[test]
fn the_data_directory_variable_is_honoured_and_the_flag_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = tmp.path().join("tiny");
    fs::create_dir(&tiny).unwrap();
    write_tiny_dataset(&tiny, 40, 20);
    let save = tmp.path().join("m.safetensors");
    let train = [
        "train",
        "--backend",
        "cpu",
        "--epochs",
        "1",
        "--save",
        save.to_str().unwrap(),
    ];
    let var = [("MNIST_WGPU_DATA_DIR", tiny.as_path())];
    let stdout = stdout_of(&run_in(tmp.path(), &train, &var));
    assert!(
        stdout.contains(" on 40 images") && stdout.contains("(20 images)"),
        "{stdout}"
    );
    let data = bundled_data();
    let mut flag = train.to_vec();
    flag.extend(["--train-limit", "64", "--test-limit", "30"]);
    flag.extend(["--data-dir", data.to_str().unwrap()]);
    let stdout = stdout_of(&run_in(tmp.path(), &flag, &var));
    assert!(
        stdout.contains(" on 64 images") && stdout.contains("(30 images)"),
        "{stdout}"
    );

    let missing = tmp.path().join("missing");
    let var = [("MNIST_WGPU_DATA_DIR", missing.as_path())];
    let needle = format!(
        "MNIST_WGPU_DATA_DIR={}: data directory not found",
        missing.display()
    );
    assert_bad_input(&run_in(tmp.path(), &train, &var), &needle);
    let eval = [
        "eval",
        "--model",
        save.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    assert_bad_input(&run_in(tmp.path(), &eval, &var), &needle);
}
