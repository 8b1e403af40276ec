//! Every WGSL file belongs to an op, and every shader module (the preamble, then a list of an
//! op's files) parses and validates with naga: no adapter needed.

use mnist_wgpu::gpu::ops;

#[test]
fn every_shader_file_belongs_to_an_op() {
    let mut files = wgsl_files(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/shaders"
    )));
    files.retain(|n| n != "common.wgsl");
    files.sort();
    let mut listed: Vec<&str> = ops::files().iter().map(|f| f.path).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every shader file (but the preamble) must be in a module of an op in gpu::ops::OPS"
    );
}

/// Each module as a whole: a file alone need not validate (it may call functions that another
/// file of its module provides). Modules that use subgroup operations validate with them, and
/// only those may.
#[test]
fn every_shader_module_validates_with_naga() {
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags};
    for module in ops::modules() {
        let (name, source) = (module.label, module.source());
        let parsed = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let capabilities = if module.subgroups {
            Capabilities::SUBGROUP
        } else {
            Capabilities::empty()
        };
        let mut validator = naga::valid::Validator::new(ValidationFlags::all(), capabilities);
        validator
            .subgroup_stages(ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all());
        if let Err(e) = validator.validate(&parsed) {
            panic!("{name}: {e:?}");
        }
        assert!(!parsed.entry_points.is_empty(), "{name} has no entry point");
    }
}

/// The autotuner times a part of a dispatch by launching its first rows (or columns) of
/// workgroups (`Dispatch::part`), and compiles a kernel with a single workgroup: that does a
/// part of the whole dispatch's work only while kernels number their workgroups x + y * nwg.x
/// and never read the grid's height or depth.
#[test]
fn no_kernel_reads_the_number_of_workgroups_along_y_or_z() {
    for module in ops::modules() {
        let (name, source) = (module.label, module.source());
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

/// The `.wgsl` files under `dir`, as paths relative to it.
fn wgsl_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            found.extend(wgsl_files(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else if name.ends_with(".wgsl") {
            found.push(name);
        }
    }
    found
}
