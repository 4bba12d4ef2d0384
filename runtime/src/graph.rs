//! A whole train step replayed from one CUDA graph (feature `cuda`): what PyTorch gets from
//! `torch.cuda.CUDAGraph` around a step, or `torch.compile(mode="reduce-overhead")`.
//!
//! A GPU step of a small network is mostly launch overhead: Model A's step is some 40 kernels
//! of a few microseconds each. [`GraphedTrainStep`] runs the first step eagerly (it sizes every
//! workspace and creates the optimizer's state), then captures the step (copying the batch in,
//! `zero_grad`, forward, loss, backward, the optimizer's update) into a graph, and from then on
//! launches that graph once per step.
//!
//! What changes from step to step lives in device memory, so the graph stays right:
//! - The batch: written into pinned host memory and uploaded on a second stream into a device
//!   staging buffer while the step before runs; the graph's first nodes copy it from there into
//!   the network's input (a device-to-device copy, microseconds), after an event says the upload
//!   is done. So a step waits for its batch's upload only when the step before is shorter.
//! - The per-step scalars: the learning rate, Adam's bias corrections, the dropout keys, and a
//!   batch norm's averaging factor. The kernels read them from device memory
//!   (`Cuda::step_scalars`). At each step the host runs the step's code with every launch
//!   skipped, so each launcher writes its scalars where its captured kernel reads them. The
//!   host's state (the step counters, `num_batches_tracked`) moves exactly as in an eager step.
//! - The loss: summed on the device; [`GraphedTrainStep::loss`] reads it when asked (a progress
//!   bar every N steps), so a step never waits for the device.
//!
//! Two graphs alternate, each with its own pinned memory: the host prepares step k + 1 while the
//! device runs step k. It waits only before it reuses the memory of step k − 1.
//!
//! While a step is captured or replayed, nothing else may use the device (another thread's
//! launches would go into the graph, or be skipped): train on one thread per device, as the
//! `Trainer` does.
//!
//! The graphs hold the addresses of the network's and the optimizer's buffers, so the step owns
//! both. Borrowing either mutably ([`GraphedTrainStep::net_mut`], [`GraphedTrainStep::optimizer_mut`])
//! drops the graphs. A new batch size, mode or precision ([`Cuda::set_precision`]) does too. The next step then runs eagerly and
//! captures again.

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaGraph, CudaStream, PinnedHostSlice};

use crate::backend::{Backend, Cuda, Precision};
use crate::batch::{Batch, Logits};
use crate::device::cuda::{CudaBuf, LossTotals, STEP_SCALAR_BYTES, StepShape};
use crate::loss::Criterion;
use crate::network::{Network, criterion_op};
use crate::ops::CrossEntropy;
use crate::optim::Optimizer;
use crate::{Error, Result};


/// A train step (`zero_grad`, forward, cross-entropy, backward, `optimizer.step()`) replayed
/// from a CUDA graph after its first step; see the [module docs](self).
///
/// ```ignore
/// let mut step = GraphedTrainStep::new(net, Sgd::new(0.05).momentum(0.9), CrossEntropyLoss::new())?;
/// for (i, (x, labels)) in batches.enumerate() {
///     step.step(&x, &labels)?;
///     if i % 100 == 99 {
///         println!("loss {:.4}", step.loss()?.loss);
///     }
/// }
/// let (net, optimizer) = step.into_parts()?;
/// ```
pub struct GraphedTrainStep<N: Network<Cuda>, O: Optimizer<Cuda>> {
    // Dropped first: the graphs copy from the pinned memory below.
    graphs: [Option<Captured>; 2],
    /// Per graph: the step scalars (STEP_SCALAR_BYTES), the batch's inputs, then its labels (u32).
    pinned: Pinned,
    /// Recorded after each graph's last launch: its pinned memory and staging buffer are free
    /// once this has passed.
    done: [CudaEvent; 2],
    /// Per graph: the batch on the device (inputs, then labels), where the second stream
    /// uploads it and the graph copies it from.
    staging: [CudaBuf<u8>; 2],
    /// Recorded on the second stream when each graph's batch is uploaded.
    uploaded: [CudaEvent; 2],
    side: Arc<CudaStream>,
    net: N,
    optimizer: O,
    criterion: Criterion,
    /// The criterion's kernel settings.
    op: CrossEntropy,
    /// The batch size, mode and precision the graphs were captured for.
    batch: usize,
    training: bool,
    precision: Precision,
    /// Whether the next step may be captured or replayed: an eager step ran since the graphs
    /// were last dropped.
    warm: bool,
    /// The graph the next step uses.
    next: usize,
    /// Losses of eager steps not yet read, and the device's totals when last read.
    eager: LossTotals,
    read: LossTotals,
}

