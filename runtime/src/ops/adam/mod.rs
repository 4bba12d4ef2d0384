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
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The settings of one update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment (PyTorch's `betas[0]`).
    pub beta1: f32,
    /// Decay of the second moment (PyTorch's `betas[1]`).
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f32,
    /// AdamW: weight decay applied to the parameter, not added to the gradient.
    pub decoupled: bool,
    /// AMSGrad: divide by the running maximum of the second moment.
    pub amsgrad: bool,
    /// The step number t, from 1.
    pub step: u64,
}

/// The scalars of one step, the same for every parameter (and for every backend).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    /// lr / (1 − β1ᵗ).
    pub step_size: f32,
    /// √(1 − β2ᵗ).
    pub bc2_sqrt: f32,
    /// 1 − lr·weight_decay (AdamW's decay of the parameter).
    pub decay: f32,
}

impl AdamStep {
    /// The bias corrections, computed in f64 as torch.optim does in Python floats.
    pub fn scalars(&self) -> AdamScalars {
        let bc1 = 1.0 - (self.beta1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (self.beta2 as f64).powi(self.step as i32);
        AdamScalars { step_size: (self.lr as f64 / bc1) as f32, bc2_sqrt: bc2.sqrt() as f32, decay: 1.0 - self.lr * self.weight_decay }
    }
}
