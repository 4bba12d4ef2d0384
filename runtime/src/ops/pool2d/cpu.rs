//! Pooling on the CPU: one output plane per task.
//!
//! Max pooling keeps no indices: the forward computes the maxima only (what inference needs, and
//! vectorisable), and the backward finds each window's argmax again as PyTorch defines it, the
//! first element equal to the maximum in scan order (the last NaN when the maximum is NaN). The
//! 2 × 2, stride 2 window of most CNNs has AVX2 paths both ways, for max and average pooling.

use rayon::prelude::*;
use staticnet_shape::pool_window;

use super::Pool2d;

/// y = max over each window (NaN propagates, as in PyTorch).
pub fn max_forward(op: &Pool2d, n: usize, x: &[f32], y: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    let fast = two_by_two(op);
    y[..planes * yp].par_chunks_mut(yp).zip(x[..planes * xp].par_chunks(xp)).for_each(|(y, x)| {
        #[cfg(target_arch = "x86_64")]
        if fast && crate::ops::isa::avx512() {
            // SAFETY: AVX-512 is present (checked above).
            return unsafe { avx512::max_forward(op, x, y) };
        }
        #[cfg(target_arch = "x86_64")]
        if fast && crate::ops::isa::avx2() {
            // SAFETY: AVX2 is present (checked above).
            return unsafe { avx2::max_forward(op, x, y) };
        }
        let _ = fast;
        for oy in 0..op.h_out {
            let rows = taps(oy, op.h_in, op.kernel[0], op.stride[0], op.padding[0], op.dilation[0]);
            for ox in 0..op.w_out {
                let cols = taps(ox, op.w_in, op.kernel[1], op.stride[1], op.padding[1], op.dilation[1]);
                let mut best = f32::NEG_INFINITY;
                let mut nan = false;
                for ky in 0..rows.count {
                    let row = (rows.first + ky * op.dilation[0]) * op.w_in;
                    for kx in 0..cols.count {
                        let v = x[row + cols.first + kx * op.dilation[1]];
                        best = best.max(v);
                        nan |= v.is_nan();
                    }
                }
                y[oy * op.w_out + ox] = if nan { f32::NAN } else { best };
            }
        }
    });
}

/// dx = 0, then dx[argmax of each window] += dy, with the argmax found from x and y.
pub fn max_backward(op: &Pool2d, n: usize, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    let fast = two_by_two(op);
    dx[..planes * xp]
        .par_chunks_mut(xp)
        .zip(x[..planes * xp].par_chunks(xp))
        .zip(y[..planes * yp].par_chunks(yp).zip(dy[..planes * yp].par_chunks(yp)))
        .for_each(|((dx, x), (y, dy))| {
            #[cfg(target_arch = "x86_64")]
            if fast && crate::ops::isa::avx512() {
                if !avx2::covers(op) {
                    dx.fill(0.0);
                }
                // SAFETY: AVX-512 is present (checked above).
                return unsafe { avx512::max_backward(op, x, y, dy, dx) };
            }
            #[cfg(target_arch = "x86_64")]
            if fast && crate::ops::isa::avx2() {
                if !avx2::covers(op) {
                    dx.fill(0.0);
                }
                // SAFETY: AVX2 is present (checked above).
                return unsafe { avx2::max_backward(op, x, y, dy, dx) };
            }
            let _ = fast;
            dx.fill(0.0);
            for oy in 0..op.h_out {
                let rows = taps(oy, op.h_in, op.kernel[0], op.stride[0], op.padding[0], op.dilation[0]);
                for ox in 0..op.w_out {
                    let cols = taps(ox, op.w_in, op.kernel[1], op.stride[1], op.padding[1], op.dilation[1]);
                    let m = y[oy * op.w_out + ox];
                    let at = argmax(op, x, rows, cols, m);
                    dx[at] += dy[oy * op.w_out + ox];
                }
            }
        });
}

/// The index PyTorch's max pooling picks in a window whose maximum is `m`: the first element
/// equal to it, or the last NaN when `m` is NaN.
fn argmax(op: &Pool2d, x: &[f32], rows: Taps, cols: Taps, m: f32) -> usize {
    let mut found = None;
    for ky in 0..rows.count {
        let row = (rows.first + ky * op.dilation[0]) * op.w_in;
        for kx in 0..cols.count {
            let i = row + cols.first + kx * op.dilation[1];
            if m.is_nan() {
                if x[i].is_nan() {
                    found = Some(i);
                }
            } else if x[i] == m {
                return i;
            }
        }
    }
    found.unwrap_or(rows.first * op.w_in + cols.first)
}

