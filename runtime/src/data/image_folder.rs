//! torchvision's `ImageFolder`: images under `root/<class>/…`, the classes sorted by name and
//! numbered from 0, the files of each class sorted (every folder below it, as `os.walk`), only
//! the extensions of `torchvision.datasets.folder.IMG_EXTENSIONS`.
//!
//! Images are decoded with the `image` crate and converted to the network's channels: RGB as
//! PIL's `convert("RGB")` (alpha dropped), or one channel as PIL's `convert("L")`
//! (`L = R·299/1000 + G·587/1000 + B·114/1000`), then scaled to [0, 1] as `ToTensor()` does.
//!
//! ```text
//! let folder = ImageFolder::new("data/train")?;
//! println!("classes: {:?}", folder.classes());
//! let train: Dataset<Images<1, 28, 28>> = folder.load()?;        // decoded once, in memory
//! let stream: ImageStream<Images<3, 224, 224>> = folder.stream()?; // decoded per batch
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{DynamicImage, ImageReader};

use super::loader::Source;
use super::transforms::{Image, Transform, sample_rng};
use super::Dataset;
use crate::batch::Batch;
use crate::{Error, Result};

/// `torchvision.datasets.folder.IMG_EXTENSIONS`.
pub const IMG_EXTENSIONS: [&str; 9] = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];

/// The images of a folder of class folders, listed (not yet decoded).
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    skip_corrupt: bool,
}

impl ImageFolder {
    /// Lists `root` as torchvision's `ImageFolder(root)` does. A root without class folders, or a
    /// class folder without a single image, is an error naming it.
    pub fn new(root: impl AsRef<Path>) -> Result<ImageFolder> {
        let root = root.as_ref();
        let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
        let mut classes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(root, e))?;
            // `entry.is_dir()` in Python follows symbolic links, as `Path::is_dir` does.
            if entry.path().is_dir() {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if classes.is_empty() {
            return Err(Error::file(root, "holds no class folders: an ImageFolder is root/<class>/<image>, e.g. root/cat/001.png"));
        }
        classes.sort();
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (index, class) in classes.iter().enumerate() {
            let before = samples.len();
            for (dir, mut files) in walk(&root.join(class))? {
                files.sort();
                for f in files {
                    if has_image_extension(&f) {
                        samples.push((dir.join(&f), index));
                    }
                }
            }
            if samples.len() == before {
                empty.push(root.join(class));
            }
        }
        if let Some(first) = empty.first() {
            let names: Vec<String> = empty.iter().map(|p| p.display().to_string()).collect();
            return Err(Error::file(first, format!("no image files in {}; the extensions read are {}", names.join(", "), IMG_EXTENSIONS.join(" "))));
        }
        Ok(ImageFolder { root: root.to_path_buf(), classes, samples, skip_corrupt: false })
    }

    /// With `true`, a file that cannot be decoded is left out with a printed warning (and a
    /// count) instead of being an error.
    pub fn skip_corrupt(mut self, skip: bool) -> Self {
        self.skip_corrupt = skip;
        self
    }

    /// The class names, by index (`dataset.classes`).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Each class name with its index (`dataset.class_to_idx`, in index order).
    pub fn class_to_idx(&self) -> Vec<(&str, usize)> {
        self.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect()
    }

    /// Every image file and its class, in order (`dataset.samples`).
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// How many image files it lists.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Lists no image (never, once [`ImageFolder::new`] succeeded).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Decodes every image once, into memory, as samples shaped `I` (`[C, H, W]` with C 1 or 3;
    /// every image must already be H × W: use [`ImageFolder::load_transformed`] with a `Resize`
    /// otherwise). Decoding runs on all cores.
    pub fn load<I: Batch>(&self) -> Result<Dataset<I>> {
        self.load_with::<I>(None)
    }

    /// [`ImageFolder::load`] with `transform` applied to each image before it is stored (a
    /// deterministic preprocessing such as `Resize` + `CenterCrop`; random parameters are drawn
    /// once, with seed 0).
    pub fn load_transformed<I: Batch>(&self, transform: &dyn Transform) -> Result<Dataset<I>> {
        self.load_with::<I>(Some(transform))
    }

