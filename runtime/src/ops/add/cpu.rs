//! Addition on the CPU, in blocks per task.

use rayon::prelude::*;

const BLOCK: usize = 1 << 14;

/// y = a + b (written), then ReLU when `relu`.
pub fn add(len: usize, a: &[f32], b: &[f32], y: &mut [f32], relu: bool) {
    y[..len].par_chunks_mut(BLOCK).zip(a[..len].par_chunks(BLOCK).zip(b[..len].par_chunks(BLOCK))).for_each(|(y, (a, b))| {
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = if relu { (a + b).max(0.0) } else { a + b };
        }
    });
}

/// y += x.
pub fn add_assign(len: usize, y: &mut [f32], x: &[f32]) {
    y[..len].par_chunks_mut(BLOCK).zip(x[..len].par_chunks(BLOCK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += x;
        }
    });
}
