//! Pruning: unstructured (global and per layer) zeroes exactly the expected count of the
//! smallest weights and nothing else; structured removes channels so that the smaller model
//! computes what the original computes with the removed channels' readers zeroed; the command
//! end to end, with its checkpoint read back by the other commands.

mod common;

use std::path::Path;

use common::{run_cli_ok, write_tiny_dataset};
use mnist_wgpu::checkpoint::{load_checkpoint, save_checkpoint};
use mnist_wgpu::cpu::network::{logits, Workspace};
use mnist_wgpu::model::{init_params, Arch, Layer, Params, Plan, MNIST_INPUT};
use mnist_wgpu::prune::{prune_channels, prune_unstructured, pruned_count, Scope};

/// A deterministic stream of numbers in [-1, 1) (a 64-bit LCG's high bits).
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f32 {
        self.0 = (self.0)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A model of `spec` whose every tensor holds something a bug would disturb: Glorot weights,
/// and biases and batch-norm parameters of magnitude up to `others` (running variances in
/// [0.5, 1.5)).
fn model_with(spec: &str, seed: u64, others: f32) -> (Plan, Params<f32>) {
    let plan = Plan::new(&Arch::parse(spec).unwrap(), MNIST_INPUT).unwrap();
    let mut params = init_params(&plan, seed);
    let mut numbers = Numbers(seed);
    for t in &mut params.tensors {
        let other = t.name.ends_with(".bias") || t.name.starts_with("bn");
        for x in &mut t.data {
            if t.name.ends_with("running_var") {
                *x = 1.0 + 0.5 * numbers.next();
            } else if other {
                *x = others * numbers.next();
            }
        }
    }
    (plan, params)
}

/// [`model_with`] tiny biases and batch-norm parameters: smaller than any weight, so that
/// ranking them with the weights would prune them first.
fn model(spec: &str, seed: u64) -> (Plan, Params<f32>) {
    model_with(spec, seed, 1e-4)
}

/// Indices of the conv and dense weight tensors, found by name: `conv*` and `fc*` weights.
fn weight_tensors(params: &Params<f32>) -> Vec<usize> {
    (params.tensors.iter().enumerate())
        .filter(|(_, t)| {
            (t.name.starts_with("conv") || t.name.starts_with("fc")) && t.name.ends_with(".weight")
        })
        .map(|(i, _)| i)
        .collect()
}

fn zeros(data: &[f32]) -> usize {
    data.iter().filter(|&&x| x == 0.0).count()
}

/// The largest magnitude zeroed and the smallest kept over the tensors `at` of `before`
/// (`after` the pruned copy), checking on the way that kept weights kept their values.
fn pruned_and_kept_extremes(before: &Params<f32>, after: &Params<f32>, at: &[usize]) -> (f32, f32) {
    let (mut largest_pruned, mut smallest_kept) = (0f32, f32::INFINITY);
    for &i in at {
        for (&b, &a) in before.tensors[i].data.iter().zip(&after.tensors[i].data) {
            if a == 0.0 {
                largest_pruned = largest_pruned.max(b.abs());
            } else {
                assert_eq!(a, b, "{}: a kept weight changed", before.tensors[i].name);
                smallest_kept = smallest_kept.min(b.abs());
            }
        }
    }
    (largest_pruned, smallest_kept)
}

fn assert_only_weights_changed(before: &Params<f32>, after: &Params<f32>) {
    let weights = weight_tensors(before);
    for (i, (b, a)) in before.tensors.iter().zip(&after.tensors).enumerate() {
        if !weights.contains(&i) {
            assert_eq!(a, b, "{} was touched", b.name);
        }
    }
}

const BN_SPEC: &str = "conv6k3-bn-relu-pool2-conv8k3-relu-pool2-flatten-dense16-bn-relu-dense10";

#[test]
fn global_unstructured_zeroes_exactly_the_smallest_weights_of_all_layers() {
    let (plan, params) = model(BN_SPEC, 3);
    let weights = weight_tensors(&params);
    let total: usize = weights.iter().map(|&i| params.tensors[i].data.len()).sum();
    for sparsity in [0.0, 0.5, 0.9, 0.999] {
        let (pruned, mask) = prune_unstructured(&plan, &params, sparsity, Scope::Global);
        let zeroed: usize = weights
            .iter()
            .map(|&i| zeros(&pruned.tensors[i].data))
            .sum();
        let expected = (sparsity * total as f64).round() as usize;
        assert_eq!(zeroed, expected, "sparsity {sparsity}");
        assert_eq!(mask.pruned(), expected);
        let (pruned_max, kept_min) = pruned_and_kept_extremes(&params, &pruned, &weights);
        assert!(
            pruned_max <= kept_min,
            "{sparsity}: pruned {pruned_max} > kept {kept_min}"
        );
        assert_only_weights_changed(&params, &pruned);
    }
    // Global: the layers end up unequally sparse (here the wide dense layer the most).
    let (pruned, _) = prune_unstructured(&plan, &params, 0.5, Scope::Global);
    let shares: Vec<f64> = (weights.iter())
        .map(|&i| zeros(&pruned.tensors[i].data) as f64 / pruned.tensors[i].data.len() as f64)
        .collect();
    assert!(shares.iter().any(|&s| (s - 0.5).abs() > 0.05), "{shares:?}");
}

#[test]
fn layer_unstructured_prunes_each_layer_to_the_sparsity() {
    let (plan, params) = model(BN_SPEC, 5);
    let weights = weight_tensors(&params);
    assert_eq!(weights.len(), 4);
    for sparsity in [0.3, 0.75] {
        let (pruned, _) = prune_unstructured(&plan, &params, sparsity, Scope::Layer);
        for &i in &weights {
            let n = params.tensors[i].data.len();
            let expected = (sparsity * n as f64).round() as usize;
            assert_eq!(
                zeros(&pruned.tensors[i].data),
                expected,
                "{}",
                params.tensors[i].name
            );
            let (pruned_max, kept_min) = pruned_and_kept_extremes(&params, &pruned, &[i]);
            assert!(pruned_max <= kept_min, "{}", params.tensors[i].name);
        }
        assert_only_weights_changed(&params, &pruned);
    }
}

#[test]
fn ties_at_the_threshold_still_give_the_exact_count_the_same_way_every_time() {
    let (plan, mut params) = model("conv8k3-relu-pool2-flatten-dense10", 7);
    let weights = weight_tensors(&params);
    // Three magnitudes only: almost every weight ties with many others.
    for &i in &weights {
        for (j, w) in params.tensors[i].data.iter_mut().enumerate() {
            *w = [0.1, -0.1, 0.2, -0.3][j % 4];
        }
    }
    let total: usize = weights.iter().map(|&i| params.tensors[i].data.len()).sum();
    for sparsity in [0.1, 0.37, 0.6] {
        let (a, mask) = prune_unstructured(&plan, &params, sparsity, Scope::Global);
        let (b, _) = prune_unstructured(&plan, &params, sparsity, Scope::Global);
        assert_eq!(a, b);
        let zeroed: usize = weights.iter().map(|&i| zeros(&a.tensors[i].data)).sum();
        assert_eq!(zeroed, pruned_count(sparsity, total));
        assert_eq!(zeroed, mask.pruned());
        let (pruned_max, kept_min) = pruned_and_kept_extremes(&params, &a, &weights);
        assert!(pruned_max <= kept_min);
    }
}

#[test]
fn a_saved_pruned_checkpoint_counts_its_zeros() {
    let (plan, params) = model(BN_SPEC, 9);
    let (pruned, _) = prune_unstructured(&plan, &params, 0.8, Scope::Global);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pruned.safetensors");
    save_checkpoint(&path, &plan, &pruned, &[]).unwrap();
    let back = load_checkpoint(&path).unwrap();
    let weights = weight_tensors(&back.params);
    let (zeroed, total) = zeros_of(&back.params, &weights);
    assert_eq!(zeroed, (0.8 * total as f64).round() as usize);
    assert_eq!(back.params, pruned);
}

/// The zeros among the weight tensors `weights` of `params`, and their element count.
fn zeros_of(params: &Params<f32>, weights: &[usize]) -> (usize, usize) {
    let tensors = weights.iter().map(|&i| &params.tensors[i].data);
    (
        tensors.clone().map(|t| zeros(t)).sum(),
        tensors.map(|t| t.len()).sum(),
    )
}

/// `n` images of random pixels in [0, 1], in f64.
fn images(n: usize, seed: u64) -> Vec<f64> {
    let mut numbers = Numbers(seed);
    (0..n * MNIST_INPUT.len())
        .map(|_| f64::from(numbers.next()) * 0.5 + 0.5)
        .collect()
}

fn logits_f64(plan: &Plan, params: &Params<f32>, x: &[f64]) -> Vec<f64> {
    let params = params.map(f64::from);
    logits(plan, &params, x, &Workspace::new(plan))
}

/// The original's parameters with, for every removed channel of every convolution, the
/// weights of the next conv or dense layer that read it set to zero (a dense layer after
/// flatten reads channel c at features c*H*W to (c+1)*H*W - 1, H x W being the flattened
/// map). Found from the original plan alone, independently of the pruning code.
fn zero_readers_of_removed(
    plan: &Plan,
    params: &Params<f32>,
    removed: &[Vec<usize>],
) -> Params<f32> {
    let mut zeroed = params.clone();
    let convs: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| matches!(plan.steps[i].layer, Layer::Conv2d { .. }))
        .collect();
    for (&conv, removed) in convs.iter().zip(removed) {
        let channels = plan.steps[conv].output.channels;
        let mut plane = 1;
        let reader = (conv + 1..plan.steps.len())
            .find(|&j| {
                if plan.steps[j].layer == Layer::Flatten {
                    plane = plan.steps[j].input.height * plan.steps[j].input.width;
                }
                matches!(
                    plan.steps[j].layer,
                    Layer::Conv2d { .. } | Layer::Dense { .. }
                )
            })
            .expect("a layer reads every convolution");
        let w = &mut zeroed.tensors[plan.steps[reader].weight_index.unwrap()];
        let inputs = channels * plane;
        let per_input = w.data.len() / w.shape[0] / inputs;
        assert_eq!(w.shape[1], inputs, "{}: reads {channels} channels", w.name);
        for row in w.data.chunks_exact_mut(inputs * per_input) {
            for &c in removed {
                row[c * plane * per_input..(c + 1) * plane * per_input].fill(0.0);
            }
        }
    }
    zeroed
}

