//! The CUDA backend (feature `cuda`): [`Backend`] for [`Cuda`], each kernel method calling its
//! op's launcher in `ops/<op>/cuda.rs`. The device itself (memory, views, NVRTC, launching) is
//! `crate::device::cuda`; the program it compiles is every op's `cuda.cu`, listed here.

use std::marker::PhantomData;
use std::ops::Range;

use cudarc::driver::result;

use super::{Backend, Elem};
use crate::device::cuda::{self as device, Issue, PRELUDE, Source, disjoint, driver_error, elementwise, launch, view};
pub use crate::device::cuda::{Cuda, CudaBuf, CudaDst, CudaSrc, LossTotals, nvrtc_version};
use crate::ops::{self, Activation, AdamStep, AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm, Conv2d, CrossEntropy, Dropout, Linear, LossOutput, Op, Pool2d, SgdStep, Softmax};
use crate::Result;

/// The kernel sources, compiled as one NVRTC program in this order: the prelude that the others
/// use first, then each op's `cuda.cu` (ops/mod.rs lists them).
pub fn sources() -> Vec<Source> {
    std::iter::once(PRELUDE).chain(ops::CUDA_SOURCES.iter().copied()).collect()
}

/// Every kernel the backend launches, by its name in the `.cu` sources.
pub fn kernel_names() -> Vec<&'static str> {
    sources().iter().flat_map(|s| s.kernels.iter().copied()).collect()
}

/// Compiles every kernel source for `arch` (`"sm_90"`, the real architecture of an H100) into a
/// CUBIN. Needs only NVRTC, no GPU. A compile error carries NVRTC's log.
pub fn compile_kernels(arch: &str) -> Result<Vec<u8>> {
    device::compile(&sources(), arch)
}

impl Cuda {
    /// The GPU `ordinal` (0 for the first), with the kernels compiled for it. An error, never a
    /// panic, when the driver or NVRTC cannot be loaded, there is no such GPU, or the kernels do
    /// not compile or load.
    pub fn new(ordinal: usize) -> Result<Self> {
        Cuda::open(ordinal, &sources())
    }
}

impl Backend for Cuda {
    type Buf<T: Elem> = CudaBuf<T>;
    type Src<'a, T: Elem> = CudaSrc<'a, T>;
    type Dst<'a, T: Elem> = CudaDst<'a, T>;

    fn name(&self) -> String {
        Cuda::name(self).to_string()
    }

    // ---- memory ----

    fn alloc<T: Elem>(&self, len: usize) -> Result<CudaBuf<T>> {
        self.eager("allocating device memory")?;
        CudaBuf::new(self.stream(), len)
    }

    fn len<T: Elem>(buf: &CudaBuf<T>) -> usize {
        buf.len
    }

    fn upload<T: Elem>(&self, dst: &mut CudaBuf<T>, at: usize, src: &[T]) -> Result<()> {
        assert!(at + src.len() <= dst.len, "upload of {} elements at {at} into a buffer of {}", src.len(), dst.len);
        if src.is_empty() {
            return Ok(());
        }
        self.eager("copying to the device")?;
        self.bind()?;
        // SAFETY: the destination range lies inside the buffer (checked above); the source is
        // read before the stream synchronisation below returns, while `src` is still borrowed.
        unsafe { result::memcpy_htod_async(dst.at(at), src, self.stream().cu_stream()) }.map_err(|e| driver_error("copying to the device", e))?;
        self.stream().synchronize().map_err(|e| driver_error("waiting for the device", e))
    }

    fn download<T: Elem>(&self, src: &CudaBuf<T>, at: usize, dst: &mut [T]) -> Result<()> {
        assert!(at + dst.len() <= src.len, "download of {} elements at {at} from a buffer of {}", dst.len(), src.len);
        self.read_back(src.at(at), dst)
    }

