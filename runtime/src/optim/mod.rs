//! Optimizers with `torch.optim`'s update rules and defaults: [`Sgd`], [`Adam`] and [`AdamW`].
//!
//! An optimizer updates a network's flat parameter buffer from its flat gradient buffer in as
//! few kernel calls as possible: parameter tensors next to each other at the same step count
//! are updated by one call. Frozen parameters are skipped and get no state, as PyTorch skips
//! parameters whose `.grad` is None. Each parameter tensor counts its own steps, so a tensor
//! unfrozen later starts from step 1, as in PyTorch.

mod schedule;

use std::ops::Range;

pub use schedule::{CosineAnnealingLr, LrScheduler, StepLr};

use ndarray::{ArrayD, IxDyn};

use crate::backend::{Backend, Cpu};
use crate::state_dict::{StateDict, Tensor};
use crate::ops::{AdamStep, SgdStep};
use crate::{Error, Result};

/// A parameter tensor as an optimizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamRange {
    /// Its place in the flat parameter and gradient buffers.
    pub range: Range<usize>,
    /// Frozen parameters get no gradient and no update (and no optimizer state: PyTorch skips
    /// parameters whose `.grad` is None).
    pub frozen: bool,
}

/// What an optimizer step sees of a network (`NetState::params` hands it out): its parameters
/// and their gradients in flat buffers, cut into tensors.
pub struct Params<'a, B: Backend> {
    /// The network's name (`"ModelA"`), for messages.
    pub owner: &'static str,
    /// The device the buffers live on.
    pub device: &'a B,
    /// Every parameter, one tensor after another.
    pub values: &'a mut B::Buf<f32>,
    /// Their gradients, laid out alike.
    pub grads: &'a mut B::Buf<f32>,
    /// The running statistics (batch norm): data-parallel training makes them equal across
    /// processes before a step, as DDP's `broadcast_buffers`.
    pub buffers: &'a mut B::Buf<f32>,
    /// Every parameter tensor's range in `values` and `grads`.
    pub tensors: &'a [ParamRange],
}

/// How a network's parameters lie in its flat buffers (`NetState::param_layout`): what checking
/// or loading an optimizer's state needs.
pub struct ParamLayout<'a, B: Backend> {
    /// The network's name (`"ModelA"`), for messages.
    pub owner: &'static str,
    /// The device the optimizer's state goes to.
    pub device: &'a B,
    /// Elements of all parameters.
    pub len: usize,
    /// Every parameter tensor's range in the flat buffers.
    pub tensors: &'a [ParamRange],
}

impl<B: Backend> Clone for ParamLayout<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for ParamLayout<'_, B> {}