    fn load_with<I: Batch>(&self, transform: Option<&dyn Transform>) -> Result<Dataset<I>> {
        use rayon::prelude::*;
        let channels = channels_of::<I>()?;
        let name = self.root.display().to_string();
        let decoded: Vec<Result<Option<Vec<f32>>>> = self
            .samples
            .par_iter()
            .enumerate()
            .map(|(i, (path, _))| {
                let mut img = Image::default();
                match decode(path, channels, &mut img) {
                    Ok(()) => {}
                    Err(e) if self.skip_corrupt => {
                        eprintln!("warning: skipped {e}");
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
                if let Some(t) = transform {
                    t.apply(&mut img, &mut sample_rng(0, 0, i as u64)).map_err(|e| Error::file(path, e.to_string()))?;
                }
                let mut out = vec![0.0; I::SAMPLE_LEN];
                check_shape::<I>(path, &img, &mut out)?;
                Ok(Some(out))
            })
            .collect();
        let mut values = Vec::new();
        values.try_reserve_exact(self.samples.len() * I::SAMPLE_LEN).map_err(|_| Error::file(&self.root, "there is not enough memory to hold its images decoded: stream them instead"))?;
        let mut labels = Vec::with_capacity(self.samples.len());
        let mut skipped = 0;
        for (d, (_, label)) in decoded.into_iter().zip(&self.samples) {
            match d? {
                Some(v) => {
                    values.extend_from_slice(&v);
                    labels.push(*label);
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            eprintln!("warning: {name}: skipped {skipped} file(s) that could not be decoded");
        }
        Dataset::new(name, values, labels, self.classes.len())
    }

    /// A source that decodes each image when a batch needs it (on the loader's workers), so that
    /// a folder larger than memory trains in the memory of a few batches. Each file's header is
    /// read now (not its pixels): a file that is not an image is found before training (skipped
    /// with a warning under [`ImageFolder::skip_corrupt`]).
    pub fn stream<I: Batch>(&self) -> Result<ImageStream<I>> {
        let channels = channels_of::<I>()?;
        let mut samples = Vec::with_capacity(self.samples.len());
        let mut skipped = 0;
        for (path, label) in &self.samples {
            let header = ImageReader::open(path).map_err(|e| Error::io(path, e))?.with_guessed_format().map_err(|e| Error::io(path, e))?.into_dimensions();
            match header {
                Ok(_) => samples.push((path.clone(), *label)),
                Err(e) if self.skip_corrupt => {
                    eprintln!("warning: skipped {}: not a readable image ({e})", path.display());
                    skipped += 1;
                }
                Err(e) => return Err(Error::file(path, format!("not a readable image ({e}); ImageFolder::skip_corrupt(true) leaves such files out"))),
            }
        }
        if skipped > 0 {
            eprintln!("warning: {}: skipped {skipped} file(s) that could not be read", self.root.display());
        }
        let labels = samples.iter().map(|(_, l)| *l).collect();
        Ok(ImageStream {
            inner: Arc::new(StreamInner { name: self.root.display().to_string(), samples, labels, classes: self.classes.len(), channels }),
            _shape: std::marker::PhantomData,
        })
    }
}

/// Images of an [`ImageFolder`] decoded as batches need them (see [`ImageFolder::stream`]).
pub struct ImageStream<I: Batch> {
    inner: Arc<StreamInner>,
    _shape: std::marker::PhantomData<I>,
}

struct StreamInner {
    name: String,
    samples: Vec<(PathBuf, usize)>,
    labels: Vec<usize>,
    classes: usize,
    channels: usize,
}

impl<I: Batch> Source<I> for ImageStream<I> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn len(&self) -> usize {
        self.inner.samples.len()
    }

    fn classes(&self) -> usize {
        self.inner.classes
    }

    fn labels(&self) -> &[usize] {
        &self.inner.labels
    }

    fn describe(&self, i: usize) -> String {
        self.inner.samples.get(i).map_or_else(|| format!("sample {i}"), |(p, _)| p.display().to_string())
    }

    fn read(&self, i: usize, img: &mut Image) -> Result<()> {
        let (path, _) = self.inner.samples.get(i).ok_or_else(|| Error::bad_input(format!("{}: there is no sample {i}", self.inner.name)))?;
        decode(path, self.inner.channels, img)
    }

    fn shared(&self) -> Arc<dyn Source<I>> {
        Arc::new(ImageStream::<I> { inner: self.inner.clone(), _shape: std::marker::PhantomData })
    }
}

/// The channels of the network's images: 1 (L) or 3 (RGB).
fn channels_of<I: Batch>() -> Result<usize> {
    match I::SHAPE {
        [c @ (1 | 3), _, _] => Ok(*c),
        shape => Err(Error::bad_input(format!("an ImageFolder gives images of 1 or 3 channels, [C, H, W]; the network takes samples shaped {shape:?}"))),
    }
}

/// Copies an image into a sample, if it has the sample's shape.
fn check_shape<I: Batch>(path: &Path, img: &Image, out: &mut [f32]) -> Result<()> {
    super::loader::copy_sample::<I>(img, out, String::new)
        .map_err(|_| Error::file(path, format!("is {}×{} (after its transforms), but the network takes {:?}: add a Resize or CenterCrop", img.height, img.width, I::SHAPE)))
}

/// Every folder below `dir` (itself included) with its files, sorted by path as Python sorts
/// `os.walk`'s tuples; symbolic links to folders are followed, as `os.walk(followlinks=True)`.
fn walk(dir: &Path) -> Result<Vec<(PathBuf, Vec<String>)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.push((d, files));
    }
    out.sort_by(|a, b| a.0.to_string_lossy().cmp(&b.0.to_string_lossy()));
    Ok(out)
}

/// `has_file_allowed_extension`: the lower-cased name ends with one of the extensions.
fn has_image_extension(name: &str) -> bool {
    let lower = name.to_lowercase();
    IMG_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// Decodes an image file into `img` as `channels` channels of values in [0, 1].
pub fn decode(path: &Path, channels: usize, img: &mut Image) -> Result<()> {
    let decoded = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::file(path, format!("not a readable image ({e})")))?;
    from_dynamic(&decoded, channels, img);
    Ok(())
}

/// A decoded image as `channels` planes of values in [0, 1], converted as PIL converts.
fn from_dynamic(decoded: &DynamicImage, channels: usize, img: &mut Image) {
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    (img.channels, img.height, img.width) = (channels, h, w);
    img.data.clear();
    img.data.resize(channels * h * w, 0.0);
    let plane = h * w;
    match (channels, decoded) {
        (1, DynamicImage::ImageLuma8(gray)) => {
            for (v, p) in img.data.iter_mut().zip(gray.as_raw()) {
                *v = *p as f32 / 255.0;
            }
        }
        (1, _) => {
            // PIL's convert("L"): L = (R·19595 + G·38470 + B·7471 + 2^15) >> 16.
            for (v, p) in img.data.iter_mut().zip(decoded.to_rgb8().pixels()) {
                let [r, g, b] = p.0.map(u32::from);
                *v = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as f32 / 255.0;
            }
        }
        _ => {
            for (i, p) in decoded.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    img.data[c * plane + i] = p.0[c] as f32 / 255.0;
                }
            }
        }
    }
}