/// The 2 × 2, stride 2 window with no padding or dilation, on an input of even width (so each
/// pair of input columns feeds one output).
fn two_by_two(op: &Pool2d) -> bool {
    op.kernel == [2, 2] && op.stride == [2, 2] && op.padding == [0, 0] && op.dilation == [1, 1] && op.w_out * 2 <= op.w_in && op.h_out * 2 <= op.h_in
}

/// The backward of a run of `count` 2 × 2 windows (as the vector paths take them) where a
/// maximum is NaN: window by window, the gradient to the last NaN of a NaN window, else to the
/// first cell equal to the maximum.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn nan_run_backward(count: usize, top: usize, bottom: usize, out: usize, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    for k in 0..count {
        let cells = [top + 2 * k, top + 2 * k + 1, bottom + 2 * k, bottom + 2 * k + 1];
        let m = y[out + k];
        let at = if m.is_nan() { cells.iter().rev().copied().find(|&i| x[i].is_nan()) } else { cells.iter().copied().find(|&i| x[i] == m) };
        for i in cells {
            dx[i] = if Some(i) == at { dy[out + k] } else { 0.0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The 2 × 2, stride 2 window, eight outputs at a time. A row's last outputs (all of them
    //! when the row is shorter than eight, as in MNIST's 7-wide maps) go through masked loads,
    //! and stores of 4, 2 and 1 floats, rather than a scalar loop.
    use std::arch::x86_64::*;

    use super::Pool2d;

    /// max(a, b) that is NaN when either is (`_mm256_max_ps` alone returns b for a NaN a).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn max_nan(a: __m256, b: __m256) -> __m256 {
        let m = _mm256_max_ps(a, b);
        let unordered = _mm256_cmp_ps::<_CMP_UNORD_Q>(a, b);
        _mm256_blendv_ps(m, _mm256_add_ps(a, b), unordered)
    }

    /// Pairs (0,1) (2,3) … of 16 consecutive floats split into evens and odds, in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn evens_odds(lo: __m256, hi: __m256) -> (__m256, __m256) {
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
        // shuffle_ps works per 128-bit lane: put the quarters back in order.
        let fix = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
        (fix(e), fix(o))
    }

    /// The inverse of `evens_odds`: evens and odds interleaved back into 16 consecutive floats.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn interleave(e: __m256, o: __m256) -> (__m256, __m256) {
        let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
        (_mm256_permute2f128_ps::<0x20>(lo, hi), _mm256_permute2f128_ps::<0x31>(lo, hi))
    }

    /// Lanes `0..count` set.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(count: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(count.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// `count` ≤ 8 floats from `p`, zeros after them. Safety: `p .. p + count` is readable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(p: *const f32, count: usize) -> __m256 {
        // SAFETY: a full load reads p .. p + 8; a masked one touches only the set lanes; none at
        // all for count 0 (where p may lie past the end, see `load_pairs`).
        unsafe {
            match count {
                0 => _mm256_setzero_ps(),
                1..8 => _mm256_maskload_ps(p, lanes(count)),
                _ => _mm256_loadu_ps(p),
            }
        }
    }

    /// Stores the first `count` ≤ 8 lanes of `v` at `p`. Safety: `p .. p + count` is writable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store(p: *mut f32, count: usize, v: __m256) {
        // SAFETY: as in `load`.
        unsafe { if count >= 8 { _mm256_storeu_ps(p, v) } else { crate::ops::transpose::store_first(p, count, v) } }
    }

    /// The 2·`count` floats of `count` ≤ 8 windows' columns from `p`, split into evens and odds.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pairs(p: *const f32, count: usize) -> (__m256, __m256) {
        // SAFETY: p .. p + 2·count is readable (the caller's promise); the second load's address
        // is only dereferenced in lanes below 2·count − 8.
        unsafe { evens_odds(load(p, 2 * count), load(p.wrapping_add(8), (2 * count).saturating_sub(8))) }
    }

    /// Writes evens `e` and odds `o` of `count` ≤ 8 windows interleaved at `p`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store_pairs(p: *mut f32, count: usize, e: __m256, o: __m256) {
        let (first, second) = interleave(e, o);
        // SAFETY: as in `load_pairs`.
        unsafe {
            store(p, 2 * count, first);
            store(p.wrapping_add(8), (2 * count).saturating_sub(8), second);
        }
    }

    /// Calls `f(count, top, bottom, out)` for each run of `count` ≤ 8 windows along an output
    /// row: `top` and `bottom` index the run's first window's cells in x, `out` its output in y.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn runs(op: &Pool2d, mut f: impl FnMut(usize, usize, usize, usize)) {
        for oy in 0..op.h_out {
            for ox in (0..op.w_out).step_by(8) {
                f((op.w_out - ox).min(8), 2 * oy * op.w_in + 2 * ox, (2 * oy + 1) * op.w_in + 2 * ox, oy * op.w_out + ox);
            }
        }
    }

    /// What the unchecked loads and stores below rely on: an input plane of `x_len` and an output
    /// plane of `y_len` floats at least, and every window inside the input.
    pub(super) fn planes(op: &Pool2d, x_len: usize, y_len: usize) {
        assert!(x_len >= op.h_in * op.w_in && y_len >= op.h_out * op.w_out && 2 * op.w_out <= op.w_in && 2 * op.h_out <= op.h_in);
    }

    /// Whether the windows cover every input cell (even sizes), so the backward writes all of
    /// dx and need not zero it first.
    pub fn covers(op: &Pool2d) -> bool {
        op.w_in == 2 * op.w_out && op.h_in == 2 * op.h_out
    }

    /// One plane of max pooling's forward.
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_forward(op: &Pool2d, x: &[f32], y: &mut [f32]) {
        planes(op, x.len(), y.len());
        runs(op, |count, top, bottom, out| {
            // SAFETY: a run's 2·count columns lie in rows 2·oy and 2·oy + 1 of x (asserted sizes),
            // its count outputs in row oy of y.
            unsafe {
                let (te, to) = load_pairs(x.as_ptr().add(top), count);
                let (be, bo) = load_pairs(x.as_ptr().add(bottom), count);
                store(y.as_mut_ptr().add(out), count, max_nan(max_nan(te, to), max_nan(be, bo)));
            }
        });
    }

    /// One plane of max pooling's backward: each window's gradient goes to the first of
    /// (top-left, top-right, bottom-left, bottom-right) equal to its maximum, or to the last NaN
    /// when the maximum is NaN. dx is zero where no window writes (see `covers`).
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_backward(op: &Pool2d, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        planes(op, x.len().min(dx.len()), y.len().min(dy.len()));
        runs(op, |count, top, bottom, out| {
            // SAFETY: as in the forward; dx has x's size.
            unsafe {
                let m = load(y.as_ptr().add(out), count);
                let g = load(dy.as_ptr().add(out), count);
                if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(m, m)) & ((1 << count) - 1) != 0 {
                    return super::nan_run_backward(count, top, bottom, out, x, y, dy, dx);
                }
                let (te, to) = load_pairs(x.as_ptr().add(top), count);
                let (be, bo) = load_pairs(x.as_ptr().add(bottom), count);
                let eq = |v: __m256| _mm256_cmp_ps::<_CMP_EQ_OQ>(v, m);
                // First match wins: each later position only where no earlier one matched.
                let tl = eq(te);
                let tr = _mm256_andnot_ps(tl, eq(to));
                let taken = _mm256_or_ps(tl, tr);
                let bl = _mm256_andnot_ps(taken, eq(be));
                let br = _mm256_andnot_ps(_mm256_or_ps(taken, bl), eq(bo));
                let put = |mask: __m256| _mm256_and_ps(mask, g);
                store_pairs(dx.as_mut_ptr().add(top), count, put(tl), put(tr));
                store_pairs(dx.as_mut_ptr().add(bottom), count, put(bl), put(br));
            }
        });
    }

    /// One plane of average pooling's forward: (top row's pair + bottom row's pair) / divisor,
    /// summed in the order of the general path.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avg_forward(op: &Pool2d, divisor: f32, x: &[f32], y: &mut [f32]) {
        planes(op, x.len(), y.len());
        let d = _mm256_set1_ps(divisor);
        runs(op, |count, top, bottom, out| {
            // SAFETY: as in `max_forward`.
            unsafe {
                let (te, to) = load_pairs(x.as_ptr().add(top), count);
                let (be, bo) = load_pairs(x.as_ptr().add(bottom), count);
                let sum = _mm256_add_ps(_mm256_add_ps(te, to), _mm256_add_ps(be, bo));
                store(y.as_mut_ptr().add(out), count, _mm256_div_ps(sum, d));
            }
        });
    }

    /// One plane of average pooling's backward: dy / divisor to each of a window's four cells.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avg_backward(op: &Pool2d, divisor: f32, dy: &[f32], dx: &mut [f32]) {
        planes(op, dx.len(), dy.len());
        let d = _mm256_set1_ps(divisor);
        runs(op, |count, top, bottom, out| {
            // SAFETY: as in `max_backward`.
            unsafe {
                let g = _mm256_div_ps(load(dy.as_ptr().add(out), count), d);
                store_pairs(dx.as_mut_ptr().add(top), count, g, g);
                store_pairs(dx.as_mut_ptr().add(bottom), count, g, g);
            }
        });
    }
}

