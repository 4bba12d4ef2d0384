//! `torchvision.transforms.v2` for images as float tensors: named, parameterised and composed as
//! in torchvision, applied to one sample at a time by a data loader's workers.
//!
//! ```text
//! use staticnet::data::transforms::{Compose, RandomCrop, RandomHorizontalFlip, Normalize};
//! let train = Compose::new()
//!     .then(RandomCrop::new(32).padding(4))
//!     .then(RandomHorizontalFlip::new(0.5))
//!     .then(Normalize::new(&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]));
//! ```
//!
//! An image enters as `transforms.ToTensor()` leaves it: channels × height × width, values in
//! [0, 1]. Random parameters are drawn from [`sample_rng`]`(seed, epoch, index)`, so that a run
//! is reproducible and a resumed run sees the same augmented batches as an uninterrupted one.

use rand::SeedableRng;
/// The random generator transforms draw from (re-exported, so that a transform of your own
/// needs no dependency of its own).
pub use rand_chacha::ChaCha8Rng;

use crate::Result;

/// One image being transformed: `channels × height × width` floats, row after row, channel
/// after channel (a `[C, H, W]` tensor). `spare` is a second buffer that transforms changing the
/// size write into before swapping, so that a worker reusing its `Image` allocates nothing once
/// both buffers have grown to the largest size seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
    pub spare: Vec<f32>,
}

impl Image {
    /// An image from its values (`channels × height × width` of them).
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Image {
        debug_assert_eq!(data.len(), channels * height * width);
        Image { channels, height, width, data, spare: Vec::new() }
    }

    /// The values of channel `c`.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }

    /// Replaces the image by one of `channels × height × width` that `fill` writes from the old
    /// one (`fill(old, new)`), through the spare buffer: no allocation once it is large enough.
    pub fn reshape_with(&mut self, channels: usize, height: usize, width: usize, fill: impl FnOnce(&Image, &mut [f32])) {
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        out.resize(channels * height * width, 0.0);
        fill(self, &mut out);
        self.spare = std::mem::replace(&mut self.data, out);
        (self.channels, self.height, self.width) = (channels, height, width);
    }
}

/// A transform of one image, as a `torchvision.transforms.v2` module: `apply` is its `forward`,
/// drawing its random parameters (if any) from `rng`.
pub trait Transform: Send + Sync {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()>;
}

/// Transforms applied in order (`transforms.Compose([...])`).
#[derive(Default)]
pub struct Compose {
    transforms: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// No transform yet: the identity.
    pub fn new() -> Compose {
        Compose::default()
    }

    /// Appends `t`.
    #[allow(clippy::should_implement_trait)]
    pub fn then(mut self, t: impl Transform + 'static) -> Compose {
        self.transforms.push(Box::new(t));
        self
    }

    /// No transforms at all.
    pub fn is_empty(&self) -> bool {
        self.transforms.is_empty()
    }
}

impl Transform for Compose {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        self.transforms.iter().try_for_each(|t| t.apply(img, rng))
    }
}

/// The random stream of sample `index` in epoch `epoch` of a run seeded with `seed`: a pure
/// function of the three, whatever worker applies the transforms and in whatever order.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(epoch.wrapping_add(0x51_7cc1_b727_220a))));
    rng.set_stream(index);
    rng
}

/// SplitMix64's finaliser: spreads nearby inputs (epochs 0, 1, 2) far apart.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
