//! What every `network!` type gives you, through the [`Network`] trait.
//!
//! The macro generates the struct, its tables ([`NetSpec`]) and its two passes; everything else
//! here is written once, generically.

mod inference;
mod repr;
mod spec;
mod state;
mod state_dict;
mod summary;

use std::path::Path;

use ndarray::{ArrayD, IxDyn};

pub use inference::{Prediction, find_layer, softmax_rows, top_k_row};
pub use repr::ModuleTree;
pub use spec::{Fold, Init, LayerSpec, ModuleSpec, NetSpec, Op, Slot, TensorKind, TensorSpec};
pub use state::{NetState, Pass, PassFn, TensorValue, folded_weights, packed_weights};
pub use state_dict::LoadReport;
pub use crate::optim::{ParamLayout, ParamRange, Params};
pub use crate::state_dict::{StateDict, Tensor};
pub use summary::Summary;

use crate::backend::{Backend, Cpu};
use crate::batch::{Batch, Logits};
use crate::loss::{Criterion, CrossEntropyLoss};
use crate::ops::{CrossEntropy, LossOutput};
use crate::optim::Optimizer;
use crate::{Error, Result};

/// A network declared with `network!`. Bring it into scope with `use staticnet::prelude::*`.
///
/// The names follow PyTorch: `forward` is `model(x)`, `train()` / `eval()` set the mode,
/// `zero_grad`, `state_dict`, `load_state_dict`. A new network is in train mode.
pub trait Network<B: Backend = Cpu>: Sized {
    /// The batch type it takes, typed by the sample shape (`Images<1, 28, 28>`).
    type Input: Batch;
    /// The batch type it returns (`Vectors<10>` for ten class scores).
    type Output: Batch;
    /// The network's tables: layers, tensors, buffer plan.
    const SPEC: &'static NetSpec;

    /// A new network on `device`, with PyTorch's default initialisation (Kaiming-uniform with
    /// a = √5 for weights, U(±1/√fan_in) for biases, ones and zeros for batch-norm) drawn from
    /// `seed`, in train mode. Generic code builds a network with `N::new(&device, seed)`.
    fn new(device: &B, seed: u64) -> Result<Self>;

    /// The network's parameters, buffers and workspace.
    fn state(&self) -> &NetState<B>;
    /// The same, to change.
    fn state_mut(&mut self) -> &mut NetState<B>;

