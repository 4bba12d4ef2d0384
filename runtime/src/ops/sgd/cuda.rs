//! The launchers of the SGD update's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::SgdStep;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/sgd/cuda.cu", text: include_str!("cuda.cu"), kernels: &["sgd_step_f32"] };

pub fn step(dev: &Cuda, op: &SgdStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, momentum: CudaDst<'_, f32>) -> Result<()> {
    let len = p.len;
    need(g.len, len, "sgd g");
    if op.momentum != 0.0 {
        need(momentum.len, len, "sgd momentum");
    }
    if len == 0 {
        return Ok(());
    }
    let o = *op;
    let step = dev.step_scalars(&[o.lr.to_bits(), o.first as u32])?;
    launch!(dev, sgd_step_f32, elementwise(len), p.ptr, momentum.ptr, g.ptr, len as u64, step, o.momentum, o.dampening, o.weight_decay, o.nesterov as i32)
}