    fn src<T: Elem>(buf: &CudaBuf<T>, range: Range<usize>) -> CudaSrc<'_, T> {
        let (ptr, len) = view(buf, &range);
        CudaSrc { ptr, len, _buf: PhantomData }
    }

    fn dst<T: Elem>(buf: &mut CudaBuf<T>, range: Range<usize>) -> CudaDst<'_, T> {
        let (ptr, len) = view(buf, &range);
        CudaDst { ptr, len, _buf: PhantomData }
    }

    fn io<T: Elem>(buf: &mut CudaBuf<T>, src: Range<usize>, dst: Range<usize>) -> (CudaSrc<'_, T>, CudaDst<'_, T>) {
        let (a, _, y) = Self::io2(buf, src.clone(), src, dst);
        (a, y)
    }

    fn io2<T: Elem>(buf: &mut CudaBuf<T>, a: Range<usize>, b: Range<usize>, dst: Range<usize>) -> (CudaSrc<'_, T>, CudaSrc<'_, T>, CudaDst<'_, T>) {
        assert!(disjoint(&a, &dst) && disjoint(&b, &dst), "views {a:?}, {b:?} overlap the output {dst:?}");
        let ((pa, la), (pb, lb), (py, ly)) = (view(buf, &a), view(buf, &b), view(buf, &dst));
        (CudaSrc { ptr: pa, len: la, _buf: PhantomData }, CudaSrc { ptr: pb, len: lb, _buf: PhantomData }, CudaDst { ptr: py, len: ly, _buf: PhantomData })
    }

    fn io_dst2<T: Elem>(buf: &mut CudaBuf<T>, src: Range<usize>, a: Range<usize>, b: Range<usize>) -> (CudaSrc<'_, T>, CudaDst<'_, T>, CudaDst<'_, T>) {
        assert!(disjoint(&src, &a) && disjoint(&src, &b) && disjoint(&a, &b), "views {src:?}, {a:?}, {b:?} overlap");
        let ((px, lx), (pa, la), (pb, lb)) = (view(buf, &src), view(buf, &a), view(buf, &b));
        (CudaSrc { ptr: px, len: lx, _buf: PhantomData }, CudaDst { ptr: pa, len: la, _buf: PhantomData }, CudaDst { ptr: pb, len: lb, _buf: PhantomData })
    }

    fn dst2<T: Elem>(buf: &mut CudaBuf<T>, a: Range<usize>, b: Range<usize>) -> (CudaDst<'_, T>, CudaDst<'_, T>) {
        assert!(disjoint(&a, &b), "output views {a:?} and {b:?} overlap");
        let ((pa, la), (pb, lb)) = (view(buf, &a), view(buf, &b));
        (CudaDst { ptr: pa, len: la, _buf: PhantomData }, CudaDst { ptr: pb, len: lb, _buf: PhantomData })
    }

    fn fill(&self, dst: CudaDst<'_, f32>, value: f32) -> Result<()> {
        if dst.len == 0 {
            return Ok(());
        }
        launch!(self, fill_f32, elementwise(dst.len), dst.ptr, dst.len as u64, value)
    }

    fn copy(&self, src: CudaSrc<'_, f32>, dst: CudaDst<'_, f32>) -> Result<()> {
        assert_eq!(src.len, dst.len, "copy between views of different lengths");
        if src.len == 0 || self.issue() == Issue::Replay {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both views are `len` floats inside live buffers and do not overlap (a source
        // and a destination view cannot be cut from one buffer's overlapping ranges).
        unsafe { result::memcpy_dtod_async(dst.ptr, src.ptr, src.len * 4, self.stream().cu_stream()) }.map_err(|e| driver_error("copying on the device", e))
    }

    fn synchronize(&self) -> Result<()> {
        self.eager("waiting for the device")?;
        self.stream().synchronize().map_err(|e| driver_error("waiting for the device", e))
    }

    fn scratch_len(&self, op: &Op, n: usize) -> usize {
        match op {
            Op::Conv2d(op) => ops::conv2d::cuda::scratch_len(op, n),
            _ => 0,
        }
    }

    // ---- layers ----

    fn conv2d_forward(&self, op: &Conv2d, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, _packed: Option<CudaSrc<'_, f32>>, y: CudaDst<'_, f32>, scratch: CudaDst<'_, f32>, relu: bool) -> Result<()> {
        ops::conv2d::cuda::forward(self, op, n, x, wb, y, scratch, relu)
    }

    fn conv2d_backward(
        &self,
        op: &Conv2d,
        n: usize,
        x: CudaSrc<'_, f32>,
        wb: CudaSrc<'_, f32>,
        _packed: Option<CudaSrc<'_, f32>>,
        dy: CudaSrc<'_, f32>,
        relu_y: Option<CudaSrc<'_, f32>>,
        dx: Option<CudaDst<'_, f32>>,
        dwb: Option<CudaDst<'_, f32>>,
        scratch: CudaDst<'_, f32>,
    ) -> Result<()> {
        ops::conv2d::cuda::backward(self, op, n, x, wb, dy, relu_y, dx, dwb, scratch)
    }

    fn linear_forward(&self, op: &Linear, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::linear::cuda::forward(self, op, n, x, wb, y)
    }

    fn linear_backward(&self, op: &Linear, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: Option<CudaDst<'_, f32>>, dwb: Option<CudaDst<'_, f32>>) -> Result<()> {
        ops::linear::cuda::backward(self, op, n, x, wb, dy, dx, dwb)
    }

    fn max_pool2d_forward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::pool2d::cuda::max_forward(self, op, n, x, y)
    }

    fn max_pool2d_backward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::pool2d::cuda::max_backward(self, op, n, x, y, dy, dx)
    }

    fn avg_pool2d_forward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::pool2d::cuda::avg_forward(self, op, n, x, y)
    }

    fn avg_pool2d_backward(&self, op: &Pool2d, n: usize, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::pool2d::cuda::avg_backward(self, op, n, dy, dx)
    }

    fn adaptive_avg_pool2d_forward(&self, op: &AdaptiveAvgPool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::adaptive_avg_pool2d::cuda::forward(self, op, n, x, y)
    }

    fn adaptive_avg_pool2d_backward(&self, op: &AdaptiveAvgPool2d, n: usize, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::adaptive_avg_pool2d::cuda::backward(self, op, n, dy, dx)
    }

    fn adaptive_max_pool2d_forward(&self, op: &AdaptiveMaxPool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::adaptive_max_pool2d::cuda::forward(self, op, n, x, y)
    }

    fn adaptive_max_pool2d_backward(&self, op: &AdaptiveMaxPool2d, n: usize, x: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::adaptive_max_pool2d::cuda::backward(self, op, n, x, dy, dx)
    }

    fn batch_norm_forward_train(
        &self,
        op: &BatchNorm,
        n: usize,
        x: CudaSrc<'_, f32>,
        wb: Option<CudaSrc<'_, f32>>,
        running: Option<CudaDst<'_, f32>>,
        factor: f32,
        saved: CudaDst<'_, f32>,
        y: CudaDst<'_, f32>,
    ) -> Result<()> {
        ops::batch_norm::cuda::forward_train(self, op, n, x, wb, running, factor, saved, y)
    }

    fn batch_norm_forward_eval(
        &self,
        op: &BatchNorm,
        n: usize,
        x: CudaSrc<'_, f32>,
        wb: Option<CudaSrc<'_, f32>>,
        running: CudaSrc<'_, f32>,
        saved: CudaDst<'_, f32>,
        y: CudaDst<'_, f32>,
    ) -> Result<()> {
        ops::batch_norm::cuda::forward_eval(self, op, n, x, wb, running, saved, y)
    }

    fn batch_norm_backward(
        &self,
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
        ops::batch_norm::cuda::backward(self, op, n, batch_stats, x, wb, saved, dy, dx, dwb)
    }

    fn dropout_forward(&self, op: &Dropout, n: usize, key: u64, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::dropout::cuda::forward(self, op, n, key, x, y)
    }

    fn dropout_backward(&self, op: &Dropout, n: usize, key: u64, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::dropout::cuda::backward(self, op, n, key, dy, dx)
    }

    fn activation_forward(&self, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::activation::cuda::forward(self, act, len, x, y)
    }

    fn activation_backward(&self, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::activation::cuda::backward(self, act, len, x, y, dy, dx)
    }

    fn softmax_forward(&self, op: &Softmax, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        ops::softmax::cuda::forward(self, op, n, x, y)
    }

    fn softmax_backward(&self, op: &Softmax, n: usize, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        ops::softmax::cuda::backward(self, op, n, y, dy, dx)
    }

    fn add(&self, len: usize, a: CudaSrc<'_, f32>, b: CudaSrc<'_, f32>, y: CudaDst<'_, f32>, relu: bool) -> Result<()> {
        ops::add::cuda::add(self, len, a, b, y, relu)
    }

    fn add_assign(&self, len: usize, y: CudaDst<'_, f32>, x: CudaSrc<'_, f32>) -> Result<()> {
        ops::add::cuda::add_assign(self, len, y, x)
    }

    // ---- losses ----

    fn cross_entropy(&self, op: &CrossEntropy, n: usize, logits: CudaSrc<'_, f32>, labels: CudaSrc<'_, u32>, dlogits: Option<CudaDst<'_, f32>>) -> Result<LossOutput> {
        ops::cross_entropy::cuda::forward_backward(self, op, n, logits, labels, dlogits)
    }

    fn mse(&self, len: usize, y: CudaSrc<'_, f32>, target: CudaSrc<'_, f32>, dy: Option<CudaDst<'_, f32>>) -> Result<f32> {
        ops::mse::cuda::forward_backward(self, len, y, target, dy)
    }

    // ---- optimizers ----

    fn sgd_step(&self, op: &SgdStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, momentum: CudaDst<'_, f32>) -> Result<()> {
        ops::sgd::cuda::step(self, op, p, g, momentum)
    }

    fn adam_step(&self, op: &AdamStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, m: CudaDst<'_, f32>, v: CudaDst<'_, f32>, vmax: Option<CudaDst<'_, f32>>) -> Result<()> {
        ops::adam::cuda::step(self, op, p, g, m, v, vmax)
    }
}
