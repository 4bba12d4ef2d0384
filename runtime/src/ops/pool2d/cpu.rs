//! Pooling on the CPU: one output plane per task.
//!
//! Max pooling keeps no indices: the forward computes the maxima only (what inference needs, and
//! vectorisable), and the backward finds each window's argmax again as PyTorch defines it, the
//! first element equal to the maximum in scan order (the last NaN when the maximum is NaN). The
//! 2 × 2, stride 2 window of most CNNs has AVX2 paths both ways.

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
        if fast && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked above).
            return unsafe { avx2::max_2x2_forward(op, x, y) };
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
            dx.fill(0.0);
            #[cfg(target_arch = "x86_64")]
            if fast && std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked above).
                return unsafe { avx2::max_2x2_backward(op, x, y, dy, dx) };
            }
            let _ = fast;
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
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

    /// One plane of the 2 × 2 forward, eight outputs at a time.
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_2x2_forward(op: &Pool2d, x: &[f32], y: &mut [f32]) {
        let (wi, wo) = (op.w_in, op.w_out);
        for oy in 0..op.h_out {
            let (r0, r1) = (&x[2 * oy * wi..], &x[(2 * oy + 1) * wi..]);
            let out = &mut y[oy * wo..(oy + 1) * wo];
            let mut ox = 0;
            while ox + 8 <= wo {
                // SAFETY: columns 2·ox .. 2·ox + 16 ≤ 2·w_out ≤ w_in lie in both rows.
                unsafe {
                    let v = max_nan(_mm256_loadu_ps(r0.as_ptr().add(2 * ox)), _mm256_loadu_ps(r1.as_ptr().add(2 * ox)));
                    let w = max_nan(_mm256_loadu_ps(r0.as_ptr().add(2 * ox + 8)), _mm256_loadu_ps(r1.as_ptr().add(2 * ox + 8)));
                    let (e, o) = evens_odds(v, w);
                    _mm256_storeu_ps(out.as_mut_ptr().add(ox), max_nan(e, o));
                }
                ox += 8;
            }
            for (o, v) in out.iter_mut().enumerate().skip(ox) {
                let w = [r0[2 * o], r0[2 * o + 1], r1[2 * o], r1[2 * o + 1]];
                *v = if w.iter().any(|v| v.is_nan()) { f32::NAN } else { w.iter().copied().fold(f32::NEG_INFINITY, f32::max) };
            }
        }
    }

    /// One plane of the 2 × 2 backward, eight outputs at a time: the gradient goes to the first
    /// of (top-left, top-right, bottom-left, bottom-right) equal to the maximum.
    #[target_feature(enable = "avx2")]
    pub unsafe fn max_2x2_backward(op: &Pool2d, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (wi, wo) = (op.w_in, op.w_out);
        for oy in 0..op.h_out {
            let (r0, r1) = (2 * oy * wi, (2 * oy + 1) * wi);
            let mut ox = 0;
            while ox + 8 <= wo && !has_nan(&y[oy * wo + ox..oy * wo + ox + 8]) {
                // SAFETY: as in the forward, all reads and writes stay inside the two rows.
                unsafe {
                    let (t0, t1) = evens_odds(_mm256_loadu_ps(x.as_ptr().add(r0 + 2 * ox)), _mm256_loadu_ps(x.as_ptr().add(r0 + 2 * ox + 8)));
                    let (b0, b1) = evens_odds(_mm256_loadu_ps(x.as_ptr().add(r1 + 2 * ox)), _mm256_loadu_ps(x.as_ptr().add(r1 + 2 * ox + 8)));
                    let m = _mm256_loadu_ps(y.as_ptr().add(oy * wo + ox));
                    let g = _mm256_loadu_ps(dy.as_ptr().add(oy * wo + ox));
                    let eq = |v: __m256| _mm256_cmp_ps::<_CMP_EQ_OQ>(v, m);
                    // First match wins: each later position only where no earlier one matched.
                    let m_tl = eq(t0);
                    let m_tr = _mm256_andnot_ps(m_tl, eq(t1));
                    let taken = _mm256_or_ps(m_tl, m_tr);
                    let m_bl = _mm256_andnot_ps(taken, eq(b0));
                    let taken = _mm256_or_ps(taken, m_bl);
                    let m_br = _mm256_andnot_ps(taken, eq(b1));
                    let put = |mask: __m256| _mm256_and_ps(mask, g);
                    // Interleave evens and odds back into input order.
                    let store = |row: usize, e: __m256, o: __m256, dx: &mut [f32]| {
                        let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
                        let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
                        let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
                        _mm256_storeu_ps(dx.as_mut_ptr().add(row + 2 * ox), first);
                        _mm256_storeu_ps(dx.as_mut_ptr().add(row + 2 * ox + 8), second);
                    };
                    store(r0, put(m_tl), put(m_tr), dx);
                    store(r1, put(m_bl), put(m_br), dx);
                }
                ox += 8;
            }
            // The rest of the row (and any block holding a NaN maximum) one window at a time.
            for o in ox..wo {
                let m = y[oy * wo + o];
                let cells = [r0 + 2 * o, r0 + 2 * o + 1, r1 + 2 * o, r1 + 2 * o + 1];
                let at = if m.is_nan() {
                    cells.iter().rev().copied().find(|&i| x[i].is_nan()).unwrap_or(cells[0])
                } else {
                    cells.iter().copied().find(|&i| x[i] == m).unwrap_or(cells[0])
                };
                dx[at] += dy[oy * wo + o];
            }
        }
    }

    fn has_nan(v: &[f32]) -> bool {
        v.iter().any(|v| v.is_nan())
    }
}

/// y = mean over each window (PyTorch's divisor rules, see `staticnet_shape::pool_window`).
pub fn avg_forward(op: &Pool2d, n: usize, x: &[f32], y: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    y[..planes * yp].par_chunks_mut(yp).zip(x[..planes * xp].par_chunks(xp)).for_each(|(y, x)| {
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

/// dx[window] += dy / divisor (written: dx starts at 0).
pub fn avg_backward(op: &Pool2d, n: usize, dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    dx[..planes * xp].par_chunks_mut(xp).zip(dy[..planes * yp].par_chunks(yp)).for_each(|(dx, dy)| {
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
