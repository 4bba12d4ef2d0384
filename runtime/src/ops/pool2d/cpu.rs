//! Pooling on the CPU: one output plane per task.

use rayon::prelude::*;
use staticnet_shape::pool_window;

use super::Pool2d;

/// y = max over each window; argmax = its index within the input plane (first maximum wins, NaN
/// propagates, as in PyTorch).
pub fn max_forward(op: &Pool2d, n: usize, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    y[..planes * yp]
        .par_chunks_mut(yp)
        .zip(argmax[..planes * yp].par_chunks_mut(yp))
        .zip(x[..planes * xp].par_chunks(xp))
        .for_each(|((y, idx), x)| {
            for oy in 0..op.h_out {
                let rows = taps(oy, op.h_in, op.kernel[0], op.stride[0], op.padding[0], op.dilation[0]);
                for ox in 0..op.w_out {
                    let cols = taps(ox, op.w_in, op.kernel[1], op.stride[1], op.padding[1], op.dilation[1]);
                    let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let i = iy * op.w_in + ix;
                            let v = x[i];
                            if v > best || v.is_nan() || at == usize::MAX {
                                (best, at) = (v, i);
                            }
                        }
                    }
                    y[oy * op.w_out + ox] = best;
                    idx[oy * op.w_out + ox] = at as u32;
                }
            }
        });
}

/// dx = 0, then dx[argmax] += dy.
pub fn max_backward(op: &Pool2d, n: usize, argmax: &[u32], dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    dx[..planes * xp]
        .par_chunks_mut(xp)
        .zip(dy[..planes * yp].par_chunks(yp))
        .zip(argmax[..planes * yp].par_chunks(yp))
        .for_each(|((dx, dy), idx)| {
            dx.fill(0.0);
            for (&g, &i) in dy.iter().zip(idx) {
                dx[i as usize] += g;
            }
        });
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
/// `o·stride − padding + k·dilation` for k in 0..kernel, kept where inside `[0, len)`.
fn taps(o: usize, len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> impl Iterator<Item = usize> + Clone {
    (0..kernel).filter_map(move |k| (o * stride + k * dilation).checked_sub(padding).filter(|&i| i < len))
}