/// Prunes `spec`'s channels and checks the equivalence, the counts and the L1 ranking.
fn assert_channel_pruning_is_exact(spec: &str, sparsity: f64, scope: Scope) {
    let (plan, params) = model_with(spec, 11, 0.5);
    let pruning = prune_channels(&plan, &params, sparsity, scope).unwrap();
    let removed: Vec<Vec<usize>> = (pruning.cuts.iter())
        .map(|cut| {
            (0..cut.channels)
                .filter(|c| !cut.kept.contains(c))
                .collect()
        })
        .collect();
    let removed_count: usize = removed.iter().map(Vec::len).sum();
    let all: usize = pruning.cuts.iter().map(|c| c.channels).sum();
    match scope {
        Scope::Global => assert_eq!(removed_count, pruned_count(sparsity, all)),
        Scope::Layer => {
            for (cut, removed) in pruning.cuts.iter().zip(&removed) {
                assert_eq!(
                    removed.len(),
                    pruned_count(sparsity, cut.channels),
                    "{}",
                    cut.name
                );
            }
        }
    }
    assert!(removed_count > 0, "{spec}: nothing removed");
    // The pruned arch has the kept channel counts, and the params their shapes.
    let kept_channels: Vec<usize> = (pruning.plan.steps.iter())
        .filter_map(|s| match s.layer {
            Layer::Conv2d { out_channels, .. } => Some(out_channels),
            _ => None,
        })
        .collect();
    let expected: Vec<usize> = pruning.cuts.iter().map(|c| c.kept.len()).collect();
    assert_eq!(kept_channels, expected);
    // Within a layer the removed filters have the smallest L1 norms.
    for (cut, removed) in pruning.cuts.iter().zip(&removed) {
        let w = params.get(&format!("{}.weight", cut.name)).unwrap();
        let filter = w.data.len() / cut.channels;
        let l1 = |c: usize| -> f64 {
            w.data[c * filter..(c + 1) * filter]
                .iter()
                .map(|x| f64::from(x.abs()))
                .sum()
        };
        let removed_max = removed.iter().map(|&c| l1(c)).fold(0.0, f64::max);
        let kept_min = cut
            .kept
            .iter()
            .map(|&c| l1(c))
            .fold(f64::INFINITY, f64::min);
        assert!(
            removed_max <= kept_min,
            "{}: {removed_max} > {kept_min}",
            cut.name
        );
    }
    let x = images(6, 13);
    let small = logits_f64(&pruning.plan, &pruning.params, &x);
    let zeroed = zero_readers_of_removed(&plan, &params, &removed);
    let reference = logits_f64(&plan, &zeroed, &x);
    let untouched = logits_f64(&plan, &params, &x);
    // The same nonzero products summed in another order (a shorter reduction): f64 rounding
    // of sums of at most a few thousand terms of size ~1, well below 1e-9.
    let scale = reference.iter().fold(1f64, |m, v| m.max(v.abs()));
    let worst = (small.iter().zip(&reference))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-9 * scale,
        "{spec} {scope}: logits differ by {worst}"
    );
    // Not vacuous: the removed channels did matter to the original.
    let moved = (untouched.iter().zip(&reference))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-6 * scale,
        "{spec}: the removed channels changed nothing"
    );
}

