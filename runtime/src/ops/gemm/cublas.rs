//! GEMMs through cuBLAS (feature `cuda`; libcublas is loaded at run time, and without it our
//! kernels run everything). As for cuDNN's convolutions (ops/conv2d/cudnn.rs), each GEMM shape
//! is timed once, at the first eager step that runs it, against our kernel, and the faster is
//! kept; `STATICNET_GEMM=ours` or `=cublas` forces one side (the tests of each path), and
//! `Cuda::tuning_report` lists the choices.
//!
//! cuBLAS is column-major and has no epilogue: a row-major C = A·B is computed as Cᵀ = Bᵀ·Aᵀ,
//! `accumulate` is its beta, and a bias or ReLU is one more kernel (`gemm_epilogue_f32`). A GEMM
//! that sums several batches into one C (`group` > 1) has no cuBLAS call and stays ours. Full
//! f32 math (no TF32), as our kernels and the PyTorch fixtures.

use std::hash::{DefaultHasher, Hash, Hasher};

use cudarc::cublas::result as blas;
use cudarc::cublas::sys::{cublasHandle_t, cublasOperation_t};

use super::cuda::GemmShape;
use crate::device::cuda::{Cuda, CudaBuf, Issue, Ptr, VendorPolicy, elementwise, launch};
use crate::{Error, Result};

/// One operand as cuBLAS takes it: transposed or not, its leading dimension and its batch stride.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Operand {
    op: cublasOperation_t,
    ld: i32,
    batch: i64,
}

/// A GEMM as one `cublasSgemmStridedBatched`: op(first)·op(second) into a column-major output
/// of `rows` × `cols`, where `swapped` says that first is B and second is A (the Cᵀ = Bᵀ·Aᵀ form).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Call {
    rows: i32,
    cols: i32,
    k: i32,
    first: Operand,
    second: Operand,
    swapped: bool,
    ldc: i32,
    batch_c: i64,
    batches: i32,
}

/// A `rows` × `cols` matrix whose element (r, c) is at r·row_stride + c·col_stride, as a cuBLAS
/// operand: column-major as it is (N) or the transpose of a column-major one (T); None when
/// neither stride is 1 or the other is too short to be a leading dimension.
fn operand(rows: u32, cols: u32, row_stride: i64, col_stride: i64, batch: i64) -> Option<Operand> {
    let fits = |ld: i64, min: u32| ld >= i64::from(min.max(1)) && ld <= i64::from(i32::MAX);
    if row_stride == 1 && fits(col_stride, rows) {
        Some(Operand { op: cublasOperation_t::CUBLAS_OP_N, ld: col_stride as i32, batch })
    } else if col_stride == 1 && fits(row_stride, cols) {
        Some(Operand { op: cublasOperation_t::CUBLAS_OP_T, ld: row_stride as i32, batch })
    } else {
        None
    }
}

/// The cuBLAS call that computes `g` (without its bias and ReLU), or None when there is none.
pub(crate) fn call(g: &GemmShape) -> Option<Call> {
    let small = |v: u32| i32::try_from(v).ok();
    if g.group != 1 || g.bf16_in != 0 || g.bf16_out != 0 {
        return None;
    }
    let (m, n, k, batches) = (small(g.m)?, small(g.n)?, small(g.k)?, small(g.batches)?);
    // One batch: its strides are never used.
    let (a_b, b_b, c_b) = if g.batches == 1 { (0, 0, 0) } else { (g.a_b, g.b_b, g.c_b) };
    let ld = |v: i64, min: u32| (v >= i64::from(min.max(1)) && v <= i64::from(i32::MAX)).then_some(v as i32);
    if g.c_n == 1 {
        // C row-major: Cᵀ (n × m, column-major) = Bᵀ (n × k)·Aᵀ (k × m).
        let first = operand(g.n, g.k, g.b_n, g.b_k, b_b)?;
        let second = operand(g.k, g.m, g.a_k, g.a_m, a_b)?;
        Some(Call { rows: n, cols: m, k, first, second, swapped: true, ldc: ld(g.c_m, g.n)?, batch_c: c_b, batches })
    } else if g.c_m == 1 {
        let first = operand(g.m, g.k, g.a_m, g.a_k, a_b)?;
        let second = operand(g.k, g.n, g.b_k, g.b_n, b_b)?;
        Some(Call { rows: m, cols: n, k, first, second, swapped: false, ldc: ld(g.c_n, g.m)?, batch_c: c_b, batches })
    } else {
        None
    }
}