/// The pinned memory of the two graphs. Dropping it first waits for the device: a graph may
/// still be copying from it.
struct Pinned {
    dev: Cuda,
    mem: [PinnedHostSlice<u8>; 2],
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = self.dev.synchronize();
    }
}

impl Pinned {
    fn bytes(&self, k: usize) -> Result<&[u8]> {
        // The memory's own event is never recorded (copies from it are ordered by `done`), so
        // this does not wait.
        self.mem[k].as_slice().map_err(|e| Error::Backend(format!("CUDA: pinned memory: {e:?}")))
    }

    fn bytes_mut(&mut self, k: usize) -> Result<&mut [u8]> {
        self.mem[k].as_mut_slice().map_err(|e| Error::Backend(format!("CUDA: pinned memory: {e:?}")))
    }
}

struct Captured {
    graph: CudaGraph,
    /// What the capture issued; every replay must issue the same.
    shape: StepShape,
}

/// The losses of the steps since the last [`GraphedTrainStep::loss`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepLosses {
    /// The mean over those steps of each step's mean loss (NaN without a step).
    pub loss: f32,
    /// Samples classified right.
    pub correct: usize,
    /// Samples seen.
    pub samples: usize,
    /// Steps taken.
    pub steps: usize,
}

impl<N: Network<Cuda>, O: Optimizer<Cuda>> GraphedTrainStep<N, O>
where
    N::Output: Logits,
{
    /// Takes the network, its optimizer and the criterion (`CrossEntropyLoss`, or `NLLLoss` on a
    /// network ending in `LogSoftmax`). Nothing is captured before the first steps.
    pub fn new(net: N, optimizer: O, criterion: impl Into<Criterion>) -> Result<Self> {
        let criterion = criterion.into();
        let op = criterion_op(N::SPEC, criterion, N::Output::CLASSES)?;
        let dev = net.device().clone();
        let (training, precision) = (net.is_training(), dev.precision());
        Ok(GraphedTrainStep {
            graphs: [None, None],
            pinned: Pinned { mem: [dev.alloc_pinned(STEP_SCALAR_BYTES)?, dev.alloc_pinned(STEP_SCALAR_BYTES)?], dev: dev.clone() },
            done: [dev.new_event()?, dev.new_event()?],
            staging: [CudaBuf::new(dev.stream(), 0)?, CudaBuf::new(dev.stream(), 0)?],
            uploaded: [dev.new_event()?, dev.new_event()?],
            side: dev.side_stream()?,
            net,
            optimizer,
            criterion,
            op,
            batch: 0,
            training,
            precision,
            warm: false,
            next: 0,
            eager: LossTotals::default(),
            read: dev.loss_totals()?,
        })
    }

    /// One train step on a batch. The loss is not read back: see [`GraphedTrainStep::loss`].
    /// A bad batch (wrong length, a non-finite input, a label out of range) is an error before
    /// anything runs.
    pub fn step(&mut self, x: &N::Input, labels: &[usize]) -> Result<()> {
        let n = x.len();
        let state = self.net.state();
        state.check_input(n, x.as_slice())?;
        state.check_labels(n, labels, self.op.classes)?;
        let precision = self.net.device().precision();
        if n != self.batch || self.net.is_training() != self.training || precision != self.precision {
            self.drop_graphs()?;
            (self.batch, self.training, self.precision) = (n, self.net.is_training(), precision);
        }
        if !self.warm {
            // Sizes every workspace and creates the optimizer's state: a capture may not allocate.
            let out = self.net.train_step_with(x, labels, self.criterion, &mut self.optimizer)?;
            self.eager.loss_sum += out.loss as f64;
            self.eager.correct += out.correct as u64;
            self.eager.samples += n as u64;
            self.eager.steps += 1;
            self.warm = true;
            return Ok(());
        }
        let k = self.next;
        self.next ^= 1;
        self.done[k].synchronize().map_err(|e| Error::Backend(format!("CUDA: waiting for a step's graph: {e:?}")))?;
        self.stage(k, x.as_slice(), labels)?;
        self.upload(k)?;
        let dev = self.net.device().clone();
        let host = self.pinned.bytes_mut(k)?.as_mut_ptr();
        match &self.graphs[k] {
            None => {
                dev.begin_capture(host)?;
                if let Err(e) = self.issue(k) {
                    dev.abort_capture();
                    return Err(e);
                }
                let (graph, shape) = dev.end_capture()?;
                self.graphs[k] = Some(Captured { graph, shape });
            }
            Some(captured) => {
                let want = captured.shape;
                dev.begin_replay(host);
                let issued = self.issue(k);
                let shape = dev.end_replay();
                issued?;
                if shape != want {
                    self.drop_graphs()?;
                    return Err(Error::Backend(format!(
                        "CUDA: a replayed train step issued {shape:?}, but its graph holds {want:?}; the graphs were dropped, the next step captures again"
                    )));
                }
            }
        }
        let captured = self.graphs[k].as_ref().expect("captured above");
        dev.launch_graph(&captured.graph)?;
        self.done[k].record(dev.stream()).map_err(|e| Error::Backend(format!("CUDA: recording a step's event: {e:?}")))
    }

    /// The step's work as the graph holds it: the batch copied in from staging buffer `k`, then
    /// `zero_grad`, forward, loss, backward and the optimizer's update.
    fn issue(&mut self, k: usize) -> Result<()> {
        let n = self.batch;
        let (x_bytes, label_bytes) = self.batch_bytes(n);
        let dev = self.net.device().clone();
        let staging = self.staging[k].ptr;
        let state = self.net.state_mut();
        {
            let (x, labels) = state.batch_views(n)?;
            dev.copy_in_graph(x.ptr, staging, x_bytes)?;
            dev.copy_in_graph(labels.ptr, staging + x_bytes as u64, label_bytes)?;
        }
        state.zero_grad()?;
        state.forward_in_place(n, N::forward_pass)?;
        state.cross_entropy_in_place(&self.op, true)?;
        state.backward(None, N::backward_pass)?;
        self.optimizer.step(state.params())
    }

    /// Bytes of a batch of `n`'s inputs and of its labels.
    fn batch_bytes(&self, n: usize) -> (usize, usize) {
        (4 * n * <N::Input as Batch>::SAMPLE_LEN, 4 * n)
    }

    /// Writes the batch into pinned memory `k` (grown, with staging buffer `k`, if it is too
    /// small, which only happens before that graph is captured: a new batch size drops the graphs).
    fn stage(&mut self, k: usize, x: &[f32], labels: &[usize]) -> Result<()> {
        let (x_bytes, label_bytes) = self.batch_bytes(labels.len());
        let len = STEP_SCALAR_BYTES + x_bytes + label_bytes;
        if self.pinned.mem[k].len() < len {
            debug_assert!(self.graphs[k].is_none(), "a captured graph copies from this memory");
            self.pinned.mem[k] = self.net.device().alloc_pinned(len)?;
        }
        if self.staging[k].len < x_bytes + label_bytes {
            debug_assert!(self.graphs[k].is_none(), "a captured graph copies from this buffer");
            let dev = self.net.device();
            self.staging[k] = CudaBuf::new(dev.stream(), x_bytes + label_bytes)?;
            // Allocated in the device stream's order; the second stream writes it next.
            dev.synchronize()?;
        }
        let bytes = self.pinned.bytes_mut(k)?;
        for (dst, v) in bytes[STEP_SCALAR_BYTES..].chunks_exact_mut(4).zip(x) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        let at = STEP_SCALAR_BYTES + x_bytes;
        for (dst, &l) in bytes[at..at + label_bytes].chunks_exact_mut(4).zip(labels) {
            dst.copy_from_slice(&(l as u32).to_ne_bytes());
        }
        Ok(())
    }

    /// Uploads the batch in pinned memory `k` to staging buffer `k` on the second stream; the
    /// device's stream waits for it before what is enqueued next (graph `k`).
    fn upload(&mut self, k: usize) -> Result<()> {
        let (x_bytes, label_bytes) = self.batch_bytes(self.batch);
        let src = &self.pinned.bytes(k)?[STEP_SCALAR_BYTES..STEP_SCALAR_BYTES + x_bytes + label_bytes];
        // SAFETY: staging `k` holds the batch (`stage` grew it); graph `k`, its only reader, has
        // finished its previous step (`done[k]` was waited for), and pinned memory `k` is not
        // written again before that graph's next step has run, which comes after this copy.
        unsafe { self.net.device().upload_on(&self.side, self.staging[k].ptr, src, &self.uploaded[k]) }
    }

    /// The losses of the steps since the last call (or since the start): waits for the device.
    pub fn loss(&mut self) -> Result<StepLosses> {
        let now = self.net.device().loss_totals()?;
        let (read, eager) = (self.read, self.eager);
        (self.read, self.eager) = (now, LossTotals::default());
        let steps = now.steps - read.steps + eager.steps;
        let loss_sum = now.loss_sum - read.loss_sum + eager.loss_sum;
        Ok(StepLosses {
            loss: if steps == 0 { f32::NAN } else { (loss_sum / steps as f64) as f32 },
            correct: (now.correct - read.correct + eager.correct) as usize,
            samples: (now.samples - read.samples + eager.samples) as usize,
            steps: steps as usize,
        })
    }

    /// Sets the optimizer's learning rate for the next steps, without capturing again (the
    /// kernels read it from device memory).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.optimizer.set_learning_rate(lr);
    }

    /// Whether the next step replays a captured graph (false before the graphs are captured,
    /// and after they were dropped).
    pub fn is_captured(&self) -> bool {
        self.graphs[self.next].is_some()
    }

    /// The network (its parameters as of the last step once the device has run it; reading
    /// them waits for it).
    pub fn net(&self) -> &N {
        &self.net
    }

    /// The network, to change or to evaluate: drops the graphs, which hold its buffers' addresses.
    pub fn net_mut(&mut self) -> Result<&mut N> {
        self.drop_graphs()?;
        Ok(&mut self.net)
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The optimizer, to change: drops the graphs, which hold its buffers' addresses.
    pub fn optimizer_mut(&mut self) -> Result<&mut O> {
        self.drop_graphs()?;
        Ok(&mut self.optimizer)
    }

    /// The network and the optimizer, once the device has finished every step.
    pub fn into_parts(mut self) -> Result<(N, O)> {
        self.drop_graphs()?;
        let GraphedTrainStep { net, optimizer, .. } = self;
        Ok((net, optimizer))
    }

    /// Waits for the device, then drops the graphs: the next step runs eagerly and captures again.
    fn drop_graphs(&mut self) -> Result<()> {
        self.net.device().synchronize()?;
        self.graphs = [None, None];
        self.warm = false;
        self.next = 0;
        Ok(())
    }
}
