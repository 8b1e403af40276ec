//! MNIST in IDX format, gzipped or raw, validated before use.
//!
//! Our own reader rather than the `mnist` crate: that crate panics on bad input and reads only
//! uncompressed files from a path, while every check below (magic number, 28x28, item count,
//! exact byte length; labels below the model's output width, checked by [`check_labels`] once
//! the model is known) must become a one-line error. Allocation is bounded by the
//! bytes actually present, never by what a header claims.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Result;
use flate2::read::GzDecoder;

use crate::error::bad_input;
use crate::text::count;

pub const IMAGE_SIDE: usize = 28;
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
const IMAGES_MAGIC: u32 = 0x0803;
const LABELS_MAGIC: u32 = 0x0801;

/// Images (`len x 784` bytes, row-major, 0 = background) and their labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_PIXELS..][..IMAGE_PIXELS]
    }

    /// The first `n` examples (all of them when `n` is larger).
    pub fn truncated(mut self, n: usize) -> Split {
        let n = n.min(self.len());
        self.images.truncate(n * IMAGE_PIXELS);
        self.labels.truncate(n);
        self
    }

    /// The examples at `indices`, in that order.
    pub fn subset(&self, indices: &[u32]) -> Split {
        Split {
            images: indices
                .iter()
                .flat_map(|&i| self.image(i as usize))
                .copied()
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i as usize]).collect(),
        }
    }

    /// The examples whose label is in `classes`, relabelled by their position there (the
    /// first class listed becomes 0), in the original order.
    pub fn select_classes(&self, classes: &[u8]) -> Split {
        let mut map = [None; 256];
        for (new, &class) in classes.iter().enumerate() {
            map[usize::from(class)] = Some(new as u8);
        }
        let kept: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| map[usize::from(self.labels[i as usize])].is_some())
            .collect();
        let mut split = self.subset(&kept);
        for label in &mut split.labels {
            *label = map[usize::from(*label)].expect("kept labels are mapped");
        }
        split
    }

    /// The first `n` examples of each label (all of a label that has fewer), in the original
    /// order.
    pub fn per_class_limit(&self, n: usize) -> Split {
        let mut seen = [0usize; 256];
        let kept: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| {
                let count = &mut seen[usize::from(self.labels[i as usize])];
                *count += 1;
                *count <= n
            })
            .collect();
        self.subset(&kept)
    }

    /// Copies the examples at `indices` into `x` (scaled to [0, 1]) and `labels`.
    pub fn gather(&self, indices: &[u32], x: &mut Vec<f32>, labels: &mut Vec<u8>) {
        x.clear();
        labels.clear();
        for &i in indices {
            x.extend(self.image(i as usize).iter().map(|&p| pixel_value(p)));
            labels.push(self.labels[i as usize]);
        }
    }
}

/// A pixel scaled to [0, 1], as every backend sees it.
pub fn pixel_value(p: u8) -> f32 {
    f32::from(p) / 255.0
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
}

/// Reads and validates the four standard files in `dir`, each as `NAME.gz` or `NAME`.
pub fn load_mnist(dir: &Path) -> Result<Mnist> {
    if !dir.is_dir() {
        return Err(bad_input(format!(
            "{}: data directory not found (use --data-dir DIR)",
            dir.display()
        )));
    }
    let open = |name: &str| open_idx(dir, name);
    let train = load_split(&open, "train")?;
    let test = load_split(&open, "t10k")?;
    Ok(Mnist { train, test })
}

/// The four gzipped files of the repository's `data/mnist`, built into the library so that a
/// program finds MNIST wherever it runs.
static BUNDLED: [(&str, &[u8]); 4] = [
    (
        "train-images-idx3-ubyte",
        include_bytes!("../data/mnist/train-images-idx3-ubyte.gz"),
    ),
    (
        "train-labels-idx1-ubyte",
        include_bytes!("../data/mnist/train-labels-idx1-ubyte.gz"),
    ),
    (
        "t10k-images-idx3-ubyte",
        include_bytes!("../data/mnist/t10k-images-idx3-ubyte.gz"),
    ),
    (
        "t10k-labels-idx1-ubyte",
        include_bytes!("../data/mnist/t10k-labels-idx1-ubyte.gz"),
    ),
];

