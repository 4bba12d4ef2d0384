//! Fully connected layer, PyTorch's `nn.Linear`: `y = x·Wᵀ + b`.
//!
//! Tensors (per batch of `n`):
//! - input  `x`  (n, in_features)
//! - params `wb` weight (out_features, in_features) followed by bias (out_features) when `bias`
//! - output `y`  (n, out_features)

pub(crate) mod cpu;

/// A linear layer with fixed sizes: what `Linear(...)` in a `network!` listing becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl Linear {
    pub const fn new(in_features: usize, out_features: usize, bias: bool) -> Self {
        Linear { in_features, out_features, bias }
    }

    pub const fn weight_len(&self) -> usize {
        self.in_features * self.out_features
    }

    /// Parameter elements: the weight, then the bias if any.
    pub const fn param_len(&self) -> usize {
        self.weight_len() + if self.bias { self.out_features } else { 0 }
    }

    /// Floating-point operations of the forward pass for one sample (a multiply-add counts 2).
    pub const fn flops(&self) -> u64 {
        (2 * self.weight_len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random};

    #[test]
    fn forward_matches_definition() {
        for op in [Linear::new(7, 5, true), Linear::new(33, 2, false), Linear::new(1568, 10, true)] {
            let n = 9;
            let x = random(n * op.in_features, 1);
            let wb = random(op.param_len(), 2);
            let mut y = vec![f32::NAN; n * op.out_features];
            cpu::forward(&op, n, &x, &wb, &mut y);
            let mut want = vec![0.0f64; y.len()];
            for b in 0..n {
                for o in 0..op.out_features {
                    let mut acc = if op.bias { wb[op.weight_len() + o] as f64 } else { 0.0 };
                    for i in 0..op.in_features {
                        acc += x[b * op.in_features + i] as f64 * wb[o * op.in_features + i] as f64;
                    }
                    want[b * op.out_features + o] = acc;
                }
            }
            assert_close(&y, &want, 1e-5, &format!("{op:?}"));
        }
    }
}
