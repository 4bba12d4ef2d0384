//! What a training run with an output folder leaves there: TensorBoard event files (framed and
//! encoded byte for byte as TensorBoard's own writer does, and holding history.csv's values), the
//! best epoch's confusion matrix, the history plot's marks; and the feature-maps example's PNGs.
//! CI also reads an example's event files with TensorBoard itself (scripts/check_tensorboard.py).

mod common;

use std::path::{Path, PathBuf};

use staticnet::data::Dataset;
use staticnet::prelude::*;
use staticnet::train::tensorboard::{self, PngImage};
use staticnet::{History, Trainer, evaluate};

#[allow(dead_code)]
#[path = "../examples/feature-maps.rs"]
mod feature_maps;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn events_are_encoded_as_tensorboards_writer_encodes_them() {
    // tests/fixtures/tensorboard.bin: scripts/make_tensorboard_fixture.py, with TensorBoard's
    // RecordWriter and event_pb2.
    let want = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tensorboard.bin")).unwrap();
    let image = PngImage { height: 2, width: 3, channels: 1, png: b"\x89PNG not really".to_vec() };
    let ours = [
        tensorboard::file_version_event(1700000000.5),
        tensorboard::scalar_event(1700000001.25, 3, "loss/train", 0.125),
        tensorboard::image_event(1700000002.0, 12, "filters/cnn1", &image),
    ]
    .iter()
    .flat_map(|e| tensorboard::tfrecord(e))
    .collect::<Vec<u8>>();
    assert_eq!(ours, want);
}

/// The (tag, step, value) of every scalar in a TFRecord file of Events, checking each record's
/// CRCs; and the (tag, step, width, height) of every image. A small protobuf reader of the few
/// fields written.
type Scalars = Vec<(String, i64, f32)>;
type ImageEvents = Vec<(String, i64, u32, u32)>;

fn read_events(bytes: &[u8]) -> (Scalars, ImageEvents) {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    /// Fields of one message: (number, varint or fixed value, bytes of a length-delimited one).
    fn fields(b: &[u8]) -> Vec<(u64, u64, &[u8])> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at);
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => out.push((field, varint(b, &mut at), &b[0..0])),
                1 => {
                    out.push((field, u64::from_le_bytes(b[at..at + 8].try_into().unwrap()), &b[0..0]));
                    at += 8;
                }
                5 => {
                    out.push((field, u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as u64, &b[0..0]));
                    at += 4;
                }
                2 => {
                    let len = varint(b, &mut at) as usize;
                    out.push((field, 0, &b[at..at + len]));
                    at += len;
                }
                _ => panic!("wire type {wire}"),
            }
        }
        out
    }
    let (mut scalars, mut images, mut at) = (Vec::new(), Vec::new(), 0);
    let mut first = true;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()), tensorboard::masked_crc32c(len_bytes), "length CRC");
        let data = &bytes[at + 12..at + 12 + len];
        assert_eq!(u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap()), tensorboard::masked_crc32c(data), "data CRC");
        at += 16 + len;
        let event = fields(data);
        if first {
            assert!(event.iter().any(|f| f.0 == 3 && f.2 == b"brain.Event:2"), "the file starts with its version");
            first = false;
            continue;
        }
        let step = event.iter().find(|f| f.0 == 2).map_or(0, |f| f.1 as i64);
        let summary = event.iter().find(|f| f.0 == 5).expect("a summary").2;
        for value in fields(summary).into_iter().filter(|f| f.0 == 1) {
            let v = fields(value.2);
            let tag = String::from_utf8(v.iter().find(|f| f.0 == 1).unwrap().2.to_vec()).unwrap();
            if let Some(x) = v.iter().find(|f| f.0 == 2) {
                scalars.push((tag, step, f32::from_bits(x.1 as u32)));
            } else if let Some(img) = v.iter().find(|f| f.0 == 4) {
                let img = fields(img.2);
                let get = |n: u64| img.iter().find(|f| f.0 == n).unwrap();
                assert!(get(4).2.starts_with(b"\x89PNG"), "{tag}: a PNG");
                images.push((tag, step, get(2).1 as u32, get(1).1 as u32));
            }
        }
    }
    (scalars, images)
}

network! {
    /// A small convolutional classifier of 6×6 images into three classes.
    struct Tiny {
        input: [1, 6, 6],
        conv: Conv2d(1, 4, kernel_size = 3),
        relu: ReLU,
        Flatten,
        fc: Linear(_, 3),
    }
}

/// Three classes told apart by where the image is bright (left, middle, right), with noise.
fn stripes(n: usize, seed: u64) -> Dataset<Images<1, 6, 6>> {
    let mut s = seed;
    let mut noise = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let bright: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let values = bright.iter().flat_map(|&l| (0..36).map(move |p| if (p % 6) / 2 == l { 1.0 } else { 0.0 }).collect::<Vec<f32>>()).map(|v| v + 2.0 * noise()).collect();
    // Every fourth label wrong, so that the run has something to get wrong and to overfit.
    let labels = bright.iter().enumerate().map(|(i, &l)| if i % 4 == 0 { (l + 1 + i % 2) % 3 } else { l }).collect();
    Dataset::new("stripes", values, labels, 3).unwrap()
}

