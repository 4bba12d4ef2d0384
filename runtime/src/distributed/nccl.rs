//! NCCL as the engine of the GPU's collectives (feature `nccl`): one process per GPU, started by
//! `mpirun`; rank 0 makes NCCL's unique id and MPI carries it to the others. Gradients and
//! running statistics are reduced on the device, on the stream the `Cuda` backend runs
//! everything on, so no copy to the host is made; the host's small sums (metrics, flags) go over
//! MPI.
//!
//! NCCL is loaded at run time, as the rest of CUDA: cudarc looks for `libnccl.so`, but NVIDIA's
//! `nvidia-nccl-cu13` wheel and most system packages ship `libnccl.so.2` (with `libnccl.so` only
//! in the `-dev` package). [`Nccl::new`] finds `libnccl.so.2` in the folders of
//! `LD_LIBRARY_PATH` and the system's library folders and, where `libnccl.so` is missing beside
//! it, makes that link (or says how, if the folder is not writable).

use std::ffi::c_void;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use cudarc::nccl::sys;

use super::{Collective, Mpi};
use crate::backend::{Backend, Cuda};
use crate::{Error, Result};

/// An NCCL communicator over the ranks of an [`Mpi`] world, each on its own GPU (or, with
/// `NCCL_MULTI_RANK_GPU_ENABLE=1` and NCCL ≥ 2.30, several on one).
pub struct Nccl {
    mpi: Arc<Mpi>,
    comm: Comm,
}

/// `ncclComm_t`, destroyed on drop.
struct Comm(sys::ncclComm_t);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent; `Collective` is called by the training loop's thread only, and the raw pointer is
// otherwise only passed to NCCL.
unsafe impl Send for Comm {}
// SAFETY: as above.
unsafe impl Sync for Comm {}

impl Drop for Comm {
    fn drop(&mut self) {
        // SAFETY: the communicator was made by ncclCommInitRank and is destroyed once.
        let _ = nccl_call("destroying the communicator", || unsafe { sys::ncclCommDestroy(self.0) });
    }
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nccl(rank {}/{})", self.mpi.rank(), self.mpi.world_size())
    }
}

impl Nccl {
    /// A communicator of every rank of `mpi`, this one on `dev` (one GPU per process: usually
    /// `Cuda::new(local_rank() % gpus)`). Every rank calls it at the same point. An error, never
    /// a panic, when NCCL cannot be loaded or the communicator cannot be made; the error names
    /// the rank.
    pub fn new(mpi: Arc<Mpi>, dev: &Cuda) -> Result<Nccl> {
        let (rank, world) = (mpi.rank(), mpi.world_size());
        let at = |e: Error| Error::Backend(format!("NCCL: rank {rank}/{world}: {e}"));
        let loaded = find_libnccl();
        // Every rank learns whether NCCL loads everywhere, so that none waits for the others' id.
        super::agree::<Cuda>(&*mpi, loaded.is_ok(), || loaded.as_ref().err().map(|e| e.to_string()).unwrap_or_default()).map_err(at)?;
        let mut id = if rank == 0 {
            let id = nccl_get(|| {
                let mut id = sys::ncclUniqueId { internal: [0; 128] };
                // SAFETY: `id` is a valid ncclUniqueId to write.
                let rc = unsafe { sys::ncclGetUniqueId(&mut id) };
                (rc, id)
            })
            .map_err(at)?;
            id.internal.iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        Collective::<Cuda>::broadcast_bytes(&*mpi, &mut id)?;
        if id.len() != 128 {
            return Err(at(Error::Backend(format!("the unique id from rank 0 has {} bytes, not 128", id.len()))));
        }
        let mut unique = sys::ncclUniqueId { internal: [0; 128] };
        for (d, s) in unique.internal.iter_mut().zip(&id) {
            *d = *s as _;
        }
        // NCCL takes the device of the context current on this thread.
        let empty = dev.alloc::<f32>(0)?;
        dev.raw_for_nccl(&empty, 0)?;
        let comm = nccl_get(|| {
            let mut comm: sys::ncclComm_t = std::ptr::null_mut();
            // SAFETY: `comm` is written by NCCL; the id came from rank 0's ncclGetUniqueId.
            let rc = unsafe { sys::ncclCommInitRank(&mut comm, world as i32, unique, rank as i32) };
            (rc, comm)
        })
        .map_err(at)?;
        Ok(Nccl { mpi, comm: Comm(comm) })
    }

    /// The MPI world the ranks share.
    pub fn mpi(&self) -> &Arc<Mpi> {
        &self.mpi
    }

    fn err(&self, e: Error) -> Error {
        Error::Backend(format!("NCCL: rank {}/{}: {e}", self.mpi.rank(), self.mpi.world_size()))
    }
}

impl Collective<Cuda> for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn all_reduce_mean(&self, dev: &Cuda, buf: &mut <Cuda as Backend>::Buf<f32>, range: Range<usize>) -> Result<()> {
        check_range(buf, &range)?;
        let (stream, ptr) = dev.raw_for_nccl(buf, range.start)?;
        let _watch = self.mpi.watch("the gradient all-reduce (NCCL)");
        nccl_call("the gradient all-reduce", || {
            // SAFETY: `ptr` addresses `range.len()` floats of `buf` (checked above), in place;
            // the stream is the one every kernel of `dev` runs on, so the reduction follows the
            // backward and precedes the optimizer's kernels.
            unsafe {
                sys::ncclAllReduce(ptr as *const c_void, ptr as *mut c_void, range.len(), sys::ncclDataType_t::ncclFloat32, sys::ncclRedOp_t::ncclAvg, self.comm.0, stream as sys::cudaStream_t)
            }
        })
        .map_err(|e| self.err(e))?;
        // Waited for here, under the watchdog: a rank that never joins ends the job instead of
        // hanging a later copy.
        dev.synchronize()
    }

