//! Linear layer on the CPU: three GEMMs, each split over threads.
//!
//! - forward:  Y[n, out] = X[n, in] · Wᵀ + b
//! - backward: dX[n, in] = dY · W (written);  dW[out, in] += dYᵀ · X,  db += Σ_n dY (accumulated)
//!
//! A small batch (AlexNet's 4 images through a 9216 × 4096 layer) makes the forward and dX
//! products as thin as a matrix-vector product: the GEMM's packing of W (a read and a write of
//! the whole weight) then costs more than the arithmetic. Up to `SMALL_BATCH` rows, those two
//! stream W once instead, straight from where it lies.
//!
//! A classifier's last layer (10 outputs) is as thin the other way: the GEMM packs X (627 KB for
//! Model A's batch of 100) into panels 16 columns wide, 10 of them used, for 3 MFLOP of work.
//! Up to `FEW_OUTPUTS` outputs the forward takes the same dot products over tasks of rows
//! instead, X read once where it lies and W (at most 16 rows) from the cache.

use rayon::prelude::*;

use super::Linear;
use crate::ops::gemm::{MatMut, MatRef, Parallelism, gemm};

/// Batches up to this size take the streaming path.
const SMALL_BATCH: usize = 8;
/// Forwards of up to this many outputs take the streaming path, whatever the batch.
const FEW_OUTPUTS: usize = 16;
/// Rows of X per task of a streaming forward with few outputs.
const ROW_BLOCK: usize = 16;
/// Outputs per task of the streaming forward.
const BLOCK: usize = 256;
/// Input features per task of the streaming dX: each task reads rows of W 4 KB at a time. With
/// 256 (1 KB, a 36 KB stride between them in AlexNet's first classifier layer) the hardware
/// prefetchers did not keep up: AlexNet's train step of 4 took 237–242 ms, 216–220 with 1024
/// and 219–222 with 2048 (2 threads, this Xeon).
const DX_BLOCK: usize = 1024;

/// Whether the streaming kernels can run: AVX2 and FMA.
fn dots_run() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::ops::isa::avx2();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

fn streams(n: usize) -> bool {
    n <= SMALL_BATCH && dots_run()
}

/// y (n, out) = x (n, in) · Wᵀ + b, written.
pub fn forward(op: &Linear, n: usize, x: &[f32], wb: &[f32], y: &mut [f32]) {
    let (fi, fo) = (op.in_features, op.out_features);
    let (w, b) = wb.split_at(op.weight_len());
    let y = &mut y[..n * fo];
    if dots_run() && (n <= SMALL_BATCH || fo <= FEW_OUTPUTS) {
        return forward_streaming(op, n, &x[..n * fi], w, op.bias.then_some(b), y);
    }
    let beta = if op.bias {
        for row in y.chunks_exact_mut(fo) {
            row.copy_from_slice(&b[..fo]);
        }
        1.0
    } else {
        0.0
    };
    gemm(n, fo, fi, MatRef::rows(x, fi), MatRef::transposed(w, fi), beta, MatMut::rows(y, fo), Parallelism::Rayon);
}