#[test]
fn a_run_writes_tensorboard_events_equal_to_its_history_and_the_best_confusion_matrix() {
    let dir = fresh_dir("outputs_run");
    let (train, val) = (stripes(60, 1), stripes(30, 2));
    let mut model = Tiny::new(&Cpu, 0).unwrap();
    let mut sgd = Sgd::new(0.5);
    let names = ["left", "middle", "right, with a comma"];
    let trainer = Trainer::new(6).batch_size(10).early_stopping(0).class_names(names).out_dir(&dir).progress(false).verbose(false);
    let history = trainer.fit(&mut model, &mut sgd, &train, Some(&val)).unwrap();
    let csv = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert_eq!(History::from_csv(&csv).unwrap().epochs, history.epochs);

    // The events: every history.csv value at step = epoch, and the filters at every epoch.
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
    let (scalars, images) = read_events(&std::fs::read(&files[0]).unwrap());
    let mut want = Vec::new();
    for e in &history.epochs {
        let step = e.epoch as i64;
        want.push(("loss/train".to_string(), step, e.train_loss));
        want.push(("accuracy/train".to_string(), step, e.train_accuracy));
        want.push(("loss/val".to_string(), step, e.val_loss.unwrap()));
        want.push(("accuracy/val".to_string(), step, e.val_accuracy.unwrap()));
        want.push(("lr".to_string(), step, e.lr));
    }
    assert_eq!(scalars, want);
    // 4 filters of 3×3, 2 to a row, padding 1: 2·4+1 = 9 pixels, enlarged ×15 to ≥ 128.
    let filter_images: Vec<_> = history.epochs.iter().map(|e| ("filters/conv".to_string(), e.epoch as i64, 135, 135)).collect();
    assert_eq!(images, filter_images);

    // The confusion matrix on disk is the best epoch's: the restored weights give it again.
    let best = history.best_epoch.expect("early stopping keeps a best epoch");
    assert!(history.stopped_early && best < history.epochs.len(), "the run is meant to stop early after its best epoch: {history:?}");
    let metrics = evaluate(&mut model, &val, 7).unwrap();
    let names: Vec<String> = names.map(String::from).to_vec();
    let on_disk = std::fs::read_to_string(dir.join("confusion_matrix.csv")).unwrap();
    assert_eq!(on_disk, metrics.confusion.to_csv(&names).unwrap(), "best epoch {best} of {}", history.epochs.len());
    assert!(on_disk.starts_with("true\\predicted,left,middle,\"right, with a comma\"\n"));
    assert_eq!(metrics.confusion.total(), 30);
    assert!(metrics.confusion.correct() < 30, "the matrix has errors off its diagonal");
    let svg = std::fs::read_to_string(dir.join("confusion_matrix.svg")).unwrap();
    assert!(svg.contains("middle") && svg.contains("predicted class"));
    let plot = std::fs::read_to_string(dir.join("history.svg")).unwrap();
    assert!(plot.contains(&format!("best epoch ({best})")), "the history plot marks the best epoch");
    assert_eq!(plot.contains("early stop ("), history.stopped_early);
}

#[test]
fn wrong_class_names_stop_the_run_before_it_starts() {
    let data = stripes(9, 1);
    let mut model = Tiny::new(&Cpu, 0).unwrap();
    let e = Trainer::new(1).class_names(["a", "b"]).progress(false).verbose(false).fit(&mut model, &mut Sgd::new(0.1), &data, None).unwrap_err();
    assert_eq!(e.to_string(), "2 class names given, but Tiny has 3 outputs (classes)");
}

#[test]
fn the_feature_maps_example_writes_its_two_grids() {
    let out = fresh_dir("feature_maps_example");
    let options = feature_maps::Options {
        weights: None,
        epochs: 1,
        train_samples: Some(500),
        digit: 3,
        out: out.clone(),
        data_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k").into(),
    };
    let pictures = feature_maps::run(&options).unwrap();
    // Filters: 16 of 5×5, 4 to a row, 1 pixel of padding → 4·6+1 = 25 pixels, ×8.
    // Feature maps: cnn1's 16 and cnn2's 32 maps shown at 28×28, 8 to a row (2 + 4 rows),
    // 2 pixels of padding → 8·30+2 = 242 by 6·30+2 = 182, ×2.
    for ((path, size), want) in [(pictures.filters, (200, 200)), (pictures.feature_maps, (484, 364))] {
        assert_eq!(size, want, "{}", path.display());
        let (w, h) = image::image_dimensions(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((w as usize, h as usize), want, "{}: the PNG's own size", path.display());
    }
    for file in ["history.csv", "confusion_matrix.csv"] {
        assert!(out.join(file).is_file(), "{file}");
    }
}
