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

/// The autotuner times a part of a dispatch by launching its first rows (or columns) of
/// workgroups (`Dispatch::part`), and compiles a kernel with a single workgroup: that does a
/// part of the whole dispatch's work only while kernels number their workgroups x + y * nwg.x
/// and never read the grid's height or depth.
#[test]
fn no_kernel_reads_the_number_of_workgroups_along_y_or_z() {
    for (name, body) in SHADERS {
        let source = shader_source(body);
        // The names the builtin goes by: in the entry points and the helpers it is passed to.
        let mut names: Vec<&str> = vec!["nwg", "num_workgroups"];
        for (at, _) in source.match_indices("@builtin(num_workgroups)") {
            let rest = source[at + "@builtin(num_workgroups)".len()..].trim_start();
            let end = rest.find(':').expect("a parameter name, then its type");
            names.push(rest[..end].trim());
        }
        for n in names {
            for access in [".y", ".z", "[1]", "[2]"] {
                let pattern = format!("{n}{access}");
                let found = source.match_indices(&pattern).any(|(at, _)| {
                    let before = source[..at].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                assert!(!found, "{name} reads {pattern}");
            }
        }
    }
}
