//! The launchers of the MSE loss's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need, ptr_of_dst};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/mse/cuda.cu", text: include_str!("cuda.cu"), kernels: &["mse_fwd_bwd_f32"] };

pub fn forward_backward(dev: &Cuda, len: usize, y: CudaSrc<'_, f32>, target: CudaSrc<'_, f32>, dy: Option<CudaDst<'_, f32>>) -> Result<f32> {
    need(y.len.min(target.len), len, "mse y, target");
    if let Some(d) = &dy {
        need(d.len, len, "mse dy");
    }
    let cfg = elementwise(len);
    let mut partial = vec![0.0f64; cfg.grid_dim.0 as usize];
    dev.with_reduce(partial.len() * 8, |buf| {
        launch!(dev, mse_fwd_bwd_f32, cfg, ptr_of_dst(&dy), buf.ptr, y.ptr, target.ptr, len as u64, 2.0 / len as f32)?;
        dev.read_back(buf.ptr, &mut partial)
    })?;
    Ok((partial.iter().sum::<f64>() / len as f64) as f32)
}
