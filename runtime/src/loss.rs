//! Loss settings. The kernels are `ops::cross_entropy` and `ops::mse`; a network applies them to
//! its output with `loss_backward`, `mse_backward` or `train_step`.
//!
//! A classification loss is a [`Criterion`]: `CrossEntropyLoss` on logits, or `NLLLoss` on the
//! log-probabilities of a network that ends in `LogSoftmax`, as in PyTorch. The two give the same
//! loss and gradients on such a network (log-softmax of log-probabilities changes nothing);
//! `NLLLoss` is there so that a course's `nn.NLLLoss()` reads the same.

use crate::ops::CrossEntropy;

/// PyTorch's `nn.CrossEntropyLoss()` (mean reduction): log-softmax and negative log-likelihood
/// of the logits, fused.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossEntropyLoss {
    /// `label_smoothing` in [0, 1], PyTorch's default 0.
    pub label_smoothing: f32,
}

impl CrossEntropyLoss {
    /// `nn.CrossEntropyLoss()`: mean reduction, no label smoothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target becomes (1 − ε)·one_hot + ε/classes.
    pub fn label_smoothing(mut self, epsilon: f32) -> Self {
        self.label_smoothing = epsilon;
        self
    }

}

/// PyTorch's `nn.NLLLoss()` (mean reduction): −input\[label\], for a network whose output is
/// log-probabilities (it ends in `LogSoftmax`; any other network is refused with an error naming
/// its last layer, since the loss of raw scores has no lower bound).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NLLLoss {}

impl NLLLoss {
    /// `nn.NLLLoss()`: mean reduction.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The loss a classification network trains against: what `loss_backward`, `train_step_with`
/// and `Trainer::criterion` take (`CrossEntropyLoss` or `NLLLoss`, by value or reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    /// `nn.CrossEntropyLoss`.
    CrossEntropy(CrossEntropyLoss),
    /// `nn.NLLLoss`.
    Nll(NLLLoss),
}

impl Default for Criterion {
    fn default() -> Self {
        Criterion::CrossEntropy(CrossEntropyLoss::default())
    }
}

impl Criterion {
    /// The loss kernel's description for `classes` outputs.
    pub fn op(&self, classes: usize) -> CrossEntropy {
        match self {
            Criterion::CrossEntropy(ce) => CrossEntropy::new(classes, ce.label_smoothing),
            Criterion::Nll(_) => CrossEntropy::nll(classes),
        }
    }
}

impl From<CrossEntropyLoss> for Criterion {
    fn from(c: CrossEntropyLoss) -> Self {
        Criterion::CrossEntropy(c)
    }
}

impl From<&CrossEntropyLoss> for Criterion {
    fn from(c: &CrossEntropyLoss) -> Self {
        Criterion::CrossEntropy(*c)
    }
}

impl From<NLLLoss> for Criterion {
    fn from(c: NLLLoss) -> Self {
        Criterion::Nll(c)
    }
}

impl From<&NLLLoss> for Criterion {
    fn from(c: &NLLLoss) -> Self {
        Criterion::Nll(*c)
    }
}
