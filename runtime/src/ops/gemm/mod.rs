//! Single-precision matrix multiplication on the CPU, `C = A·B + β·C`, with a fused epilogue.
//!
//! The convolution and linear kernels are built on one driver (`cpu.rs`): the BLIS algorithm,
//! where blocks of A and B are packed into contiguous panels that stay in cache and a
//! register-blocked microkernel (`kernel.rs`, AVX2 + FMA where the processor has it) computes
//! one MR × NR tile of C at a time.
//!
//! What makes it serve convolutions is that the operands are not matrices in memory but
//! [`Panels`] sources: anything that can write a k-major panel of its elements. A strided
//! matrix is one ([`Strided`]); an im2col matrix computed on the fly while packing is another, so
//! a convolution never materialises its im2col matrix. Likewise the output is a [`Output`] map,
//! so a GEMM over all the pixels of a batch can write straight into an NCHW tensor.
//!
//! The epilogue adds a per-row bias and applies ReLU as the last block of k is stored, so a
//! convolution's bias and ReLU cost no pass of their own.

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
#[cfg(feature = "cuda")]
mod cublas;
pub mod kernel;

pub use cpu::{Gemm, gemm, run, run_with};
pub(crate) use cpu::reserve_packing_buffers;

/// A source of k-major panels: the A operand (its rows are the "outer" index) or the B operand
/// (its columns are).
pub trait Panels: Sync {
    /// Packs outer indices `outer0 .. outer0 + count` and inner indices `k0 .. k0 + kc` as
    /// `count.div_ceil(width)` panels of `width × kc`, one after the other: element
    /// `(outer0 + t, k0 + p)` goes to `dst[(t / width) · width · kc + p · width + t % width]`, and
    /// the lanes past `count` in the last panel are zero.
    fn pack(&self, dst: &mut [f32], width: usize, outer0: usize, count: usize, k0: usize, kc: usize);
}

/// Where element `(t, p)` of a packed block goes (see [`Panels::pack`]).
#[inline(always)]
pub fn packed_index(t: usize, p: usize, width: usize, kc: usize) -> usize {
    (t / width) * width * kc + p * width + t % width
}

/// Zeroes the lanes past `count` in the last panel of a packed block.
pub fn zero_tail(dst: &mut [f32], width: usize, count: usize, kc: usize) {
    let lanes = count % width;
    if lanes != 0 {
        let panel = &mut dst[(count / width) * width * kc..][..width * kc];
        for row in panel.chunks_exact_mut(width) {
            row[lanes..].fill(0.0);
        }
    }
}

/// Where the elements of C live.
pub trait Output: Sync {
    /// If the tile at `(i0, j0)`, `nr` columns wide, lies in memory as rows of unit stride, its
    /// first element and its row stride.
    fn tile(&self, i0: usize, j0: usize, nr: usize) -> Option<(*mut f32, usize)>;
    /// Element `(i, j)`.
    fn at(&self, i: usize, j: usize) -> *mut f32;
}

/// A matrix in memory: element `(i, j)` at `data[i · rs + j · cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        MatRef { data, rs: 1, cs: cols }
    }
}

/// The output matrix in memory: element `(i, j)` at `data[i · rs + j · cs]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    /// The elements.
    pub data: &'a mut [f32],
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a mut [f32], cols: usize) -> Self {
        MatMut { data, rs: cols, cs: 1 }
    }
}

/// A strided matrix as the A operand (`Strided::a`) or the B operand (`Strided::b`).
pub struct Strided<'a> {
    data: &'a [f32],
    /// Stride between consecutive outer indices (rows of A, columns of B).
    outer: usize,
    /// Stride between consecutive k.
    inner: usize,
}

impl<'a> Strided<'a> {
    /// `m` as the A operand (m × k).
    pub fn a(m: MatRef<'a>) -> Self {
        Strided { data: m.data, outer: m.rs, inner: m.cs }
    }

    /// `m` as the B operand (k × n).
    pub fn b(m: MatRef<'a>) -> Self {
        Strided { data: m.data, outer: m.cs, inner: m.rs }
    }
}

impl Panels for Strided<'_> {
    fn pack(&self, dst: &mut [f32], width: usize, outer0: usize, count: usize, k0: usize, kc: usize) {
        for (panel, dst) in dst.chunks_exact_mut(width * kc).take(count.div_ceil(width)).enumerate() {
            let (o0, n) = (outer0 + panel * width, width.min(count - panel * width));
            if self.outer == 1 {
                // Adjacent outer elements are adjacent in memory: copy runs.
                for (p, row) in dst.chunks_exact_mut(width).enumerate() {
                    let base = o0 + (k0 + p) * self.inner;
                    row[..n].copy_from_slice(&self.data[base..base + n]);
                    row[n..].fill(0.0);
                }
            } else {
                for t in 0..n {
                    let base = (o0 + t) * self.outer + k0 * self.inner;
                    for p in 0..kc {
                        dst[p * width + t] = self.data[base + p * self.inner];
                    }
                }
                zero_tail(dst, width, n, kc);
            }
        }
    }
}

/// A strided output matrix, as a raw pointer so that threads can write disjoint tiles.
pub struct StridedOut {
    ptr: *mut f32,
    rs: usize,
    cs: usize,
}

// SAFETY: the driver has every tile written by exactly one task.
unsafe impl Sync for StridedOut {}

impl StridedOut {
    /// Panics if `m` is too short for `rows × cols`: a bug in the caller, never user input.
    pub fn new(m: MatMut, rows: usize, cols: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * m.rs + (cols - 1) * m.cs < m.data.len(), "gemm: C is too short for {rows}x{cols}");
        }
        StridedOut { ptr: m.data.as_mut_ptr(), rs: m.rs, cs: m.cs }
    }
}

