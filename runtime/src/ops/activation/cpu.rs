//! Activations on the CPU, in blocks of elements per task.

use rayon::prelude::*;

use super::Activation;

const BLOCK: usize = 1 << 14;

/// y = f(x) over `len` elements.
pub fn forward(act: Activation, len: usize, x: &[f32], y: &mut [f32]) {
    y[..len].par_chunks_mut(BLOCK).zip(x[..len].par_chunks(BLOCK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = act.apply(x);
        }
    });
}

/// dx = f'(x)·dy (written).
pub fn backward(act: Activation, len: usize, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx[..len].par_chunks_mut(BLOCK).zip(dy[..len].par_chunks(BLOCK)).zip(x[..len].par_chunks(BLOCK).zip(y[..len].par_chunks(BLOCK))).for_each(
        |((dx, dy), (x, y))| {
            for (((dx, &dy), &x), &y) in dx.iter_mut().zip(dy).zip(x).zip(y) {
                *dx = act.derive(x, y, dy);
            }
        },
    );
}
