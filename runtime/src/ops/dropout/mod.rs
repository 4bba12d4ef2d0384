//! Dropout, PyTorch's `nn.Dropout` and `nn.Dropout2d`: in training each element (`Dropout`) or
//! each whole channel of each sample (`Dropout2d`) is zeroed with probability `p` and the rest
//! scaled by 1/(1−p); in evaluation it is the identity.
//!
//! The mask is never stored. Element `i` is kept when a counter-based hash of (`key`, `i / plane`)
//! is at least `p` (`plane` is 1 for `Dropout`, a channel's h·w for `Dropout2d`, so that a
//! channel's elements share one draw), so the backward regenerates the same mask, a run is reproducible for a seed, and a
//! GPU kernel can draw the very same mask.
//!
//! Tensors (per batch of `n`): input `x`, output `y`, both (n, len).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// A dropout layer with a fixed sample size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Elements of one sample.
    pub len: usize,
    /// Probability of zeroing an element, in [0, 1] (1 zeroes every element, as in PyTorch).
    pub p: f32,
    /// Consecutive elements that share one draw: 1 for `Dropout`, h·w for `Dropout2d`.
    pub plane: usize,
}

impl Dropout {
    /// Dropout of `p` on samples of `len` elements.
    pub const fn new(len: usize, p: f32) -> Self {
        assert!(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1]");
        Dropout { len, p, plane: 1 }
    }

    /// `nn.Dropout2d(p)` on samples of `c` channels of `plane` (h·w) elements each: whole
    /// channels are dropped.
    pub const fn channels(c: usize, plane: usize, p: f32) -> Self {
        assert!(p >= 0.0 && p <= 1.0, "Dropout2d: p must be in [0, 1]");
        assert!(plane > 0, "Dropout2d: empty channels");
        Dropout { len: c * plane, p, plane }
    }

    /// 1/(1−p), the scale of the kept elements; 0 for p = 1, where no element is kept (so that
    /// no kernel ever multiplies by an infinite scale).
    pub fn scale(&self) -> f32 {
        if self.p >= 1.0 { 0.0 } else { 1.0 / (1.0 - self.p) }
    }

    /// The mask key of one training forward: it differs per seed, per forward and per layer.
    pub fn key(seed: u64, step: u64, layer: u32) -> u64 {
        mix(mix(seed ^ 0x5eed_5eed_5eed_5eed).wrapping_add(step).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ layer as u64)
    }

    /// Whether element `i` (counted over the whole batch) survives under `key`: draw number
    /// `i / plane` of a splitmix64 stream, a 24-bit uniform, is ≥ p.
    #[inline]
    pub fn keep(&self, key: u64, i: usize) -> bool {
        let draw = (i / self.plane) as u64;
        let u = mix(key.wrapping_add(draw.wrapping_mul(0x9e37_79b9_7f4a_7c15))) >> 40;
        u as f32 >= self.p * (1u32 << 24) as f32
    }
}

/// The splitmix64 finaliser: a bijective mix of 64 bits.
#[inline]
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_one_drops_everything_to_zero() {
        let op = Dropout::new(1000, 1.0);
        assert_eq!(op.scale(), 0.0);
        let x = vec![f32::MAX; op.len];
        let mut y = vec![f32::NAN; op.len];
        cpu::forward(&op, 1, Dropout::key(3, 0, 0), &x, &mut y);
        assert!(y.iter().all(|&v| v == 0.0), "p = 1 must give exact zeros");
    }

    #[test]
    fn drops_about_p_and_scales_the_rest() {
        let op = Dropout::new(10_000, 0.3);
        let x = vec![1.0f32; 2 * op.len];
        let mut y = vec![0.0; x.len()];
        let key = Dropout::key(42, 0, 1);
        cpu::forward(&op, 2, key, &x, &mut y);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped {dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        // The backward regenerates the same mask.
        let mut dx = vec![0.0; x.len()];
        cpu::backward(&op, 2, key, &x, &mut dx);
        assert_eq!(dx, y);
        // Another forward step draws another mask.
        let mut y2 = vec![0.0; x.len()];
        cpu::forward(&op, 2, Dropout::key(42, 1, 1), &x, &mut y2);
        assert_ne!(y, y2);
    }

    #[test]
    fn dropout2d_drops_whole_channels() {
        // 2 samples × 400 channels of 3×5: every channel is all kept or all dropped, about p of
        // them dropped, and samples draw independently.
        let (c, plane, n) = (400, 15, 2);
        let op = Dropout::channels(c, plane, 0.25);
        let x = vec![1.0f32; n * op.len];
        let mut y = vec![f32::NAN; x.len()];
        cpu::forward(&op, n, Dropout::key(5, 0, 0), &x, &mut y);
        let mut dropped = 0;
        for ch in y.chunks(plane) {
            assert!(ch.iter().all(|&v| v == ch[0]), "a channel is dropped or kept whole: {ch:?}");
            assert!(ch[0] == 0.0 || (ch[0] - 1.0 / 0.75).abs() < 1e-6);
            dropped += (ch[0] == 0.0) as usize;
        }
        let rate = dropped as f64 / (n * c) as f64;
        assert!((rate - 0.25).abs() < 0.05, "dropped {rate} of the channels");
        assert_ne!(y[..op.len], y[op.len..], "each sample draws its own channels");
    }

    #[test]
    fn backward_matches_finite_differences() {
        use crate::ops::testing::{assert_close, numeric_grad, random};
        // With its mask fixed by the key, dropout is linear: y_i = x_i·keep_i/(1−p).
        let (op, n, key) = (Dropout::new(37, 0.4), 3, Dropout::key(7, 3, 2));
        let (x, dy) = (random(n * op.len, 18), random(n * op.len, 19));
        let f = |x: &[f64]| x.iter().enumerate().map(|(i, &v)| if op.keep(key, i) { v / 0.6 } else { 0.0 }).collect::<Vec<_>>();
        let mut dx = vec![f32::NAN; x.len()];
        cpu::backward(&op, n, key, &dy, &mut dx);
        assert_close(&dx, &numeric_grad(f, &x, &dy), 1e-4, "dx");
    }
}
