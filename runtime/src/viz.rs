//! Pictures of a network: torchvision's `make_grid` (a batch of images tiled into one, each
//! scaled to [0, 1]) and `save_image`, as PNG; used for a convolution's filters and for feature
//! maps ([`Network::activation`](crate::Network::activation)).
//!
//! ```text
//! let maps = model.activation("cnn1")?;                  // [N, 16, 28, 28]
//! let digit = maps.index_axis(Axis(0), 0).to_owned();    // [16, 28, 28]: one map per channel
//! viz::make_grid(&digit.into_dyn(), &GridOptions::new().nrow(4).scale_each(true))?.save_png("cnn1.png")?;
//! ```

use std::path::Path;

use ndarray::{ArrayD, Axis};

use crate::{Error, Result};

/// How [`make_grid`] lays out and scales the images, with torchvision's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridOptions {
    nrow: usize,
    padding: usize,
    pad_value: f32,
    scale_each: bool,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions::new()
    }
}

impl GridOptions {
    /// 8 images per row, 2 pixels of padding of value 0, one scale for the whole batch.
    pub fn new() -> Self {
        GridOptions { nrow: 8, padding: 2, pad_value: 0.0, scale_each: false }
    }

    /// Images per row (`nrow`).
    pub fn nrow(mut self, nrow: usize) -> Self {
        self.nrow = nrow;
        self
    }

    /// Pixels between images and around them (`padding`).
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// The value of the padding, in [0, 1] after scaling (`pad_value`).
    pub fn pad_value(mut self, pad_value: f32) -> Self {
        self.pad_value = pad_value;
        self
    }

    /// Scales each image by its own minimum and maximum rather than the batch's (`scale_each`):
    /// for feature maps, whose channels have ranges of their own.
    pub fn scale_each(mut self, scale_each: bool) -> Self {
        self.scale_each = scale_each;
        self
    }
}

/// An 8-bit image: grey (1 channel) or RGB (3), rows top to bottom, channels interleaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `height × width × channels` bytes.
    pub pixels: Vec<u8>,
}

impl GridImage {
    /// Each pixel repeated `factor` times across and down (nearest neighbour), so that 5×5
    /// filters can be seen.
    pub fn upscale(&self, factor: usize) -> GridImage {
        let factor = factor.max(1);
        let (w, c) = (self.width * factor, self.channels);
        let mut pixels = Vec::with_capacity(self.pixels.len() * factor * factor);
        for y in 0..self.height * factor {
            for x in 0..w {
                let at = ((y / factor) * self.width + x / factor) * c;
                pixels.extend_from_slice(&self.pixels[at..at + c]);
            }
        }
        GridImage { width: w, height: self.height * factor, channels: c, pixels }
    }

    /// The image as a PNG file's bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        use image::ImageEncoder;
        let color = if self.channels == 3 { image::ExtendedColorType::Rgb8 } else { image::ExtendedColorType::L8 };
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&self.pixels, self.width as u32, self.height as u32, color)
            .map_err(|e| Error::bad_input(format!("cannot encode a {}×{} image as PNG: {e}", self.width, self.height)))?;
        Ok(png)
    }

    /// Writes the PNG file (atomically).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), &self.to_png()?)
    }
}

