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
pub mod csv;
pub mod image_folder;
mod loader;
pub mod mnist;
pub mod transforms;

use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use image_folder::{ImageFolder, ImageStream};
pub use loader::{DataLoader, Pooled, Source};
use transforms::Image;

use crate::batch::Batch;
use crate::{Error, Result};

/// Labelled samples of one shape, in memory. Cloning one shares its samples (a loader's
/// workers read them without a copy); changing a clone's samples copies them first.
#[derive(Clone, Debug)]
pub struct Dataset<I: Batch> {
    /// Every sample's values, one after the other.
    values: Arc<Vec<f32>>,
    labels: Arc<Vec<usize>>,
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
        Ok(Dataset { values: Arc::new(values), labels: Arc::new(labels), classes, name, _shape: std::marker::PhantomData })
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

    /// Every sample's values, one after the other.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Sample `i`'s values; past the end, an error naming the set and its length.
    pub fn sample(&self, i: usize) -> Result<&[f32]> {
        if i >= self.len() {
            return Err(Error::bad_input(format!("{}: there is no sample {i}: the set holds {} samples", self.name, self.len())));
        }
        Ok(self.values_of(i))
    }

    /// Sample `i`'s values, `i` known to be in range.
    fn values_of(&self, i: usize) -> &[f32] {
        &self.values[i * I::SAMPLE_LEN..(i + 1) * I::SAMPLE_LEN]
    }

    /// How many samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in self.labels.iter() {
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
        for sample in Arc::make_mut(&mut self.values).chunks_exact_mut(I::SAMPLE_LEN) {
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

    /// The samples at `indices`, in that order; an index past the end is an error.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset<I>> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            self.sample(i)?;
        }
        let mut values = Vec::with_capacity(indices.len().saturating_mul(I::SAMPLE_LEN));
        for &i in indices {
            values.extend_from_slice(self.values_of(i));
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Dataset { values: Arc::new(values), labels: Arc::new(labels), classes: self.classes, name: self.name.clone(), _shape: std::marker::PhantomData })
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
        let (mut first, mut second) = (self.subset(a)?, self.subset(b)?);
        first.name = format!("{} (train split)", self.name);
        second.name = format!("{} (validation split)", self.name);
        Ok((first, second))
    }

    /// The samples whose label passes `keep`, with labels mapped by `relabel` (for a task on a
    /// subset of the classes, as digits 5–9 relabelled 0–4).
    pub fn filter_classes(&self, keep: impl Fn(usize) -> bool, relabel: impl Fn(usize) -> usize, classes: usize) -> Result<Dataset<I>> {
        let indices: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i])).collect();
        let out = self.subset(&indices)?;
        let labels = out.labels.iter().map(|&l| relabel(l)).collect();
        Dataset::new(out.name.clone(), out.values.to_vec(), labels, classes)
    }

    /// A loader of batches of `batch_size`, in order; call [`DataLoader::shuffle`] for
    /// shuffled epochs.
    pub fn loader(&self, batch_size: usize) -> Result<DataLoader<I>> {
        DataLoader::new(self, batch_size)
    }
}

impl<I: Batch + 'static> Source<I> for Dataset<I> {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }

    fn read(&self, i: usize, img: &mut Image) -> Result<()> {
        let values = self.sample(i)?;
        let (c, h, w) = match I::SHAPE {
            [c, h, w] => (*c, *h, *w),
            _ => (1, 1, I::SAMPLE_LEN),
        };
        (img.channels, img.height, img.width) = (c, h, w);
        img.data.clear();
        img.data.extend_from_slice(values);
        Ok(())
    }

    fn read_into(&self, i: usize, _img: &mut Image, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(self.sample(i)?);
        Ok(())
    }

    fn shared(&self) -> Arc<dyn Source<I>> {
        Arc::new(self.clone())
    }
}
