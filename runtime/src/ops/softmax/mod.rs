//! Softmax and log-softmax over dimension 1 (features or channels), PyTorch's `nn.Softmax(dim=1)`
//! and `nn.LogSoftmax(dim=1)`.
//!
//! Tensors (per batch of `n`): `x` and `y` (n, c, inner), normalised over c for each (sample,
//! inner position); `inner` is h·w for images and 1 for feature vectors.

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A softmax over `c` channels at each of `inner` positions.
pub struct Softmax {
    /// Channels or features normalised over.
    pub c: usize,
    /// Positions per channel: h·w for images, 1 for vectors.
    pub inner: usize,
    /// LogSoftmax instead of Softmax.
    pub log: bool,
}

impl Softmax {
    /// Softmax (or, with `log`, log-softmax) over `c` channels of `inner` positions.
    pub const fn new(c: usize, inner: usize, log: bool) -> Self {
        Softmax { c, inner, log }
    }

    /// Elements of one sample.
    pub const fn x_len(&self) -> usize {
        self.c * self.inner
    }

    /// Operations of the forward pass for one sample (max, exp, sum, divide).
    pub const fn flops(&self) -> u64 {
        (4 * self.x_len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    fn naive(op: &Softmax, n: usize, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for b in 0..n {
            for i in 0..op.inner {
                let at = |k: usize| b * op.x_len() + k * op.inner + i;
                let lse = (0..op.c).map(|k| x[at(k)].exp()).sum::<f64>().ln();
                for k in 0..op.c {
                    y[at(k)] = if op.log { x[at(k)] - lse } else { (x[at(k)] - lse).exp() };
                }
            }
        }
        y
    }

    #[test]
    fn backward_matches_finite_differences() {
        for op in [Softmax::new(10, 1, false), Softmax::new(10, 1, true), Softmax::new(4, 6, false), Softmax::new(3, 5, true)] {
            let n = 3;
            let x: Vec<f32> = random(n * op.x_len(), 16).iter().map(|v| 3.0 * v).collect();
            let dy = random(x.len(), 17);
            let mut y = vec![f32::NAN; x.len()];
            cpu::forward(&op, n, &x, &mut y);
            assert_close(&y, &naive(&op, n, &to_f64(&x)), 1e-6, &format!("{op:?}"));
            let mut dx = vec![f32::NAN; x.len()];
            cpu::backward(&op, n, &y, &dy, &mut dx);
            assert_close(&dx, &numeric_grad(|x| naive(&op, n, x), &x, &dy), 1e-4, &format!("dx of {op:?}"));
        }
    }
}
