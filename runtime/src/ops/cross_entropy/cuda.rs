//! The launchers of the cross-entropy loss's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::CrossEntropy;
use crate::Result;
use cudarc::driver::LaunchConfig;

use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Issue, Source, THREADS, elementwise, launch, need, ptr_of_dst};
use crate::ops::LossOutput;

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/cross_entropy/cuda.cu", text: include_str!("cuda.cu"), kernels: &["cross_entropy_fwd_bwd_f32", "loss_accumulate"] };

pub fn forward_backward(dev: &Cuda, op: &CrossEntropy, n: usize, logits: CudaSrc<'_, f32>, labels: CudaSrc<'_, u32>, dlogits: Option<CudaDst<'_, f32>>) -> Result<LossOutput> {
    let c = op.classes;
    need(logits.len, n * c, "cross_entropy logits");
    need(labels.len, n, "cross_entropy labels");
    if let Some(d) = &dlogits {
        need(d.len, n * c, "cross_entropy dlogits");
    }
    // A captured step adds its loss to the device's totals, read when asked; an eager one reads
    // back, per row, its loss (f64) then whether it was right (u32), in one copy.
    let captured = dev.issue() != Issue::Eager;
    let mut rows = vec![0u8; if captured { 0 } else { n * 12 }];
    dev.with_reduce(n * 12, |buf| {
        let (row_loss, row_correct) = (buf.ptr, buf.ptr + 8 * n as u64);
        let eps = op.label_smoothing as f64;
        launch!(dev, cross_entropy_fwd_bwd_f32, elementwise(n), ptr_of_dst(&dlogits), row_loss, row_correct, logits.ptr, labels.ptr, n as u32, c as u32, eps, op.log_probs as i32)?;
        if captured {
            let one_block = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
            launch!(dev, loss_accumulate, one_block, dev.totals_ptr(), row_loss, row_correct, n as u32)
        } else {
            dev.read_back(buf.ptr, &mut rows)
        }
    })?;
    if captured {
        return Ok(LossOutput { loss: f32::NAN, correct: 0 });
    }
    let (loss, correct) = rows.split_at(n * 8);
    let sum: f64 = loss.chunks_exact(8).map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes"))).sum();
    let correct = correct.chunks_exact(4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")) as usize).sum();
    Ok(LossOutput { loss: (sum / n as f64) as f32, correct })
}
