//! Your own data: torchvision's `ImageFolder` (its class order and sample list compared with
//! torchvision's on a checked-in folder, made and listed by scripts/make_image_folder_fixture.py),
//! CSV files in the Kaggle digit layout, and every bad file or row giving an error that names it.

use std::path::{Path, PathBuf};

use staticnet::data::csv::CsvDataset;
use staticnet::data::image_folder::decode;
use staticnet::data::transforms::Image;
use staticnet::data::{ImageFolder, Source};
use staticnet::prelude::*;
use staticnet::Dataset;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_folder")
}

/// torchvision's view of the fixture: (classes, [(relative path, class, size, RGB sum, L sum)]).
fn torchvision_listing() -> (Vec<String>, Vec<(String, usize, String, f64, f64)>) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_folder.txt")).unwrap();
    let mut lines = text.lines();
    let classes = lines.next().unwrap().strip_prefix("classes ").unwrap().split(' ').map(String::from).collect();
    lines.next(); // class_to_idx, the same order
    let samples = lines
        .map(|l| {
            let c: Vec<&str> = l.split(' ').collect();
            (c[0].to_string(), c[1].parse().unwrap(), c[2].to_string(), c[3].parse().unwrap(), c[4].parse().unwrap())
        })
        .collect();
    (classes, samples)
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("own-data-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn classes_and_samples_are_torchvisions() {
    let folder = ImageFolder::new(fixture()).unwrap();
    let (classes, samples) = torchvision_listing();
    assert_eq!(folder.classes(), classes);
    assert_eq!(folder.class_to_idx(), classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect::<Vec<_>>());
    let ours: Vec<(String, usize)> = folder.samples().iter().map(|(p, l)| (p.strip_prefix(fixture()).unwrap().display().to_string(), *l)).collect();
    let theirs: Vec<(String, usize)> = samples.iter().map(|s| (s.0.clone(), s.1)).collect();
    assert_eq!(ours, theirs);
}

/// Each image decodes to what PIL's `convert("RGB")` / `convert("L")` and `ToTensor()` give
/// (sums over the image; JPEG decoders may round a level apart).
#[test]
fn images_decode_as_pil_converts_them() {
    for (rel, _, size, rgb_sum, l_sum) in torchvision_listing().1 {
        let path = fixture().join(&rel);
        let jpeg = rel.to_lowercase().ends_with("jpg") || rel.to_lowercase().ends_with("jpeg");
        for (channels, expected) in [(3, rgb_sum), (1, l_sum)] {
            let mut img = Image::default();
            decode(&path, channels, &mut img).unwrap();
            assert_eq!(format!("{}x{}", img.width, img.height), size, "{rel}");
            assert_eq!(img.channels, channels);
            let sum: f64 = img.data.iter().map(|&v| v as f64).sum();
            let tolerance = if jpeg { 2.0 / 255.0 * img.data.len() as f64 } else { 1e-3 };
            assert!((sum - expected).abs() <= tolerance, "{rel}, {channels} channel(s): sum {sum}, torchvision {expected}");
        }
    }
}

/// Copies the fixture's `banana` class (all 5×4) into a fresh folder of two classes.
fn two_classes(name: &str) -> PathBuf {
    let dir = tmp(name);
    for class in ["banana", "cherry"] {
        let to = dir.join(class);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["B0.PNG", "b1.png", "nested/deep.bmp", "a_nested/first.png"] {
            std::fs::copy(fixture().join("banana").join(f), to.join(f.replace('/', "_"))).unwrap();
        }
    }
    dir
}

#[test]
fn a_folder_loads_in_memory_and_streams_the_same_batches() {
    let dir = two_classes("load");
    let folder = ImageFolder::new(&dir).unwrap();
    let memory: Dataset<Images<3, 4, 5>> = folder.load().unwrap();
    assert_eq!((memory.len(), memory.classes(), memory.labels()), (8, 2, &[0, 0, 0, 0, 1, 1, 1, 1][..]));
    let stream = folder.stream::<Images<3, 4, 5>>().unwrap();
    for workers in [0, 2] {
        let mut a = memory.loader(3).unwrap().shuffle(4);
        let mut b = staticnet::DataLoader::new(&stream, 3).unwrap().shuffle(4).num_workers(workers);
        for epoch in 0..2 {
            a.start_epoch(epoch);
            b.start_epoch(epoch);
            while let Some((x, y)) = a.next().unwrap() {
                let (x2, y2) = b.next().unwrap().unwrap();
                assert_eq!((x.as_slice(), y), (x2.as_slice(), y2), "{workers} workers, epoch {epoch}");
            }
            assert!(b.next().unwrap().is_none());
        }
    }
    // One channel: PIL's convert("L").
    let gray: Dataset<Images<1, 4, 5>> = folder.load().unwrap();
    assert_eq!(gray.values().len(), 8 * 20);
}

