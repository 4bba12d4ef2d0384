//! Elementwise activations: PyTorch's `nn.ReLU`, `nn.LeakyReLU`, `nn.Sigmoid`, `nn.Tanh`, `nn.SiLU`,
//! `nn.ReLU6`, `nn.Hardswish`, `nn.GELU`, `nn.ELU` and `nn.Identity`.
//!
//! The backward takes both the input `x` and the output `y` of the forward and reads whichever
//! its derivative is cheapest in: ReLU and LeakyReLU read x (x > 0), Sigmoid and Tanh read y,
//! SiLU reads x (its derivative needs σ(x), which y = x·σ(x) loses where x = 0), as do the rest.
//! Where a derivative has a kink (ReLU6 at 0 and 6, Hardswish at ±3), the value at the kink is
//! PyTorch's: ReLU6 passes the gradient only strictly inside (0, 6), Hardswish uses x/3 + 1/2 on
//! [−3, 3].

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

#[derive(Clone, Copy, Debug, PartialEq)]
/// An elementwise activation.
// PyTorch's names (GELU, ELU), which users search for, over Rust's acronym casing.
#[allow(clippy::upper_case_acronyms)]
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
    /// `nn.ReLU6`: min(max(x, 0), 6).
    ReLU6,
    /// `nn.Hardswish`: x·ReLU6(x + 3)/6.
    Hardswish,
    /// `nn.GELU`: x·Φ(x), Φ the standard normal CDF; with `tanh` (`approximate='tanh'`) its
    /// approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    GELU {
        /// `approximate='tanh'` (else `'none'`, the exact erf form).
        tanh: bool,
    },
    /// `ELU(alpha)`: x for x > 0, alpha·(eˣ − 1) otherwise; PyTorch's default alpha is 1.
    ELU(f32),
    /// `nn.Identity`: y = x.
    Identity,
}

/// √(2/π), GELU's tanh approximation's scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// 1/√2, GELU's erf argument scale.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π), the standard normal density's constant.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

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
        Activation::ReLU6,
        Activation::Hardswish,
        Activation::GELU { tanh: false },
        Activation::GELU { tanh: true },
        Activation::ELU(1.0),
        Activation::ELU(0.3),
        Activation::Identity,
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
            Activation::ReLU6 => x.clamp(0.0, 6.0),
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::GELU { tanh: false } => 0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2)),
            Activation::GELU { tanh: true } => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
            Activation::ELU(alpha) => {
                if x > 0.0 { x } else { alpha * x.exp_m1() }
            }
            Activation::Identity => x,
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
            Activation::ReLU6 => {
                if x > 0.0 && x < 6.0 { dy } else { 0.0 }
            }
            Activation::Hardswish => {
                if x < -3.0 {
                    0.0
                } else if x <= 3.0 {
                    dy * (x / 3.0 + 0.5)
                } else {
                    dy
                }
            }
            // Φ(x) + x·φ(x).
            Activation::GELU { tanh: false } => {
                let cdf = 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2));
                dy * (cdf + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp())
            }
            Activation::GELU { tanh: true } => {
                let t = (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh();
                let d_inner = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
            }
            Activation::ELU(alpha) => {
                if x > 0.0 { dy } else { dy * alpha * x.exp() }
            }
            Activation::Identity => dy,
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
            Activation::ReLU6 => x.clamp(0.0, 6.0),
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::GELU { tanh: false } => 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
            Activation::GELU { tanh: true } => {
                0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            }
            Activation::ELU(alpha) => if x > 0.0 { x } else { alpha as f64 * (x.exp() - 1.0) },
            Activation::Identity => x,
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for &act in Activation::EXAMPLES {
            let f = |x: f64| reference(act, x);
            let len = 1001;
            // Over [−8, 8): past every kink (ReLU6's 6, Hardswish's ±3) and into the tails.
            let x: Vec<f32> = random(len, 14).iter().map(|v| 8.0 * v).collect();
            let dy = random(len, 15);
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
