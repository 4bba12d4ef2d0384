//! The kernels, one folder per op: `mod.rs` holds the op's description (a plain struct with
//! every size fixed, built in a `const` by the code `network!` generates), its docs and its
//! tests; `cpu.rs` its CPU kernels, forward and backward side by side; `cuda.cu` its CUDA kernels
//! (feature `cuda`, compiled at run time by NVRTC and launched by `backend/cuda.rs`).
//!
//! Kernel conventions (llm.c's): outputs, then inputs, then sizes; activations and activation
//! gradients are written (`=`), parameter gradients accumulate (`+=`), so that a backward adds to
//! `.grad` as PyTorch's does.

pub mod activation;
pub mod adam;
pub mod adaptive_avg_pool2d;
pub mod add;
pub mod batch_norm;
pub mod conv2d;
pub mod cross_entropy;
pub mod dropout;
pub mod gemm;
pub mod isa;
pub mod linear;
pub mod mse;
pub mod pool2d;
pub mod sgd;
pub mod transpose;
pub mod softmax;

pub use activation::Activation;
pub use adam::AdamStep;
pub use adaptive_avg_pool2d::AdaptiveAvgPool2d;
pub use batch_norm::BatchNorm;
pub use conv2d::Conv2d;
pub use cross_entropy::{CrossEntropy, LossOutput};
pub use dropout::Dropout;
pub use linear::Linear;
pub use pool2d::Pool2d;
pub use sgd::SgdStep;
pub use softmax::Softmax;

/// Varied values in [−1, 1), never all zero, reproducible for a seed: inputs for the kernels'
/// tests (here, tests/backends.rs) and benchmarks (benches/kernels.rs, the bench example).
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    pub use super::random_values as random;

    /// The gradient of `L(v) = Σ_j r_j · f(v)_j` by central differences in f64, for checking a
    /// backward against the definition of its forward (`f`, a naive f64 implementation).
    pub fn numeric_grad(f: impl Fn(&[f64]) -> Vec<f64>, v: &[f32], r: &[f32]) -> Vec<f64> {
        let mut v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let loss = |v: &[f64]| f(v).iter().zip(r).map(|(y, &r)| y * r as f64).sum::<f64>();
        (0..v.len())
            .map(|i| {
                let h = 1e-6 * (1.0 + v[i].abs());
                let orig = v[i];
                v[i] = orig + h;
                let up = loss(&v);
                v[i] = orig - h;
                let down = loss(&v);
                v[i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect()
    }

    /// [`numeric_grad`] at `samples` evenly spread coordinates only (for large tensors), with
    /// those coordinates: compare against `analytic[i]` for each returned `i`.
    pub fn numeric_grad_sampled(f: impl Fn(&[f64]) -> Vec<f64>, v: &[f32], r: &[f32], samples: usize) -> (Vec<usize>, Vec<f64>) {
        let step = v.len().div_ceil(samples).max(1);
        let at: Vec<usize> = (0..v.len()).step_by(step).collect();
        let mut w: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let loss = |w: &[f64]| f(w).iter().zip(r).map(|(y, &r)| y * r as f64).sum::<f64>();
        let grads = at
            .iter()
            .map(|&i| {
                let h = 1e-6 * (1.0 + w[i].abs());
                let orig = w[i];
                w[i] = orig + h;
                let up = loss(&w);
                w[i] = orig - h;
                let down = loss(&w);
                w[i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect();
        (at, grads)
    }

    pub fn to_f64(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }

    /// ‖got − want‖ / ‖want‖ < rel (the fixtures' measure), with a floor for tiny references.
    pub fn assert_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let diff: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
        let norm: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
        assert!(diff <= rel * norm.max(1e-6), "{what}: relative error {:.3e} > {rel:.0e}", diff / norm.max(1e-30));
    }
}