/// MNIST from the copy of `data/mnist` built into the library, read and validated like
/// [`load_mnist`] reads a directory.
pub fn load_bundled_mnist() -> Result<Mnist> {
    let open = |name: &str| -> Result<(PathBuf, Box<dyn Read>)> {
        let (_, bytes) = BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .expect("every file is bundled");
        let path = PathBuf::from(format!("(bundled) {name}.gz"));
        Ok((path, Box::new(GzDecoder::new(*bytes))))
    };
    let train = load_split(&open, "train")?;
    let test = load_split(&open, "t10k")?;
    Ok(Mnist { train, test })
}

/// Opens one of the four files by its name without `.gz`: its path for errors, and its bytes.
type Open<'a> = dyn Fn(&str) -> Result<(PathBuf, Box<dyn Read>)> + 'a;

fn load_split(open: &Open, prefix: &str) -> Result<Split> {
    let (image_path, images) = open(&format!("{prefix}-images-idx3-ubyte"))?;
    let images = read_images(&image_path, images)?;
    let (label_path, labels) = open(&format!("{prefix}-labels-idx1-ubyte"))?;
    let labels = read_labels(&label_path, labels)?;
    if images.len() != labels.len() * IMAGE_PIXELS {
        return Err(bad_input(format!(
            "{}: has {} but {} has {}",
            image_path.display(),
            count(images.len() / IMAGE_PIXELS, "image"),
            label_path.display(),
            count(labels.len(), "label")
        )));
    }
    Ok(Split { images, labels })
}

/// Opens `dir/NAME.gz` (decompressing) or else `dir/NAME`.
fn open_idx(dir: &Path, name: &str) -> Result<(PathBuf, Box<dyn Read>)> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    let open = |p: &Path| {
        File::open(p).map_err(|e| bad_input(format!("{}: cannot open: {e}", p.display())))
    };
    if gz.is_file() {
        let reader = GzDecoder::new(BufReader::new(open(&gz)?));
        Ok((gz, Box::new(reader)))
    } else if raw.is_file() {
        Ok((raw.clone(), Box::new(BufReader::new(open(&raw)?))))
    } else {
        Err(bad_input(format!(
            "{}: file not found (nor {name})",
            gz.display()
        )))
    }
}

