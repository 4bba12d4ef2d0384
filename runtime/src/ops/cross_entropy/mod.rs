//! Cross-entropy loss on logits, PyTorch's `nn.CrossEntropyLoss` (mean reduction, optional
//! label smoothing): log-softmax and negative log-likelihood fused, forward and backward in one
//! pass over the logits, never materialising the probabilities. With `log_probs`, PyTorch's
//! `nn.NLLLoss` (mean reduction): the input already holds log-probabilities (a network ending in
//! `LogSoftmax`), and the loss is −input\[label\].
//!
//! Tensors (per batch of `n`): `logits` (n, classes), `labels` (n) in 0..classes, `dlogits`
//! (n, classes), written as `(softmax − target) / n`, or `−target / n` with `log_probs`.

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

#[derive(Clone, Copy, Debug, PartialEq)]
/// Cross-entropy over `classes` logits per sample.
pub struct CrossEntropy {
    /// Logits per sample.
    pub classes: usize,
    /// PyTorch's `label_smoothing`: the target is (1−ε)·one_hot + ε/classes.
    pub label_smoothing: f32,
    /// The input holds log-probabilities: no log-softmax (`nn.NLLLoss`).
    pub log_probs: bool,
}

impl CrossEntropy {
    /// Cross-entropy over `classes` logits with `label_smoothing` (0 for none).
    pub const fn new(classes: usize, label_smoothing: f32) -> Self {
        CrossEntropy { classes, label_smoothing, log_probs: false }
    }

    /// `nn.NLLLoss()`: the negative log-likelihood of `classes` log-probabilities.
    pub const fn nll(classes: usize) -> Self {
        CrossEntropy { classes, label_smoothing: 0.0, log_probs: true }
    }
}

/// What a loss kernel reports: the mean loss over the batch and how many samples the network
/// classified right (argmax of the logits equals the label).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossOutput {
    /// The mean loss over the batch.
    pub loss: f32,
    /// Samples whose largest logit is their label's.
    pub correct: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random};

    #[test]
    fn loss_and_gradient_match_the_definition() {
        for smoothing in [0.0, 0.1] {
            let op = CrossEntropy::new(7, smoothing);
            let n = 5;
            let logits = random(n * 7, 3);
            let labels: Vec<u32> = vec![0, 6, 3, 3, 1];
            let mut d = vec![0.0; n * 7];
            let out = cpu::forward_backward(&op, n, &logits, &labels, Some(&mut d));
            let mut want_loss = 0.0;
            let mut want_d = vec![0.0; n * 7];
            for b in 0..n {
                let row: Vec<f64> = logits[b * 7..(b + 1) * 7].iter().map(|&v| v as f64).collect();
                let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                for k in 0..7 {
                    let t = (1.0 - smoothing as f64) * (k == labels[b] as usize) as u8 as f64 + smoothing as f64 / 7.0;
                    want_loss -= t * (row[k] - lse) / n as f64;
                    want_d[b * 7 + k] = ((row[k] - lse).exp() - t) / n as f64;
                }
            }
            assert_close(&[out.loss], &[want_loss], 1e-6, "loss");
            assert_close(&d, &want_d, 1e-6, "dlogits");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        use crate::ops::testing::numeric_grad;
        for smoothing in [0.0f32, 0.2] {
            let (op, n, c) = (CrossEntropy::new(6, smoothing), 4, 6);
            let logits = random(n * c, 20);
            let labels = [5u32, 0, 2, 2];
            let mut d = vec![0.0; n * c];
            cpu::forward_backward(&op, n, &logits, &labels, Some(&mut d));
            let loss = |x: &[f64]| {
                let mut l = 0.0;
                for b in 0..n {
                    let row = &x[b * c..(b + 1) * c];
                    let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                    for k in 0..c {
                        let t = (1.0 - smoothing as f64) * (k == labels[b] as usize) as u8 as f64 + smoothing as f64 / c as f64;
                        l -= t * (row[k] - lse) / n as f64;
                    }
                }
                vec![l]
            };
            assert_close(&d, &numeric_grad(loss, &logits, &[1.0]), 1e-4, "dlogits");
        }
    }

    #[test]
    fn nll_is_minus_the_log_probability_of_the_label() {
        use crate::ops::testing::numeric_grad;
        let (op, n, c) = (CrossEntropy::nll(5), 3, 5);
        let logp = random(n * c, 21);
        let labels = [4u32, 1, 1];
        let mut d = vec![f32::NAN; n * c];
        let out = cpu::forward_backward(&op, n, &logp, &labels, Some(&mut d));
        let loss = |x: &[f64]| vec![-(x[4] + x[c + 1] + x[2 * c + 1]) / 3.0];
        assert_close(&[out.loss], &loss(&crate::ops::testing::to_f64(&logp)), 1e-6, "loss");
        assert_close(&d, &numeric_grad(loss, &logp, &[1.0]), 1e-4, "dinput");
    }

    #[test]
    fn counts_correct_predictions() {
        let op = CrossEntropy::new(3, 0.0);
        let logits = [0.1, 0.9, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let out = cpu::forward_backward(&op, 3, &logits, &[1, 2, 2], None);
        assert_eq!(out.correct, 2);
    }
}
