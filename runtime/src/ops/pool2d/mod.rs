//! Max and average pooling, PyTorch's `nn.MaxPool2d` and `nn.AvgPool2d`.
//!
//! Tensors (per batch of `n`):
//! - input  `x`  (n, c, h_in, w_in)
//! - output `y`  (n, c, h_out, w_out)
//! - max pooling's backward reads x and y again to find each window's argmax, so the forward
//!   saves nothing.

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use staticnet_shape::pool_out;

/// A pooling layer with every size fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
    /// Window (height, width).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Implicit padding on each side (height, width): −∞ for max, zeros for average pooling.
    pub padding: [usize; 2],
    /// Max pooling only; average pooling has none in PyTorch (always 1).
    pub dilation: [usize; 2],
    /// Round the output size up rather than down, as PyTorch's `ceil_mode`.
    pub ceil_mode: bool,
    /// Average pooling: whether the padded cells count in the divisor (PyTorch's default, true).
    pub count_include_pad: bool,
    /// Average pooling: a fixed divisor instead of the window size; 0 for none.
    pub divisor_override: usize,
}

impl Pool2d {
    /// Max pooling of a `[c, in_hw[0], in_hw[1]]` input.
    pub const fn max(c: usize, in_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], ceil_mode: bool) -> Self {
        Self::new(c, in_hw, kernel, stride, padding, dilation, ceil_mode, true, 0)
    }

    /// Average pooling of a `[c, in_hw[0], in_hw[1]]` input.
    pub const fn avg(c: usize, in_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool, count_include_pad: bool, divisor_override: usize) -> Self {
        Self::new(c, in_hw, kernel, stride, padding, [1, 1], ceil_mode, count_include_pad, divisor_override)
    }

    #[allow(clippy::too_many_arguments)]
    const fn new(c: usize, in_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], ceil_mode: bool, count_include_pad: bool, divisor_override: usize) -> Self {
        let (Some(h_out), Some(w_out)) = (
            pool_out(in_hw[0], kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
            pool_out(in_hw[1], kernel[1], stride[1], padding[1], dilation[1], ceil_mode),
        ) else {
            panic!("Pool2d: the window does not fit the padded input");
        };
        Pool2d { c, h_in: in_hw[0], w_in: in_hw[1], h_out, w_out, kernel, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override }
    }

    /// Elements of one input sample.
    pub const fn x_len(&self) -> usize {
        self.c * self.h_in * self.w_in
    }

    /// Elements of one output sample.
    pub const fn y_len(&self) -> usize {
        self.c * self.h_out * self.w_out
    }

    /// Comparisons or additions of the forward pass for one sample.
    pub const fn flops(&self) -> u64 {
        (self.y_len() * self.kernel[0] * self.kernel[1]) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    /// The definition of pooling, in f64: max or mean over each window, with PyTorch's divisor.
    fn naive(op: &Pool2d, n: usize, x: &[f64], max: bool) -> Vec<f64> {
        let mut y = vec![0.0; n * op.y_len()];
        for plane in 0..n * op.c {
            for oy in 0..op.h_out {
                for ox in 0..op.w_out {
                    let (mut best, mut sum, mut count) = (f64::NEG_INFINITY, 0.0, 0usize);
                    for ky in 0..op.kernel[0] {
                        for kx in 0..op.kernel[1] {
                            let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - op.padding[0] as isize;
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - op.padding[1] as isize;
                            // In the padded input (counted by count_include_pad) …
                            if iy >= op.h_in as isize + op.padding[0] as isize || ix >= op.w_in as isize + op.padding[1] as isize {
                                continue;
                            }
                            count += 1;
                            // … and in the input itself.
                            if iy < 0 || ix < 0 || iy >= op.h_in as isize || ix >= op.w_in as isize {
                                if !op.count_include_pad {
                                    count -= 1;
                                }
                                continue;
                            }
                            let v = x[(plane * op.h_in + iy as usize) * op.w_in + ix as usize];
                            best = best.max(v);
                            sum += v;
                        }
                    }
                    let div = if op.divisor_override > 0 { op.divisor_override } else { count };
                    y[(plane * op.h_out + oy) * op.w_out + ox] = if max { best } else { sum / div as f64 };
                }
            }
        }
        y
    }

    #[test]
    fn backward_matches_finite_differences() {
        let cases = [
            // 3x3 windows with stride 2, odd sizes
            (Pool2d::max(3, [13, 11], [3, 3], [2, 2], [0, 0], [1, 1], false), true),
            (Pool2d::max(2, [9, 10], [3, 3], [2, 2], [1, 1], [1, 1], true), true),
            (Pool2d::max(2, [9, 9], [2, 3], [1, 2], [0, 1], [2, 1], false), true),
            (Pool2d::avg(3, [13, 11], [3, 3], [2, 2], [0, 0], false, true, 0), false),
            (Pool2d::avg(2, [9, 10], [3, 3], [2, 2], [1, 1], true, true, 0), false),
            (Pool2d::avg(2, [9, 10], [3, 2], [2, 2], [1, 1], true, false, 0), false),
            (Pool2d::avg(2, [7, 7], [2, 2], [2, 2], [0, 0], false, true, 3), false),
            // 2x2 stride 2 (the AVX2 paths): rows of 7 outputs (masked only), 8 (one full run),
            // 18 (two full runs and a masked 2) on an odd-sized input the windows don't cover,
            // and an average with a divisor override
            (Pool2d::max(2, [14, 14], [2, 2], [2, 2], [0, 0], [1, 1], false), true),
            (Pool2d::max(1, [6, 16], [2, 2], [2, 2], [0, 0], [1, 1], false), true),
            (Pool2d::max(2, [9, 37], [2, 2], [2, 2], [0, 0], [1, 1], false), true),
            // rows of 34 outputs: two full runs of 16 for the AVX-512 path and a masked 2
            (Pool2d::max(2, [5, 68], [2, 2], [2, 2], [0, 0], [1, 1], false), true),
            (Pool2d::avg(2, [14, 14], [2, 2], [2, 2], [0, 0], false, true, 0), false),
            (Pool2d::avg(1, [6, 16], [2, 2], [2, 2], [0, 0], false, false, 0), false),
            (Pool2d::avg(2, [9, 37], [2, 2], [2, 2], [0, 0], false, true, 3), false),
        ];
        for (op, max) in cases {
            let n = 2;
            let (x, dy) = (random(n * op.x_len(), 7), random(n * op.y_len(), 8));
            let mut y = vec![f32::NAN; n * op.y_len()];
            let mut dx = vec![f32::NAN; x.len()];
            if max {
                cpu::max_forward(&op, n, &x, &mut y);
                cpu::max_backward(&op, n, &x, &y, &dy, &mut dx);
            } else {
                cpu::avg_forward(&op, n, &x, &mut y);
                cpu::avg_backward(&op, n, &dy, &mut dx);
            }
            assert_close(&y, &naive(&op, n, &to_f64(&x), max), 1e-6, &format!("forward of {op:?}"));
            let want = numeric_grad(|x| naive(&op, n, x, max), &x, &dy);
            assert_close(&dx, &want, 1e-4, &format!("dx of {op:?}"));
        }
    }

    #[test]
    fn max_pool_takes_the_first_maximum_and_routes_the_gradient_there() {
        // 2x2 windows with ties: PyTorch keeps the first maximum in scan order (row by row).
        // Width 36 gives two runs of 8 outputs for the vector path and a masked run of 2; widths
        // 4 and 14 give masked runs only.
        for w in [4usize, 14, 36, 68] {
            let op = Pool2d::max(1, [2, w], [2, 2], [2, 2], [0, 0], [1, 1], false);
            let mut x = vec![0.0f32; 2 * w];
            for o in 0..w / 2 {
                // window o: [a, b; c, d] with a tie placed by o % 4
                let (a, b, c, d) = match o % 4 {
                    0 => (1.0, 3.0, 5.0, 5.0), // tie in the bottom row: bottom-left wins
                    1 => (5.0, 2.0, 5.0, 4.0), // tie top-left / bottom-left: top-left wins
                    2 => (1.0, 7.0, 7.0, 7.0), // three-way tie: top-right wins
                    _ => (0.5, 0.25, 0.0, 2.0),
                };
                x[2 * o] = a;
                x[2 * o + 1] = b;
                x[w + 2 * o] = c;
                x[w + 2 * o + 1] = d;
            }
            let mut y = vec![0.0; w / 2];
            cpu::max_forward(&op, 1, &x, &mut y);
            let dy: Vec<f32> = (0..w / 2).map(|o| 10.0 + o as f32).collect();
            let mut dx = vec![9.0; 2 * w];
            cpu::max_backward(&op, 1, &x, &y, &dy, &mut dx);
            for o in 0..w / 2 {
                let (want_y, at) = match o % 4 {
                    0 => (5.0, w + 2 * o),
                    1 => (5.0, 2 * o),
                    2 => (7.0, 2 * o + 1),
                    _ => (2.0, w + 2 * o + 1),
                };
                assert_eq!(y[o], want_y, "width {w}, window {o}");
                for cell in [2 * o, 2 * o + 1, w + 2 * o, w + 2 * o + 1] {
                    assert_eq!(dx[cell], if cell == at { dy[o] } else { 0.0 }, "width {w}, window {o}, cell {cell}");
                }
            }
        }
    }

    #[test]
    fn max_pool_propagates_nan_like_pytorch() {
        for w in [4usize, 14, 36, 68] {
            let op = Pool2d::max(1, [2, w], [2, 2], [2, 2], [0, 0], [1, 1], false);
            let mut x = vec![1.0f32; 2 * w];
            x[1] = f32::NAN; // window 0, top-right
            x[w + 3] = f32::NAN; // window 1, bottom-right
            x[w + 2] = f32::NAN; // window 1, bottom-left: PyTorch routes to the last NaN
            let mut y = vec![0.0; w / 2];
            cpu::max_forward(&op, 1, &x, &mut y);
            assert!(y[0].is_nan() && y[1].is_nan() && y[2..].iter().all(|&v| v == 1.0), "width {w}: {y:?}");
            let mut dx = vec![0.0; 2 * w];
            cpu::max_backward(&op, 1, &x, &y, &vec![1.0; w / 2], &mut dx);
            assert_eq!((dx[1], dx[w + 3], dx[w + 2]), (1.0, 1.0, 0.0), "width {w}");
        }
    }

    #[test]
    fn avg_pool_divisors_follow_pytorch() {
        // 1x5 plane, kernel (1, 3), stride 2, padding (0, 1), ceil_mode:
        // windows [-1, 2) [1, 4) [3, 6): count_include_pad divides by 3, 3, 3; without, 2, 3, 2.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let with = Pool2d::avg(1, [1, 5], [1, 3], [1, 2], [0, 1], true, true, 0);
        let without = Pool2d::avg(1, [1, 5], [1, 3], [1, 2], [0, 1], true, false, 0);
        let mut y = vec![0.0; 3];
        cpu::avg_forward(&with, 1, &x, &mut y);
        assert_close(&y, &[1.0, 3.0, 3.0], 1e-6, "count_include_pad");
        cpu::avg_forward(&without, 1, &x, &mut y);
        assert_close(&y, &[1.5, 3.0, 4.5], 1e-6, "exclude pad");
    }

    #[test]
    fn avg_pool_matches_a_sum_over_the_window() {
        let op = Pool2d::avg(3, [7, 9], [3, 2], [2, 2], [1, 0], false, true, 0);
        let x = random(2 * op.x_len(), 4);
        let mut y = vec![0.0; 2 * op.y_len()];
        cpu::avg_forward(&op, 2, &x, &mut y);
        let mut want = vec![0.0f64; y.len()];
        for plane in 0..6 {
            for oy in 0..op.h_out {
                for ox in 0..op.w_out {
                    let mut s = 0.0;
                    for ky in 0..3 {
                        for kx in 0..2 {
                            let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize);
                            if iy >= 0 && iy < 7 && ix < 9 {
                                s += x[plane * 63 + iy as usize * 9 + ix as usize] as f64;
                            }
                        }
                    }
                    want[(plane * op.h_out + oy) * op.w_out + ox] = s / 6.0;
                }
            }
        }
        assert_close(&y, &want, 1e-6, "avg");
    }
}
