//! Every WGSL file, with the shared preamble, parses and validates with naga: no adapter needed.

use mnist_wgpu::gpu::kernel::shader_source;
use mnist_wgpu::gpu::SHADERS;

#[test]
fn every_shader_validates_with_naga() {
    let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap();
    let mut files: Vec<String> = on_disk
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl") && n != "common.wgsl")
        .collect();
    files.sort();
    let listed: Vec<&str> = SHADERS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        files, listed,
        "every shader file must be listed in gpu::SHADERS"
    );
    for (name, body) in SHADERS {
        let module = naga::front::wgsl::parse_str(&shader_source(body))
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(body)));
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        if let Err(e) = validator.validate(&module) {
            panic!("{name}: {e:?}");
        }
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
    }
}
