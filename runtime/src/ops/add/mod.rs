//! Elementwise addition: the join of a residual block (`y = a + b`), and the sum of gradient
//! contributions where one tensor feeds two layers (`y += x`).

pub mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
