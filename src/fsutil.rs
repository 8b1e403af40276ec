//! Atomic file writes: a reader sees the old file or the new one, never half of either; and
//! checks, before any work, that a path can be written at all.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and syncs
/// the directory. Creates missing parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable (not possible on every platform; best effort).
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

/// Why [`write_atomic`] could not write a file at `path`: the path that is in the way and
/// what is wrong with it. `None` when the path is a file or missing and the nearest existing
/// directory above it is a directory this process can write in (missing ones are created).
/// Nothing is written but one empty probe file, removed at once.
pub fn output_file_problem(path: &Path) -> Option<(PathBuf, String)> {
    if path.file_name().is_none() {
        return Some((path.to_path_buf(), "is not a file path".into()));
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Some((path.to_path_buf(), "is a directory, not a file".into())),
        // An existing file is replaced by a rename in its directory: what counts is that.
        Ok(_) | Err(_) => parent_problem(path),
    }
}

/// Why `path` could not be (or become) a directory to write files into; see
/// [`output_file_problem`].
pub fn output_dir_problem(path: &Path) -> Option<(PathBuf, String)> {
    if path.as_os_str().is_empty() {
        return write_problem(Path::new(".")); // the current directory
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => write_problem(path),
        Ok(_) => Some((path.to_path_buf(), "is not a directory".into())),
        Err(_) => parent_problem(path),
    }
}

/// Why no file can be created in the directory `dir` (read-only, not ours, a read-only file
/// system), found by creating an empty probe file there and removing it: permissions alone
/// do not tell (root, ACLs, read-only mounts).
fn write_problem(dir: &Path) -> Option<(PathBuf, String)> {
    let probe = dir.join(format!(".mnist-wgpu-probe-{}", std::process::id()));
    match File::create(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            None
        }
        Err(e) => Some((dir.to_path_buf(), format!("cannot be written in ({e})"))),
    }
}

/// The nearest existing path above `path`, unless it is a directory we can write in.
fn parent_problem(path: &Path) -> Option<(PathBuf, String)> {
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            return write_problem(Path::new(".")); // a relative path: the current directory
        }
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => return write_problem(dir),
            Ok(_) => return Some((dir.to_path_buf(), "is not a directory".into())),
            // Missing (created on writing), or under a file: a path further up says which.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Some((dir.to_path_buf(), format!("cannot be read ({e})"))),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn output_paths_in_the_way_are_named_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        // Fine: a new file in a new directory, an existing file, an existing directory.
        let new = dir.path().join("a/b/out.json");
        assert_eq!(output_file_problem(&new), None);
        assert_eq!(output_file_problem(&file), None);
        assert_eq!(output_file_problem(Path::new("out.json")), None);
        assert_eq!(output_dir_problem(dir.path()), None);
        assert_eq!(output_dir_problem(&dir.path().join("new/plots")), None);
        assert_eq!(output_dir_problem(Path::new("")), None);
        // In the way: a directory for a file, a file for a directory, a file above either.
        assert_eq!(
            output_file_problem(dir.path()),
            Some((
                dir.path().to_path_buf(),
                "is a directory, not a file".into()
            ))
        );
        assert_eq!(
            output_file_problem(&file.join("sub/x.safetensors")),
            Some((file.clone(), "is not a directory".into()))
        );
        assert_eq!(
            output_dir_problem(&file),
            Some((file.clone(), "is not a directory".into()))
        );
        assert_eq!(
            output_dir_problem(&file.join("plots")),
            Some((file.clone(), "is not a directory".into()))
        );
        assert_eq!(
            output_file_problem(&dir.path().join("..")).map(|(_, why)| why),
            Some("is not a file path".into())
        );
        assert!(!new.parent().unwrap().exists(), "nothing is created");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no probe file is left: {left:?}");
    }
}
