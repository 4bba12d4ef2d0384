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
    /// Channels (1 or 3 for images).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// The values, channel after channel, row after row.
    pub data: Vec<f32>,
    /// A second buffer for transforms that change the size (see [`Image::reshape_with`]).
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
    /// Transforms `img` in place (its size may change), drawing random parameters from `rng`.
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

// ---- torchvision.transforms.v2.functional, on float images ----

use rand::Rng;

use crate::Error;

fn bad(what: &str, msg: String) -> Error {
    Error::bad_input(format!("{what}: {msg}"))
}

/// `F.crop`: the `height × width` window at (`top`, `left`); parts outside the image are 0, as
/// torchvision pads them.
pub fn crop(img: &mut Image, top: isize, left: isize, height: usize, width: usize) {
    let (c, h, w) = (img.channels, img.height as isize, img.width as isize);
    img.reshape_with(c, height, width, |old, out| {
        for ch in 0..c {
            let src = old.plane(ch);
            for y in 0..height {
                let sy = top + y as isize;
                let row = &mut out[(ch * height + y) * width..][..width];
                if !(0..h).contains(&sy) {
                    continue;
                }
                for (x, v) in row.iter_mut().enumerate() {
                    let sx = left + x as isize;
                    if (0..w).contains(&sx) {
                        *v = src[(sy * w + sx) as usize];
                    }
                }
            }
        }
    });
}

/// `F.pad` with a constant `fill`: `left`, `top`, `right`, `bottom` pixels added.
pub fn pad(img: &mut Image, left: usize, top: usize, right: usize, bottom: usize, fill: f32) {
    let (c, h, w) = (img.channels, img.height, img.width);
    let (nh, nw) = (h + top + bottom, w + left + right);
    img.reshape_with(c, nh, nw, |old, out| {
        out.fill(fill);
        for ch in 0..c {
            let src = old.plane(ch);
            for y in 0..h {
                out[(ch * nh + y + top) * nw + left..][..w].copy_from_slice(&src[y * w..][..w]);
            }
        }
    });
}

/// `F.center_crop`: the centred `height × width` window (Python's `round`, halves to even),
/// after zero padding if the image is smaller.
pub fn center_crop(img: &mut Image, height: usize, width: usize) {
    if height > img.height || width > img.width {
        let (ph, pw) = (height.saturating_sub(img.height), width.saturating_sub(img.width));
        pad(img, pw / 2, ph / 2, pw.div_ceil(2), ph.div_ceil(2), 0.0);
        if (img.height, img.width) == (height, width) {
            return;
        }
    }
    let top = round_half_even((img.height - height) as f64 / 2.0) as isize;
    let left = round_half_even((img.width - width) as f64 / 2.0) as isize;
    crop(img, top, left, height, width);
}

/// Python's `round` (`round(2.5) == 2`).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 { 2.0 * (x / 2.0).round() } else { r }
}

/// `F.horizontal_flip`.
pub fn horizontal_flip(img: &mut Image) {
    let w = img.width;
    img.data.chunks_exact_mut(w).for_each(|row| row.reverse());
}

/// `F.resize` with bilinear interpolation and antialiasing (torchvision's defaults): PIL's
/// separable triangle filter, widened by the scale when shrinking, as PyTorch's
/// `interpolate(mode="bilinear", antialias=True, align_corners=False)` computes it.
pub fn resize(img: &mut Image, height: usize, width: usize) {
    if (height, width) == (img.height, img.width) {
        return;
    }
    let (c, h, w) = (img.channels, img.height, img.width);
    // Along the width, then along the height.
    let wx = filter_weights(w, width);
    img.reshape_with(c, h, width, |old, out| {
        for (src, dst) in old.data.chunks_exact(w).zip(out.chunks_exact_mut(width)) {
            for (x, (start, weights)) in wx.iter().enumerate() {
                dst[x] = weights.iter().zip(&src[*start..]).map(|(k, v)| *k * *v as f64).sum::<f64>() as f32;
            }
        }
    });
    let wy = filter_weights(h, height);
    img.reshape_with(c, height, width, |old, out| {
        for ch in 0..c {
            let src = old.plane(ch);
            for (y, (start, weights)) in wy.iter().enumerate() {
                let row = &mut out[(ch * height + y) * width..][..width];
                for x in 0..width {
                    row[x] = weights.iter().enumerate().map(|(k, wgt)| wgt * src[(start + k) * width + x] as f64).sum::<f64>() as f32;
                }
            }
        }
    });
}

