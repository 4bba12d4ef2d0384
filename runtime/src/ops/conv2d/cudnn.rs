//! Convolutions through cuDNN (feature `cuda`; libcudnn is loaded at run time, and without it
//! our kernels run everything). Each pass of each shape is timed once, at the first eager step
//! that runs it, against our im2col + GEMM kernels, and the faster is kept: what
//! `torch.backends.cudnn.benchmark = True` does among cuDNN's own algorithms. `bench --device
//! cuda` prints the choices (`Cuda::tuning_report`); `STATICNET_CONV=ours` or `=cudnn` forces
//! one side (the tests of each path).
//!
//! Full f32 (`CUDNN_FMA_MATH`, no TF32), as our kernels and the PyTorch fixtures; deterministic
//! algorithms only (`torch.backends.cudnn.deterministic`); NCHW and
//! PyTorch's weight layout (c_out, c_in/groups, kh, kw), which are cuDNN's own.

use std::ffi::c_void;
use std::hash::{DefaultHasher, Hash, Hasher};

use cudarc::cudnn::result::{self as dnn, CudnnError};
use cudarc::cudnn::sys;

use super::Conv2d;
use crate::device::Precision;
use crate::device::cuda::{Cuda, CudaBuf, Issue, Ptr, VendorPolicy};
use crate::{Error, Result};

/// One of a convolution's three passes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Pass {
    /// y = conv(x, w).
    Forward,
    /// dx from dy and w.
    Data,
    /// dw from x and dy.
    Filter,
}

/// A cuDNN algorithm for one pass.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    Data(sys::cudnnConvolutionBwdDataAlgo_t),
    Filter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// Candidates timed per pass: the first few of cuDNN's own ranking.
const CANDIDATES: usize = 3;
/// No algorithm whose workspace is larger is tried.
const MAX_WORKSPACE: usize = 1 << 30;

impl Algo {
    fn code(self) -> i64 {
        match self {
            Algo::Forward(a) => a as i64,
            Algo::Data(a) => a as i64,
            Algo::Filter(a) => a as i64,
        }
    }

    fn from_code(pass: Pass, code: i64) -> Option<Algo> {
        use sys::cudnnConvolutionBwdDataAlgo_t as D;
        use sys::cudnnConvolutionBwdFilterAlgo_t as F;
        use sys::cudnnConvolutionFwdAlgo_t as W;
        let forward = [
            W::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            W::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
            W::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
            W::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
            W::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
            W::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
            W::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
            W::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        ];
        let data = [
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
            D::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        ];
        let filter = [
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
            F::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
        ];
        match pass {
            Pass::Forward => forward.into_iter().find(|&a| a as i64 == code).map(Algo::Forward),
            Pass::Data => data.into_iter().find(|&a| a as i64 == code).map(Algo::Data),
            Pass::Filter => filter.into_iter().find(|&a| a as i64 == code).map(Algo::Filter),
        }
    }
}

/// The descriptors of one convolution on a batch of `n`, destroyed on drop.
struct Descriptors {
    x: sys::cudnnTensorDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each was created once below and is destroyed once here.
        unsafe {
            let _ = dnn::destroy_tensor_descriptor(self.x);
            let _ = dnn::destroy_tensor_descriptor(self.y);
            let _ = dnn::destroy_filter_descriptor(self.w);
            let _ = dnn::destroy_convolution_descriptor(self.conv);
        }
    }
}

