//! The runtime state of a network: its parameters, gradients and running statistics on the
//! device, the workspace its passes run in, and its mode. Every generated network type wraps
//! one `NetState`; the generic work (initialisation, validation of inputs, losses, access by
//! name) is done here once, and only the passes themselves are generated.


use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::spec::{Fold, Init, LayerSpec, NetSpec, Op, Slot, TensorKind, TensorSpec};
use crate::backend::Backend;
use crate::optim::{ParamLayout, ParamRange, Params};
use crate::ops::{BatchNorm, Conv2d, CrossEntropy, Dropout, LossOutput};
use crate::{Error, Result};

/// A generated forward or backward pass.
pub type PassFn<B> = fn(Pass<'_, B>) -> Result<()>;

/// The weights of layer `layer` as its forward kernel lays them out, when the network keeps
/// them (a function of the two fields, so that generated code can call it while it holds a
/// mutable view of the activations).
pub fn packed_weights<'a, B: Backend>(packed: &'a B::Buf<f32>, packed_at: &[Range<usize>], layer: usize) -> Option<B::Src<'a, f32>> {
    let range = packed_at.get(layer)?;
    (!range.is_empty()).then(|| B::src(packed, range.clone()))
}

/// Layer `layer`'s weights with the batch norm after it folded in (see `Fold`): weight then
/// bias, and the weights as its forward kernel lays them out, if it does.
pub fn folded_weights<'a, B: Backend>(packed: &'a B::Buf<f32>, folded_at: &[Range<usize>], layer: usize) -> (B::Src<'a, f32>, Option<B::Src<'a, f32>>) {
    let (wb, kernel) = (folded_at[2 * layer].clone(), folded_at[2 * layer + 1].clone());
    (B::src(packed, wb), (!kernel.is_empty()).then(|| B::src(packed, kernel)))
}

/// What a generated pass works on: the device, the batch size, and every buffer, borrowed
/// separately so the generated code can take a read view of one and a write view of another.
pub struct Pass<'a, B: Backend> {
    /// The device the kernels run on.
    pub dev: &'a B,
    /// Samples in the batch.
    pub n: usize,
    /// Train mode (batch statistics, dropout) or eval mode.
    pub training: bool,
    /// Seed and step of the dropout masks of this forward (see `ops::Dropout::key`).
    pub seed: u64,
    /// The network's forward count, which with `seed` keys the masks.
    pub step: u64,
    /// All parameters, flat, in `state_dict` order.
    pub params: &'a B::Buf<f32>,
    /// The parameters' gradients, laid out as the parameters.
    pub grads: &'a mut B::Buf<f32>,
    /// The running statistics of the batch norms.
    pub buffers: &'a mut B::Buf<f32>,
    /// `num_batches_tracked` of each batch-norm layer.
    pub counters: &'a mut [i64],
    /// Activations, per-sample slots.
    pub act: &'a mut B::Buf<f32>,
    /// Activation gradients, per-sample slots.
    pub grad: &'a mut B::Buf<f32>,
    /// What forwards save for backwards independently of the batch size (batch-norm statistics).
    pub saved: &'a mut B::Buf<f32>,
    /// Temporary space for the kernels (im2col, partial sums).
    pub scratch: &'a mut B::Buf<f32>,
    /// The weights laid out for the kernels (see [`Backend::pack`]), fresh for `params`.
    pub packed: &'a B::Buf<f32>,
    /// Per layer: its range in `packed` (empty: the kernel reads PyTorch's layout).
    pub packed_at: &'a [Range<usize>],
    /// Per layer, two ranges in `packed`: its weights with the batch norm after it folded in
    /// (weight then bias), and those laid out for its kernel (see [`folded_weights`]); empty
    /// for layers without a fold.
    pub folded_at: &'a [Range<usize>],
    /// Floats of `scratch` a pass may use.
    pub scratch_len: usize,
    /// Per layer: its parameter gradients are wanted (it has a parameter that is not frozen).
    pub dw: &'a [bool],
    /// Per layer: the gradient of its input is wanted (a layer before it has `dw`). Freezing
    /// a backbone thus stops the backward at the first trainable layer.
    pub dx: &'a [bool],
    /// The layers a forward runs (all but in a depth-first forward, see
    /// [`NetState::depth_first_chunk`]); a backward runs all.
    pub layers: Range<usize>,
    /// An eval forward that may run each pair of [`NetSpec::fusions`] as one kernel and fold
    /// each batch norm of [`NetSpec::folds`] into its convolution, where the backend does,
    /// leaving the activations in between unwritten.
    pub fuse: bool,
}

/// The buffers a pass runs in, sized for the largest batch seen so far.
struct Workspace<B: Backend> {
    capacity: usize,
    act: B::Buf<f32>,
    grad: B::Buf<f32>,
    saved: B::Buf<f32>,
    scratch: B::Buf<f32>,
    scratch_len: usize,
    labels: B::Buf<u32>,
    /// Regression targets (allocated on the first MSE loss).
    target: B::Buf<f32>,
    /// Host staging for labels, so that converting them allocates nothing after the first step.
    host_labels: Vec<u32>,
    /// One per thread of a depth-first eval forward (allocated by its first).
    groups: Vec<Group<B>>,
}

/// Activation bytes a depth-first chunk's widest layer (its input and output) may touch: a
/// server core's L2 cache (2 MiB on this Xeon; 1 MiB on Zen 4, where the rest spills to a fast
/// L3). Measured with 2 threads on the Xeon (eval forward, batch 128, median ms): the CIFAR
/// network 14.6 (chunks of 512 KiB), 13.3 (2 MiB), 13.4 (3 MiB), 16.2 (layer by layer);
/// MobileNetV2 for CIFAR 63.8, 29.8–33.5, 32.4–33.6 and 45.6: a chunk of one sample pays each
/// of its 150 kernels' fixed costs for one sample.
const CHUNK_BYTES: usize = 2 << 20;