/// y = mean over each window (PyTorch's divisor rules, see `staticnet_shape::pool_window`).
pub fn avg_forward(op: &Pool2d, n: usize, x: &[f32], y: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    let fast = two_by_two(op);
    y[..planes * yp].par_chunks_mut(yp).zip(x[..planes * xp].par_chunks(xp)).for_each(|(y, x)| {
        #[cfg(target_arch = "x86_64")]
        if fast && crate::ops::isa::avx2() {
            // SAFETY: AVX2 is present (checked above).
            return unsafe { avx2::avg_forward(op, two_by_two_divisor(op), x, y) };
        }
        let _ = fast;
        for oy in 0..op.h_out {
            let wy = pool_window(oy, op.h_in, op.kernel[0], op.stride[0], op.padding[0]);
            for ox in 0..op.w_out {
                let wx = pool_window(ox, op.w_in, op.kernel[1], op.stride[1], op.padding[1]);
                let mut sum = 0.0;
                for iy in wy.start..wy.end {
                    sum += x[iy * op.w_in + wx.start..iy * op.w_in + wx.end].iter().sum::<f32>();
                }
                y[oy * op.w_out + ox] = sum / divisor(op, wy, wx);
            }
        }
    });
}

/// `dx[window] += dy / divisor` (written: dx starts at 0).
pub fn avg_backward(op: &Pool2d, n: usize, dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    let fast = two_by_two(op);
    dx[..planes * xp].par_chunks_mut(xp).zip(dy[..planes * yp].par_chunks(yp)).for_each(|(dx, dy)| {
        #[cfg(target_arch = "x86_64")]
        if fast && crate::ops::isa::avx2() {
            if !avx2::covers(op) {
                dx.fill(0.0);
            }
            // SAFETY: AVX2 is present (checked above).
            return unsafe { avx2::avg_backward(op, two_by_two_divisor(op), dy, dx) };
        }
        let _ = fast;
        dx.fill(0.0);
        for oy in 0..op.h_out {
            let wy = pool_window(oy, op.h_in, op.kernel[0], op.stride[0], op.padding[0]);
            for ox in 0..op.w_out {
                let wx = pool_window(ox, op.w_in, op.kernel[1], op.stride[1], op.padding[1]);
                let g = dy[oy * op.w_out + ox] / divisor(op, wy, wx);
                for iy in wy.start..wy.end {
                    for v in &mut dx[iy * op.w_in + wx.start..iy * op.w_in + wx.end] {
                        *v += g;
                    }
                }
            }
        }
    });
}

