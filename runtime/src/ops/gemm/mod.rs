//! Single-precision matrix multiplication, `C = A·B + β·C`, on the CPU.
//!
//! The convolution and linear kernels of the CPU backend are built on this one routine. It is the
//! BLIS algorithm (see `cpu.rs`): blocks of A and B are packed into contiguous panels that stay
//! in cache, and a register-blocked microkernel (`kernel.rs`, AVX2 + FMA where the processor has
//! it) computes one MR × NR tile of C at a time.
//!
//! Operands are strided views, so a transposed operand is the same memory with its strides
//! swapped and needs no copy.

mod cpu;
pub mod kernel;

pub use cpu::gemm;

/// A read-only matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

/// The output operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rs: usize,
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

impl<'a> MatMut<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a mut [f32], cols: usize) -> Self {
        MatMut { data, rs: cols, cs: 1 }
    }
}

/// Whether a GEMM may split its work over rayon's threads. A kernel that already runs one GEMM
/// per image on every thread passes `Sequential`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    Sequential,
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
        // A small LCG: test data only needs to be varied and never all zero.
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn check(m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f32, par: Parallelism) {
        let a = random(m * k, 1 + m as u64);
        let b = random(k * n, 2 + n as u64);
        let a_ref = if ta { MatRef::transposed(&a, m) } else { MatRef::rows(&a, k) };
        let b_ref = if tb { MatRef::transposed(&b, k) } else { MatRef::rows(&b, n) };
        let c_rs = n + 3; // a padded row stride
        let mut c = random(m * c_rs, 3);
        let expected = naive(m, n, k, a_ref, b_ref, beta, &c, c_rs);
        gemm(m, n, k, a_ref, b_ref, beta, MatMut { data: &mut c, rs: c_rs, cs: 1 }, par);
        for i in 0..m {
            for j in 0..n {
                let (got, want) = (c[i * c_rs + j] as f64, expected[i * n + j]);
                let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                assert!((got - want).abs() < tol, "m{m} n{n} k{k} ta{ta} tb{tb} at ({i},{j}): {got} vs {want}");
            }
        }
    }

    #[test]
    fn matches_naive_on_odd_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (5, 7, 3), (6, 16, 1), (7, 17, 300), (13, 33, 257), (100, 10, 1568), (32, 784, 400)] {
            for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
                for &beta in &[0.0, 1.0] {
                    check(m, n, k, ta, tb, beta, Parallelism::Sequential);
                }
            }
        }
    }

    #[test]
    fn parallel_matches_naive() {
        for &(m, n, k) in &[(10, 1568, 100), (130, 2100, 300), (3, 5000, 20)] {
            check(m, n, k, false, true, 1.0, Parallelism::Rayon);
            check(m, n, k, true, false, 0.0, Parallelism::Rayon);
        }
    }

    #[test]
    fn zero_k_scales_c_by_beta() {
        let mut c = vec![2.0f32; 6];
        gemm(2, 3, 0, MatRef::rows(&[], 0), MatRef::rows(&[], 3), 0.0, MatMut::rows(&mut c, 3), Parallelism::Sequential);
        assert_eq!(c, vec![0.0; 6]);
    }
}
