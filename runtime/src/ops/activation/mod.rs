//! Elementwise activations: PyTorch's `nn.ReLU`, `nn.LeakyReLU`, `nn.Sigmoid`, `nn.Tanh`, `nn.SiLU`.
//!
//! The backward takes both the input `x` and the output `y` of the forward and reads whichever
//! its derivative is cheapest in: ReLU and LeakyReLU read x (x > 0), Sigmoid and Tanh read y,
//! SiLU reads x (its derivative needs σ(x), which y = x·σ(x) loses where x = 0).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

#[derive(Clone, Copy, Debug, PartialEq)]
/// An elementwise activation.
pub enum Activation {
    /// `nn.ReLU`: max(x, 0).
    ReLU,
    /// `LeakyReLU(negative_slope)`, PyTorch's default slope is 0.01.
    LeakyReLU(f32),
    /// `nn.Sigmoid`: 1 / (1 + e^−x).
    Sigmoid,
    /// `nn.Tanh`.
    Tanh,
    /// `nn.SiLU` (swish): x·σ(x).
    SiLU,
}

impl Activation {
    /// One of each activation (those with a parameter at a typical and an unusual value): what
    /// the kernel tests run through, so that a new activation is tested by adding it here.
    pub const EXAMPLES: &[Activation] = &[
        Activation::ReLU,
        Activation::LeakyReLU(0.01),
        Activation::LeakyReLU(0.2),
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::SiLU,
    ];

    #[inline]
    /// The activation of one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::ReLU => x.max(0.0),
            Activation::LeakyReLU(slope) => {
                if x > 0.0 { x } else { x * slope }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::SiLU => x / (1.0 + (-x).exp()),
        }
    }

    /// dL/dx from dL/dy, the input x and the output y.
    #[inline]
    pub fn derive(self, x: f32, y: f32, dy: f32) -> f32 {
        match self {
            Activation::ReLU => {
                if x > 0.0 { dy } else { 0.0 }
            }
            Activation::LeakyReLU(slope) => {
                if x > 0.0 { dy } else { dy * slope }
            }
            Activation::Sigmoid => dy * y * (1.0 - y),
            Activation::Tanh => dy * (1.0 - y * y),
            Activation::SiLU => {
                // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))).
                let s = 1.0 / (1.0 + (-x).exp());
                dy * s * (1.0 + x * (1.0 - s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, numeric_grad, random};

    /// The activation in f64, written from its definition in PyTorch's docs: the reference the
    /// kernels are compared with.
    fn reference(act: Activation, x: f64) -> f64 {
        match act {
            Activation::ReLU => x.max(0.0),
            Activation::LeakyReLU(s) => if x > 0.0 { x } else { x * s as f64 },
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::SiLU => x / (1.0 + (-x).exp()),
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for &act in Activation::EXAMPLES {
            let f = |x: f64| reference(act, x);
            let len = 1001;
            let (x, dy) = (random(len, 14), random(len, 15));
            let mut y = vec![f32::NAN; len];
            cpu::forward(act, len, &x, &mut y);
            assert_close(&y, &x.iter().map(|&v| f(v as f64)).collect::<Vec<_>>(), 1e-6, &format!("{act:?}"));
            let mut dx = vec![f32::NAN; len];
            cpu::backward(act, len, &x, &y, &dy, &mut dx);
            let want = numeric_grad(|x| x.iter().map(|&v| f(v)).collect(), &x, &dy);
            assert_close(&dx, &want, 1e-4, &format!("dx of {act:?}"));
        }
    }
}
