//! The `Backend` trait: device memory and one method per kernel. The code `network!` generates
//! calls these methods only, so a network runs on any backend unchanged.
//!
//! Memory is handed to kernels as views: `Src` (read) and `Dst` (write) into a backend buffer.
//! On the CPU they are plain slices; a GPU backend makes them device pointers. A network keeps
//! its parameters, gradients and activations in a few large buffers, and the generated code cuts
//! the views it needs out of them with [`Backend::src`], [`Backend::dst`] and [`Backend::io`].

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use std::fmt::Debug;
use std::ops::Range;

use crate::Result;
use crate::ops::{
    Activation, AdamStep, AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm, Conv2d, CrossEntropy, Dropout, Linear, LossOutput, Pool2d, SgdStep, Softmax,
};

pub use cpu::Cpu;
pub use crate::device::Precision;
#[cfg(feature = "cuda")]
pub use cuda::Cuda;

/// An element type a buffer can hold: `f32` for tensors, `u32` for labels and pooling indices.
pub trait Elem: Copy + Default + Send + Sync + Debug + 'static {}
impl Elem for f32 {}
impl Elem for u32 {}

/// A device that runs staticnet's kernels. The value is the device handle (`Cpu`, or a GPU).
///
/// Every kernel takes its op description (`&Conv2d`, …), the batch size `n`, then its views.
/// Views are exactly as long as the op needs for `n` samples (the generated code slices them).
#[allow(clippy::too_many_arguments)]
pub trait Backend: Clone + Debug + Send + Sync + 'static {
    /// A buffer of device memory.
    type Buf<T: Elem>: Send + Sync;
    /// A read-only view into a buffer.
    type Src<'a, T: Elem>: Copy
    where
        Self: 'a;
    /// A writable view into a buffer.
    type Dst<'a, T: Elem>
    where
        Self: 'a;

    /// A human-readable name ("cpu", "cuda:0 (NVIDIA H100)").
    fn name(&self) -> String;

    // ---- memory ----

    /// A zero-filled buffer of `len` elements.
    fn alloc<T: Elem>(&self, len: usize) -> Result<Self::Buf<T>>;
    /// The number of elements of `buf`.
    fn len<T: Elem>(buf: &Self::Buf<T>) -> usize;
    /// Copies `src` into `dst[at..]`.
    fn upload<T: Elem>(&self, dst: &mut Self::Buf<T>, at: usize, src: &[T]) -> Result<()>;
    /// Copies `src[at..at + dst.len()]` into `dst`.
    fn download<T: Elem>(&self, src: &Self::Buf<T>, at: usize, dst: &mut [T]) -> Result<()>;
    /// A read view of `buf[range]`, to hand to a kernel.
    fn src<T: Elem>(buf: &Self::Buf<T>, range: Range<usize>) -> Self::Src<'_, T>;
    /// A write view of `buf[range]`, to hand to a kernel.
    fn dst<T: Elem>(buf: &mut Self::Buf<T>, range: Range<usize>) -> Self::Dst<'_, T>;
    /// A read view and a write view into the same buffer; the ranges must not overlap.
    fn io<T: Elem>(buf: &mut Self::Buf<T>, src: Range<usize>, dst: Range<usize>) -> (Self::Src<'_, T>, Self::Dst<'_, T>);
    /// Two read views and a write view into the same buffer; `dst` must overlap neither.
    fn io2<T: Elem>(buf: &mut Self::Buf<T>, a: Range<usize>, b: Range<usize>, dst: Range<usize>) -> (Self::Src<'_, T>, Self::Src<'_, T>, Self::Dst<'_, T>);
    /// A read view and two write views into the same buffer; no two ranges may overlap.
    fn io_dst2<T: Elem>(buf: &mut Self::Buf<T>, src: Range<usize>, a: Range<usize>, b: Range<usize>) -> (Self::Src<'_, T>, Self::Dst<'_, T>, Self::Dst<'_, T>);
    /// Two write views into the same buffer; the ranges must not overlap.
    fn dst2<T: Elem>(buf: &mut Self::Buf<T>, a: Range<usize>, b: Range<usize>) -> (Self::Dst<'_, T>, Self::Dst<'_, T>);
    /// Sets every element of `dst` to `value` (`torch.Tensor.fill_`).
    fn fill(&self, dst: Self::Dst<'_, f32>, value: f32) -> Result<()>;
    /// Copies `src` into `dst`, which has the same length.
    fn copy(&self, src: Self::Src<'_, f32>, dst: Self::Dst<'_, f32>) -> Result<()>;
    /// Waits until every kernel launched so far has finished.
    fn synchronize(&self) -> Result<()>;
    /// Scratch floats the kernels of `op` need for a batch of `n`.
    fn scratch_len(&self, op: &crate::ops::Op, n: usize) -> usize;
    /// Whether an eval forward of a large batch runs depth-first: each thread takes a few
    /// samples at a time through the whole network, so that their activations stay in its
    /// core's cache instead of going to memory and back between layers (the CPU). A GPU runs
    /// the batch layer by layer.
    fn depth_first(&self) -> bool {
        false
    }

    /// Floats of `op`'s weights laid out for its forward kernel, which a network keeps between
    /// forwards while its weights do not change (0: the forward reads PyTorch's layout).
    fn packed_len(&self, op: &crate::ops::Op) -> usize {
        let _ = op;
        0
    }
    /// Lays out `op`'s weights `wb` (weight then bias) for its forward kernel (and, where a
    /// backend keeps one, for its data gradient's), into `packed` (`packed_len` floats).
    fn pack(&self, op: &crate::ops::Op, wb: Self::Src<'_, f32>, packed: Self::Dst<'_, f32>) -> Result<()> {
        let _ = (op, wb, packed);
        Ok(())
    }

    // ---- layers ----

    /// y = conv(x, w) + b, then ReLU when `relu` (a Conv2d → ReLU pair fused).
    /// `wb`: weight then bias; `packed`: the weights as [`Backend::pack`] laid them out, when
    /// kept (else the kernel lays them out in `scratch`). `scratch`: `scratch_len` floats.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_forward(
        &self,
        op: &Conv2d,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Self::Src<'_, f32>,
        packed: Option<Self::Src<'_, f32>>,
        y: Self::Dst<'_, f32>,
        scratch: Self::Dst<'_, f32>,
        relu: bool,
    ) -> Result<()>;
    /// Whether an eval forward folds a batch norm into the convolution before it (see
    /// `network::Fold`); not by default.
    fn folds_batch_norm(&self) -> bool {
        false
    }
    /// Whether [`Backend::conv2d_relu_max_pool_forward`] takes `op`, with the ReLU's output
    /// written too (`keep_relu`, for a training forward) or not (none by default).
    fn fuses_conv2d_relu_max_pool(&self, op: &Conv2d, keep_relu: bool) -> bool {
        let _ = (op, keep_relu);
        false
    }
    /// y = max_pool2d(relu(conv(x, w) + b), kernel 2, stride 2) in one pass: Conv2d → ReLU →
    /// MaxPool2d(2, 2), where [`Backend::fuses_conv2d_relu_max_pool`] says so. The ReLU's
    /// output is written to `relu_y` when given (a training forward, whose backward reads it),
    /// else not at all (an eval forward). Views as for [`Backend::conv2d_forward`]; `y` is the
    /// pooled output.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_relu_max_pool_forward(
        &self,
        op: &Conv2d,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Self::Src<'_, f32>,
        packed: Option<Self::Src<'_, f32>>,
        y: Self::Dst<'_, f32>,
        relu_y: Option<Self::Dst<'_, f32>>,
        scratch: Self::Dst<'_, f32>,
    ) -> Result<()> {
        let _ = (n, x, wb, packed, y, relu_y, scratch);
        Err(crate::Error::Backend(format!("{}: no fused convolution, ReLU and max pooling for {op:?}", self.name())))
    }
    /// dx written, dwb accumulated; either may be skipped. With `relu_y` (the output of a fused
    /// ReLU), dy is the gradient of the ReLU's output and is masked by `relu_y > 0` on the fly.
    /// `packed`: the weights as [`Backend::pack`] laid them out from these `wb`, when kept.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        op: &Conv2d,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Self::Src<'_, f32>,
        packed: Option<Self::Src<'_, f32>>,
        dy: Self::Src<'_, f32>,
        relu_y: Option<Self::Src<'_, f32>>,
        dx: Option<Self::Dst<'_, f32>>,
        dwb: Option<Self::Dst<'_, f32>>,
        scratch: Self::Dst<'_, f32>,
    ) -> Result<()>;
    /// Whether [`Backend::conv2d_relu_max_pool_backward`] takes `op`, with or without its input's
    /// gradient (none by default).
    fn fuses_conv2d_relu_max_pool_backward(&self, op: &Conv2d, dx: bool) -> bool {
        let _ = (op, dx);
        false
    }
    /// The backward of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's output gradient
    /// `pool_dy`, where [`Backend::fuses_conv2d_relu_max_pool_backward`] says so: as
    /// `max_pool2d_backward` (input `relu_y`, output `pool_y`) and then [`Backend::conv2d_backward`]
    /// with `relu_y`, but the gradient of the convolution's output is never written whole.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_relu_max_pool_backward(
        &self,
        op: &Conv2d,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Self::Src<'_, f32>,
        relu_y: Self::Src<'_, f32>,
        pool_y: Self::Src<'_, f32>,
        pool_dy: Self::Src<'_, f32>,
        dx: Option<Self::Dst<'_, f32>>,
        dwb: Option<Self::Dst<'_, f32>>,
        scratch: Self::Dst<'_, f32>,
    ) -> Result<()> {
        let _ = (n, x, wb, relu_y, pool_y, pool_dy, dx, dwb, scratch);
        Err(crate::Error::Backend(format!("{}: no fused backward of convolution, ReLU and max pooling for {op:?}", self.name())))
    }
    /// `nn.Linear`'s forward: y (n, out) = x (n, in) · Wᵀ + b, written; `wb` is the weight then the
    /// bias.
    fn linear_forward(&self, op: &Linear, n: usize, x: Self::Src<'_, f32>, wb: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.Linear`'s backward: dx = dy · W written when wanted, dW += dyᵀ · x and db += Σ dy
    /// accumulated into `dwb` when wanted.
    fn linear_backward(
        &self,
        op: &Linear,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Self::Src<'_, f32>,
        dy: Self::Src<'_, f32>,
        dx: Option<Self::Dst<'_, f32>>,
        dwb: Option<Self::Dst<'_, f32>>,
    ) -> Result<()>;
    /// `nn.MaxPool2d`'s forward: the maximum of each window, written into `y`.
    fn max_pool2d_forward(&self, op: &Pool2d, n: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// Finds each window's argmax again from its input `x` and output `y`.
    fn max_pool2d_backward(&self, op: &Pool2d, n: usize, x: Self::Src<'_, f32>, y: Self::Src<'_, f32>, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AvgPool2d`'s forward: the mean of each window (PyTorch's divisor rules), written into
    /// `y`.
    fn avg_pool2d_forward(&self, op: &Pool2d, n: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AvgPool2d`'s backward: each window's gradient shared out over its cells, written into
    /// `dx`.
    fn avg_pool2d_backward(&self, op: &Pool2d, n: usize, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AdaptiveAvgPool2d`'s forward: PyTorch's adaptive windows averaged, written into `y`.
    fn adaptive_avg_pool2d_forward(&self, op: &AdaptiveAvgPool2d, n: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AdaptiveAvgPool2d`'s backward, written into `dx`.
    fn adaptive_avg_pool2d_backward(&self, op: &AdaptiveAvgPool2d, n: usize, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AdaptiveMaxPool2d`'s forward: the maximum of each adaptive window, written into `y`.
    fn adaptive_max_pool2d_forward(&self, op: &AdaptiveMaxPool2d, n: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.AdaptiveMaxPool2d`'s backward (the argmax found again in `x`), written into `dx`.
    fn adaptive_max_pool2d_backward(&self, op: &AdaptiveMaxPool2d, n: usize, x: Self::Src<'_, f32>, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// Normalise with batch statistics, save them, update `running` with weight `factor`.
    fn batch_norm_forward_train(
        &self,
        op: &BatchNorm,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Option<Self::Src<'_, f32>>,
        running: Option<Self::Dst<'_, f32>>,
        factor: f32,
        saved: Self::Dst<'_, f32>,
        y: Self::Dst<'_, f32>,
    ) -> Result<()>;
    /// Normalise with the running statistics (saved for the backward).
    fn batch_norm_forward_eval(
        &self,
        op: &BatchNorm,
        n: usize,
        x: Self::Src<'_, f32>,
        wb: Option<Self::Src<'_, f32>>,
        running: Self::Src<'_, f32>,
        saved: Self::Dst<'_, f32>,
        y: Self::Dst<'_, f32>,
    ) -> Result<()>;
    /// Batch norm's backward, with the statistics of the forward (`batch_stats`: the batch's, else
    /// the running ones): dx written, dγ and dβ accumulated into `dwb`.
    fn batch_norm_backward(
        &self,
        op: &BatchNorm,
        n: usize,
        batch_stats: bool,
        x: Self::Src<'_, f32>,
        wb: Option<Self::Src<'_, f32>>,
        saved: Self::Dst<'_, f32>,
        dy: Self::Src<'_, f32>,
        dx: Option<Self::Dst<'_, f32>>,
        dwb: Option<Self::Dst<'_, f32>>,
    ) -> Result<()>;
    /// `nn.Dropout`'s forward in train mode: y = x · mask / (1 − p), the mask drawn from `key`.
    fn dropout_forward(&self, op: &Dropout, n: usize, key: u64, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.Dropout`'s backward: dx = dy · mask / (1 − p), with the forward's mask (the same `key`).
    fn dropout_backward(&self, op: &Dropout, n: usize, key: u64, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// `len` elements.
    fn activation_forward(&self, act: Activation, len: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// The activation's backward over `len` elements, from its input `x` or output `y`: dx = dy ·
    /// f′, written.
    fn activation_backward(&self, act: Activation, len: usize, x: Self::Src<'_, f32>, y: Self::Src<'_, f32>, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// `nn.Softmax(dim=1)` / `nn.LogSoftmax(dim=1)`'s forward, written into `y`.
    fn softmax_forward(&self, op: &Softmax, n: usize, x: Self::Src<'_, f32>, y: Self::Dst<'_, f32>) -> Result<()>;
    /// Softmax's backward from its output `y`, written into `dx`.
    fn softmax_backward(&self, op: &Softmax, n: usize, y: Self::Src<'_, f32>, dy: Self::Src<'_, f32>, dx: Self::Dst<'_, f32>) -> Result<()>;
    /// y = a + b over `len` elements, then ReLU when `relu` (a residual block's sum).
    fn add(&self, len: usize, a: Self::Src<'_, f32>, b: Self::Src<'_, f32>, y: Self::Dst<'_, f32>, relu: bool) -> Result<()>;
    /// y += x over `len` elements.
    fn add_assign(&self, len: usize, y: Self::Dst<'_, f32>, x: Self::Src<'_, f32>) -> Result<()>;

    // ---- losses ----

    /// Mean cross-entropy and correct count of `n` rows of logits; dlogits written when given.
    fn cross_entropy(&self, op: &CrossEntropy, n: usize, logits: Self::Src<'_, f32>, labels: Self::Src<'_, u32>, dlogits: Option<Self::Dst<'_, f32>>) -> Result<LossOutput>;
    /// Mean squared error over `len` elements; dy written when given.
    fn mse(&self, len: usize, y: Self::Src<'_, f32>, target: Self::Src<'_, f32>, dy: Option<Self::Dst<'_, f32>>) -> Result<f32>;

    // ---- optimizers ----

    /// One `torch.optim.SGD` update of the parameters `p` from their gradients `g`, with its
    /// momentum buffer.
    fn sgd_step(&self, op: &SgdStep, p: Self::Dst<'_, f32>, g: Self::Src<'_, f32>, momentum: Self::Dst<'_, f32>) -> Result<()>;
    /// One `torch.optim.Adam` / `AdamW` update of `p` from `g`, with the first and second moments
    /// (and their running maximum with amsgrad).
    fn adam_step(
        &self,
        op: &AdamStep,
        p: Self::Dst<'_, f32>,
        g: Self::Src<'_, f32>,
        m: Self::Dst<'_, f32>,
        v: Self::Dst<'_, f32>,
        vmax: Option<Self::Dst<'_, f32>>,
    ) -> Result<()>;
}