/// For each output position, the first input index and the normalised weights of the
/// antialiased triangle filter (`_compute_indices_weights_aa` in PyTorch).
fn filter_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5) as isize).max(0) as usize;
            let xmax = ((center + support + 0.5) as isize).min(input as isize) as usize;
            let mut weights: Vec<f64> = (xmin..xmax).map(|j| (1.0 - ((j as f64 - center + 0.5) * inv).abs()).max(0.0)).collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (xmin, weights)
        })
        .collect()
}

/// `F.rotate` by `angle` degrees counter-clockwise about the centre, nearest neighbour (the
/// default), the corners outside the image filled with `fill`: the tensor kernel's affine grid
/// and `grid_sample(align_corners=False)`, in float32 as it computes them.
pub fn rotate(img: &mut Image, angle: f64, fill: f32) {
    let angle = angle.rem_euclid(360.0);
    let (c, h, w) = (img.channels, img.height, img.width);
    if angle == 0.0 {
        return;
    }
    // The inverse rotation matrix (`_get_inverse_affine_matrix` with -angle, centre 0).
    let rot = (-angle).to_radians();
    let (a, b, cc, d) = (rot.cos(), -rot.sin(), rot.sin(), rot.cos());
    let m = [d as f32, -b as f32, 0.0f32, -cc as f32, a as f32, 0.0f32];
    // `theta / [0.5 w, 0.5 h]`, as `_affine_grid` divides before its matrix product.
    let (hw, hh) = (0.5 * w as f32, 0.5 * h as f32);
    let t = [m[0] / hw, m[1] / hw, m[2] / hw, m[3] / hh, m[4] / hh, m[5] / hh];
    img.reshape_with(c, h, w, |old, out| {
        for y in 0..h {
            let gy = y as f32 - (h as f32 - 1.0) * 0.5;
            for x in 0..w {
                let gx = x as f32 - (w as f32 - 1.0) * 0.5;
                // The grid in [-1, 1], then grid_sample's unnormalisation (align_corners=False).
                let nx = gx * t[0] + gy * t[1] + t[2];
                let ny = gx * t[3] + gy * t[4] + t[5];
                let ix = ((nx + 1.0) * w as f32 - 1.0) / 2.0;
                let iy = ((ny + 1.0) * h as f32 - 1.0) / 2.0;
                let (sx, sy) = (ix.round_ties_even(), iy.round_ties_even());
                let inside = sx >= 0.0 && sy >= 0.0 && (sx as usize) < w && (sy as usize) < h;
                for ch in 0..c {
                    out[(ch * h + y) * w + x] = if inside { old.data[(ch * h + sy as usize) * w + sx as usize] } else { fill };
                }
            }
        }
    });
}

fn check_channels(what: &str, img: &Image) -> Result<()> {
    if img.channels == 1 || img.channels == 3 { Ok(()) } else { Err(bad(what, format!("images of 1 or 3 channels, not {}", img.channels))) }
}

/// `_blend`: `ratio·img + (1 − ratio)·other`, clamped to [0, 1].
fn blend(v: f32, other: f32, ratio: f32) -> f32 {
    (v * ratio + other * (1.0 - ratio)).clamp(0.0, 1.0)
}

/// `F.adjust_brightness`.
pub fn adjust_brightness(img: &mut Image, factor: f32) -> Result<()> {
    check_channels("adjust_brightness", img)?;
    img.data.iter_mut().for_each(|v| *v = (*v * factor).clamp(0.0, 1.0));
    Ok(())
}

/// The grey value of pixel `i` of an RGB image (`0.2989 R + 0.587 G + 0.114 B`).
fn grey(img: &Image, i: usize) -> f32 {
    let n = img.height * img.width;
    img.data[i] * 0.2989 + img.data[n + i] * 0.587 + img.data[2 * n + i] * 0.114
}