    /// The generated forward pass (use [`Network::forward`]).
    #[doc(hidden)]
    fn forward_pass(pass: Pass<'_, B>) -> Result<()>;
    /// The generated backward pass (use [`Network::backward`] or [`Network::loss_backward`]).
    #[doc(hidden)]
    fn backward_pass(pass: Pass<'_, B>) -> Result<()>;

    /// Train mode: dropout drops, batch-norm uses and updates batch statistics.
    fn train(&mut self) {
        self.state_mut().set_training(true);
    }

    /// Eval mode: dropout is the identity, batch-norm uses its running statistics.
    fn eval(&mut self) {
        self.state_mut().set_training(false);
    }

    /// Whether the network is in train mode (PyTorch's `model.training`).
    fn is_training(&self) -> bool {
        self.state().is_training()
    }

    /// The device the network lives on.
    fn device(&self) -> &B {
        self.state().device()
    }

    /// Trainable elements, as `sum(p.numel() for p in model.parameters())`.
    fn num_parameters(&self) -> usize {
        Self::SPEC.param_len
    }

    /// Elements of the parameters that are not frozen, as
    /// `sum(p.numel() for p in model.parameters() if p.requires_grad)`.
    fn num_trainable_parameters(&self) -> usize {
        let params = Self::SPEC.tensors.iter().filter(|t| matches!(t.kind, TensorKind::Param { .. }));
        params.filter(|t| !self.state().is_frozen(t.name).unwrap_or(false)).map(|t| t.numel()).sum()
    }

    /// The module tree as PyTorch's `print(model)` prints it (also the network's `Display`).
    fn module_tree(&self) -> ModuleTree {
        ModuleTree::new(Self::SPEC)
    }

    /// Runs the network on a batch in the current mode (PyTorch's `model(x)`), keeping what
    /// the backward needs.
    fn forward(&mut self, x: &Self::Input) -> Result<Self::Output> {
        let mut out = Self::Output::from_vec(0, Vec::new())?;
        self.forward_into(x, &mut out)?;
        Ok(out)
    }

    /// [`Network::forward`] into an existing output batch, reusing its memory.
    fn forward_into(&mut self, x: &Self::Input, out: &mut Self::Output) -> Result<()> {
        let n = x.len();
        let state = self.state_mut();
        state.forward(n, x.as_slice(), Self::forward_pass)?;
        out.resize(n);
        state.read_output(out.as_mut_slice())
    }

    /// The predicted class of each sample: the argmax of the outputs of an eval-mode forward.
    /// The mode is restored afterwards.
    fn predict(&mut self, x: &Self::Input) -> Result<Vec<usize>>
    where
        Self::Output: Logits,
    {
        let was_training = self.is_training();
        self.eval();
        let out = self.forward(x);
        if was_training {
            self.train();
        }
        let out = out?;
        Ok((0..out.len()).map(|i| argmax(out.sample(i))).collect())
    }

    /// The predicted class of one sample (its values in the input's layout, e.g. the 784 pixels
    /// of a 1×28×28 image): [`Network::predict`] of a batch of one.
    fn predict_one(&mut self, sample: &[f32]) -> Result<usize>
    where
        Self::Output: Logits,
    {
        let x = one_sample::<B, Self>(sample)?;
        Ok(self.predict(&x)?[0])
    }

    /// The class probabilities of each sample: the softmax of the logits of an eval-mode forward
    /// (`torch.softmax(model(x), dim=1)` under `model.eval()`). Each sample's probabilities sum
    /// to 1. The mode is restored afterwards.
    fn probabilities(&mut self, x: &Self::Input) -> Result<Self::Output>
    where
        Self::Output: Logits,
    {
        let was_training = self.is_training();
        self.eval();
        let out = self.forward(x);
        if was_training {
            self.train();
        }
        let mut out = out?;
        softmax_rows(out.as_mut_slice(), Self::Output::CLASSES);
        Ok(out)
    }

    /// The `k` most probable classes of each sample with their probabilities, most probable
    /// first (`torch.topk(probabilities, k)`; equal probabilities in class order). `k` larger
    /// than the number of classes is an error.
    fn top_k(&mut self, x: &Self::Input, k: usize) -> Result<Vec<Vec<Prediction>>>
    where
        Self::Output: Logits,
    {
        let classes = Self::Output::CLASSES;
        if k > classes {
            return Err(Error::bad_input(format!("{}: top_k with k = {k}, but the network has {classes} classes", Self::SPEC.name)));
        }
        let p = self.probabilities(x)?;
        Ok((0..p.len()).map(|i| top_k_row(p.sample(i), k)).collect())
    }

    /// The output of a layer in the last forward, by its PyTorch name (`"cnn1"`, `"features.3"`,
    /// `"layer2.0.bn1"`, or a container such as `"layer2.0"` for its last layer's output), as an
    /// array `[N, C, H, W]` (or `[N, F]`) copied from the device: the value a PyTorch forward hook
    /// on that module sees (before the ReLU that follows it, even where the ReLU is fused into
    /// the layer). Run a forward first (`forward`, `predict`, `probabilities`, `evaluate` or a
    /// training step); a module called twice gives its last call. An unknown name is an error
    /// with the closest name.
    ///
    /// An eval forward on the CPU keeps only what it must: a large batch runs depth-first, and a
    /// `Conv2d → ReLU → MaxPool2d(2, 2)` runs as one kernel. The activations it did not keep
    /// are recomputed here from its input, with its weights: if an optimizer step or a load
    /// changed them since, that is an error (run a forward again).
    fn activation(&self, name: &str) -> Result<ArrayD<f32>> {
        let index = find_layer(Self::SPEC, name)?;
        let values = self.state().read_activation(index)?;
        let layer = &Self::SPEC.layers[index];
        let sample: usize = layer.output.iter().product();
        let shape: Vec<usize> = std::iter::once(values.len() / sample.max(1)).chain(layer.output.iter().copied()).collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("length from the spec"))
    }

    /// Back-propagates `dy`, the gradient of a loss with respect to the last forward's output,
    /// adding to every parameter's gradient (as `.backward()` adds to `.grad`).
    fn backward(&mut self, dy: &Self::Output) -> Result<()> {
        self.state_mut().backward(Some(dy.as_slice()), Self::backward_pass)
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) -> Result<()> {
        self.state_mut().zero_grad()
    }

    /// The mean cross-entropy of the last forward's output against `labels`, without a backward.
    fn loss(&mut self, labels: &[usize]) -> Result<LossOutput>
    where
        Self::Output: Logits,
    {
        let op = CrossEntropy::new(Self::Output::CLASSES, 0.0);
        self.state_mut().cross_entropy(labels, &op, false)
    }

    /// `criterion(output, labels).backward()`: the mean cross-entropy (or NLL) of the last
    /// forward's output, back-propagated into the parameter gradients.
    fn loss_backward(&mut self, criterion: impl Into<Criterion>, labels: &[usize]) -> Result<LossOutput>
    where
        Self::Output: Logits,
    {
        let op = criterion_op(Self::SPEC, criterion.into(), Self::Output::CLASSES)?;
        let state = self.state_mut();
        let out = state.cross_entropy(labels, &op, true)?;
        state.backward(None, Self::backward_pass)?;
        Ok(out)
    }

    /// The mean squared error of the last forward's output against `target`, back-propagated
    /// into the parameter gradients (`nn.MSELoss()(output, target).backward()`).
    fn mse_backward(&mut self, target: &Self::Output) -> Result<f32> {
        let state = self.state_mut();
        let loss = state.mse(target.as_slice(), true)?;
        state.backward(None, Self::backward_pass)?;
        Ok(loss)
    }

    /// One training step with cross-entropy: `zero_grad`, forward (in the current mode), loss,
    /// backward, `optimizer.step()`. Returns the loss and how many samples were classified right.
    fn train_step<O: Optimizer<B>>(&mut self, x: &Self::Input, labels: &[usize], optimizer: &mut O) -> Result<LossOutput>
    where
        Self::Output: Logits,
    {
        self.train_step_with(x, labels, &CrossEntropyLoss::default(), optimizer)
    }

    /// [`Network::train_step`] with a configured criterion (label smoothing, or `NLLLoss`).
    fn train_step_with<O: Optimizer<B>>(&mut self, x: &Self::Input, labels: &[usize], criterion: impl Into<Criterion>, optimizer: &mut O) -> Result<LossOutput>
    where
        Self::Output: Logits,
    {
        let op = criterion_op(Self::SPEC, criterion.into(), Self::Output::CLASSES)?;
        if labels.len() != x.len() {
            return Err(Error::bad_input(format!("{}: {} labels for a batch of {} samples", Self::SPEC.name, labels.len(), x.len())));
        }
        let state = self.state_mut();
        state.zero_grad()?;
        state.forward(x.len(), x.as_slice(), Self::forward_pass)?;
        let out = state.cross_entropy(labels, &op, true)?;
        state.backward(None, Self::backward_pass)?;
        optimizer.step(state.params())?;
        Ok(out)
    }

    /// The mean cross-entropy and correct count on a batch in eval mode, without gradients
    /// (`with torch.no_grad()` under `model.eval()`). The mode is restored afterwards.
    fn evaluate(&mut self, x: &Self::Input, labels: &[usize]) -> Result<LossOutput>
    where
        Self::Output: Logits,
    {
        let was_training = self.is_training();
        self.eval();
        let state = self.state_mut();
        let out = state.forward(x.len(), x.as_slice(), Self::forward_pass).and_then(|_| {
            let op = CrossEntropy::new(Self::Output::CLASSES, 0.0);
            state.cross_entropy(labels, &op, false)
        });
        if was_training {
            self.train();
        }
        out
    }

    /// A parameter or buffer under its PyTorch name, e.g. `"cnn1.weight"` (a copy).
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let state = self.state();
        let spec = state.spec().tensor(name).ok_or_else(|| unknown(Self::SPEC, name))?;
        Ok(Tensor::from_value(spec.shape, state.read_spec(spec)?))
    }

