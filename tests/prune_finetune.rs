//! Masked fine-tuning: a mask keeps the pruned weights (and their moments) at exactly zero
//! through every optimiser step on the CPU and the GPU, while the other weights train; `train
//! --init-from` a pruned model keeps its zeros, `--prune-schedule` raises the sparsity to its
//! target, both recorded in the checkpoint and the metrics, and both survive `--resume`.

mod common;

use std::path::Path;

use common::{bundled_data, run_cli_ok};
use mnist_wgpu::backend::Backend;
use mnist_wgpu::checkpoint::load_checkpoint;
use mnist_wgpu::config::Optimizer;
use mnist_wgpu::cpu::CpuBackend;
use mnist_wgpu::data::{load_mnist, Split};
use mnist_wgpu::gpu::GpuBackend;
use mnist_wgpu::model::{init_params, Arch, Params, Plan, MNIST_INPUT};
use mnist_wgpu::prune::{magnitude_mask, pruned_count, Mask, Scope, Sparsity};

const SPEC: &str = "conv4k3-relu-pool2-flatten-dense10";

fn plan() -> Plan {
    Plan::new(&Arch::parse(SPEC).unwrap(), MNIST_INPUT).unwrap()
}

fn train_split(n: usize) -> Split {
    load_mnist(&bundled_data()).unwrap().train.truncated(n)
}

/// Trains `backend` under `mask` for 6 steps and checks, bit for bit, that the weights the
/// mask prunes and their moments are +0.0, that nearly every kept weight moved, and that the
/// parameters outside the mask (biases) trained too.
fn check_zeros_stay_zero(backend: &mut dyn Backend, start: &Params<f32>, mask: &Mask) {
    backend.set_seed(5);
    backend.set_train_data(&train_split(96)).unwrap();
    backend.set_mask(Some(mask)).unwrap();
    for step in 0..6u32 {
        let batch: Vec<u32> = (0..16).map(|i| (step * 16 + i) % 96).collect();
        backend.train_step(&batch).unwrap();
    }
    backend.take_train_stats().unwrap();
    let params = backend.params().unwrap();
    let state = backend.optimizer_state().unwrap();
    let mut moved = (0, 0);
    for (t, keep) in mask.keep.iter().enumerate() {
        let (now, was) = (&params.tensors[t].data, &start.tensors[t].data);
        let Some(keep) = keep else {
            assert_ne!(now, was, "{} trains", params.tensors[t].name);
            continue;
        };
        for (i, &kept) in keep.iter().enumerate() {
            if kept {
                moved.0 += usize::from(now[i] != was[i]);
                moved.1 += 1;
                continue;
            }
            let bits = [
                now[i],
                state.m.tensors[t].data[i],
                state.v.tensors[t].data[i],
            ];
            assert_eq!(
                bits.map(f32::to_bits),
                [0; 3],
                "{}[{i}]",
                params.tensors[t].name
            );
        }
    }
    assert!(moved.0 * 10 > moved.1 * 9, "kept weights moved: {moved:?}");
    assert_eq!(Mask::of_zeros(&plan(), &params), *mask);
}

/// The dense start, its 70% mask (global), and Adam with L2 decay: without the mask every
/// pruned weight would move away from zero on the first step.
fn masked_start() -> (Params<f32>, Mask, Optimizer) {
    let plan = plan();
    let params = init_params(&plan, 3);
    let mask = magnitude_mask(&plan, &params, 0.7, Scope::Global);
    (params, mask, Optimizer::adam(1e-2).with_weight_decay(0.1))
}

#[test]
fn a_mask_keeps_the_pruned_weights_exactly_zero_on_the_cpu() {
    let (params, mask, opt) = masked_start();
    let mut cpu = CpuBackend::new(plan(), params.clone(), opt);
    check_zeros_stay_zero(&mut cpu, &params, &mask);
}

#[test]
fn a_mask_keeps_the_pruned_weights_exactly_zero_on_the_gpu() {
    let Some(ctx) = common::gpu_context() else {
        return;
    };
    let (params, mask, opt) = masked_start();
    for opt in [opt, Optimizer::sgd(0.05).with_weight_decay(0.1)] {
        let mut gpu = GpuBackend::new(&ctx, plan(), &params, opt).unwrap();
        check_zeros_stay_zero(&mut gpu, &params, &mask);
    }
}

/// With `set_mask(None)` after a mask, a step is the unmasked step: the same bits as a backend
/// that never had one, from the same (pruned) parameters, and pruned weights move again.
#[test]
fn removing_the_mask_gives_the_unmasked_step() {
    let (mut params, mask, opt) = masked_start();
    mask.apply(&mut params);
    let step = |set: &dyn Fn(&mut CpuBackend)| -> Params<f32> {
        let mut cpu = CpuBackend::new(plan(), params.clone(), opt);
        cpu.set_train_data(&train_split(16)).unwrap();
        set(&mut cpu);
        cpu.train_step(&(0..16).collect::<Vec<u32>>()).unwrap();
        cpu.params().unwrap()
    };
    let unmasked = step(&|_| {});
    let removed = step(&|cpu| {
        cpu.set_mask(Some(&mask)).unwrap();
        cpu.set_mask(None).unwrap();
    });
    assert_eq!(removed, unmasked);
    let zeros = Sparsity::of(&plan(), &removed).zeros();
    assert!(zeros < mask.pruned(), "{zeros} zeros, as many as pruned");
}

