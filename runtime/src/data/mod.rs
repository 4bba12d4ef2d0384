//! Data sets typed by their sample shape, and the loader that batches them.
//!
//! A [`Dataset<Images<1, 28, 28>>`](Dataset) only fits a network whose input is
//! `Images<1, 28, 28>`: handing CIFAR-10 to an MNIST network does not compile.
//!
//! - [`mnist`]: MNIST in the IDX format (plain or gzipped, the official file names);
//! - [`cifar10`]: CIFAR-10 in its binary format;
//! - [`Dataset::normalize`], [`Dataset::split`]: the course's `transforms.Normalize` and its
//!   `SubsetRandomSampler` train/validation recipe;
//! - [`DataLoader`]: shuffled batches, the last one smaller, reusing its buffers.

pub mod cifar10;
pub mod mnist;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::batch::Batch;
use crate::{Error, Result};

/// Labelled samples of one shape, in memory.
#[derive(Clone, Debug)]
pub struct Dataset<I: Batch> {
    /// Every sample's values, one after the other.
    values: Vec<f32>,
    labels: Vec<usize>,
    classes: usize,
    /// Where it came from, for messages ("MNIST train").
    name: String,
    _shape: std::marker::PhantomData<I>,
}

impl<I: Batch> Dataset<I> {
    /// A data set from its values (sample after sample) and labels in `0..classes`.
    pub fn new(name: impl Into<String>, values: Vec<f32>, labels: Vec<usize>, classes: usize) -> Result<Self> {
        let name = name.into();
        if values.len() != labels.len() * I::SAMPLE_LEN {
            return Err(Error::bad_input(format!(
                "{name}: {} labels need {} values ({} per sample shaped {:?}), got {}",
                labels.len(),
                labels.len() * I::SAMPLE_LEN,
                I::SAMPLE_LEN,
                I::SHAPE,
                values.len()
            )));
        }
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(Error::bad_input(format!("{name}: label {l} of sample {i} is not one of the {classes} classes")));
        }
        Ok(Dataset { values, labels, classes, name, _shape: std::marker::PhantomData })
    }

    /// The name it was given, used in messages (`"mnist train"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of samples (`len(dataset)`).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it has no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of classes the labels are drawn from.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Every sample's label, in order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Sample `i`'s values.
    pub fn sample(&self, i: usize) -> &[f32] {
        &self.values[i * I::SAMPLE_LEN..(i + 1) * I::SAMPLE_LEN]
    }

    /// How many samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// `transforms.Normalize(mean, std)`: per channel, `(x − mean) / std`. One value applies to
    /// every channel; otherwise give one per channel (`SHAPE[0]` of an image).
    pub fn normalize(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        let channels = if I::SHAPE.len() == 3 { I::SHAPE[0] } else { 1 };
        let ok = |v: &[f32]| v.len() == 1 || v.len() == channels;
        if !ok(mean) || !ok(std) || mean.len() != std.len() {
            return Err(Error::bad_input(format!(
                "{}: normalize needs one mean and one std, or one of each per channel ({channels}), got {} and {}",
                self.name,
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| **s <= 0.0 || !s.is_finite()) {
            return Err(Error::bad_input(format!("{}: normalize needs positive standard deviations, got {s}", self.name)));
        }
        let plane = I::SAMPLE_LEN / channels;
        for sample in self.values.chunks_exact_mut(I::SAMPLE_LEN) {
            for (c, values) in sample.chunks_exact_mut(plane).enumerate() {
                let (m, s) = (mean[c % mean.len()], std[c % std.len()]);
                values.iter_mut().for_each(|v| *v = (*v - m) / s);
            }
        }
        Ok(())
    }

    /// Per-channel mean and standard deviation over the whole set (what `Normalize` is fed).
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let channels = if I::SHAPE.len() == 3 { I::SHAPE[0] } else { 1 };
        let plane = I::SAMPLE_LEN / channels;
        let mut sums = vec![(0.0f64, 0.0f64); channels];
        for sample in self.values.chunks_exact(I::SAMPLE_LEN) {
            for (c, values) in sample.chunks_exact(plane).enumerate() {
                for &v in values {
                    sums[c].0 += v as f64;
                    sums[c].1 += (v as f64) * (v as f64);
                }
            }
        }
        let count = (self.len() * plane).max(1) as f64;
        sums.iter()
            .map(|&(s, sq)| {
                let m = s / count;
                (m as f32, ((sq / count - m * m).max(0.0)).sqrt() as f32)
            })
            .unzip()
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset<I> {
        let mut values = Vec::with_capacity(indices.len() * I::SAMPLE_LEN);
        for &i in indices {
            values.extend_from_slice(self.sample(i));
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Dataset { values, labels, classes: self.classes, name: self.name.clone(), _shape: std::marker::PhantomData }
    }

    /// The course's train/validation split (`SubsetRandomSampler` over shuffled indices): the
    /// indices are shuffled with `seed`, the first `train` go to the first set, the rest to the
    /// second.
    pub fn split(&self, train: usize, seed: u64) -> Result<(Dataset<I>, Dataset<I>)> {
        if train > self.len() {
            return Err(Error::bad_input(format!("{}: cannot split {train} samples off a set of {}", self.name, self.len())));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (a, b) = order.split_at(train);
        let (mut first, mut second) = (self.subset(a), self.subset(b));
        first.name = format!("{} (train split)", self.name);
        second.name = format!("{} (validation split)", self.name);
        Ok((first, second))
    }

    /// The samples whose label passes `keep`, with labels mapped by `relabel` (for a task on a
    /// subset of the classes, as digits 5–9 relabelled 0–4).
    pub fn filter_classes(&self, keep: impl Fn(usize) -> bool, relabel: impl Fn(usize) -> usize, classes: usize) -> Result<Dataset<I>> {
        let indices: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i])).collect();
        let mut out = self.subset(&indices);
        out.labels.iter_mut().for_each(|l| *l = relabel(*l));
        Dataset::new(out.name, out.values, out.labels, classes)
    }

    /// A loader of batches of `batch_size`, in order; call [`DataLoader::shuffle`] for
    /// shuffled epochs.
    pub fn loader(&self, batch_size: usize) -> Result<DataLoader<'_, I>> {
        DataLoader::new(self, batch_size)
    }
}

