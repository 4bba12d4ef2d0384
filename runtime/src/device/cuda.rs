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
//! [`Backend::synchronize`](crate::backend::Backend::synchronize) wait for it. Kernels are compiled for
//! the device's own architecture into a CUBIN, not PTX: a CUBIN from a newer NVRTC loads on an
//! older driver of the same major version, where PTX would be refused.
//!
//! GEMMs (linear layers, and convolutions as im2col + GEMM) are our own kernel in plain f32
//! FMAs: no TF32, so results agree with the CPU backend and the PyTorch fixtures.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, result};
use cudarc::nvrtc::{self, Ptx};

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
        Ok(Cuda { inner: Arc::new(Inner { name: format!("cuda:{ordinal} ({gpu})"), ctx, stream, kernels, reduce, split }) })
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
/// parameter in the same position.
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
        // SAFETY: the arguments match the kernel's parameters in number, order and type (see its
        // signature in the `.cu` source); every pointer is a view cut from a live buffer and
        // checked to hold what the kernel touches, or null where the kernel tests for null.
        unsafe { builder.launch(cfg) }.map(|_| ()).map_err(|e| $crate::device::cuda::driver_error(concat!("launching ", stringify!($name)), e))
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
            *buf = CudaBuf::new(self.stream(), bytes.next_power_of_two())?;
        }
        f(&buf)
    }

    /// The workspace of the partial sums of GEMMs split along k, grown to at least `len` floats.
    /// Held until the guard drops: kernels that use it are enqueued meanwhile.
    pub(crate) fn split_workspace(&self, len: usize) -> Result<MutexGuard<'_, CudaBuf<f32>>> {
        let mut ws = self.inner.split.lock().unwrap_or_else(PoisonError::into_inner);
        if ws.len < len {
            *ws = CudaBuf::new(self.stream(), len.next_power_of_two())?;
        }
        Ok(ws)
    }
}