/// `F.adjust_contrast`: blend with the mean grey value.
pub fn adjust_contrast(img: &mut Image, factor: f32) -> Result<()> {
    check_channels("adjust_contrast", img)?;
    let n = img.height * img.width;
    let sum: f64 = if img.channels == 3 { (0..n).map(|i| grey(img, i) as f64).sum() } else { img.data.iter().map(|&v| v as f64).sum() };
    let mean = (sum / n.max(1) as f64) as f32;
    img.data.iter_mut().for_each(|v| *v = blend(*v, mean, factor));
    Ok(())
}

/// `F.adjust_saturation`: blend with the grey image (a one-channel image is left as it is).
pub fn adjust_saturation(img: &mut Image, factor: f32) -> Result<()> {
    check_channels("adjust_saturation", img)?;
    if img.channels == 1 {
        return Ok(());
    }
    let n = img.height * img.width;
    for i in 0..n {
        let g = grey(img, i);
        for c in 0..3 {
            img.data[c * n + i] = blend(img.data[c * n + i], g, factor);
        }
    }
    Ok(())
}

/// `F.rgb_to_grayscale` to `channels` (1 or 3) channels.
pub fn rgb_to_grayscale(img: &mut Image, channels: usize) -> Result<()> {
    check_channels("rgb_to_grayscale", img)?;
    if channels != 1 && channels != 3 {
        return Err(bad("Grayscale", format!("num_output_channels must be 1 or 3, got {channels}")));
    }
    let (h, w, n) = (img.height, img.width, img.height * img.width);
    let from = img.channels;
    img.reshape_with(channels, h, w, |old, out| {
        for i in 0..n {
            let g = if from == 3 { grey(old, i) } else { old.data[i] };
            for c in 0..channels {
                out[c * n + i] = g;
            }
        }
    });
    Ok(())
}

/// `F.normalize`: `(x − mean[c]) / std[c]` per channel (one value applies to all).
pub fn normalize(img: &mut Image, mean: &[f32], std: &[f32]) -> Result<()> {
    let c = img.channels;
    let ok = |v: &[f32]| v.len() == 1 || v.len() == c;
    if !ok(mean) || !ok(std) {
        return Err(bad("Normalize", format!("{} means and {} stds for an image of {c} channels", mean.len(), std.len())));
    }
    let n = img.height * img.width;
    for ch in 0..c {
        let (m, s) = (mean[ch % mean.len()], std[ch % std.len()]);
        img.data[ch * n..(ch + 1) * n].iter_mut().for_each(|v| *v = (*v - m) / s);
    }
    Ok(())
}

// ---- the transforms, as torchvision.transforms.v2 names and parameterises them ----

/// A size given as one number (a square, or for `Resize` the smaller edge) or as `(h, w)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// `size=s`.
    One(usize),
    /// `size=(h, w)`.
    Exact(usize, usize),
}

impl From<usize> for Size {
    fn from(s: usize) -> Size {
        Size::One(s)
    }
}

impl From<(usize, usize)> for Size {
    fn from((h, w): (usize, usize)) -> Size {
        Size::Exact(h, w)
    }
}

impl Size {
    fn square(self) -> (usize, usize) {
        match self {
            Size::One(s) => (s, s),
            Size::Exact(h, w) => (h, w),
        }
    }
}

/// `transforms.v2.Resize(size)`: bilinear with antialiasing. One number matches the smaller
/// edge to it, keeping the aspect ratio (`int(size * long / short)` for the other).
#[derive(Clone, Copy, Debug)]
pub struct Resize(pub Size);

impl Resize {
    /// `Resize(size)`.
    pub fn new(size: impl Into<Size>) -> Resize {
        Resize(size.into())
    }
}

impl Transform for Resize {
    fn apply(&self, img: &mut Image, _: &mut ChaCha8Rng) -> Result<()> {
        let (h, w) = match self.0 {
            Size::Exact(h, w) => (h, w),
            Size::One(s) => {
                let (short, long) = if img.width <= img.height { (img.width, img.height) } else { (img.height, img.width) };
                let other = (s as f64 * long as f64 / short.max(1) as f64) as usize;
                if img.width <= img.height { (other, s) } else { (s, other) }
            }
        };
        if h == 0 || w == 0 {
            return Err(bad("Resize", format!("a {}×{} image would become {h}×{w}", img.height, img.width)));
        }
        resize(img, h, w);
        Ok(())
    }
}

