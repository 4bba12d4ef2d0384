//! The launchers of the convolution's CUDA kernels (`cuda.cu` in this folder), which
//! `backend/cuda.rs` calls: sizes checked, then one launch per kernel. Grouped convolutions
//! (groups > 1) run their own direct kernels.

use cudarc::driver::DeviceRepr;

use super::Conv2d;
use crate::Result;
use super::cudnn::{self, Pass};
use crate::device::cuda::{Cuda, CudaDst, CudaSrc, Ptr, Source, elementwise, launch, need, per_channel};
use crate::ops::gemm::cuda::{BUSY_BLOCKS, GEMM_TILE, GemmShape, bias_grad, gemm, gemm_parts, parts_in_bf16};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/conv2d/cuda.cu", text: include_str!("cuda.cu"), kernels: &["im2col_f32", "col2im_f32", "conv2d_relu_mask_f32", "conv2d_bias_relu_f32", "conv2d_grouped_fwd_f32", "conv2d_grouped_dx_f32", "conv2d_grouped_dw_f32"] };

/// `Conv` in ops/conv2d/cuda.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvGeometry {
    c_in: u32,
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
}

// SAFETY: plain `repr(C)` integers, the layout of `struct Conv` in the kernel source.
unsafe impl DeviceRepr for ConvGeometry {}

impl ConvGeometry {
    fn of(op: &Conv2d) -> Self {
        let u = |v: usize| v as u32;
        ConvGeometry {
            c_in: u(op.c_in),
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
        }
    }
}

/// Scratch floats the kernels need for a batch of `n`: the masked dY of a fused ReLU, the
/// (n, K, p) im2col matrix (or its gradient), then the partial sums of the filter gradient.
pub fn scratch_len(op: &Conv2d, n: usize) -> usize {
    if op.groups > 1 {
        // The grouped kernels need only the masked dY.
        return n * op.y_len();
    }
    let (parts, _) = filter_split(op, n);
    n * (op.y_len() + op.patch_len() * op.out_pixels()) + if parts > 1 { parts * op.weight_len() } else { 0 }
}

/// Into how many partial sums the filter gradient of `op` splits a batch of `n` images, and how
/// many images each sums. Its output (c_out × K) is a handful of tiles and its reduction
/// (n·h_out·w_out) long, so one sum per tile would leave the GPU idle.
fn filter_split(op: &Conv2d, n: usize) -> (usize, usize) {
    let tiles = op.c_out.div_ceil(GEMM_TILE as usize) * op.patch_len().div_ceil(GEMM_TILE as usize);
    let group = n.div_ceil((BUSY_BLOCKS / tiles).clamp(1, n.max(1)));
    (n.div_ceil(group.max(1)), group.max(1))
}

pub fn forward(dev: &Cuda, op: &Conv2d, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, y: CudaDst<'_, f32>, scratch: CudaDst<'_, f32>, relu: bool) -> Result<()> {
    need(x.len, n * op.x_len(), "conv2d x");
    need(wb.len, op.param_len(), "conv2d wb");
    need(y.len, n * op.y_len(), "conv2d y");
    if !op.is_pointwise() && op.groups == 1 {
        need(scratch.len, n * op.patch_len() * op.out_pixels(), "conv2d scratch");
    }
    let (x, wb, scratch) = (x.ptr, wb.ptr, scratch.ptr);
    let mut ours = |y: Ptr| forward_ours(dev, op, n, x, wb, y, scratch, relu);
    match cudnn::choose(dev, op, n, Pass::Forward, x, wb, n * op.y_len(), &mut ours)? {
        None => ours(y.ptr),
        Some(algo) => {
            cudnn::run(dev, op, n, algo, x, wb, y.ptr, 0.0)?;
            if !op.bias && !relu {
                return Ok(());
            }
            let bias = if op.bias { wb + 4 * op.weight_len() as u64 } else { 0 };
            let len = n * op.y_len();
            launch!(dev, conv2d_bias_relu_f32, elementwise(len), y.ptr, bias, len as u64, op.c_out as u32, op.out_pixels() as u32, relu as i32)
        }
    }
}

