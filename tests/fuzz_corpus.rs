//! Every input in the fuzzers' corpora (`fuzz/corpus/<target>/`, the seeds and whatever a fuzz
//! run kept, crashes found and fixed included) goes through the same function its fuzz target
//! calls, on stable Rust: a parser that panics on any of them fails here. `scripts/fuzz.sh`
//! runs the fuzzers themselves (nightly).

use std::path::Path;

use mnist_wgpu::checkpoint::{parse_checkpoint, parse_training_checkpoint};
use mnist_wgpu::model::{spec_from_file, Arch, Plan, MNIST_INPUT};

/// The inputs of one target's corpus, with their file names; at least one.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

#[test]
fn idx_corpus() {
    let mut parsed = 0;
    for (name, data) in corpus("idx") {
        let Some((&kind, bytes)) = data.split_first() else {
            continue;
        };
        let result = mnist_wgpu::data::parse_idx(Path::new(&name), bytes, kind & 1 == 1);
        parsed += usize::from(result.is_ok());
    }
    assert!(parsed >= 4, "the seeds' valid files parse");
}

#[test]
fn checkpoint_corpus() {
    let mut training = 0;
    for (name, data) in corpus("checkpoint") {
        let path = Path::new(&name);
        let _ = parse_checkpoint(path, &data);
        if let Ok(saved) = parse_training_checkpoint(path, &data) {
            // A fuzz run keeps inputs whose run state is no longer valid JSON: an error, no panic.
            let state = saved.checkpoint.metadata.get("state");
            let parsed = state.map(|s| serde_json::from_str::<mnist_wgpu::train::RunState>(s));
            training += usize::from(parsed.is_some_and(|p| p.is_ok()));
        }
    }
    assert!(
        training >= 1,
        "the seed training checkpoint and its run state parse"
    );
}

#[test]
fn arch_corpus() {
    for (name, data) in corpus("arch") {
        let text = String::from_utf8_lossy(&data);
        for spec in [text.to_string(), spec_from_file(&text)] {
            if let Ok(arch) = Arch::parse(&spec) {
                let again = Arch::parse(&arch.to_string());
                assert_eq!(again.as_ref(), Ok(&arch), "{name}: {spec}");
                let _ = Plan::new(&arch, MNIST_INPUT);
            }
        }
    }
}

#[test]
fn image_corpus() {
    let decoded = corpus("image")
        .iter()
        .filter(|(_, data)| mnist_wgpu::predict::mnist_input(data).is_ok())
        .count();
    assert!(decoded >= 3, "the seed digits decode");
}

#[test]
fn autotune_cache_corpus() {
    for (name, data) in corpus("autotune_cache") {
        if name.ends_with(".json") {
            assert!(
                mnist_wgpu::gpu::autotune::parse_cache(&data).unwrap() > 0,
                "{name}"
            );
        } else {
            let _ = mnist_wgpu::gpu::autotune::parse_cache(&data);
        }
    }
}

#[test]
fn search_space_corpus() {
    const KEYS: &[&str] = &[
        "arch",
        "batch_size",
        "dropout",
        "lr",
        "nesterov",
        "optimizer",
        "seed",
    ];
    let mut parsed = 0;
    for (_, data) in corpus("search_space") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(space) = mnist_wgpu::search::Space::parse(text, KEYS) {
            parsed += 1;
            if space.grid_size() <= 4096 {
                let _ = space.grid();
            }
            let _ = space.sample(4, 1);
        }
    }
    assert!(parsed >= 3, "the seeds parse");
}
