//! Learning-rate schedules, in closed form: the learning rate of epoch `e` (from 0) given the
//! initial one. A training loop sets it on the optimizer before each epoch.

/// A learning rate per epoch.
pub trait LrScheduler {
    /// The learning rate of epoch `epoch` (from 0) for a run that starts at `base_lr`.
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32;
}

/// `torch.optim.lr_scheduler.StepLR`: multiply by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    /// Epochs between two decays.
    pub step_size: usize,
    /// Factor of each decay.
    pub gamma: f32,
}

impl StepLr {
    /// PyTorch's default gamma is 0.1.
    pub fn new(step_size: usize) -> Self {
        StepLr { step_size, gamma: 0.1 }
    }

    /// The factor of each decay.
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }
}

impl LrScheduler for StepLr {
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// `torch.optim.lr_scheduler.CosineAnnealingLR`: from the base rate down to `eta_min` over
/// `t_max` epochs along half a cosine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    /// Epochs of the half cosine.
    pub t_max: usize,
    /// The lowest learning rate (PyTorch's default 0).
    pub eta_min: f32,
}

impl CosineAnnealingLr {
    /// A half cosine over `t_max` epochs down to 0.
    pub fn new(t_max: usize) -> Self {
        CosineAnnealingLr { t_max, eta_min: 0.0 }
    }

    /// The learning rate at the end of the cosine.
    pub fn eta_min(mut self, eta_min: f32) -> Self {
        self.eta_min = eta_min;
        self
    }
}

impl LrScheduler for CosineAnnealingLr {
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        let t = epoch as f64 / self.t_max.max(1) as f64;
        (self.eta_min as f64 + (base_lr - self.eta_min) as f64 * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_pytorch() {
        let s = StepLr::new(2).gamma(0.5);
        assert_eq!([0, 1, 2, 3, 4].map(|e| s.lr_at(1.0, e)), [1.0, 1.0, 0.5, 0.5, 0.25]);
        let c = CosineAnnealingLr::new(4);
        let lrs = [0, 2, 4].map(|e| c.lr_at(1.0, e));
        assert!((lrs[0] - 1.0).abs() < 1e-6 && (lrs[1] - 0.5).abs() < 1e-6 && lrs[2].abs() < 1e-6);
    }
}
