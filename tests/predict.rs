//! `predict` end to end with the committed seed model on digits drawn as ordinary images
//! (`tests/fixtures/digits`, made by `make_digits.py`): every digit recognised, a file that is
//! not an image reported on its own line without stopping the others, and exit code 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_bad_input, assert_usage_error, run_cli};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model() -> String {
    fixtures()
        .join("seed-model.safetensors")
        .display()
        .to_string()
}

fn not_an_image() -> String {
    fixtures().join("not-an-image.png").display().to_string()
}

fn digit(name: &str) -> String {
    fixtures().join("digits").join(name).display().to_string()
}

/// Every drawn digit's path and the digit its file name starts with.
fn drawn_digits() -> Vec<(String, u64)> {
    let mut digits: Vec<(String, u64)> = std::fs::read_dir(fixtures().join("digits"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let label = name.chars().next().and_then(|c| c.to_digit(10));
            let label = label.unwrap_or_else(|| panic!("{name} must start with its digit"));
            (path.display().to_string(), u64::from(label))
        })
        .collect();
    digits.sort();
    digits
}

/// Runs `predict` with these extra flags on `files`.
fn predict(flags: &[&str], files: &[String]) -> Output {
    let model = model();
    let mut args = vec!["predict", "--model", model.as_str()];
    args.extend(flags);
    args.extend(files.iter().map(String::as_str));
    run_cli(&args)
}

/// The JSON lines of stdout.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Asserts a three-class answer, most probable first, and returns its class.
fn top_class(line: &Value) -> u64 {
    let top = line["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top: {line}"));
    assert_eq!(top.len(), 3, "{line}");
    let probabilities: Vec<f64> = top
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .collect();
    assert!(
        probabilities.windows(2).all(|p| p[0] >= p[1]),
        "not sorted: {line}"
    );
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(probabilities.iter().sum::<f64>() <= 1.0 + 1e-9);
    top[0]["class"].as_u64().unwrap()
}

/// Every drawn digit through `predict --json` with these flags: one line per file, in order,
/// each naming its file, and the right digit on top.
fn assert_every_digit_recognised(flags: &[&str]) {
    let digits = drawn_digits();
    assert!(digits.len() >= 20, "only {} fixtures", digits.len());
    let files: Vec<String> = digits.iter().map(|(file, _)| file.clone()).collect();
    let mut args = vec!["--json"];
    args.extend(flags);
    let out = predict(&args, &files);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), digits.len());
    let wrong: Vec<String> = digits
        .iter()
        .zip(&lines)
        .filter_map(|((file, label), line)| {
            assert_eq!(line["file"], file.as_str());
            (top_class(line) != *label).then(|| format!("{file}: {}", line["top"]))
        })
        .collect();
    assert!(wrong.is_empty(), "misclassified: {wrong:#?}");
}

#[test]
fn every_drawn_digit_is_recognised_on_the_cpu() {
    assert_every_digit_recognised(&["--backend", "cpu"]);
}

#[test]
fn every_drawn_digit_is_recognised_on_the_gpu() {
    if common::gpu_context().is_none() {
        return;
    }
    assert_every_digit_recognised(&["--backend", "gpu", "--autotune", "off"]);
}

#[test]
fn a_file_that_is_not_an_image_fails_alone_with_exit_code_2() {
    let files = [digit("3_ink.png"), not_an_image(), digit("7_chalk.png")];
    let out = predict(&["--backend", "cpu", "--json"], &files);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: 1 of 3 images could not be classified"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(top_class(&lines[0]), 3);
    assert_eq!(top_class(&lines[2]), 7);
    let failed = lines[1].as_object().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed["file"], files[1].as_str());
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("not an image ("), "{error}");
}

#[test]
fn the_human_format_has_one_line_per_file_and_errors_on_stderr() {
    let missing = fixtures().join("no-such-digit.png").display().to_string();
    let files = [digit("2_marker.png"), not_an_image(), missing.clone()];
    let out = predict(&["--backend", "cpu"], &files);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // "<file>: 2 (99.4%), 8 (0.3%), 1 (0.2%)"
    let line = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let answer = line.strip_prefix(&format!("{}: ", files[0])).unwrap();
    let classes: Vec<&str> = answer.split(", ").collect();
    assert_eq!(classes.len(), 3, "{line}");
    assert!(
        classes[0].starts_with("2 (") && classes[0].ends_with("%)"),
        "{line}"
    );
    let stderr: Vec<&str> = stderr.lines().collect();
    assert_eq!(stderr.len(), 3, "{stderr:?}");
    assert!(stderr[0].starts_with(&format!("error: {}: not an image (", files[1])));
    assert!(stderr[1].starts_with(&format!("error: {missing}: cannot read (")));
    assert_eq!(stderr[2], "error: 2 of 3 images could not be classified");
}

#[test]
fn a_missing_or_broken_model_is_a_one_line_error() {
    let image = digit("1_ink.png");
    let out = run_cli(&[
        "predict",
        "--model",
        "/nonexistent/m.safetensors",
        image.as_str(),
    ]);
    assert_bad_input(&out, "/nonexistent/m.safetensors: cannot read checkpoint");
    let not_a_model = not_an_image();
    let out = run_cli(&["predict", "--model", not_a_model.as_str(), image.as_str()]);
    assert_bad_input(&out, "not a safetensors checkpoint");
}

#[test]
fn predict_needs_an_image() {
    let model = model();
    assert_usage_error(
        &run_cli(&["predict", "--model", model.as_str()]),
        &[
            "the following required arguments were not provided",
            "<IMAGE>",
        ],
    );
}

/// One file that fails is one error line, naming the file and what is wrong with it.
#[test]
fn a_lone_file_that_fails_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("digit.txt");
    std::fs::write(&text, "seven\n").unwrap();
    let text = text.display().to_string();
    let out = predict(&["--backend", "cpu"], std::slice::from_ref(&text));
    assert_bad_input(&out, &format!("{text}: not an image ("));
    assert!(out.stdout.is_empty());
}

#[test]
fn explain_draws_the_figures_of_explain_for_the_images_that_were_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, alone) = (tmp.path().join("figures"), tmp.path().join("alone"));
    let files = [digit("3_ink.png"), not_an_image(), digit("7_chalk.png")];
    let flags = ["--backend", "cpu", "--explain", "all", "--out"];
    let mut args: Vec<&str> = flags.to_vec();
    args.push(out.to_str().unwrap());
    let result = predict(&args, &files);
    // The file that is no image still fails the command, after the others are explained.
    assert_bad_input(&result, "not an image");
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    // Six methods for each of the two digits, and the grid.
    assert_eq!(written.len(), 13, "{written:?}");
    assert!(written.contains(&"all-methods.png".to_string()));
    // The same figure, bit for bit, as `explain` draws for the same file and method.
    let model = model();
    let explain = [
        "explain", "--model", &model, &files[2], "--method", "saliency", "--out",
    ];
    let mut args = explain.to_vec();
    args.push(alone.to_str().unwrap());
    let status = run_cli(&args).status;
    assert_eq!(status.code(), Some(0));
    let read = |dir: &Path| std::fs::read(dir.join("7_chalk-saliency.png")).unwrap();
    assert_eq!(read(&out), read(&alone));
}
