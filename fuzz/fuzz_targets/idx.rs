//! The IDX reader, raw and gzipped (the first byte picks images or labels).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let _ = mnist_wgpu::data::parse_idx(std::path::Path::new("fuzz"), bytes, kind & 1 == 1);
});
