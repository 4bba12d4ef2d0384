//! The GEMM that the convolution and the linear layer build on, on the GPU: its launcher, which
//! picks cuBLAS or our kernel per shape (ops/gemm/cublas.rs), our f32 or bf16 kernel by the
//! device's precision, and splits a long k range over enough blocks; and the bias-gradient
//! reduction.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::cublas;
use crate::Result;
use crate::device::Precision;
use crate::device::cuda::{Cuda, Ptr, Source, THREADS, elementwise, launch, per_channel};

/// This folder's kernel source and the kernels launched from here.
pub const SOURCE: Source = Source { path: "ops/gemm/cuda.cu", text: include_str!("cuda.cu"), kernels: &["gemm_f32", "gemm_bf16_tc", "gemm_sum_splits_f32", "gemm_epilogue_f32", "bias_grad_f32", "sum_parts_f32"] };

/// `Gemm` in ops/gemm/cuda.cu: C_z[m, n] (+)= Σ over the `group` batches of z of A_b·B_b, strides
/// in elements. The default is one GEMM per batch, written.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GemmShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batches: u32,
    pub a_m: i64,
    pub a_k: i64,
    pub a_b: i64,
    pub b_k: i64,
    pub b_n: i64,
    pub b_b: i64,
    pub c_m: i64,
    pub c_n: i64,
    pub c_b: i64,
    pub group: u32,
    /// 0 for the whole k range (`Cuda::gemm` fills it in).
    pub k_chunk: u32,
    pub accumulate: i32,
    pub bias_rows: i32,
    pub relu: i32,
    /// Operands rounded to bf16, products summed in f32 (`gemm` sets both from the precision).
    pub bf16_in: i32,
    /// The result rounded to bf16 before it is added to C.
    pub bf16_out: i32,
}

impl Default for GemmShape {
    fn default() -> Self {
        GemmShape { m: 0, n: 0, k: 0, batches: 1, a_m: 0, a_k: 0, a_b: 0, b_k: 0, b_n: 0, b_b: 0, c_m: 0, c_n: 0, c_b: 0, group: 1, k_chunk: 0, accumulate: 0, bias_rows: 0, relu: 0, bf16_in: 0, bf16_out: 0 }
    }
}

// SAFETY: plain `repr(C)` integers, the layout of `struct Gemm` in the kernel source (no padding:
// four u32, nine i64, seven 4-byte fields, and the same tail padding to a multiple of 8).
unsafe impl DeviceRepr for GemmShape {}

/// Tile sizes of `gemm_f32` and `gemm_bf16_tc`.
pub const GEMM_TILE: u32 = 64;

/// Threads per block of `gemm_bf16_tc`: 4 warps of 32 × 32 each.
const TC_THREADS: u32 = 128;

/// Blocks that keep the GPU busy (an H100 has 132 SMs).
pub const BUSY_BLOCKS: usize = 512;

/// c = a·b (+ bias, ReLU) as `g` describes; `bias` null for none. In f32, through cuBLAS where
/// timing chose it for the shape; in bf16 (`Cuda::set_precision`), on our kernels, with the
/// result rounded to bf16.
pub fn gemm(dev: &Cuda, c: Ptr, a: Ptr, b: Ptr, bias: Ptr, g: GemmShape) -> Result<()> {
    gemm_rounded(dev, c, a, b, bias, g, true)
}

/// `gemm` for partial sums that the caller adds up (`sum_parts_f32`): in bf16 their operands
/// are rounded but they are not, so that the total is rounded once, as autocast's would be.
pub fn gemm_parts(dev: &Cuda, c: Ptr, a: Ptr, b: Ptr, g: GemmShape) -> Result<()> {
    gemm_rounded(dev, c, a, b, 0, g, false)
}

/// Whether `sum_parts_f32` rounds its total to bf16 (as an int for the kernel).
pub fn parts_in_bf16(dev: &Cuda) -> i32 {
    (dev.precision() == Precision::Bf16) as i32
}