impl Descriptors {
    fn new(op: &Conv2d, n: usize) -> std::result::Result<Self, CudnnError> {
        let i = |v: usize| v as i32;
        let d = Descriptors {
            x: dnn::create_tensor_descriptor()?,
            y: dnn::create_tensor_descriptor()?,
            w: dnn::create_filter_descriptor()?,
            conv: dnn::create_convolution_descriptor()?,
        };
        let (nchw, f32) = (sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, sys::cudnnDataType_t::CUDNN_DATA_FLOAT);
        // SAFETY: live descriptors, set once each.
        unsafe {
            dnn::set_tensor4d_descriptor(d.x, nchw, f32, [i(n), i(op.c_in), i(op.h_in), i(op.w_in)])?;
            dnn::set_tensor4d_descriptor(d.y, nchw, f32, [i(n), i(op.c_out), i(op.h_out), i(op.w_out)])?;
            dnn::set_filter4d_descriptor(d.w, f32, nchw, [i(op.c_out), i(op.c_in / op.groups), i(op.kernel[0]), i(op.kernel[1])])?;
            let (p, s, l) = (op.padding, op.stride, op.dilation);
            dnn::set_convolution2d_descriptor(d.conv, i(p[0]), i(p[1]), i(s[0]), i(s[1]), i(l[0]), i(l[1]), sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION, f32)?;
            dnn::set_convolution_group_count(d.conv, i(op.groups))?;
            dnn::set_convolution_math_type(d.conv, sys::cudnnMathType_t::CUDNN_FMA_MATH)?;
        }
        Ok(d)
    }

    /// cuDNN's first few algorithms for `pass`, by its own ranking, that it says run and that
    /// are deterministic (some sum with atomics: a result that changes from run to run would
    /// break the rule that our results do not depend on scheduling, and the graphed step's
    /// bit-for-bit test).
    fn candidates(&self, handle: sys::cudnnHandle_t, pass: Pass) -> std::result::Result<Vec<Algo>, CudnnError> {
        let mut count = 0;
        let ok = |s: sys::cudnnStatus_t, memory: usize, d: sys::cudnnDeterminism_t| {
            s == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS && memory <= MAX_WORKSPACE && d == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC
        };
        // SAFETY (each arm): live descriptors; the result array holds the count requested.
        let algos: Vec<Algo> = unsafe {
            match pass {
                Pass::Forward => {
                    let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); 8];
                    dnn::get_convolution_forward_algorithm(handle, self.x, self.w, self.conv, self.y, 8, &mut count, perf.as_mut_ptr())?;
                    perf[..count.max(0) as usize].iter().filter(|p| ok(p.status, p.memory, p.determinism)).map(|p| Algo::Forward(p.algo)).collect()
                }
                Pass::Data => {
                    let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>(); 6];
                    dnn::get_convolution_backward_data_algorithm(handle, self.w, self.y, self.conv, self.x, 6, &mut count, perf.as_mut_ptr())?;
                    perf[..count.max(0) as usize].iter().filter(|p| ok(p.status, p.memory, p.determinism)).map(|p| Algo::Data(p.algo)).collect()
                }
                Pass::Filter => {
                    let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>(); 7];
                    dnn::get_convolution_backward_filter_algorithm(handle, self.x, self.y, self.conv, self.w, 7, &mut count, perf.as_mut_ptr())?;
                    perf[..count.max(0) as usize].iter().filter(|p| ok(p.status, p.memory, p.determinism)).map(|p| Algo::Filter(p.algo)).collect()
                }
            }
        };
        Ok(algos.into_iter().take(CANDIDATES).collect())
    }

    fn workspace_bytes(&self, handle: sys::cudnnHandle_t, algo: Algo) -> std::result::Result<usize, CudnnError> {
        // SAFETY: live descriptors.
        unsafe {
            match algo {
                Algo::Forward(a) => dnn::get_convolution_forward_workspace_size(handle, self.x, self.w, self.conv, self.y, a),
                Algo::Data(a) => dnn::get_convolution_backward_data_workspace_size(handle, self.w, self.y, self.conv, self.x, a),
                Algo::Filter(a) => dnn::get_convolution_backward_filter_workspace_size(handle, self.x, self.y, self.conv, self.w, a),
            }
        }
    }

    /// Runs `algo`: out = conv pass of (a, b) + beta·out. Forward: a = x, b = w, out = y. Data:
    /// a = w, b = dy, out = dx. Filter: a = x, b = dy, out = dw.
    ///
    /// # Safety
    /// The pointers hold the tensors the descriptors describe; the workspace `ws_bytes`.
    unsafe fn run(&self, handle: sys::cudnnHandle_t, algo: Algo, ws: Ptr, ws_bytes: usize, a: Ptr, b: Ptr, out: Ptr, beta: f32) -> std::result::Result<(), CudnnError> {
        let alpha = 1.0f32;
        let (alpha, beta) = ((&alpha) as *const f32 as *const c_void, (&beta) as *const f32 as *const c_void);
        let (a, b, out, ws) = (a as *const c_void, b as *const c_void, out as *mut c_void, ws as *mut c_void);
        // SAFETY: the caller's.
        unsafe {
            match algo {
                Algo::Forward(algo) => dnn::convolution_forward(handle, alpha, self.x, a, self.w, b, self.conv, algo, ws, ws_bytes, beta, self.y, out),
                Algo::Data(algo) => dnn::convolution_backward_data(handle, alpha, self.w, a, self.y, b, self.conv, algo, ws, ws_bytes, beta, self.x, out),
                Algo::Filter(algo) => dnn::convolution_backward_filter(handle, alpha, self.x, a, self.y, b, self.conv, algo, ws, ws_bytes, beta, self.w, out),
            }
        }
    }
}

