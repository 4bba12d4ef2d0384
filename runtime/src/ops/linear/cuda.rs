//! The launchers of `nn.Linear`'s forward and backward on the GPU: GEMMs (ops/gemm), which
//! `backend/cuda.rs` calls.

use super::Linear;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, need};
use crate::ops::gemm::cuda::{GemmShape, bias_grad, gemm};

pub fn forward(dev: &Cuda, op: &Linear, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    let (fi, fo) = (op.in_features, op.out_features);
    need(x.len, n * fi, "linear x");
    need(wb.len, op.param_len(), "linear wb");
    need(y.len, n * fo, "linear y");
    let bias = if op.bias { wb.ptr + 4 * op.weight_len() as u64 } else { 0 };
    // Y[n, out] = X[n, in]·Wᵀ + b.
    let g = GemmShape { m: n as u32, n: fo as u32, k: fi as u32, batches: 1, a_m: fi as i64, a_k: 1, b_k: 1, b_n: fi as i64, c_m: fo as i64, c_n: 1, ..GemmShape::default() };
    gemm(dev, y.ptr, x.ptr, wb.ptr, bias, g)
}

pub fn backward(
    dev: &Cuda,
    op: &Linear,
    n: usize,
    x: CudaSrc<'_, f32>,
    wb: CudaSrc<'_, f32>,
    dy: CudaSrc<'_, f32>,
    dx: Option<CudaDst<'_, f32>>,
    dwb: Option<CudaDst<'_, f32>>,
) -> Result<()> {
    let (fi, fo) = (op.in_features, op.out_features);
    need(x.len, n * fi, "linear x");
    need(wb.len, op.weight_len(), "linear wb");
    need(dy.len, n * fo, "linear dy");
    if let Some(dx) = dx {
        need(dx.len, n * fi, "linear dx");
        // dX[n, in] = dY[n, out]·W[out, in].
        let g = GemmShape { m: n as u32, n: fi as u32, k: fo as u32, batches: 1, a_m: fo as i64, a_k: 1, b_k: fi as i64, b_n: 1, c_m: fi as i64, c_n: 1, ..GemmShape::default() };
        gemm(dev, dx.ptr, dy.ptr, wb.ptr, 0, g)?;
    }
    if let Some(dwb) = dwb {
        need(dwb.len, op.param_len(), "linear dwb");
        // dW[out, in] += dYᵀ·X, db += Σ_n dY.
        let g = GemmShape {
            m: fo as u32,
            n: fi as u32,
            k: n as u32,
            batches: 1,
            a_m: 1,
            a_k: fo as i64,
            b_k: fi as i64,
            b_n: 1,
            c_m: fi as i64,
            c_n: 1,
            accumulate: 1,
            ..GemmShape::default()
        };
        gemm(dev, dwb.ptr, dy.ptr, x.ptr, 0, g)?;
        if op.bias {
            bias_grad(dev, dwb.ptr + 4 * op.weight_len() as u64, dy.ptr, n, fo, 1)?;
        }
    }
    Ok(())
}
