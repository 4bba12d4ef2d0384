//! The GPU as a device (feature `cuda`): its context and stream, device memory and views into
//! it, NVRTC compilation of kernel sources and the launching of kernels. It knows no op: each
//! op's launchers (`ops/<op>/cuda.rs`) use it, and `backend/cuda.rs` implements `Backend` for
//! [`Cuda`] by calling them. Buffers are device memory, views are device pointers, and kernels are
//! the `ops/<op>/cuda.cu` sources, compiled at run time by NVRTC, once per device.
//!
//! cudarc loads `libcuda` and `libnvrtc` when they are first used, so the crate builds and its
//! CPU tests pass on machines with neither. cudarc *panics* when a library is missing; [`Cuda::new`](crate::backend::Cuda::new)
//! catches that and returns an [`Error::Backend`] saying what is missing instead.
//!
//! Everything runs in order on one stream of the device; only the copies between host and device
//! (whose host memory may be freed once they return), the losses (which return a number) and
//! [`Backend::synchronize`](crate::backend::Backend::synchronize) wait for it. Values that change
//! from step to step (a learning rate, a dropout key) reach kernels through device memory
//! (`Cuda::step_scalars`), so that a train step captured as a CUDA graph (`crate::graph`) stays
//! valid when replayed. Kernels are compiled for
//! the device's own architecture into a CUBIN, not PTX: a CUBIN from a newer NVRTC loads on an
//! older driver of the same major version, where PTX would be refused.
//!
//! GEMMs (linear layers, and convolutions as im2col + GEMM) are our own kernel in plain f32
//! FMAs: no TF32, so results agree with the CPU backend and the PyTorch fixtures.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cudarc::driver::{CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, LaunchConfig, result, sys};
use cudarc::nvrtc::{self, Ptx};

use super::Precision;
use crate::{Error, Result};

/// One kernel source of the program NVRTC compiles: its path under `runtime/src` (how compiler
/// messages name it), its text, and the kernels of it that launchers use (each is loaded by name
/// when a device opens; the NVRTC test checks the compiled program defines them all).
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// e.g. `"ops/conv2d/cuda.cu"`.
    pub path: &'static str,
    /// The CUDA C++ source.
    pub text: &'static str,
    /// The `extern "C"` kernels launched from Rust.
    pub kernels: &'static [&'static str],
}

/// What every kernel source shares (this folder's `cuda.cu`): compiled first.
pub const PRELUDE: Source = Source { path: "device/cuda.cu", text: include_str!("cuda.cu"), kernels: &["fill_f32"] };

/// The whole program NVRTC compiles: every source, each after a `#line` directive naming it.
pub fn program_source(sources: &[Source]) -> String {
    sources.iter().map(|s| format!("#line 1 \"{}\"\n{}\n", s.path, s.text)).collect()
}

