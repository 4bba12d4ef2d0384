//! 2-D convolution, PyTorch's `nn.Conv2d` (zero padding), dense or grouped.
//!
//! Tensors (per batch of `n`):
//! - input  `x`  (n, c_in, h_in, w_in)
//! - params `wb` weight (c_out, c_in/groups, kh, kw) followed by bias (c_out) when `bias`
//! - output `y`  (n, c_out, h_out, w_out)
//!
//! With `groups = g`, the channels split into g groups of c_in/g inputs and c_out/g outputs, each
//! convolved on its own (output channel co reads the inputs of group co / (c_out/g)). `groups = 1`
//! runs the indirect GEMM of `cpu.rs`; every other grouping runs `depthwise.rs`, direct loops
//! along output rows (depthwise, g = c_in, being the common case: MobileNet's).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
#[cfg(feature = "cuda")]
mod cudnn;
mod depthwise;
mod direct;
mod routed;
mod winograd;

use staticnet_shape::conv_out;

/// A convolution with every size fixed: what `Conv2d(...)` in a `network!` listing becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
    /// Kernel (height, width).
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding on each side (height, width).
    pub padding: [usize; 2],
    /// Spacing of the kernel taps (height, width).
    pub dilation: [usize; 2],
    /// Channel groups (PyTorch's `groups`): 1 for a dense convolution, c_in for a depthwise one.
    pub groups: usize,
    /// Whether it adds a bias per output channel.
    pub bias: bool,
}

