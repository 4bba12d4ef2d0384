//! The launchers of dropout's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::Dropout;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/dropout/cuda.cu", text: include_str!("cuda.cu"), kernels: &["dropout_fwd_f32", "dropout_bwd_f32"] };

pub fn forward(dev: &Cuda, op: &Dropout, n: usize, key: u64, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    let len = n * op.len;
    need(x.len.min(y.len), len, "dropout x, y");
    // The same f32 threshold `Dropout::keep` compares with.
    let threshold = op.p * (1u32 << 24) as f32;
    let key = dev.step_scalars(&key_words(key))?;
    launch!(dev, dropout_fwd_f32, elementwise(len), y.ptr, x.ptr, len as u64, op.plane as u64, key, threshold, op.scale())
}

pub fn backward(dev: &Cuda, op: &Dropout, n: usize, key: u64, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    let len = n * op.len;
    need(dy.len.min(dx.len), len, "dropout dy, dx");
    let threshold = op.p * (1u32 << 24) as f32;
    let key = dev.step_scalars(&key_words(key))?;
    launch!(dev, dropout_bwd_f32, elementwise(len), dx.ptr, dy.ptr, len as u64, op.plane as u64, key, threshold, op.scale())
}

/// The key as the kernel's `u64` reads it: low word first.
fn key_words(key: u64) -> [u32; 2] {
    [key as u32, (key >> 32) as u32]
}