/// Compiles `sources` as one program for `arch` (`"sm_90"`, the real architecture of an H100) into
/// a CUBIN. Needs only NVRTC, no GPU. A compile error carries NVRTC's log.
pub fn compile(sources: &[Source], arch: &str) -> Result<Vec<u8>> {
    let source = CString::new(program_source(sources)).expect("kernel sources hold no NUL");
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

pub(crate) fn driver_error(what: &str, e: result::DriverError) -> Error {
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
    /// Every kernel of the program, by name.
    kernels: HashMap<&'static str, CudaFunction>,
    /// Device memory the losses reduce into before the host reads the result.
    reduce: Mutex<CudaBuf<u8>>,
    /// The partial sums of GEMMs split along k.
    split: Mutex<CudaBuf<f32>>,
    /// How work is issued now (an [`Issue`] as its discriminant).
    issue: AtomicU8,
    /// Kernels and graphs launched on the device since it was opened.
    launches: AtomicU64,
    /// The per-step scalars and the loss totals of captured train steps.
    step: Mutex<StepScalars>,
    /// Per kernel: launches and seconds, while profiling (see [`Cuda::set_profiling`]).
    profile: Mutex<Option<HashMap<&'static str, (u64, f64)>>>,
    /// cuDNN and cuBLAS, and what the launchers chose per shape between them and our kernels.
    vendor: Mutex<Vendor>,
    /// The [`Precision`] of convolutions and linear layers, as its discriminant.
    precision: AtomicU8,
    /// Whether the GPU has bf16 tensor cores (sm_80 and newer).
    tensor_cores: bool,
}

/// The vendor libraries (cuDNN, cuBLAS) on this device's stream, and the choices made by timing.
struct Vendor {
    /// None until first asked; then the handle, or why there is none.
    cudnn: Option<std::result::Result<CudnnHandle, String>>,
    cublas: Option<std::result::Result<CublasHandle, String>>,
    /// Per key (an op's hash of its shape and pass): what timing chose, −1 for our kernels, else
    /// the library's algorithm number, and a line saying so.
    tuned: HashMap<u64, (i64, String)>,
    /// The library algorithms' workspace, grown by eager steps.
    workspace: CudaBuf<u8>,
}

/// A cuDNN handle. It is never destroyed: it lives as long as the device, whose context goes
/// first when the device drops, and a process opens a device once.
#[derive(Clone, Copy)]
struct CudnnHandle(cudarc::cudnn::sys::cudnnHandle_t);

// SAFETY: the handle is used only under the `vendor` mutex or on the device's one stream, in order.
unsafe impl Send for CudnnHandle {}

/// A cuBLAS handle and the workspace it was given (never destroyed, as [`CudnnHandle`]). With its
/// own workspace, cuBLAS allocates nothing while a step is captured into a graph.
struct CublasHandle {
    handle: cudarc::cublas::sys::cublasHandle_t,
    _workspace: CudaBuf<u8>,
}

// SAFETY: as `CudnnHandle`'s.
unsafe impl Send for CublasHandle {}

/// cuBLAS's workspace: what NVIDIA recommends for Hopper (32 MiB), more than enough before.
const CUBLAS_WORKSPACE: usize = 32 << 20;

/// How the stream's work is issued. A train step replayed from a CUDA graph (`crate::graph`)
/// is captured once, then each step only rewrites its per-step scalars on the host and
/// launches the graph: the host runs the same code with every launch skipped ([`Issue::Replay`]),
/// so that each launcher writes its scalars where the captured kernel reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Issue {
    /// Launched as they come.
    Eager = 0,
    /// Recorded into the graph being captured, not run.
    Capture = 1,
    /// Neither: the step's graph is launched afterwards.
    Replay = 2,
}

/// Bytes of per-step scalars one train step may hold (16 per launcher that takes them).
pub(crate) const STEP_SCALAR_BYTES: usize = 4096;
const SCALAR_ALIGN: usize = 16;

/// Per-step scalars (a learning rate, Adam's bias corrections, a dropout key, a batch norm's
/// averaging factor) that kernels read from device memory instead of taking by value, so that
/// a graph captured once stays right at every later step.
struct StepScalars {
    /// What the kernels read.
    device: CudaBuf<u8>,
    /// The next free byte of `device`; an eager step wraps around (each value is copied in
    /// stream order, after the kernels that read the last one there).
    cursor: usize,
    /// While capturing or replaying: the pinned host memory the graph's first node copies into
    /// `device` (`STEP_SCALAR_BYTES` long, owned by the graphed step, alive while it is set).
    host: Option<*mut u8>,
    /// Launches counted while capturing or replaying, to check a replay matches its capture.
    recorded: usize,
    /// The loss totals of captured steps (see [`LossTotals`]), summed on the device.
    totals: CudaBuf<u8>,
}

// SAFETY: `host` points to pinned memory only while the graphed step that owns it holds the
// device (it clears it before the memory is freed); every access is under the mutex.
unsafe impl Send for StepScalars {}

/// The running totals of the losses of captured steps, in device memory until read: the sum
/// of each step's mean loss, how many samples were right, samples and steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct LossTotals {
    /// Σ over steps of the step's mean loss.
    pub loss_sum: f64,
    /// Samples classified right.
    pub correct: u64,
    /// Samples seen.
    pub samples: u64,
    /// Steps counted.
    pub steps: u64,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cuda").field(&self.inner.name).finish()
    }
}