fn metadata(path: &Path, key: &str) -> serde_json::Value {
    let checkpoint = load_checkpoint(path).unwrap();
    serde_json::from_str(&checkpoint.metadata[key]).unwrap()
}

fn metrics(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `train` on a few images of the bundled data, on the CPU, with `more` flags.
fn train(dir: &Path, name: &str, more: &[&str]) -> String {
    let data = bundled_data();
    let (run_dir, save) = (dir.join(name), dir.join(format!("{name}.safetensors")));
    let mut args = vec![
        "train",
        "--backend",
        "cpu",
        "--arch",
        SPEC,
        "--train-limit",
        "320",
        "--test-limit",
        "100",
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--save",
        save.to_str().unwrap(),
    ];
    args.extend(more);
    run_cli_ok(&args)
}

#[test]
fn fine_tuning_a_pruned_model_keeps_its_zeros_and_survives_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    train(t, "dense", &["--epochs", "1"]);
    let (dense, pruned) = (t.join("dense.safetensors"), t.join("pruned.safetensors"));
    run_cli_ok(&[
        "prune",
        "--model",
        dense.to_str().unwrap(),
        "--out",
        pruned.to_str().unwrap(),
        "--sparsity",
        "0.8",
        "--test-limit",
        "10",
    ]);
    let start = load_checkpoint(&pruned).unwrap();
    let mask = Mask::of_zeros(&start.plan, &start.params);
    let json = t.join("tuned.json");
    let out = train(
        t,
        "tuned",
        &[
            "--init-from",
            pruned.to_str().unwrap(),
            "--epochs",
            "2",
            "--metrics-json",
            json.to_str().unwrap(),
        ],
    );
    let line = format!("masked training: {} of the", mask.pruned());
    assert!(out.contains(&line), "{out}");
    let tuned = load_checkpoint(&t.join("tuned.safetensors")).unwrap();
    assert_eq!(Mask::of_zeros(&tuned.plan, &tuned.params), mask);
    assert_ne!(tuned.params, start.params);
    let record = metadata(&t.join("tuned.safetensors"), "pruning");
    assert_eq!(record["structured"], "none");
    assert_eq!(record["from"], "pruned.safetensors");
    let epochs = metrics(&json)["epochs"].clone();
    for epoch in epochs.as_array().unwrap() {
        assert_eq!(epoch["sparsity"].as_f64(), Some(mask.fraction()));
    }
    assert!(metrics(&json).get("prune_schedule").is_none());

    // One epoch, then resumed for the second: the mask comes back with the run.
    train(
        t,
        "split",
        &["--init-from", pruned.to_str().unwrap(), "--epochs", "1"],
    );
    let split = t.join("split");
    run_cli_ok(&[
        "train",
        "--resume",
        split.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    let resumed = load_checkpoint(&split.join("model.safetensors")).unwrap();
    let bits = |p: &Params<f32>| -> Vec<Vec<u32>> {
        (p.tensors.iter())
            .map(|t| t.data.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&resumed.params), bits(&tuned.params));

    // A plain run stays unmasked: the metrics carry no sparsity.
    let plain = t.join("plain.json");
    let out = train(
        t,
        "plain",
        &["--epochs", "1", "--metrics-json", plain.to_str().unwrap()],
    );
    assert!(!out.contains("masked"), "{out}");
    assert!(metrics(&plain)["epochs"][0].get("sparsity").is_none());
    let checkpoint = load_checkpoint(&t.join("plain.safetensors")).unwrap();
    assert!(!checkpoint.metadata.contains_key("pruning"));
}

#[test]
fn a_schedule_reaches_its_final_sparsity_exactly_and_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let json = t.join("metrics.json");
    let out = train(
        t,
        "scheduled",
        &[
            "--epochs",
            "3",
            "--prune-schedule",
            "0.2:0.6",
            "--prune-scope",
            "layer",
            "--metrics-json",
            json.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("pruning schedule 0.2:0.6 (layer scope"),
        "{out}"
    );
    let model = t.join("scheduled.safetensors");
    let checkpoint = load_checkpoint(&model).unwrap();
    let sparsity = Sparsity::of(&checkpoint.plan, &checkpoint.params);
    for layer in &sparsity.layers {
        assert_eq!(
            layer.zeros,
            pruned_count(0.6, layer.weights),
            "{}",
            layer.name
        );
    }
    let schedule = metadata(&model, "prune_schedule");
    assert_eq!(
        (&schedule["initial"], &schedule["final"], &schedule["scope"]),
        (&0.2.into(), &0.6.into(), &"layer".into())
    );
    assert_eq!(schedule["power"], 3);
    let report = metrics(&json);
    assert_eq!(report["prune_schedule"], schedule);
    // Per layer, each epoch's sparsity within a weight of 0.2, 0.55 and 0.6.
    let per_epoch: Vec<f64> = (report["epochs"].as_array().unwrap().iter())
        .map(|e| e["sparsity"].as_f64().unwrap())
        .collect();
    for (got, want) in per_epoch.iter().zip([0.2, 0.55, 0.6]) {
        assert!((got - want).abs() < 1e-3, "{per_epoch:?}");
    }
}
