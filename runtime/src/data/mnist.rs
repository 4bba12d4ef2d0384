//! MNIST in the IDX format of <http://yann.lecun.com/exdb/mnist/>, under its official file
//! names, each plain or gzipped. Pixels become `value / 255`, as `transforms.ToTensor()` does.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::Dataset;
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
    let (reader, len) = open(&images_path)?;
    let values = read_images(&images_path, reader, len)?;
    let (reader, len) = open(&labels_path)?;
    let labels = read_labels(&labels_path, reader, len)?;
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

/// A reader of the file's IDX bytes: the file itself, or, when it starts with gzip's magic
/// bytes, its decompression (every member, as Python's `gzip` reads a multi-member file). With
/// the file's length when that is the IDX length (a plain file).
fn open(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let file = BufReader::new(file);
    Ok(if gz { (Box::new(MultiGzDecoder::new(file)), None) } else { (Box::new(file), Some(len)) })
}

/// Images as floats in [0, 1], from IDX bytes (e.g. a file read whole).
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    read_images(path, bytes, Some(bytes.len() as u64))
}

/// Labels in 0..=9, from IDX bytes.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<usize>> {
    read_labels(path, bytes, Some(bytes.len() as u64))
}

fn read_images(path: &Path, reader: impl Read, len: Option<u64>) -> Result<Vec<f32>> {
    let check = |dims: &[usize]| {
        let (n, rows, cols) = (dims[0], dims[1], dims[2]);
        if (rows, cols) != (28, 28) {
            return Err(Error::file(path, format!("holds {rows}×{cols} images; MNIST images are 28×28")));
        }
        Ok(format!("{n} images"))
    };
    read_idx(path, reader, len, 3, "images", check, |b, _| Ok(b as f32 / 255.0))
}

fn read_labels(path: &Path, reader: impl Read, len: Option<u64>) -> Result<Vec<usize>> {
    read_idx(path, reader, len, 1, "labels", |dims| Ok(format!("{} labels", dims[0])), |b, i| {
        if b > 9 {
            return Err(Error::file(path, format!("label {b} of sample {i} is out of range: MNIST labels are 0 to 9")));
        }
        Ok(b as usize)
    })
}

/// Reads an IDX file of unsigned bytes with `ndims` dimensions from `reader`: the header first,
/// which `check` sees (and names, "2000 images") before a byte of the body is read; then the
/// body, each byte `convert`ed (with its index), never more than the header announces. `len`,
/// when known (a plain file), must be exactly what the header announces, checked before the
/// body is read and reserved for at once; a gzip stream's body is taken as it arrives. So a
/// file costs memory for what it really holds, whatever its header claims, and one too large
/// for memory is an error, not an abort.
fn read_idx<T>(
    path: &Path,
    mut reader: impl Read,
    len: Option<u64>,
    ndims: u8,
    what: &str,
    check: impl FnOnce(&[usize]) -> Result<String>,
    convert: impl Fn(u8, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let read_err = |e: std::io::Error| match len {
        None => Error::file(path, format!("not a valid gzip file: {e}")),
        Some(_) => Error::io(path, e),
    };
    let out_of_memory = |count: u128| Error::file(path, format!("there is not enough memory for the {count} values of its {what}"));
    let header_len = 4 + 4 * ndims as usize;
    let mut header = [0u8; 4 + 4 * 3];
    let got = read_up_to(&mut reader, &mut header[..header_len]).map_err(read_err)?;
    if got < header_len {
        return Err(Error::file(path, format!("truncated: {got} bytes, shorter than the {header_len}-byte header of an IDX {what} file")));
    }
    let be_u32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let magic = be_u32(0);
    let want = 0x0000_0800 | ndims as u32;
    if magic != want {
        return Err(Error::file(
            path,
            format!("wrong magic number 0x{magic:08x}: an IDX {what} file starts with 0x{want:08x} (unsigned bytes, {ndims} dimensions)"),
        ));
    }
    let dims: Vec<usize> = (0..ndims as usize).map(|d| be_u32(4 + 4 * d) as usize).collect();
    let described = check(&dims)?;
    // Each dimension is below 2^32, so the product of three fits in u128.
    let body = dims.iter().fold(1u128, |acc, &d| acc * d as u128);
    let mut out = Vec::new();
    if let Some(len) = len {
        let follow = len.saturating_sub(header_len as u64) as u128;
        if follow < body {
            return Err(Error::file(path, format!("truncated: its header announces {described} ({body} bytes of data), but only {follow} bytes follow")));
        }
        if follow > body {
            return Err(Error::file(path, format!("{} bytes more than the {described} its header announces", follow - body)));
        }
        out.try_reserve_exact(usize::try_from(body).map_err(|_| out_of_memory(body))?).map_err(|_| out_of_memory(body))?;
    }
    let mut chunk = vec![0u8; 1 << 16];
    let mut done: u128 = 0;
    while done < body {
        let want = chunk.len().min(usize::try_from(body - done).unwrap_or(usize::MAX));
        let got = read_up_to(&mut reader, &mut chunk[..want]).map_err(read_err)?;
        if got == 0 {
            return Err(Error::file(path, format!("truncated: its header announces {described} ({body} bytes of data), but only {done} bytes follow")));
        }
        out.try_reserve(got).map_err(|_| out_of_memory(done + got as u128))?;
        for &b in &chunk[..got] {
            out.push(convert(b, out.len())?);
        }
        done += got as u128;
    }
    if len.is_none() && read_up_to(&mut reader, &mut chunk[..1]).map_err(read_err)? > 0 {
        return Err(Error::file(path, format!("holds more bytes than the {described} its header announces")));
    }
    Ok(out)
}

/// Reads until `buf` is full or the input ends; how many bytes it read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
