//! Dropout on the CPU, in blocks of elements per task.

use rayon::prelude::*;

use super::Dropout;

const BLOCK: usize = 1 << 14;

/// y = x·mask/(1−p).
pub fn forward(op: &Dropout, n: usize, key: u64, x: &[f32], y: &mut [f32]) {
    apply(op, key, &x[..n * op.len], &mut y[..n * op.len]);
}

/// dx = dy·mask/(1−p), with the mask of the forward that had the same `key`.
pub fn backward(op: &Dropout, n: usize, key: u64, dy: &[f32], dx: &mut [f32]) {
    apply(op, key, &dy[..n * op.len], &mut dx[..n * op.len]);
}

fn apply(op: &Dropout, key: u64, src: &[f32], dst: &mut [f32]) {
    let scale = op.scale();
    dst.par_chunks_mut(BLOCK).zip(src.par_chunks(BLOCK)).enumerate().for_each(|(blk, (dst, src))| {
        for (j, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
            *d = if op.keep(key, blk * BLOCK + j) { s * scale } else { 0.0 };
        }
    });
}
