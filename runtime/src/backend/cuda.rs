//! The CUDA backend (feature `cuda`): buffers are device memory, views are device pointers, and
//! kernels are the `ops/<op>/cuda.cu` sources, compiled at run time by NVRTC, once per device.
//!
//! cudarc loads `libcuda` and `libnvrtc` when they are first used, so the crate builds and its
//! CPU tests pass on machines with neither. cudarc *panics* when a library is missing; [`Cuda::new`]
//! catches that and returns an [`Error::Backend`] saying what is missing instead.
//!
//! Everything runs in order on one stream of the device; only the copies between host and device
//! (whose host memory may be freed once they return), the losses (which return a number) and
//! [`Backend::synchronize`] wait for it. Kernels are compiled for
//! the device's own architecture into a CUBIN, not PTX: a CUBIN from a newer NVRTC loads on an
//! older driver of the same major version, where PTX would be refused.
//!
//! GEMMs (linear layers, and convolutions as im2col + GEMM) are our own kernel in plain f32
//! FMAs: no TF32, so results agree with the CPU backend and the PyTorch fixtures.

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, result};
use cudarc::nvrtc::{self, Ptx};

use super::{Backend, Elem};
use crate::network::Op;
use crate::ops::{Activation, AdamStep, AdaptiveAvgPool2d, BatchNorm, Conv2d, CrossEntropy, Dropout, Linear, LossOutput, Pool2d, SgdStep, Softmax};
use crate::{Error, Result};

/// The kernel sources, compiled as one NVRTC program in this order: the prelude that the others
/// use first. Each is named by its path under `runtime/src` in compiler messages.
pub const SOURCES: [(&str, &str); 14] = [
    ("backend/cuda.cu", include_str!("cuda.cu")),
    ("ops/activation/cuda.cu", include_str!("../ops/activation/cuda.cu")),
    ("ops/add/cuda.cu", include_str!("../ops/add/cuda.cu")),
    ("ops/dropout/cuda.cu", include_str!("../ops/dropout/cuda.cu")),
    ("ops/sgd/cuda.cu", include_str!("../ops/sgd/cuda.cu")),
    ("ops/adam/cuda.cu", include_str!("../ops/adam/cuda.cu")),
    ("ops/softmax/cuda.cu", include_str!("../ops/softmax/cuda.cu")),
    ("ops/cross_entropy/cuda.cu", include_str!("../ops/cross_entropy/cuda.cu")),
    ("ops/mse/cuda.cu", include_str!("../ops/mse/cuda.cu")),
    ("ops/pool2d/cuda.cu", include_str!("../ops/pool2d/cuda.cu")),
    ("ops/adaptive_avg_pool2d/cuda.cu", include_str!("../ops/adaptive_avg_pool2d/cuda.cu")),
    ("ops/batch_norm/cuda.cu", include_str!("../ops/batch_norm/cuda.cu")),
    ("ops/gemm/cuda.cu", include_str!("../ops/gemm/cuda.cu")),
    ("ops/conv2d/cuda.cu", include_str!("../ops/conv2d/cuda.cu")),
];

/// Declares the kernels the backend loads: a struct with one `CudaFunction` per name, and the
/// list of names (which the NVRTC test checks against the compiled program).
macro_rules! kernels {
    ($($name:ident),* $(,)?) => {
        struct Kernels {
            $($name: CudaFunction,)*
        }

        /// Every kernel the backend launches, by its name in the `.cu` sources.
        pub const KERNEL_NAMES: &[&str] = &[$(stringify!($name)),*];

        impl Kernels {
            fn load(module: &Arc<CudaModule>) -> Result<Kernels> {
                Ok(Kernels {
                    $($name: module.load_function(stringify!($name)).map_err(|e| driver_error(concat!("loading kernel ", stringify!($name)), e))?,)*
                })
            }
        }
    };
}

kernels! {
    fill_f32,
    activation_fwd_f32, activation_bwd_f32,
    add_f32, add_assign_f32,
    dropout_fwd_f32, dropout_bwd_f32,
    sgd_step_f32, adam_step_f32,
    softmax_fwd_f32, softmax_bwd_f32,
    cross_entropy_fwd_bwd_f32, mse_fwd_bwd_f32,
    max_pool2d_fwd_f32, max_pool2d_bwd_f32, avg_pool2d_fwd_f32, avg_pool2d_bwd_f32,
    adaptive_avg_pool2d_fwd_f32, adaptive_avg_pool2d_bwd_f32,
    batch_norm_stats_f32, batch_norm_eval_stats_f32, batch_norm_fwd_f32, batch_norm_bwd_sums_f32, batch_norm_bwd_f32,
    gemm_f32, gemm_sum_splits_f32, bias_grad_f32, sum_parts_f32,
    im2col_f32, col2im_f32, conv2d_relu_mask_f32,
}

/// The whole program NVRTC compiles: every source, each after a `#line` directive naming it.
pub fn program_source() -> String {
    SOURCES.iter().map(|(name, text)| format!("#line 1 \"{name}\"\n{text}\n")).collect()
}

