//! The launchers of the Adam update's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::AdamStep;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need, ptr_of_dst};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/adam/cuda.cu", text: include_str!("cuda.cu"), kernels: &["adam_step_f32"] };

pub fn step(dev: &Cuda, op: &AdamStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, m: CudaDst<'_, f32>, v: CudaDst<'_, f32>, vmax: Option<CudaDst<'_, f32>>) -> Result<()> {
    let len = p.len;
    need(g.len.min(m.len).min(v.len), len, "adam g, m, v");
    if let Some(vmax) = &vmax {
        need(vmax.len, len, "adam vmax");
    }
    if len == 0 {
        return Ok(());
    }
    // The bias corrections as the CPU computes them.
    let o = *op;
    let crate::ops::adam::AdamScalars { step_size, bc2_sqrt, decay } = o.scalars();
    let step = dev.step_scalars(&[step_size.to_bits(), bc2_sqrt.to_bits(), decay.to_bits()])?;
    launch!(
        dev,
        adam_step_f32,
        elementwise(len),
        p.ptr,
        m.ptr,
        v.ptr,
        ptr_of_dst(&vmax),
        g.ptr,
        len as u64,
        o.beta1,
        o.beta2,
        o.eps,
        o.weight_decay,
        o.decoupled as i32,
        step
    )
}