fn cudnn_error(what: &str, e: CudnnError) -> Error {
    Error::Backend(format!("cuDNN: {what} failed: {e:?}"))
}

fn key(op: &Conv2d, n: usize, pass: Pass) -> u64 {
    let mut h = DefaultHasher::new();
    ("conv2d", op, n, pass).hash(&mut h);
    h.finish()
}

/// What runs `pass` of `op` on a batch of `n`: Some(algorithm) for cuDNN, None for our kernels.
/// The first time, at an eager step, both are timed: `ours(out)` runs our kernels into a buffer
/// as long as the pass's output (`out_len` floats), each cuDNN candidate runs on (a, b) as
/// [`run`] takes them. A step being captured or replayed does not time: a shape that no eager
/// step timed runs on ours.
pub(crate) fn choose(dev: &Cuda, op: &Conv2d, n: usize, pass: Pass, a: Ptr, b: Ptr, out_len: usize, ours: &mut dyn FnMut(Ptr) -> Result<()>) -> Result<Option<Algo>> {
    // cuDNN runs f32 here: bf16 mixed precision is our GEMM's.
    if dev.precision() != Precision::F32 {
        return Ok(None);
    }
    let key = key(op, n, pass);
    if let Some(code) = dev.tuned(key) {
        return Ok(Algo::from_code(pass, code));
    }
    let shape = format!(
        "conv2d {}->{} {}x{} stride {} groups {} on {} of {}x{}x{}, {pass:?}",
        op.c_in, op.c_out, op.kernel[0], op.kernel[1], op.stride[0], op.groups, n, op.c_in, op.h_in, op.w_in
    );
    let policy = Cuda::vendor_policy("STATICNET_CONV", "cudnn");
    if dev.issue() != Issue::Eager {
        return Ok(None);
    }
    let handle = match (policy, dev.cudnn()) {
        (VendorPolicy::Ours, _) | (_, None) => {
            dev.set_tuned(key, -1, format!("{shape}: ours (cuDNN not used)"));
            return Ok(None);
        }
        (_, Some(handle)) => handle,
    };
    let d = Descriptors::new(op, n).map_err(|e| cudnn_error("describing a convolution", e))?;
    let candidates = d.candidates(handle, pass).unwrap_or_default();
    let out = CudaBuf::<f32>::new(dev.stream(), out_len.max(1))?;
    let ours_ms = dev.time_ms(&mut || ours(out.ptr))?;
    let mut best: Option<(Algo, f32)> = None;
    for algo in candidates {
        let Ok(bytes) = d.workspace_bytes(handle, algo) else { continue };
        let ws = dev.vendor_workspace(bytes)?;
        // SAFETY: a and b are the pass's inputs, `out` is as long as its output, `ws` `bytes`.
        let timed = dev.time_ms(&mut || unsafe { d.run(handle, algo, ws, bytes, a, b, out.ptr, 0.0) }.map_err(|e| cudnn_error("timing an algorithm", e)));
        if let Ok(ms) = timed
            && best.is_none_or(|(_, b)| ms < b)
        {
            best = Some((algo, ms));
        }
    }
    let chosen = match best {
        Some((algo, ms)) if policy == VendorPolicy::Vendor || ms < ours_ms => {
            dev.set_tuned(key, algo.code(), format!("{shape}: cuDNN {algo:?} {ms:.3} ms (ours {ours_ms:.3} ms)"));
            Some(algo)
        }
        Some((algo, ms)) => {
            dev.set_tuned(key, -1, format!("{shape}: ours {ours_ms:.3} ms (cuDNN {algo:?} {ms:.3} ms)"));
            None
        }
        None => {
            dev.set_tuned(key, -1, format!("{shape}: ours {ours_ms:.3} ms (no cuDNN algorithm ran)"));
            None
        }
    };
    Ok(chosen)
}