impl Cuda {
    /// The GPU `ordinal` (0 for the first), with `sources` compiled for it (`Cuda::new` in
    /// backend/cuda.rs passes every op's). An error, never a panic, when the driver or NVRTC
    /// cannot be loaded, there is no such GPU, or the kernels do not compile or load.
    pub(crate) fn open(ordinal: usize, sources: &[Source]) -> Result<Self> {
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
        let cubin = compile(sources, &format!("sm_{major}{minor}"))?;
        let module = ctx.load_module(Ptx::from_binary(cubin)).map_err(|e| driver_error("loading the compiled kernels", e))?;
        let mut kernels = HashMap::new();
        for &name in sources.iter().flat_map(|s| s.kernels) {
            let f = module.load_function(name).map_err(|e| driver_error(&format!("loading kernel {name}"), e))?;
            kernels.insert(name, f);
        }
        let (reduce, split) = (Mutex::new(CudaBuf::new(&stream, 0)?), Mutex::new(CudaBuf::new(&stream, 0)?));
        let step = StepScalars {
            device: CudaBuf::new(&stream, STEP_SCALAR_BYTES)?,
            cursor: 0,
            host: None,
            recorded: 0,
            totals: CudaBuf::new(&stream, size_of::<LossTotals>())?,
        };
        let (issue, launches, step) = (AtomicU8::new(Issue::Eager as u8), AtomicU64::new(0), Mutex::new(step));
        let profile = Mutex::new(None);
        let vendor = Mutex::new(Vendor { cudnn: None, cublas: None, tuned: HashMap::new(), workspace: CudaBuf::new(&stream, 0)? });
        let (precision, tensor_cores) = (AtomicU8::new(Precision::F32 as u8), major >= 8);
        let name = format!("cuda:{ordinal} ({gpu})");
        Ok(Cuda { inner: Arc::new(Inner { name, ctx, stream, kernels, reduce, split, issue, launches, step, profile, vendor, precision, tensor_cores }) })
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Binds the device's context to this thread and returns the stream all its work runs on, and
    /// the address of element `at` of `buf`: what NCCL's collectives take (`crate::distributed`).
    #[cfg(feature = "nccl")]
    pub(crate) fn raw_for_nccl<T>(&self, buf: &CudaBuf<T>, at: usize) -> Result<(cudarc::driver::sys::CUstream, u64)> {
        self.bind()?;
        Ok((self.stream().cu_stream(), buf.at(at)))
    }

    /// The kernel `name` of the program (one a [`Source`] lists).
    pub(crate) fn kernel(&self, name: &str) -> Result<&CudaFunction> {
        self.inner.kernels.get(name).ok_or_else(|| Error::Backend(format!("CUDA: no kernel {name} was loaded (not in any Source's list)")))
    }

    /// The device's name, as `Backend::name` gives it.
    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.inner.ctx.bind_to_thread().map_err(|e| driver_error("binding the context", e))
    }

    /// Copies `len` elements of device memory at `src` to `dst` and waits for the copy.
    pub(crate) fn read_back<T: Copy>(&self, src: u64, dst: &mut [T]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.eager("reading device memory back")?;
        self.bind()?;
        // SAFETY: `src` points at at least `dst.len()` elements of device memory (the caller
        // cut it from a buffer with a bounds check); the stream is synchronised before `dst`
        // is used or freed.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream().cu_stream()) }.map_err(|e| driver_error("copying to the host", e))?;
        self.stream().synchronize().map_err(|e| driver_error("waiting for the device", e))
    }
}

/// Threads per block of every kernel; the reduction kernels rely on it (`REDUCE_THREADS`).
pub(crate) const THREADS: u32 = 256;

/// One thread per element, with a grid-stride loop past this many blocks.
pub(crate) fn elementwise(len: usize) -> LaunchConfig {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 8192) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One block per channel.
pub(crate) fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// Launches kernel `$name` of `$dev` with `$cfg`, each argument passed by value as the kernel's
/// parameter in the same position. While a captured step is replayed the launch is skipped (the
/// graph holds it), but the arguments are still evaluated and the launch counted.
macro_rules! launch {
    ($dev:expr, $name:ident, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let dev: &$crate::device::cuda::Cuda = $dev;
        let cfg: cudarc::driver::LaunchConfig = $cfg;
        let mut builder = dev.stream().launch_builder(dev.kernel(stringify!($name))?);
        // Each argument lives in a local until the launch, which reads it through a pointer.
        $(
            let arg = $arg;
            cudarc::driver::PushKernelArg::arg(&mut builder, &arg);
        )+
        if dev.take_launch() {
            let profiled = dev.profile_start();
            // SAFETY: the arguments match the kernel's parameters in number, order and type (see
            // its signature in the `.cu` source); every pointer is a view cut from a live buffer
            // and checked to hold what the kernel touches, or null where the kernel tests for null.
            unsafe { builder.launch(cfg) }.map(|_| ()).map_err(|e| $crate::device::cuda::driver_error(concat!("launching ", stringify!($name)), e))?;
            dev.profile_end(stringify!($name), profiled)
        } else {
            Ok(())
        }
    }};
}
pub(crate) use launch;

/// Device memory for `len` elements of `T`, zero-filled when allocated.
pub struct CudaBuf<T> {
    /// Owns the memory (freed, in stream order, on drop); None for an empty buffer, as the
    /// driver refuses zero-byte allocations.
    _mem: Option<CudaSlice<u8>>,
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    _elem: PhantomData<T>,
}