/// One IDX file's images (each 28 x 28 bytes, in order) or, with `labels`, its labels, from the
/// file's bytes, gzipped (by the gzip magic) or raw, checked as the loader checks them; `path`
/// names it in errors. For the fuzzer and the tests.
pub fn parse_idx(path: &Path, bytes: &[u8], labels: bool) -> Result<Vec<u8>> {
    let bytes = io::Cursor::new(bytes.to_vec());
    let reader: Box<dyn Read> = if bytes.get_ref().starts_with(&[0x1f, 0x8b]) {
        Box::new(GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    if labels {
        read_labels(path, reader)
    } else {
        read_images(path, reader)
    }
}

fn read_images(path: &Path, reader: Box<dyn Read>) -> Result<Vec<u8>> {
    let (_, body) = read_idx(path, reader, IMAGES_MAGIC, 3, |dims| {
        if dims[1..] != [IMAGE_SIDE as u32, IMAGE_SIDE as u32] {
            return Err(format!(
                "images are {}x{}, expected 28x28",
                dims[1], dims[2]
            ));
        }
        Ok(u64::from(dims[0]) * IMAGE_PIXELS as u64)
    })?;
    Ok(body)
}

/// Any byte is a label here: which are valid depends on the model ([`check_labels`]).
fn read_labels(path: &Path, reader: Box<dyn Read>) -> Result<Vec<u8>> {
    let (_, body) = read_idx(path, reader, LABELS_MAGIC, 1, |dims| Ok(u64::from(dims[0])))?;
    Ok(body)
}

/// A bad-input error naming `file` (the labels' file, see [`labels_file`]) unless every label
/// of `split` is below `classes`, the output width of the model that will see it.
pub fn check_labels(split: &Split, classes: usize, file: &Path) -> Result<()> {
    match split.labels.iter().position(|&l| usize::from(l) >= classes) {
        None => Ok(()),
        Some(i) => Err(bad_input(format!(
            "{}: label {} at index {i} is not below the model's {classes} outputs (labels must be 0 to {}; the arch ends in dense{classes})",
            file.display(),
            split.labels[i],
            classes - 1
        ))),
    }
}

/// The labels file of the `train` (or else test) split as [`load_mnist`] reads it from `dir`
/// (`NAME.gz`, else `NAME`), or as the bundled copy is named with `None`: for messages.
pub fn labels_file(dir: Option<&Path>, train: bool) -> PathBuf {
    let prefix = if train { "train" } else { "t10k" };
    let name = format!("{prefix}-labels-idx1-ubyte");
    match dir {
        None => PathBuf::from(format!("(bundled) {name}.gz")),
        Some(dir) if dir.join(format!("{name}.gz")).is_file() => dir.join(format!("{name}.gz")),
        Some(dir) => dir.join(name),
    }
}

/// Reads an IDX header (magic, then `ndims` big-endian u32 sizes) and exactly the body length
/// that `body_len` derives from the sizes.
fn read_idx(
    path: &Path,
    mut reader: Box<dyn Read>,
    magic: u32,
    ndims: usize,
    body_len: impl Fn(&[u32]) -> Result<u64, String>,
) -> Result<(Vec<u32>, Vec<u8>)> {
    let fail = |why: String| bad_input(format!("{}: {why}", path.display()));
    let io_fail = |e: io::Error| fail(format!("cannot read: {e}"));
    let header_len = 4 * (1 + ndims) as u64;
    let mut header = Vec::new();
    (&mut reader)
        .take(header_len)
        .read_to_end(&mut header)
        .map_err(io_fail)?;
    if (header.len() as u64) < header_len {
        return Err(fail(format!(
            "expected a {header_len}-byte IDX header, found {}",
            count(header.len(), "byte")
        )));
    }
    let words: Vec<u32> = header
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    if words[0] != magic {
        return Err(fail(format!(
            "bad magic number 0x{:08x}, expected 0x{magic:08x}",
            words[0]
        )));
    }
    let expected_body = body_len(&words[1..]).map_err(fail)?;
    let expected = header_len + expected_body;
    // Read at most one byte past the expected end: a lying header cannot make us allocate.
    let mut body = Vec::new();
    (&mut reader)
        .take(expected_body + 1)
        .read_to_end(&mut body)
        .map_err(io_fail)?;
    let found = header_len + body.len() as u64;
    // Nothing past that byte is read: a gzip stream may inflate to gigabytes.
    if found > expected {
        return Err(fail(format!(
            "expected {expected} bytes, found more (the data runs past the end its header gives)"
        )));
    }
    if found != expected {
        return Err(fail(format!("expected {expected} bytes, found {found}")));
    }
    Ok((words[1..].to_vec(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_of(labels: &[u8]) -> Split {
        Split {
            images: labels.iter().flat_map(|&l| [l; IMAGE_PIXELS]).collect(),
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn selected_classes_are_relabelled_in_the_order_given() {
        let split = split_of(&[5, 1, 9, 7, 5, 0, 9]);
        let picked = split.select_classes(&[9, 5]);
        assert_eq!(picked.labels, [1, 0, 1, 0]);
        // Images follow: the original labels were 5, 9, 5, 9.
        let firsts: Vec<u8> = (0..picked.len()).map(|i| picked.image(i)[0]).collect();
        assert_eq!(firsts, [5, 9, 5, 9]);
    }

    #[test]
    fn per_class_limit_keeps_the_first_of_each_label() {
        let split = split_of(&[1, 2, 1, 1, 3, 2, 2, 1]);
        assert_eq!(split.per_class_limit(2).labels, [1, 2, 1, 3, 2]);
        assert_eq!(split.per_class_limit(9).labels, split.labels);
    }

    #[test]
    fn labels_at_or_above_the_output_width_are_refused() {
        let split = split_of(&[0, 4, 7, 2]);
        assert!(check_labels(&split, 8, Path::new("f")).is_ok());
        let err = check_labels(&split, 5, Path::new("f"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f: label 7 at index 2 "), "{err}");
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A reader that counts the bytes taken from it.
    struct Counting(Box<dyn Read>, Arc<AtomicU64>);

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    /// A file far longer than its header says (a gzip bomb inflates so) is refused after one
    /// byte past the expected end, never read to its end.
    #[test]
    fn data_past_the_header_s_end_is_not_read() {
        let mut header = Vec::new();
        for word in [IMAGES_MAGIC, 2, 28, 28] {
            header.extend(word.to_be_bytes());
        }
        let taken = Arc::new(AtomicU64::new(0));
        let endless = io::Cursor::new(header).chain(io::repeat(0).take(1 << 30));
        let reader = Box::new(Counting(Box::new(endless), taken.clone()));
        let err = read_images(Path::new("bomb"), reader).unwrap_err();
        assert!(format!("{err}").contains("found more"), "{err}");
        let expected = 16 + 2 * 784;
        assert!(
            taken.load(Ordering::Relaxed) <= expected + 64 * 1024,
            "read {} bytes",
            taken.load(Ordering::Relaxed)
        );
    }
}
