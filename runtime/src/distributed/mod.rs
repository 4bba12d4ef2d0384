//! Data-parallel training across processes, with the semantics of PyTorch's
//! `DistributedDataParallel` (DDP), on an existing distributed engine: MPI for the `Cpu` backend
//! (feature `mpi`), NCCL for `Cuda` (feature `nccl`, one process per GPU). The processes are
//! started by the engine's launcher, `mpirun -np W program …` (with a hostfile for several
//! machines), as PyTorch's are by `torchrun`.
//!
//! ```text
//! let mpi = Arc::new(Mpi::init()?);                    // under mpirun: rank R of W
//! let history = Trainer::new(5).batch_size(50)         // per process, as in PyTorch
//!     .distributed(mpi.clone() as Arc<dyn Collective<Cpu>>)
//!     .fit(&mut model, &mut optimizer, &train, Some(&test))?;
//! println!("rank {}/{} weights fingerprint {:016x}", mpi.rank(), mpi.world_size(), fingerprint(&model)?);
//! ```
//!
//! What [`crate::Trainer::distributed`] does, as DDP does:
//!
//! - **At the start** every rank checks that it runs the same configuration as rank 0 (seed,
//!   batch size, epochs, data set size, network), then takes rank 0's parameters, running
//!   statistics and batch counters (`broadcast` from rank 0), so that all ranks start equal
//!   whatever their seeds.
//! - **The sampler** is `torch.utils.data.DistributedSampler`'s: the epoch's order is the one a
//!   single process shuffles from (seed, epoch), padded to a multiple of W by repeating its
//!   first samples (`drop_last=False`), and rank r takes positions r, r + W, r + 2W, … of it
//!   ([`crate::DataLoader::shard`]). With a per-rank batch B, the k-th batches of the W ranks
//!   together hold positions kWB … (k+1)WB − 1 of the order: exactly the k-th batch of one
//!   process with batch W·B.
//! - **Gradients** are averaged across ranks after the backward, before the optimizer's step
//!   (each rank's optimizer then makes the same update, so the parameters stay equal). Each
//!   rank's loss is the mean over its own B samples; the average of W such means is the mean
//!   over the W·B samples of the global batch, so the run follows a single process with batch
//!   W·B up to the rounding of the sums. The last batch of an epoch may be smaller: every rank
//!   then holds the same smaller number of samples (the padding makes the ranks' shares equal),
//!   and the average is again the global batch's mean. What differs from one process is only
//!   the padding itself: when the data set's size is not a multiple of W, the last global batch
//!   holds up to W − 1 samples a second time (as PyTorch's sampler does), which a single process
//!   does not see. Gradients are reduced in buckets of up to 25 MB (`bucket_cap_mb`'s default),
//!   last layers first, after the whole backward: the generated backward has no per-layer hook
//!   yet, so communication does not overlap it (on the CPU, where the ranks' cores do both, there
//!   would be little to gain).
//! - **Running statistics** (BatchNorm): each rank normalises with the statistics of its own
//!   batch, as in PyTorch, and rank 0's running statistics are copied to every rank after each
//!   step (DDP's `broadcast_buffers=True`), so validation and the saved weights use rank 0's.
//!   SyncBatchNorm (statistics over the global batch) is a later step.
//! - **Dropout**: rank r > 0 draws its masks from the network's seed mixed with r, so that the
//!   ranks do not drop the same units of different samples.
//! - **Validation** is sharded without padding (rank r takes samples r, r + W, …, so each is
//!   evaluated once) and its loss and accuracy are summed across ranks: every rank gets the
//!   metrics of the whole validation set. The epoch's training loss and accuracy are summed
//!   across ranks the same way.
//! - **Early stopping** is decided by rank 0 and broadcast, so every rank stops at the same epoch.
//! - **Only rank 0** writes the checkpoint, the history and its plot, and prints. A checkpoint
//!   records the world size; [`crate::Trainer::resume`] reads it on every rank (on several
//!   machines, put it on storage they share) and refuses another world size, since the global
//!   batch would change.
//! - **Failures**: a collective that fails is an error naming the rank. A rank that dies ends
//!   the job: mpirun notices and stops every rank, naming the one that died. A rank that hangs
//!   (or dies where the launcher cannot see it) is caught by a watchdog: a collective that waits
//!   longer than the timeout (`STATICNET_COLLECTIVE_TIMEOUT` seconds, 300 by default) prints an
//!   error naming the waiting rank and ends every rank (`MPI_Abort`). An error that a rank
//!   returns (a corrupt file, a NaN loss) should end the job too: `Mpi::abort` prints it with
//!   the rank and stops every process, instead of leaving the others waiting for the watchdog.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

use std::ops::Range;
use std::sync::Arc;