/// c = a·b (or += with `accumulate`) as `call` describes `g`.
///
/// # Safety
/// `handle` is live on the device's stream; a, b and c hold the matrices `g` describes.
unsafe fn sgemm(handle: cublasHandle_t, call: &Call, accumulate: bool, c: Ptr, a: Ptr, b: Ptr) -> std::result::Result<(), blas::CublasError> {
    let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
    let (first, second) = if call.swapped { (b, a) } else { (a, b) };
    let (f, s) = (call.first, call.second);
    // SAFETY: the caller's.
    unsafe {
        blas::sgemm_strided_batched(
            handle,
            f.op,
            s.op,
            call.rows,
            call.cols,
            call.k,
            &alpha,
            first as *const f32,
            f.ld,
            f.batch,
            second as *const f32,
            s.ld,
            s.batch,
            &beta,
            c as *mut f32,
            call.ldc,
            call.batch_c,
            call.batches,
        )
    }
}

/// Floats from C's first element to its last: what a scratch output for timing must hold.
fn c_extent(g: &GemmShape) -> usize {
    let last = |count: u32, stride: i64| u64::from(count.saturating_sub(1)) * stride.unsigned_abs();
    (last(g.batches, g.c_b) + last(g.m, g.c_m) + last(g.n, g.c_n) + 1) as usize
}

fn key(g: &GemmShape, bias: bool) -> u64 {
    let mut h = DefaultHasher::new();
    let shape = (g.m, g.n, g.k, g.batches, [g.a_m, g.a_k, g.a_b, g.b_k, g.b_n, g.b_b, g.c_m, g.c_n, g.c_b]);
    ("gemm", shape, g.group, g.accumulate, g.bias_rows, g.relu, bias).hash(&mut h);
    h.finish()
}

/// What runs `g`: Some(call) for cuBLAS, None for our kernel. The first time, at an eager step,
/// both are timed into a scratch C: `ours(c)` runs our kernel, cuBLAS runs with its epilogue. A
/// step being captured or replayed does not time: a shape no eager step timed runs on ours.
pub(crate) fn choose(dev: &Cuda, g: &GemmShape, a: Ptr, b: Ptr, bias: Ptr, ours: &mut dyn FnMut(Ptr) -> Result<()>) -> Result<Option<Call>> {
    let Some(call) = call(g) else { return Ok(None) };
    let key = key(g, bias != 0);
    if let Some(code) = dev.tuned(key) {
        return Ok((code >= 0).then_some(call));
    }
    if dev.issue() != Issue::Eager {
        return Ok(None);
    }
    let shape = format!("gemm {}x{}x{} on {}{}{}", g.m, g.n, g.k, g.batches, if bias != 0 { " + bias" } else { "" }, if g.relu != 0 { ", ReLU" } else { "" });
    let policy = Cuda::vendor_policy("STATICNET_GEMM", "cublas");
    let handle = match (policy, dev.cublas()) {
        (VendorPolicy::Ours, _) | (_, None) => {
            dev.set_tuned(key, -1, format!("{shape}: ours (cuBLAS not used)"));
            return Ok(None);
        }
        (_, Some(handle)) => handle,
    };
    let out = CudaBuf::<f32>::new(dev.stream(), c_extent(g))?;
    let ours_ms = dev.time_ms(&mut || ours(out.ptr))?;
    let timed = dev.time_ms(&mut || {
        // SAFETY: a and b are the GEMM's operands, `out` holds C's extent.
        unsafe { sgemm(handle, &call, g.accumulate != 0, out.ptr, a, b) }.map_err(|e| cublas_error(g, e))?;
        epilogue(dev, g, out.ptr, bias)
    });
    match timed {
        Ok(ms) if policy == VendorPolicy::Vendor || ms < ours_ms => {
            dev.set_tuned(key, 0, format!("{shape}: cuBLAS {ms:.3} ms (ours {ours_ms:.3} ms)"));
            Ok(Some(call))
        }
        Ok(ms) => {
            dev.set_tuned(key, -1, format!("{shape}: ours {ours_ms:.3} ms (cuBLAS {ms:.3} ms)"));
            Ok(None)
        }
        Err(e) => {
            dev.set_tuned(key, -1, format!("{shape}: ours {ours_ms:.3} ms (cuBLAS failed: {e})"));
            Ok(None)
        }
    }
}