/// torchvision's `save_image(make_grid(tensor, nrow, padding, normalize=True, scale_each,
/// pad_value))`: the images of `tensor`, shaped `[B, C, H, W]` with 1 or 3 channels or
/// `[B, H, W]` (grey), tiled `nrow` to a row, each value scaled from the batch's range (or
/// each image's own) to [0, 1] and then to a byte as `save_image` rounds it. The grid is
/// `ceil(B / nrow) · (H + padding) + padding` pixels high and `min(nrow, B) · (W + padding) +
/// padding` wide; a batch of one image is that image without padding, as in torchvision.
/// (torchvision reads a 3-D tensor as one image `[C, H, W]`; here it is B grey images, as
/// `tensor.unsqueeze(1)` would be there.)
pub fn make_grid(tensor: &ArrayD<f32>, options: &GridOptions) -> Result<GridImage> {
    let shape = tensor.shape();
    let (b, c, h, w) = match *shape {
        [b, c, h, w] if c == 1 || c == 3 => (b, c, h, w),
        [b, h, w] => (b, 1, h, w),
        _ => {
            return Err(Error::bad_input(format!(
                "make_grid takes images shaped [B, 1 or 3, H, W] or [B, H, W], got {shape:?}; pick channels with index_axis, or take one sample's maps as [C, H, W]"
            )));
        }
    };
    if b == 0 || h == 0 || w == 0 || options.nrow == 0 {
        return Err(Error::bad_input(format!("make_grid of {shape:?} with nrow {}: nothing to draw", options.nrow)));
    }
    let values = tensor.as_standard_layout();
    let values = values.as_slice().expect("standard layout");
    let image_len = c * h * w;
    // torchvision's norm_ip: clamp to [low, high], subtract low, divide by max(high - low, 1e-5).
    let range = |v: &[f32]| v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let whole = range(values);
    let scaled = |i: usize, v: f32, ranges: &[(f32, f32)]| {
        let (lo, hi) = if options.scale_each { ranges[i] } else { whole };
        // The width in f64 as torchvision's Python floats, the rest in f32 as its tensors.
        (v.clamp(lo, hi) - lo) / (hi as f64 - lo as f64).max(1e-5) as f32
    };
    let ranges: Vec<(f32, f32)> = values.chunks_exact(image_len).map(range).collect();
    let byte = |v: f32| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
    if b == 1 {
        let mut pixels = vec![0u8; image_len];
        for ch in 0..c {
            for p in 0..h * w {
                pixels[p * c + ch] = byte(scaled(0, values[ch * h * w + p], &ranges));
            }
        }
        return Ok(GridImage { width: w, height: h, channels: c, pixels });
    }
    let pad = options.padding;
    let xmaps = options.nrow.min(b);
    let ymaps = b.div_ceil(xmaps);
    let (cell_h, cell_w) = (h + pad, w + pad);
    let (height, width) = (ymaps * cell_h + pad, xmaps * cell_w + pad);
    let mut pixels = vec![byte(options.pad_value); height * width * c];
    for (i, image) in values.chunks_exact(image_len).enumerate() {
        let (gy, gx) = (i / xmaps, i % xmaps);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (py, px) = (gy * cell_h + pad + y, gx * cell_w + pad + x);
                    pixels[(py * width + px) * c + ch] = byte(scaled(i, image[(ch * h + y) * w + x], &ranges));
                }
            }
        }
    }
    Ok(GridImage { width, height, channels: c, pixels })
}

/// The filters of a convolution (its weight, `[C_out, C_in, kH, kW]`) as one picture: each
/// filter a tile, RGB for 3 input channels, grey for 1, and grey as the mean over its input
/// channels otherwise; `ceil(√C_out)` tiles to a row, 1 pixel of padding, one scale for all.
pub fn filter_grid(weight: &ArrayD<f32>) -> Result<GridImage> {
    let shape = weight.shape();
    let [c_out, c_in, _, _] = *shape else {
        return Err(Error::bad_input(format!("filter_grid takes a convolution's weight [C_out, C_in, kH, kW], got {shape:?}")));
    };
    let nrow = (c_out as f64).sqrt().ceil() as usize;
    let options = GridOptions::new().nrow(nrow.max(1)).padding(1);
    if c_in == 1 || c_in == 3 {
        make_grid(weight, &options)
    } else {
        make_grid(&weight.mean_axis(Axis(1)).expect("C_in > 0"), &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_size_is_torchvisions() {
        // 16 filters of 5×5, 4 to a row, 1 pixel of padding: 4·(5+1)+1 = 25 square.
        let w = ArrayD::from_shape_fn(ndarray::IxDyn(&[16, 1, 5, 5]), |i| (i[0] * 25 + i[2] * 5 + i[3]) as f32);
        let g = filter_grid(&w).unwrap();
        assert_eq!((g.width, g.height, g.channels), (25, 25, 1));
        // The first tile starts after the padding, the smallest value is black, the largest white.
        assert_eq!(g.pixels[0], 0);
        assert_eq!(g.pixels[25 + 1], 0);
        assert_eq!(g.pixels[(3 * 6 + 5) * 25 + 3 * 6 + 5], 255);
        let up = g.upscale(4);
        assert_eq!((up.width, up.height), (100, 100));
        assert!(up.to_png().unwrap().starts_with(b"\x89PNG"));
        let err = make_grid(&ArrayD::zeros(ndarray::IxDyn(&[2, 4, 3, 3])), &GridOptions::new()).unwrap_err();
        assert!(err.to_string().contains("[2, 4, 3, 3]"));
    }
}
