//! The launchers of softmax and log-softmax's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::Softmax;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/softmax/cuda.cu", text: include_str!("cuda.cu"), kernels: &["softmax_fwd_f32", "softmax_bwd_f32"] };

pub fn forward(dev: &Cuda, op: &Softmax, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    need(x.len.min(y.len), n * op.x_len(), "softmax x, y");
    let rows = n * op.inner;
    launch!(dev, softmax_fwd_f32, elementwise(rows), y.ptr, x.ptr, rows as u64, op.c as u32, op.inner as u32, op.log as i32)
}

pub fn backward(dev: &Cuda, op: &Softmax, n: usize, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    need(y.len.min(dy.len).min(dx.len), n * op.x_len(), "softmax y, dy, dx");
    let rows = n * op.inner;
    launch!(dev, softmax_bwd_f32, elementwise(rows), dx.ptr, y.ptr, dy.ptr, rows as u64, op.c as u32, op.inner as u32, op.log as i32)
}
