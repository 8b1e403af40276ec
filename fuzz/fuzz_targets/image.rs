//! Image decoding and the preprocessing `predict` applies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mnist_wgpu::predict::mnist_input(data);
});