/// Updates a network's parameters from their gradients.
pub trait Optimizer<B: Backend> {
    /// One update (PyTorch's `optimizer.step()`) of a network's parameters,
    /// `net.state_mut().params()`.
    fn step(&mut self, params: Params<'_, B>) -> Result<()>;
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
    /// Sets the learning rate (what a schedule does before each epoch).
    fn set_learning_rate(&mut self, lr: f32);
    /// `"SGD"`, `"Adam"`, `"AdamW"`: a checkpoint records it, and refuses another kind's state.
    fn kind(&self) -> &'static str;
    /// The optimizer's state (moments, step counts; a copy from the device), for checkpoints.
    fn state_dict(&self, dev: &B) -> Result<StateDict>;
    /// Checks a state written by [`Optimizer::state_dict`] against this optimizer and `net`
    /// without changing anything: one step count (≥ 0) per parameter tensor of `net`, every
    /// buffer the counts require, one finite value per parameter in each, no unknown key.
    fn check_state_dict(&self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()>;
    /// Restores a state written by [`Optimizer::state_dict`] of an optimizer of the same kind,
    /// checked first as [`Optimizer::check_state_dict`]: on an error nothing has changed.
    fn load_state_dict(&mut self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()>;
}

/// A device buffer as a flat tensor.
fn buffer_tensor<B: Backend>(dev: &B, buf: &B::Buf<f32>) -> Result<Tensor> {
    let mut v = vec![0.0; B::len(buf)];
    dev.download(buf, 0, &mut v)?;
    let n = v.len();
    Ok(Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("flat")))
}

/// A buffer of an optimizer's state: its key, whether a state that has taken steps must hold
/// it, and whether its values are squares (never negative).
struct StateBuffer {
    key: &'static str,
    required: bool,
    squares: bool,
}

/// Checks an optimizer's state against `net` (see [`Optimizer::check_state_dict`]) and returns
/// its step counts. Messages name the optimizer and the tensor; the caller adds the file.
fn check_state<B: Backend>(what: &str, net: ParamLayout<'_, B>, state: &StateDict, buffers: &[StateBuffer]) -> Result<Steps> {
    let bad = |msg: String| Err(Error::bad_input(format!("{what}: optimizer state {msg}")));
    let tensors = net.tensors.len();
    let counts = match state.get("step") {
        None => return bad("has no `step`".into()),
        Some(Tensor::F32(_)) => return bad("`step` is float32, expected int64".into()),
        Some(Tensor::I64(a)) if a.len() != tensors => {
            return bad(format!("`step` holds {} counts, but {} has {tensors} parameter tensors", a.len(), net.owner));
        }
        Some(Tensor::I64(a)) => match a.iter().enumerate().find(|(_, c)| **c < 0) {
            Some((i, c)) => return bad(format!("`step` holds {c} for parameter tensor {i}; a step count is ≥ 0")),
            None => a.iter().map(|&c| c as u64).collect::<Vec<u64>>(),
        },
    };
    let stepped = counts.iter().any(|&c| c > 0);
    let len = net.len;
    for b in buffers {
        match state.get(b.key) {
            None if b.required && stepped => return bad(format!("has taken steps but lacks `{}`", b.key)),
            None => {}
            Some(Tensor::I64(_)) => return bad(format!("`{}` is int64, expected float32", b.key)),
            Some(Tensor::F32(a)) if a.len() != len => {
                return bad(format!("`{}` holds {} values, but {} has {len} parameters", b.key, a.len(), net.owner));
            }
            Some(Tensor::F32(a)) => {
                if let Some(i) = a.iter().position(|v| !v.is_finite() || (b.squares && *v < 0.0)) {
                    let v = a.iter().nth(i).copied().unwrap_or(f32::NAN);
                    return bad(format!("`{}` holds {v} at {i}{}", b.key, if v.is_finite() { "; it averages squares, which are ≥ 0" } else { "" }));
                }
            }
        }
    }
    if let Some(k) = state.keys().find(|k| *k != "step" && !buffers.iter().any(|b| b.key == *k)) {
        return bad(format!("has an unknown tensor `{k}`"));
    }
    Ok(Steps { counts })
}

/// A checked flat tensor of `state` into a new device buffer, or `None` if absent.
fn restore_buffer<B: Backend>(dev: &B, state: &StateDict, name: &str) -> Result<Option<B::Buf<f32>>> {
    match state.get(name).and_then(Tensor::as_f32) {
        None => Ok(None),
        Some(a) => {
            let v: Vec<f32> = a.iter().copied().collect();
            let mut buf = dev.alloc(v.len())?;
            dev.upload(&mut buf, 0, &v)?;
            Ok(Some(buf))
        }
    }
}

fn steps_tensor(steps: &Steps) -> Tensor {
    let v: Vec<i64> = steps.counts.iter().map(|&c| i64::try_from(c).unwrap_or(i64::MAX)).collect();
    let n = v.len();
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("flat"))
}

/// Step counts per parameter tensor, and the grouping of tensors into kernel calls.
#[derive(Clone, Debug, Default)]
struct Steps {
    counts: Vec<u64>,
}

impl Steps {
    /// Advances every unfrozen tensor by one step, then calls `f(range, step)` for each run of
    /// adjacent unfrozen tensors that share a step count. Allocates nothing after the first call.
    fn advance(&mut self, tensors: &[ParamRange], mut f: impl FnMut(Range<usize>, u64) -> Result<()>) -> Result<()> {
        if self.counts.len() != tensors.len() {
            self.counts = vec![0; tensors.len()];
        }
        let mut run: Option<(Range<usize>, u64)> = None;
        for (t, count) in tensors.iter().zip(&mut self.counts) {
            if t.frozen {
                continue;
            }
            *count = count.saturating_add(1);
            run = match run {
                Some((r, s)) if r.end == t.range.start && s == *count => Some((r.start..t.range.end, s)),
                Some((r, s)) => {
                    f(r, s)?;
                    Some((t.range.clone(), *count))
                }
                None => Some((t.range.clone(), *count)),
            };
        }
        match run {
            Some((r, s)) => f(r, s),
            None => Ok(()),
        }
    }
}

/// Allocates an optimizer state buffer for `net` on first use; refuses a network of another size.
fn state_buffer<'a, B: Backend>(slot: &'a mut Option<B::Buf<f32>>, dev: &B, len: usize, what: &str) -> Result<&'a mut B::Buf<f32>> {
    match slot {
        Some(buf) if B::len(buf) != len => Err(Error::bad_input(format!(
            "{what}: this optimizer holds state for {} parameters but the network has {len}; use one optimizer per network",
            B::len(buf)
        ))),
        Some(buf) => Ok(buf),
        None => Ok(slot.insert(dev.alloc(len)?)),
    }
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::bad_input(msg())) }
}