impl Output for StridedOut {
    fn tile(&self, i0: usize, j0: usize, _nr: usize) -> Option<(*mut f32, usize)> {
        (self.cs == 1).then(|| (self.at(i0, j0), self.rs))
    }

    fn at(&self, i: usize, j: usize) -> *mut f32 {
        self.ptr.wrapping_add(i * self.rs + j * self.cs)
    }
}

/// Whether a GEMM may split its work over rayon's threads. A kernel that already runs one GEMM
/// per thread passes `Sequential`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// On the calling thread only.
    Sequential,
    /// Split over rayon's threads.
    Rayon,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of matrix multiplication, in f64.
    fn naive(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, beta: f32, c: &[f32], c_rs: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = beta as f64 * c[i * c_rs + j] as f64;
                for p in 0..k {
                    acc += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                out[i * n + j] = acc;
            }
        }
        out
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        crate::ops::testing::random(len, seed)
    }

    /// Every microkernel this processor can run, with the instruction set's name.
    fn micros() -> Vec<(&'static str, kernel::Micro)> {
        let mut all: Vec<_> = crate::ops::isa::Isa::supported().into_iter().map(|i| (i.name(), kernel::select_for(i))).collect();
        // And AVX-512's 8-row kernel, for products of 32 or 64 rows (Winograd's forwards).
        if crate::ops::isa::avx512() {
            let micro = kernel::select_for_rows(32);
            assert_eq!((micro.mr, micro.nr), (8, 32), "32 rows: the 8 × 32 kernel");
            all.push(("avx512 8 × 32", micro));
        }
        all
    }

    fn check(m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f32, par: Parallelism) {
        for (isa, micro) in micros() {
            check_with(m, n, k, ta, tb, beta, par, isa, micro);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_with(m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f32, par: Parallelism, isa: &str, micro: kernel::Micro) {
        let a = random(m * k, 1 + m as u64);
        let b = random(k * n, 2 + n as u64);
        let a_ref = if ta { MatRef::transposed(&a, m) } else { MatRef::rows(&a, k) };
        let b_ref = if tb { MatRef::transposed(&b, k) } else { MatRef::rows(&b, n) };
        let c_rs = n + 3; // a padded row stride
        let mut c = random(m * c_rs, 3);
        let c0 = c.clone();
        let expected = naive(m, n, k, a_ref, b_ref, beta, &c, c_rs);
        let out = StridedOut::new(MatMut { data: &mut c, rs: c_rs, cs: 1 }, m, n);
        run_with(&Gemm { m, n, k, a: &Strided::a(a_ref), b: &Strided::b(b_ref), c: &out, beta, bias: None, relu: false }, par, micro);
        for i in 0..m {
            for j in 0..n {
                let (got, want) = (c[i * c_rs + j] as f64, expected[i * n + j]);
                let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!((got - want).abs() < tol, "{isa}: m{m} n{n} k{k} ta{ta} tb{tb} at ({i},{j}): {got} vs {want}");
            }
            // The row's padding past n is not C's: untouched.
            assert_eq!(c[i * c_rs + n..(i + 1) * c_rs], c0[i * c_rs + n..(i + 1) * c_rs], "{isa}: m{m} n{n} k{k}: row {i} written past n");
        }
    }

    #[test]
    fn matches_naive_on_odd_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (5, 7, 3), (6, 16, 1), (4, 24, 5), (7, 17, 300), (13, 33, 257), (12, 32, 9), (25, 65, 31), (100, 10, 1568), (32, 784, 400), (20, 50, 600)] {
            for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
                for &beta in &[0.0, 1.0] {
                    check(m, n, k, ta, tb, beta, Parallelism::Sequential);
                }
            }
        }
    }

    #[test]
    fn parallel_matches_naive() {
        for &(m, n, k) in &[(10, 1568, 100), (130, 2100, 300), (3, 5000, 20), (300, 40, 50)] {
            check(m, n, k, false, true, 1.0, Parallelism::Rayon);
            check(m, n, k, true, false, 0.0, Parallelism::Rayon);
        }
    }

    #[test]
    fn epilogue_adds_bias_then_applies_relu_after_the_last_k_block() {
        for ((m, n, k), (isa, micro)) in [(5, 19, 7), (12, 40, 600), (8, 48, 3), (24, 64, 20)].into_iter().flat_map(|s| micros().into_iter().map(move |mi| (s, mi))) {
            let (a, b) = (random(m * k, 4), random(k * n, 5));
            let bias = random(m, 6);
            for beta in [0.0f32, 1.0] {
                let mut c = random(m * n, 7);
                let c0 = c.clone();
                let g = Gemm {
                    m,
                    n,
                    k,
                    a: &Strided::a(MatRef::rows(&a, k)),
                    b: &Strided::b(MatRef::rows(&b, n)),
                    c: &StridedOut::new(MatMut::rows(&mut c, n), m, n),
                    beta,
                    bias: Some(&bias),
                    relu: true,
                };
                run_with(&g, Parallelism::Rayon, micro);
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                        let want = (dot + beta as f64 * c0[i * n + j] as f64 + bias[i] as f64).max(0.0);
                        assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "{isa} ({i},{j}) beta {beta}: {} vs {want}", c[i * n + j]);
                    }
                }
            }
        }
    }

    #[test]
    fn zero_k_scales_c_by_beta() {
        let mut c = vec![2.0f32; 6];
        gemm(2, 3, 0, MatRef::rows(&[], 0), MatRef::rows(&[], 3), 0.0, MatMut::rows(&mut c, 3), Parallelism::Sequential);
        assert_eq!(c, vec![0.0; 6]);
    }
}