/// `transforms.v2.CenterCrop(size)`.
#[derive(Clone, Copy, Debug)]
pub struct CenterCrop(pub Size);

impl CenterCrop {
    /// `CenterCrop(size)`.
    pub fn new(size: impl Into<Size>) -> CenterCrop {
        CenterCrop(size.into())
    }
}

impl Transform for CenterCrop {
    fn apply(&self, img: &mut Image, _: &mut ChaCha8Rng) -> Result<()> {
        let (h, w) = self.0.square();
        center_crop(img, h, w);
        Ok(())
    }
}

/// `transforms.v2.RandomCrop(size, padding=None, pad_if_needed=False, fill=0)`: pads, then
/// crops at a uniformly drawn position.
#[derive(Clone, Copy, Debug)]
pub struct RandomCrop {
    /// The crop, `size` or `(h, w)`.
    pub size: Size,
    /// Left, top, right, bottom.
    pub padding: [usize; 4],
    /// Pads the image to the crop's size first if it is smaller.
    pub pad_if_needed: bool,
    /// The value of the padding (0, black).
    pub fill: f32,
}

impl RandomCrop {
    /// `RandomCrop(size)`: no padding, fill 0.
    pub fn new(size: impl Into<Size>) -> RandomCrop {
        RandomCrop { size: size.into(), padding: [0; 4], pad_if_needed: false, fill: 0.0 }
    }

    /// `padding=p`: `p` pixels on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p; 4];
        self
    }

    /// `pad_if_needed=True`.
    pub fn pad_if_needed(mut self, yes: bool) -> Self {
        self.pad_if_needed = yes;
        self
    }

    /// `fill=v`: the value padded pixels get.
    pub fn fill(mut self, fill: f32) -> Self {
        self.fill = fill;
        self
    }
}

impl RandomCrop {
    /// The padding (left, top, right, bottom) and the crop's top-left corner in the padded
    /// image, for an image of `height × width`, as torchvision's `make_params` draws them.
    pub fn params(&self, height: usize, width: usize, rng: &mut ChaCha8Rng) -> Result<([usize; 4], usize, usize)> {
        let (ch, cw) = self.size.square();
        let [mut left, mut top, mut right, mut bottom] = self.padding;
        let (mut ph, mut pw) = (height + top + bottom, width + left + right);
        if self.pad_if_needed {
            if ph < ch {
                let d = ch - ph;
                (top, bottom, ph) = (top + d, bottom + d, ph + 2 * d);
            }
            if pw < cw {
                let d = cw - pw;
                (left, right, pw) = (left + d, right + d, pw + 2 * d);
            }
        }
        if ph < ch || pw < cw {
            return Err(bad("RandomCrop", format!("the crop {ch}×{cw} is larger than the (padded) image {ph}×{pw}")));
        }
        let y = if ph > ch { rng.random_range(0..=ph - ch) } else { 0 };
        let x = if pw > cw { rng.random_range(0..=pw - cw) } else { 0 };
        Ok(([left, top, right, bottom], y, x))
    }
}

impl Transform for RandomCrop {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        let ([left, top, right, bottom], y, x) = self.params(img.height, img.width, rng)?;
        if left + top + right + bottom > 0 {
            pad(img, left, top, right, bottom, self.fill);
        }
        let (ch, cw) = self.size.square();
        crop(img, y as isize, x as isize, ch, cw);
        Ok(())
    }
}

/// `transforms.v2.RandomHorizontalFlip(p=0.5)`.
#[derive(Clone, Copy, Debug)]
pub struct RandomHorizontalFlip(pub f32);

impl RandomHorizontalFlip {
    /// `RandomHorizontalFlip(p)`: flips with probability `p`.
    pub fn new(p: f32) -> RandomHorizontalFlip {
        RandomHorizontalFlip(p)
    }
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip(0.5)
    }
}