/// `torch.optim.SGD`: `Sgd::new(0.01).momentum(0.9).weight_decay(1e-4)`.
pub struct Sgd<B: Backend = Cpu> {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (PyTorch's default 0).
    pub momentum: f32,
    /// Dampening of the momentum (PyTorch's default 0).
    pub dampening: f32,
    /// L2 penalty added to the gradient (PyTorch's default 0).
    pub weight_decay: f32,
    /// Nesterov momentum (PyTorch's default False).
    pub nesterov: bool,
    momentum_buffer: Option<B::Buf<f32>>,
    steps: Steps,
}

impl<B: Backend> Sgd<B> {
    /// Plain SGD with learning rate `lr` (momentum 0, dampening 0, weight_decay 0, as PyTorch).
    pub fn new(lr: f32) -> Self {
        Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, momentum_buffer: None, steps: Steps::default() }
    }

    /// Momentum factor, e.g. 0.9.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Dampening of the momentum.
    pub fn dampening(mut self, dampening: f32) -> Self {
        self.dampening = dampening;
        self
    }

    /// L2 penalty added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Nesterov momentum (needs momentum > 0 and dampening 0, as in PyTorch).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn state_buffers(&self) -> [StateBuffer; 1] {
        [StateBuffer { key: "momentum_buffer", required: self.momentum != 0.0, squares: false }]
    }

    fn validate(&self) -> Result<()> {
        check(self.lr >= 0.0, || format!("SGD: invalid learning rate {} (must be ≥ 0)", self.lr))?;
        check(self.momentum >= 0.0, || format!("SGD: invalid momentum {} (must be ≥ 0)", self.momentum))?;
        check(self.weight_decay >= 0.0, || format!("SGD: invalid weight_decay {} (must be ≥ 0)", self.weight_decay))?;
        check(!self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0), || "SGD: nesterov momentum requires a momentum and zero dampening".into())
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self, net: Params<'_, B>) -> Result<()> {
        self.validate()?;
        let len = B::len(net.values);
        let Params { device: dev, values: params, grads, tensors, .. } = net;
        let buf = state_buffer(&mut self.momentum_buffer, dev, if self.momentum != 0.0 { len } else { 0 }, "SGD")?;
        let base = SgdStep { lr: self.lr, momentum: self.momentum, dampening: self.dampening, weight_decay: self.weight_decay, nesterov: self.nesterov, first: false };
        self.steps.advance(tensors, |r, step| {
            let op = SgdStep { first: step == 1, ..base };
            let momentum = if self.momentum != 0.0 { B::dst(buf, r.clone()) } else { B::dst(buf, 0..0) };
            dev.sgd_step(&op, B::dst(params, r.clone()), B::src(grads, r), momentum)
        })
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn kind(&self) -> &'static str {
        "SGD"
    }

    fn state_dict(&self, dev: &B) -> Result<StateDict> {
        let mut sd = StateDict::new();
        sd.insert("step", steps_tensor(&self.steps));
        if let Some(buf) = &self.momentum_buffer {
            sd.insert("momentum_buffer", buffer_tensor(dev, buf)?);
        }
        Ok(sd)
    }

    fn check_state_dict(&self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        check_state("SGD", net, state, &self.state_buffers()).map(|_| ())
    }

    fn load_state_dict(&mut self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        let steps = check_state("SGD", net, state, &self.state_buffers())?;
        // Without momentum the step keeps no buffer (a run may drop its momentum on resuming).
        let momentum = if self.momentum != 0.0 { restore_buffer(net.device, state, "momentum_buffer")? } else { None };
        (self.steps, self.momentum_buffer) = (steps, momentum);
        Ok(())
    }
}

/// `torch.optim.Adam`: `Adam::new(1e-3)`, betas (0.9, 0.999), eps 1e-8, weight_decay 0 added
/// to the gradient (L2), as PyTorch.
pub struct Adam<B: Backend = Cpu> {
    /// Learning rate (PyTorch's default 1e-3).
    pub lr: f32,
    /// Decays of the first and second moments (PyTorch's default (0.9, 0.999)).
    pub betas: (f32, f32),
    /// Added to the denominator (PyTorch's default 1e-8).
    pub eps: f32,
    /// Weight decay: an L2 term for Adam, decoupled for AdamW.
    pub weight_decay: f32,
    /// AMSGrad (PyTorch's default False).
    pub amsgrad: bool,
    decoupled: bool,
    moments: Option<B::Buf<f32>>,
    second: Option<B::Buf<f32>>,
    max_second: Option<B::Buf<f32>>,
    steps: Steps,
}

