//! Fully connected layer, PyTorch's `nn.Linear`: `y = x·Wᵀ + b`.
//!
//! Tensors (per batch of `n`):
//! - input  `x`  (n, in_features)
//! - params `wb` weight (out_features, in_features) followed by bias (out_features) when `bias`
//! - output `y`  (n, out_features)

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// A linear layer with fixed sizes: what `Linear(...)` in a `network!` listing becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    /// Features in.
    pub in_features: usize,
    /// Features out.
    pub out_features: usize,
    /// Whether it adds a bias.
    pub bias: bool,
}

impl Linear {
    /// `nn.Linear(in_features, out_features, bias)`.
    pub const fn new(in_features: usize, out_features: usize, bias: bool) -> Self {
        Linear { in_features, out_features, bias }
    }

    /// Elements of the weight, out × in (the bias follows it).
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
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    fn naive(op: &Linear, n: usize, x: &[f64], wb: &[f64]) -> Vec<f64> {
        let (fi, fo) = (op.in_features, op.out_features);
        let mut y = vec![0.0; n * fo];
        for b in 0..n {
            for o in 0..fo {
                let bias = if op.bias { wb[op.weight_len() + o] } else { 0.0 };
                y[b * fo + o] = bias + (0..fi).map(|i| x[b * fi + i] * wb[o * fi + i]).sum::<f64>();
            }
        }
        y
    }

    /// With odd sizes: features not a multiple of 8, outputs not a multiple of 2 or of a block.
    const CASES: [Linear; 4] = [Linear::new(7, 5, true), Linear::new(33, 2, false), Linear::new(1568, 10, true), Linear::new(300, 517, true)];

    /// Batches of 1 to 8 (the streaming path for small batches), and of 9 and 37: the GEMM for
    /// 517 outputs, the streaming path in tasks of rows for up to 16 (37 rows: blocks of 16 and
    /// a last tile of one row).
    #[test]
    fn forward_matches_definition() {
        for (op, n) in CASES.into_iter().flat_map(|op| [(op, 9), (op, 37), (op, 1), (op, 3), (op, 4), (op, 7), (op, 8)]) {
            let (x, wb) = (random(n * op.in_features, 1), random(op.param_len(), 2));
            let mut y = vec![f32::NAN; n * op.out_features];
            cpu::forward(&op, n, &x, &wb, &mut y);
            assert_close(&y, &naive(&op, n, &to_f64(&x), &to_f64(&wb)), 1e-5, &format!("{op:?}"));
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Batches of 9 (the GEMM) and up to 8 (streaming; 300 features make two blocks of dX).
        for (op, n) in [(CASES[0], 3), (CASES[1], 9), (CASES[1], 5), (CASES[2], 1), (Linear::new(300, 17, true), 2)] {
            let (x, wb, dy) = (random(n * op.in_features, 3), random(op.param_len(), 4), random(n * op.out_features, 5));
            let mut dx = vec![f32::NAN; x.len()];
            let mut dwb = vec![1.0; wb.len()];
            cpu::backward(&op, n, &x, &wb, &dy, Some(&mut dx), Some(&mut dwb));
            let want_dx = numeric_grad(|x| naive(&op, n, x, &to_f64(&wb)), &x, &dy);
            let want_dwb: Vec<f64> = numeric_grad(|wb| naive(&op, n, &to_f64(&x), wb), &wb, &dy).iter().map(|g| g + 1.0).collect();
            assert_close(&dx, &want_dx, 1e-4, &format!("dx of {op:?}"));
            assert_close(&dwb, &want_dwb, 1e-4, &format!("dwb of {op:?}"));
        }
    }
}
