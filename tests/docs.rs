//! The README and `docs/*.md` against the project as it is: every repository path they name
//! exists, every `mnist-wgpu` subcommand and `--flag` they name is one the binary's `--help`
//! lists, they speak of the project only, and the README opens with its two commands and stays
//! short. The checker is a function over text (`problems`, `readme_problems`), so the unit tests
//! at the end can feed it bad samples and see each caught. Needs no GPU: it runs `--help` only.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_mnist-wgpu");

/// The README's hard limit, in lines.
const README_MAX_LINES: usize = 200;

/// The README opens with a code block whose first two commands are these (CI tooling reads
/// them).
const README_COMMANDS: [&str; 2] = ["cargo run --release -- train", "cargo test --release"];

/// A token in code that starts with one of these is a repository path and must exist.
const REPO_DIRS: &[&str] = &[
    "src/", "shaders/", "tests/", "docs/", "scripts/", "benches/", "assets/", "data/", ".ci/",
];

/// Flags of other tools: allowed on a line that names the tool, and nowhere else.
const OTHER_TOOLS: &[(&str, &str)] = &[
    ("cargo", "--release"),     // cargo build, run, test, install, clippy
    ("cargo", "--path"),        // cargo install --path .
    ("cargo", "--test"),        // cargo test --test docs
    ("cargo", "--no-run"),      // cargo test --no-run
    ("cargo", "--all-targets"), // cargo clippy --all-targets
    ("cargo", "--check"),       // cargo fmt --check
    ("cargo", "--ignored"),     // cargo test -- --ignored
];

/// What the binary's help lists.
struct Cli {
    subcommands: BTreeSet<String>,
    flags: BTreeSet<String>,
}