#[cfg(feature = "mpi")]
pub use self::mpi::{Mpi, launched, local_rank};
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;

use crate::backend::Backend;
use crate::network::{Network, StateDict, TensorKind};
use crate::optim::{Optimizer, ParamLayout, ParamRange, Params};
use crate::{Error, Result};

/// The collectives data-parallel training needs, on one backend's buffers: what MPI and NCCL
/// provide. Every rank must call the same collectives in the same order.
pub trait Collective<B: Backend>: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// How many processes take part.
    fn world_size(&self) -> usize;
    /// Replaces `buf[range]` on every rank by the mean over the ranks of their `buf[range]`.
    fn all_reduce_mean(&self, dev: &B, buf: &mut B::Buf<f32>, range: Range<usize>) -> Result<()>;
    /// Replaces `buf[range]` on every rank by rank 0's.
    fn broadcast(&self, dev: &B, buf: &mut B::Buf<f32>, range: Range<usize>) -> Result<()>;
    /// Replaces `values` on every rank by their sums over the ranks (metrics, counts, flags).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Replaces `bytes` on every rank by rank 0's (of any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;
}

/// One process alone (rank 0 of 1): every collective is the identity. Training with it is
/// training without [`crate::Trainer::distributed`]; it lets generic code take a communicator
/// always, and tests run the distributed path without MPI.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl<B: Backend> Collective<B> for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&self, _: &B, _: &mut B::Buf<f32>, _: Range<usize>) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &B, _: &mut B::Buf<f32>, _: Range<usize>) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

/// The engine for `dev`'s buffers over the ranks of `mpi`: NCCL for a `Cuda` device when built
/// with feature `nccl`, MPI (through host memory) otherwise. What [`crate::Trainer::distributed`]
/// takes.
#[cfg(feature = "mpi")]
pub fn collective<B: Backend>(mpi: Arc<Mpi>, dev: &B) -> Result<Arc<dyn Collective<B>>> {
    #[cfg(feature = "nccl")]
    if let Some(cuda) = (dev as &dyn std::any::Any).downcast_ref::<crate::Cuda>() {
        let nccl: Arc<dyn Collective<crate::Cuda>> = Arc::new(Nccl::new(mpi, cuda)?);
        let any: Box<dyn std::any::Any> = Box::new(nccl);
        return Ok(*any.downcast::<Arc<dyn Collective<B>>>().expect("B is Cuda"));
    }
    let _ = dev;
    Ok(mpi)
}

/// PyTorch's default `bucket_cap_mb`: gradients are reduced in buckets of at most this many bytes.
pub const BUCKET_BYTES: usize = 25 << 20;

/// The buckets gradients are reduced in: runs of adjacent unfrozen parameter tensors of at most
/// [`BUCKET_BYTES`] (a larger tensor is a bucket of its own), last tensors first, the order in
/// which a backward produces them (DDP's bucket order).
pub fn buckets(tensors: &[ParamRange]) -> Vec<Range<usize>> {
    let cap = BUCKET_BYTES / 4;
    let mut out: Vec<Range<usize>> = Vec::new();
    for p in tensors.iter().rev().filter(|p| !p.frozen) {
        match out.last_mut() {
            Some(b) if p.range.end == b.start && b.end - p.range.start <= cap => b.start = p.range.start,
            _ => out.push(p.range.clone()),
        }
    }
    out
}

/// An optimizer whose step first averages the gradients across the ranks, then takes rank 0's
/// running statistics (DDP's `broadcast_buffers`), then updates as `inner` does. Without a
/// communicator it is `inner` itself. [`crate::Trainer::distributed`] wraps the optimizer in
/// one; use it directly to write a training loop of your own.
pub struct Synced<'a, B: Backend, O: Optimizer<B>> {
    inner: &'a mut O,
    comm: Option<Arc<dyn Collective<B>>>,
    buckets: Vec<Range<usize>>,
}

impl<'a, B: Backend, O: Optimizer<B>> Synced<'a, B, O> {
    /// `inner`, its gradients averaged over the ranks of `comm` before each step.
    pub fn new(inner: &'a mut O, comm: Option<Arc<dyn Collective<B>>>) -> Self {
        Synced { inner, comm, buckets: Vec::new() }
    }
}