/// Runs `g` through cuBLAS as `call` (from [`choose`]), then its bias and ReLU. Skipped, but
/// counted, while a captured step is replayed.
pub(crate) fn run(dev: &Cuda, g: &GemmShape, call: &Call, c: Ptr, a: Ptr, b: Ptr, bias: Ptr) -> Result<()> {
    let handle = dev.cublas().ok_or_else(|| Error::Backend("cuBLAS was chosen but is not open".into()))?;
    if dev.take_launch() {
        dev.bind()?;
        let profiled = dev.profile_start();
        // SAFETY: the caller passes the GEMM's operands and output, as `g` describes them.
        unsafe { sgemm(handle, call, g.accumulate != 0, c, a, b) }.map_err(|e| cublas_error(g, e))?;
        dev.profile_end("cublasSgemmStridedBatched", profiled)?;
    }
    epilogue(dev, g, c, bias)
}

/// C's bias and ReLU, when `g` has them.
fn epilogue(dev: &Cuda, g: &GemmShape, c: Ptr, bias: Ptr) -> Result<()> {
    if bias == 0 && g.relu == 0 {
        return Ok(());
    }
    launch!(dev, gemm_epilogue_f32, elementwise(g.batches as usize * g.m as usize * g.n as usize), c, bias, *g)
}

