//! What inference needs beyond the forward: probabilities (softmax of the logits), the k most
//! probable classes, and layers found by their PyTorch names.

use super::spec::NetSpec;
use crate::{Error, Result};

/// A class and its probability, as [`Network::top_k`](super::Network::top_k) lists them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// The class index (a label of the data set: a name is `class_names[class]`).
    pub class: usize,
    /// Its probability, the softmax of the logits, in [0, 1].
    pub probability: f32,
}

/// Replaces each row of `classes` logits by its softmax (`torch.softmax(logits, dim=1)`). The
/// largest logit is subtracted first, so large logits do not overflow, and each row is summed in
/// f64, so its probabilities sum to 1 within f32's rounding.
pub fn softmax_rows(values: &mut [f32], classes: usize) {
    if classes == 0 {
        return;
    }
    for row in values.chunks_exact_mut(classes) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exps: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
        for v in row.iter_mut() {
            *v = (((*v - max) as f64).exp() / exps) as f32;
        }
    }
}

/// The `k` largest values of `row` with their indices, largest first; equal values in the order
/// of their indices (`torch.topk(row, k)`, whose order among equal values is unspecified).
pub fn top_k_row(row: &[f32], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    // A stable sort keeps equal values in index order; NaN sorts last.
    order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or_else(|| row[a].is_nan().cmp(&row[b].is_nan())));
    order.truncate(k);
    order.into_iter().map(|class| Prediction { class, probability: row[class] }).collect()
}

/// The index in [`NetSpec::layers`] of the layer, or of the last layer of the container, called
/// `name` (a PyTorch module path: `cnn1`, `features.3`, `layer2.0.bn1`, `layer2.0`). A module
/// called twice (torchvision's BasicBlock applies its `relu` twice) is its last call, whose output
/// is what a forward hook storing its output holds once the forward is over.
pub fn find_layer(spec: &NetSpec, name: &str) -> Result<usize> {
    if let Some(i) = spec.layers.iter().rposition(|l| l.name == name) {
        return Ok(i);
    }
    if spec.modules.iter().any(|m| m.name == name) {
        let prefix = format!("{name}.");
        if let Some(i) = spec.layers.iter().rposition(|l| l.name.starts_with(&prefix)) {
            return Ok(i);
        }
    }
    let names = spec.layers.iter().map(|l| l.name).chain(spec.modules.iter().map(|m| m.name));
    Err(Error::UnknownLayer { network: spec.name, name: name.to_string(), hint: super::did_you_mean(name, names) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_a_row_is_exp_over_the_sum() {
        let mut v = vec![1.0f32, 2.0, 3.0, 1000.0, 1000.0, -1000.0];
        softmax_rows(&mut v, 3);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let s: f64 = e.iter().sum();
        for (got, want) in v[..3].iter().zip(e.iter().map(|x| x / s)) {
            assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
        }
        // Large logits: no overflow to NaN.
        assert_eq!(&v[3..], &[0.5, 0.5, 0.0]);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        let row = [0.1, 0.4, 0.1, 0.4];
        let top: Vec<usize> = top_k_row(&row, 3).iter().map(|p| p.class).collect();
        assert_eq!(top, [1, 3, 0]);
        assert!(top_k_row(&row, 0).is_empty());
    }
}
