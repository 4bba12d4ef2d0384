//! Softmax and log-softmax over dimension 1 (features or channels), PyTorch's `nn.Softmax(dim=1)`
//! and `nn.LogSoftmax(dim=1)`.
//!
//! Tensors (per batch of `n`): `x` and `y` (n, c, inner), normalised over c for each (sample,
//! inner position); `inner` is h·w for images and 1 for feature vectors.

pub(crate) mod cpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub c: usize,
    pub inner: usize,
    /// LogSoftmax instead of Softmax.
    pub log: bool,
}

impl Softmax {
    pub const fn new(c: usize, inner: usize, log: bool) -> Self {
        Softmax { c, inner, log }
    }

    pub const fn x_len(&self) -> usize {
        self.c * self.inner
    }

    /// Operations of the forward pass for one sample (max, exp, sum, divide).
    pub const fn flops(&self) -> u64 {
        (4 * self.x_len()) as u64
    }
}