/// y = conv(x, w) + bias (then ReLU) with our kernels: im2col + GEMM, or the grouped kernels.
#[allow(clippy::too_many_arguments)]
fn forward_ours(dev: &Cuda, op: &Conv2d, n: usize, x: Ptr, wb: Ptr, y: Ptr, scratch: Ptr, relu: bool) -> Result<()> {
    let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
    let bias = if op.bias { wb + 4 * op.weight_len() as u64 } else { 0 };
    if op.groups > 1 {
        let (geometry, c_out, groups) = (ConvGeometry::of(op), co as u32, op.groups as u32);
        return launch!(dev, conv2d_grouped_fwd_f32, elementwise(n * op.y_len()), y, x, wb, bias, n as u32, geometry, c_out, groups, relu as i32);
    }
    let col = if op.is_pointwise() {
        x
    } else {
        launch!(dev, im2col_f32, elementwise(n * k * p), scratch, x, n as u32, ConvGeometry::of(op))?;
        scratch
    };
    // Per image: Y_b[co, p] = W[co, K]·col_b[K, p] + bias[co].
    let g = GemmShape {
        m: co as u32,
        n: p as u32,
        k: k as u32,
        batches: n as u32,
        a_m: k as i64,
        a_k: 1,
        b_k: p as i64,
        b_n: 1,
        b_b: (k * p) as i64,
        c_m: p as i64,
        c_n: 1,
        c_b: (co * p) as i64,
        bias_rows: 1,
        relu: relu as i32,
        ..GemmShape::default()
    };
    gemm(dev, y, wb, col, bias, g)
}

#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &Cuda,
    op: &Conv2d,
    n: usize,
    x: CudaSrc<'_, f32>,
    wb: CudaSrc<'_, f32>,
    dy: CudaSrc<'_, f32>,
    relu_y: Option<CudaSrc<'_, f32>>,
    dx: Option<CudaDst<'_, f32>>,
    dwb: Option<CudaDst<'_, f32>>,
    scratch: CudaDst<'_, f32>,
) -> Result<()> {
    need(x.len, n * op.x_len(), "conv2d x");
    need(wb.len, op.param_len(), "conv2d wb");
    need(dy.len, n * op.y_len(), "conv2d dy");
    need(scratch.len, scratch_len(op, n), "conv2d scratch");
    let ylen = n * op.y_len();
    let dy = match relu_y {
        Some(relu_y) => {
            need(relu_y.len, ylen, "conv2d relu_y");
            launch!(dev, conv2d_relu_mask_f32, elementwise(ylen), scratch.ptr, dy.ptr, relu_y.ptr, ylen as u64)?;
            scratch.ptr
        }
        None => dy.ptr,
    };
    // Our kernels' im2col matrix and partial sums follow the masked dY in the scratch.
    let (x, wb, col) = (x.ptr, wb.ptr, scratch.ptr + 4 * ylen as u64);
    if let Some(dwb) = dwb {
        need(dwb.len, op.param_len(), "conv2d dwb");
        let mut ours = |dwb: Ptr| filter_grad_ours(dev, op, n, x, dy, dwb, col);
        match cudnn::choose(dev, op, n, Pass::Filter, x, dy, op.param_len(), &mut ours)? {
            None => ours(dwb.ptr)?,
            Some(algo) => {
                // dW += (cuDNN's beta 1: gradients accumulate).
                cudnn::run(dev, op, n, algo, x, dy, dwb.ptr, 1.0)?;
                if op.bias {
                    bias_grad(dev, dwb.ptr + 4 * op.weight_len() as u64, dy, n, op.c_out, op.out_pixels())?;
                }
            }
        }
    }
    if let Some(dx) = dx {
        need(dx.len, n * op.x_len(), "conv2d dx");
        let mut ours = |dx: Ptr| data_grad_ours(dev, op, n, wb, dy, dx, col);
        match cudnn::choose(dev, op, n, Pass::Data, wb, dy, n * op.x_len(), &mut ours)? {
            None => ours(dx.ptr)?,
            Some(algo) => cudnn::run(dev, op, n, algo, wb, dy, dx.ptr, 0.0)?,
        }
    }
    Ok(())
}

