//! The ops, one folder per op: `mod.rs` holds the op's description (a plain struct with every
//! size fixed, built in a `const` by the code `network!` generates), its docs and its tests;
//! `cpu.rs` its CPU kernels, forward and backward side by side; `cuda.cu` its CUDA kernels and
//! `cuda.rs` their launchers (feature `cuda`: compiled at run time by NVRTC, launched on the
//! device of `crate::device`). [`Op`] gathers the descriptions: what a layer computes.
//!
//! The layering, lowest first, and nothing imports upwards: `device` (GPU memory and launching)
//! → `ops` (descriptions and kernels) → `backend` (the `Backend` trait; `Cpu` and `Cuda` call
//! each op's kernels) → `optim` → `network` (what the macro generates runs on these) → `train`.
//! runtime/tests/layout.rs checks it.
//!
//! ## What a new layer touches
//!
//! - A new element-wise activation (SiLU, GELU, …): in `activation/`, a variant of
//!   [`Activation`] with its forward and derivative and an entry in `Activation::EXAMPLES` (which
//!   every kernel test runs through) and in the test's f64 reference (`mod.rs`), its case in
//!   `cuda.cu` and its `kind` number in `cuda.rs`; in the macro, its signature
//!   (`macros/src/layers.rs`), its check and PyTorch repr (`macros/src/check.rs`: the shape passes
//!   through unchanged) and its `ops::Activation` value (`macros/src/expand/mod.rs`); and its row
//!   in the language reference (src/language.rs). Commit "SiLU (#16)" is such a diff: seven
//!   files, nothing else.
//! - A new op: a folder here (`mod.rs` with the description, `cpu.rs`, `cuda.cu`, `cuda.rs`),
//!   its variant of [`Op`], its source in `CUDA_SOURCES`, one method per pass in the
//!   `Backend` trait and its two implementations (each one line, calling the folder's
//!   functions); in the macro, its signature (`layers.rs`), its shape rule and checks
//!   (`check.rs`, a `Kind`), its constant (`expand/mod.rs`) and its calls in the two passes
//!   (`expand/forward.rs`, `expand/backward.rs`).
//!
//! Kernel conventions (llm.c's): outputs, then inputs, then sizes; activations and activation
//! gradients are written (`=`), parameter gradients accumulate (`+=`), so that a backward adds to
//! `.grad` as PyTorch's does.

pub mod activation;
pub mod adam;
pub mod adaptive_avg_pool2d;
pub mod adaptive_max_pool2d;
pub mod aligned;
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
mod prefetch;
pub mod sgd;
pub mod transpose;
pub mod softmax;

pub use activation::Activation;
pub use adam::AdamStep;
pub use adaptive_avg_pool2d::AdaptiveAvgPool2d;
pub use adaptive_max_pool2d::AdaptiveMaxPool2d;
pub use batch_norm::BatchNorm;
pub use conv2d::Conv2d;
pub use cross_entropy::{CrossEntropy, LossOutput};
pub use dropout::Dropout;
pub use linear::Linear;
pub use pool2d::Pool2d;
pub use sgd::SgdStep;
pub use softmax::Softmax;

/// Every op's CUDA source, in the order NVRTC compiles them (after the device's prelude).
#[cfg(feature = "cuda")]
pub(crate) const CUDA_SOURCES: &[crate::device::cuda::Source] = &[
    activation::cuda::SOURCE,
    add::cuda::SOURCE,
    dropout::cuda::SOURCE,
    sgd::cuda::SOURCE,
    adam::cuda::SOURCE,
    softmax::cuda::SOURCE,
    cross_entropy::cuda::SOURCE,
    mse::cuda::SOURCE,
    pool2d::cuda::SOURCE,
    adaptive_avg_pool2d::cuda::SOURCE,
    adaptive_max_pool2d::cuda::SOURCE, // uses adaptive_avg_pool2d's window functions
    batch_norm::cuda::SOURCE,
    gemm::cuda::SOURCE,
    conv2d::cuda::SOURCE,
];

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `nn.Conv2d`.
    Conv2d(Conv2d),
    /// `nn.Linear`.
    Linear(Linear),
    /// `nn.MaxPool2d`.
    MaxPool2d(Pool2d),
    /// `nn.AvgPool2d`.
    AvgPool2d(Pool2d),
    /// `nn.AdaptiveAvgPool2d`.
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    /// `nn.AdaptiveMaxPool2d`.
    AdaptiveMaxPool2d(AdaptiveMaxPool2d),
    /// `nn.BatchNorm2d` or `nn.BatchNorm1d`.
    BatchNorm(BatchNorm),
    /// `nn.Dropout`.
    Dropout(Dropout),
    /// An element-wise activation (`nn.ReLU`, `nn.Tanh`, …: every variant of [`Activation`]).
    Activation(Activation),
    /// `nn.Softmax` or `nn.LogSoftmax`.
    Softmax(Softmax),
    /// `nn.Flatten`: no computation, its output is its input.
    Flatten,
    /// A residual block's sum.
    Add,
}

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
