//! The source tree's house rules, checked on the files themselves: no import cycle between the
//! files of `src/`, and no source file too long to read.
//!
//! The import graph is read from the text (no compiler): an edge runs from a file to every
//! module file that one of its paths names (`crate::…`, `super::…`, `self::…`, `mnist_wgpu::…`,
//! or a child module's name used bare, as `mod.rs` files do in re-exports and lists). A
//! `mod child;` declaration is no edge: it says where a file sits in the tree, not what the
//! parent uses, so a `mod.rs` may declare children that import it. Anything else a `mod.rs`
//! names of a child (a re-export, a list of the children's values) is an edge like any other,
//! so such a `mod.rs` must not be imported back: an op directory keeps what its files share
//! in `mod.rs` and has its children re-exported by no one, or keeps its lists in a child.
//! Every file counts on its own, those inside an op's directory (`src/gpu/conv2d/`) too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path: the crate (`lib` or `bin`) and the module names below its root.
type Module = (String, Vec<String>);

/// The module of a file under `src/` (paths with `/`), or `None` for a file outside any crate.
fn module_of(path: &str) -> Module {
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    // The binary crate is main.rs and the `cli` module it declares; the rest is the library.
    let krate = if parts[0] == "main" || parts[0] == "cli" {
        "bin"
    } else {
        "lib"
    };
    if parts == ["main"] || parts == ["lib"] {
        parts.clear();
    }
    (krate.to_string(), parts)
}