impl<T> CudaBuf<T> {
    pub(crate) fn new(stream: &Arc<CudaStream>, len: usize) -> Result<Self> {
        if len == 0 {
            return Ok(CudaBuf { _mem: None, ptr: 0, len, _elem: PhantomData });
        }
        let bytes = len.checked_mul(size_of::<T>()).ok_or_else(|| Error::Backend(format!("a buffer of {len} elements is too large")))?;
        let mem = stream.alloc_zeros::<u8>(bytes).map_err(|e| driver_error(&format!("allocating {bytes} bytes"), e))?;
        let (ptr, _) = mem.device_ptr(stream);
        Ok(CudaBuf { _mem: Some(mem), ptr, len, _elem: PhantomData })
    }

    /// The address of element `at`.
    pub(crate) fn at(&self, at: usize) -> u64 {
        self.ptr + (at * size_of::<T>()) as u64
    }
}

/// A read-only view of device memory: `len` elements at `ptr`, borrowed from a buffer.
#[derive(Debug)]
pub struct CudaSrc<'a, T> {
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    pub(crate) _buf: PhantomData<&'a T>,
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
    pub(crate) ptr: u64,
    pub(crate) len: usize,
    pub(crate) _buf: PhantomData<&'a mut T>,
}

/// A device pointer as a kernel argument (a `float*` is 8 bytes, as is `u64`).
pub(crate) type Ptr = u64;

/// The pointer of an optional view, null when absent.
pub(crate) fn ptr_of_src<T>(v: Option<CudaSrc<'_, T>>) -> Ptr {
    v.map_or(0, |v| v.ptr)
}

pub(crate) fn ptr_of_dst<T>(v: &Option<CudaDst<'_, T>>) -> Ptr {
    v.as_ref().map_or(0, |v| v.ptr)
}

pub(crate) fn view<T>(buf: &CudaBuf<T>, range: &Range<usize>) -> (u64, usize) {
    assert!(range.start <= range.end && range.end <= buf.len, "view {range:?} out of a buffer of {}", buf.len);
    (buf.at(range.start), range.len())
}

pub(crate) fn disjoint(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.is_empty() || b.is_empty() || a.end <= b.start || b.end <= a.start
}

/// Panics, as a slice index would on the CPU, when a view is shorter than a kernel needs.
#[track_caller]
pub(crate) fn need(len: usize, want: usize, what: &str) {
    assert!(len >= want, "{what}: a view of {len} elements, the kernel needs {want}");
}


impl Cuda {
    /// Runs `f` with the loss reduction buffer grown to at least `bytes`.
    pub(crate) fn with_reduce<T>(&self, bytes: usize, f: impl FnOnce(&CudaBuf<u8>) -> Result<T>) -> Result<T> {
        let mut buf = self.inner.reduce.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len < bytes {
            self.eager("growing the loss workspace")?;
            *buf = CudaBuf::new(self.stream(), bytes.next_power_of_two())?;
        }
        f(&buf)
    }

    /// The workspace of the partial sums of GEMMs split along k, grown to at least `len` floats.
    /// Held until the guard drops: kernels that use it are enqueued meanwhile.
    pub(crate) fn split_workspace(&self, len: usize) -> Result<MutexGuard<'_, CudaBuf<f32>>> {
        let mut ws = self.inner.split.lock().unwrap_or_else(PoisonError::into_inner);
        if ws.len < len {
            self.eager("growing the GEMM workspace")?;
            *ws = CudaBuf::new(self.stream(), len.next_power_of_two())?;
        }
        Ok(ws)
    }
}

/// What a captured or replayed step issued: bytes of per-step scalars and launches. A replay
/// must issue what its capture did, or the graph would run another step than the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StepShape {
    pub scalar_bytes: usize,
    pub launches: usize,
}

impl Cuda {
    pub(crate) fn issue(&self) -> Issue {
        match self.inner.issue.load(Ordering::Relaxed) {
            0 => Issue::Eager,
            1 => Issue::Capture,
            _ => Issue::Replay,
        }
    }

    fn set_issue(&self, issue: Issue) {
        self.inner.issue.store(issue as u8, Ordering::Relaxed);
    }

    /// Counts a kernel launch (`launch!`, or a cuDNN call) and says whether to make it: not
    /// while a step is replayed, whose graph holds it.
    pub(crate) fn take_launch(&self) -> bool {
        match self.issue() {
            Issue::Eager => {
                self.inner.launches.fetch_add(1, Ordering::Relaxed);
                true
            }
            issue => {
                self.step().recorded += 1;
                issue == Issue::Capture
            }
        }
    }