/// Where a depth-first forward stops taking chunks through the network.
struct Split {
    /// The first layer that runs on the whole batch: the first whose weights are larger than a
    /// chunk and used fewer than 4 times per sample (a `Linear` of a classifier), as reading
    /// them once per chunk would cost more than the chunks save.
    split: usize,
    /// The tensors computed before the split that the layers after it read (the output, when
    /// every layer runs in chunks).
    crossing: Vec<Slot>,
    /// Samples per chunk: as many as keep the widest layer before the split (its input and
    /// output) within `CHUNK_BYTES`.
    chunk: usize,
}

impl Split {
    fn of(spec: &NetSpec) -> Split {
        let weight_bound = |l: &LayerSpec| l.params * size_of::<f32>() > CHUNK_BYTES && l.flops < 8 * l.params as u64;
        let split = spec.layers.iter().position(weight_bound).unwrap_or(spec.layers.len());
        let after = &spec.layers[split..];
        // Written after the split: an output slot that is not also an input (Flatten's output is
        // its input).
        let written = |s: &Slot| after.iter().any(|l| l.output_slot == Some(*s) && !l.inputs.contains(s));
        let mut crossing: Vec<Slot> = Vec::new();
        let read = after.iter().flat_map(|l| l.inputs.iter().copied());
        let wanted = if split == spec.layers.len() { vec![spec.output_slot] } else { read.collect() };
        for s in wanted {
            if s != spec.input_slot && !written(&s) && !crossing.contains(&s) {
                crossing.push(s);
            }
        }
        let widest = spec.layers[..split].iter().map(|l| l.inputs.iter().map(|s| s.len).sum::<usize>() + l.output.iter().product::<usize>()).max().unwrap_or(0);
        let chunk = (CHUNK_BYTES / (widest * size_of::<f32>()).max(1)).max(1);
        Split { split, crossing, chunk }
    }
}

/// One thread's share of a depth-first eval forward (see [`Backend::depth_first`]): an arena
/// for a chunk of samples, and its own copies of what a pass borrows mutably.
struct Group<B: Backend> {
    act: B::Buf<f32>,
    /// Empty: an eval forward writes no gradient.
    grad: B::Buf<f32>,
    grads: B::Buf<f32>,
    saved: B::Buf<f32>,
    scratch: B::Buf<f32>,
    scratch_len: usize,
    buffers: B::Buf<f32>,
    counters: Vec<i64>,
    /// What the layers after the split read (see [`Split`]), chunk after chunk, copied into
    /// the main arena at the end.
    out: Vec<f32>,
}

/// The last forward, which a backward differentiates.
struct LastForward<B: Backend> {
    n: usize,
    training: bool,
    step: u64,
    /// [`NetState::params_version`] when it ran: an activation recomputed from the weights is
    /// that forward's only while they have not changed since.
    params_version: u64,
    /// A depth-first forward left only its input and output in the arena: this pass recomputes
    /// the rest when a backward or an activation asks for it.
    recompute: Option<PassFn<B>>,
}

// By hand: a derive would ask for `B: Copy`.
impl<B: Backend> Clone for LastForward<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for LastForward<B> {}

/// A network's parameters, gradients, running statistics, mode and workspace on a device `B`.
pub struct NetState<B: Backend> {
    dev: B,
    spec: &'static NetSpec,
    params: B::Buf<f32>,
    grads: B::Buf<f32>,
    buffers: B::Buf<f32>,
    counters: Vec<i64>,
    ws: Workspace<B>,
    training: bool,
    seed: u64,
    /// Training forwards so far: the step of the dropout masks.
    step: u64,
    last: Option<LastForward<B>>,
    /// Per tensor of `spec.tensors`: frozen (no gradient, not updated).
    frozen: Vec<bool>,
    /// Per layer: the backward computes its parameter gradients / its input gradient.
    want_dw: Vec<bool>,
    want_dx: Vec<bool>,
    /// Every parameter tensor's range in the flat buffers, and whether it is frozen.
    param_ranges: Vec<ParamRange>,
    /// Counts the changes of the parameters (optimizer steps, writes, loads).
    params_version: u64,
    /// The weights laid out for the forward kernels, per layer at `packed_at`, as they were
    /// at `params_version == packed_version`: packed once, not on every forward (nor, in a
    /// depth-first forward, on every chunk).
    packed: B::Buf<f32>,
    packed_at: Vec<Range<usize>>,
    packed_version: Option<u64>,
    /// The batch norms an eval forward folds into their convolutions on this backend (none
    /// where it does not), their weights in `packed` at `folded_at` (two ranges per layer, see
    /// [`folded_weights`]), folded at `folded_version` from the running statistics in
    /// `fold_stats.0` (`.1`: the statistics now, read before each eval forward).
    folds: Vec<Fold>,
    folded_at: Vec<Range<usize>>,
    folded_version: Option<u64>,
    fold_stats: (Vec<f32>, Vec<f32>),
    /// How an eval forward of a large batch runs depth-first.
    depth_first: Split,
}