/// Compiles every kernel source for `arch` (`"sm_90"`, the real architecture of an H100) into a
/// CUBIN. Needs only NVRTC, no GPU. A compile error carries NVRTC's log.
pub fn compile_kernels(arch: &str) -> Result<Vec<u8>> {
    let source = CString::new(program_source()).expect("kernel sources hold no NUL");
    let options = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string()];
    let prog = probe("NVRTC (libnvrtc)", || nvrtc::result::create_program(&source, Some(c"staticnet.cu")))?
        .map_err(|e| Error::Backend(format!("NVRTC could not create the kernel program: {e:?}")))?;
    // SAFETY: `prog` was created above and is destroyed once, below; `source` outlives it.
    unsafe {
        let compiled = nvrtc::result::compile_program(prog, &options);
        let out = match compiled {
            Ok(()) => cubin(prog).map_err(|e| Error::Backend(format!("NVRTC compiled the kernels but returned no CUBIN: {e:?}"))),
            Err(e) => {
                let log = nvrtc::result::get_program_log(prog).map(|log| CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned()).unwrap_or_default();
                Err(Error::Backend(format!("NVRTC could not compile the kernels ({e:?}, options {options:?}):\n{log}")))
            }
        };
        let _ = nvrtc::result::destroy_program(prog);
        out
    }
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `prog` must be a live program that compiled successfully.
unsafe fn cubin(prog: nvrtc::sys::nvrtcProgram) -> std::result::Result<Vec<u8>, nvrtc::result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: the caller guarantees `prog`; the buffer is as long as NVRTC says.
    unsafe {
        nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
        let mut bytes = vec![0u8; size];
        nvrtc::sys::nvrtcGetCUBIN(prog, bytes.as_mut_ptr().cast::<c_char>()).result()?;
        Ok(bytes)
    }
}

/// The version of the NVRTC library that was loaded, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both pointers are to live integers.
    let status = probe("NVRTC (libnvrtc)", || unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) })?;
    status.result().map_err(|e| Error::Backend(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// Runs `f`, the first call into one of cudarc's dynamically loaded libraries, turning cudarc's
/// panic on a missing library into an error that names `what`. The panic message is not printed:
/// the error carries it.
fn probe<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(PoisonError::into_inner);
    // Silence the panic hook for this thread only; other threads' panics still print.
    let this = std::thread::current().id();
    let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> = Arc::from(std::panic::take_hook());
    let forward = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != this {
            forward(info)
        }
    }));
    let out = catch_unwind(AssertUnwindSafe(f));
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    out.map_err(|panic| {
        let msg = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("no message");
        // cudarc's message goes on to list every file name it tried; the first clause says it.
        let msg = msg.split(" - searched").next().unwrap_or(msg);
        Error::Backend(format!("cannot load {what}: {msg}; is it installed, and its folder on LD_LIBRARY_PATH?"))
    })
}

fn driver_error(what: &str, e: result::DriverError) -> Error {
    Error::Backend(format!("CUDA: {what} failed: {e:?}"))
}

/// An NVIDIA GPU. Cheap to clone: clones share the device, its stream and its kernels.
#[derive(Clone)]
pub struct Cuda {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    /// Device memory the losses reduce into before the host reads the result.
    reduce: Mutex<CudaBuf<u8>>,
    /// The partial sums of GEMMs split along k.
    split: Mutex<CudaBuf<f32>>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cuda").field(&self.inner.name).finish()
    }
}

