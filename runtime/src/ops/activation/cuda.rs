//! The launchers of the element-wise activations' CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use super::Activation;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/activation/cuda.cu", text: include_str!("cuda.cu"), kernels: &["activation_fwd_f32", "activation_bwd_f32"] };

pub fn forward(dev: &Cuda, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    need(x.len.min(y.len), len, "activation x, y");
    let (kind, slope) = activation_kind(act);
    launch!(dev, activation_fwd_f32, elementwise(len), y.ptr, x.ptr, len as u64, kind, slope)
}

pub fn backward(dev: &Cuda, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    need(x.len.min(y.len).min(dy.len).min(dx.len), len, "activation x, y, dy, dx");
    let (kind, slope) = activation_kind(act);
    launch!(dev, activation_bwd_f32, elementwise(len), dx.ptr, x.ptr, y.ptr, dy.ptr, len as u64, kind, slope)
}

/// The `kind` and slope `activation_*_f32` take for an activation.
fn activation_kind(act: Activation) -> (i32, f32) {
    match act {
        Activation::ReLU => (0, 0.0),
        Activation::LeakyReLU(slope) => (1, slope),
        Activation::Sigmoid => (2, 0.0),
        Activation::Tanh => (3, 0.0),
        Activation::SiLU => (4, 0.0),
        Activation::ReLU6 => (5, 0.0),
        Activation::Hardswish => (6, 0.0),
        Activation::GELU { tanh } => (if tanh { 8 } else { 7 }, 0.0),
        Activation::ELU(alpha) => (9, alpha),
        Activation::Identity => (10, 0.0),
    }
}
