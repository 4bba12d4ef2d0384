//! The static description of a network that `network!` emits: its layers, its tensors under
//! their PyTorch names, and where every activation lives. The runtime's generic code (state
//! dicts, initialisation, summaries, workspace sizing) reads these tables; only the forward and
//! backward passes are generated as code.

use std::ops::Range;

pub use crate::ops::Op;

/// Everything `network!` knows about a network, as constants.
#[derive(Debug)]
pub struct NetSpec {
    /// The type's name, e.g. "ModelA".
    pub name: &'static str,
    /// Shape of one input sample, e.g. `[1, 28, 28]`.
    pub input: &'static [usize],
    /// Shape of one output sample, e.g. `[10]`.
    pub output: &'static [usize],
    /// Layers in execution order (blocks flattened; their names are dotted paths).
    pub layers: &'static [LayerSpec],
    /// Parameters and buffers in PyTorch's `state_dict` order.
    pub tensors: &'static [TensorSpec],
    /// The containers of the module tree (nested listings, repetitions, block uses) with their
    /// PyTorch class, for `print(model)`; layers are in [`NetSpec::layers`].
    pub modules: &'static [ModuleSpec],
    /// Floats of all parameters (the flat parameter and gradient buffers).
    pub param_len: usize,
    /// Floats of all running statistics.
    pub buffer_len: usize,
    /// Number of `num_batches_tracked` counters (one per batch-norm layer that tracks).
    pub counters: usize,
    /// Per sample: floats of the activation arena and of the gradient arena.
    pub act_len: usize,
    /// Per sample: floats of the gradient arena.
    pub grad_len: usize,
    /// Floats every forward saves for the backward independently of the batch size (batch-norm
    /// statistics).
    pub saved_len: usize,
    /// Where the input is written, and where the output and its gradient are read.
    pub input_slot: Slot,
    /// Where the output is read.
    pub output_slot: Slot,
    /// Where the loss writes the gradient of the output.
    pub output_grad_slot: Slot,
    /// Layers an eval forward may run as one kernel, by index in [`NetSpec::layers`]: a
    /// `Conv2d` (with its ReLU fused) and the `MaxPool2d(2, 2)` that alone reads that ReLU's
    /// output (see `Backend::conv2d_relu_max_pool_forward`).
    pub fusions: &'static [[usize; 2]],
    /// Batch norms an eval forward may fold into the convolution before them (see [`Fold`]).
    pub folds: &'static [Fold],
}

/// A `Conv2d` whose output only a `BatchNorm2d` with running statistics reads: an eval forward
/// (where `Backend::folds_batch_norm`) runs the convolution with weights `w·s` and bias
/// `b·s + β − mean·s`, `s = γ / √(var + eps)`, and writes the batch norm's output directly.
#[derive(Clone, Copy, Debug)]
pub struct Fold {
    /// The convolution's layer (in [`NetSpec::layers`]).
    pub conv: usize,
    /// The batch norm's layer.
    pub bn: usize,
    /// Where the batch norm's running mean starts in the flat buffer of running statistics (its
    /// running variance follows).
    pub running: usize,
}

impl NetSpec {
    /// Elements of one input sample.
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Elements of one output sample.
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Trainable elements (PyTorch's `sum(p.numel() for p in model.parameters())`).
    pub fn parameters(&self) -> usize {
        self.param_len
    }

    /// The parameter or buffer called `name` (`"cnn1.weight"`), if there is one.
    pub fn tensor(&self, name: &str) -> Option<&'static TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Where one tensor of a batch lives in an arena: `len` elements per sample, starting at
/// `offset · n` for a batch of n (tensors are laid out one after another, each for the whole
/// batch, so a batch smaller than the planned one uses a prefix of every region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Start of the tensor, in elements per sample.
    pub offset: usize,
    /// Elements of one sample.
    pub len: usize,
}

impl Slot {
    /// A slot of `len` elements per sample starting at `offset`.
    pub const fn new(offset: usize, len: usize) -> Self {
        Slot { offset, len }
    }

