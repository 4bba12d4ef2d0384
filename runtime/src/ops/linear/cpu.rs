//! Linear layer on the CPU: three GEMMs, each split over threads.
//!
//! - forward:  Y[n, out] = X[n, in] · Wᵀ + b
//! - backward: dX[n, in] = dY · W (written);  dW[out, in] += dYᵀ · X,  db += Σ_n dY (accumulated)

use super::Linear;
use crate::ops::gemm::{MatMut, MatRef, Parallelism, gemm};

pub fn forward(op: &Linear, n: usize, x: &[f32], wb: &[f32], y: &mut [f32]) {
    let (fi, fo) = (op.in_features, op.out_features);
    let (w, b) = wb.split_at(op.weight_len());
    let y = &mut y[..n * fo];
    let beta = if op.bias {
        for row in y.chunks_exact_mut(fo) {
            row.copy_from_slice(&b[..fo]);
        }
        1.0
    } else {
        0.0
    };
    gemm(n, fo, fi, MatRef::rows(x, fi), MatRef::transposed(w, fi), beta, MatMut::rows(y, fo), Parallelism::Rayon);
}

pub fn backward(op: &Linear, n: usize, x: &[f32], wb: &[f32], dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>) {
    let (fi, fo) = (op.in_features, op.out_features);
    let dy = &dy[..n * fo];
    if let Some(dx) = dx {
        let w = &wb[..op.weight_len()];
        gemm(n, fi, fo, MatRef::rows(dy, fo), MatRef::rows(w, fi), 0.0, MatMut::rows(&mut dx[..n * fi], fi), Parallelism::Rayon);
    }
    if let Some(dwb) = dwb {
        let (dw, db) = dwb.split_at_mut(op.weight_len());
        gemm(fo, fi, n, MatRef::transposed(dy, fo), MatRef::rows(x, fi), 1.0, MatMut::rows(dw, fi), Parallelism::Rayon);
        if op.bias {
            for row in dy.chunks_exact(fo) {
                for (g, &v) in db.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
    }
}
