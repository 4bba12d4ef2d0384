//! Adaptive average pooling, PyTorch's `nn.AdaptiveAvgPool2d`: each output averages the window
//! `staticnet_shape::adaptive_window` gives it, so windows may differ in size and overlap, and
//! an output larger than the input repeats inputs.
//!
//! Tensors (per batch of `n`): input `x` (n, c, h_in, w_in), output `y` (n, c, h_out, w_out).

pub(crate) mod cpu;

/// An adaptive average pooling with every size fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    pub c: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl AdaptiveAvgPool2d {
    pub const fn new(c: usize, in_hw: [usize; 2], out_hw: [usize; 2]) -> Self {
        assert!(in_hw[0] > 0 && in_hw[1] > 0 && out_hw[0] > 0 && out_hw[1] > 0, "AdaptiveAvgPool2d: sizes must be positive");
        AdaptiveAvgPool2d { c, h_in: in_hw[0], w_in: in_hw[1], h_out: out_hw[0], w_out: out_hw[1] }
    }

    pub const fn x_len(&self) -> usize {
        self.c * self.h_in * self.w_in
    }

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
    use crate::ops::testing::assert_close;

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
