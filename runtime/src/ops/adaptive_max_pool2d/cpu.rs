//! Adaptive max pooling on the CPU: one plane per task.

use rayon::prelude::*;
use staticnet_shape::adaptive_window;

use super::AdaptiveMaxPool2d;

/// y (n, c, h_out, w_out) = the maximum of each adaptive window of x (n, c, h_in, w_in), written.
pub fn forward(op: &AdaptiveMaxPool2d, n: usize, x: &[f32], y: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    y[..n * op.c * yp].par_chunks_mut(yp).zip(x[..n * op.c * xp].par_chunks(xp)).for_each(|(y, x)| {
        for oy in 0..op.h_out {
            for ox in 0..op.w_out {
                y[oy * op.w_out + ox] = x[argmax(op, x, oy, ox)];
            }
        }
    });
}

/// dx = dy at each window's argmax (summed where windows overlap), 0 elsewhere; written.
pub fn backward(op: &AdaptiveMaxPool2d, n: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    dx[..planes * xp].par_chunks_mut(xp).zip(x[..planes * xp].par_chunks(xp).zip(dy[..planes * yp].par_chunks(yp))).for_each(|(dx, (x, dy))| {
        dx.fill(0.0);
        for oy in 0..op.h_out {
            for ox in 0..op.w_out {
                dx[argmax(op, x, oy, ox)] += dy[oy * op.w_out + ox];
            }
        }
    });
}

/// The index in the plane `x` of output (oy, ox)'s maximum, as PyTorch's kernel picks it: the
/// first strictly greater element, or the last NaN.
fn argmax(op: &AdaptiveMaxPool2d, x: &[f32], oy: usize, ox: usize) -> usize {
    let (y0, y1) = adaptive_window(oy, op.h_in, op.h_out);
    let (x0, x1) = adaptive_window(ox, op.w_in, op.w_out);
    let (mut best, mut at) = (f32::NEG_INFINITY, y0 * op.w_in + x0);
    for iy in y0..y1 {
        for ix in x0..x1 {
            let v = x[iy * op.w_in + ix];
            if v > best || v.is_nan() {
                (best, at) = (v, iy * op.w_in + ix);
            }
        }
    }
    at
}