impl<B: Backend, O: Optimizer<B>> Optimizer<B> for Synced<'_, B, O> {
    fn step(&mut self, net: Params<'_, B>) -> Result<()> {
        if let Some(comm) = self.comm.as_ref().filter(|c| c.world_size() > 1) {
            // Frozen tensors may change between steps (freeze / unfreeze): recompute then only.
            let now = buckets(net.tensors);
            if now != self.buckets {
                self.buckets = now;
            }
            for b in &self.buckets {
                comm.all_reduce_mean(net.device, net.grads, b.clone())?;
            }
            let len = B::len(net.buffers);
            if len > 0 {
                comm.broadcast(net.device, net.buffers, 0..len)?;
            }
        }
        self.inner.step(net)
    }
    fn learning_rate(&self) -> f32 {
        self.inner.learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr)
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn state_dict(&self, dev: &B) -> Result<StateDict> {
        self.inner.state_dict(dev)
    }
    fn check_state_dict(&self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        self.inner.check_state_dict(net, state)
    }
    fn load_state_dict(&mut self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        self.inner.load_state_dict(net, state)
    }
}

/// Every rank learns whether all ranks are `ok`; if one is not, every rank returns an error:
/// the failing ranks name themselves with `what`, the others say that another rank failed.
/// (A rank that returned alone would leave the others waiting in their next collective.)
pub fn agree<B: Backend>(comm: &dyn Collective<B>, ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    let mut failed = [if ok { 0.0 } else { 1.0 }];
    comm.all_reduce_sum_f64(&mut failed)?;
    let (rank, world) = (comm.rank(), comm.world_size());
    match (ok, failed[0] as usize) {
        (_, 0) => Ok(()),
        (false, _) => Err(Error::bad_input(format!("rank {rank}/{world}: {}", what()))),
        (true, n) => Err(Error::bad_input(format!("rank {rank}/{world}: {n} other rank(s) failed a check this rank passed (their messages say which)"))),
    }
}

/// Rank 0's `value` on every rank (a decision made once, such as early stopping).
pub fn broadcast_flag<B: Backend>(comm: &dyn Collective<B>, value: bool) -> Result<bool> {
    let mut bytes = vec![value as u8];
    comm.broadcast_bytes(&mut bytes)?;
    match bytes[..] {
        [b] => Ok(b != 0),
        _ => Err(Error::Backend(format!("rank {}/{}: a broadcast flag arrived as {} bytes", comm.rank(), comm.world_size(), bytes.len()))),
    }
}

/// The start of a data-parallel run: every rank checks that its `config` (a description of the
/// run: seed, batch size, data) is rank 0's, then takes rank 0's parameters, running statistics
/// and batch counters, and (rank r > 0) mixes its rank into the dropout seed. `config` differing
/// is an error on every rank, naming those that differ.
pub fn start<B: Backend, N: Network<B>>(comm: &dyn Collective<B>, model: &mut N, config: &str) -> Result<()> {
    let mut root = config.as_bytes().to_vec();
    comm.broadcast_bytes(&mut root)?;
    let root = String::from_utf8_lossy(&root).into_owned();
    agree(comm, root == config, || format!("this rank runs `{config}`, rank 0 runs `{root}`: every rank must run the same program with the same options"))?;
    let state = model.state_mut();
    let (dev, params, _, buffers, counters) = state.collective_view();
    let (p, b) = (B::len(params), B::len(buffers));
    comm.broadcast(dev, params, 0..p)?;
    if b > 0 {
        comm.broadcast(dev, buffers, 0..b)?;
    }
    if !counters.is_empty() {
        let mut bytes: Vec<u8> = counters.iter().flat_map(|c| c.to_le_bytes()).collect();
        comm.broadcast_bytes(&mut bytes)?;
        for (c, b) in counters.iter_mut().zip(bytes.chunks_exact(8)) {
            *c = i64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
    }
    let (seed, step) = state.rng_state();
    state.set_rng_state(dropout_seed(seed, comm.rank()), step);
    Ok(())
}

/// The dropout seed of rank `rank` for a network seeded `seed`: rank 0 keeps it (so that a
/// checkpoint, written by rank 0, holds the network's own seed); the others mix their rank in.
pub fn dropout_seed(seed: u64, rank: usize) -> u64 {
    if rank == 0 { seed } else { seed ^ (rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) }
}

/// A hash of a network's parameters (FNV-1a, 64 bits, over their bits in `state_dict` order):
/// ranks that trained in step print the same one. Running statistics are left out.
pub fn fingerprint<B: Backend, N: Network<B>>(model: &N) -> Result<u64> {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let state = model.state();
    for t in N::SPEC.tensors.iter().filter(|t| matches!(t.kind, TensorKind::Param { .. })) {
        let value = state.read(t.name)?;
        for v in value.as_f32().unwrap_or_default() {
            for byte in v.to_bits().to_le_bytes() {
                hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_seeds_differ_by_rank_and_rank_0_keeps_its_own() {
        assert_eq!(dropout_seed(7, 0), 7);
        let seeds: Vec<u64> = (0..8).map(|r| dropout_seed(7, r)).collect();
        for (i, a) in seeds.iter().enumerate() {
            assert!(seeds[i + 1..].iter().all(|b| a != b), "{seeds:?}");
        }
    }
}