/// Removes `//` comments (line and doc comments) so that paths named in prose are no edges,
/// and `mod name;` declarations (see the header).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .map(|line| match is_mod_declaration(line) {
            true => "",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` is a `mod name;` declaration (with any visibility), not an inline module.
fn is_mod_declaration(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after_visibility = match words.first() {
        Some(w) if w.starts_with("pub") => &words[1..],
        _ => &words[..],
    };
    matches!(after_visibility, ["mod", name] if name.ends_with(';'))
}

/// The paths a text names: each `head::a::b`, with brace groups `head::{a::x, b}` expanded one
/// level, as (offset in the text, segments).
fn named_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':');
        if !starts_word || !ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            segments.push(text[s..j].to_string());
            if text[j..].starts_with("::{") {
                let close = text[j..].find('}').map_or(text.len(), |c| j + c);
                for item in text[j + 3..close].split(',') {
                    let item: Vec<String> = item
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .take_while(|s| !s.is_empty() && s.bytes().all(ident))
                        .collect();
                    if !item.is_empty() {
                        let mut full = segments.clone();
                        full.extend(item);
                        found.push((start, full));
                    }
                }
                j = close;
                segments.clear();
                break;
            }
            if text[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 {
            found.push((start, segments));
        }
        i = j.max(i + 1);
    }
    found
}

/// Where a path names a module file: the file and the item named in it (if any), or `None`.
fn resolve<'a>(
    modules: &'a BTreeMap<Module, String>,
    path: &str,
    at_test_module: bool,
    segments: &[String],
) -> Option<(&'a String, Option<String>)> {
    let (krate, mut target) = module_of(path);
    if at_test_module {
        target.push("tests".to_string());
    }
    let mut target_crate = krate;
    let mut rest = segments;
    let bare = !matches!(
        segments[0].as_str(),
        "crate" | "mnist_wgpu" | "self" | "super"
    );
    match rest[0].as_str() {
        "crate" => {
            target.clear();
            rest = &rest[1..];
        }
        "mnist_wgpu" => {
            target_crate = "lib".to_string();
            target.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                target.pop();
                rest = &rest[1..];
            }
        }
        // A bare name: a child module of this one, or nothing of ours.
        _ => {}
    }
    // The longest prefix that is a module file, and the item after it.
    let mut best = (!bare)
        .then(|| modules.get(&(target_crate.clone(), target.clone())))
        .flatten()
        .map(|file| (file, rest.first().cloned()));
    let mut walk = target;
    for (i, segment) in rest.iter().enumerate() {
        walk.push(segment.clone());
        if let Some(file) = modules.get(&(target_crate.clone(), walk.clone())) {
            best = Some((file, rest.get(i + 1).cloned()));
        }
    }
    best
}

/// The import edges between the files of a tree (`path -> text`, paths relative to `src/`).
/// A name that a `mod.rs` re-exports from a child (`pub use child::Name`) leads to the child.
fn import_edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Module, String> = files
        .keys()
        .map(|path| (module_of(path), path.clone()))
        .collect();
    let texts: BTreeMap<&String, String> = files
        .iter()
        .map(|(path, text)| (path, strip_comments(text)))
        .collect();
    // Inline test modules sit at the end of a file: below one, `super` is the file itself.
    let tests_at = |text: &str| text.find("mod tests {").unwrap_or(text.len());
    let mut reexports: BTreeMap<&String, BTreeMap<String, &String>> = BTreeMap::new();
    for (path, text) in &texts {
        for (at, _) in text.match_indices("pub use ") {
            let end = text[at..].find(';').map_or(text.len(), |e| at + e);
            for (_, segments) in named_paths(&text[at + 8..end]) {
                if let Some((file, _)) = resolve(&modules, path, false, &segments) {
                    let name = segments.last().unwrap().clone();
                    reexports.entry(*path).or_default().insert(name, file);
                }
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &texts {
        let tests_at = tests_at(text);
        for (at, segments) in named_paths(text) {
            let Some((mut file, item)) = resolve(&modules, path, at > tests_at, &segments) else {
                continue;
            };
            if let Some(child) = item.and_then(|i| reexports.get(file)?.get(&i).copied()) {
                file = child;
            }
            if file != *path {
                edges
                    .entry((*path).clone())
                    .or_default()
                    .insert(file.clone());
            }
        }
    }
    edges
}

/// The groups of files that import each other (strongly connected components of more than one
/// file), each sorted.
fn import_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges
        .keys()
        .chain(edges.values().flat_map(|v| v.iter()))
        .collect();
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut cycles: BTreeSet<Vec<String>> = BTreeSet::new();
    for n in &nodes {
        let group: Vec<String> = nodes
            .iter()
            .filter(|m| reach[*n].contains(**m) && reach[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if group.len() > 1 {
            cycles.insert(group);
        }
    }
    cycles.into_iter().collect()
}

/// Every `.rs` file under `dir`, keyed by its path relative to `root`.
fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "wgsl") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn source_files(dir: &str) -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    files
}

#[test]
fn no_import_cycles_in_src() {
    let files: BTreeMap<String, String> = source_files("src")
        .into_iter()
        .filter(|(p, _)| p.ends_with(".rs"))
        .collect();
    let edges = import_edges(&files);
    let cycles = import_cycles(&edges);
    // Each cycle with the imports inside it, to show where to cut.
    let listed: Vec<String> = cycles
        .iter()
        .map(|group| {
            let inside: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    edges[from]
                        .iter()
                        .filter(|to| group.contains(to))
                        .map(move |to| format!("  {from} -> {to}"))
                })
                .collect();
            format!("{}\n{}", group.join(" <-> "), inside.join("\n"))
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        listed.join("\n")
    );
}

/// The checker finds what it is for: a cycle through `super`, a bare child name and a brace
/// group, and no cycle where a test module imports its own file.
#[test]
fn the_cycle_checker_finds_cycles() {
    let tree = |files: &[(&str, &str)]| -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    };
    let cycle = tree(&[
        ("lib.rs", "pub mod gpu;"),
        ("gpu/mod.rs", "pub mod a; pub mod b;"),
        ("gpu/a.rs", "use super::b::Thing;"),
        ("gpu/b.rs", "use crate::gpu::{a::Other, b};"),
    ]);
    assert_eq!(
        import_cycles(&import_edges(&cycle)),
        vec![vec!["gpu/a.rs".to_string(), "gpu/b.rs".to_string()]]
    );
    let through_parent = tree(&[
        ("gpu/mod.rs", "pub const ALL: &[u32] = &[a::X];"),
        ("gpu/a.rs", "fn f() { super::ALL.len(); }"),
    ]);
    assert_eq!(import_cycles(&import_edges(&through_parent)).len(), 1);
    let test_module = tree(&[
        (
            "gpu/a.rs",
            "use super::b::Y;\n#[cfg(test)]\nmod tests {\n use super::*;\n}",
        ),
        ("gpu/b.rs", "// use super::a::X; (a comment)\npub struct Y;"),
        ("main.rs", "mod cli;"),
        ("cli/mod.rs", "use mnist_wgpu::gpu::a;"),
    ]);
    assert!(import_cycles(&import_edges(&test_module)).is_empty());
    assert!(import_edges(&test_module)["cli/mod.rs"].contains("gpu/a.rs"));
    let reexport = tree(&[
        ("gpu/mod.rs", "mod a; mod b; pub use a::Thing;"),
        ("gpu/a.rs", "pub struct Thing;"),
        ("gpu/b.rs", "use super::Thing;"),
    ]);
    assert_eq!(
        import_edges(&reexport)["gpu/b.rs"],
        BTreeSet::from(["gpu/a.rs".to_string()])
    );
    // Inside an op's directory every file counts: a family file that imports what mod.rs
    // declares is a cycle where mod.rs names the family (here a list of its values), and none
    // where mod.rs only declares it.
    let op_dir = tree(&[
        (
            "gpu/conv2d/mod.rs",
            "mod tiled;\npub struct Conv2d;\npub const ALL: &[u32] = &[tiled::T];",
        ),
        (
            "gpu/conv2d/tiled.rs",
            "use super::Conv2d; pub const T: u32 = 1;",
        ),
        ("gpu/kernel.rs", "use super::conv2d::Conv2d;"),
    ]);
    assert_eq!(
        import_cycles(&import_edges(&op_dir)),
        vec![vec![
            "gpu/conv2d/mod.rs".to_string(),
            "gpu/conv2d/tiled.rs".to_string()
        ]]
    );
    let declared_only = tree(&[
        (
            "gpu/conv2d/mod.rs",
            "pub mod tiled;\nmod checks;\npub struct Conv2d;",
        ),
        ("gpu/conv2d/tiled.rs", "use super::Conv2d;"),
        ("gpu/conv2d/checks.rs", "use super::tiled::T;"),
    ]);
    assert!(import_cycles(&import_edges(&declared_only)).is_empty());
    assert!(is_mod_declaration("pub(super) mod register_blocked;"));
    assert!(!is_mod_declaration("mod tests {"));
}

/// One variant, one file: no source or shader file grows past what a reader takes in at once.
#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for dir in ["src", "shaders"] {
        for (path, text) in source_files(dir) {
            let lines = text.lines().count();
            if lines > 800 {
                long.push(format!("{dir}/{path}: {lines} lines"));
            }
        }
    }
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}

/// A variant is registered by one line: every `Registration` a host file of an op declares is
/// listed in the op's `VARIANTS` (`kernels.rs`), and every line there names one, so that a
/// variant neither goes unregistered nor is listed from elsewhere (docs/design.md, "Adding a
/// kernel variant").
#[test]
fn every_variant_registration_is_one_line_of_its_ops_registry() {
    let files = source_files("src/gpu");
    for op in ["conv2d", "dense"] {
        let registry = &files[&format!("{op}/kernels.rs")];
        let start = registry
            .find("pub const VARIANTS")
            .unwrap_or_else(|| panic!("{op}/kernels.rs has no VARIANTS"));
        let end = start + registry[start..].find("];").expect("VARIANTS ends");
        let mut listed: Vec<String> = registry[start..end]
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(',').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let mut declared = Vec::new();
        for (path, text) in &files {
            let Some(file) = path.strip_prefix(&format!("{op}/")) else {
                continue;
            };
            let stem = file.trim_end_matches(".rs");
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("pub(super) const ") else {
                    continue;
                };
                if let Some((name, ty)) = rest.split_once(':') {
                    if ty.trim_start().starts_with("Registration<") {
                        declared.push(format!("{stem}::{name}"));
                    }
                }
            }
        }
        listed.sort();
        declared.sort();
        assert!(listed.len() >= 2, "{op}: {listed:?}");
        assert_eq!(
            listed, declared,
            "{op}: VARIANTS against the host files' registrations"
        );
    }
}