    /// A float parameter or buffer as an array (a copy).
    fn parameter(&self, name: &str) -> Result<ArrayD<f32>> {
        match self.tensor(name)? {
            Tensor::F32(a) => Ok(a),
            Tensor::I64(_) => Err(Error::bad_input(format!("{}: `{name}` is an int64 counter, not a float tensor", Self::SPEC.name))),
        }
    }

    /// The gradient of a parameter, e.g. `"cnn1.weight"` (a copy).
    fn grad(&self, name: &str) -> Result<ArrayD<f32>> {
        let spec = Self::SPEC.tensor(name).ok_or_else(|| unknown(Self::SPEC, name))?;
        let v = self.state().read_grad(name)?;
        Ok(ArrayD::from_shape_vec(IxDyn(spec.shape), v).expect("length from the spec"))
    }

    /// Overwrites a parameter or buffer; the array must have its exact shape.
    fn set_tensor(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let spec = Self::SPEC.tensor(name).ok_or_else(|| unknown(Self::SPEC, name))?;
        if value.shape() != spec.shape {
            return Err(Error::ShapeMismatch { network: Self::SPEC.name, name: name.into(), expected: spec.shape.to_vec(), found: value.shape().to_vec() });
        }
        self.state_mut().write(name, &value.to_value())
    }

