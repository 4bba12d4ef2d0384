//! The Adam and AdamW updates of `torch.optim.Adam` / `torch.optim.AdamW`, one pass over a range
//! of the flat parameter buffer, at step t (counted from 1):
//!
//! ```text
//! Adam:   g = grad + weight_decay·p            AdamW:  p = p·(1 − lr·weight_decay), g = grad
//! m = β1·m + (1 − β1)·g
//! v = β2·v + (1 − β2)·g²                     (amsgrad: v̂ = max(v̂, v), used below instead of v)
//! p = p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
//! ```

pub mod cpu;

/// The settings of one update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: weight decay applied to the parameter, not added to the gradient.
    pub decoupled: bool,
    pub amsgrad: bool,
    /// The step number t, from 1.
    pub step: u64,
}
