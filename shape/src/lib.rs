//! Shape arithmetic of staticnet's layers, exactly as PyTorch computes it.
//!
//! This crate is the one place where output sizes are computed. The `network!` macro calls it at
//! compile time to check a network and to size every buffer; the runtime calls it in its own
//! asserts. Because both use the same functions, what the compiler accepted is what runs.
//!
//! All functions work on one spatial axis; a 2-D layer calls them once for the height and once
//! for the width.

#![no_std]

/// Output length of a convolution along one axis (PyTorch's `Conv2d` formula):
///
/// `out = (len + 2·padding − dilation·(kernel − 1) − 1) / stride + 1`, rounded down.
///
/// Returns `None` when the dilated kernel is larger than the padded input (PyTorch raises
/// "Kernel size can't be greater than actual input size"), or when `stride` or `kernel` is 0.
pub const fn conv_out(len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let padded = len + 2 * padding;
    let span = effective_kernel(kernel, dilation);
    if span > padded {
        return None;
    }
    Some((padded - span) / stride + 1)
}

/// The number of input positions a dilated kernel spans: `dilation·(kernel − 1) + 1`.
pub const fn effective_kernel(kernel: usize, dilation: usize) -> usize {
    dilation * (kernel - 1) + 1
}

/// Output length of max or average pooling along one axis (PyTorch's `pooling_output_shape`).
///
/// With `ceil_mode` the division rounds up, but a last window that would start beyond the input
/// (in the right padding) is dropped, as PyTorch does. Returns `None` when the window is larger
/// than the padded input or a size is 0.
pub const fn pool_out(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let padded = len + 2 * padding;
    let span = effective_kernel(kernel, dilation);
    if span > padded {
        return None;
    }
    let room = padded - span;
    let mut out = if ceil_mode { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil_mode && (out - 1) * stride >= len + padding {
        out -= 1;
    }
    Some(out)
}

/// The input window `[start, end)` that output `i` of adaptive pooling averages over
/// (PyTorch's `start_index` / `end_index`): `start = ⌊i·in/out⌋`, `end = ⌈(i+1)·in/out⌉`.
///
/// Windows may overlap and differ in size when `out` does not divide `in`; when `out > in`
/// several outputs share one input.
pub const fn adaptive_window(i: usize, in_len: usize, out_len: usize) -> (usize, usize) {
    let start = (i * in_len) / out_len;
    let end = ((i + 1) * in_len).div_ceil(out_len);
    (start, end)
}

/// The window `[start, end)` of pooling output `o` in padded coordinates clipped to the input,
/// and the divisor average pooling uses for it.
///
/// PyTorch's `avg_pool2d`: the window starts at `o·stride − padding`; `count_include_pad`
/// counts the padded cells inside `[−padding, len + padding)` but never the part of a
/// `ceil_mode` window that hangs past the right padding.
pub const fn pool_window(o: usize, len: usize, kernel: usize, stride: usize, padding: usize) -> PoolWindow {
    let start_padded = o * stride; // coordinate in the padded input
    let end_padded = min(start_padded + kernel, len + 2 * padding);
    let pool_size = end_padded - start_padded;
    let start = sat_sub(start_padded, padding);
    let end = min(sat_sub(end_padded, padding), len);
    PoolWindow { start, end, padded_size: pool_size }
}

/// A pooling window along one axis, see [`pool_window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    /// First input index inside the window.
    pub start: usize,
    /// One past the last input index inside the window (`end > start` unless the window lies
    /// wholly in the padding).
    pub end: usize,
    /// Window length counting padded cells (what `count_include_pad = True` divides by).
    pub padded_size: usize,
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

const fn sat_sub(a: usize, b: usize) -> usize {
    if a > b { a - b } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values below are PyTorch's, computed by hand from its documented formulas and
    // checked against `torch.nn.functional` output shapes.

    #[test]
    fn conv_matches_pytorch() {
        assert_eq!(conv_out(28, 5, 1, 2, 1), Some(28)); // Model A
        assert_eq!(conv_out(28, 5, 1, 0, 1), Some(24)); // Model C
        assert_eq!(conv_out(224, 11, 4, 2, 1), Some(55)); // AlexNet stem
        assert_eq!(conv_out(29, 3, 2, 1, 1), Some(15));
        assert_eq!(conv_out(31, 3, 2, 1, 2), Some(15));
        assert_eq!(conv_out(4, 5, 1, 0, 1), None);
        assert_eq!(conv_out(4, 5, 1, 1, 1), Some(2));
        assert_eq!(conv_out(4, 3, 0, 0, 1), None);
    }

    #[test]
    fn pool_matches_pytorch() {
        assert_eq!(pool_out(28, 2, 2, 0, 1, false), Some(14));
        assert_eq!(pool_out(55, 3, 2, 0, 1, false), Some(27)); // AlexNet
        assert_eq!(pool_out(13, 3, 2, 0, 1, false), Some(6));
        assert_eq!(pool_out(7, 2, 2, 0, 1, false), Some(3));
        assert_eq!(pool_out(7, 2, 2, 0, 1, true), Some(4));
        // ceil_mode never starts a window in the right padding: len 6, k 2, s 2, p 1 gives 4.
        assert_eq!(pool_out(6, 2, 2, 1, 1, true), Some(4));
        assert_eq!(pool_out(5, 3, 2, 1, 1, true), Some(3));
        // ...and drops a window that would start there: len 5, k 2, s 2, p 1 gives 3, not 4.
        assert_eq!(pool_out(5, 2, 2, 1, 1, true), Some(3));
        assert_eq!(pool_out(1, 2, 2, 0, 1, false), None);
    }

    #[test]
    fn adaptive_windows_match_pytorch() {
        // 13 -> 6 (AlexNet's avgpool on a 13x13 map): windows of 3 overlapping.
        let w: [(usize, usize); 6] = core::array::from_fn(|i| adaptive_window(i, 13, 6));
        assert_eq!(w, [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]);
        // 3 -> 6: every input is shared by two outputs.
        let w: [(usize, usize); 6] = core::array::from_fn(|i| adaptive_window(i, 3, 6));
        assert_eq!(w, [(0, 1), (0, 1), (1, 2), (1, 2), (2, 3), (2, 3)]);
    }

    #[test]
    fn avg_pool_divisor_counts_padding_but_not_overhang() {
        // len 5, kernel 3, stride 2, padding 1, ceil_mode: outputs 0..3
        assert_eq!(pool_window(0, 5, 3, 2, 1), PoolWindow { start: 0, end: 2, padded_size: 3 });
        assert_eq!(pool_window(2, 5, 3, 2, 1), PoolWindow { start: 3, end: 5, padded_size: 3 });
        // len 7, kernel 2, stride 2, ceil_mode: the last window hangs past the input.
        assert_eq!(pool_window(3, 7, 2, 2, 0), PoolWindow { start: 6, end: 7, padded_size: 1 });
    }
}
