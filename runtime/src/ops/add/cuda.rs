//! The launchers of the residual sum's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/add/cuda.cu", text: include_str!("cuda.cu"), kernels: &["add_f32", "add_assign_f32"] };

pub fn add(dev: &Cuda, len: usize, a: CudaSrc<'_, f32>, b: CudaSrc<'_, f32>, y: CudaDst<'_, f32>, relu: bool) -> Result<()> {
    need(a.len.min(b.len).min(y.len), len, "add a, b, y");
    launch!(dev, add_f32, elementwise(len), y.ptr, a.ptr, b.ptr, len as u64, relu as i32)
}

pub fn add_assign(dev: &Cuda, len: usize, y: CudaDst<'_, f32>, x: CudaSrc<'_, f32>) -> Result<()> {
    need(x.len.min(y.len), len, "add_assign x, y");
    launch!(dev, add_assign_f32, elementwise(len), y.ptr, x.ptr, len as u64)
}