#[test]
fn channel_pruning_without_batch_norm_equals_zeroing_the_next_layers_inputs() {
    // conv -> conv, and the last conv -> flatten -> dense.
    let spec = "conv6k3-relu-pool2-conv8k3s2-relu-flatten-dense12-relu-dense10";
    assert_channel_pruning_is_exact(spec, 0.5, Scope::Layer);
    assert_channel_pruning_is_exact(spec, 0.3, Scope::Global);
}

#[test]
fn channel_pruning_with_batch_norm_between_removes_its_constant_too() {
    // conv -> bn -> conv (same padding), and conv -> bn -> pool -> flatten -> dense.
    let spec = "conv6k3-bn-relu-conv8k3same-bn-relu-pool2-dropout0.25-flatten-dense10";
    assert_channel_pruning_is_exact(spec, 0.5, Scope::Layer);
    assert_channel_pruning_is_exact(spec, 0.4, Scope::Global);
}

#[test]
fn channel_pruning_before_a_batch_norm_after_flatten() {
    // flatten -> bn (per feature) -> dense: the removed channel's features leave the bn too.
    assert_channel_pruning_is_exact("conv5k5-relu-pool2-flatten-bn-dense10", 0.4, Scope::Layer);
}

// The command end to end, on the bundled test set (a few hundred images) and the trained
// fixture model.

