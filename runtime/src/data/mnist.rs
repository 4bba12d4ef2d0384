//! MNIST in the IDX format of <http://yann.lecun.com/exdb/mnist/>, under its official file
//! names, each plain or gzipped. Pixels become `value / 255`, as `transforms.ToTensor()` does.

use std::path::{Path, PathBuf};

use super::{Dataset, read_maybe_gz};
use crate::batch::Images;
use crate::{Error, Result};

/// One MNIST image: 1 channel, 28 × 28.
pub type MnistImages = Images<1, 28, 28>;

/// The MNIST training and test sets.
pub struct Mnist {
    /// The training images and labels (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`).
    pub train: Dataset<MnistImages>,
    /// The test images and labels (`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`).
    pub test: Dataset<MnistImages>,
}

impl Mnist {
    /// Reads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
    /// `t10k-labels-idx1-ubyte` from `dir`, each plain or with `.gz`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        Ok(Mnist { train: load_split(dir, "train", "MNIST train")?, test: load_split(dir, "t10k", "MNIST test")? })
    }
}

/// One split: `<prefix>-images-idx3-ubyte` with `<prefix>-labels-idx1-ubyte`.
pub fn load_split(dir: &Path, prefix: &str, name: &str) -> Result<Dataset<MnistImages>> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let values = parse_images(&images_path, &read_maybe_gz(&images_path)?)?;
    let labels = parse_labels(&labels_path, &read_maybe_gz(&labels_path)?)?;
    let images = values.len() / 784;
    if images != labels.len() {
        return Err(Error::file(
            &labels_path,
            format!("holds {} labels, but {} holds {images} images", labels.len(), images_path.display()),
        ));
    }
    Dataset::new(name, values, labels, 10)
}

/// `dir/name`, or `dir/name.gz`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(Error::file(plain, format!("not found (nor {name}.gz): give the folder that holds the four MNIST files")))
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The header `magic, dims...` of an IDX file, checked: unsigned bytes with `dims` dimensions.
fn header(path: &Path, bytes: &[u8], dims: u8, what: &str) -> Result<Vec<usize>> {
    let header_len = 4 + 4 * dims as usize;
    if bytes.len() < header_len {
        return Err(Error::file(path, format!("truncated: {} bytes, shorter than the {header_len}-byte header of an IDX {what} file", bytes.len())));
    }
    let magic = be_u32(bytes, 0);
    let want = 0x0000_0800 | dims as u32;
    if magic != want {
        return Err(Error::file(
            path,
            format!("wrong magic number 0x{magic:08x}: an IDX {what} file starts with 0x{want:08x} (unsigned bytes, {dims} dimensions)"),
        ));
    }
    Ok((0..dims as usize).map(|d| be_u32(bytes, 4 + 4 * d) as usize).collect())
}

fn check_len(path: &Path, bytes: &[u8], header: usize, body: usize, what: &str) -> Result<()> {
    if bytes.len() < header + body {
        return Err(Error::file(path, format!("truncated: its header announces {what} ({body} bytes of data), but only {} bytes follow", bytes.len() - header)));
    }
    if bytes.len() > header + body {
        return Err(Error::file(path, format!("{} bytes more than the {what} its header announces", bytes.len() - header - body)));
    }
    Ok(())
}

/// Images as floats in [0, 1].
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    let dims = header(path, bytes, 3, "images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if (rows, cols) != (28, 28) {
        return Err(Error::file(path, format!("holds {rows}×{cols} images; MNIST images are 28×28")));
    }
    check_len(path, bytes, 16, n * rows * cols, &format!("{n} images"))?;
    Ok(bytes[16..].iter().map(|&b| b as f32 / 255.0).collect())
}

/// Labels in 0..=9.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<usize>> {
    let n = header(path, bytes, 1, "labels")?[0];
    check_len(path, bytes, 8, n, &format!("{n} labels"))?;
    let labels: Vec<usize> = bytes[8..].iter().map(|&b| b as usize).collect();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(Error::file(path, format!("label {l} of sample {i} is out of range: MNIST labels are 0 to 9")));
    }
    Ok(labels)
}
