//! TensorBoard event files, written without TensorFlow: the TFRecord framing (each record's
//! length and data guarded by a masked CRC-32C) around `tensorflow.Event` protocol buffers,
//! encoded by hand (the few fields used are below), as PyTorch's `SummaryWriter` writes them.
//! `tensorboard --logdir DIR` shows them; `scripts/check_tensorboard.py` reads them back with
//! TensorBoard's own reader.
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//! Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// The CRC-32C (Castagnoli) lookup table, reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32C of `data` (iSCSI's, SSE 4.2's `crc32` instruction's).
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC32C_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// TFRecord's masked CRC: the CRC-32C rotated right by 15 bits plus a constant, so that the CRC
/// of data holding CRCs is not degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length (u64, little-endian), its masked CRC, the data, the data's masked CRC.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// A protocol buffer message being encoded: fields appended in any order.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(((field << 3) | wire_type) as u64);
    }

    /// An `int32` or `int64` (a negative value as ten bytes, two's complement).
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// A `string`, `bytes` or embedded message.
    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

/// An image for [`EventWriter::add_image`]: PNG bytes and what they hold.
#[derive(Clone, Debug)]
pub struct PngImage {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// 1 grey, 3 RGB, 4 RGBA (TensorBoard's `colorspace`).
    pub channels: u32,
    /// The PNG file's bytes.
    pub png: Vec<u8>,
}

impl PngImage {
    /// A grid of `crate::viz` (filters, feature maps) as an image summary.
    pub fn of_grid(grid: &crate::viz::GridImage) -> Result<Self> {
        Ok(PngImage { height: grid.height as u32, width: grid.width as u32, channels: grid.channels as u32, png: grid.to_png()? })
    }
}

/// The `Event` of a summary value at `step` (`wall_time` in seconds since 1970).
fn summary_event(wall_time: f64, step: i64, tag: &str, value: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut v = Message::default();
    v.bytes(1, tag.as_bytes());
    value(&mut v);
    let mut summary = Message::default();
    summary.bytes(1, &v.0);
    let mut event = Message::default();
    event.double(1, wall_time);
    event.int(2, step);
    event.bytes(5, &summary.0);
    event.0
}

/// The encoded `Event` of a scalar (`SummaryWriter.add_scalar(tag, value, step)`).
pub fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    summary_event(wall_time, step, tag, |v| v.float(2, value))
}

/// The encoded `Event` of an image (`SummaryWriter.add_image(tag, img, step)`).
pub fn image_event(wall_time: f64, step: i64, tag: &str, image: &PngImage) -> Vec<u8> {
    let mut img = Message::default();
    img.int(1, image.height as i64);
    img.int(2, image.width as i64);
    img.int(3, image.channels as i64);
    img.bytes(4, &image.png);
    summary_event(wall_time, step, tag, |v| v.bytes(4, &img.0))
}

/// The encoded `Event` that opens every event file: `file_version: "brain.Event:2"`.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Message::default();
    event.double(1, wall_time);
    event.bytes(3, b"brain.Event:2");
    event.0
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Writes one TensorBoard event file (PyTorch's `SummaryWriter(log_dir)`); every run writes a
/// new file, which TensorBoard reads together with the folder's others.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (made if missing), named as PyTorch names its own:
    /// `events.out.tfevents.<seconds>.<host>.<pid>.<n>`.
    pub fn create(dir: impl AsRef<Path>) -> Result<EventWriter> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
        let host = host.or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "localhost".into());
        let secs = now() as u64;
        let mut n = 0;
        let path = loop {
            let p = dir.join(format!("events.out.tfevents.{secs}.{host}.{}.{n}", std::process::id()));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = EventWriter { path, file: BufWriter::new(file) };
        writer.write_event(&file_version_event(now()))?;
        writer.flush()?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &[u8]) -> Result<()> {
        self.file.write_all(&tfrecord(event)).map_err(|e| Error::io(&self.path, e))
    }

    /// A scalar under `tag` (`loss/train`) at `step`.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<()> {
        self.write_event(&scalar_event(now(), step, tag, value))
    }

    /// An image under `tag` at `step`.
    pub fn add_image(&mut self, tag: &str, image: &PngImage, step: i64) -> Result<()> {
        self.write_event(&image_event(now(), step, tag, image))
    }

    /// Writes what is buffered to the file, so that a TensorBoard watching it sees it.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_of_the_check_string() {
        // The check value of CRC-32C (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn varints_and_negative_ints() {
        let mut m = Message::default();
        m.int(2, 300);
        assert_eq!(m.0, [0x10, 0xAC, 0x02]);
        let mut m = Message::default();
        m.int(1, -1);
        assert_eq!(m.0.len(), 11);
    }
}