fn fixture_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-model.safetensors")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `prune` of the fixture model to `out` at sparsity 0.5 with `extra` flags, evaluated on 300
/// test images; its output.
fn prune_fixture_by_half(out: &Path, extra: &[&str]) -> String {
    let model = fixture_model();
    let mut args = vec!["prune", "--model", path(&model), "--out", path(out)];
    args.extend(["--sparsity", "0.5", "--test-limit", "300"]);
    args.extend(extra);
    run_cli_ok(&args)
}

#[test]
fn prune_writes_a_sparse_checkpoint_that_summary_and_eval_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sparse.safetensors");
    let text = prune_fixture_by_half(&out, &[]);
    for needle in [
        "global scope",
        "conv1",
        "conv2",
        "fc",
        "overall",
        "test accuracy",
        "wrote",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let back = load_checkpoint(&out).unwrap();
    let original = load_checkpoint(&fixture_model()).unwrap();
    let weights = weight_tensors(&back.params);
    let (zeroed, total) = zeros_of(&back.params, &weights);
    assert_eq!(zeroed, (0.5 * total as f64).round() as usize);
    let (pruned_max, kept_min) = pruned_and_kept_extremes(&original.params, &back.params, &weights);
    assert!(pruned_max <= kept_min);
    assert_only_weights_changed(&original.params, &back.params);
    let pruning: serde_json::Value = serde_json::from_str(&back.metadata["pruning"]).unwrap();
    assert_eq!(pruning["sparsity"], 0.5);
    assert_eq!(pruning["scope"], "global");
    assert_eq!(pruning["structured"], "none");

    let overall = format!(
        "weight sparsity {:.2}%",
        100.0 * zeroed as f64 / total as f64
    );
    let summary = run_cli_ok(&["summary", "--model", path(&out)]);
    assert!(summary.contains(&overall), "{overall}: {summary}");
    // Per layer: conv1's row carries its own share of zeros.
    let conv1 = &back.params.tensors[weights[0]].data;
    let conv1_share = format!("{:.2}%", 100.0 * zeros(conv1) as f64 / conv1.len() as f64);
    let row = (summary.lines())
        .find(|l| l.trim_start().starts_with("1  conv32k3"))
        .unwrap();
    assert!(
        row.trim_end().ends_with(&conv1_share),
        "{conv1_share}: {row}"
    );
    let eval = run_cli_ok(&[
        "eval",
        "--model",
        path(&out),
        "--backend",
        "cpu",
        "--test-limit",
        "50",
    ]);
    assert!(eval.contains(&overall), "{overall}: {eval}");
    // A dense model reports none.
    let dense = run_cli_ok(&["summary", "--model", path(&fixture_model())]);
    assert!(
        dense.contains("weight sparsity 0.00% (0 of 34720"),
        "{dense}"
    );
}