    /// Overwrites a float parameter or buffer.
    fn set_parameter(&mut self, name: &str, value: &ArrayD<f32>) -> Result<()> {
        self.set_tensor(name, &Tensor::F32(value.clone()))
    }

    /// Every parameter and buffer under its PyTorch name, in PyTorch's order (a copy).
    fn state_dict(&self) -> Result<StateDict> {
        StateDict::from_state(self.state())
    }

    /// Loads a state dict. Strict: every key must be present with its shape and dtype, and no
    /// other key may be, or nothing is loaded and the error lists what differs. Non-strict:
    /// loads the keys that match and reports the rest. Either way the network is unchanged
    /// when an error is returned.
    fn load_state_dict(&mut self, state_dict: &StateDict, strict: bool) -> Result<LoadReport> {
        state_dict.load_into(self.state_mut(), strict)
    }

    /// What [`Network::load_state_dict`] would report, without loading anything (for checking a
    /// whole checkpoint before any of it is applied).
    fn check_state_dict(&self, state_dict: &StateDict, strict: bool) -> Result<LoadReport> {
        state_dict.check_against(Self::SPEC, strict)
    }

    /// Writes the state dict to a safetensors file, atomically (see [`StateDict::save`]): PyTorch
    /// reads it with `model.load_state_dict(safetensors.torch.load_file(path))`.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.state_dict()?.save(path)
    }

    /// Loads a safetensors file, such as one PyTorch wrote with
    /// `safetensors.torch.save_file(model.state_dict(), path)`; strict or not as
    /// [`Network::load_state_dict`]. On an error, which names the file and the tensor, the
    /// network is unchanged.
    fn load(&mut self, path: impl AsRef<Path>, strict: bool) -> Result<LoadReport> {
        let path = path.as_ref();
        let state_dict = StateDict::load(path)?;
        self.load_state_dict(&state_dict, strict).map_err(|e| Error::File { path: path.into(), message: e.to_string() })
    }

    /// Stops gradients and updates for every parameter under `prefix` (a layer or block name,
    /// as `"features"`; `""` is the whole network). Returns how many tensors it froze.
    fn freeze(&mut self, prefix: &str) -> Result<usize> {
        self.state_mut().set_frozen(prefix, true)
    }

    /// Undoes [`Network::freeze`] for every parameter under `prefix`.
    fn unfreeze(&mut self, prefix: &str) -> Result<usize> {
        self.state_mut().set_frozen(prefix, false)
    }

    /// A table of the layers: output shapes, parameters and FLOPs (print it with `{}`).
    fn summary(&self) -> Summary {
        Summary::new(Self::SPEC)
    }
}

/// A batch of one sample, its length checked against the network's input.
fn one_sample<B: Backend, N: Network<B>>(sample: &[f32]) -> Result<N::Input> {
    let want = <N::Input as Batch>::SAMPLE_LEN;
    if sample.len() != want {
        return Err(Error::bad_input(format!(
            "{}: one sample shaped {:?} has {want} values, got {}",
            N::SPEC.name,
            <N::Input as Batch>::SHAPE,
            sample.len()
        )));
    }
    <N::Input as Batch>::from_vec(1, sample.to_vec())
}

pub(crate) fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// The loss kernel for `criterion`; NLLLoss only on log-probabilities (a network ending in
/// LogSoftmax), since −output[label] of raw scores has no lower bound and training on it diverges.
pub(crate) fn criterion_op(spec: &NetSpec, criterion: Criterion, classes: usize) -> Result<CrossEntropy> {
    if let Criterion::Nll(_) = criterion {
        match spec.layers.last() {
            Some(l) if matches!(l.op, Op::Softmax(s) if s.log) => {}
            last => {
                let ends = last.map_or("no layer".to_string(), |l| format!("`{}` ({})", l.name, l.display));
                return Err(Error::bad_input(format!(
                    "{}: NLLLoss takes log-probabilities, but the network ends in {ends}: end it in LogSoftmax(dim = 1), or train with CrossEntropyLoss, which takes raw scores",
                    spec.name
                )));
            }
        }
    }
    Ok(criterion.op(classes))
}

fn unknown(spec: &NetSpec, name: &str) -> Error {
    Error::UnknownTensor { network: spec.name, name: name.to_string(), hint: did_you_mean(name, spec.tensors.iter().map(|t| t.name)) }
}

/// `"; did you mean `x`?"` for the candidate closest to `name`, or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates.map(|c| (strsim::levenshtein(name, c), c)).min();
    match best {
        Some((d, c)) if d <= 2.max(name.len() / 3) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}
