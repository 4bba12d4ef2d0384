//! The launchers of batch normalisation's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::BatchNorm;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need, per_channel, ptr_of_dst, ptr_of_src};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/batch_norm/cuda.cu", text: include_str!("cuda.cu"), kernels: &["batch_norm_stats_f32", "batch_norm_eval_stats_f32", "batch_norm_fwd_f32", "batch_norm_bwd_sums_f32", "batch_norm_bwd_f32"] };

pub fn forward_train(
    dev: &Cuda,
    op: &BatchNorm,
    n: usize,
    x: CudaSrc<'_, f32>,
    wb: Option<CudaSrc<'_, f32>>,
    running: Option<CudaDst<'_, f32>>,
    factor: f32,
    saved: CudaDst<'_, f32>,
    y: CudaDst<'_, f32>,
) -> Result<()> {
    let (c, s) = (op.c as u32, op.spatial as u32);
    need(x.len, n * op.x_len(), "batch_norm x");
    need(y.len, n * op.x_len(), "batch_norm y");
    need(saved.len, op.saved_len(), "batch_norm saved");
    let running = ptr_of_dst(&running);
    // Unread without running statistics.
    let factor = if running != 0 { dev.step_scalars(&[factor.to_bits()])? } else { 0 };
    launch!(dev, batch_norm_stats_f32, per_channel(op.c), saved.ptr, running, x.ptr, n as u32, c, s, op.eps, factor)?;
    launch!(dev, batch_norm_fwd_f32, elementwise(n * op.x_len()), y.ptr, x.ptr, ptr_of_src(wb), saved.ptr, n as u32, c, s)
}

pub fn forward_eval(
    dev: &Cuda,
    op: &BatchNorm,
    n: usize,
    x: CudaSrc<'_, f32>,
    wb: Option<CudaSrc<'_, f32>>,
    running: CudaSrc<'_, f32>,
    saved: CudaDst<'_, f32>,
    y: CudaDst<'_, f32>,
) -> Result<()> {
    let (c, s) = (op.c as u32, op.spatial as u32);
    need(x.len, n * op.x_len(), "batch_norm x");
    need(y.len, n * op.x_len(), "batch_norm y");
    need(running.len, 2 * op.c, "batch_norm running");
    need(saved.len, op.saved_len(), "batch_norm saved");
    launch!(dev, batch_norm_eval_stats_f32, elementwise(op.c), saved.ptr, running.ptr, c, op.eps)?;
    launch!(dev, batch_norm_fwd_f32, elementwise(n * op.x_len()), y.ptr, x.ptr, ptr_of_src(wb), saved.ptr, n as u32, c, s)
}

pub fn backward(
    dev: &Cuda,
    op: &BatchNorm,
    n: usize,
    batch_stats: bool,
    x: CudaSrc<'_, f32>,
    wb: Option<CudaSrc<'_, f32>>,
    saved: CudaDst<'_, f32>,
    dy: CudaSrc<'_, f32>,
    dx: Option<CudaDst<'_, f32>>,
    dwb: Option<CudaDst<'_, f32>>,
) -> Result<()> {
    let (c, s) = (op.c as u32, op.spatial as u32);
    need(x.len.min(dy.len), n * op.x_len(), "batch_norm x, dy");
    need(saved.len, op.saved_len(), "batch_norm saved");
    launch!(dev, batch_norm_bwd_sums_f32, per_channel(op.c), saved.ptr, ptr_of_dst(&dwb), x.ptr, dy.ptr, n as u32, c, s)?;
    if let Some(dx) = dx {
        need(dx.len, n * op.x_len(), "batch_norm dx");
        launch!(dev, batch_norm_bwd_f32, elementwise(n * op.x_len()), dx.ptr, x.ptr, ptr_of_src(wb), saved.ptr, dy.ptr, n as u32, c, s, batch_stats as i32)?;
    }
    Ok(())
}
