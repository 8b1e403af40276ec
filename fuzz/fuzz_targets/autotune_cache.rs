//! The autotune cache file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mnist_wgpu::gpu::autotune::parse_cache(data);
});
