//! The launchers of adaptive max pooling's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::AdaptiveMaxPool2d;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/adaptive_max_pool2d/cuda.cu", text: include_str!("cuda.cu"), kernels: &["adaptive_max_pool2d_fwd_f32", "adaptive_max_pool2d_bwd_f32"] };

pub fn forward(dev: &Cuda, op: &AdaptiveMaxPool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    need(x.len, n * op.x_len(), "adaptive_max_pool2d x");
    need(y.len, n * op.y_len(), "adaptive_max_pool2d y");
    let u = |v: usize| v as u32;
    launch!(dev, adaptive_max_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, u(op.h_in), u(op.w_in), u(op.h_out), u(op.w_out))
}

pub fn backward(dev: &Cuda, op: &AdaptiveMaxPool2d, n: usize, x: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    need(x.len, n * op.x_len(), "adaptive_max_pool2d x");
    need(dy.len, n * op.y_len(), "adaptive_max_pool2d dy");
    need(dx.len, n * op.x_len(), "adaptive_max_pool2d dx");
    let u = |v: usize| v as u32;
    launch!(dev, adaptive_max_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, x.ptr, dy.ptr, (n * op.c) as u64, u(op.h_in), u(op.w_in), u(op.h_out), u(op.w_out))
}