impl RandomHorizontalFlip {
    /// Whether this draw flips (`torch.rand(1) < p`).
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> bool {
        rng.random::<f32>() < self.0
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        if self.draw(rng) {
            horizontal_flip(img);
        }
        Ok(())
    }
}

/// `transforms.v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3))`: a window of a
/// random area fraction and aspect ratio (ten tries, then the central crop), resized to `size`.
#[derive(Clone, Copy, Debug)]
pub struct RandomResizedCrop {
    /// The output size.
    pub size: Size,
    /// The range of the window's area, as a fraction of the image's.
    pub scale: (f64, f64),
    /// The range of the window's aspect ratio (width / height), drawn on a log scale.
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// `RandomResizedCrop(size)`: scale (0.08, 1.0), ratio (3/4, 4/3).
    pub fn new(size: impl Into<Size>) -> RandomResizedCrop {
        RandomResizedCrop { size: size.into(), scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }

    /// `scale=(lo, hi)`.
    pub fn scale(mut self, lo: f64, hi: f64) -> Self {
        self.scale = (lo, hi);
        self
    }

    /// `ratio=(lo, hi)`.
    pub fn ratio(mut self, lo: f64, hi: f64) -> Self {
        self.ratio = (lo, hi);
        self
    }

    /// The window (top, left, height, width) for an image of `height × width`, as
    /// torchvision's `make_params` draws it.
    pub fn params(&self, height: usize, width: usize, rng: &mut ChaCha8Rng) -> (usize, usize, usize, usize) {
        let area = (height * width) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * rng.random::<f64>());
            let aspect = (lr0 + (lr1 - lr0) * rng.random::<f64>()).exp();
            let w = round_half_even((target * aspect).sqrt()) as usize;
            let h = round_half_even((target / aspect).sqrt()) as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let i = rng.random_range(0..=height - h);
                let j = rng.random_range(0..=width - w);
                return (i, j, h, w);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (lo, hi) = (self.ratio.0.min(self.ratio.1), self.ratio.0.max(self.ratio.1));
        let (h, w) = if in_ratio < lo {
            (round_half_even(width as f64 / lo) as usize, width)
        } else if in_ratio > hi {
            (height, round_half_even(height as f64 * hi) as usize)
        } else {
            (height, width)
        };
        ((height - h) / 2, (width - w) / 2, h, w)
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        let (top, left, h, w) = self.params(img.height, img.width, rng);
        crop(img, top as isize, left as isize, h, w);
        let (oh, ow) = self.size.square();
        resize(img, oh, ow);
        Ok(())
    }
}

/// `transforms.v2.RandomRotation(degrees)`: an angle drawn uniformly from
/// `[-degrees, degrees]`, nearest neighbour, corners filled with `fill` (0).
#[derive(Clone, Copy, Debug)]
pub struct RandomRotation {
    /// The range the angle is drawn from, in degrees.
    pub degrees: (f64, f64),
    /// The value of the corners that come from outside the image.
    pub fill: f32,
}

impl RandomRotation {
    /// `RandomRotation(degrees)`: an angle in `[-degrees, degrees]`.
    pub fn new(degrees: f64) -> RandomRotation {
        RandomRotation { degrees: (-degrees.abs(), degrees.abs()), fill: 0.0 }
    }

    /// `degrees=(lo, hi)`.
    pub fn range(lo: f64, hi: f64) -> RandomRotation {
        RandomRotation { degrees: (lo, hi), fill: 0.0 }
    }

    /// `fill=v`.
    pub fn fill(mut self, fill: f32) -> Self {
        self.fill = fill;
        self
    }
}

impl RandomRotation {
    /// An angle drawn uniformly from the range.
    pub fn angle(&self, rng: &mut ChaCha8Rng) -> f64 {
        self.degrees.0 + (self.degrees.1 - self.degrees.0) * rng.random::<f64>()
    }
}

impl Transform for RandomRotation {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        rotate(img, self.angle(rng), self.fill);
        Ok(())
    }
}