/// `torch.optim.AdamW`: Adam with decoupled weight decay (default 0.01, as PyTorch).
pub type AdamW<B = Cpu> = Adam<B>;

impl<B: Backend> Adam<B> {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            decoupled: false,
            moments: None,
            second: None,
            max_second: None,
            steps: Steps::default(),
        }
    }

    /// AdamW: `p ← p·(1 − lr·weight_decay)` before the Adam update, weight_decay 0.01.
    pub fn adamw(lr: f32) -> Self {
        Adam { decoupled: true, weight_decay: 0.01, ..Self::new(lr) }
    }

    /// The moments' decays (PyTorch's `betas=(beta1, beta2)`).
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        self.betas = (beta1, beta2);
        self
    }

    /// The denominator's epsilon.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Weight decay.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// AMSGrad.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    fn state_buffers(&self) -> [StateBuffer; 3] {
        [
            StateBuffer { key: "exp_avg", required: true, squares: false },
            StateBuffer { key: "exp_avg_sq", required: true, squares: true },
            StateBuffer { key: "max_exp_avg_sq", required: self.amsgrad, squares: true },
        ]
    }

    fn name(&self) -> &'static str {
        if self.decoupled { "AdamW" } else { "Adam" }
    }

    fn validate(&self) -> Result<()> {
        let name = self.name();
        check(self.lr >= 0.0, || format!("{name}: invalid learning rate {} (must be ≥ 0)", self.lr))?;
        check(self.eps >= 0.0, || format!("{name}: invalid eps {} (must be ≥ 0)", self.eps))?;
        check((0.0..1.0).contains(&self.betas.0), || format!("{name}: invalid beta1 {} (must be in [0, 1))", self.betas.0))?;
        check((0.0..1.0).contains(&self.betas.1), || format!("{name}: invalid beta2 {} (must be in [0, 1))", self.betas.1))?;
        check(self.weight_decay >= 0.0, || format!("{name}: invalid weight_decay {} (must be ≥ 0)", self.weight_decay))
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self, net: Params<'_, B>) -> Result<()> {
        self.validate()?;
        let name = self.name();
        let len = B::len(net.values);
        let Params { device: dev, values: params, grads, tensors, .. } = net;
        let m = state_buffer(&mut self.moments, dev, len, name)?;
        let v = state_buffer(&mut self.second, dev, len, name)?;
        let mut vmax = if self.amsgrad { Some(state_buffer(&mut self.max_second, dev, len, name)?) } else { None };
        let base = AdamStep {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            amsgrad: self.amsgrad,
            step: 0,
        };
        self.steps.advance(tensors, |r, step| {
            let vmax = vmax.as_mut().map(|b| B::dst(&mut **b, r.clone()));
            dev.adam_step(&AdamStep { step, ..base }, B::dst(params, r.clone()), B::src(grads, r.clone()), B::dst(m, r.clone()), B::dst(v, r), vmax)
        })
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn kind(&self) -> &'static str {
        self.name()
    }

    fn state_dict(&self, dev: &B) -> Result<StateDict> {
        let mut sd = StateDict::new();
        sd.insert("step", steps_tensor(&self.steps));
        for (name, buf) in [("exp_avg", &self.moments), ("exp_avg_sq", &self.second), ("max_exp_avg_sq", &self.max_second)] {
            if let Some(buf) = buf {
                sd.insert(name, buffer_tensor(dev, buf)?);
            }
        }
        Ok(sd)
    }

    fn check_state_dict(&self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        check_state(self.name(), net, state, &self.state_buffers()).map(|_| ())
    }

    fn load_state_dict(&mut self, net: ParamLayout<'_, B>, state: &StateDict) -> Result<()> {
        let steps = check_state(self.name(), net, state, &self.state_buffers())?;
        let dev = net.device;
        let m = restore_buffer(dev, state, "exp_avg")?;
        let v = restore_buffer(dev, state, "exp_avg_sq")?;
        let vmax = if self.amsgrad { restore_buffer(dev, state, "max_exp_avg_sq")? } else { None };
        (self.steps, self.moments, self.second, self.max_second) = (steps, m, v, vmax);
        Ok(())
    }
}