/// The divisor of every 2 × 2 window (none is padded): 4, or the override.
fn two_by_two_divisor(op: &Pool2d) -> f32 {
    if op.divisor_override > 0 { op.divisor_override as f32 } else { 4.0 }
}

fn divisor(op: &Pool2d, wy: staticnet_shape::PoolWindow, wx: staticnet_shape::PoolWindow) -> f32 {
    if op.divisor_override > 0 {
        op.divisor_override as f32
    } else if op.count_include_pad {
        (wy.padded_size * wx.padded_size) as f32
    } else {
        ((wy.end - wy.start) * (wx.end - wx.start)) as f32
    }
}

/// The input positions a max-pooling window at output `o` reads, skipping padding:
/// `o·stride − padding + k·dilation` for k in 0..kernel, kept where inside `[0, len)`. They are
/// `count` positions from `first`, `dilation` apart.
#[derive(Clone, Copy)]
struct Taps {
    first: usize,
    count: usize,
}

#[inline]
fn taps(o: usize, len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Taps {
    let start = o * stride; // in padded coordinates
    if dilation == 1 {
        let first = start.max(padding);
        let end = (start + kernel).min(len + padding);
        return Taps { first: first - padding, count: end.saturating_sub(first) };
    }
    // First k with start + k·d ≥ padding, and one past the last with start + k·d < len + padding.
    let k0 = padding.saturating_sub(start).div_ceil(dilation);
    let k1 = if len + padding > start { ((len + padding - start - 1) / dilation + 1).min(kernel) } else { 0 };
    let count = k1.saturating_sub(k0);
    Taps { first: (start + k0 * dilation).saturating_sub(padding), count }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The 2 × 2, stride 2 max pooling of `avx2`, sixteen outputs at a time: a window row's
    //! evens and odds come out of two loads through one two-source permutation each, and a
    //! row's last outputs through masked loads and stores.
    use std::arch::x86_64::*;

    use super::Pool2d;

    /// Lanes `0..count` set (count ≤ 16).
    #[inline]
    fn lanes(count: usize) -> __mmask16 {
        ((1u32 << count.min(16)) - 1) as __mmask16
    }

    /// max(a, b) that is NaN when either is (`_mm512_max_ps` alone returns b for a NaN a).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn max_nan(a: __m512, b: __m512) -> __m512 {
        let unordered = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, b);
        _mm512_mask_add_ps(_mm512_max_ps(a, b), unordered, a, b)
    }

    /// The 2·`count` floats of `count` ≤ 16 windows' columns from `p`, split into evens and odds.
    /// Safety: `p .. p + 2·count` is readable (masked lanes are not touched).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_pairs(p: *const f32, count: usize) -> (__m512, __m512) {
        // SAFETY: as the caller promises; the second load's address is only dereferenced in lanes
        // below 2·count − 16.
        let (lo, hi) = unsafe { (_mm512_maskz_loadu_ps(lanes(2 * count), p), _mm512_maskz_loadu_ps(lanes((2 * count).saturating_sub(16)), p.wrapping_add(16))) };
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (_mm512_permutex2var_ps(lo, evens, hi), _mm512_permutex2var_ps(lo, odds, hi))
    }

    /// Writes evens `e` and odds `o` of `count` ≤ 16 windows interleaved at `p`.
    /// Safety: `p .. p + 2·count` is writable.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_pairs(p: *mut f32, count: usize, e: __m512, o: __m512) {
        let first = _mm512_permutex2var_ps(e, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), o);
        let second = _mm512_permutex2var_ps(e, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), o);
        // SAFETY: as the caller promises.
        unsafe {
            _mm512_mask_storeu_ps(p, lanes(2 * count), first);
            _mm512_mask_storeu_ps(p.wrapping_add(16), lanes((2 * count).saturating_sub(16)), second);
        }
    }

    /// Calls `f(count, top, bottom, out)` for each run of `count` ≤ 16 windows along an output
    /// row (as `avx2::runs`).
    #[inline]
    fn runs(op: &Pool2d, mut f: impl FnMut(usize, usize, usize, usize)) {
        for oy in 0..op.h_out {
            for ox in (0..op.w_out).step_by(16) {
                f((op.w_out - ox).min(16), 2 * oy * op.w_in + 2 * ox, (2 * oy + 1) * op.w_in + 2 * ox, oy * op.w_out + ox);
            }
        }
    }

    /// One plane of max pooling's forward.
    /// Safety: AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn max_forward(op: &Pool2d, x: &[f32], y: &mut [f32]) {
        super::avx2::planes(op, x.len(), y.len());
        runs(op, |count, top, bottom, out| {
            // SAFETY: a run's 2·count columns lie in rows 2·oy and 2·oy + 1 of x (asserted sizes),
            // its count outputs in row oy of y.
            unsafe {
                let (te, to) = load_pairs(x.as_ptr().add(top), count);
                let (be, bo) = load_pairs(x.as_ptr().add(bottom), count);
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(out), lanes(count), max_nan(max_nan(te, to), max_nan(be, bo)));
            }
        });
    }

    /// One plane of max pooling's backward, as `avx2::max_backward`.
    /// Safety: AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn max_backward(op: &Pool2d, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        super::avx2::planes(op, x.len().min(dx.len()), y.len().min(dy.len()));
        runs(op, |count, top, bottom, out| {
            // SAFETY: as in the forward; dx has x's size.
            unsafe {
                let m = _mm512_maskz_loadu_ps(lanes(count), y.as_ptr().add(out));
                let g = _mm512_maskz_loadu_ps(lanes(count), dy.as_ptr().add(out));
                if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m, m) != 0 {
                    return super::nan_run_backward(count, top, bottom, out, x, y, dy, dx);
                }
                let (te, to) = load_pairs(x.as_ptr().add(top), count);
                let (be, bo) = load_pairs(x.as_ptr().add(bottom), count);
                let eq = |v: __m512| _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v, m);
                // First match wins: each later position only where no earlier one matched.
                let tl = eq(te);
                let tr = !tl & eq(to);
                let bl = !(tl | tr) & eq(be);
                let br = !(tl | tr | bl) & eq(bo);
                let put = |mask: __mmask16| _mm512_maskz_mov_ps(mask, g);
                store_pairs(dx.as_mut_ptr().add(top), count, put(tl), put(tr));
                store_pairs(dx.as_mut_ptr().add(bottom), count, put(bl), put(br));
            }
        });
    }
}