    /// An error naming `what` unless work is issued as it comes: a captured step may neither
    /// wait for the device, read from it nor allocate (the graph would not hold it).
    pub(crate) fn eager(&self, what: &str) -> Result<()> {
        match self.issue() {
            Issue::Eager => Ok(()),
            _ => Err(Error::Backend(format!("CUDA: {what} inside a captured train step, which cannot wait for the device, read from it or allocate"))),
        }
    }

    /// Kernels and CUDA graphs launched on this device so far (all clones together); a train
    /// step replayed from its graph counts one.
    pub fn launches(&self) -> u64 {
        self.inner.launches.load(Ordering::Relaxed)
    }

    fn step(&self) -> MutexGuard<'_, StepScalars> {
        self.inner.step.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `words`, scalars of the current step (f32 as `to_bits`, u64 as two words, low
    /// first), where a kernel reads them, and returns their device address: copied now in
    /// stream order, or, in a captured step, into the pinned memory the graph copies from.
    pub(crate) fn step_scalars(&self, words: &[u32]) -> Result<Ptr> {
        let issue = self.issue();
        let mut step = self.step();
        let bytes = 4 * words.len();
        let mut at = step.cursor;
        if at + bytes > STEP_SCALAR_BYTES {
            if issue != Issue::Eager {
                return Err(Error::Backend(format!("CUDA: a captured train step needs more than {STEP_SCALAR_BYTES} bytes of per-step scalars")));
            }
            at = 0;
        }
        step.cursor = (at + bytes).next_multiple_of(SCALAR_ALIGN);
        let ptr = step.device.at(at);
        match (issue, step.host) {
            (Issue::Eager, _) => {
                drop(step);
                self.bind()?;
                // SAFETY: `ptr` is `bytes` inside the scalar buffer; a copy from pageable memory
                // has read `words` when it returns.
                unsafe { result::memcpy_htod_async(ptr, words, self.stream().cu_stream()) }.map_err(|e| driver_error("copying step scalars", e))?;
            }
            (_, Some(host)) => {
                // SAFETY: `host` is STEP_SCALAR_BYTES of pinned memory, alive while set (see
                // `StepScalars::host`), and `at + bytes` lies inside it.
                unsafe { std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), host.add(at), bytes) };
            }
            (_, None) => unreachable!("a captured step sets its host scalars"),
        }
        Ok(ptr)
    }

    /// Where captured steps sum their losses (a [`LossTotals`]).
    pub(crate) fn totals_ptr(&self) -> Ptr {
        self.step().totals.ptr
    }

    /// The loss totals of every captured step so far (waits for the device).
    pub fn loss_totals(&self) -> Result<LossTotals> {
        let mut raw = [0u64; 4];
        let ptr = self.totals_ptr();
        self.read_back(ptr, &mut raw)?;
        Ok(LossTotals { loss_sum: f64::from_bits(raw[0]), correct: raw[1], samples: raw[2], steps: raw[3] })
    }

    /// Starts capturing the stream's work into a graph whose first node copies the step's
    /// scalars from `host` (STEP_SCALAR_BYTES of pinned memory, which must outlive the graph).
    pub(crate) fn begin_capture(&self, host: *mut u8) -> Result<()> {
        self.eager("starting a capture")?;
        self.bind()?;
        self.stream().begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(|e| driver_error("starting a graph capture", e))?;
        {
            let mut step = self.step();
            (step.host, step.cursor, step.recorded) = (Some(host), 0, 0);
        }
        self.set_issue(Issue::Capture);
        let device = self.step().device.ptr;
        // SAFETY: both sides are STEP_SCALAR_BYTES long; `host` is pinned, so the captured copy
        // reads it when the graph runs, not now.
        let copied = unsafe { result::memcpy_htod_async(device, std::slice::from_raw_parts(host, STEP_SCALAR_BYTES), self.stream().cu_stream()) };
        if let Err(e) = copied {
            self.abort_capture();
            return Err(driver_error("capturing the step scalars' copy", e));
        }
        Ok(())
    }

    /// Ends the capture begun by [`Cuda::begin_capture`]: the executable graph, and what it issued.
    pub(crate) fn end_capture(&self) -> Result<(CudaGraph, StepShape)> {
        let shape = self.finish_graph_issue();
        let graph = self.stream().end_capture(sys::CUgraphInstantiate_flags(0)).map_err(|e| driver_error("ending a graph capture", e))?;
        let graph = graph.ok_or_else(|| Error::Backend("CUDA: the captured train step holds no work".into()))?;
        Ok((graph, shape))
    }

    /// Ends a capture that failed part-way, dropping what it recorded, so the stream runs
    /// eagerly again.
    pub(crate) fn abort_capture(&self) {
        self.finish_graph_issue();
        let _ = self.stream().end_capture(sys::CUgraphInstantiate_flags(0));
    }

    /// Starts replaying a captured step on the host: launches are skipped and counted, and the
    /// step's scalars go to `host`, the pinned memory its graph copies from.
    pub(crate) fn begin_replay(&self, host: *mut u8) {
        {
            let mut step = self.step();
            (step.host, step.cursor, step.recorded) = (Some(host), 0, 0);
        }
        self.set_issue(Issue::Replay);
    }

    /// Ends a replay: what it issued, to compare with the capture.
    pub(crate) fn end_replay(&self) -> StepShape {
        self.finish_graph_issue()
    }

    fn finish_graph_issue(&self) -> StepShape {
        self.set_issue(Issue::Eager);
        let mut step = self.step();
        step.host = None;
        let shape = StepShape { scalar_bytes: step.cursor, launches: step.recorded };
        step.cursor = 0;
        shape
    }

    /// Copies `bytes` of device memory from `src` (a buffer that outlives the graph) to `dst` as a
    /// node of the graph being captured; nothing when replaying (the node is there).
    pub(crate) fn copy_in_graph(&self, dst: Ptr, src: Ptr, bytes: usize) -> Result<()> {
        match self.issue() {
            Issue::Eager => Err(Error::Backend("CUDA: a graph copy outside a captured step".into())),
            Issue::Replay => Ok(()),
            Issue::Capture => {
                // SAFETY: the caller cut both from buffers holding `bytes`; `src` is read when the
                // graph runs.
                unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream().cu_stream()) }.map_err(|e| driver_error("capturing a copy on the device", e))
            }
        }
    }

    /// A second stream on this device, for copies that overlap the work of its own stream (a
    /// graphed step's next batch, uploaded while the step before runs). What runs on it is
    /// ordered against the device's stream by events alone ([`Cuda::upload_on`]).
    pub(crate) fn side_stream(&self) -> Result<Arc<CudaStream>> {
        self.inner.ctx.new_stream().map_err(|e| driver_error("creating a second stream", e))
    }

    /// Copies `src` (pinned host memory) to `dst` on `side`, records `uploaded` there, and makes
    /// the device's stream wait for it: work enqueued on the device after this call sees the
    /// copy, work enqueued before runs alongside it.
    ///
    /// # Safety
    /// `dst` holds `src.len()` bytes that no work on the device's stream uses until the copy is
    /// done (its previous reader finished); `src` stays pinned and unchanged until then.
    pub(crate) unsafe fn upload_on(&self, side: &CudaStream, dst: Ptr, src: &[u8], uploaded: &cudarc::driver::CudaEvent) -> Result<()> {
        self.eager("uploading on the second stream")?;
        self.bind()?;
        // SAFETY: the caller's.
        unsafe { result::memcpy_htod_async(dst, src, side.cu_stream()) }.map_err(|e| driver_error("uploading a batch on the second stream", e))?;
        uploaded.record(side).map_err(|e| driver_error("recording an upload's event", e))?;
        self.stream().wait(uploaded).map_err(|e| driver_error("ordering a step after its upload", e))
    }

    /// Launches a captured step's graph (counted as one launch).
    pub(crate) fn launch_graph(&self, graph: &CudaGraph) -> Result<()> {
        self.eager("launching a graph")?;
        graph.launch().map_err(|e| driver_error("launching the step's graph", e))?;
        self.inner.launches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pinned host memory of `len` bytes (page-locked, so a graph's copies read it when they run).
    pub(crate) fn alloc_pinned(&self, len: usize) -> Result<cudarc::driver::PinnedHostSlice<u8>> {
        self.eager("allocating pinned memory")?;
        // SAFETY: the memory is uninitialised until written; every user writes before a graph
        // copies it (the scalars at replay, the batch before each launch).
        unsafe { self.inner.ctx.alloc_pinned_with_flags::<u8>(len.max(1), 0) }.map_err(|e| driver_error(&format!("allocating {len} bytes of pinned host memory"), e))
    }

    /// An event on this device (timing disabled), to wait for a point of the stream.
    pub(crate) fn new_event(&self) -> Result<cudarc::driver::CudaEvent> {
        self.inner.ctx.new_event(None).map_err(|e| driver_error("creating an event", e))
    }
}

impl Cuda {
    /// Profiling on: each eager kernel launch then waits for the kernel, and its time (launch
    /// included, as a step pays it) is added up per kernel name until [`Cuda::take_profile`].
    /// For finding where a step's time goes (`bench --device cuda --profile`), not for timing.
    pub fn set_profiling(&self, on: bool) {
        *self.inner.profile.lock().unwrap_or_else(PoisonError::into_inner) = on.then(HashMap::new);
    }

    /// The profile since profiling was turned on or last taken: per kernel, its launches and
    /// milliseconds, the slowest first.
    pub fn take_profile(&self) -> Vec<(&'static str, u64, f64)> {
        let mut guard = self.inner.profile.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(map) = guard.as_mut() else { return Vec::new() };
        let mut rows: Vec<_> = map.drain().map(|(name, (count, seconds))| (name, count, seconds * 1e3)).collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows
    }

    /// The start of a profiled launch (None when not profiling).
    pub(crate) fn profile_start(&self) -> Option<std::time::Instant> {
        let profiling = self.inner.profile.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        (profiling && self.issue() == Issue::Eager).then(std::time::Instant::now)
    }

    /// Waits for a profiled launch and adds its time to kernel `name`.
    pub(crate) fn profile_end(&self, name: &'static str, start: Option<std::time::Instant>) -> Result<()> {
        let Some(start) = start else { return Ok(()) };
        self.stream().synchronize().map_err(|e| driver_error("waiting for a profiled kernel", e))?;
        let seconds = start.elapsed().as_secs_f64();
        if let Some(map) = self.inner.profile.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let entry = map.entry(name).or_insert((0, 0.0));
            *entry = (entry.0 + 1, entry.1 + seconds);
        }
        Ok(())
    }
}

