//! The search space file of `search --space`: parsed, its grid sized and built when small, and
//! trials drawn, every drawn value inside its distribution.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_wgpu::search::{Distribution, Space};

/// Keys as the command line allows them (any name works: the list only has to be fixed).
const KEYS: &[&str] = &["arch", "batch_size", "dropout", "lr", "nesterov", "optimizer", "seed"];

fuzz_target!(|text: &str| {
    let Ok(space) = Space::parse(text, KEYS) else {
        return;
    };
    if space.grid_size() <= 4096 {
        let _ = space.grid();
    }
    for trial in space.sample(4, 1) {
        for (key, value) in &trial {
            let inside = match &space.params[key] {
                Distribution::Uniform(lo, hi) | Distribution::LogUniform(lo, hi) => {
                    value.as_f64().is_some_and(|x| x >= *lo && x <= *hi)
                }
                _ => true,
            };
            assert!(inside, "{key} = {value} outside {:?}", space.params[key]);
        }
    }
});
