//! Softmax on the CPU: one sample per task.

use rayon::prelude::*;

use super::Softmax;

/// y = softmax (or log-softmax) of x over the channels, written.
pub fn forward(op: &Softmax, n: usize, x: &[f32], y: &mut [f32]) {
    let (c, inner) = (op.c, op.inner);
    y[..n * op.x_len()].par_chunks_mut(op.x_len()).zip(x[..n * op.x_len()].par_chunks(op.x_len())).for_each(|(y, x)| {
        for i in 0..inner {
            let at = |k: usize| k * inner + i;
            let max = (0..c).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..c).map(|k| (x[at(k)] - max).exp()).sum();
            if op.log {
                let lse = max + sum.ln();
                (0..c).for_each(|k| y[at(k)] = x[at(k)] - lse);
            } else {
                (0..c).for_each(|k| y[at(k)] = (x[at(k)] - max).exp() / sum);
            }
        }
    });
}

/// From the output y: softmax dx = y·(dy − Σ dy·y); log-softmax dx = dy − exp(y)·Σ dy.
pub fn backward(op: &Softmax, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (c, inner) = (op.c, op.inner);
    let len = n * op.x_len();
    dx[..len].par_chunks_mut(op.x_len()).zip(dy[..len].par_chunks(op.x_len()).zip(y[..len].par_chunks(op.x_len()))).for_each(|(dx, (dy, y))| {
        for i in 0..inner {
            let at = |k: usize| k * inner + i;
            if op.log {
                let s: f32 = (0..c).map(|k| dy[at(k)]).sum();
                (0..c).for_each(|k| dx[at(k)] = dy[at(k)] - y[at(k)].exp() * s);
            } else {
                let s: f32 = (0..c).map(|k| dy[at(k)] * y[at(k)]).sum();
                (0..c).for_each(|k| dx[at(k)] = y[at(k)] * (dy[at(k)] - s));
            }
        }
    });
}
