//! Mean squared error, PyTorch's `nn.MSELoss` (mean reduction): `mean((y − t)²)` over every
//! element, and its gradient `2·(y − t)/count`.

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

#[cfg(test)]
mod tests {
    use crate::ops::testing::{assert_close, numeric_grad, random, to_f64};

    #[test]
    fn loss_and_gradient_match_the_definition() {
        let (y, t) = (random(23, 21), random(23, 22));
        let mut dy = vec![0.0; 23];
        let loss = super::cpu::forward_backward(23, &y, &t, Some(&mut dy));
        let t64 = to_f64(&t);
        let f = |y: &[f64]| vec![y.iter().zip(&t64).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / 23.0];
        assert_close(&[loss], &f(&to_f64(&y)), 1e-6, "loss");
        assert_close(&dy, &numeric_grad(f, &y, &[1.0]), 1e-4, "dy");
    }
}