fn gemm_rounded(dev: &Cuda, c: Ptr, a: Ptr, b: Ptr, bias: Ptr, mut g: GemmShape, round_result: bool) -> Result<()> {
    if g.m == 0 || g.n == 0 || g.batches == 0 {
        return Ok(());
    }
    if dev.precision() == Precision::Bf16 {
        (g.bf16_in, g.bf16_out) = (1, round_result as i32);
        return gemm_ours(dev, c, a, b, bias, g);
    }
    match cublas::choose(dev, &g, a, b, bias, &mut |c| gemm_ours(dev, c, a, b, bias, g))? {
        Some(call) => cublas::run(dev, &g, &call, c, a, b, bias),
        None => gemm_ours(dev, c, a, b, bias, g),
    }
}

/// `gemm` on our kernels: `gemm_bf16_tc` for bf16 on tensor cores, else `gemm_f32`.
///
/// A GEMM of few output tiles and a long k (a linear layer on a small batch) would run on a
/// few SMs of the GPU: its k range is then split so that enough blocks run, each split's sum
/// goes to the device's workspace, and a second kernel adds the splits in order.
fn gemm_ours(dev: &Cuda, c: Ptr, a: Ptr, b: Ptr, bias: Ptr, mut g: GemmShape) -> Result<()> {
    let groups = g.batches.div_ceil(g.group);
    let blocks = (g.n.div_ceil(GEMM_TILE) * g.m.div_ceil(GEMM_TILE) * groups) as usize;
    // Splits of at least 128 of k (8 steps of the kernel's loop), so each is worth a block.
    let splits = (BUSY_BLOCKS / blocks).min(g.k as usize / 128).max(1);
    let k_chunk = (g.k as usize).div_ceil(splits).next_multiple_of(16) as u32;
    let splits = g.k.div_ceil(k_chunk).max(1);
    g.k_chunk = k_chunk.max(1);
    let z = groups * splits;
    assert!(z <= 65_535, "a GEMM over {z} groups of batches exceeds the grid");
    let tensor_cores = g.bf16_in != 0 && dev.tensor_cores();
    let threads = if tensor_cores { TC_THREADS } else { THREADS };
    let cfg = LaunchConfig { grid_dim: (g.n.div_ceil(GEMM_TILE), g.m.div_ceil(GEMM_TILE), z), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    let tiles = |c: Ptr, bias: Ptr, g: GemmShape| if tensor_cores { launch!(dev, gemm_bf16_tc, cfg, c, a, b, bias, g) } else { launch!(dev, gemm_f32, cfg, c, a, b, bias, g) };
    if splits == 1 {
        return tiles(c, bias, g);
    }
    let len = groups as usize * g.m as usize * g.n as usize;
    let ws = dev.split_workspace(splits as usize * len)?;
    // The splits write plain sums, (split, z, m, n) in the workspace; the epilogue (and the
    // rounding to bf16) is the sum's.
    let parts = GemmShape { c_m: g.n as i64, c_n: 1, c_b: (g.m * g.n) as i64, accumulate: 0, bias_rows: 0, relu: 0, bf16_out: 0, ..g };
    tiles(ws.ptr, 0 as Ptr, parts)?;
    // The workspace is reused by the next split GEMM only after this kernel in stream order,
    // whichever thread enqueues it: the lock is held until both are enqueued.
    launch!(dev, gemm_sum_splits_f32, elementwise(len), c, ws.ptr, bias, g, splits)
}

/// db (c) += Σ dy over (outer, ·, inner).
pub fn bias_grad(dev: &Cuda, db: Ptr, dy: Ptr, outer: usize, c: usize, inner: usize) -> Result<()> {
    if c == 0 {
        return Ok(());
    }
    launch!(dev, bias_grad_f32, per_channel(c), db, dy, outer as u32, c as u32, inner as u32)
}