impl Conv2d {
    /// The convolution of a `[c_in, in_hw[0], in_hw[1]]` input; the output size follows from the
    /// shared shape arithmetic; the arguments in PyTorch's order. Panics (at compile time, in a
    /// `const`) if the kernel does not fit or `groups` does not divide both channel counts, which
    /// the `network!` macro has already reported as a readable error.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        c_in: usize,
        c_out: usize,
        in_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    ) -> Self {
        if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            panic!("Conv2d: groups must divide both in_channels and out_channels");
        }
        let (Some(h_out), Some(w_out)) = (
            conv_out(in_hw[0], kernel[0], stride[0], padding[0], dilation[0]),
            conv_out(in_hw[1], kernel[1], stride[1], padding[1], dilation[1]),
        ) else {
            panic!("Conv2d: the kernel does not fit the padded input");
        };
        Conv2d { c_in, c_out, h_in: in_hw[0], w_in: in_hw[1], h_out, w_out, kernel, stride, padding, dilation, groups, bias }
    }

    /// Weight elements: c_out · c_in/groups · kh · kw.
    pub const fn weight_len(&self) -> usize {
        self.c_out * self.patch_len()
    }

    /// Parameter elements: the weight, then the bias if any.
    pub const fn param_len(&self) -> usize {
        self.weight_len() + if self.bias { self.c_out } else { 0 }
    }

    /// Input elements of one sample.
    pub const fn x_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }

    /// Output elements of one sample.
    pub const fn y_len(&self) -> usize {
        self.c_out * self.out_pixels()
    }

    /// Taps of one output: c_in/groups · kh · kw, the rows of the im2col matrix (also PyTorch's
    /// `fan_in`, which counts only the channels of the group).
    pub const fn patch_len(&self) -> usize {
        self.c_in / self.groups * self.kernel[0] * self.kernel[1]
    }

    /// Whether each output channel reads one input channel: groups = c_in = c_out
    /// (a channel multiplier above 1 is grouped, not depthwise, here).
    pub const fn is_depthwise(&self) -> bool {
        self.groups == self.c_in && self.groups == self.c_out
    }

    /// Output positions of one channel: h_out · w_out.
    pub const fn out_pixels(&self) -> usize {
        self.h_out * self.w_out
    }

    /// A dense 1×1 convolution with stride 1 and no padding: a GEMM on the input as it is.
    pub const fn is_pointwise(&self) -> bool {
        self.groups == 1
            && self.kernel[0] == 1
            && self.kernel[1] == 1
            && self.stride[0] == 1
            && self.stride[1] == 1
            && self.padding[0] == 0
            && self.padding[1] == 0
    }

    /// Floating-point operations of the forward pass for one sample (a multiply-add counts 2).
    pub const fn flops(&self) -> u64 {
        (2 * self.c_out * self.out_pixels() * self.patch_len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, numeric_grad_sampled, random, to_f64};

    /// The definition of convolution (cross-correlation), grouped as PyTorch's, in f64.
    fn naive(op: &Conv2d, n: usize, x: &[f64], wb: &[f64]) -> Vec<f64> {
        let (kh, kw) = (op.kernel[0], op.kernel[1]);
        let mut y = vec![0.0; n * op.y_len()];
        for b in 0..n {
            for co in 0..op.c_out {
                for oy in 0..op.h_out {
                    for ox in 0..op.w_out {
                        let mut acc = if op.bias { wb[op.weight_len() + co] } else { 0.0 };
                        // Output channel co reads the c_in/groups inputs of its group.
                        let (cin_g, cout_g) = (op.c_in / op.groups, op.c_out / op.groups);
                        for cg in 0..cin_g {
                            let ci = co / cout_g * cin_g + cg;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - op.padding[0] as isize;
                                    let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - op.padding[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= op.h_in as isize || ix >= op.w_in as isize {
                                        continue;
                                    }
                                    let xv = x[b * op.x_len() + (ci * op.h_in + iy as usize) * op.w_in + ix as usize];
                                    acc += xv * wb[((co * cin_g + cg) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y[b * op.y_len() + (co * op.h_out + oy) * op.w_out + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn cases() -> [Conv2d; 34] {
        [
            // Model A's layers: whole register tiles of channels, k = 25 and k = 400 > KC
            Conv2d::new(1, 16, [28, 28], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            Conv2d::new(16, 32, [14, 14], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            // stride 2 with padding on a 29x31 input
            Conv2d::new(3, 5, [29, 31], [3, 3], [2, 2], [1, 1], [1, 1], 1, true),
            // Model A's first layer: one input channel, 5x5, same padding
            Conv2d::new(1, 4, [9, 8], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            // rectangular kernel, unequal strides, dilation, no bias
            Conv2d::new(2, 3, [11, 10], [3, 2], [1, 2], [0, 1], [2, 1], 1, false),
            // pointwise: a GEMM on the input as it is
            Conv2d::new(6, 7, [5, 4], [1, 1], [1, 1], [0, 0], [1, 1], 1, true),
            // an AlexNet-like stem: 11x11, stride 4
            Conv2d::new(3, 4, [23, 23], [11, 11], [4, 4], [2, 2], [1, 1], 1, true),
            // two register tiles of channels, 275 taps (one block of the forward)
            Conv2d::new(11, 32, [5, 5], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            // 40 channels: a partial register tile after whole ones (16 and 32 wide), 216 taps
            Conv2d::new(24, 40, [4, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            // 600 taps: three blocks of the forward (256, 256, 88) through the partial sums
            Conv2d::new(24, 8, [4, 4], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            // the direct path (few taps, stride 1): rows of 13 (runs at 0 and 5), 5 channels
            // (a partial group of 4), 3 input channels, no bias
            Conv2d::new(3, 5, [10, 13], [3, 3], [1, 1], [1, 1], [1, 1], 1, false),
            // rows of 24 (three runs: tiles of two that span rows), valid padding, 6 channels
            Conv2d::new(1, 6, [12, 28], [5, 5], [1, 1], [0, 0], [1, 1], 1, true),
            // rows of 40 (five runs), 6 rows: 30 runs in tiles of two, some spanning rows
            Conv2d::new(1, 3, [6, 44], [5, 5], [1, 1], [0, 0], [1, 1], 1, true),
            // 45 taps over 5 input channels, rows of 14 (runs at 0 and 6), 10 channels
            Conv2d::new(5, 10, [9, 14], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            // The channel-blocked forward (input channels in blocks of 16, where AVX-512 is
            // there): 432 taps in three blocks of 9 groups, 16 channels (its data gradient too:
            // the full convolution from 16 channels), rows of 5
            Conv2d::new(48, 16, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            // two blocks of input channels, stride 2 over odd sizes, 20 channels (a partial tile)
            Conv2d::new(32, 20, [7, 9], [3, 3], [2, 2], [1, 1], [1, 1], 1, true),
            // one block, dilation 2 with padding 2, 40 channels (a whole and a partial tile)
            Conv2d::new(16, 40, [6, 5], [3, 3], [1, 1], [2, 2], [2, 2], 1, false),
            // The direct path's rows of two runs of 16 (the CIFAR network's first layer) and of
            // one, 3 and 6 channels: its pooled epilogue takes tiles of 1 and 2 pairs of rows
            Conv2d::new(3, 6, [6, 32], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(2, 3, [10, 16], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            // The sliding-window kernels (AVX-512, stride 1, input channels in blocks of 16),
            // every one of them (see `sliding_kernels_take_the_cases`): 16 output channels or
            // fewer in rows of 16, 14, 12 or 8, 32 or fewer in rows of 8 or 7; 3 × 3 and
            // 5 × 5. Two blocks of input channels (taps in blocks of runs), partial vectors
            // (12 and 24 channels); some data gradients take them too. Model A's second layer
            // takes the 7-wide 32-channel 5 × 5 one forward, the 14-wide 5 × 5 one back.
            Conv2d::new(32, 16, [6, 16], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(16, 16, [4, 14], [3, 3], [1, 1], [1, 1], [1, 1], 1, false),
            Conv2d::new(16, 16, [4, 12], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(32, 16, [3, 8], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(32, 12, [5, 16], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            Conv2d::new(32, 16, [5, 12], [5, 5], [1, 1], [2, 2], [1, 1], 1, false),
            Conv2d::new(32, 16, [6, 8], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            Conv2d::new(16, 32, [4, 7], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(16, 24, [6, 8], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            // Winograd's F(2 × 2, 3 × 3) (the cases of 24 and 48 input channels above take it too,
            // with odd sizes): 30 tiles an image in 32 lanes (blocks of 8 images; a batch of 5 is
            // one partial block), and valid padding over odd sizes (partial tiles on both edges),
            // no bias
            Conv2d::new(16, 32, [12, 10], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(16, 24, [9, 7], [3, 3], [1, 1], [0, 0], [1, 1], 1, false),
            // Winograd's F(2 × 2, 5 × 5) (Model A's second layer above takes it too): valid
            // padding over odd sizes (7 × 5 outputs, partial tiles; the data gradient's padding
            // is 4), no bias; and padding 1 of a 5 × 5 kernel, 5 × 11 outputs (blocks of 6
            // images: a batch of 8 ends with a partial one, as Model A's layer, 2 a block, does
            // in a batch of 5)
            Conv2d::new(16, 20, [11, 9], [5, 5], [1, 1], [0, 0], [1, 1], 1, false),
            Conv2d::new(20, 16, [7, 13], [5, 5], [1, 1], [1, 1], [1, 1], 1, true),
            // Winograd with AVX-512 too (32 channels and more on both sides), 3 × 3 and 5 × 5, odd
            // sizes: 44 output channels in A panels of 12 (a partial last one), 32 in panels of 8
            // (AVX-512's 8 × 32 kernel: these forwards, and the data gradient of the first)
            Conv2d::new(32, 44, [9, 11], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(36, 32, [7, 6], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
        ]
    }

    /// With AVX-512, the cases above take every sliding-window kernel, forward or in their
    /// data gradient (the forward of [`cpu::full_conv`]): (rows, channels, window width).
    #[test]
    fn sliding_kernels_take_the_cases() {
        if !crate::ops::isa::avx512() {
            return eprintln!("sliding_kernels_take_the_cases: skipped, AVX-512 is not in use (the kernels are AVX-512's)");
        }
        let mut taken: Vec<(usize, usize, usize)> = Vec::new();
        for op in cases() {
            for op in [op, cpu::full_conv(&op)] {
                let ind = cpu::forward_kernel(&op, false).0;
                if ind.run > 1 {
                    taken.push((ind.mr, ind.nr, ind.run));
                }
            }
        }
        for want in [16, 14, 12, 8].into_iter().map(|ur| (ur, 16)).chain([(8, 32), (7, 32)]).flat_map(|(ur, nr)| [(ur, nr, 3), (ur, nr, 5)]) {
            assert!(taken.contains(&want), "no case takes the sliding kernel of {want:?} (rows, channels, window): {taken:?}");
        }
    }

    #[test]
    fn forward_matches_definition() {
        // A batch of 8, and of 1 (whose work is split over channels as well).
        for (op, n) in cases().into_iter().flat_map(|op| [(op, 8), (op, 1)]) {
            let x = random(n * op.x_len(), 1);
            let wb = random(op.param_len(), 2);
            let mut y = vec![f32::NAN; n * op.y_len()];
            let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
            cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, false);
            assert_close(&y, &naive(&op, n, &to_f64(&x), &to_f64(&wb)), 1e-5, &format!("{op:?}"));
            // With the weights laid out once beforehand (as a network keeps them): the same
            // values, and nothing read from a scratch full of NaN.
            let mut packed = vec![f32::NAN; cpu::packed_len(&op)];
            cpu::pack(&op, &wb, &mut packed);
            let mut y_packed = vec![f32::NAN; n * op.y_len()];
            scratch.fill(f32::NAN);
            cpu::forward(&op, n, &x, &wb, Some(&packed), &mut y_packed, &mut scratch, false);
            assert_eq!(y_packed, y, "{op:?} with packed weights");
        }
    }

    /// Weights of over 1 MB laid out take tasks of 192 rows instead of 96 (`rows_per_task`):
    /// a 7 × 7 convolution (not Winograd's) of 1.2 MB of weights both ways, over 420 output
    /// pixels (four tasks of 112 on two threads), forward and data gradient from their
    /// definitions. The data gradient by
    /// definition: each dY[co] times W[co, ci] added to the input patch it came from.
    #[test]
    fn tasks_of_large_weights_match_definition() {
        let (op, n) = (Conv2d::new(64, 96, [5, 6], [7, 7], [1, 1], [3, 3], [1, 1], 1, true), 14);
        let (x, wb, dy) = (random(n * op.x_len(), 31), random(op.param_len(), 32), random(n * op.y_len(), 33));
        let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
        let mut y = vec![f32::NAN; n * op.y_len()];
        cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, false);
        assert_close(&y, &naive(&op, n, &to_f64(&x), &to_f64(&wb)), 1e-5, "forward");
        let mut dx = vec![f32::NAN; n * op.x_len()];
        cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), None, &mut scratch);
        let mut want = vec![0.0f64; dx.len()];
        let ([kh, kw], [ph, pw]) = (op.kernel, op.padding);
        for (b, co, oy, ox) in (0..n).flat_map(|b| (0..op.c_out).flat_map(move |co| (0..op.h_out).flat_map(move |oy| (0..op.w_out).map(move |ox| (b, co, oy, ox))))) {
            let g = dy[b * op.y_len() + (co * op.h_out + oy) * op.w_out + ox] as f64;
            for (ci, ky, kx) in (0..op.c_in).flat_map(|ci| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ci, ky, kx)))) {
                let (iy, ix) = ((oy + ky).wrapping_sub(ph), (ox + kx).wrapping_sub(pw));
                if iy < op.h_in && ix < op.w_in {
                    want[b * op.x_len() + (ci * op.h_in + iy) * op.w_in + ix] += g * wb[((co * op.c_in + ci) * kh + ky) * kw + kx] as f64;
                }
            }
        }
        assert_close(&dx, &want, 1e-5, "data gradient");
    }

    /// In a pool, batches of more than twice the threads' windows of images (`cpu::Window`):
    /// each thread pads the images its tasks read into its own window. The forward, the fused
    /// forward with ReLU and max pooling, and the data gradient on 2 and 3 threads equal those
    /// of the input padded whole (a call from outside the pool), which the tests above hold to
    /// their definitions; the forward is held to its definition too. Channel-blocked (input
    /// channels in blocks of 16, with AVX-512) and not, forward and data gradient; windows of
    /// two and three images.
    #[test]
    fn windows_of_images_give_the_results_of_one_padded_input() {
        let ops = [
            Conv2d::new(32, 20, [12, 12], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(20, 32, [12, 12], [3, 3], [1, 1], [1, 1], [1, 1], 1, false),
            Conv2d::new(8, 12, [10, 7], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
        ];
        let n = 12;
        for op in ops {
            let (x, wb, dy) = (random(n * op.x_len(), 71), random(op.param_len(), 72), random(n * op.y_len(), 73));
            let pooled_len = n * op.c_out * (op.h_out / 2) * (op.w_out / 2);
            let run = || {
                let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
                let (mut y, mut pooled, mut dx) = (vec![f32::NAN; n * op.y_len()], vec![f32::NAN; pooled_len], vec![f32::NAN; n * op.x_len()]);
                cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, false);
                cpu::forward_relu_max_pool(&op, n, &x, &wb, None, &mut pooled, None, &mut scratch);
                cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), None, &mut scratch);
                (y, pooled, dx)
            };
            let whole = run();
            assert_close(&whole.0, &naive(&op, n, &to_f64(&x), &to_f64(&wb)), 1e-5, &format!("{op:?}"));
            for threads in [2, 3] {
                let windowed = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool").install(run);
                assert!(windowed.0 == whole.0, "{op:?}: forward on {threads} threads");
                assert!(windowed.1 == whole.1, "{op:?}: pooled forward on {threads} threads");
                assert!(windowed.2 == whole.2, "{op:?}: data gradient on {threads} threads");
            }
        }
    }

    /// Conv2d → ReLU → MaxPool2d(2, 2) in one pass equals the three of them one after the other
    /// (the convolution from its definition), odd sizes (a last row or column no window takes)
    /// and batches of one included; where the ReLU's output can be kept (a training forward),
    /// that too.
    #[test]
    fn forward_with_relu_and_max_pool_matches_the_composition() {
        let (mut fused, mut kept) = (0, 0);
        for (op, n) in cases().into_iter().flat_map(|op| [(op, 5), (op, 1)]) {
            if !cpu::fuses_relu_max_pool(&op, false) || op.h_out < 2 || op.w_out < 2 {
                continue;
            }
            fused += 1;
            let (x, wb) = (random(n * op.x_len(), 11), random(op.param_len(), 12));
            let conv = naive(&op, n, &to_f64(&x), &to_f64(&wb));
            let (ph, pw) = (op.h_out / 2, op.w_out / 2);
            let mut want = vec![0.0f64; n * op.c_out * ph * pw];
            for (plane, out) in want.chunks_exact_mut(ph * pw).enumerate() {
                let src = &conv[plane * op.out_pixels()..];
                for (i, o) in out.iter_mut().enumerate() {
                    let (py, px) = (i / pw, i % pw);
                    let at = |dy: usize, dx: usize| src[(2 * py + dy) * op.w_out + 2 * px + dx].max(0.0);
                    *o = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                }
            }
            let mut packed = vec![f32::NAN; cpu::packed_len(&op)];
            cpu::pack(&op, &wb, &mut packed);
            for packed in [None, Some(&packed[..])] {
                let mut y = vec![f32::NAN; want.len()];
                let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
                cpu::forward_relu_max_pool(&op, n, &x, &wb, packed, &mut y, None, &mut scratch);
                assert_close(&y, &want, 1e-5, &format!("{op:?}, batch {n}, packed {}", packed.is_some()));
                if cpu::fuses_relu_max_pool(&op, true) {
                    kept += 1;
                    let (mut y, mut relu_y) = (vec![f32::NAN; want.len()], vec![f32::NAN; conv.len()]);
                    cpu::forward_relu_max_pool(&op, n, &x, &wb, packed, &mut y, Some(&mut relu_y), &mut scratch);
                    assert_close(&y, &want, 1e-5, &format!("{op:?}, batch {n}, packed {}, keeping the ReLU's output", packed.is_some()));
                    let relu: Vec<f64> = conv.iter().map(|v| v.max(0.0)).collect();
                    assert_close(&relu_y, &relu, 1e-5, &format!("{op:?}, batch {n}: the ReLU's output kept"));
                }
            }
        }
        assert!(fused >= 10, "only {fused} cases took the fused path");
        // Only the direct path keeps it, and it has AVX2 and AVX-512 kernels only.
        if crate::ops::isa::avx2() {
            assert!(kept >= 4, "only {kept} cases kept the ReLU's output");
        }
    }

    /// Conv2d → ReLU fused (ReLU in the forward's epilogue, its mask applied to dY inside the
    /// backward) gives what the two ops give one after the other.
    #[test]
    fn fused_relu_matches_the_composition() {
        for op in [cases()[0], cases()[1], cases()[4], cases()[5], cases()[9], cases()[22], cases()[23]] {
            let n = 3;
            let (x, wb, dy) = (random(n * op.x_len(), 7), random(op.param_len(), 8), random(n * op.y_len(), 9));
            let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
            let (mut y, mut y_fused) = (vec![0.0; dy.len()], vec![0.0; dy.len()]);
            cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, false);
            cpu::forward(&op, n, &x, &wb, None, &mut y_fused, &mut scratch, true);
            let relu: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
            assert_eq!(y_fused, relu, "forward of {op:?}");
            let masked: Vec<f32> = dy.iter().zip(&y).map(|(&g, &v)| if v > 0.0 { g } else { 0.0 }).collect();
            let (mut dx, mut dwb) = (vec![0.0; x.len()], vec![0.0; wb.len()]);
            cpu::backward(&op, n, &x, &wb, None, &masked, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
            let (mut dx_f, mut dwb_f) = (vec![0.0; x.len()], vec![0.0; wb.len()]);
            cpu::backward(&op, n, &x, &wb, None, &dy, Some(&y_fused), Some(&mut dx_f), Some(&mut dwb_f), &mut scratch);
            assert_eq!(dx_f, dx, "dx of {op:?}");
            assert_eq!(dwb_f, dwb, "dwb of {op:?}");
        }
    }

    /// A pooled training forward's tensors for `n` images of `op`, made up: the ReLU's output
    /// (in steps of 1/4, so that windows tie, with zeros, negatives and a NaN), MaxPool2d(2, 2)'s
    /// output of it and a gradient of that; and dY built from them by definition: per window,
    /// its gradient to the first element equal to the maximum (a NaN one's to the NaN), kept
    /// where that element is positive. Returns (relu_y, pool_y, pool_dy, dy).
    fn pooled(op: &Conv2d, n: usize, seed: u64) -> [Vec<f32>; 4] {
        let (h, w) = (op.h_out, op.w_out);
        let (ph, pw) = (h / 2, w / 2);
        let mut relu_y: Vec<f32> = random(n * op.y_len(), seed).iter().map(|v| (v * 4.0).round() / 4.0).collect();
        relu_y[3 * w + 5] = f32::NAN;
        let pool_dy = random(n * op.c_out * ph * pw, seed + 1);
        let (mut pool_y, mut dy) = (vec![0.0; pool_dy.len()], vec![0.0; relu_y.len()]);
        for plane in 0..n * op.c_out {
            for (i, j) in (0..ph).flat_map(|i| (0..pw).map(move |j| (i, j))) {
                let at: Vec<usize> = [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(a, b)| (plane * h + 2 * i + a) * w + 2 * j + b).collect();
                let q = (plane * ph + i) * pw + j;
                let nan = at.iter().rev().find(|&&k| relu_y[k].is_nan());
                let m = at.iter().map(|&k| relu_y[k]).fold(f32::NEG_INFINITY, f32::max);
                pool_y[q] = if nan.is_some() { f32::NAN } else { m };
                let arg = nan.copied().unwrap_or_else(|| *at.iter().find(|&&k| relu_y[k] == m).unwrap());
                if relu_y[arg] > 0.0 {
                    dy[arg] = pool_dy[q];
                }
            }
        }
        [relu_y, pool_y, pool_dy, dy]
    }

    /// The filter gradient of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's gradient, on
    /// the direct path (a first layer's), equals the filter gradient of dY built by definition
    /// ([`pooled`]); rows of 14 windows (a partial run of 8) and of 16.
    #[test]
    fn filter_grad_from_max_pooling_matches_the_composition() {
        if !crate::ops::isa::avx2() {
            return println!("SKIPPED: the fused backward is the direct path's, which has AVX2 and AVX-512 kernels only ({} here)", crate::ops::isa::isa().name());
        }
        for op in [cases()[0], cases()[17], Conv2d::new(3, 5, [4, 28], [3, 3], [1, 1], [1, 1], [1, 1], 1, false)] {
            assert!(cpu::fuses_relu_max_pool_backward(&op, false), "{op:?} not fused");
            let n = 3;
            let x = random(n * op.x_len(), 31);
            let [relu_y, pool_y, pool_dy, dy] = pooled(&op, n, 32);
            let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
            let (mut want, mut got) = (random(op.param_len(), 34), random(op.param_len(), 34));
            cpu::backward(&op, n, &x, &[], None, &dy, None, None, Some(&mut want), &mut scratch);
            scratch.fill(f32::NAN);
            cpu::relu_max_pool_backward(&op, n, &x, &[], &relu_y, &pool_y, &pool_dy, None, Some(&mut got), &mut scratch);
            assert_eq!(got, want, "{op:?}");
        }
    }

    /// Both gradients of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's gradient, along its
    /// routes (`routed.rs`: input channels in blocks of 16), equal those of dY built by
    /// definition ([`pooled`]) through the dense backward, within rounding (the same products
    /// summed in another order): Model A's second layer (5 × 5, the AVX-512 kernels for fixed
    /// sizes), odd outputs (a last row or column no window takes), stride 2, dilation 2 (the
    /// kernels for any size), three blocks of input channels, long rows of windows; either
    /// gradient alone too.
    #[test]
    fn backward_from_max_pooling_matches_the_composition() {
        // Rows of 19 windows (16 at a time, then 3) and of 12 (AVX-512 lists them 16 at a time).
        let wide = [Conv2d::new(16, 8, [5, 38], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), Conv2d::new(16, 8, [4, 24], [3, 3], [1, 1], [1, 1], [1, 1], 1, false)];
        for op in [cases()[1], cases()[14], cases()[15], cases()[16], cases()[21], cases()[23]].into_iter().chain(wide) {
            assert!(cpu::fuses_relu_max_pool_backward(&op, true), "{op:?} not fused");
            let n = 3;
            let (x, wb) = (random(n * op.x_len(), 41), random(op.param_len(), 42));
            let [relu_y, pool_y, pool_dy, dy] = pooled(&op, n, 43);
            let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
            let (mut dx, mut dwb) = (vec![0.0; x.len()], random(op.param_len(), 44));
            cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
            for (want_dx, want_dwb) in [(true, true), (true, false), (false, true)] {
                scratch.fill(f32::NAN);
                let (mut got_dx, mut got_dwb) = (vec![f32::NAN; x.len()], random(op.param_len(), 44));
                let what = format!("{op:?}, dx {want_dx}, dwb {want_dwb}");
                cpu::relu_max_pool_backward(&op, n, &x, &wb, &relu_y, &pool_y, &pool_dy, want_dx.then_some(&mut got_dx[..]), want_dwb.then_some(&mut got_dwb[..]), &mut scratch);
                if want_dx {
                    assert_close(&got_dx, &to_f64(&dx), 1e-5, &format!("dx of {what}"));
                } else {
                    assert!(got_dx.iter().all(|v| v.is_nan()), "dx of {what} written");
                }
                if want_dwb {
                    assert_close(&got_dwb, &to_f64(&dwb), 1e-5, &format!("dwb of {what}"));
                } else {
                    assert_eq!(got_dwb, random(op.param_len(), 44), "dwb of {what} changed");
                }
            }
            // In a larger pool than the scratch was sized for: the same gradients.
            let wider = rayon::ThreadPoolBuilder::new().num_threads(rayon::current_num_threads() + 2).build().expect("a thread pool");
            let (mut got_dx, mut got_dwb) = (vec![f32::NAN; x.len()], random(op.param_len(), 44));
            wider.install(|| cpu::relu_max_pool_backward(&op, n, &x, &wb, &relu_y, &pool_y, &pool_dy, Some(&mut got_dx), Some(&mut got_dwb), &mut scratch));
            assert_close(&got_dx, &to_f64(&dx), 1e-5, &format!("dx of {op:?} in a wider pool"));
            assert_close(&got_dwb, &to_f64(&dwb), 1e-5, &format!("dwb of {op:?} in a wider pool"));
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut kept = 0;
        // Model A's layers are too large for finite differences; the rest covers every path.
        for op in cases().into_iter().skip(2) {
            let n = 2;
            let (x, wb, dy) = (random(n * op.x_len(), 4), random(op.param_len(), 5), random(n * op.y_len(), 6));
            let mut dx = vec![f32::NAN; x.len()];
            // Parameter gradients accumulate: start from 1 and expect 1 + the gradient.
            let mut dwb = vec![1.0; wb.len()];
            let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
            cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
            // Every coordinate of small tensors, 300 spread over large ones.
            let (at, want_dx) = numeric_grad_sampled(|x| naive(&op, n, x, &to_f64(&wb)), &x, &dy, 300);
            let got: Vec<f32> = at.iter().map(|&i| dx[i]).collect();
            assert_close(&got, &want_dx, 1e-4, &format!("dx of {op:?}"));
            // With the weights laid out beforehand, as a network keeps them (Winograd's for the
            // data gradient too, where it takes it), and a scratch of NaN: the same dx.
            let mut packed = vec![f32::NAN; cpu::packed_len(&op)];
            cpu::pack(&op, &wb, &mut packed);
            kept += (cpu::data_packed_len(&op) > 0) as usize;
            let mut dx_packed = vec![f32::NAN; x.len()];
            scratch.fill(f32::NAN);
            cpu::backward(&op, n, &x, &wb, Some(&packed), &dy, None, Some(&mut dx_packed), None, &mut scratch);
            assert!(dx_packed == dx, "dx of {op:?} with packed weights");
            let (at, want_dwb) = numeric_grad_sampled(|wb| naive(&op, n, &to_f64(&x), wb), &wb, &dy, 300);
            let got: Vec<f32> = at.iter().map(|&i| dwb[i]).collect();
            let want: Vec<f64> = want_dwb.iter().map(|g| g + 1.0).collect();
            assert_close(&got, &want, 1e-4, &format!("dwb of {op:?}"));
            // Every lane of the bias (the sample above may miss the last channels): 1 + Σ dy.
            if op.bias {
                let p = op.out_pixels();
                let want: Vec<f64> = (0..op.c_out).map(|c| 1.0 + (0..n).flat_map(|i| &dy[(i * op.c_out + c) * p..][..p]).map(|&v| v as f64).sum::<f64>()).collect();
                assert_close(&dwb[op.weight_len()..], &want, 1e-4, &format!("db of {op:?}"));
            }
        }
        // Winograd's data gradient takes 16 channels and more each side (32 with AVX-512).
        let least = if crate::ops::isa::avx512() { 2 } else { 6 };
        assert!(kept >= least, "only {kept} cases kept the data gradient's weights");
    }

    /// dW and db of the definition, in f64: Σ over the batch of dY (masked by `relu_y > 0`)
    /// times the input each weight meets.
    fn naive_filter_grad(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>) -> Vec<f64> {
        let (kh, kw) = (op.kernel[0], op.kernel[1]);
        let mut dwb = vec![0.0; op.param_len()];
        for b in 0..n {
            for co in 0..op.c_out {
                for oy in 0..op.h_out {
                    for ox in 0..op.w_out {
                        let at = b * op.y_len() + (co * op.h_out + oy) * op.w_out + ox;
                        let g = if relu_y.is_some_and(|y| y[at] <= 0.0) { 0.0 } else { dy[at] as f64 };
                        if op.bias {
                            dwb[op.weight_len() + co] += g;
                        }
                        for ci in 0..op.c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - op.padding[0] as isize;
                                    let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - op.padding[1] as isize;
                                    if iy >= 0 && ix >= 0 && iy < op.h_in as isize && ix < op.w_in as isize {
                                        let xv = x[b * op.x_len() + (ci * op.h_in + iy as usize) * op.w_in + ix as usize] as f64;
                                        dwb[((co * op.c_in + ci) * kh + ky) * kw + kx] += g * xv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        dwb
    }

    /// Filter gradients that take the sliding-window kernels (AVX-512; stride 1, rows of 16,
    /// 14, 12 or 8, 32 output channels or fewer) beyond those of [`cases`]: taps past the direct
    /// path's (K > 192).
    fn sliding_filter_cases() -> [Conv2d; 9] {
        [
            Conv2d::new(24, 16, [3, 14], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(24, 12, [4, 12], [3, 3], [1, 1], [1, 1], [1, 1], 1, false),
            Conv2d::new(24, 32, [3, 16], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(24, 20, [3, 14], [3, 3], [1, 1], [1, 1], [1, 1], 1, false),
            Conv2d::new(24, 32, [4, 12], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(24, 32, [5, 8], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(8, 32, [3, 16], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            Conv2d::new(8, 32, [4, 12], [5, 5], [1, 1], [2, 2], [1, 1], 1, false),
            Conv2d::new(8, 16, [3, 14], [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
        ]
    }

    /// With AVX-512, the filter gradients of [`cases`] and [`sliding_filter_cases`] take every
    /// sliding-window filter kernel: (rows, channels, window width).
    #[test]
    fn sliding_filter_kernels_take_the_cases() {
        if !crate::ops::isa::avx512() {
            return eprintln!("sliding_filter_kernels_take_the_cases: skipped, AVX-512 is not in use (the kernels are AVX-512's)");
        }
        let taken: Vec<(usize, usize, usize)> = cases().into_iter().chain(sliding_filter_cases()).filter_map(|op| cpu::filter_grad_kernel(&op)).filter(|k| k.run > 1).map(|k| (k.run, k.nr, k.mr)).collect();
        for want in [16, 14, 12, 8].into_iter().flat_map(|ur| [(ur, 16), (ur, 32)]).flat_map(|(ur, nr)| [(ur, nr, 3), (ur, nr, 5)]) {
            assert!(taken.contains(&want), "no case's filter gradient takes the sliding kernel of {want:?} (rows, channels, window): {taken:?}");
        }
    }

    #[test]
    fn filter_gradient_on_any_threads_matches_definition() {
        // Split by pixels (in the tests, groups of 16 KiB of images): one image a group, and up
        // to five; on three threads a thread's range starts and ends inside images. 40 channels
        // in two panels on one or two threads is split by channel panels instead. A 1 × 1
        // convolution reads its input unpadded. Winograd's filter gradient (in the tests from 32
        // channels on each side, and blocks of two images): 7 × 9 outputs, partial tiles on both
        // edges; 32 → 40 in blocks shared by the threads, 32 → 32 in each thread's own (so on
        // three threads, one of one image and two of two).
        let ops = [
            Conv2d::new(16, 40, [6, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(32, 40, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(32, 32, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Conv2d::new(3, 5, [7, 6], [3, 3], [2, 2], [1, 1], [1, 1], 1, true),
            Conv2d::new(6, 7, [5, 4], [1, 1], [1, 1], [0, 0], [1, 1], 1, false),
        ];
        let n = 5;
        assert!(!winograd::filter_grad_per_worker_applies(&ops[1]) && winograd::filter_grad_per_worker_applies(&ops[2]), "the Winograd layers take the shared blocks, then each thread's own");
        // And the sliding-window kernels' (AVX-512): on three threads, ranges of whole rows.
        for op in ops.into_iter().chain(sliding_filter_cases()) {
            let (x, dy, relu_y) = (random(n * op.x_len(), 61), random(n * op.y_len(), 62), random(n * op.y_len(), 63));
            for mask in [None, Some(&relu_y[..])] {
                // Parameter gradients accumulate: start from 1 and expect 1 + the gradient.
                let want: Vec<f64> = naive_filter_grad(&op, n, &x, &dy, mask).iter().map(|g| g + 1.0).collect();
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
                    let mut dwb = vec![1.0; op.param_len()];
                    pool.install(|| {
                        let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
                        cpu::backward(&op, n, &x, &vec![0.0; op.param_len()], None, &dy, mask, None, Some(&mut dwb), &mut scratch);
                    });
                    assert_close(&dwb, &want, 1e-5, &format!("dwb of {op:?} on {threads} threads, masked {}", mask.is_some()));
                }
            }
        }
    }

    /// Grouped convolutions (depthwise.rs): depthwise ones of every stride, dilation and
    /// kernel, odd sizes; groups of several channels; a channel multiplier; with and without
    /// bias.
    fn grouped_cases() -> Vec<Conv2d> {
        vec![
            // depthwise 3x3, stride 1, same padding (MobileNet's)
            Conv2d::new(6, 6, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1], 6, false),
            Conv2d::new(5, 5, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1], 5, true),
            // depthwise stride 2, odd size (phases of unequal length)
            Conv2d::new(4, 4, [7, 9], [3, 3], [2, 2], [1, 1], [1, 1], 4, true),
            Conv2d::new(3, 3, [10, 11], [3, 3], [2, 2], [1, 1], [1, 1], 3, false),
            // depthwise dilation 2
            Conv2d::new(3, 3, [9, 7], [3, 3], [1, 1], [2, 2], [2, 2], 3, true),
            // depthwise 5x5, rectangular 3x2 kernel with unequal strides, no padding
            Conv2d::new(4, 4, [7, 9], [5, 5], [1, 1], [2, 2], [1, 1], 4, true),
            Conv2d::new(2, 2, [9, 10], [3, 2], [1, 3], [0, 1], [1, 2], 2, false),
            // 20 channels of 17 wide: rows of two vectors and a remainder
            Conv2d::new(20, 20, [6, 17], [3, 3], [1, 1], [1, 1], [1, 1], 20, true),
            // groups of several channels
            Conv2d::new(4, 6, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1], 2, true),
            Conv2d::new(8, 8, [6, 5], [3, 3], [2, 1], [1, 0], [1, 1], 4, false),
            Conv2d::new(8, 12, [9, 7], [1, 1], [1, 1], [0, 0], [1, 1], 4, true),
            // a stride wider than MAX_PHASES (element by element), a 1x2 kernel
            Conv2d::new(2, 2, [5, 20], [1, 2], [1, 9], [0, 1], [1, 1], 2, true),
            // padding past the dilated kernel (no transposed convolution for dX)
            Conv2d::new(3, 3, [5, 6], [1, 1], [1, 1], [1, 1], [1, 1], 3, true),
            // a channel multiplier of 2 (c_out = 2·c_in, groups = c_in)
            Conv2d::new(3, 6, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1], 3, true),
            Conv2d::new(4, 8, [8, 8], [5, 5], [2, 2], [2, 2], [1, 1], 4, false),
            // small planes (depthwise.rs's `small` path, eight channels at a time): 11 and 13
            // channels leave a partial block of lanes; 1x1 with padding 1 reads the centre tap
            // alone; 2x2 and 4x4 with stride 1 and 2; a 5x5 kernel wider than its 2x3 plane
            Conv2d::new(11, 11, [1, 1], [3, 3], [1, 1], [1, 1], [1, 1], 11, true),
            Conv2d::new(13, 13, [2, 2], [3, 3], [1, 1], [1, 1], [1, 1], 13, false),
            Conv2d::new(9, 9, [2, 2], [3, 3], [2, 2], [1, 1], [1, 1], 9, true),
            Conv2d::new(16, 16, [4, 4], [3, 3], [1, 1], [1, 1], [1, 1], 16, true),
            Conv2d::new(11, 11, [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], 11, false),
            Conv2d::new(3, 3, [2, 3], [5, 5], [1, 1], [2, 2], [1, 1], 3, true),
            // an input larger than the small output plane: 16x15 with stride 2 to 8x8
            Conv2d::new(9, 9, [16, 15], [3, 3], [2, 2], [1, 1], [1, 1], 9, true),
        ]
    }

    /// Runs `f` on each depthwise path: the small-plane one where a shape takes it, then the
    /// padded-plane one on every shape (so both stay covered by every grouped case).
    fn on_both_paths(f: impl Fn()) {
        f();
        depthwise::small::NO_SMALL.with(|c| c.set(true));
        f();
        depthwise::small::NO_SMALL.with(|c| c.set(false));
    }

    #[test]
    fn grouped_forward_matches_definition() {
        on_both_paths(|| {
            for op in grouped_cases() {
                for relu in [false, true] {
                    let n = 3;
                    let x = random(n * op.x_len(), 11);
                    let wb = random(op.param_len(), 12);
                    let mut y = vec![f32::NAN; n * op.y_len()];
                    let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
                    cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, relu);
                    let mut want = naive(&op, n, &to_f64(&x), &to_f64(&wb));
                    if relu {
                        want.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                    assert_close(&y, &want, 1e-5, &format!("{op:?}, relu {relu}"));
                }
            }
        });
    }

    #[test]
    fn grouped_backward_matches_finite_differences() {
        on_both_paths(|| {
            for op in grouped_cases() {
                let n = 2;
                let (x, wb, dy) = (random(n * op.x_len(), 14), random(op.param_len(), 15), random(n * op.y_len(), 16));
                let mut dx = vec![f32::NAN; x.len()];
                // Parameter gradients accumulate: start from 1 and expect 1 + the gradient.
                let mut dwb = vec![1.0; wb.len()];
                let mut scratch = vec![f32::NAN; cpu::scratch_len(&op, n)];
                cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
                let (at, want_dx) = numeric_grad_sampled(|x| naive(&op, n, x, &to_f64(&wb)), &x, &dy, 400);
                let got: Vec<f32> = at.iter().map(|&i| dx[i]).collect();
                assert_close(&got, &want_dx, 1e-4, &format!("dx of {op:?}"));
                // Every weight and bias (grouped weights are few).
                let (at, want_dwb) = numeric_grad_sampled(|wb| naive(&op, n, &to_f64(&x), wb), &wb, &dy, wb.len());
                assert_eq!(at.len(), wb.len());
                let want: Vec<f64> = want_dwb.iter().map(|g| g + 1.0).collect();
                assert_close(&dwb, &want, 1e-4, &format!("dwb of {op:?}"));
            }
        });
    }

    /// A fused ReLU (its output's mask applied to dY inside the backward) gives what masking dY
    /// first gives.
    #[test]
    fn grouped_fused_relu_matches_the_composition() {
        on_both_paths(|| {
            for op in grouped_cases() {
                let n = 2;
                let (x, wb, dy) = (random(n * op.x_len(), 17), random(op.param_len(), 18), random(n * op.y_len(), 19));
                let mut scratch = vec![0.0; cpu::scratch_len(&op, n)];
                let mut y = vec![0.0; dy.len()];
                cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, true);
                let masked: Vec<f32> = dy.iter().zip(&y).map(|(&g, &v)| if v > 0.0 { g } else { 0.0 }).collect();
                let (mut dx, mut dwb) = (vec![0.0; x.len()], vec![0.0; wb.len()]);
                cpu::backward(&op, n, &x, &wb, None, &masked, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
                let (mut dx_f, mut dwb_f) = (vec![0.0; x.len()], vec![0.0; wb.len()]);
                cpu::backward(&op, n, &x, &wb, None, &dy, Some(&y), Some(&mut dx_f), Some(&mut dwb_f), &mut scratch);
                assert_eq!(dx_f, dx, "dx of {op:?}");
                assert_eq!(dwb_f, dwb, "dwb of {op:?}");
            }
        });
    }

    /// The grouped kernels split their work over threads: a one-thread pool gives the same
    /// results (each weight's sum has one owner, in a fixed order), also when the scratch was
    /// sized for fewer threads than run.
    #[test]
    fn grouped_results_do_not_depend_on_threads() {
        // Padded planes, and small ones (eight channels a task; 20 leave a partial block).
        for op in [Conv2d::new(12, 12, [9, 9], [3, 3], [2, 2], [1, 1], [1, 1], 12, true), Conv2d::new(20, 20, [4, 4], [3, 3], [1, 1], [1, 1], [1, 1], 20, true)] {
            results_do_not_depend_on_threads(op, 5, true);
        }
    }

    /// The same for the indirect kernels: the forward keeps partial sums per thread, and with a
    /// scratch for one thread the other two take a task's taps in one block (the same sums in
    /// the same order); the filter gradient makes as many partial sums as the scratch holds.
    /// 600 taps of 24 channels (not channel-blocked, blocks of taps forward and for the data
    /// gradient). And Model A's second layer, whose forward and data gradient are Winograd's
    /// (whole images a task, the same sums whatever the threads): its scratch, sized for
    /// Winograd's data gradient, holds the filter gradient's partial sums of three threads, so
    /// there its sums are ordered differently and only close.
    #[test]
    fn results_do_not_depend_on_threads_beyond_the_scratch() {
        results_do_not_depend_on_threads(Conv2d::new(24, 8, [6, 7], [5, 5], [1, 1], [2, 2], [1, 1], 1, true), 5, true);
        results_do_not_depend_on_threads(Conv2d::new(16, 32, [14, 14], [5, 5], [1, 1], [2, 2], [1, 1], 1, true), 5, false);
        // A forward of one, on three threads: each pads its own copy of the input, or with the
        // scratch of one thread, they share one. The indirect path (channel-blocked with
        // AVX-512) and the direct one.
        results_do_not_depend_on_threads(Conv2d::new(32, 40, [9, 11], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 1, false);
        results_do_not_depend_on_threads(Conv2d::new(3, 6, [6, 32], [3, 3], [1, 1], [1, 1], [1, 1], 1, true), 1, false);
    }

    fn results_do_not_depend_on_threads(op: Conv2d, n: usize, exact_dw: bool) {
        let (x, wb, dy) = (random(n * op.x_len(), 21), random(op.param_len(), 22), random(n * op.y_len(), 23));
        let pool = |t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        // Scratch sized for one thread, then used by three: they share it, none is left out.
        // And sized for three.
        let (small, large) = (pool(1).install(|| cpu::scratch_len(&op, n)), pool(3).install(|| cpu::scratch_len(&op, n)));
        let run = |len: usize| {
            let mut scratch = vec![0.0; len];
            let (mut y, mut dx, mut dwb) = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; wb.len()]);
            cpu::forward(&op, n, &x, &wb, None, &mut y, &mut scratch, false);
            cpu::backward(&op, n, &x, &wb, None, &dy, None, Some(&mut dx), Some(&mut dwb), &mut scratch);
            (y, dx, dwb)
        };
        let one = pool(1).install(|| run(small));
        for len in [small, large] {
            let three = pool(3).install(|| run(len));
            assert!(one.0 == three.0, "{op:?}, batch {n}: y differs between 1 and 3 threads (scratch {len})");
            assert!(one.1 == three.1, "{op:?}, batch {n}: dx differs between 1 and 3 threads (scratch {len})");
            // With the scratch of one thread, the filter gradient has one partial sum.
            if exact_dw && len == small {
                assert!(one.2 == three.2, "{op:?}, batch {n}: dw differs between 1 and 3 threads");
            } else {
                assert_close(&three.2, &to_f64(&one.2), 1e-6, &format!("{op:?}, batch {n}: dw on 3 threads"));
            }
        }
    }
}
