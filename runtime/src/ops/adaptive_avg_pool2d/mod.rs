//! Adaptive average pooling, PyTorch's `nn.AdaptiveAvgPool2d`: each output averages the window
//! `staticnet_shape::adaptive_window` gives it, so windows may differ in size and overlap, and
//! an output larger than the input repeats inputs.
//!
//! Tensors (per batch of `n`): input `x` (n, c, h_in, w_in), output `y` (n, c, h_out, w_out).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// An adaptive average pooling with every size fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
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

impl AdaptiveAvgPool2d {
    /// Pooling of `c` channels of `in_hw` down to `out_hw`.
    pub const fn new(c: usize, in_hw: [usize; 2], out_hw: [usize; 2]) -> Self {
        assert!(in_hw[0] > 0 && in_hw[1] > 0 && out_hw[0] > 0 && out_hw[1] > 0, "AdaptiveAvgPool2d: sizes must be positive");
        AdaptiveAvgPool2d { c, h_in: in_hw[0], w_in: in_hw[1], h_out: out_hw[0], w_out: out_hw[1] }
    }

    /// Elements of one input sample.
    pub const fn x_len(&self) -> usize {
        self.c * self.h_in * self.w_in
    }

    /// Elements of one output sample.
    pub const fn y_len(&self) -> usize {
        self.c * self.h_out * self.w_out
    }

    /// Additions of the forward pass for one sample: every input is read at least once.
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

    /// The definition, in f64, with PyTorch's windows written out: ⌊i·in/out⌋ to ⌈(i+1)·in/out⌉.
    fn naive(op: &AdaptiveAvgPool2d, n: usize, x: &[f64]) -> Vec<f64> {
        let window = |i: usize, len: usize, out: usize| ((i * len) / out, ((i + 1) * len + out - 1) / out);
        let mut y = vec![0.0; n * op.y_len()];
        for plane in 0..n * op.c {
            for oy in 0..op.h_out {
                let (y0, y1) = window(oy, op.h_in, op.h_out);
                for ox in 0..op.w_out {
                    let (x0, x1) = window(ox, op.w_in, op.w_out);
                    let mut s = 0.0;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            s += x[(plane * op.h_in + iy) * op.w_in + ix];
                        }
                    }
                    y[(plane * op.h_out + oy) * op.w_out + ox] = s / ((y1 - y0) * (x1 - x0)) as f64;
                }
            }
        }
        y
    }

    #[test]
    fn backward_matches_finite_differences() {
        // 13 -> 6 (AlexNet's 13x13 maps), 3 -> 6 (output larger than input), and mixed.
        let cases = [
            AdaptiveAvgPool2d::new(2, [13, 13], [6, 6]),
            AdaptiveAvgPool2d::new(2, [3, 3], [6, 6]),
            AdaptiveAvgPool2d::new(3, [7, 3], [2, 5]),
            AdaptiveAvgPool2d::new(4, [5, 5], [1, 1]),
        ];
        for op in cases {
            let n = 2;
            let (x, dy) = (random(n * op.x_len(), 9), random(n * op.y_len(), 10));
            let mut y = vec![f32::NAN; n * op.y_len()];
            cpu::forward(&op, n, &x, &mut y);
            assert_close(&y, &naive(&op, n, &to_f64(&x)), 1e-6, &format!("forward of {op:?}"));
            let mut dx = vec![f32::NAN; x.len()];
            cpu::backward(&op, n, &dy, &mut dx);
            assert_close(&dx, &numeric_grad(|x| naive(&op, n, x), &x, &dy), 1e-4, &format!("dx of {op:?}"));
        }
    }

    #[test]
    fn uneven_windows_and_upsampling() {
        // 1x5 -> 1x3: windows [0,2) [1,4) [3,5).
        let op = AdaptiveAvgPool2d::new(1, [1, 5], [1, 3]);
        let mut y = [0.0; 3];
        cpu::forward(&op, 1, &[1.0, 2.0, 3.0, 4.0, 5.0], &mut y);
        assert_close(&y, &[1.5, 3.0, 4.5], 1e-6, "5 -> 3");
        // 1x2 -> 1x3: windows [0,1) [0,2) [1,2).
        let op = AdaptiveAvgPool2d::new(1, [1, 2], [1, 3]);
        cpu::forward(&op, 1, &[2.0, 4.0], &mut y);
        assert_close(&y, &[2.0, 3.0, 4.0], 1e-6, "2 -> 3");
    }
}