/// Which convolutions (GEMMs) the launchers may run through cuDNN (cuBLAS): `STATICNET_CONV`
/// (`STATICNET_GEMM`) `=ours` never, `=cudnn` (`=cublas`) always where it can (the tests of that
/// path), anything else or unset: whichever is faster for the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VendorPolicy {
    Ours,
    Vendor,
    Fastest,
}

impl Cuda {
    /// The policy the environment variable `var` sets, `vendor` being the library's value.
    pub(crate) fn vendor_policy(var: &str, vendor: &str) -> VendorPolicy {
        match std::env::var(var) {
            Ok(v) if v == "ours" => VendorPolicy::Ours,
            Ok(v) if v == vendor => VendorPolicy::Vendor,
            _ => VendorPolicy::Fastest,
        }
    }

    /// Sets the arithmetic of convolutions and linear layers from now on (see [`Precision`]),
    /// for every clone of this device: PyTorch's `torch.autocast("cuda", dtype=torch.bfloat16)`
    /// around forward and backward. The optimizer's master weights and the other ops stay f32.
    /// A [`GraphedTrainStep`](crate::graph::GraphedTrainStep) captures again when it changes.
    ///
    /// In `Bf16` every GEMM (those of convolutions without groups and of linear layers, forward
    /// and backward) runs on our kernels, on tensor cores from sm_80 on; cuDNN and cuBLAS are
    /// f32-only here. Grouped (depthwise) convolutions stay f32.
    pub fn set_precision(&self, precision: Precision) {
        self.inner.precision.store(precision as u8, Ordering::Relaxed);
    }