/// Batches of a data set (PyTorch's `DataLoader`): in order, or in a new shuffled order each
/// epoch; the last batch holds what is left (`drop_last=False`). The batch buffers are reused,
/// so iterating allocates nothing after the first batch.
pub struct DataLoader<'a, I: Batch> {
    data: &'a Dataset<I>,
    batch_size: usize,
    seed: Option<u64>,
    order: Vec<usize>,
    pos: usize,
    batch: I,
    labels: Vec<usize>,
}

impl<'a, I: Batch> DataLoader<'a, I> {
    /// Batches of `batch_size` samples of `data`, in order (`DataLoader(data, batch_size)`); an
    /// error for a batch size of 0.
    pub fn new(data: &'a Dataset<I>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::bad_input(format!("{}: the batch size must be at least 1", data.name)));
        }
        Ok(DataLoader {
            data,
            batch_size,
            seed: None,
            order: (0..data.len()).collect(),
            pos: 0,
            batch: I::from_vec(0, Vec::with_capacity(batch_size * I::SAMPLE_LEN))?,
            labels: Vec::with_capacity(batch_size),
        })
    }

    /// Shuffle every epoch, each epoch's order drawn from `seed` and the epoch number.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The number of samples per batch (the last batch may have fewer).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch, the last one possibly smaller.
    pub fn batches(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }

    /// Starts epoch `epoch` (from 0): rewinds, and reshuffles if shuffling.
    pub fn start_epoch(&mut self, epoch: u64) {
        self.pos = 0;
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i;
        }
        if let Some(seed) = self.seed {
            self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
    }

    /// The next batch of the epoch and its labels, or `None` at its end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(&I, &[usize])> {
        if self.pos >= self.order.len() {
            return None;
        }
        let take = &self.order[self.pos..(self.pos + self.batch_size).min(self.order.len())];
        self.pos += take.len();
        self.batch.resize(take.len());
        self.labels.clear();
        for (dst, &i) in self.batch.as_mut_slice().chunks_exact_mut(I::SAMPLE_LEN).zip(take) {
            dst.copy_from_slice(self.data.sample(i));
            self.labels.push(self.data.labels[i]);
        }
        Some((&self.batch, &self.labels))
    }
}

/// Reads a whole file, gunzipping it when it starts with gzip's magic bytes.
pub(crate) fn read_maybe_gz(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| Error::file(path, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}
