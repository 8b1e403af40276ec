//! The checkpoint reader: safetensors header, metadata, tensors, and a training checkpoint's
//! optimiser state and run state.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_wgpu::checkpoint::{parse_checkpoint, parse_training_checkpoint};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    let _ = parse_checkpoint(path, data);
    if let Ok(saved) = parse_training_checkpoint(path, data) {
        if let Some(state) = saved.checkpoint.metadata.get("state") {
            let _ = serde_json::from_str::<mnist_wgpu::train::RunState>(state);
        }
    }
});