    /// The precision [`Cuda::set_precision`] set, `F32` by default.
    pub fn precision(&self) -> Precision {
        match self.inner.precision.load(Ordering::Relaxed) {
            0 => Precision::F32,
            _ => Precision::Bf16,
        }
    }

    /// Whether bf16 GEMMs run on tensor cores (`mma.sync`, sm_80 and newer).
    pub(crate) fn tensor_cores(&self) -> bool {
        self.inner.tensor_cores
    }

    fn vendor(&self) -> MutexGuard<'_, Vendor> {
        self.inner.vendor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// cuDNN's handle on this device's stream, opened at the first call; None when libcudnn
    /// cannot be loaded or refuses (said once on stderr: our kernels then run everything).
    pub(crate) fn cudnn(&self) -> Option<cudarc::cudnn::sys::cudnnHandle_t> {
        let mut vendor = self.vendor();
        let opened = vendor.cudnn.get_or_insert_with(|| {
            let stream = self.stream().cu_stream();
            let opened = self.bind().map_err(|e| e.to_string()).and_then(|()| {
                probe("cuDNN (libcudnn)", || -> std::result::Result<CudnnHandle, cudarc::cudnn::result::CudnnError> {
                    let handle = cudarc::cudnn::result::create_handle()?;
                    // SAFETY: a live handle and this device's stream.
                    unsafe { cudarc::cudnn::result::set_stream(handle, stream as _) }?;
                    Ok(CudnnHandle(handle))
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("cuDNN: {e:?}")))
            });
            if let Err(why) = &opened {
                eprintln!("staticnet: {}: convolutions run on staticnet's kernels only ({why})", self.name());
            }
            opened
        });
        opened.as_ref().ok().map(|h| h.0)
    }