/// `transforms.v2.ColorJitter(brightness, contrast, saturation)`: each factor drawn uniformly
/// from `[max(0, 1 − x), 1 + x]`, applied in a random order, as torchvision does.
#[derive(Clone, Copy, Debug, Default)]
pub struct ColorJitter {
    /// The range of the brightness factor, if jittered.
    pub brightness: Option<(f32, f32)>,
    /// The range of the contrast factor, if jittered.
    pub contrast: Option<(f32, f32)>,
    /// The range of the saturation factor, if jittered.
    pub saturation: Option<(f32, f32)>,
}

fn jitter_range(x: f32) -> Option<(f32, f32)> {
    (x != 0.0).then_some(((1.0 - x).max(0.0), 1.0 + x))
}

impl ColorJitter {
    /// `ColorJitter()`: jitters nothing until told.
    pub fn new() -> ColorJitter {
        ColorJitter::default()
    }

    /// `brightness=x`: a factor in `[max(0, 1 − x), 1 + x]`.
    pub fn brightness(mut self, x: f32) -> Self {
        self.brightness = jitter_range(x);
        self
    }

    /// `contrast=x`: a factor in `[max(0, 1 − x), 1 + x]`.
    pub fn contrast(mut self, x: f32) -> Self {
        self.contrast = jitter_range(x);
        self
    }

    /// `saturation=x`: a factor in `[max(0, 1 − x), 1 + x]`.
    pub fn saturation(mut self, x: f32) -> Self {
        self.saturation = jitter_range(x);
        self
    }
}

/// What one [`ColorJitter`] draw applies: the order of brightness (0), contrast (1),
/// saturation (2) and hue (3, never set here), and the factors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    /// The order the adjustments are applied in (torchvision's `fn_idx`).
    pub order: [usize; 4],
    /// The brightness factor, if jittered.
    pub brightness: Option<f32>,
    /// The contrast factor, if jittered.
    pub contrast: Option<f32>,
    /// The saturation factor, if jittered.
    pub saturation: Option<f32>,
}

impl ColorJitter {
    /// torchvision's `make_params`: `torch.randperm(4)`, then one factor per adjustment set.
    pub fn params(&self, rng: &mut ChaCha8Rng) -> JitterParams {
        let mut order = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut draw = |r: Option<(f32, f32)>| r.map(|(lo, hi)| lo + (hi - lo) * rng.random::<f32>());
        let (brightness, contrast, saturation) = (draw(self.brightness), draw(self.contrast), draw(self.saturation));
        JitterParams { order, brightness, contrast, saturation }
    }
}

impl Transform for ColorJitter {
    fn apply(&self, img: &mut Image, rng: &mut ChaCha8Rng) -> Result<()> {
        let JitterParams { order, brightness: b, contrast: c, saturation: s } = self.params(rng);
        for op in order {
            match (op, b, c, s) {
                (0, Some(f), _, _) => adjust_brightness(img, f)?,
                (1, _, Some(f), _) => adjust_contrast(img, f)?,
                (2, _, _, Some(f)) => adjust_saturation(img, f)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// `transforms.v2.Grayscale(num_output_channels=1)`.
#[derive(Clone, Copy, Debug)]
pub struct Grayscale(pub usize);

impl Grayscale {
    /// `Grayscale(num_output_channels)` (1 or 3).
    pub fn new(num_output_channels: usize) -> Grayscale {
        Grayscale(num_output_channels)
    }
}

impl Transform for Grayscale {
    fn apply(&self, img: &mut Image, _: &mut ChaCha8Rng) -> Result<()> {
        rgb_to_grayscale(img, self.0)
    }
}

/// `transforms.v2.Normalize(mean, std)`.
#[derive(Clone, Debug)]
pub struct Normalize {
    /// Per channel (or one for all).
    pub mean: Vec<f32>,
    /// Per channel (or one for all).
    pub std: Vec<f32>,
}

impl Normalize {
    /// `Normalize(mean, std)`.
    pub fn new(mean: &[f32], std: &[f32]) -> Normalize {
        Normalize { mean: mean.to_vec(), std: std.to_vec() }
    }
}

impl Transform for Normalize {
    fn apply(&self, img: &mut Image, _: &mut ChaCha8Rng) -> Result<()> {
        normalize(img, &self.mean, &self.std)
    }
}