impl<B: Backend> NetState<B> {
    /// A network with PyTorch's default initialisation drawn from `seed`, in train mode (as a
    /// new `nn.Module` is).
    pub fn new(dev: &B, spec: &'static NetSpec, seed: u64) -> Result<Self> {
        crate::threads::adopt_current_thread();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut host_params = vec![0.0f32; spec.param_len];
        let mut host_buffers = vec![0.0f32; spec.buffer_len];
        for t in spec.tensors {
            let (dst, init) = match t.kind {
                TensorKind::Param { offset, init } => (&mut host_params[offset..offset + t.numel()], init),
                TensorKind::Buffer { offset, init } => (&mut host_buffers[offset..offset + t.numel()], init),
                TensorKind::Counter { .. } => continue,
            };
            match init {
                Init::FanIn(fan_in) => {
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    dst.iter_mut().for_each(|v| *v = rng.random_range(-bound..bound));
                }
                Init::Zeros => dst.fill(0.0),
                Init::Ones => dst.fill(1.0),
            }
        }
        let mut params = dev.alloc(spec.param_len)?;
        dev.upload(&mut params, 0, &host_params)?;
        let mut buffers = dev.alloc(spec.buffer_len)?;
        dev.upload(&mut buffers, 0, &host_buffers)?;
        let mut packed_len = 0usize;
        let packed_at = spec
            .layers
            .iter()
            .map(|l| {
                // Each layer's weights start a cache line, as the buffer does (its kernels'
                // vector loads of them then never straddle two lines).
                let start = packed_len.next_multiple_of(16);
                packed_len = start + dev.packed_len(&l.op);
                start..packed_len
            })
            .collect();
        let folds: Vec<Fold> = if dev.folds_batch_norm() { spec.folds.to_vec() } else { Vec::new() };
        let mut folded_at = vec![0..0; 2 * spec.layers.len()];
        for f in &folds {
            if let Op::Conv2d(op) = spec.layers[f.conv].op {
                let wb = packed_len.next_multiple_of(16)..packed_len.next_multiple_of(16) + op.weight_len() + op.c_out;
                let kernel = wb.end.next_multiple_of(16)..wb.end.next_multiple_of(16) + dev.packed_len(&Op::Conv2d(op));
                packed_len = kernel.end;
                (folded_at[2 * f.conv], folded_at[2 * f.conv + 1]) = (wb, kernel);
            }
        }
        let mut state = NetState {
            dev: dev.clone(),
            spec,
            params,
            grads: dev.alloc(spec.param_len)?,
            buffers,
            counters: vec![0; spec.counters],
            ws: Workspace {
                capacity: 0,
                act: dev.alloc(0)?,
                grad: dev.alloc(0)?,
                saved: dev.alloc(spec.saved_len)?,
                scratch: dev.alloc(0)?,
                scratch_len: 0,
                labels: dev.alloc(0)?,
                target: dev.alloc(0)?,
                host_labels: Vec::new(),
                groups: Vec::new(),
            },
            training: true,
            seed,
            step: 0,
            last: None,
            frozen: vec![false; spec.tensors.len()],
            want_dw: Vec::new(),
            want_dx: Vec::new(),
            param_ranges: Vec::new(),
            params_version: 0,
            packed: dev.alloc(packed_len)?,
            packed_at,
            packed_version: None,
            folds,
            folded_at,
            folded_version: None,
            fold_stats: (Vec::new(), Vec::new()),
            depth_first: Split::of(spec),
        };
        state.update_frozen();
        Ok(state)
    }

