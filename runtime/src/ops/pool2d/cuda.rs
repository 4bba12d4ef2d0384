//! The launchers of max and average pooling's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel.

use cudarc::driver::DeviceRepr;

use super::Pool2d;
use crate::Result;
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Source, elementwise, launch, need};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/pool2d/cuda.cu", text: include_str!("cuda.cu"), kernels: &["max_pool2d_fwd_f32", "max_pool2d_bwd_f32", "avg_pool2d_fwd_f32", "avg_pool2d_bwd_f32"] };

/// `Pool` in ops/pool2d/cuda.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeometry {
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    count_include_pad: u32,
    divisor_override: u32,
}

// SAFETY: plain `repr(C)` integers, the layout of `struct Pool` in the kernel source.
unsafe impl DeviceRepr for PoolGeometry {}

impl PoolGeometry {
    fn of(op: &Pool2d) -> Self {
        let u = |v: usize| v as u32;
        PoolGeometry {
            h_in: u(op.h_in),
            w_in: u(op.w_in),
            h_out: u(op.h_out),
            w_out: u(op.w_out),
            kh: u(op.kernel[0]),
            kw: u(op.kernel[1]),
            sh: u(op.stride[0]),
            sw: u(op.stride[1]),
            ph: u(op.padding[0]),
            pw: u(op.padding[1]),
            dh: u(op.dilation[0]),
            dw: u(op.dilation[1]),
            count_include_pad: op.count_include_pad as u32,
            divisor_override: u(op.divisor_override),
        }
    }
}

pub fn max_forward(dev: &Cuda, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    need(x.len, n * op.x_len(), "max_pool2d x");
    need(y.len, n * op.y_len(), "max_pool2d y");
    launch!(dev, max_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, PoolGeometry::of(op))
}

pub fn max_backward(dev: &Cuda, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    need(x.len, n * op.x_len(), "max_pool2d x");
    need(y.len.min(dy.len), n * op.y_len(), "max_pool2d y, dy");
    need(dx.len, n * op.x_len(), "max_pool2d dx");
    launch!(dev, max_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, x.ptr, y.ptr, dy.ptr, (n * op.c) as u64, PoolGeometry::of(op))
}

pub fn avg_forward(dev: &Cuda, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
    need(x.len, n * op.x_len(), "avg_pool2d x");
    need(y.len, n * op.y_len(), "avg_pool2d y");
    launch!(dev, avg_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, PoolGeometry::of(op))
}

pub fn avg_backward(dev: &Cuda, op: &Pool2d, n: usize, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
    need(dy.len, n * op.y_len(), "avg_pool2d dy");
    need(dx.len, n * op.x_len(), "avg_pool2d dx");
    launch!(dev, avg_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, dy.ptr, (n * op.c) as u64, PoolGeometry::of(op))
}
