//! The SGD update of `torch.optim.SGD`, one pass over a range of the flat parameter buffer:
//!
//! ```text
//! g = grad + weight_decay·p
//! if momentum ≠ 0:  buf = g on the first step, else momentum·buf + (1 − dampening)·g
//!                   g = g + momentum·buf if nesterov, else buf
//! p = p − lr·g
//! ```

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The settings of one update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: none).
    pub momentum: f32,
    /// Dampening of the momentum.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The momentum buffer is empty: it takes the gradient as it is (PyTorch's first step).
    pub first: bool,
}