/// dx (n, in) = dy · W, written when wanted; dW += dyᵀ · x and db += Σₙ dy into `dwb` when wanted.
pub fn backward(op: &Linear, n: usize, x: &[f32], wb: &[f32], dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>) {
    let (fi, fo) = (op.in_features, op.out_features);
    let dy = &dy[..n * fo];
    if let Some(dx) = dx {
        let w = &wb[..op.weight_len()];
        if streams(n) {
            data_grad_streaming(op, n, dy, w, &mut dx[..n * fi]);
        } else {
            gemm(n, fi, fo, MatRef::rows(dy, fo), MatRef::rows(w, fi), 0.0, MatMut::rows(&mut dx[..n * fi], fi), Parallelism::Rayon);
        }
    }
    if let Some(dwb) = dwb {
        let (dw, db) = dwb.split_at_mut(op.weight_len());
        gemm(fo, fi, n, MatRef::transposed(dy, fo), MatRef::rows(x, fi), 1.0, MatMut::rows(dw, fi), Parallelism::Rayon);
        if op.bias {
            for row in dy.chunks_exact(fo) {
                for (g, &v) in db.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
    }
}

/// A matrix as a raw pointer, so that tasks can write disjoint parts of it.
#[derive(Clone, Copy)]
struct Disjoint(*mut f32);

// SAFETY: every task writes only its own block of columns or of rows (see the callers).
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

/// Y = X·Wᵀ + b for n ≤ SMALL_BATCH: each task reads its block of W's rows once, two at a time,
/// against up to 4 rows of X. With few outputs (and more rows), tasks of ROW_BLOCK rows of X
/// instead, each taking 4 rows at a time against every pair of W's rows.
fn forward_streaming(op: &Linear, n: usize, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let (fi, fo) = (op.in_features, op.out_features);
    let out = Disjoint(y.as_mut_ptr());
    // Y[r0 .. r0 + rows, o .. o + pair], rows ≤ 4 and pair ≤ 2.
    let tile = |o: usize, r0: usize| {
        let out = out;
        let (pair, rows) = ((fo - o).min(2), (n - r0).min(4));
        let (wp, xp) = (w[o * fi..(o + pair) * fi].as_ptr(), x[r0 * fi..(r0 + rows) * fi].as_ptr());
        // SAFETY: dots_run() checked AVX2 and FMA; W holds `pair` rows of fi from row o,
        // X `rows` rows of fi from row r0 (both sliced above).
        #[cfg(target_arch = "x86_64")]
        let sums = unsafe {
            match (rows, pair) {
                (4, 2) => widen(dots::<4, 2>(wp, xp, fi)),
                (4, _) => widen(dots::<4, 1>(wp, xp, fi)),
                (3, 2) => widen(dots::<3, 2>(wp, xp, fi)),
                (3, _) => widen(dots::<3, 1>(wp, xp, fi)),
                (2, 2) => widen(dots::<2, 2>(wp, xp, fi)),
                (2, _) => widen(dots::<2, 1>(wp, xp, fi)),
                (_, 2) => widen(dots::<1, 2>(wp, xp, fi)),
                _ => widen(dots::<1, 1>(wp, xp, fi)),
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let sums: [[f32; 2]; 4] = unreachable!("dots_run() is false off x86-64");
        for (r, row) in sums.iter().enumerate().take(rows) {
            for (p, &v) in row.iter().enumerate().take(pair) {
                // SAFETY: (r0 + r, o + p) is inside Y, and belongs to this task's rows and
                // columns alone.
                unsafe { *out.0.add((r0 + r) * fo + o + p) = v + b.map_or(0.0, |b| b[o + p]) };
            }
        }
    };
    if n <= SMALL_BATCH {
        (0..fo.div_ceil(BLOCK)).into_par_iter().for_each(|blk| {
            for o in (blk * BLOCK..((blk + 1) * BLOCK).min(fo)).step_by(2) {
                for r0 in (0..n).step_by(4) {
                    tile(o, r0);
                }
            }
        });
    } else {
        (0..n.div_ceil(ROW_BLOCK)).into_par_iter().for_each(|blk| {
            for r0 in (blk * ROW_BLOCK..((blk + 1) * ROW_BLOCK).min(n)).step_by(4) {
                for o in (0..fo).step_by(2) {
                    tile(o, r0);
                }
            }
        });
    }
}

/// A tile of sums padded to the largest shape.
fn widen<const R: usize, const P: usize>(t: [[f32; P]; R]) -> [[f32; 2]; 4] {
    let mut out = [[0.0; 2]; 4];
    for (o, t) in out.iter_mut().zip(&t) {
        o[..P].copy_from_slice(t);
    }
    out
}

/// `out[r][p] = Σ_i x[r·fi + i] · w[p·fi + i]`: R rows of X against P rows of W, 8 lanes at a
/// time, W read once.
///
/// # Safety
/// AVX2 and FMA; `w` holds P rows and `x` R rows of `fi` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots<const R: usize, const P: usize>(w: *const f32, x: *const f32, fi: usize) -> [[f32; P]; R] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); P]; R];
    let whole = fi / 8 * 8;
    // SAFETY: as the caller promises; every index is below fi.
    unsafe {
        for i in (0..whole).step_by(8) {
            let wv: [__m256; P] = std::array::from_fn(|p| _mm256_loadu_ps(w.add(p * fi + i)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(x.add(r * fi + i));
                for (a, &wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm256_fmadd_ps(xv, wv, *a);
                }
            }
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|p| {
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][p]);
                let tail: f32 = (whole..fi).map(|i| *x.add(r * fi + i) * *w.add(p * fi + i)).sum();
                lanes.iter().sum::<f32>() + tail
            })
        })
    }
}

/// dX = dY·W for n ≤ SMALL_BATCH: each task owns a block of dX's columns, keeps it in
/// registers-to-L1 sized accumulators, and reads W's rows once over that block.
fn data_grad_streaming(op: &Linear, n: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (fi, fo) = (op.in_features, op.out_features);
    let out = Disjoint(dx.as_mut_ptr());
    (0..fi.div_ceil(DX_BLOCK)).into_par_iter().for_each(|blk| {
        let out = out;
        let cols = blk * DX_BLOCK..((blk + 1) * DX_BLOCK).min(fi);
        let mut acc = [[0.0f32; DX_BLOCK]; SMALL_BATCH];
        // SAFETY: streams() checked AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            axpys(n, fo, fi, dy, w, cols.clone(), &mut acc)
        };
        for (r, acc) in acc.iter().enumerate().take(n) {
            for (j, &v) in acc.iter().enumerate().take(cols.len()) {
                // SAFETY: (r, cols.start + j) is inside dX, in this task's block of columns.
                unsafe { *out.0.add(r * fi + cols.start + j) = v };
            }
        }
    });
}

/// `acc[r][j] = Σ_o dy[r·fo + o] · w[o·fi + cols.start + j]`, compiled for AVX2 and FMA so the
/// loop over j runs 8 lanes at a time.
///
/// # Safety
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpys(n: usize, fo: usize, fi: usize, dy: &[f32], w: &[f32], cols: std::ops::Range<usize>, acc: &mut [[f32; DX_BLOCK]; SMALL_BATCH]) {
    let len = cols.len();
    for o in 0..fo {
        let wrow = &w[o * fi + cols.start..o * fi + cols.end];
        for (r, acc) in acc.iter_mut().enumerate().take(n) {
            let d = dy[r * fo + o];
            for (a, &wv) in acc[..len].iter_mut().zip(wrow) {
                *a = wv.mul_add(d, *a);
            }
        }
    }
}
