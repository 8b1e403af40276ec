//! Hashes every file under `shaders/` into `MNIST_WGPU_SHADERS_HASH`, a part of the autotune
//! cache's key: a cache never outlives the kernels it timed. (Computed here rather than from the
//! op list so that the autotuner, which every op uses, imports no op.)

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("shaders/ is readable") {
        let path = entry.expect("shaders/ is readable").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    println!("cargo::rerun-if-changed=shaders");
    let mut paths = Vec::new();
    files(Path::new("shaders"), &mut paths);
    paths.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in paths {
        path.to_string_lossy().replace('\\', "/").hash(&mut hasher);
        std::fs::read(&path)
            .expect("a shader is readable")
            .hash(&mut hasher);
    }
    println!(
        "cargo::rustc-env=MNIST_WGPU_SHADERS_HASH={:016x}",
        hasher.finish()
    );
}
