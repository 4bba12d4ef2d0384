//! MPI as the engine of data-parallel training (feature `mpi`): the ranks are the processes of
//! `MPI_COMM_WORLD` that `mpirun` started, and the collectives are MPI's, on host memory.
//!
//! The collectives are called through the C interface with `MPI_ERRORS_RETURN`, so that a
//! failure is an [`Error`] naming the rank rather than the library's abort, and each one runs
//! under a watchdog that ends the job when it waits too long (see the module above).

use std::ffi::{c_char, c_int, c_void};
use std::fmt::Display;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mpi::environment::{Threading, Universe};
use mpi::ffi;

use super::Collective;
use crate::backend::Backend;
use crate::{Error, Result};

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun` with PMI):
/// programs that train data-parallel under one and alone otherwise ask this before
/// [`Mpi::init`].
pub fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"].iter().any(|v| std::env::var_os(v).is_some())
}

/// The rank of this process among those of its machine (`OMPI_COMM_WORLD_LOCAL_RANK`, or
/// `MPI_LOCALRANKID`), 0 if the launcher does not say: the GPU a process should take when each
/// has its own.
pub fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok()).unwrap_or(0)
}

/// Seconds a collective may wait before the watchdog ends the job, unless
/// `STATICNET_COLLECTIVE_TIMEOUT` says otherwise.
const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// `MPI_COMM_WORLD`, initialised (and finalised when dropped).
pub struct Mpi {
    rank: usize,
    world_size: usize,
    watchdog: Arc<Watchdog>,
    /// Host copies of device buffers, kept between calls so that a step allocates nothing.
    staging: Mutex<(Vec<f32>, Vec<f32>)>,
    /// Dropped last: finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi(rank {}/{})", self.rank, self.world_size)
    }
}

impl Mpi {
    /// Initialises MPI (`MPI_Init_thread`, asking for `MPI_THREAD_MULTIPLE` so that the watchdog
    /// can end the job from its own thread). Alone, without a launcher, this is a world of one.
    /// An error if MPI was initialised before in this process, or if
    /// `STATICNET_COLLECTIVE_TIMEOUT` is not a number of seconds.
    pub fn init() -> Result<Mpi> {
        let timeout = match std::env::var("STATICNET_COLLECTIVE_TIMEOUT") {
            Ok(s) => match s.trim().parse::<f64>() {
                Ok(t) if t > 0.0 && t.is_finite() => t,
                _ => return Err(Error::bad_input(format!("STATICNET_COLLECTIVE_TIMEOUT={s}: expected a number of seconds above 0"))),
            },
            Err(_) => DEFAULT_TIMEOUT_S,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| Error::Backend("MPI: already initialised in this process (Mpi::init is called once)".into()))?;
        let (mut rank, mut size) = (0 as c_int, 0 as c_int);
        // SAFETY: MPI is initialised; the world communicator and the error handler are MPI's
        // own constants; rank and size are written through valid pointers.
        unsafe {
            ffi::MPI_Comm_set_errhandler(ffi::RSMPI_COMM_WORLD, ffi::RSMPI_ERRORS_RETURN);
            ffi::MPI_Comm_rank(ffi::RSMPI_COMM_WORLD, &mut rank);
            ffi::MPI_Comm_size(ffi::RSMPI_COMM_WORLD, &mut size);
        }
        let (rank, world_size) = (rank as usize, size.max(1) as usize);
        let watchdog = Watchdog::start(rank, world_size, Duration::from_secs_f64(timeout), threading == Threading::Multiple)?;
        Ok(Mpi { rank, world_size, watchdog, staging: Mutex::new((Vec::new(), Vec::new())), _universe: universe })
    }

    /// This process's rank in `MPI_COMM_WORLD`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// How long a collective may wait for the other ranks before the watchdog ends the job.
    pub fn timeout(&self) -> Duration {
        self.watchdog.timeout
    }

    /// Prints `rank R/W: error: {error}` and ends every rank of the job (`MPI_Abort`): what a
    /// rank should do with an error that the others do not share, instead of returning and
    /// leaving them waiting in a collective.
    pub fn abort(&self, error: &dyn Display) -> ! {
        eprintln!("rank {}/{}: error: {error}", self.rank, self.world_size);
        abort_world()
    }

    /// Marks a collective of another engine (NCCL) in progress, under the watchdog, until the
    /// returned guard is dropped.
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    pub(super) fn watch(&self, what: &'static str) -> impl Drop + '_ {
        self.watchdog.watch(what)
    }

    /// Waits until every rank has reached this point.
    pub fn barrier(&self) -> Result<()> {
        let _watch = self.watchdog.watch("a barrier");
        // SAFETY: MPI is initialised and the communicator is the world.
        let rc = unsafe { ffi::MPI_Barrier(ffi::RSMPI_COMM_WORLD) };
        self.check(rc, "a barrier")
    }

    fn check(&self, rc: c_int, what: &str) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        let mut text = [0 as c_char; 512];
        let mut len: c_int = 0;
        // SAFETY: OpenMPI's MPI_MAX_ERROR_STRING is 256 (MPICH's 1024 would be cut at 512: the
        // length is clamped below, and the buffer is only read up to it).
        unsafe { ffi::MPI_Error_string(rc, text.as_mut_ptr(), &mut len) };
        let bytes: Vec<u8> = text[..(len.max(0) as usize).min(text.len())].iter().map(|&c| c as u8).collect();
        Err(Error::Backend(format!("MPI: rank {}/{}: {what} failed: {} (error {rc})", self.rank, self.world_size, String::from_utf8_lossy(&bytes))))
    }

    /// MPI_Allreduce(SUM) of `send` into `recv`, in chunks that fit an `int` count.
    fn all_reduce<T>(&self, send: &[T], recv: &mut [T], datatype: ffi::MPI_Datatype, what: &'static str) -> Result<()> {
        let _watch = self.watchdog.watch(what);
        for (s, r) in send.chunks(CHUNK).zip(recv.chunks_mut(CHUNK)) {
            // SAFETY: `s` and `r` hold the same number of elements of the type `datatype` names,
            // and neither is touched by anything else during the call.
            let rc = unsafe { ffi::MPI_Allreduce(s.as_ptr() as *const c_void, r.as_mut_ptr() as *mut c_void, s.len() as c_int, datatype, ffi::RSMPI_SUM, ffi::RSMPI_COMM_WORLD) };
            self.check(rc, what)?;
        }
        Ok(())
    }

    /// MPI_Bcast from rank 0, in chunks that fit an `int` count.
    fn bcast<T>(&self, buf: &mut [T], datatype: ffi::MPI_Datatype, what: &'static str) -> Result<()> {
        let _watch = self.watchdog.watch(what);
        for c in buf.chunks_mut(CHUNK) {
            // SAFETY: `c` holds `c.len()` elements of the type `datatype` names.
            let rc = unsafe { ffi::MPI_Bcast(c.as_mut_ptr() as *mut c_void, c.len() as c_int, datatype, 0, ffi::RSMPI_COMM_WORLD) };
            self.check(rc, what)?;
        }
        Ok(())
    }
}

/// Elements per MPI call: below `i32::MAX`, MPI's count type.
const CHUNK: usize = 1 << 30;

/// Ends every process of the job.
fn abort_world() -> ! {
    // SAFETY: MPI is initialised (only an `Mpi` calls this); MPI_Abort does not return.
    unsafe { ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, 1) };
    std::process::abort()
}

impl Drop for Mpi {
    fn drop(&mut self) {
        self.watchdog.stop.store(true, Ordering::Relaxed);
        // A rank that panics would leave the others waiting: end them all instead of finalising.
        if std::thread::panicking() {
            eprintln!("rank {}/{}: panicked; ending every rank", self.rank, self.world_size);
            abort_world();
        }
    }
}

/// The host side of every collective; device buffers are staged through host memory (for the
/// `Cpu` backend a copy, which costs little beside the reduction itself).
impl<B: Backend> Collective<B> for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_mean(&self, dev: &B, buf: &mut B::Buf<f32>, range: Range<usize>) -> Result<()> {
        let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        let (send, recv) = &mut *staging;
        let n = range.len();
        send.resize(n, 0.0);
        recv.resize(n, 0.0);
        dev.download(buf, range.start, send)?;
        self.all_reduce(send, recv, float(), "the gradient all-reduce")?;
        // Divided, not multiplied by 1/W: for W a power of two the mean is exact.
        let w = self.world_size as f32;
        recv.iter_mut().for_each(|v| *v /= w);
        dev.upload(buf, range.start, recv)
    }

    fn broadcast(&self, dev: &B, buf: &mut B::Buf<f32>, range: Range<usize>) -> Result<()> {
        let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        let host = &mut staging.0;
        host.resize(range.len(), 0.0);
        if self.rank == 0 {
            dev.download(buf, range.start, host)?;
        }
        self.bcast(host, float(), "a broadcast of rank 0's tensors")?;
        if self.rank != 0 {
            dev.upload(buf, range.start, host)?;
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        // SAFETY (of the static): an MPI constant, read after MPI_Init.
        self.all_reduce(&send, values, unsafe { ffi::RSMPI_DOUBLE }, "an all-reduce of metrics")
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let mut len = [bytes.len() as u64];
        // SAFETY (of the statics): MPI constants, read after MPI_Init.
        self.bcast(&mut len, unsafe { ffi::RSMPI_UINT64_T }, "a broadcast from rank 0")?;
        bytes.resize(len[0] as usize, 0);
        self.bcast(bytes, unsafe { ffi::RSMPI_UINT8_T }, "a broadcast from rank 0")
    }
}

fn float() -> ffi::MPI_Datatype {
    // SAFETY: an MPI constant, read after MPI_Init.
    unsafe { ffi::RSMPI_FLOAT }
}

/// Ends the job when a collective waits longer than `timeout`: a rank that died where the
/// launcher cannot see it, or hangs, would otherwise keep the others waiting for ever.
struct Watchdog {
    rank: usize,
    world_size: usize,
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` (plus one) at which the current collective began; 0: none.
    since: AtomicU64,
    what: Mutex<&'static str>,
    stop: AtomicBool,
}