#[test]
fn prune_by_layer_keeps_the_metadata_but_not_the_training_state() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = Plan::new(
        &Arch::parse("conv4k3-relu-pool2-flatten-dense5").unwrap(),
        MNIST_INPUT,
    )
    .unwrap();
    let model_path = tmp.path().join("five.safetensors");
    let extra = [
        ("classes", "5,6,7,8,9".to_string()),
        ("seed", "17".to_string()),
        ("run", "{}".to_string()),
    ];
    save_checkpoint(&model_path, &plan, &init_params(&plan, 17), &extra).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_tiny_dataset(&data, 20, 40);
    let out = tmp.path().join("pruned.safetensors");
    let text = run_cli_ok(&[
        "prune",
        "--model",
        path(&model_path),
        "--out",
        path(&out),
        "--sparsity",
        "0.25",
        "--scope",
        "layer",
        "--data-dir",
        path(&data),
    ]);
    // The tiny set has 4 test images of each label: 20 of labels 5 to 9.
    assert!(text.contains("20 images"), "{text}");
    let back = load_checkpoint(&out).unwrap();
    assert_eq!(back.metadata["classes"], "5,6,7,8,9");
    assert_eq!(back.metadata["seed"], "17");
    assert!(!back.metadata.contains_key("run"));
    let pruning: serde_json::Value = serde_json::from_str(&back.metadata["pruning"]).unwrap();
    assert_eq!(pruning["scope"], "layer");
    assert_eq!(pruning["from"], "five.safetensors");
    for t in weight_tensors(&back.params)
        .into_iter()
        .map(|i| &back.params.tensors[i])
    {
        assert_eq!(
            zeros(&t.data),
            pruned_count(0.25, t.data.len()),
            "{}",
            t.name
        );
    }
}

#[test]
fn a_channel_pruned_checkpoint_is_a_model_like_any_other() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("small.safetensors");
    let text = prune_fixture_by_half(&out, &["--structured", "channels"]);
    let expected_arch = "conv16k3-relu-pool2-conv32k3-relu-pool2-flatten-dense10";
    assert!(text.contains(&format!("-> {expected_arch}")), "{text}");
    assert!(text.contains("layer scope"), "{text}");
    let back = load_checkpoint(&out).unwrap();
    assert_eq!(back.plan.arch.to_string(), expected_arch);
    assert_eq!(
        back.params.get("fc.weight").unwrap().shape,
        [10, 32 * 5 * 5]
    );

    let summary = run_cli_ok(&["summary", "--model", path(&out)]);
    assert!(summary.starts_with(expected_arch), "{summary}");
    let eval = run_cli_ok(&[
        "eval",
        "--model",
        path(&out),
        "--backend",
        "cpu",
        "--test-limit",
        "100",
    ]);
    assert!(eval.contains("test accuracy"), "{eval}");
    let digit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits/3_ink.png");
    let predicted = run_cli_ok(&[
        "predict",
        "--model",
        path(&out),
        "--backend",
        "cpu",
        path(&digit),
    ]);
    assert!(predicted.contains("3_ink.png"), "{predicted}");
    let int8 = tmp.path().join("int8.safetensors");
    let quantized = run_cli_ok(&[
        "quantize",
        "--model",
        path(&out),
        "--out",
        path(&int8),
        "--calibration",
        "20",
    ]);
    assert!(quantized.contains("int8 test accuracy"), "{quantized}");
    // The int8 model's sparsity counts its integer weights: as many as the float model's.
    let int8_summary = run_cli_ok(&["summary", "--model", path(&int8)]);
    let weights: usize = weight_tensors(&back.params)
        .iter()
        .map(|&i| back.params.tensors[i].data.len())
        .sum();
    assert!(
        int8_summary.contains(&format!(" of {weights} conv and dense weights are zero")),
        "{int8_summary}"
    );
    let run_dir = tmp.path().join("run");
    let trained = run_cli_ok(&[
        "train",
        "--arch",
        expected_arch,
        "--init-from",
        path(&out),
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--test-limit",
        "20",
        "--backend",
        "cpu",
        "--run-dir",
        path(&run_dir),
    ]);
    assert!(
        trained.contains("loaded conv1.weight, conv1.bias, conv2.weight"),
        "{trained}"
    );
    assert!(trained.contains("initialised none"), "{trained}");
}
