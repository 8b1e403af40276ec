//! The architecture spec parser, as `--arch` and as an `--arch-file`, and its plan.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_wgpu::model::{spec_from_file, Arch, Plan, MNIST_INPUT};

fuzz_target!(|text: &str| {
    for spec in [text.to_string(), spec_from_file(text)] {
        if let Ok(arch) = Arch::parse(&spec) {
            // What parses prints back as the same architecture.
            assert_eq!(Arch::parse(&arch.to_string()).as_ref(), Ok(&arch));
            let _ = Plan::new(&arch, MNIST_INPUT);
        }
    }
});
