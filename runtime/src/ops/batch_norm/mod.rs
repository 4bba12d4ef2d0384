//! Batch normalization, PyTorch's `nn.BatchNorm2d` and `nn.BatchNorm1d`.
//!
//! Tensors (per batch of `n`), with `s` = spatial positions per channel (h·w, or 1 for 1-D):
//! - input `x` and output `y` (n, c, s)
//! - params `wb`: weight γ (c) then bias β (c), when `affine`
//! - buffers `running`: running_mean (c) then running_var (c), when `track_running_stats`
//! - `saved` (4c): the mean (c) and the inverse standard deviation (c) the forward normalised
//!   with (batch statistics in training, running ones in evaluation), then room for the
//!   backward's per-channel sums (2c)
//!
//! In training the batch variance is the biased one (divided by n·s), while the running variance
//! is updated with the unbiased one (divided by n·s − 1), exactly as PyTorch does.

pub(crate) mod cpu;

/// A batch-norm layer with fixed sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// Channels (`num_features`).
    pub c: usize,
    /// Positions per channel and sample: h·w for 2-D, 1 for 1-D.
    pub spatial: usize,
    pub eps: f32,
    /// Weight of the new statistic in the running average; `None` is PyTorch's cumulative
    /// average (`momentum=None`).
    pub momentum: Option<f32>,
    pub affine: bool,
    pub track_running_stats: bool,
}

impl BatchNorm {
    pub const fn new(c: usize, spatial: usize, eps: f32, momentum: Option<f32>, affine: bool, track_running_stats: bool) -> Self {
        BatchNorm { c, spatial, eps, momentum, affine, track_running_stats }
    }

    /// Parameter elements: γ and β, or none.
    pub const fn param_len(&self) -> usize {
        if self.affine { 2 * self.c } else { 0 }
    }

    /// Running-statistics elements: mean and variance, or none.
    pub const fn buffer_len(&self) -> usize {
        if self.track_running_stats { 2 * self.c } else { 0 }
    }

    pub const fn x_len(&self) -> usize {
        self.c * self.spatial
    }

    /// Floats the forward saves for the backward (see the module docs).
    pub const fn saved_len(&self) -> usize {
        4 * self.c
    }

    /// The weight of this batch's statistics in the running average, given the value of
    /// `num_batches_tracked` after this batch: `momentum`, or 1/count for `momentum=None`.
    pub fn factor(&self, batches_tracked: i64) -> f32 {
        match self.momentum {
            Some(m) => m,
            None => 1.0 / batches_tracked.max(1) as f32,
        }
    }

    /// Operations of the forward pass for one sample (normalise, scale, shift).
    pub const fn flops(&self) -> u64 {
        (4 * self.x_len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random};

    #[test]
    fn training_forward_normalises_and_updates_running_stats_like_pytorch() {
        let op = BatchNorm::new(3, 5, 1e-5, Some(0.1), true, true);
        let n = 4;
        let x = random(n * op.x_len(), 7);
        let wb: Vec<f32> = (0..6).map(|i| 0.5 + i as f32 * 0.25).collect();
        let mut running = vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut saved = vec![0.0; op.saved_len()];
        let mut y = vec![0.0; x.len()];
        cpu::forward_train(&op, n, &x, Some(&wb), Some(&mut running), 0.1, &mut saved, &mut y);
        for ch in 0..3 {
            let vals: Vec<f64> = (0..n).flat_map(|b| (0..5).map(move |s| (b, s))).map(|(b, s)| x[b * 15 + ch * 5 + s] as f64).collect();
            let m = vals.iter().sum::<f64>() / 20.0;
            let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 20.0;
            let want_y: Vec<f64> = vals.iter().map(|v| (v - m) / (var + 1e-5).sqrt() * wb[ch] as f64 + wb[3 + ch] as f64).collect();
            let got_y: Vec<f32> = (0..n).flat_map(|b| (0..5).map(move |s| (b, s))).map(|(b, s)| y[b * 15 + ch * 5 + s]).collect();
            assert_close(&got_y, &want_y, 1e-5, "y");
            assert_close(&[running[ch]], &[0.1 * m], 1e-5, "running_mean");
            assert_close(&[running[3 + ch]], &[0.9 + 0.1 * var * 20.0 / 19.0], 1e-5, "running_var");
        }
    }
}