/// Marks a collective in progress until dropped.
struct Watch<'a>(&'a Watchdog);

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Release);
    }
}

impl Watchdog {
    fn start(rank: usize, world_size: usize, timeout: Duration, multiple: bool) -> Result<Arc<Watchdog>> {
        let dog = Arc::new(Watchdog {
            rank,
            world_size,
            timeout,
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            what: Mutex::new(""),
            stop: AtomicBool::new(false),
        });
        let watcher = dog.clone();
        let poll = (timeout / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
        std::thread::Builder::new()
            .name("staticnet-mpi-watchdog".into())
            .spawn(move || {
                while !watcher.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(poll);
                    let since = watcher.since.load(Ordering::Acquire);
                    if since == 0 {
                        continue;
                    }
                    let waited = watcher.epoch.elapsed().saturating_sub(Duration::from_millis(since - 1));
                    if waited > watcher.timeout && !watcher.stop.load(Ordering::Relaxed) {
                        let what = *watcher.what.lock().unwrap_or_else(PoisonError::into_inner);
                        eprintln!(
                            "rank {}/{}: error: {what} has waited {:.0} s for the other ranks (STATICNET_COLLECTIVE_TIMEOUT={}): \
                             a rank has died or hangs; ending every rank",
                            watcher.rank,
                            watcher.world_size,
                            waited.as_secs_f64(),
                            watcher.timeout.as_secs_f64()
                        );
                        if multiple {
                            abort_world();
                        }
                        // Without MPI_THREAD_MULTIPLE this thread may not call MPI: end this
                        // process, which the launcher sees and ends the others for.
                        std::process::abort();
                    }
                }
            })
            .map_err(|e| Error::Backend(format!("MPI: rank {rank}/{world_size}: cannot start the watchdog thread: {e}")))?;
        Ok(dog)
    }

    fn watch(&self, what: &'static str) -> Watch<'_> {
        *self.what.lock().unwrap_or_else(PoisonError::into_inner) = what;
        self.since.store(self.epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
        Watch(self)
    }
}