fn cublas_error(g: &GemmShape, e: blas::CublasError) -> Error {
    Error::Backend(format!("cuBLAS: sgemm of {}x{}x{} on {} failed: {e:?}", g.m, g.n, g.k, g.batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element (r, c) of the product that `call` computes, for row-major A and B given by `g`'s
    /// strides, worked out the way cuBLAS reads its arguments (column-major, op N or T).
    fn through_call(call: &Call, g: &GemmShape, a: &[f32], b: &[f32], z: usize) -> Vec<f32> {
        let (first, second) = if call.swapped { (b, a) } else { (a, b) };
        let at = |m: &[f32], o: &Operand, r: usize, c: usize| {
            let base = z as i64 * o.batch;
            let i = if o.op == cublasOperation_t::CUBLAS_OP_N { r as i64 + c as i64 * o.ld as i64 } else { c as i64 + r as i64 * o.ld as i64 };
            m[(base + i) as usize]
        };
        let (rows, cols, k) = (call.rows as usize, call.cols as usize, call.k as usize);
        let mut c = vec![0.0; c_extent(g)];
        for j in 0..cols {
            for i in 0..rows {
                let v: f32 = (0..k).map(|t| at(first, &call.first, i, t) * at(second, &call.second, t, j)).sum();
                c[(z as i64 * call.batch_c) as usize + i + j * call.ldc as usize] = v;
            }
        }
        c
    }

    /// The same product from `g`'s own definition (ops/gemm/cuda.cu).
    fn by_definition(g: &GemmShape, a: &[f32], b: &[f32], z: usize) -> Vec<f32> {
        let mut c = vec![0.0; c_extent(g)];
        let zi = z as i64;
        for i in 0..g.m as i64 {
            for j in 0..g.n as i64 {
                let v: f32 = (0..g.k as i64).map(|t| a[(zi * g.a_b + i * g.a_m + t * g.a_k) as usize] * b[(zi * g.b_b + t * g.b_k + j * g.b_n) as usize]).sum();
                c[(zi * g.c_b + i * g.c_m + j * g.c_n) as usize] = v;
            }
        }
        c
    }

    /// Every stride layout the linear and convolution launchers pass (and C column-major) maps
    /// to a cuBLAS call that computes the same matrix: checked by evaluating the call the way
    /// cuBLAS defines its arguments, without a GPU.
    #[test]
    fn calls_compute_the_gemm_they_stand_for() {
        let (m, n, k) = (3u32, 5u32, 4u32);
        let (mi, ni, ki) = (m as i64, n as i64, k as i64);
        let layouts = [
            // Linear forward: X[m, k]·Wᵀ (W is [n, k]).
            ("x·wᵀ", GemmShape { m, n, k, a_m: ki, a_k: 1, b_k: 1, b_n: ki, c_m: ni, c_n: 1, ..GemmShape::default() }),
            // Linear dX: dY[m, k]·W[k, n].
            ("dy·w", GemmShape { m, n, k, a_m: ki, a_k: 1, b_k: ni, b_n: 1, c_m: ni, c_n: 1, ..GemmShape::default() }),
            // Linear dW: dYᵀ·X (dY is [k, m]).
            ("dyᵀ·x", GemmShape { m, n, k, a_m: 1, a_k: mi, b_k: ni, b_n: 1, c_m: ni, c_n: 1, accumulate: 1, ..GemmShape::default() }),
            // Convolution forward per image: W[m, k]·col_b[k, n], W shared by the batches.
            ("w·col per image", GemmShape { m, n, k, batches: 2, a_m: ki, a_k: 1, b_k: ni, b_n: 1, b_b: ki * ni, c_m: ni, c_n: 1, c_b: mi * ni, ..GemmShape::default() }),
            // Column-major C.
            ("column-major c", GemmShape { m, n, k, a_m: ki, a_k: 1, b_k: ni, b_n: 1, c_m: 1, c_n: mi, ..GemmShape::default() }),
        ];
        let a: Vec<f32> = (0..64).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..64).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        for (what, g) in layouts {
            let call = call(&g).unwrap_or_else(|| panic!("{what}: no cuBLAS call"));
            for z in 0..g.batches as usize {
                assert_eq!(through_call(&call, &g, &a, &b, z), by_definition(&g, &a, &b, z), "{what}, batch {z}: {call:?}");
            }
        }
    }

    /// What cuBLAS cannot do stays ours: sums over batches, neither stride 1, bf16.
    #[test]
    fn gemms_without_a_call_stay_ours() {
        let base = GemmShape { m: 3, n: 5, k: 4, a_m: 4, a_k: 1, b_k: 5, b_n: 1, c_m: 5, c_n: 1, ..GemmShape::default() };
        assert!(call(&base).is_some());
        assert!(call(&GemmShape { batches: 4, group: 2, ..base }).is_none(), "group");
        assert!(call(&GemmShape { a_m: 8, a_k: 2, ..base }).is_none(), "A without a unit stride");
        assert!(call(&GemmShape { c_m: 10, c_n: 2, ..base }).is_none(), "C without a unit stride");
        assert!(call(&GemmShape { a_m: 2, ..base }).is_none(), "a leading dimension shorter than a row");
        assert!(call(&GemmShape { bf16_in: 1, bf16_out: 1, ..base }).is_none(), "bf16");
    }

    #[test]
    fn keys_tell_shapes_apart() {
        let g = GemmShape { m: 3, n: 5, k: 4, a_m: 4, a_k: 1, b_k: 5, b_n: 1, c_m: 5, c_n: 1, ..GemmShape::default() };
        let keys = [key(&g, false), key(&g, true), key(&GemmShape { relu: 1, ..g }, false), key(&GemmShape { accumulate: 1, ..g }, false), key(&GemmShape { k: 5, ..g }, false)];
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