/// dW (and db) += the filter gradient of (x, dy) with our kernels; `col` is scratch for the
/// im2col matrix, then the partial sums.
fn filter_grad_ours(dev: &Cuda, op: &Conv2d, n: usize, x: Ptr, dy: Ptr, dwb: Ptr, col: Ptr) -> Result<()> {
    let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
    let geometry = ConvGeometry::of(op);
    if op.groups > 1 {
        let params = op.weight_len() + if op.bias { co } else { 0 };
        return launch!(dev, conv2d_grouped_dw_f32, per_channel(params), dwb, x, dy, n as u32, geometry, co as u32, op.groups as u32, op.bias as i32);
    }
    let x_col = if op.is_pointwise() {
        x
    } else {
        launch!(dev, im2col_f32, elementwise(n * k * p), col, x, n as u32, geometry)?;
        col
    };
    // dW[co, K] += Σ_b dY_b[co, p]·col_b[K, p]ᵀ, as partial sums over groups of images
    // added up in order afterwards.
    let (parts, group) = filter_split(op, n);
    let partial = col + 4 * (n * k * p) as u64;
    let g = GemmShape {
        m: co as u32,
        n: k as u32,
        k: p as u32,
        batches: n as u32,
        a_m: p as i64,
        a_k: 1,
        a_b: (co * p) as i64,
        b_k: 1,
        b_n: p as i64,
        b_b: (k * p) as i64,
        c_m: k as i64,
        c_n: 1,
        c_b: (co * k) as i64,
        group: group as u32,
        accumulate: (parts == 1) as i32,
        ..GemmShape::default()
    };
    if parts == 1 {
        gemm(dev, dwb, dy, x_col, 0, g)?;
    } else {
        gemm_parts(dev, partial, dy, x_col, g)?;
        let len = op.weight_len();
        launch!(dev, sum_parts_f32, elementwise(len), dwb, partial, len as u64, parts as u32, parts_in_bf16(dev))?;
    }
    if op.bias {
        bias_grad(dev, dwb + 4 * op.weight_len() as u64, dy, n, co, p)?;
    }
    Ok(())
}

/// dX = the data gradient of dy with our kernels (written); `col` is scratch for dcol.
fn data_grad_ours(dev: &Cuda, op: &Conv2d, n: usize, wb: Ptr, dy: Ptr, dx: Ptr, col: Ptr) -> Result<()> {
    let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
    let geometry = ConvGeometry::of(op);
    if op.groups > 1 {
        return launch!(dev, conv2d_grouped_dx_f32, elementwise(n * op.x_len()), dx, dy, wb, n as u32, geometry, co as u32, op.groups as u32);
    }
    // dcol_b[K, p] = W[co, K]ᵀ·dY_b[co, p]; for a pointwise convolution that is dX itself.
    let target = if op.is_pointwise() { dx } else { col };
    let g = GemmShape {
        m: k as u32,
        n: p as u32,
        k: co as u32,
        batches: n as u32,
        a_m: 1,
        a_k: k as i64,
        b_k: p as i64,
        b_n: 1,
        b_b: (co * p) as i64,
        c_m: p as i64,
        c_n: 1,
        c_b: (k * p) as i64,
        ..GemmShape::default()
    };
    if op.is_pointwise() {
        return gemm(dev, target, wb, dy, 0, g);
    }
    gemm_parts(dev, target, wb, dy, g)?;
    launch!(dev, col2im_f32, elementwise(n * op.x_len()), dx, col, n as u32, geometry, parts_in_bf16(dev))
}