/// Runs `algo` for `op` on a batch of `n` (see [`Descriptors::run`] for a, b and out): out =
/// pass + beta·out. Skipped, but counted, while a captured step is replayed.
pub(crate) fn run(dev: &Cuda, op: &Conv2d, n: usize, algo: Algo, a: Ptr, b: Ptr, out: Ptr, beta: f32) -> Result<()> {
    let handle = dev.cudnn().ok_or_else(|| Error::Backend("cuDNN was chosen but is not open".into()))?;
    let d = Descriptors::new(op, n).map_err(|e| cudnn_error("describing a convolution", e))?;
    let bytes = d.workspace_bytes(handle, algo).map_err(|e| cudnn_error("sizing a workspace", e))?;
    let ws = dev.vendor_workspace(bytes)?;
    if dev.take_launch() {
        dev.bind()?;
        // SAFETY: the caller passes the pass's tensors; the workspace holds `bytes`.
        unsafe { d.run(handle, algo, ws, bytes, a, b, out, beta) }.map_err(|e| cudnn_error(&format!("{algo:?}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A choice is stored as a number and read back as the same algorithm, for every one cuDNN
    /// has, and a number that is none is none.
    #[test]
    fn algorithms_survive_their_codes() {
        for (pass, count) in [(Pass::Forward, 8), (Pass::Data, 6), (Pass::Filter, 7)] {
            for code in 0..count {
                let algo = Algo::from_code(pass, code).unwrap_or_else(|| panic!("{pass:?} algorithm {code}"));
                assert_eq!(algo.code(), code, "{algo:?}");
                let matches = matches!((pass, algo), (Pass::Forward, Algo::Forward(_)) | (Pass::Data, Algo::Data(_)) | (Pass::Filter, Algo::Filter(_)));
                assert!(matches, "{pass:?} gave {algo:?}");
            }
            assert!(Algo::from_code(pass, count).is_none(), "{pass:?} {count}");
            assert!(Algo::from_code(pass, -1).is_none(), "{pass:?} -1: our kernels");
        }
    }

    /// The shape keys of different passes, batches and convolutions differ.
    #[test]
    fn keys_tell_shapes_and_passes_apart() {
        let a = Conv2d::new(3, 8, [16, 16], [3, 3], [1, 1], [1, 1], [1, 1], 1, true);
        let b = Conv2d::new(3, 8, [16, 16], [3, 3], [2, 2], [1, 1], [1, 1], 1, true);
        let keys = [key(&a, 4, Pass::Forward), key(&a, 4, Pass::Data), key(&a, 4, Pass::Filter), key(&a, 5, Pass::Forward), key(&b, 4, Pass::Forward)];
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