#[test]
fn a_root_without_class_folders_is_an_error() {
    let dir = tmp("no-classes");
    std::fs::write(dir.join("a.png"), b"x").unwrap();
    let msg = ImageFolder::new(&dir).unwrap_err().to_string();
    assert!(msg.contains(&format!("{}: holds no class folders", dir.display())), "{msg}");
    let msg = ImageFolder::new(dir.join("missing")).unwrap_err().to_string();
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn an_empty_class_folder_is_an_error_naming_it() {
    let dir = two_classes("empty-class");
    std::fs::create_dir_all(dir.join("durian/sub")).unwrap();
    std::fs::write(dir.join("durian/readme.txt"), b"no images").unwrap();
    let msg = ImageFolder::new(&dir).unwrap_err().to_string();
    assert!(msg.contains(&format!("no image files in {}", dir.join("durian").display())) && msg.contains(".png"), "{msg}");
}

#[test]
fn a_corrupt_image_is_an_error_naming_it_or_skipped_with_a_warning() {
    let dir = two_classes("corrupt");
    let bad = dir.join("cherry/zz_broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n but then nothing of a PNG").unwrap();
    let folder = ImageFolder::new(&dir).unwrap();
    let msg = folder.load::<Images<3, 4, 5>>().unwrap_err().to_string();
    assert!(msg.contains(&format!("{}: not a readable image", bad.display())), "{msg}");
    let msg = folder.stream::<Images<3, 4, 5>>().err().unwrap().to_string();
    assert!(msg.contains(&format!("{}: not a readable image", bad.display())) && msg.contains("skip_corrupt"), "{msg}");
    let skipping = folder.skip_corrupt(true);
    assert_eq!(skipping.load::<Images<3, 4, 5>>().unwrap().len(), 8);
    assert_eq!(skipping.stream::<Images<3, 4, 5>>().unwrap().len(), 8);
}

#[test]
fn an_image_of_another_size_is_an_error_naming_it() {
    let dir = two_classes("size");
    std::fs::copy(fixture().join("apple/2.png"), dir.join("cherry/small.png")).unwrap();
    let folder = ImageFolder::new(&dir).unwrap();
    let msg = folder.load::<Images<3, 4, 5>>().unwrap_err().to_string();
    assert!(msg.contains(&format!("{}: is 3×3", dir.join("cherry/small.png").display())) && msg.contains("Resize"), "{msg}");
    let stream = folder.stream::<Images<3, 4, 5>>().unwrap();
    let mut loader = staticnet::DataLoader::new(&stream, 16).unwrap();
    loader.start_epoch(0);
    let msg = loader.next().err().unwrap().to_string();
    assert!(msg.contains("small.png is 3×3×3 after its transforms"), "{msg}");
}

// ---- CSV ----

fn csv_file(name: &str, text: &str) -> PathBuf {
    let path = tmp("csv").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Rows of a label and 4 pixels, as `Images<1, 2, 2>`.
const GOOD: &str = "label,p0,p1,p2,p3\n3,0,255,51,102\n1,255,255,0,0\n";

#[test]
fn a_kaggle_csv_reads_as_the_notebook_does() {
    let path = csv_file("good.csv", GOOD);
    let d: Dataset<Images<1, 2, 2>> = CsvDataset::new(&path).classes(10).load().unwrap();
    assert_eq!((d.len(), d.classes(), d.labels()), (2, 10, &[3, 1][..]));
    assert_eq!(d.sample(0).unwrap(), [0.0, 1.0, 0.2, 0.4]);
    // The label by name, another scale, another column.
    let path = csv_file("named.csv", "p0,p1,p2,p3,digit\n0,2,4,6,7\n");
    let d: Dataset<Images<1, 2, 2>> = CsvDataset::new(&path).label_name("digit").scale(0.5).load().unwrap();
    assert_eq!((d.labels(), d.sample(0).unwrap(), d.classes()), (&[7][..], &[0.0, 1.0, 2.0, 3.0][..], 8));
}

#[test]
fn a_bad_csv_row_is_an_error_naming_line_and_column() {
    let cases = [
        ("cell.csv", "label,p0,p1,p2,p3\n3,0,255,51,102\n1,255,x,0,0\n", "line 3, column 3: `x` is not a finite number"),
        ("label.csv", "label,p0,p1,p2,p3\n-3,0,255,51,102\n", "line 2, column 1: the label `-3` is not a whole number"),
        ("class.csv", "label,p0,p1,p2,p3\n12,0,255,51,102\n", "line 2, column 1: the label 12 is not one of the 10 classes"),
        ("short.csv", "label,p0,p1,p2,p3\n3,0,255,51,102\n1,255,0\n", "line 3: 3 columns, but a sample here is a label and 4 values (5 columns)"),
        ("nan.csv", "label,p0,p1,p2,p3\n3,0,NaN,51,102\n", "line 2, column 3: `NaN` is not a finite number"),
        ("empty.csv", "label,p0,p1,p2,p3\n", "holds no rows of samples"),
    ];
    for (name, text, expected) in cases {
        let path = csv_file(name, text);
        let msg = CsvDataset::new(&path).classes(10).load::<Images<1, 2, 2>>().unwrap_err().to_string();
        assert!(msg.starts_with(&path.display().to_string()) && msg.contains(expected), "{name}: {msg}");
    }
    let msg = CsvDataset::new(csv_file("good2.csv", GOOD)).label_name("digit").load::<Images<1, 2, 2>>().unwrap_err().to_string();
    assert!(msg.contains("has no column named `digit`"), "{msg}");
}
