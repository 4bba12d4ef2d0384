//! Adaptive average pooling on the CPU: one plane per task.

use rayon::prelude::*;
use staticnet_shape::adaptive_window;

use super::AdaptiveAvgPool2d;

/// y (n, c, h_out, w_out) = the mean of each adaptive window of x (n, c, h_in, w_in), written.
pub fn forward(op: &AdaptiveAvgPool2d, n: usize, x: &[f32], y: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    y[..planes * yp].par_chunks_mut(yp).zip(x[..planes * xp].par_chunks(xp)).for_each(|(y, x)| {
        for oy in 0..op.h_out {
            let (y0, y1) = adaptive_window(oy, op.h_in, op.h_out);
            for ox in 0..op.w_out {
                let (x0, x1) = adaptive_window(ox, op.w_in, op.w_out);
                let sum: f32 = (y0..y1).map(|iy| x[iy * op.w_in + x0..iy * op.w_in + x1].iter().sum::<f32>()).sum();
                y[oy * op.w_out + ox] = sum / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
    });
}

/// `dx[window] += dy / window size` (written: dx starts at 0).
pub fn backward(op: &AdaptiveAvgPool2d, n: usize, dy: &[f32], dx: &mut [f32]) {
    let (xp, yp) = (op.h_in * op.w_in, op.h_out * op.w_out);
    let planes = n * op.c;
    dx[..planes * xp].par_chunks_mut(xp).zip(dy[..planes * yp].par_chunks(yp)).for_each(|(dx, dy)| {
        dx.fill(0.0);
        for oy in 0..op.h_out {
            let (y0, y1) = adaptive_window(oy, op.h_in, op.h_out);
            for ox in 0..op.w_out {
                let (x0, x1) = adaptive_window(ox, op.w_in, op.w_out);
                let g = dy[oy * op.w_out + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                for iy in y0..y1 {
                    for v in &mut dx[iy * op.w_in + x0..iy * op.w_in + x1] {
                        *v += g;
                    }
                }
            }
        }
    });
}
