//! Mean squared error on the CPU.

/// The mean loss over `len` elements; `dy` (written) when given.
pub fn forward_backward(len: usize, y: &[f32], target: &[f32], dy: Option<&mut [f32]>) -> f32 {
    let (y, target) = (&y[..len], &target[..len]);
    let loss = y.iter().zip(target).map(|(&a, &b)| ((a - b) as f64).powi(2)).sum::<f64>() / len as f64;
    if let Some(dy) = dy {
        let k = 2.0 / len as f32;
        for ((d, &a), &b) in dy[..len].iter_mut().zip(y).zip(target) {
            *d = k * (a - b);
        }
    }
    loss as f32
}
