//! Cross-entropy on the CPU: one sample per row, a max/sum pass and a gradient pass.

use super::{CrossEntropy, LossOutput};

/// The mean loss and correct count; `dlogits` (written) when given.
pub fn forward_backward(op: &CrossEntropy, n: usize, logits: &[f32], labels: &[u32], mut dlogits: Option<&mut [f32]>) -> LossOutput {
    let c = op.classes;
    let eps = op.label_smoothing as f64;
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (b, row) in logits[..n * c].chunks_exact(c).enumerate() {
        let label = labels[b] as usize;
        let (mut max, mut arg) = (f32::NEG_INFINITY, 0);
        for (k, &v) in row.iter().enumerate() {
            if v > max {
                (max, arg) = (v, k);
            }
        }
        correct += (arg == label) as usize;
        // Log-probabilities are already normalised: log-sum-exp is 0.
        let lse = if op.log_probs { 0.0 } else { max as f64 + row.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() };
        // −Σ_k target_k · log_softmax_k with target = (1−ε)·one_hot + ε/c.
        let mean_logp = row.iter().map(|&v| v as f64 - lse).sum::<f64>() / c as f64;
        loss -= (1.0 - eps) * (row[label] as f64 - lse) + eps * mean_logp;
        if let Some(d) = dlogits.as_deref_mut() {
            let d = &mut d[b * c..(b + 1) * c];
            for (k, (d, &v)) in d.iter_mut().zip(row).enumerate() {
                let target = (1.0 - eps) * (k == label) as u8 as f64 + eps / c as f64;
                let p = if op.log_probs { 0.0 } else { ((v as f64) - lse).exp() };
                *d = ((p - target) / n as f64) as f32;
            }
        }
    }
    LossOutput { loss: (loss / n as f64) as f32, correct }
}
