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

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// A batch-norm layer with fixed sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// Channels (`num_features`).
    pub c: usize,
    /// Positions per channel and sample: h·w for 2-D, 1 for 1-D.
    pub spatial: usize,
    /// Added to the variance before the square root (PyTorch's default 1e-5).
    pub eps: f32,
    /// Weight of the new statistic in the running average; `None` is PyTorch's cumulative
    /// average (`momentum=None`).
    pub momentum: Option<f32>,
    /// Learns γ (weight) and β (bias).
    pub affine: bool,
    /// Keeps running statistics for eval mode.
    pub track_running_stats: bool,
}

impl BatchNorm {
    /// A batch norm of `c` channels of `spatial` positions each.
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

    /// Elements of one sample.
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
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    /// The definition, in f64, on `v` = x followed by γ and β: with batch statistics (biased
    /// variance) or with the given running ones.
    fn naive(op: &BatchNorm, n: usize, v: &[f64], running: Option<&[f32]>) -> Vec<f64> {
        let (c, s) = (op.c, op.spatial);
        let (x, wb) = v.split_at(n * c * s);
        let mut y = vec![0.0; x.len()];
        for ch in 0..c {
            let at = |b: usize, i: usize| (b * c + ch) * s + i;
            let (mean, var) = match running {
                Some(r) => (r[ch] as f64, r[c + ch] as f64),
                None => {
                    let m = (0..n).flat_map(|b| (0..s).map(move |i| (b, i))).map(|(b, i)| x[at(b, i)]).sum::<f64>() / (n * s) as f64;
                    let var = (0..n).flat_map(|b| (0..s).map(move |i| (b, i))).map(|(b, i)| (x[at(b, i)] - m).powi(2)).sum::<f64>() / (n * s) as f64;
                    (m, var)
                }
            };
            for b in 0..n {
                for i in 0..s {
                    y[at(b, i)] = (x[at(b, i)] - mean) / (var + op.eps as f64).sqrt() * wb[ch] + wb[c + ch];
                }
            }
        }
        y
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Planes of whole vectors and a remainder, of one float, of whole vectors only, and smaller
        // than a vector (the CPU's partial sums deal those round in turn).
        for (op, n) in [
            (BatchNorm::new(3, 5 * 7, 1e-5, Some(0.1), true, true), 3),
            (BatchNorm::new(6, 1, 1e-5, Some(0.1), true, true), 5),
            (BatchNorm::new(4, 16, 1e-5, Some(0.1), true, true), 3),
            (BatchNorm::new(5, 4, 1e-5, Some(0.1), true, true), 7),
        ] {
            let x = random(n * op.x_len(), 11);
            let wb: Vec<f32> = random(2 * op.c, 12).iter().map(|v| v + 1.0).collect();
            let dy = random(x.len(), 13);
            let v: Vec<f32> = x.iter().chain(&wb).copied().collect();
            let running: Vec<f32> = (0..2 * op.c).map(|i| if i < op.c { 0.1 * i as f32 } else { 0.5 + 0.2 * i as f32 }).collect();
            for training in [true, false] {
                let mut saved = vec![0.0; op.saved_len()];
                let mut y = vec![f32::NAN; x.len()];
                if training {
                    cpu::forward_train(&op, n, &x, Some(&wb), Some(&mut running.clone()), 0.1, &mut saved, &mut y);
                } else {
                    cpu::forward_eval(&op, n, &x, Some(&wb), &running, &mut saved, &mut y);
                }
                let reference = if training { None } else { Some(&running[..]) };
                assert_close(&y, &naive(&op, n, &to_f64(&v), reference), 1e-5, "forward");
                let mut dx = vec![f32::NAN; x.len()];
                let mut dwb = vec![0.0; wb.len()];
                cpu::backward(&op, n, training, &x, Some(&wb), &mut saved, &dy, Some(&mut dx), Some(&mut dwb));
                let want = numeric_grad(|v| naive(&op, n, v, reference), &v, &dy);
                let (want_dx, want_dwb) = want.split_at(x.len());
                assert_close(&dx, want_dx, 1e-4, &format!("dx (training {training}) of {op:?}"));
                assert_close(&dwb, want_dwb, 1e-4, &format!("dwb (training {training}) of {op:?}"));
            }
        }
    }

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