    fn broadcast(&self, dev: &Cuda, buf: &mut <Cuda as Backend>::Buf<f32>, range: Range<usize>) -> Result<()> {
        check_range(buf, &range)?;
        let (stream, ptr) = dev.raw_for_nccl(buf, range.start)?;
        let _watch = self.mpi.watch("a broadcast of rank 0's tensors (NCCL)");
        nccl_call("a broadcast of rank 0's tensors", || {
            // SAFETY: as in all_reduce_mean; in place.
            unsafe { sys::ncclBroadcast(ptr as *const c_void, ptr as *mut c_void, range.len(), sys::ncclDataType_t::ncclFloat32, 0, self.comm.0, stream as sys::cudaStream_t) }
        })
        .map_err(|e| self.err(e))?;
        dev.synchronize()
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        Collective::<Cuda>::all_reduce_sum_f64(&*self.mpi, values)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        Collective::<Cuda>::broadcast_bytes(&*self.mpi, bytes)
    }
}

fn check_range(buf: &<Cuda as Backend>::Buf<f32>, range: &Range<usize>) -> Result<()> {
    if range.end > Cuda::len(buf) || range.start > range.end {
        return Err(Error::bad_input(format!("a collective over elements {range:?} of a buffer of {}", Cuda::len(buf))));
    }
    Ok(())
}

/// Calls NCCL, turning a failed status, or cudarc's panic when the library or a symbol cannot be
/// loaded, into an error.
fn nccl_call(what: &str, f: impl FnOnce() -> sys::ncclResult_t) -> Result<()> {
    nccl_get(|| (f(), ())).map_err(|e| Error::Backend(format!("{what}: {e}")))
}

fn nccl_get<T>(f: impl FnOnce() -> (sys::ncclResult_t, T)) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok((sys::ncclResult_t::ncclSuccess, v)) => Ok(v),
        Ok((rc, _)) => Err(Error::Backend(format!("NCCL returned {rc:?}"))),
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("no message");
            Err(Error::Backend(format!("cannot load NCCL: {}", msg.split(" - searched").next().unwrap_or(msg))))
        }
    }
}

/// Makes `libnccl.so` loadable by cudarc: present already, or a link made beside the
/// `libnccl.so.2` found in `LD_LIBRARY_PATH`'s folders or the system's.
fn find_libnccl() -> Result<()> {
    // SAFETY: only tries to open the library by its candidate names.
    if unsafe { sys::is_culib_present() } {
        return Ok(());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let on_path = dirs.len();
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/cuda/lib64", "/usr/lib"].map(PathBuf::from));
    let Some((i, dir)) = dirs.iter().enumerate().find(|(_, d)| d.join("libnccl.so.2").is_file()) else {
        return Err(Error::Backend(
            "cannot load NCCL: no libnccl.so or libnccl.so.2 in LD_LIBRARY_PATH's folders or the system's; \
             install it (`pip install nvidia-nccl-cu13`) and put its lib folder on LD_LIBRARY_PATH"
                .into(),
        ));
    };
    let link = dir.join("libnccl.so");
    if !link.exists() && std::os::unix::fs::symlink("libnccl.so.2", &link).is_err() {
        return Err(Error::Backend(format!(
            "cannot load NCCL: {} exists but cudarc looks for libnccl.so, which cannot be made there: \
             `ln -s libnccl.so.2 libnccl.so` in a folder you can write and put it on LD_LIBRARY_PATH",
            dir.join("libnccl.so.2").display()
        )));
    }
    if i >= on_path {
        // The system's folders are searched by name too, but say so if this one is not.
        eprintln!("note: using {}", link.display());
    }
    // SAFETY: as above.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Backend(format!("cannot load NCCL: {} does not load (a library for another CUDA, or its folder not on LD_LIBRARY_PATH?)", link.display())))
    }
}
