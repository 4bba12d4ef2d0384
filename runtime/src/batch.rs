//! Batches typed by their sample shape.
//!
//! A network declared with `input: [1, 28, 28]` takes `Images<1, 28, 28>`; one declared with
//! `input: [784]` takes `Vectors<784>`. Handing CIFAR-10 images (`Images<3, 32, 32>`) to an MNIST
//! network is therefore a type error at compile time, not a panic at run time.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

use crate::{Error, Result};

/// A batch of samples of one fixed shape, stored contiguously (NCHW for images).
pub trait Batch: Sized + Clone + fmt::Debug + Send + Sync + 'static {
    /// The shape of one sample, e.g. `[1, 28, 28]`.
    const SHAPE: &'static [usize];
    /// Elements of one sample.
    const SAMPLE_LEN: usize;

    /// A batch of `n` samples from their values, sample after sample.
    fn from_vec(n: usize, data: Vec<f32>) -> Result<Self>;
    /// The number of samples.
    fn len(&self) -> usize;
    /// Whether the batch has no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All values, sample after sample.
    fn as_slice(&self) -> &[f32];
    /// All values, sample after sample, to write.
    fn as_mut_slice(&mut self) -> &mut [f32];
    /// The values, without copying them.
    fn into_vec(self) -> Vec<f32>;
    /// Keeps the first `n` samples (a smaller last batch reuses a full batch's memory).
    fn truncate(&mut self, n: usize);
    /// Resizes to `n` samples, new ones zero; the memory is kept for reuse.
    fn resize(&mut self, n: usize);

    /// One sample's values.
    fn sample(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * Self::SAMPLE_LEN..(i + 1) * Self::SAMPLE_LEN]
    }

    /// The batch as an n-dimensional array `[n, ...SHAPE]` (a copy).
    fn to_ndarray(&self) -> ArrayD<f32> {
        let shape: Vec<usize> = std::iter::once(self.len()).chain(Self::SHAPE.iter().copied()).collect();
        ArrayD::from_shape_vec(IxDyn(&shape), self.as_slice().to_vec()).expect("length checked at construction")
    }

    /// A batch from an array shaped `[n, ...SHAPE]`.
    fn from_ndarray(array: &ArrayD<f32>) -> Result<Self> {
        let shape = array.shape();
        if shape.len() != Self::SHAPE.len() + 1 || &shape[1..] != Self::SHAPE {
            return Err(Error::bad_input(format!("an array of shape {shape:?} is not a batch of samples shaped {:?}", Self::SHAPE)));
        }
        Self::from_vec(shape[0], array.iter().copied().collect())
    }
}

fn check_len(n: usize, sample: usize, shape: &[usize], data: &[f32]) -> Result<()> {
    if data.len() != n * sample {
        return Err(Error::bad_input(format!(
            "a batch of {n} samples shaped {shape:?} needs {} values, got {}",
            n * sample,
            data.len()
        )));
    }
    Ok(())
}

macro_rules! batch_type {
    ($(#[$doc:meta])* $name:ident <$(const $p:ident: usize),*>, $shape:expr, $fmt:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq)]
        pub struct $name<$(const $p: usize),*> {
            n: usize,
            data: Vec<f32>,
        }

        impl<$(const $p: usize),*> $name<$($p),*> {
            /// A batch of `n` samples from their values, sample after sample.
            pub fn new(n: usize, data: Vec<f32>) -> Result<Self> {
                <Self as Batch>::from_vec(n, data)
            }

            /// `n` samples of zeros.
            pub fn zeros(n: usize) -> Self {
                $name { n, data: vec![0.0; n * <Self as Batch>::SAMPLE_LEN] }
            }
        }

        impl<$(const $p: usize),*> Batch for $name<$($p),*> {
            const SHAPE: &'static [usize] = &$shape;
            const SAMPLE_LEN: usize = 1 $(* $p)*;

            fn from_vec(n: usize, data: Vec<f32>) -> Result<Self> {
                check_len(n, Self::SAMPLE_LEN, Self::SHAPE, &data)?;
                Ok($name { n, data })
            }
            fn len(&self) -> usize {
                self.n
            }
            fn as_slice(&self) -> &[f32] {
                &self.data
            }
            fn as_mut_slice(&mut self) -> &mut [f32] {
                &mut self.data
            }
            fn into_vec(self) -> Vec<f32> {
                self.data
            }
            fn truncate(&mut self, n: usize) {
                self.n = self.n.min(n);
                self.data.truncate(self.n * Self::SAMPLE_LEN);
            }
            fn resize(&mut self, n: usize) {
                self.n = n;
                self.data.resize(n * Self::SAMPLE_LEN, 0.0);
            }
        }

        impl<$(const $p: usize),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.n $(, $p)*)
            }
        }
    };
}

batch_type!(
    /// A batch of images of `C` channels, `H` rows and `W` columns (NCHW, as in PyTorch).
    Images<const C: usize, const H: usize, const W: usize>, [C, H, W], "Images[{}, {}, {}, {}]"
);

batch_type!(
    /// A batch of feature vectors of length `F` (the input of an MLP, or a classifier's logits).
    Vectors<const F: usize>, [F], "Vectors[{}, {}]"
);

impl<const F: usize> Vectors<F> {
    /// The index of the largest value of each sample (the predicted class of logits).
    pub fn argmax(&self) -> Vec<usize> {
        self.data
            .chunks_exact(F)
            .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0)
            .collect()
    }
}

/// Outputs that are one score per class, so that cross-entropy applies to them.
pub trait Logits: Batch {
    /// The number of classes: the length of one sample.
    const CLASSES: usize;
}

impl<const F: usize> Logits for Vectors<F> {
    const CLASSES: usize = F;
}
