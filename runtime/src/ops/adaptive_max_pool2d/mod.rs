//! Adaptive max pooling, PyTorch's `nn.AdaptiveMaxPool2d`: each output is the maximum of the
//! window `staticnet_shape::adaptive_window` gives it (the windows of `nn.AdaptiveAvgPool2d`).
//!
//! The forward keeps no indices; the backward finds each window's argmax again as PyTorch's
//! kernel does: the first element greater than every one before it in scan order, or the last
//! NaN (a NaN maximum propagates). Windows may overlap, so one input can receive the gradient
//! of several outputs.
//!
//! Tensors (per batch of `n`): input `x` (n, c, h_in, w_in), output `y` (n, c, h_out, w_out).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// An adaptive max pooling with every size fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveMaxPool2d {
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Output height (PyTorch's `output_size[0]`).
    pub h_out: usize,
    /// Output width (PyTorch's `output_size[1]`).
    pub w_out: usize,
}

impl AdaptiveMaxPool2d {
    /// Pooling of `c` channels of `in_hw` down to `out_hw`.
    pub const fn new(c: usize, in_hw: [usize; 2], out_hw: [usize; 2]) -> Self {
        assert!(in_hw[0] > 0 && in_hw[1] > 0 && out_hw[0] > 0 && out_hw[1] > 0, "AdaptiveMaxPool2d: sizes must be positive");
        AdaptiveMaxPool2d { c, h_in: in_hw[0], w_in: in_hw[1], h_out: out_hw[0], w_out: out_hw[1] }
    }

    /// Elements of one input sample.
    pub const fn x_len(&self) -> usize {
        self.c * self.h_in * self.w_in
    }

    /// Elements of one output sample.
    pub const fn y_len(&self) -> usize {
        self.c * self.h_out * self.w_out
    }

    /// Comparisons of the forward pass for one sample: every input is read at least once.
    pub const fn flops(&self) -> u64 {
        let x = self.x_len();
        let y = self.y_len();
        (if x > y { x } else { y }) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    /// The definition in f64, windows written out (⌊i·in/out⌋ to ⌈(i+1)·in/out⌉).
    fn naive(op: &AdaptiveMaxPool2d, n: usize, x: &[f64]) -> Vec<f64> {
        let window = |i: usize, len: usize, out: usize| ((i * len) / out, ((i + 1) * len + out - 1) / out);
        let mut y = vec![0.0; n * op.y_len()];
        for plane in 0..n * op.c {
            for oy in 0..op.h_out {
                let (y0, y1) = window(oy, op.h_in, op.h_out);
                for ox in 0..op.w_out {
                    let (x0, x1) = window(ox, op.w_in, op.w_out);
                    let mut m = f64::NEG_INFINITY;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            m = m.max(x[(plane * op.h_in + iy) * op.w_in + ix]);
                        }
                    }
                    y[(plane * op.h_out + oy) * op.w_out + ox] = m;
                }
            }
        }
        y
    }

    #[test]
    fn backward_matches_finite_differences() {
        // 7 -> 3 (overlapping windows of 3), 30 -> 3 (activations_mix's 14 -> 3), upsampling 3 -> 5.
        let cases = [
            AdaptiveMaxPool2d::new(2, [7, 7], [3, 3]),
            AdaptiveMaxPool2d::new(3, [14, 14], [3, 3]),
            AdaptiveMaxPool2d::new(2, [3, 4], [5, 2]),
            AdaptiveMaxPool2d::new(4, [5, 5], [1, 1]),
        ];
        for op in cases {
            let n = 2;
            // Distinct values (random ones are), so that the maximum is differentiable.
            let (x, dy) = (random(n * op.x_len(), 29), random(n * op.y_len(), 30));
            let mut y = vec![f32::NAN; n * op.y_len()];
            cpu::forward(&op, n, &x, &mut y);
            assert_close(&y, &naive(&op, n, &to_f64(&x)), 1e-7, &format!("forward of {op:?}"));
            let mut dx = vec![f32::NAN; x.len()];
            cpu::backward(&op, n, &x, &dy, &mut dx);
            assert_close(&dx, &numeric_grad(|x| naive(&op, n, x), &x, &dy), 1e-4, &format!("dx of {op:?}"));
        }
    }

    #[test]
    fn ties_go_to_the_first_and_nan_propagates() {
        // 1x4 -> 1x1 with a tie: PyTorch's gradient goes to the first of the equal maxima.
        let op = AdaptiveMaxPool2d::new(1, [1, 4], [1, 1]);
        let x = [1.0, 3.0, 3.0, 2.0];
        let mut y = [0.0];
        cpu::forward(&op, 1, &x, &mut y);
        assert_eq!(y, [3.0]);
        let mut dx = [f32::NAN; 4];
        cpu::backward(&op, 1, &x, &[1.0], &mut dx);
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0]);
        cpu::forward(&op, 1, &[1.0, f32::NAN, 5.0, 2.0], &mut y);
        assert!(y[0].is_nan(), "a NaN in the window gives NaN, as torch.nn.AdaptiveMaxPool2d does");
    }
}