    /// The range of this tensor for a batch of `n`.
    #[inline]
    pub const fn at(self, n: usize) -> Range<usize> {
        self.offset * n..(self.offset + self.len) * n
    }
}

/// One layer of a network.
#[derive(Debug)]
pub struct LayerSpec {
    /// PyTorch's module path: `cnn1`, `features.0`.
    pub name: &'static str,
    /// PyTorch's repr of the layer, as `print(model)` shows it:
    /// `Conv2d(1, 16, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))`.
    pub display: &'static str,
    /// What it computes, with its sizes.
    pub op: Op,
    /// Shape of one sample after this layer.
    pub output: &'static [usize],
    /// Trainable elements of this layer.
    pub params: usize,
    /// Forward floating-point operations per sample (a multiply-add counts 2).
    pub flops: u64,
    /// The layer's parameters in the flat parameter buffer (empty when it has none).
    pub param_range: Range<usize>,
    /// The activation slots of its inputs (two for a residual sum: main path, shortcut).
    pub inputs: &'static [Slot],
    /// Where its output stays after a forward, as PyTorch's `forward` returns it (what a forward
    /// hook sees). `None` when a ReLU fused into the layer (a Conv2d or a residual sum followed by
    /// ReLU) writes its output already rectified: that value is then the ReLU's, and the layer's
    /// own output is recomputed from `inputs` when asked for (`Network::activation`).
    pub output_slot: Option<Slot>,
    /// A functional op of PyTorch's `forward` (`torch.flatten(x, 1)`, written `_: Flatten`),
    /// not a module: `print(model)` does not show it, and it has no index in its listing.
    pub functional: bool,
}

/// A container module: what `print(model)` shows as `(layer1): Sequential(` or
/// `(0): BasicBlock(`.
#[derive(Debug)]
pub struct ModuleSpec {
    /// Its module path: `features`, `layer1.0`, `layer2.0.downsample`.
    pub name: &'static str,
    /// Its class as PyTorch prints it: `Sequential` for a nested listing or a repetition, the
    /// block's name (`BasicBlock`) for a block use.
    pub class: &'static str,
}

/// A parameter or buffer under its `state_dict` name.
#[derive(Debug)]
pub struct TensorSpec {
    /// e.g. `features.3.running_mean`.
    pub name: &'static str,
    /// Its shape, as in PyTorch (`[16, 1, 5, 5]`; `[]` for a counter).
    pub shape: &'static [usize],
    /// Parameter, running statistic or counter, and where it lives.
    pub kind: TensorKind,
    /// Index of the layer it belongs to, in [`NetSpec::layers`].
    pub layer: usize,
}

impl TensorSpec {
    /// Its number of elements (`tensor.numel()`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where a tensor's values live and how they start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A trainable parameter at `offset` in the flat parameter buffer.
    Param {
        /// Start in the flat parameter buffer.
        offset: usize,
        /// How `new` initialises it.
        init: Init,
    },
    /// A running statistic at `offset` in the flat buffer of running statistics.
    Buffer {
        /// Start in the flat buffer of running statistics.
        offset: usize,
        /// How `new` initialises it.
        init: Init,
    },
    /// A batch-norm `num_batches_tracked` counter (int64 in PyTorch).
    Counter {
        /// Which counter, in the order of the batch-norm layers.
        index: usize,
    },
}

/// PyTorch's default initialisation of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// U(−1/√fan_in, 1/√fan_in): both `kaiming_uniform_(a=√5)` on Conv2d/Linear weights and the
    /// bias rule of those layers come to this bound.
    FanIn(usize),
    /// All zeros (biases and running means of batch norm).
    Zeros,
    /// All ones (weights and running variances of batch norm).
    Ones,
}