    /// The network's tables.
    pub fn spec(&self) -> &'static NetSpec {
        self.spec
    }

    /// The device the state lives on.
    pub fn device(&self) -> &B {
        &self.dev
    }

    /// Whether in train mode (`model.training`).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Train mode (`model.train()`) or eval mode (`model.eval()`).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// Grows the workspace to hold a batch of `n` (allocates only when `n` is the largest yet).
    pub fn reserve(&mut self, n: usize) -> Result<()> {
        if n <= self.ws.capacity {
            return Ok(());
        }
        let (dev, spec, ws) = (&self.dev, self.spec, &mut self.ws);
        ws.act = dev.alloc(n * spec.act_len)?;
        ws.grad = dev.alloc(n * spec.grad_len)?;
        ws.scratch_len = spec.layers.iter().map(|l| dev.scratch_len(&l.op, n)).max().unwrap_or(0);
        ws.scratch = dev.alloc(ws.scratch_len)?;
        ws.labels = dev.alloc(n)?;
        ws.host_labels.reserve(n);
        ws.capacity = n;
        Ok(())
    }

    fn pass(&mut self, n: usize, training: bool, step: u64) -> Pass<'_, B> {
        Pass {
            dev: &self.dev,
            n,
            training,
            seed: self.seed,
            step,
            params: &self.params,
            grads: &mut self.grads,
            buffers: &mut self.buffers,
            counters: &mut self.counters,
            act: &mut self.ws.act,
            grad: &mut self.ws.grad,
            saved: &mut self.ws.saved,
            scratch: &mut self.ws.scratch,
            scratch_len: self.ws.scratch_len,
            packed: &self.packed,
            packed_at: &self.packed_at,
            folded_at: &self.folded_at,
            dw: &self.want_dw,
            dx: &self.want_dx,
            layers: 0..self.spec.layers.len(),
            fuse: false,
        }
    }

    /// Checks a batch of `n` samples of `x` before it reaches a kernel.
    pub(crate) fn check_input(&self, n: usize, x: &[f32]) -> Result<()> {
        let spec = self.spec;
        if n == 0 {
            return Err(Error::bad_input(format!("{}: the batch is empty (0 samples)", spec.name)));
        }
        if x.len() != n * spec.input_len() {
            return Err(Error::bad_input(format!(
                "{}: a batch of {n} samples shaped {:?} needs {} values, got {}",
                spec.name,
                spec.input,
                n * spec.input_len(),
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            let (sample, at) = (i / spec.input_len(), i % spec.input_len());
            return Err(Error::bad_input(format!(
                "{}: the input holds {} at sample {sample}, element {at}; check the data and its normalisation",
                spec.name, x[i]
            )));
        }
        if self.training {
            for layer in spec.layers {
                if let Op::BatchNorm(bn) = layer.op
                    && n * bn.spatial <= 1
                {
                    return Err(Error::bad_input(format!(
                        "{}: layer `{}` ({}) needs more than 1 value per channel in train mode, but a batch of {n} gives {}; \
                         use a larger batch or call eval()",
                        spec.name,
                        layer.name,
                        layer.display,
                        n * bn.spatial
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs `forward` on a batch of `n` samples `x` in the current mode.
    pub fn forward(&mut self, n: usize, x: &[f32], forward: PassFn<B>) -> Result<()> {
        self.check_input(n, x)?;
        self.reserve(n)?;
        let slot = self.spec.input_slot;
        self.dev.upload(&mut self.ws.act, slot.offset * n, x)?;
        match self.depth_first_chunk(n) {
            Some(chunk) => {
                // Eval mode only, where the step does not move.
                let step = self.step;
                self.pack_weights()?;
                self.forward_depth_first(n, x, chunk, step, forward)?;
                self.last = Some(LastForward { n, training: false, step, params_version: self.params_version, recompute: Some(forward) });
                Ok(())
            }
            None => self.forward_in_place(n, forward),
        }
    }

    /// [`NetState::forward`] of the batch of `n` already in the input slot, layer by layer: what
    /// a train step captured into a CUDA graph runs after its graph copied the batch there
    /// (`crate::graph`), the checks and the upload done before.
    pub(crate) fn forward_in_place(&mut self, n: usize, forward: PassFn<B>) -> Result<()> {
        let training = self.training;
        if training {
            // Wrapping: the step only keys the dropout masks, and a checkpoint may hold any u64.
            self.step = self.step.wrapping_add(1);
        }
        let step = self.step;
        self.pack_weights()?;
        forward(Pass { fuse: !training, ..self.pass(n, training, step) })?;
        // Layers fused into one kernel left their inner activations unwritten.
        let recompute = (!training && self.fuses_any()).then_some(forward);
        self.last = Some(LastForward { n, training, step, params_version: self.params_version, recompute });
        Ok(())
    }

    /// Where a batch of `n` goes on the device (reserved first): the input slot of the
    /// activations and the labels. A captured train step's graph copies its batch there.
    #[cfg(feature = "cuda")]
    pub(crate) fn batch_views(&mut self, n: usize) -> Result<(B::Dst<'_, f32>, B::Dst<'_, u32>)> {
        self.reserve(n)?;
        let slot = self.spec.input_slot;
        Ok((B::dst(&mut self.ws.act, slot.at(n)), B::dst(&mut self.ws.labels, 0..n)))
    }

    /// Whether an eval forward on this backend runs some of the network's layers as one kernel
    /// (see [`NetSpec::fusions`]).
    fn fuses_any(&self) -> bool {
        !self.folds.is_empty()
            || self.spec.fusions.iter().any(|&[conv, _]| matches!(&self.spec.layers[conv].op, Op::Conv2d(op) if self.dev.fuses_conv2d_relu_max_pool(op, false)))
    }

    /// Lays out the weights for the forward kernels again if they changed since the last time;
    /// in eval mode, folds the batch norms in again if their weights or running statistics did.
    fn pack_weights(&mut self) -> Result<()> {
        if self.packed_version != Some(self.params_version) {
            for (layer, at) in self.spec.layers.iter().zip(&self.packed_at) {
                if !at.is_empty() {
                    self.dev.pack(&layer.op, B::src(&self.params, layer.param_range.clone()), B::dst(&mut self.packed, at.clone()))?;
                }
            }
            self.packed_version = Some(self.params_version);
        }
        if self.training || self.folds.is_empty() {
            return Ok(());
        }
        // The running statistics change in train-mode forwards and loads: read them (a few
        // floats per channel) and fold again only if they, or the weights, changed.
        let (seen, mut now) = std::mem::take(&mut self.fold_stats);
        now.resize(self.folds.iter().map(|f| 2 * self.bn_op(f).c).sum(), 0.0);
        let mut at = 0;
        for f in &self.folds {
            let len = 2 * self.bn_op(f).c;
            self.dev.download(&self.buffers, f.running, &mut now[at..at + len])?;
            at += len;
        }
        if self.folded_version == Some(self.params_version) && seen == now {
            self.fold_stats = (seen, now);
            return Ok(());
        }
        let mut at = 0;
        for f in self.folds.clone() {
            let bn = self.bn_op(&f);
            let stats = &now[at..at + 2 * bn.c];
            at += 2 * bn.c;
            let Op::Conv2d(conv) = self.spec.layers[f.conv].op else { continue };
            let folded = self.folded(&f, conv, bn, stats)?;
            let (wb, kernel) = (self.folded_at[2 * f.conv].clone(), self.folded_at[2 * f.conv + 1].clone());
            self.dev.upload(&mut self.packed, wb.start, &folded)?;
            if !kernel.is_empty() {
                let (wb, kernel) = B::io(&mut self.packed, wb, kernel);
                self.dev.pack(&Op::Conv2d(Conv2d { bias: true, ..conv }), wb, kernel)?;
            }
        }
        (self.fold_stats, self.folded_version) = ((now, seen), Some(self.params_version));
        Ok(())
    }

    /// The batch norm of a fold.
    fn bn_op(&self, f: &Fold) -> BatchNorm {
        match self.spec.layers[f.bn].op {
            Op::BatchNorm(op) => op,
            _ => unreachable!("a fold's second layer is a batch norm (the macro checked)"),
        }
    }

    /// The weight and bias of a fold's convolution with its batch norm folded in, as the batch
    /// norm's eval forward computes it (y = x·scale + shift, scale = γ / √(var + eps), shift =
    /// β − mean·scale): w·scale, and b·scale + shift.
    fn folded(&self, f: &Fold, conv: Conv2d, bn: BatchNorm, stats: &[f32]) -> Result<Vec<f32>> {
        let layers = self.spec.layers;
        let mut wb = vec![0.0; conv.weight_len() + conv.c_out];
        let at = layers[f.conv].param_range.clone();
        self.dev.download(&self.params, at.start, &mut wb[..at.len()])?;
        let mut affine = vec![0.0; bn.param_len()];
        self.dev.download(&self.params, layers[f.bn].param_range.start, &mut affine)?;
        let (mean, var) = stats.split_at(bn.c);
        let (w, b) = wb.split_at_mut(conv.weight_len());
        for (co, (w, b)) in w.chunks_exact_mut(conv.weight_len() / conv.c_out).zip(b.iter_mut()).enumerate() {
            let (gamma, beta) = if bn.affine { (affine[co], affine[bn.c + co]) } else { (1.0, 0.0) };
            let scale = 1.0 / (var[co] + bn.eps).sqrt() * gamma;
            let shift = beta - mean[co] * scale;
            w.iter_mut().for_each(|w| *w *= scale);
            // Without a bias of its own the convolution's is 0 (wb holds only its weight).
            *b = if conv.bias { *b * scale + shift } else { shift };
        }
        Ok(wb)
    }

    /// Samples per chunk when a forward of `n` samples runs depth-first (see
    /// [`Backend::depth_first`]), or `None` when it runs layer by layer: in train mode (the
    /// backward needs every activation), on a GPU, when the network starts with a layer whose
    /// weights outweigh its work, and when the batch is one chunk anyway. A depth-first forward
    /// keeps only its output; a backward or an activation asked for afterwards recomputes the
    /// rest, layer by layer.
    pub fn depth_first_chunk(&self, n: usize) -> Option<usize> {
        if self.training || !self.dev.depth_first() || self.depth_first.split == 0 {
            return None;
        }
        let chunk = self.depth_first.chunk;
        (n > chunk).then_some(chunk)
    }

    /// The eval forward of `n` samples, depth-first: one group of samples per thread, each
    /// taken through the layers before the split `chunk` samples at a time in the group's own
    /// arena; what the layers after it read is then copied into the main arena (whose input
    /// slot already holds `x`), where they run on the whole batch.
    fn forward_depth_first(&mut self, n: usize, x: &[f32], chunk: usize, step: u64, forward: PassFn<B>) -> Result<()> {
        let groups = rayon::current_num_threads().clamp(1, n.div_ceil(chunk));
        let per = n.div_ceil(groups);
        self.reserve_groups(groups, chunk, per)?;
        let (input, split) = (self.spec.input_slot, self.depth_first.split);
        let NetState { dev, params, buffers, counters, ws, seed, want_dw, want_dx, packed, packed_at, folded_at, depth_first, .. } = self;
        let groups = &mut ws.groups[..groups];
        for g in groups.iter_mut() {
            let len = B::len(buffers);
            dev.copy(B::src(buffers, 0..len), B::dst(&mut g.buffers, 0..len))?;
            g.counters.copy_from_slice(counters);
        }
        let (dev, params, seed, packed, packed_at, folded_at) = (&*dev, &*params, *seed, &*packed, packed_at.as_slice(), folded_at.as_slice());
        let (dw, dx, crossing) = (want_dw.as_slice(), want_dx.as_slice(), depth_first.crossing.as_slice());
        let chunks = |i: usize| {
            let samples = (i * per).min(n)..((i + 1) * per).min(n);
            samples.clone().step_by(chunk).map(move |first| (first, chunk.min(samples.end - first)))
        };
        groups.par_iter_mut().enumerate().try_for_each(|(i, g)| -> Result<()> {
            g.out.clear();
            for (first, c) in chunks(i) {
                dev.upload(&mut g.act, input.offset * c, &x[first * input.len..(first + c) * input.len])?;
                let (act, grad, grads, buffers, counters, saved, scratch) = (&mut g.act, &mut g.grad, &mut g.grads, &mut g.buffers, &mut g.counters, &mut g.saved, &mut g.scratch);
                let scratch_len = g.scratch_len;
                forward(Pass { dev, n: c, training: false, seed, step, params, grads, buffers, counters, act, grad, saved, scratch, scratch_len, packed, packed_at, folded_at, dw, dx, layers: 0..split, fuse: true })?;
                for slot in crossing {
                    let at = g.out.len();
                    g.out.resize(at + c * slot.len, 0.0);
                    dev.download(&g.act, slot.offset * c, &mut g.out[at..])?;
                }
            }
            Ok(())
        })?;
        for (i, g) in groups.iter().enumerate() {
            let mut staged = g.out.as_slice();
            for (first, c) in chunks(i) {
                for slot in crossing {
                    let (part, rest) = staged.split_at(c * slot.len);
                    dev.upload(&mut ws.act, slot.offset * n + first * slot.len, part)?;
                    staged = rest;
                }
            }
        }
        let layers = self.spec.layers.len();
        if split < layers {
            forward(Pass { layers: split..layers, fuse: true, ..self.pass(n, false, step) })?;
        }
        Ok(())
    }

    /// Makes `groups` groups of depth-first buffers for chunks of `chunk` samples and groups of
    /// up to `per` (allocates only when more are needed than before).
    fn reserve_groups(&mut self, groups: usize, chunk: usize, per: usize) -> Result<()> {
        let (dev, spec, ws) = (&self.dev, self.spec, &mut self.ws);
        let split = self.depth_first.split;
        while ws.groups.len() < groups {
            let scratch_len = spec.layers[..split].iter().map(|l| dev.scratch_len(&l.op, chunk)).max().unwrap_or(0);
            ws.groups.push(Group {
                act: dev.alloc(chunk * spec.act_len)?,
                grad: dev.alloc(0)?,
                grads: dev.alloc(0)?,
                saved: dev.alloc(spec.saved_len)?,
                scratch: dev.alloc(scratch_len)?,
                scratch_len,
                buffers: dev.alloc(spec.buffer_len)?,
                counters: vec![0; spec.counters],
                out: Vec::new(),
            });
        }
        let staged: usize = self.depth_first.crossing.iter().map(|s| s.len).sum();
        for g in &mut ws.groups[..groups] {
            g.out.reserve(per * staged);
        }
        Ok(())
    }

    fn last_forward(&self, what: &str) -> Result<LastForward<B>> {
        self.last.ok_or_else(|| Error::bad_input(format!("{}: {what} needs a forward first", self.spec.name)))
    }

    /// Refuses to recompute the activations of the last forward once its weights changed.
    fn same_weights(&self, last: &LastForward<B>, what: &str) -> Result<()> {
        if self.params_version == last.params_version {
            return Ok(());
        }
        Err(Error::bad_input(format!(
            "{}: {what} needs the activations of the last forward, which it did not keep (an eval forward on the CPU keeps only its \
             output when it runs a large batch depth-first or fuses layers) and which cannot be recomputed, as the weights have changed \
             since (an optimizer step or a load): run a forward first",
            self.spec.name
        )))
    }

    /// Reads the output of the last forward into `out`.
    pub fn read_output(&self, out: &mut [f32]) -> Result<()> {
        let last = self.last_forward("reading the output")?;
        let slot = self.spec.output_slot;
        self.dev.download(&self.ws.act, slot.offset * last.n, &mut out[..slot.len * last.n])
    }

    /// Back-propagates from the gradient of the output (given, or left by a loss) through the
    /// last forward, accumulating into the parameter gradients.
    pub fn backward(&mut self, dy: Option<&[f32]>, backward: PassFn<B>) -> Result<()> {
        let last = self.last_forward("backward")?;
        if let Some(forward) = last.recompute {
            // A depth-first forward kept only its input and output: fill in the rest, layer by layer.
            self.same_weights(&last, "backward")?;
            forward(self.pass(last.n, last.training, last.step))?;
            self.last = Some(LastForward { recompute: None, ..last });
        }
        if let Some(dy) = dy {
            let slot = self.spec.output_grad_slot;
            if dy.len() != last.n * slot.len {
                return Err(Error::bad_input(format!(
                    "{}: the output gradient has {} values, but the last forward produced {} ({} samples of {:?})",
                    self.spec.name,
                    dy.len(),
                    last.n * slot.len,
                    last.n,
                    self.spec.output
                )));
            }
            self.dev.upload(&mut self.ws.grad, slot.offset * last.n, dy)?;
        }
        // The weights laid out at the forward serve the backward's kernels too, unless the
        // weights changed since (a load or an optimizer step between the two): then none are.
        let fresh = self.packed_version == Some(self.params_version);
        let mut pass = self.pass(last.n, last.training, last.step);
        if !fresh {
            pass.packed_at = &[];
        }
        backward(pass)
    }

    /// Sets every parameter gradient to zero (PyTorch's `zero_grad`).
    pub fn zero_grad(&mut self) -> Result<()> {
        let len = B::len(&self.grads);
        self.dev.fill(B::dst(&mut self.grads, 0..len), 0.0)
    }

    /// Cross-entropy of the last forward's output against `labels`; with `backward`, also writes
    /// the output gradient for [`NetState::backward`].
    pub fn cross_entropy(&mut self, labels: &[usize], op: &CrossEntropy, backward: bool) -> Result<LossOutput> {
        let last = self.last_forward("a loss")?;
        self.check_labels(last.n, labels, op.classes)?;
        self.upload_labels(labels)?;
        self.cross_entropy_in_place(op, backward)
    }

    /// [`NetState::cross_entropy`] against the labels already on the device (a captured train
    /// step's graph copied them there).
    pub(crate) fn cross_entropy_in_place(&mut self, op: &CrossEntropy, backward: bool) -> Result<LossOutput> {
        let last = self.last_forward("a loss")?;
        let (out, grad) = (self.spec.output_slot, self.spec.output_grad_slot);
        let n = last.n;
        let dlogits = if backward { Some(B::dst(&mut self.ws.grad, grad.at(n))) } else { None };
        self.dev.cross_entropy(op, n, B::src(&self.ws.act, out.at(n)), B::src(&self.ws.labels, 0..n), dlogits)
    }

    /// Mean squared error of the last forward's output against `target`; with `backward`, also
    /// writes the output gradient.
    pub fn mse(&mut self, target: &[f32], backward: bool) -> Result<f32> {
        let last = self.last_forward("a loss")?;
        let (out, grad) = (self.spec.output_slot, self.spec.output_grad_slot);
        let n = last.n;
        if target.len() != n * out.len {
            return Err(Error::bad_input(format!(
                "{}: the target has {} values, but the output has {} ({n} samples of {:?})",
                self.spec.name,
                target.len(),
                n * out.len,
                self.spec.output
            )));
        }
        if B::len(&self.ws.target) < target.len() {
            self.ws.target = self.dev.alloc(self.ws.capacity * out.len)?;
        }
        self.dev.upload(&mut self.ws.target, 0, target)?;
        let dy = if backward { Some(B::dst(&mut self.ws.grad, grad.at(n))) } else { None };
        self.dev.mse(n * out.len, B::src(&self.ws.act, out.at(n)), B::src(&self.ws.target, 0..target.len()), dy)
    }

    pub(crate) fn check_labels(&self, n: usize, labels: &[usize], classes: usize) -> Result<()> {
        if labels.len() != n {
            return Err(Error::bad_input(format!("{}: {} labels for a batch of {n} samples", self.spec.name, labels.len())));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
            return Err(Error::bad_input(format!(
                "{}: label {l} (sample {i}) is not a class: the network has {classes} outputs, so labels must be 0..={}",
                self.spec.name,
                classes - 1
            )));
        }
        Ok(())
    }

    fn upload_labels(&mut self, labels: &[usize]) -> Result<()> {
        let host = &mut self.ws.host_labels;
        host.clear();
        host.extend(labels.iter().map(|&l| l as u32));
        self.dev.upload(&mut self.ws.labels, 0, host)
    }

    /// The output of layer `index` (of [`NetSpec::layers`]) in the last forward, sample after
    /// sample (a copy from the device): what a PyTorch forward hook on that layer sees. A layer
    /// whose ReLU was fused into it kept no output of its own; it is recomputed from its kept
    /// inputs (and, for a convolution, the weights of that forward: if an optimizer step or a
    /// load changed them since, that is an error rather than a value the forward never saw).
    pub fn read_activation(&self, index: usize) -> Result<Vec<f32>> {
        let spec = self.spec;
        let layer = spec.layers.get(index).ok_or_else(|| Error::bad_input(format!("{}: no layer {index} (it has {})", spec.name, spec.layers.len())))?;
        let last = self.last_forward(&format!("the activation of `{}`", layer.name))?;
        match last.recompute {
            Some(forward) => {
                self.same_weights(&last, &format!("the activation of `{}`", layer.name))?;
                self.activation_in(&self.recomputed(&last, forward)?, layer, &last)
            }
            None => self.activation_in(&self.ws.act, layer, &last),
        }
    }

    /// The activations of a depth-first forward, recomputed layer by layer in a new arena from
    /// its input (`read_activation` only reads, so the workspace stays as it is).
    fn recomputed(&self, last: &LastForward<B>, forward: PassFn<B>) -> Result<B::Buf<f32>> {
        let (dev, spec, n) = (&self.dev, self.spec, last.n);
        let mut act = dev.alloc(n * spec.act_len)?;
        let input = spec.input_slot.at(n);
        let mut x = vec![0.0; input.len()];
        dev.download(&self.ws.act, input.start, &mut x)?;
        dev.upload(&mut act, input.start, &x)?;
        let mut buffers = dev.alloc(spec.buffer_len)?;
        dev.copy(B::src(&self.buffers, 0..spec.buffer_len), B::dst(&mut buffers, 0..spec.buffer_len))?;
        let scratch_len = self.ws.scratch_len;
        forward(Pass {
            dev,
            n,
            training: last.training,
            seed: self.seed,
            step: last.step,
            params: &self.params,
            grads: &mut dev.alloc(0)?,
            buffers: &mut buffers,
            counters: &mut self.counters.clone(),
            act: &mut act,
            grad: &mut dev.alloc(0)?,
            saved: &mut dev.alloc(spec.saved_len)?,
            scratch: &mut dev.alloc(scratch_len)?,
            scratch_len,
            packed: &self.packed,
            packed_at: &self.packed_at,
            folded_at: &self.folded_at,
            dw: &self.want_dw,
            dx: &self.want_dx,
            layers: 0..spec.layers.len(),
            fuse: false,
        })?;
        Ok(act)
    }

    /// The output of `layer` in the last forward, whose activations are in `act`.
    fn activation_in(&self, act: &B::Buf<f32>, layer: &LayerSpec, last: &LastForward<B>) -> Result<Vec<f32>> {
        let spec = self.spec;
        let n = last.n;
        let len: usize = layer.output.iter().product::<usize>() * n;
        let mut out = vec![0.0; len];
        if let Some(slot) = layer.output_slot {
            self.dev.download(act, slot.offset * n, &mut out)?;
            return Ok(out);
        }
        let mut y = self.dev.alloc::<f32>(len)?;
        let input = |k: usize| B::src(act, layer.inputs[k].at(n));
        match (&layer.op, layer.inputs.len()) {
            (Op::Conv2d(conv), 1) => {
                if self.params_version != last.params_version {
                    return Err(Error::bad_input(format!(
                        "{}: the output of `{}` is not kept (the ReLU fused into it rectifies it in place), and recomputing it needs the \
                         weights of the last forward, which have changed since (an optimizer step or a load): run a forward first",
                        spec.name, layer.name
                    )));
                }
                let scratch_len = self.dev.scratch_len(&layer.op, n);
                let mut scratch = self.dev.alloc::<f32>(scratch_len)?;
                let wb = B::src(&self.params, layer.param_range.clone());
                self.dev.conv2d_forward(conv, n, input(0), wb, None, B::dst(&mut y, 0..len), B::dst(&mut scratch, 0..scratch_len), false)?;
            }
            (Op::Add, 2) => self.dev.add(len, input(0), input(1), B::dst(&mut y, 0..len), false)?,
            _ => {
                return Err(Error::bad_input(format!(
                    "{}: the output of `{}` ({}) is not kept by the forward and cannot be recomputed",
                    spec.name, layer.name, layer.display
                )));
            }
        }
        self.dev.download(&y, 0, &mut out)?;
        Ok(out)
    }

    // ---- parameters and buffers by name ----

    fn find(&self, name: &str) -> Result<(usize, &'static TensorSpec)> {
        self.spec.tensors.iter().enumerate().find(|(_, t)| t.name == name).ok_or_else(|| Error::UnknownTensor {
            network: self.spec.name,
            name: name.to_string(),
            hint: crate::network::did_you_mean(name, self.spec.tensors.iter().map(|t| t.name)),
        })
    }

    /// The values of a parameter or buffer, as a flat vector (a copy from the device).
    pub fn read(&self, name: &str) -> Result<TensorValue> {
        let (_, t) = self.find(name)?;
        self.read_spec(t)
    }

    pub(crate) fn read_spec(&self, t: &TensorSpec) -> Result<TensorValue> {
        Ok(match t.kind {
            TensorKind::Param { offset, .. } => {
                let mut v = vec![0.0; t.numel()];
                self.dev.download(&self.params, offset, &mut v)?;
                TensorValue::F32(v)
            }
            TensorKind::Buffer { offset, .. } => {
                let mut v = vec![0.0; t.numel()];
                self.dev.download(&self.buffers, offset, &mut v)?;
                TensorValue::F32(v)
            }
            TensorKind::Counter { index } => TensorValue::I64(vec![self.counters[index]]),
        })
    }

    /// The gradient of a parameter (a copy from the device).
    pub fn read_grad(&self, name: &str) -> Result<Vec<f32>> {
        let (_, t) = self.find(name)?;
        match t.kind {
            TensorKind::Param { offset, .. } => {
                let mut v = vec![0.0; t.numel()];
                self.dev.download(&self.grads, offset, &mut v)?;
                Ok(v)
            }
            _ => Err(Error::bad_input(format!("{}: `{name}` is a buffer, not a parameter: it has no gradient", self.spec.name))),
        }
    }

    /// Overwrites a parameter or buffer; `value` must have exactly its number of elements.
    pub fn write(&mut self, name: &str, value: &TensorValue) -> Result<()> {
        let (_, t) = self.find(name)?;
        self.check_value(t, value.len(), value.is_int())?;
        self.write_spec(t, value)
    }

    pub(crate) fn check_value(&self, t: &TensorSpec, len: usize, is_int: bool) -> Result<()> {
        let want_int = matches!(t.kind, TensorKind::Counter { .. });
        if is_int != want_int {
            return Err(Error::bad_input(format!(
                "{}: `{}` holds {}, got {}",
                self.spec.name,
                t.name,
                if want_int { "int64" } else { "float32" },
                if is_int { "int64" } else { "float32" }
            )));
        }
        if len != t.numel() {
            return Err(Error::bad_input(format!("{}: `{}` has {} elements ({:?}), got {len}", self.spec.name, t.name, t.numel(), t.shape)));
        }
        Ok(())
    }

    pub(crate) fn write_spec(&mut self, t: &TensorSpec, value: &TensorValue) -> Result<()> {
        self.params_version += 1;
        match (t.kind, value) {
            (TensorKind::Param { offset, .. }, TensorValue::F32(v)) => self.dev.upload(&mut self.params, offset, v),
            (TensorKind::Buffer { offset, .. }, TensorValue::F32(v)) => self.dev.upload(&mut self.buffers, offset, v),
            (TensorKind::Counter { index }, TensorValue::I64(v)) => {
                self.counters[index] = v[0];
                Ok(())
            }
            _ => unreachable!("checked by check_value"),
        }
    }

    // ---- freezing ----

    /// Freezes (or unfreezes) every parameter whose name starts with `prefix` followed by a dot
    /// or the end of the name (`"features"` matches `features.0.weight`, not `features2.bias`).
    /// Returns how many tensors matched; none is an error naming the prefix.
    pub fn set_frozen(&mut self, prefix: &str, frozen: bool) -> Result<usize> {
        let matches = |name: &str| {
            prefix.is_empty() || name == prefix || (name.starts_with(prefix) && name[prefix.len()..].starts_with('.'))
        };
        let mut count = 0;
        for (i, t) in self.spec.tensors.iter().enumerate() {
            if matches!(t.kind, TensorKind::Param { .. }) && matches(t.name) {
                self.frozen[i] = frozen;
                count += 1;
            }
        }
        if count == 0 {
            return Err(Error::UnknownTensor {
                network: self.spec.name,
                name: format!("{prefix}.*"),
                hint: crate::network::did_you_mean(prefix, self.spec.layers.iter().map(|l| l.name)),
            });
        }
        self.update_frozen();
        Ok(count)
    }

    fn update_frozen(&mut self) {
        let spec = self.spec;
        self.want_dw = (0..spec.layers.len())
            .map(|l| spec.tensors.iter().enumerate().any(|(i, t)| t.layer == l && matches!(t.kind, TensorKind::Param { .. }) && !self.frozen[i]))
            .collect();
        let mut before = false;
        self.want_dx = self
            .want_dw
            .iter()
            .map(|&dw| {
                let wanted = before;
                before |= dw;
                wanted
            })
            .collect();
        self.param_ranges = spec
            .tensors
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.kind {
                TensorKind::Param { offset, .. } => Some(ParamRange { range: offset..offset + t.numel(), frozen: self.frozen[i] }),
                _ => None,
            })
            .collect();
    }

    /// Whether the parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> Result<bool> {
        let (i, _) = self.find(name)?;
        Ok(self.frozen[i])
    }

    /// What an optimizer step needs: the device, the parameters, their gradients, and every
    /// parameter tensor's range in those buffers.
    pub fn params(&mut self) -> Params<'_, B> {
        self.params_version += 1;
        Params { owner: self.spec.name, device: &self.dev, values: &mut self.params, grads: &mut self.grads, buffers: &mut self.buffers, tensors: &self.param_ranges }
    }

    /// How the parameters lie in the flat buffers, for checking or loading an optimizer's state.
    pub fn param_layout(&self) -> ParamLayout<'_, B> {
        ParamLayout { owner: self.spec.name, device: &self.dev, len: self.spec.param_len, tensors: &self.param_ranges }
    }

    /// What data-parallel training keeps equal across processes (see `crate::distributed`): the
    /// device, the parameters, their gradients, the running statistics and the batch counters.
    pub fn collective_view(&mut self) -> (&B, &mut B::Buf<f32>, &mut B::Buf<f32>, &mut B::Buf<f32>, &mut [i64]) {
        // A broadcast may overwrite the parameters.
        self.params_version += 1;
        (&self.dev, &mut self.params, &mut self.grads, &mut self.buffers, &mut self.counters)
    }

    /// How many parameter tensors the network has (an optimizer keeps a step count for each).
    pub fn param_tensors(&self) -> usize {
        self.param_ranges.len()
    }

    /// The seed the network was created with (it also seeds the dropout masks).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The seed and the step of the dropout masks: with the weights, what a checkpoint needs to
    /// continue a run exactly.
    pub fn rng_state(&self) -> (u64, u64) {
        (self.seed, self.step)
    }

    /// Restores what [`NetState::rng_state`] returned, so that the next dropout masks are those a
    /// run would have drawn next.
    pub fn set_rng_state(&mut self, seed: u64, step: u64) {
        (self.seed, self.step) = (seed, step);
    }

    /// The dropout key of the last forward's layer `layer`; for tests that rebuild a mask.
    pub fn dropout_key(&self, layer: u32) -> Option<u64> {
        self.last.filter(|l| l.training).map(|l| Dropout::key(self.seed, l.step, layer))
    }
}

/// The values of one state-dict tensor, flat.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorValue {
    /// A float32 parameter or running statistic.
    F32(Vec<f32>),
    /// An int64 counter (`num_batches_tracked`).
    I64(Vec<i64>),
}

impl TensorValue {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorValue::F32(v) => v.len(),
            TensorValue::I64(v) => v.len(),
        }
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is an int64 counter.
    pub fn is_int(&self) -> bool {
        matches!(self, TensorValue::I64(_))
    }

    /// The float values; an int64 tensor is an error.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorValue::F32(v) => Some(v),
            TensorValue::I64(_) => None,
        }
    }
}