impl Cli {
    fn new(subcommands: &[&str], flags: &[&str]) -> Cli {
        Cli {
            subcommands: subcommands.iter().map(|s| s.to_string()).collect(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("running mnist-wgpu --help");
    assert!(out.status.success(), "mnist-wgpu {args:?} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands under `Commands:` in the top-level help.
fn subcommands_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The long flags that start the option lines of a help text (`  -h, --help`, `--arch <ARCH>`).
fn flags_of(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split_whitespace()
                .take_while(|t| t.starts_with('-'))
                .filter(|t| t.starts_with("--"))
                .map(|t| {
                    t.trim_end_matches(',')
                        .split('=')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The binary's subcommands and every long flag of every subcommand (and of the binary).
fn real_cli() -> &'static Cli {
    static CLI: OnceLock<Cli> = OnceLock::new();
    CLI.get_or_init(|| {
        let top = help(&[]);
        let subcommands: BTreeSet<String> = subcommands_of(&top).into_iter().collect();
        let mut flags: BTreeSet<String> = flags_of(&top).into_iter().collect();
        for sub in subcommands.iter().filter(|s| *s != "help") {
            flags.extend(flags_of(&help(&[sub])));
        }
        Cli { subcommands, flags }
    })
}

/// One line of markdown, cut into code (inline spans, or the whole line inside a fenced
/// block) and prose.
struct Line<'a> {
    number: usize,
    text: &'a str,
    code: Vec<&'a str>,
    prose: Vec<&'a str>,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, text) in text.lines().enumerate() {
        let number = i + 1;
        if text.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let (mut code, mut prose) = (Vec::new(), Vec::new());
        if fenced {
            code.push(text);
        } else {
            for (k, piece) in text.split('`').enumerate() {
                if k % 2 == 1 {
                    code.push(piece);
                } else {
                    prose.push(piece);
                }
            }
        }
        out.push(Line {
            number,
            text,
            code,
            prose,
        });
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    lines(text)
        .iter()
        .filter(|l| l.text.starts_with('#'))
        .map(|l| slug(&l.text.trim_start_matches('#').replace('`', "")))
        .collect()
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A token of code that names a file or directory of the repository, or `None`.
fn repo_path(token: &str) -> Option<&str> {
    let token = token.trim_start_matches("./");
    let token = token.split("::").next().unwrap();
    let token = token.split(':').next().unwrap();
    let token = token.trim_end_matches(['.', ',']);
    if token.is_empty()
        || token.contains("...")
        || token.contains(['<', '>', '*', '?', '$', '~', '{', '}'])
    {
        return None;
    }
    if REPO_DIRS.iter().any(|d| token.starts_with(d)) {
        return Some(token);
    }
    // A top-level file: `Cargo.toml`, `Cargo.lock`, `README.md` and the like.
    let (stem, ext) = token.rsplit_once('.')?;
    let top_level = !token.contains('/')
        && !stem.is_empty()
        && (matches!(ext, "toml" | "lock")
            || (matches!(ext, "md" | "txt") && stem.starts_with(|c: char| c.is_ascii_uppercase())));
    top_level.then_some(token)
}

/// Where `word` occurs in `line` on its own, not inside a longer name.
fn word_positions<'a>(line: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let name = |c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '/';
    line.match_indices(word).filter_map(move |(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        (!before.is_some_and(name) && !after.is_some_and(|c| name(c) && c != '/')).then_some(at)
    })
}

/// The long flags (`--name`) of a line.
fn flags_in(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices("--") {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '-') {
            continue;
        }
        let rest = &line[at + 2..];
        if !rest.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        out.push(line[at..at + 2 + len].trim_end_matches('-'));
    }
    out
}

/// The subcommands that code runs: `mnist-wgpu X` and `cargo run --release -- X`.
fn subcommands_run(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for prefix in ["mnist-wgpu", "cargo run --release --"] {
        for at in word_positions(code, prefix) {
            let rest = &code[at + prefix.len()..];
            if !rest.starts_with(' ') {
                continue;
            }
            let Some(word) = rest.split_whitespace().next() else {
                continue;
            };
            // Placeholders (`SUBCOMMAND`, `...`) and flags (`--help`) are not subcommands.
            if word.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !word.starts_with('-') {
                out.push(word);
            }
        }
    }
    out
}

/// Words that belong to how the project was worked on, not to the project.
fn workplace_words(line: &str) -> Vec<String> {
    let lower = line.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next_is_number = words
            .get(i + 1)
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
        if w.starts_with("session")
            || *w == "lent"
            || (matches!(*w, "issue" | "issues") && next_is_number)
        {
            out.push(w.to_string());
        }
    }
    // `#12`: a number after a hash that starts a word.
    for (at, _) in lower.match_indices('#') {
        let before = lower[..at].chars().next_back();
        let digits: String = lower[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let after = lower[at + 1 + digits.len()..].chars().next();
        if !digits.is_empty()
            && !before.is_some_and(|c| c.is_alphanumeric() || c == '&')
            && !after.is_some_and(char::is_alphanumeric)
        {
            out.push(format!("#{digits}"));
        }
    }
    out
}

/// Everything wrong with one markdown file; `name` is its path from the repository root.
fn problems(name: &str, text: &str, cli: &Cli) -> Vec<String> {
    let root = Path::new(ROOT);
    let dir = Path::new(name).parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for line in lines(text) {
        let at = |what: String| format!("{name}:{}: {what}", line.number);
        for code in &line.code {
            let tokens = code.split(|c: char| c.is_whitespace() || "()[],;\"'|=".contains(c));
            for path in tokens.filter_map(repo_path) {
                if !root.join(path.trim_end_matches('/')).exists() {
                    out.push(at(format!("`{path}` does not exist")));
                }
            }
            for sub in subcommands_run(code) {
                if !cli.subcommands.contains(sub) {
                    out.push(at(format!("`mnist-wgpu {sub}` is no subcommand")));
                }
            }
        }
        for prose in &line.prose {
            for (start, _) in prose.match_indices("](") {
                let rest = &prose[start + 2..];
                let Some(end) = rest.find(')') else {
                    continue;
                };
                let target = &rest[..end];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let linked = if file.is_empty() {
                    text.to_string()
                } else {
                    let full = root.join(normalise(&dir.join(file)));
                    if !full.exists() {
                        out.push(at(format!("link to `{target}`: no such file")));
                        continue;
                    }
                    if !file.ends_with(".md") {
                        continue;
                    }
                    std::fs::read_to_string(&full).unwrap_or_default()
                };
                if !anchor.is_empty() && !anchors(&linked).contains(anchor) {
                    out.push(at(format!("link to `{target}`: no such heading")));
                }
            }
        }
        for flag in flags_in(line.text) {
            let other_tool = OTHER_TOOLS
                .iter()
                .any(|&(tool, f)| f == flag && word_positions(line.text, tool).next().is_some());
            if !cli.flags.contains(flag) && !other_tool {
                out.push(at(format!("`{flag}` is no flag of mnist-wgpu")));
            }
        }
        for word in workplace_words(line.text) {
            out.push(at(format!(
                "'{word}': speak of the project (a date, a machine, a commit)"
            )));
        }
    }
    out
}

/// What the README's shape must be: short, and opening with the two commands.
fn readme_problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let count = text.lines().count();
    if count > README_MAX_LINES {
        out.push(format!(
            "README.md: {count} lines, more than {README_MAX_LINES}"
        ));
    }
    let all: Vec<&str> = text.lines().collect();
    if all.first() != Some(&"# mnist-wgpu") || all.get(1) != Some(&"") {
        out.push("README.md: must start with `# mnist-wgpu` and a blank line".into());
    }
    if !all.get(2).is_some_and(|l| l.starts_with("```")) {
        out.push("README.md: line 3 must open a code block".into());
        return out;
    }
    let commands: Vec<&str> = all[3..]
        .iter()
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    if commands != README_COMMANDS {
        out.push(format!(
            "README.md: the first code block must run {README_COMMANDS:?} first, runs {commands:?}"
        ));
    }
    out
}

/// README.md and every docs/*.md, as (path from the root, text).
fn documents() -> Vec<(String, String)> {
    let root = Path::new(ROOT);
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("a docs/ directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

#[test]
fn the_readme_and_docs_name_only_what_exists() {
    let cli = real_cli();
    let found: Vec<String> = documents()
        .iter()
        .flat_map(|(name, text)| problems(name, text, cli))
        .collect();
    assert!(
        found.is_empty(),
        "documentation problems:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_readme_is_short_and_opens_with_its_two_commands() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let found = readme_problems(&text);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_help_gives_every_subcommand_and_flag() {
    let cli = real_cli();
    for sub in [
        "train", "eval", "predict", "info", "check", "summary", "profile", "bench",
    ] {
        assert!(
            cli.subcommands.contains(sub),
            "{sub} missing from {:?}",
            cli.subcommands
        );
    }
    for flag in [
        "--batch-size",
        "--kernels-from",
        "--timing",
        "--only",
        "--json",
        "--help",
    ] {
        assert!(
            cli.flags.contains(flag),
            "{flag} missing from {:?}",
            cli.flags
        );
    }
    assert!(!cli.flags.contains("--release"));
}

// The checker on samples, good and bad. A small vocabulary stands in for the binary's.

fn sample_cli() -> Cli {
    Cli::new(
        &["train", "eval", "help"],
        &["--epochs", "--help", "--json"],
    )
}

fn check(text: &str) -> Vec<String> {
    problems("docs/sample.md", text, &sample_cli())
}

#[test]
fn a_good_sample_passes() {
    let text = "# Sample\n\n## Two words\n\n\
        Run `mnist-wgpu train --epochs 2` (see `src/gpu/check.rs`, `shaders/`, `Cargo.toml`,\n\
        [the README](../README.md), [a heading](#two-words)); `runs/<timestamp>/model.safetensors`\n\
        and `~/.cache/mesa_shader_cache` are no repository paths, and `mnist-wgpu SUBCOMMAND`\n\
        is a placeholder. `cargo test --release --test docs` and `cargo install --path .`\n\
        use cargo's flags. Measured 2026-12-06 on an NVIDIA H200; an equivalent, excellent,\n\
        silent text.\n\n\
        ```sh\nmnist-wgpu eval --json\ncargo run --release -- train\n```\n";
    let found = check(text);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_made_up_flag_is_caught() {
    let found = check("Run `mnist-wgpu train --no-such-flag`.\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("--no-such-flag") && found[0].contains("sample.md:1"));
}

#[test]
fn a_flag_of_another_tool_passes_only_beside_that_tool() {
    assert!(check("`cargo build --release`\n").is_empty());
    let found = check("`mnist-wgpu train --release`\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("--release"));
}

#[test]
fn a_missing_path_is_caught_in_code_blocks_and_links() {
    let found = check(
        "See `src/no_such.rs` and [it](../src/no_such.rs).\n\n```sh\nscripts/no-such.sh\n```\n",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found
        .iter()
        .all(|f| f.contains("no_such") || f.contains("no-such")));
    assert_eq!(check("`NO_SUCH.md` and `Cargo.tom`\n").len(), 1);
}

#[test]
fn a_link_to_a_missing_heading_is_caught() {
    let found = check("# Title\n\n[up](#no-such-heading), [readme](../README.md#nor-this-one)\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(check("# Title\n\n[up](#title)\n").is_empty());
}

#[test]
fn an_unknown_subcommand_is_caught() {
    let found = check("```sh\nmnist-wgpu fly --epochs 3\ncargo run --release -- swim\n```\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("mnist-wgpu fly") && found[1].contains("mnist-wgpu swim"));
}

#[test]
fn words_of_the_workplace_are_caught() {
    for bad in [
        "Measured in this session.",
        "Two Sessions ago.",
        "On a lent machine.",
        "The target of issue 4.",
        "Fixed in Issues 12.",
        "See #12 for more.",
    ] {
        assert_eq!(check(bad).len(), 1, "{bad}: {:?}", check(bad));
    }
    for good in [
        "## Heading",
        "equivalent, silent, excellent",
        "colour #1f77b4",
        "issue a warning",
    ] {
        assert!(check(good).is_empty(), "{good}: {:?}", check(good));
    }
}

#[test]
fn a_readme_of_the_wrong_shape_is_caught() {
    let good = "# mnist-wgpu\n\n```sh\ncargo run --release -- train     # train\ncargo test --release             # test\n```\n";
    assert!(
        readme_problems(good).is_empty(),
        "{:?}",
        readme_problems(good)
    );
    let swapped = good.replace("-- train ", "-- eval  ");
    assert_eq!(readme_problems(&swapped).len(), 1);
    let late = good.replace("# mnist-wgpu\n\n", "# mnist-wgpu\n\nIntro.\n\n");
    assert!(!readme_problems(&late).is_empty());
    let long = format!("{good}{}", "more\n".repeat(README_MAX_LINES));
    let found = readme_problems(&long);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("lines"));
}