impl Cuda {
    /// The GPU `ordinal` (0 for the first), with the kernels compiled for it. An error, never a
    /// panic, when the driver or NVRTC cannot be loaded, there is no such GPU, or the kernels do
    /// not compile or load.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = probe("the CUDA driver (libcuda)", || {
            result::init()?;
            CudaContext::device_count()
        })?
        .map_err(|e| Error::Backend(format!("no usable CUDA device: the driver reports {e:?}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Backend(format!("cuda:{ordinal}: no such device, the driver sees {count} GPU(s)")));
        }
        // Still behind `probe`: a driver older than the bindings lacks symbols, which cudarc
        // reports by panicking too.
        let ctx = probe("the CUDA driver (libcuda)", || CudaContext::new(ordinal))?.map_err(|e| driver_error(&format!("opening cuda:{ordinal}"), e))?;
        // SAFETY: every buffer of this backend is allocated, used and freed on the one stream
        // below, so work is ordered by the stream and cudarc's per-buffer events are not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver_error("creating a stream", e))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| driver_error("reading the compute capability", e))?;
        let gpu = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let cubin = compile_kernels(&format!("sm_{major}{minor}"))?;
        let module = ctx.load_module(Ptx::from_binary(cubin)).map_err(|e| driver_error("loading the compiled kernels", e))?;
        let kernels = Kernels::load(&module)?;
        let (reduce, split) = (Mutex::new(CudaBuf::new(&stream, 0)?), Mutex::new(CudaBuf::new(&stream, 0)?));
        Ok(Cuda { inner: Arc::new(Inner { name: format!("cuda:{ordinal} ({gpu})"), ctx, stream, kernels, reduce, split }) })
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Binds the device's context to this thread and returns the stream all its work runs on, and
    /// the address of element `at` of `buf`: what NCCL's collectives take (`crate::distributed`).
    #[cfg(feature = "nccl")]
    pub(crate) fn raw_for_nccl<T>(&self, buf: &CudaBuf<T>, at: usize) -> Result<(cudarc::driver::sys::CUstream, u64)> {
        self.bind()?;
        Ok((self.stream().cu_stream(), buf.at(at)))
    }

    fn k(&self) -> &Kernels {
        &self.inner.kernels
    }

    fn bind(&self) -> Result<()> {
        self.inner.ctx.bind_to_thread().map_err(|e| driver_error("binding the context", e))
    }

    /// Copies `len` elements of device memory at `src` to `dst` and waits for the copy.
    fn read_back<T: Copy>(&self, src: u64, dst: &mut [T]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` points at at least `dst.len()` elements of device memory (the caller
        // cut it from a buffer with a bounds check); the stream is synchronised before `dst`
        // is used or freed.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream().cu_stream()) }.map_err(|e| driver_error("copying to the host", e))?;
        self.stream().synchronize().map_err(|e| driver_error("waiting for the device", e))
    }
}

/// Threads per block of every kernel; the reduction kernels rely on it (`REDUCE_THREADS`).
const THREADS: u32 = 256;

/// One thread per element, with a grid-stride loop past this many blocks.
fn elementwise(len: usize) -> LaunchConfig {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 8192) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One block per channel.
fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// Launches kernel `$name` of `$dev` with `$cfg`, each argument passed by value as the kernel's
/// parameter in the same position.
macro_rules! launch {
    ($dev:expr, $name:ident, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let dev: &Cuda = $dev;
        let cfg: LaunchConfig = $cfg;
        let mut builder = dev.stream().launch_builder(&dev.k().$name);
        // Each argument lives in a local until the launch, which reads it through a pointer.
        $(
            let arg = $arg;
            builder.arg(&arg);
        )+
        // SAFETY: the arguments match the kernel's parameters in number, order and type (see its
        // signature in the `.cu` source); every pointer is a view cut from a live buffer and
        // checked to hold what the kernel touches, or null where the kernel tests for null.
        unsafe { builder.launch(cfg) }.map(|_| ()).map_err(|e| driver_error(concat!("launching ", stringify!($name)), e))
    }};
}

/// Device memory for `len` elements of `T`, zero-filled when allocated.
pub struct CudaBuf<T> {
    /// Owns the memory (freed, in stream order, on drop); None for an empty buffer, as the
    /// driver refuses zero-byte allocations.
    _mem: Option<CudaSlice<u8>>,
    ptr: u64,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T> CudaBuf<T> {
    fn new(stream: &Arc<CudaStream>, len: usize) -> Result<Self> {
        if len == 0 {
            return Ok(CudaBuf { _mem: None, ptr: 0, len, _elem: PhantomData });
        }
        let bytes = len.checked_mul(size_of::<T>()).ok_or_else(|| Error::Backend(format!("a buffer of {len} elements is too large")))?;
        let mem = stream.alloc_zeros::<u8>(bytes).map_err(|e| driver_error(&format!("allocating {bytes} bytes"), e))?;
        let (ptr, _) = mem.device_ptr(stream);
        Ok(CudaBuf { _mem: Some(mem), ptr, len, _elem: PhantomData })
    }

    /// The address of element `at`.
    fn at(&self, at: usize) -> u64 {
        self.ptr + (at * size_of::<T>()) as u64
    }
}

/// A read-only view of device memory: `len` elements at `ptr`, borrowed from a buffer.
#[derive(Debug)]
pub struct CudaSrc<'a, T> {
    ptr: u64,
    len: usize,
    _buf: PhantomData<&'a T>,
}

impl<T> Clone for CudaSrc<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for CudaSrc<'_, T> {}

/// A writable view of device memory: `len` elements at `ptr`, borrowed mutably from a buffer.
#[derive(Debug)]
pub struct CudaDst<'a, T> {
    ptr: u64,
    len: usize,
    _buf: PhantomData<&'a mut T>,
}

/// A device pointer as a kernel argument (a `float*` is 8 bytes, as is `u64`).
type Ptr = u64;

/// The pointer of an optional view, null when absent.
fn ptr_of_src<T>(v: Option<CudaSrc<'_, T>>) -> Ptr {
    v.map_or(0, |v| v.ptr)
}

fn ptr_of_dst<T>(v: &Option<CudaDst<'_, T>>) -> Ptr {
    v.as_ref().map_or(0, |v| v.ptr)
}

fn view<T>(buf: &CudaBuf<T>, range: &Range<usize>) -> (u64, usize) {
    assert!(range.start <= range.end && range.end <= buf.len, "view {range:?} out of a buffer of {}", buf.len);
    (buf.at(range.start), range.len())
}

fn disjoint(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start
}

/// Panics, as a slice index would on the CPU, when a view is shorter than a kernel needs.
#[track_caller]
fn need(len: usize, want: usize, what: &str) {
    assert!(len >= want, "{what}: a view of {len} elements, the kernel needs {want}");
}

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

/// `Gemm` in ops/gemm/cuda.cu: C_z[m, n] (+)= Σ over the `group` batches of z of A_b·B_b, strides
/// in elements. The default is one GEMM per batch, written.
#[repr(C)]
#[derive(Clone, Copy)]
struct GemmShape {
    m: u32,
    n: u32,
    k: u32,
    batches: u32,
    a_m: i64,
    a_k: i64,
    a_b: i64,
    b_k: i64,
    b_n: i64,
    b_b: i64,
    c_m: i64,
    c_n: i64,
    c_b: i64,
    group: u32,
    /// 0 for the whole k range (`Cuda::gemm` fills it in).
    k_chunk: u32,
    accumulate: i32,
    bias_rows: i32,
    relu: i32,
}

impl Default for GemmShape {
    fn default() -> Self {
        GemmShape { m: 0, n: 0, k: 0, batches: 1, a_m: 0, a_k: 0, a_b: 0, b_k: 0, b_n: 0, b_b: 0, c_m: 0, c_n: 0, c_b: 0, group: 1, k_chunk: 0, accumulate: 0, bias_rows: 0, relu: 0 }
    }
}

// SAFETY: plain `repr(C)` integers, the layout of `struct Gemm` in the kernel source (no padding:
// four u32, nine i64, five 4-byte fields, and the same tail padding to a multiple of 8).
unsafe impl DeviceRepr for GemmShape {}

/// Tile sizes of `gemm_f32`.
const GEMM_TILE: u32 = 64;

/// Blocks that keep the GPU busy (an H100 has 132 SMs).
const BUSY_BLOCKS: usize = 512;

/// Into how many partial sums the filter gradient of `op` splits a batch of `n` images, and how
/// many images each sums. Its output (c_out × K) is a handful of tiles and its reduction
/// (n·h_out·w_out) long, so one sum per tile would leave the GPU idle.
fn filter_split(op: &Conv2d, n: usize) -> (usize, usize) {
    let tiles = op.c_out.div_ceil(GEMM_TILE as usize) * op.patch_len().div_ceil(GEMM_TILE as usize);
    let group = n.div_ceil((BUSY_BLOCKS / tiles).clamp(1, n.max(1)));
    (n.div_ceil(group.max(1)), group.max(1))
}

impl Cuda {
    /// c = a·b (+ bias, ReLU) as `g` describes; `bias` null for none.
    ///
    /// A GEMM of few output tiles and a long k (a linear layer on a small batch) would run on a
    /// few SMs of the GPU: its k range is then split so that enough blocks run, each split's sum
    /// goes to the backend's workspace, and a second kernel adds the splits in order.
    fn gemm(&self, c: Ptr, a: Ptr, b: Ptr, bias: Ptr, mut g: GemmShape) -> Result<()> {
        if g.m == 0 || g.n == 0 || g.batches == 0 {
            return Ok(());
        }
        let groups = g.batches.div_ceil(g.group);
        let blocks = (g.n.div_ceil(GEMM_TILE) * g.m.div_ceil(GEMM_TILE) * groups) as usize;
        // Splits of at least 128 of k (8 steps of the kernel's loop), so each is worth a block.
        let splits = (BUSY_BLOCKS / blocks).min(g.k as usize / 128).max(1);
        let k_chunk = (g.k as usize).div_ceil(splits).next_multiple_of(16) as u32;
        let splits = g.k.div_ceil(k_chunk).max(1);
        g.k_chunk = k_chunk.max(1);
        let z = groups * splits;
        assert!(z <= 65_535, "a GEMM over {z} groups of batches exceeds the grid");
        let cfg = LaunchConfig { grid_dim: (g.n.div_ceil(GEMM_TILE), g.m.div_ceil(GEMM_TILE), z), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        if splits == 1 {
            return launch!(self, gemm_f32, cfg, c, a, b, bias, g);
        }
        let len = groups as usize * g.m as usize * g.n as usize;
        let mut ws = self.inner.split.lock().unwrap_or_else(PoisonError::into_inner);
        if ws.len < splits as usize * len {
            *ws = CudaBuf::new(self.stream(), (splits as usize * len).next_power_of_two())?;
        }
        // The splits write plain sums, (split, z, m, n) in the workspace; the epilogue is the sum's.
        let parts = GemmShape { c_m: g.n as i64, c_n: 1, c_b: (g.m * g.n) as i64, accumulate: 0, bias_rows: 0, relu: 0, ..g };
        launch!(self, gemm_f32, cfg, ws.ptr, a, b, 0 as Ptr, parts)?;
        // The workspace is reused by the next split GEMM only after this kernel in stream order,
        // whichever thread enqueues it: the lock is held until both are enqueued.
        launch!(self, gemm_sum_splits_f32, elementwise(len), c, ws.ptr, bias, g, splits)
    }

    /// db (c) += Σ dy over (outer, ·, inner).
    fn bias_grad(&self, db: Ptr, dy: Ptr, outer: usize, c: usize, inner: usize) -> Result<()> {
        if c == 0 {
            return Ok(());
        }
        launch!(self, bias_grad_f32, per_channel(c), db, dy, outer as u32, c as u32, inner as u32)
    }

    /// Runs `f` with the loss reduction buffer grown to at least `bytes`.
    fn with_reduce<T>(&self, bytes: usize, f: impl FnOnce(&CudaBuf<u8>) -> Result<T>) -> Result<T> {
        let mut buf = self.inner.reduce.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len < bytes {
            *buf = CudaBuf::new(self.stream(), bytes.next_power_of_two())?;
        }
        f(&buf)
    }
}

impl Backend for Cuda {
    type Buf<T: Elem> = CudaBuf<T>;
    type Src<'a, T: Elem> = CudaSrc<'a, T>;
    type Dst<'a, T: Elem> = CudaDst<'a, T>;

    fn name(&self) -> String {
        self.inner.name.clone()
    }

    // ---- memory ----

    fn alloc<T: Elem>(&self, len: usize) -> Result<CudaBuf<T>> {
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
        if src.len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both views are `len` floats inside live buffers and do not overlap (a source
        // and a destination view cannot be cut from one buffer's overlapping ranges).
        unsafe { result::memcpy_dtod_async(dst.ptr, src.ptr, src.len * 4, self.stream().cu_stream()) }.map_err(|e| driver_error("copying on the device", e))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream().synchronize().map_err(|e| driver_error("waiting for the device", e))
    }

    fn scratch_len(&self, op: &Op, n: usize) -> usize {
        match op {
            // The masked dY of a fused ReLU, the (n, K, p) im2col matrix (or its gradient), then
            // the partial sums of the filter gradient.
            Op::Conv2d(op) => {
                let (parts, _) = filter_split(op, n);
                n * (op.y_len() + op.patch_len() * op.out_pixels()) + if parts > 1 { parts * op.weight_len() } else { 0 }
            }
            _ => 0,
        }
    }

    // ---- layers ----

    fn conv2d_forward(&self, op: &Conv2d, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, y: CudaDst<'_, f32>, scratch: CudaDst<'_, f32>, relu: bool) -> Result<()> {
        let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
        need(x.len, n * op.x_len(), "conv2d x");
        need(wb.len, op.param_len(), "conv2d wb");
        need(y.len, n * op.y_len(), "conv2d y");
        let col = if op.is_pointwise() {
            x.ptr
        } else {
            need(scratch.len, n * k * p, "conv2d scratch");
            launch!(self, im2col_f32, elementwise(n * k * p), scratch.ptr, x.ptr, n as u32, ConvGeometry::of(op))?;
            scratch.ptr
        };
        let bias = if op.bias { wb.ptr + 4 * op.weight_len() as u64 } else { 0 };
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
        self.gemm(y.ptr, wb.ptr, col, bias, g)
    }

    fn conv2d_backward(
        &self,
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
        let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
        need(x.len, n * op.x_len(), "conv2d x");
        need(wb.len, op.param_len(), "conv2d wb");
        need(dy.len, n * op.y_len(), "conv2d dy");
        need(scratch.len, self.scratch_len(&Op::Conv2d(*op), n), "conv2d scratch");
        let geometry = ConvGeometry::of(op);
        let ylen = n * op.y_len();
        let dy = match relu_y {
            Some(relu_y) => {
                need(relu_y.len, ylen, "conv2d relu_y");
                launch!(self, conv2d_relu_mask_f32, elementwise(ylen), scratch.ptr, dy.ptr, relu_y.ptr, ylen as u64)?;
                scratch.ptr
            }
            None => dy.ptr,
        };
        let col = scratch.ptr + 4 * ylen as u64;
        if let Some(dwb) = dwb {
            need(dwb.len, op.param_len(), "conv2d dwb");
            let x_col = if op.is_pointwise() {
                x.ptr
            } else {
                launch!(self, im2col_f32, elementwise(n * k * p), col, x.ptr, n as u32, geometry)?;
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
                self.gemm(dwb.ptr, dy, x_col, 0, g)?;
            } else {
                self.gemm(partial, dy, x_col, 0, g)?;
                let len = op.weight_len();
                launch!(self, sum_parts_f32, elementwise(len), dwb.ptr, partial, len as u64, parts as u32)?;
            }
            if op.bias {
                self.bias_grad(dwb.ptr + 4 * op.weight_len() as u64, dy, n, co, p)?;
            }
        }
        if let Some(dx) = dx {
            need(dx.len, n * op.x_len(), "conv2d dx");
            // dcol_b[K, p] = W[co, K]ᵀ·dY_b[co, p]; for a pointwise convolution that is dX itself.
            let target = if op.is_pointwise() { dx.ptr } else { col };
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
            self.gemm(target, wb.ptr, dy, 0, g)?;
            if !op.is_pointwise() {
                launch!(self, col2im_f32, elementwise(n * op.x_len()), dx.ptr, col, n as u32, geometry)?;
            }
        }
        Ok(())
    }

    fn linear_forward(&self, op: &Linear, n: usize, x: CudaSrc<'_, f32>, wb: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        let (fi, fo) = (op.in_features, op.out_features);
        need(x.len, n * fi, "linear x");
        need(wb.len, op.param_len(), "linear wb");
        need(y.len, n * fo, "linear y");
        let bias = if op.bias { wb.ptr + 4 * op.weight_len() as u64 } else { 0 };
        // Y[n, out] = X[n, in]·Wᵀ + b.
        let g = GemmShape { m: n as u32, n: fo as u32, k: fi as u32, batches: 1, a_m: fi as i64, a_k: 1, b_k: 1, b_n: fi as i64, c_m: fo as i64, c_n: 1, ..GemmShape::default() };
        self.gemm(y.ptr, x.ptr, wb.ptr, bias, g)
    }

    fn linear_backward(
        &self,
        op: &Linear,
        n: usize,
        x: CudaSrc<'_, f32>,
        wb: CudaSrc<'_, f32>,
        dy: CudaSrc<'_, f32>,
        dx: Option<CudaDst<'_, f32>>,
        dwb: Option<CudaDst<'_, f32>>,
    ) -> Result<()> {
        let (fi, fo) = (op.in_features, op.out_features);
        need(x.len, n * fi, "linear x");
        need(wb.len, op.weight_len(), "linear wb");
        need(dy.len, n * fo, "linear dy");
        if let Some(dx) = dx {
            need(dx.len, n * fi, "linear dx");
            // dX[n, in] = dY[n, out]·W[out, in].
            let g = GemmShape { m: n as u32, n: fi as u32, k: fo as u32, batches: 1, a_m: fo as i64, a_k: 1, b_k: fi as i64, b_n: 1, c_m: fi as i64, c_n: 1, ..GemmShape::default() };
            self.gemm(dx.ptr, dy.ptr, wb.ptr, 0, g)?;
        }
        if let Some(dwb) = dwb {
            need(dwb.len, op.param_len(), "linear dwb");
            // dW[out, in] += dYᵀ·X, db += Σ_n dY.
            let g = GemmShape {
                m: fo as u32,
                n: fi as u32,
                k: n as u32,
                batches: 1,
                a_m: 1,
                a_k: fo as i64,
                b_k: fi as i64,
                b_n: 1,
                c_m: fi as i64,
                c_n: 1,
                accumulate: 1,
                ..GemmShape::default()
            };
            self.gemm(dwb.ptr, dy.ptr, x.ptr, 0, g)?;
            if op.bias {
                self.bias_grad(dwb.ptr + 4 * op.weight_len() as u64, dy.ptr, n, fo, 1)?;
            }
        }
        Ok(())
    }

    fn max_pool2d_forward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        need(x.len, n * op.x_len(), "max_pool2d x");
        need(y.len, n * op.y_len(), "max_pool2d y");
        launch!(self, max_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, PoolGeometry::of(op))
    }

    fn max_pool2d_backward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        need(x.len, n * op.x_len(), "max_pool2d x");
        need(y.len.min(dy.len), n * op.y_len(), "max_pool2d y, dy");
        need(dx.len, n * op.x_len(), "max_pool2d dx");
        launch!(self, max_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, x.ptr, y.ptr, dy.ptr, (n * op.c) as u64, PoolGeometry::of(op))
    }

    fn avg_pool2d_forward(&self, op: &Pool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        need(x.len, n * op.x_len(), "avg_pool2d x");
        need(y.len, n * op.y_len(), "avg_pool2d y");
        launch!(self, avg_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, PoolGeometry::of(op))
    }

    fn avg_pool2d_backward(&self, op: &Pool2d, n: usize, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        need(dy.len, n * op.y_len(), "avg_pool2d dy");
        need(dx.len, n * op.x_len(), "avg_pool2d dx");
        launch!(self, avg_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, dy.ptr, (n * op.c) as u64, PoolGeometry::of(op))
    }

    fn adaptive_avg_pool2d_forward(&self, op: &AdaptiveAvgPool2d, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        need(x.len, n * op.x_len(), "adaptive_avg_pool2d x");
        need(y.len, n * op.y_len(), "adaptive_avg_pool2d y");
        let u = |v: usize| v as u32;
        launch!(self, adaptive_avg_pool2d_fwd_f32, elementwise(n * op.y_len()), y.ptr, x.ptr, (n * op.c) as u64, u(op.h_in), u(op.w_in), u(op.h_out), u(op.w_out))
    }

    fn adaptive_avg_pool2d_backward(&self, op: &AdaptiveAvgPool2d, n: usize, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        need(dy.len, n * op.y_len(), "adaptive_avg_pool2d dy");
        need(dx.len, n * op.x_len(), "adaptive_avg_pool2d dx");
        let u = |v: usize| v as u32;
        launch!(self, adaptive_avg_pool2d_bwd_f32, elementwise(n * op.x_len()), dx.ptr, dy.ptr, (n * op.c) as u64, u(op.h_in), u(op.w_in), u(op.h_out), u(op.w_out))
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
        let (c, s) = (op.c as u32, op.spatial as u32);
        need(x.len, n * op.x_len(), "batch_norm x");
        need(y.len, n * op.x_len(), "batch_norm y");
        need(saved.len, op.saved_len(), "batch_norm saved");
        let running = ptr_of_dst(&running);
        launch!(self, batch_norm_stats_f32, per_channel(op.c), saved.ptr, running, x.ptr, n as u32, c, s, op.eps, factor)?;
        launch!(self, batch_norm_fwd_f32, elementwise(n * op.x_len()), y.ptr, x.ptr, ptr_of_src(wb), saved.ptr, n as u32, c, s)
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
        let (c, s) = (op.c as u32, op.spatial as u32);
        need(x.len, n * op.x_len(), "batch_norm x");
        need(y.len, n * op.x_len(), "batch_norm y");
        need(running.len, 2 * op.c, "batch_norm running");
        need(saved.len, op.saved_len(), "batch_norm saved");
        launch!(self, batch_norm_eval_stats_f32, elementwise(op.c), saved.ptr, running.ptr, c, op.eps)?;
        launch!(self, batch_norm_fwd_f32, elementwise(n * op.x_len()), y.ptr, x.ptr, ptr_of_src(wb), saved.ptr, n as u32, c, s)
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
        let (c, s) = (op.c as u32, op.spatial as u32);
        need(x.len.min(dy.len), n * op.x_len(), "batch_norm x, dy");
        need(saved.len, op.saved_len(), "batch_norm saved");
        launch!(self, batch_norm_bwd_sums_f32, per_channel(op.c), saved.ptr, ptr_of_dst(&dwb), x.ptr, dy.ptr, n as u32, c, s)?;
        if let Some(dx) = dx {
            need(dx.len, n * op.x_len(), "batch_norm dx");
            launch!(self, batch_norm_bwd_f32, elementwise(n * op.x_len()), dx.ptr, x.ptr, ptr_of_src(wb), saved.ptr, dy.ptr, n as u32, c, s, batch_stats as i32)?;
        }
        Ok(())
    }

    fn dropout_forward(&self, op: &Dropout, n: usize, key: u64, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        let len = n * op.len;
        need(x.len.min(y.len), len, "dropout x, y");
        // The same f32 threshold `Dropout::keep` compares with.
        let threshold = op.p * (1u32 << 24) as f32;
        launch!(self, dropout_fwd_f32, elementwise(len), y.ptr, x.ptr, len as u64, key, threshold, op.scale())
    }

    fn dropout_backward(&self, op: &Dropout, n: usize, key: u64, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        let len = n * op.len;
        need(dy.len.min(dx.len), len, "dropout dy, dx");
        let threshold = op.p * (1u32 << 24) as f32;
        launch!(self, dropout_bwd_f32, elementwise(len), dx.ptr, dy.ptr, len as u64, key, threshold, op.scale())
    }

    fn activation_forward(&self, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        need(x.len.min(y.len), len, "activation x, y");
        let (kind, slope) = activation_kind(act);
        launch!(self, activation_fwd_f32, elementwise(len), y.ptr, x.ptr, len as u64, kind, slope)
    }

    fn activation_backward(&self, act: Activation, len: usize, x: CudaSrc<'_, f32>, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        need(x.len.min(y.len).min(dy.len).min(dx.len), len, "activation x, y, dy, dx");
        let (kind, slope) = activation_kind(act);
        launch!(self, activation_bwd_f32, elementwise(len), dx.ptr, x.ptr, y.ptr, dy.ptr, len as u64, kind, slope)
    }

    fn softmax_forward(&self, op: &Softmax, n: usize, x: CudaSrc<'_, f32>, y: CudaDst<'_, f32>) -> Result<()> {
        need(x.len.min(y.len), n * op.x_len(), "softmax x, y");
        let rows = n * op.inner;
        launch!(self, softmax_fwd_f32, elementwise(rows), y.ptr, x.ptr, rows as u64, op.c as u32, op.inner as u32, op.log as i32)
    }

    fn softmax_backward(&self, op: &Softmax, n: usize, y: CudaSrc<'_, f32>, dy: CudaSrc<'_, f32>, dx: CudaDst<'_, f32>) -> Result<()> {
        need(y.len.min(dy.len).min(dx.len), n * op.x_len(), "softmax y, dy, dx");
        let rows = n * op.inner;
        launch!(self, softmax_bwd_f32, elementwise(rows), dx.ptr, y.ptr, dy.ptr, rows as u64, op.c as u32, op.inner as u32, op.log as i32)
    }

    fn add(&self, len: usize, a: CudaSrc<'_, f32>, b: CudaSrc<'_, f32>, y: CudaDst<'_, f32>, relu: bool) -> Result<()> {
        need(a.len.min(b.len).min(y.len), len, "add a, b, y");
        launch!(self, add_f32, elementwise(len), y.ptr, a.ptr, b.ptr, len as u64, relu as i32)
    }

    fn add_assign(&self, len: usize, y: CudaDst<'_, f32>, x: CudaSrc<'_, f32>) -> Result<()> {
        need(x.len.min(y.len), len, "add_assign x, y");
        launch!(self, add_assign_f32, elementwise(len), y.ptr, x.ptr, len as u64)
    }

    // ---- losses ----

    fn cross_entropy(&self, op: &CrossEntropy, n: usize, logits: CudaSrc<'_, f32>, labels: CudaSrc<'_, u32>, dlogits: Option<CudaDst<'_, f32>>) -> Result<LossOutput> {
        let c = op.classes;
        need(logits.len, n * c, "cross_entropy logits");
        need(labels.len, n, "cross_entropy labels");
        if let Some(d) = &dlogits {
            need(d.len, n * c, "cross_entropy dlogits");
        }
        // Per row, its loss (f64) then whether it was right (u32): read back in one copy.
        let mut rows = vec![0u8; n * 12];
        self.with_reduce(rows.len(), |buf| {
            let (row_loss, row_correct) = (buf.ptr, buf.ptr + 8 * n as u64);
            let eps = op.label_smoothing as f64;
            launch!(self, cross_entropy_fwd_bwd_f32, elementwise(n), ptr_of_dst(&dlogits), row_loss, row_correct, logits.ptr, labels.ptr, n as u32, c as u32, eps)?;
            self.read_back(buf.ptr, &mut rows)
        })?;
        let (loss, correct) = rows.split_at(n * 8);
        let sum: f64 = loss.chunks_exact(8).map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes"))).sum();
        let correct = correct.chunks_exact(4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")) as usize).sum();
        Ok(LossOutput { loss: (sum / n as f64) as f32, correct })
    }

    fn mse(&self, len: usize, y: CudaSrc<'_, f32>, target: CudaSrc<'_, f32>, dy: Option<CudaDst<'_, f32>>) -> Result<f32> {
        need(y.len.min(target.len), len, "mse y, target");
        if let Some(d) = &dy {
            need(d.len, len, "mse dy");
        }
        let cfg = elementwise(len);
        let mut partial = vec![0.0f64; cfg.grid_dim.0 as usize];
        self.with_reduce(partial.len() * 8, |buf| {
            launch!(self, mse_fwd_bwd_f32, cfg, ptr_of_dst(&dy), buf.ptr, y.ptr, target.ptr, len as u64, 2.0 / len as f32)?;
            self.read_back(buf.ptr, &mut partial)
        })?;
        Ok((partial.iter().sum::<f64>() / len as f64) as f32)
    }

    // ---- optimizers ----

    fn sgd_step(&self, op: &SgdStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, momentum: CudaDst<'_, f32>) -> Result<()> {
        let len = p.len;
        need(g.len, len, "sgd g");
        if op.momentum != 0.0 {
            need(momentum.len, len, "sgd momentum");
        }
        if len == 0 {
            return Ok(());
        }
        let o = *op;
        launch!(self, sgd_step_f32, elementwise(len), p.ptr, momentum.ptr, g.ptr, len as u64, o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov as i32, o.first as i32)
    }

    fn adam_step(&self, op: &AdamStep, p: CudaDst<'_, f32>, g: CudaSrc<'_, f32>, m: CudaDst<'_, f32>, v: CudaDst<'_, f32>, vmax: Option<CudaDst<'_, f32>>) -> Result<()> {
        let len = p.len;
        need(g.len.min(m.len).min(v.len), len, "adam g, m, v");
        if let Some(vmax) = &vmax {
            need(vmax.len, len, "adam vmax");
        }
        if len == 0 {
            return Ok(());
        }
        // The bias corrections as the CPU computes them.
        let o = *op;
        let crate::ops::adam::AdamScalars { step_size, bc2_sqrt, decay } = o.scalars();
        launch!(
            self,
            adam_step_f32,
            elementwise(len),
            p.ptr,
            m.ptr,
            v.ptr,
            ptr_of_dst(&vmax),
            g.ptr,
            len as u64,
            o.beta1,
            o.beta2,
            o.eps,
            o.weight_decay,
            o.decoupled as i32,
            step_size,
            bc2_sqrt,
            decay
        )
    }
}

/// The `kind` and slope `activation_*_f32` take for an activation.
fn activation_kind(act: Activation) -> (i32, f32) {
    match act {
        Activation::ReLU => (0, 0.0),
        Activation::LeakyReLU(slope) => (1, slope),
        Activation::Sigmoid => (2, 0.0),
        Activation::Tanh => (3, 0.0),
    }
}
