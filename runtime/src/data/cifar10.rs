//! CIFAR-10 in its binary format (<https://www.cs.toronto.edu/~kriz/cifar.html>, "binary
//! version"): `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, each 10,000 records of
//! one label byte then 3,072 pixel bytes (red, green, blue planes of 32 × 32). Pixels become
//! `value / 255`.

use std::path::{Path, PathBuf};

use super::Dataset;
use crate::batch::Images;
use crate::{Error, Result};

/// One CIFAR-10 image: 3 channels, 32 × 32.
pub type CifarImages = Images<3, 32, 32>;

/// CIFAR-10's class names, by label.
pub const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

const RECORD: usize = 1 + 3 * 32 * 32;

/// The CIFAR-10 training (50,000) and test (10,000) sets.
pub struct Cifar10 {
    /// The 50,000 training images (`data_batch_1.bin` … `data_batch_5.bin`).
    pub train: Dataset<CifarImages>,
    /// The 10,000 test images (`test_batch.bin`).
    pub test: Dataset<CifarImages>,
}

impl Cifar10 {
    /// Reads the six `.bin` files from `dir` (or from `dir/cifar-10-batches-bin`, as the archive
    /// unpacks).
    pub fn load(dir: impl AsRef<Path>) -> Result<Cifar10> {
        let dir = locate(dir.as_ref())?;
        let train: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
        Ok(Cifar10 { train: read_files(&train, "CIFAR-10 train")?, test: read_files(&[dir.join("test_batch.bin")], "CIFAR-10 test")? })
    }
}

fn locate(dir: &Path) -> Result<PathBuf> {
    for d in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if d.join("data_batch_1.bin").is_file() {
            return Ok(d);
        }
    }
    Err(Error::file(
        dir.join("data_batch_1.bin"),
        "not found: give the folder of the CIFAR-10 binary files (data_batch_1.bin … test_batch.bin), unpacked from \
         https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    ))
}

fn read_files(paths: &[PathBuf], name: &str) -> Result<Dataset<CifarImages>> {
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        parse_records(path, &bytes, &mut values, &mut labels)?;
    }
    Dataset::new(name, values, labels, 10)
}

/// Appends the records of one file.
pub fn parse_records(path: &Path, bytes: &[u8], values: &mut Vec<f32>, labels: &mut Vec<usize>) -> Result<()> {
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::file(
            path,
            format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records: the file is truncated or not CIFAR-10 binary", bytes.len()),
        ));
    }
    let pixels = bytes.len() / RECORD * (RECORD - 1);
    values.try_reserve(pixels).map_err(|_| Error::file(path, format!("there is not enough memory for its {pixels} pixels")))?;
    labels.try_reserve(bytes.len() / RECORD).map_err(|_| Error::file(path, "there is not enough memory for its labels"))?;
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0] as usize;
        if label > 9 {
            return Err(Error::file(path, format!("record {i} has label {label}; CIFAR-10 labels are 0 to 9")));
        }
        labels.push(label);
        values.extend(record[1..].iter().map(|&b| b as f32 / 255.0));
    }
    Ok(())
}
