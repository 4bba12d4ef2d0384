//! The data sets: the bundled MNIST subset, the IDX and CIFAR-10 readers on good and bad files
//! (each bad file gives an error naming the file and the problem), normalisation, the
//! train/validation split and the batch loader.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use staticnet::data::cifar10::Cifar10;
use staticnet::data::mnist::Mnist;
use staticnet::prelude::*;
use staticnet::{Dataset, Images};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k")
}

/// A fresh folder for one test.
fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

/// The bundled MNIST files unpacked into `dir`, with `edit` applied to the named file.
fn mnist_copy(dir: &Path, edit: impl Fn(&str, &mut Vec<u8>)) {
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let mut bytes = gunzip(&bundled().join(format!("{name}.gz")));
        edit(name, &mut bytes);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn error(dir: &Path) -> String {
    match Mnist::load(dir) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_bundled_subset_has_its_readmes_counts() {
    let mnist = Mnist::load(bundled()).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (8000, 2000));
    // Class counts from data/mnist-10k/README.md.
    assert_eq!(mnist.train.class_counts(), [808, 885, 800, 794, 780, 684, 815, 875, 775, 784]);
    assert_eq!(mnist.test.class_counts(), [193, 242, 191, 238, 200, 179, 199, 195, 169, 194]);
    // Pixels as ToTensor gives them.
    let (lo, hi) = (0..mnist.train.len()).flat_map(|i| mnist.train.sample(i).unwrap().to_vec()).fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
    assert_eq!((lo, hi), (0.0, 1.0));
}

#[test]
fn plain_and_gzipped_files_read_the_same() {
    let dir = tmp("plain");
    mnist_copy(&dir, |_, _| {});
    let (plain, gz) = (Mnist::load(&dir).unwrap(), Mnist::load(bundled()).unwrap());
    assert_eq!(plain.train.labels(), gz.train.labels());
    assert_eq!(plain.test.sample(1999).unwrap(), gz.test.sample(1999).unwrap());
}

#[test]
fn a_missing_file() {
    let dir = tmp("missing");
    let msg = error(&dir);
    assert!(msg.contains("train-images-idx3-ubyte: not found (nor train-images-idx3-ubyte.gz)"), "{msg}");
}

#[test]
fn a_wrong_magic_number() {
    let dir = tmp("magic");
    mnist_copy(&dir, |name, b| {
        if name == "train-images-idx3-ubyte" {
            b[3] = 0x01; // a labels file's magic
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("train-images-idx3-ubyte: wrong magic number 0x00000801: an IDX images file starts with 0x00000803"), "{msg}");
}

#[test]
fn a_truncated_file() {
    let dir = tmp("truncated");
    mnist_copy(&dir, |name, b| {
        if name == "t10k-images-idx3-ubyte" {
            b.truncate(16 + 784 * 100 + 10);
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("t10k-images-idx3-ubyte: truncated: its header announces 2000 images (1568000 bytes of data), but only 78410 bytes follow"), "{msg}");
    let dir = tmp("truncated-header");
    mnist_copy(&dir, |name, b| {
        if name == "train-labels-idx1-ubyte" {
            b.truncate(5);
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("train-labels-idx1-ubyte: truncated: 5 bytes, shorter than the 8-byte header"), "{msg}");
}

#[test]
fn counts_that_disagree() {
    let dir = tmp("counts");
    mnist_copy(&dir, |name, b| {
        if name == "train-labels-idx1-ubyte" {
            b.truncate(8 + 7999);
            b[4..8].copy_from_slice(&7999u32.to_be_bytes());
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("train-labels-idx1-ubyte: holds 7999 labels, but"), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte holds 8000 images"), "{msg}");
}

#[test]
fn a_label_out_of_range() {
    let dir = tmp("label");
    mnist_copy(&dir, |name, b| {
        if name == "t10k-labels-idx1-ubyte" {
            b[8 + 41] = 10;
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("t10k-labels-idx1-ubyte: label 10 of sample 41 is out of range: MNIST labels are 0 to 9"), "{msg}");
}

#[test]
fn images_of_the_wrong_size() {
    let dir = tmp("size");
    mnist_copy(&dir, |name, b| {
        if name == "train-images-idx3-ubyte" {
            b[8..12].copy_from_slice(&32u32.to_be_bytes());
        }
    });
    let msg = error(&dir);
    assert!(msg.contains("train-images-idx3-ubyte: holds 32×28 images; MNIST images are 28×28"), "{msg}");
}

#[test]
fn a_file_that_is_not_gzip_after_all() {
    let dir = tmp("badgz");
    mnist_copy(&dir, |_, _| {});
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), [0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02]).unwrap();
    let msg = error(&dir);
    assert!(msg.contains("train-images-idx3-ubyte.gz: not a valid gzip file"), "{msg}");
}

/// CIFAR-10 binary records: a label byte, then 3072 pixels.
fn cifar_files(dir: &Path, records: usize, edit: impl Fn(&str, &mut Vec<u8>)) {
    for name in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"] {
        let mut bytes = Vec::new();
        for r in 0..records {
            bytes.push((r % 10) as u8);
            bytes.extend((0..3072).map(|i| ((i + r) % 256) as u8));
        }
        edit(name, &mut bytes);
        std::fs::File::create(dir.join(name)).unwrap().write_all(&bytes).unwrap();
    }
}

#[test]
fn cifar10_reads_its_binary_format() {
    let dir = tmp("cifar");
    let inner = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&inner).unwrap();
    cifar_files(&inner, 3, |_, _| {});
    // The folder of the archive, or the folder the archive unpacks into.
    let data = Cifar10::load(&dir).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (15, 3));
    assert_eq!(data.test.labels(), [0, 1, 2]);
    // Record 1's red plane starts at pixel value 1, its green plane at (1024 + 1) % 256.
    let s = data.test.sample(1).unwrap();
    assert_eq!((s[0], s[1024]), (1.0 / 255.0, 1.0 / 255.0));
}

#[test]
fn cifar10_bad_files() {
    let dir = tmp("cifar-missing");
    let msg = Cifar10::load(&dir).err().unwrap().to_string();
    assert!(msg.contains("data_batch_1.bin: not found") && msg.contains("cifar-10-binary.tar.gz"), "{msg}");
    let dir = tmp("cifar-truncated");
    cifar_files(&dir, 2, |name, b| {
        if name == "data_batch_3.bin" {
            b.truncate(3073 + 100);
        }
    });
    let msg = Cifar10::load(&dir).err().unwrap().to_string();
    assert!(msg.contains("data_batch_3.bin: 3173 bytes is not a whole number of 3073-byte CIFAR-10 records"), "{msg}");
    let dir = tmp("cifar-label");
    cifar_files(&dir, 2, |name, b| {
        if name == "test_batch.bin" {
            b[3073] = 12;
        }
    });
    let msg = Cifar10::load(&dir).err().unwrap().to_string();
    assert!(msg.contains("test_batch.bin: record 1 has label 12; CIFAR-10 labels are 0 to 9"), "{msg}");
}

fn tiny(n: usize) -> Dataset<Images<2, 2, 2>> {
    let values = (0..n * 8).map(|i| i as f32).collect();
    Dataset::new("tiny", values, (0..n).map(|i| i % 3).collect(), 3).unwrap()
}

#[test]
fn normalize_is_per_channel() {
    let mut d = tiny(2);
    d.normalize(&[1.0, 10.0], &[2.0, 4.0]).unwrap();
    // Sample 0: channel 0 holds 0..4, channel 1 holds 4..8.
    assert_eq!(d.sample(0).unwrap(), [-0.5, 0.0, 0.5, 1.0, -1.5, -1.25, -1.0, -0.75]);
    let msg = d.normalize(&[0.1, 0.2, 0.3], &[1.0, 1.0, 1.0]).err().unwrap().to_string();
    assert!(msg.contains("normalize needs one mean and one std, or one of each per channel (2), got 3 and 3"), "{msg}");
    let msg = d.normalize(&[0.0], &[0.0]).err().unwrap().to_string();
    assert!(msg.contains("positive standard deviations"), "{msg}");
}

#[test]
fn the_course_split_shuffles_then_cuts() {
    let d = tiny(100);
    let (train, val) = d.split(90, 7).unwrap();
    assert_eq!((train.len(), val.len()), (90, 10));
    // Every sample once, in one of the two sets.
    let mut firsts: Vec<f32> = (0..90).map(|i| train.sample(i).unwrap()[0]).chain((0..10).map(|i| val.sample(i).unwrap()[0])).collect();
    firsts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(firsts, (0..100).map(|i| (i * 8) as f32).collect::<Vec<_>>());
    // Shuffled, and the same for the same seed.
    assert_ne!((0..10).map(|i| val.sample(i).unwrap()[0]).collect::<Vec<_>>(), (90..100).map(|i| (i * 8) as f32).collect::<Vec<_>>());
    assert_eq!(d.split(90, 7).unwrap().1.labels(), val.labels());
    assert!(d.split(101, 0).is_err());
}

#[test]
fn the_loader_batches_with_a_smaller_last_batch_and_reshuffles_each_epoch() {
    let d = tiny(10);
    let mut loader = d.loader(4).unwrap().shuffle(3);
    let mut epochs = Vec::new();
    for epoch in 0..2 {
        loader.start_epoch(epoch);
        let mut sizes = Vec::new();
        let mut seen = Vec::new();
        while let Some((x, labels)) = loader.next().unwrap() {
            sizes.push(x.len());
            assert_eq!(labels.len(), x.len());
            for i in 0..x.len() {
                let first = x.sample(i)[0];
                assert_eq!(labels[i], (first as usize / 8) % 3, "a label travels with its sample");
                seen.push(first as usize / 8);
            }
        }
        assert_eq!(sizes, [4, 4, 2]);
        epochs.push(seen);
    }
    assert_ne!(epochs[0], epochs[1], "a new order every epoch");
    for e in &mut epochs {
        e.sort();
        assert_eq!(*e, (0..10).collect::<Vec<_>>());
    }
    assert!(d.loader(0).is_err());
}

/// A batch size far beyond the data set (here 10^9 samples of 8 values, 32 GB) is one batch of
/// the whole set, with buffers sized by the set: it aborted on a 32 GB allocation before.
#[test]
fn a_batch_size_beyond_the_data_set_allocates_for_the_data_set() {
    let d = tiny(10);
    let mut loader = d.loader(1_000_000_000).unwrap();
    assert_eq!(loader.batches(), 1);
    loader.start_epoch(0);
    let (x, labels) = loader.next().unwrap().unwrap();
    assert_eq!((x.len(), labels.len()), (10, 10));
    assert!(loader.next().unwrap().is_none());
    assert!(d.loader(usize::MAX).is_ok());
}

/// It sliced out of range (a panic) before.
#[test]
fn a_sample_past_the_end_is_an_error() {
    let d = tiny(3);
    assert_eq!(d.sample(2).unwrap().len(), 8);
    let msg = d.sample(3).unwrap_err().to_string();
    assert!(msg.contains("tiny: there is no sample 3: the set holds 3 samples"), "{msg}");
    let msg = d.subset(&[0, 7]).unwrap_err().to_string();
    assert!(msg.contains("there is no sample 7"), "{msg}");
}

/// A gzip file of several members (RFC 1952; Python's gzip reads them, and `cat a.gz b.gz`
/// makes one) is read whole: it was "truncated" before.
#[test]
fn multi_member_gzip_is_read_whole() {
    let dir = tmp("members");
    mnist_copy(&dir, |_, _| {});
    let name = "t10k-images-idx3-ubyte";
    let plain = std::fs::read(dir.join(name)).unwrap();
    let mut members = Vec::new();
    for part in plain.chunks(100_000) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        members.extend(e.finish().unwrap());
    }
    std::fs::remove_file(dir.join(name)).unwrap();
    std::fs::write(dir.join(format!("{name}.gz")), members).unwrap();
    let (from_members, from_plain) = (Mnist::load(&dir).unwrap(), Mnist::load(bundled()).unwrap());
    assert_eq!(from_members.test.values(), from_plain.test.values());
}

/// A gzipped file whose header is wrong is refused after its header, before the rest is
/// decompressed (`tests/fuzz.rs` measures the memory of such bombs); here, one that ends right
/// after a wrong magic number and one whose header lies about its length.
#[test]
fn a_gzipped_file_is_judged_by_its_header_first() {
    let dir = tmp("gz-header");
    mnist_copy(&dir, |_, _| {});
    let name = "train-images-idx3-ubyte";
    let mut bytes = std::fs::read(dir.join(name)).unwrap();
    bytes[2] = 0x09;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&bytes).unwrap();
    std::fs::remove_file(dir.join(name)).unwrap();
    std::fs::write(dir.join(format!("{name}.gz")), e.finish().unwrap()).unwrap();
    let msg = error(&dir);
    assert!(msg.contains("train-images-idx3-ubyte.gz: wrong magic number 0x00000903"), "{msg}");

    let mut bytes = std::fs::read(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&bytes).unwrap();
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), e.finish().unwrap()).unwrap();
    mnist_copy_one(&dir, name);
    let msg = error(&dir);
    assert!(msg.contains("t10k-labels-idx1-ubyte.gz: truncated: its header announces 4294967295 labels (4294967295 bytes of data), but only 2000 bytes follow"), "{msg}");
}

/// Restores one bundled file, unpacked, in `dir` (and removes its gzipped twin).
fn mnist_copy_one(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{name}.gz")));
    std::fs::write(dir.join(name), gunzip(&bundled().join(format!("{name}.gz")))).unwrap();
}

/// A valid IDX file too large for memory (a sparse file announcing 1.4 billion images, 4.4 TB as
/// floats) is an error naming the file, not an abort in the allocator.
#[test]
fn a_file_larger_than_memory_is_an_error_not_an_abort() {
    if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1") {
        eprintln!("skipped: this kernel grants any allocation (vm.overcommit_memory = 1), so it cannot refuse this one");
        return;
    }
    let dir = tmp("huge");
    mnist_copy(&dir, |_, _| {});
    let n: u64 = 1_400_000_000;
    let path = dir.join("t10k-images-idx3-ubyte");
    let mut header = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        header.extend(d.to_be_bytes());
    }
    std::fs::write(&path, &header).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(16 + n * 784).unwrap();
    let msg = error(&dir);
    assert!(msg.contains("t10k-images-idx3-ubyte: there is not enough memory for the 1097600000000 values of its images"), "{msg}");
}
