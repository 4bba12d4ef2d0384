//! Loss settings. The kernels are `ops::cross_entropy` and `ops::mse`; a network applies them to
//! its output with `loss_backward`, `mse_backward` or `train_step`.

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

    pub(crate) fn op(&self, classes: usize) -> CrossEntropy {
        CrossEntropy::new(classes, self.label_smoothing)
    }
}