    /// cuBLAS's handle on this device's stream, with its own workspace and f32 math (no TF32),
    /// opened at the first call; None when libcublas cannot be loaded or refuses (said once on
    /// stderr: our GEMM kernels then run everything).
    pub(crate) fn cublas(&self) -> Option<cudarc::cublas::sys::cublasHandle_t> {
        use cudarc::cublas::{result as blas, sys as blas_sys};
        let mut vendor = self.vendor();
        let opened = vendor.cublas.get_or_insert_with(|| {
            let stream = self.stream().cu_stream();
            let opened = self.bind().map_err(|e| e.to_string()).and_then(|()| {
                let workspace = CudaBuf::<u8>::new(self.stream(), CUBLAS_WORKSPACE).map_err(|e| e.to_string())?;
                let ws = workspace.ptr;
                probe("cuBLAS (libcublas)", || -> std::result::Result<blas_sys::cublasHandle_t, blas::CublasError> {
                    let handle = blas::create_handle()?;
                    // SAFETY: a live handle, this device's stream, and a workspace that lives as
                    // long as the handle (both are kept until the device drops).
                    unsafe {
                        blas::set_stream(handle, stream as _)?;
                        blas_sys::cublasSetWorkspace_v2(handle, ws as *mut c_void, CUBLAS_WORKSPACE).result()?;
                        // Full f32: CUBLAS_DEFAULT_MATH never uses TF32 (the fixtures' precision).
                        blas_sys::cublasSetMathMode(handle, blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH).result()?;
                    }
                    Ok(handle)
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("cuBLAS: {e:?}")))
                .map(|handle| CublasHandle { handle, _workspace: workspace })
            });
            if let Err(why) = &opened {
                eprintln!("staticnet: {}: GEMMs run on staticnet's kernels only ({why})", self.name());
            }
            opened
        });
        opened.as_ref().ok().map(|h| h.handle)
    }

    /// What timing chose for `key` (see `Vendor::tuned`), if it was timed.
    pub(crate) fn tuned(&self, key: u64) -> Option<i64> {
        self.vendor().tuned.get(&key).map(|t| t.0)
    }

    pub(crate) fn set_tuned(&self, key: u64, choice: i64, line: String) {
        self.vendor().tuned.insert(key, (choice, line));
    }

    /// The vendor workspace, at least `bytes` long (grown only by an eager step: a capture runs
    /// with what the eager step sized).
    pub(crate) fn vendor_workspace(&self, bytes: usize) -> Result<Ptr> {
        let mut vendor = self.vendor();
        if vendor.workspace.len < bytes {
            self.eager("growing the cuDNN workspace")?;
            vendor.workspace = CudaBuf::new(self.stream(), bytes.next_power_of_two())?;
        }
        Ok(vendor.workspace.ptr)
    }

    /// Milliseconds per call of `f` on the device: one call to warm up, then the mean of three
    /// between two events (for choosing between implementations at an eager step).
    pub(crate) fn time_ms(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f32> {
        self.eager("timing kernels")?;
        f()?;
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self.inner.ctx.new_event(flags).map_err(|e| driver_error("creating an event", e))?;
        let end = self.inner.ctx.new_event(flags).map_err(|e| driver_error("creating an event", e))?;
        start.record(self.stream()).map_err(|e| driver_error("recording an event", e))?;
        for _ in 0..3 {
            f()?;
        }
        end.record(self.stream()).map_err(|e| driver_error("recording an event", e))?;
        end.synchronize().map_err(|e| driver_error("waiting for an event", e))?;
        Ok(start.elapsed_ms(&end).map_err(|e| driver_error("reading an event's time", e))? / 3.0)
    }

    /// What timing chose so far between cuDNN or cuBLAS and our kernels, one line per shape and
    /// pass (sorted), as `bench --device cuda` prints them.
    pub fn tuning_report(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.vendor().tuned.values().map(|t| t.1.clone()).collect();
        lines.sort();
        lines
    }
}
