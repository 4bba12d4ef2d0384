//! Microkernels: one MR × NR tile of C from a packed A panel and a packed B panel.
//!
//! `C[0..mr, 0..nr] = Σ_p a[p][0..MR] ⊗ b[p][0..NR] + β·C`, with the sum held in registers
//! for the whole k loop and C touched once at the end.

/// Rows of a tile: 6 rows × 2 vectors = 12 accumulators, leaving 4 of the 16 AVX registers for
/// the two B vectors and the broadcast A value.
pub const MR: usize = 6;
/// Columns of a tile: two 8-wide AVX vectors.
pub const NR: usize = 16;

/// `kern(kc, a, b, c, rs, cs, mr, nr, beta)`.
///
/// # Safety
/// `a` points to `kc·MR` floats, `b` to `kc·NR` floats, and the `mr × nr` tile at `c` with
/// strides `(rs, cs)` is valid for reads (if `beta != 0`) and writes.
pub type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, usize, usize, usize, f32);

/// The fastest kernel this processor runs.
pub fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return avx2_fma;
    }
    generic
}

/// Writes an accumulated tile to C: `C = acc + β·C` on the first `mr × nr` entries.
///
/// # Safety
/// As for [`Kernel`].
#[inline(always)]
unsafe fn store_tile(acc: &[[f32; NR]; MR], c: *mut f32, rs: usize, cs: usize, mr: usize, nr: usize, beta: f32) {
    for (i, row) in acc.iter().enumerate().take(mr) {
        for (j, &v) in row.iter().enumerate().take(nr) {
            // SAFETY: (i, j) is inside the tile.
            unsafe {
                let p = c.add(i * rs + j * cs);
                *p = if beta == 0.0 { v } else { v + beta * *p };
            }
        }
    }
}

/// Portable kernel; LLVM vectorises the inner loop with whatever the target has.
///
/// # Safety
/// As for [`Kernel`].
unsafe fn generic(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, cs: usize, mr: usize, nr: usize, beta: f32) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the panels hold kc·MR and kc·NR floats.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                // Not `mul_add`: without hardware FMA that is a slow library call.
                acc[i][j] += ap[i] * bp[j];
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { store_tile(&acc, c, rs, cs, mr, nr, beta) }
}

/// AVX2 + FMA kernel: per k step, two loads of B, six broadcasts of A, twelve FMAs.
///
/// # Safety
/// As for [`Kernel`], and the processor must support AVX2 and FMA (checked by [`select`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, cs: usize, mr: usize, nr: usize, beta: f32) {
    use std::arch::x86_64::*;
    // Fetch the C tile now, so that its cache misses overlap the k loop instead of stalling
    // the stores at the end (BLIS does the same).
    if beta != 0.0 {
        for i in 0..mr {
            for j in [0, nr - 1] {
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs + j * cs) as *const i8);
            }
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so these reads stay inside the panels.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(p * MR + i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
    }
    if mr == MR && nr == NR && cs == 1 {
        // A full tile of a row-major C: vector stores straight into it.
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: the tile is MR × NR with unit column stride.
            unsafe {
                let p = c.add(i * rs);
                let (mut v0, mut v1) = (row[0], row[1]);
                if beta != 0.0 {
                    let bv = _mm256_set1_ps(beta);
                    v0 = _mm256_fmadd_ps(bv, _mm256_loadu_ps(p), v0);
                    v1 = _mm256_fmadd_ps(bv, _mm256_loadu_ps(p.add(8)), v1);
                }
                _mm256_storeu_ps(p, v0);
                _mm256_storeu_ps(p.add(8), v1);
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; MR];
        for (t, row) in tile.iter_mut().zip(acc.iter()) {
            // SAFETY: each row of `tile` holds NR = 16 floats.
            unsafe {
                _mm256_storeu_ps(t.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), row[1]);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { store_tile(&tile, c, rs, cs, mr, nr, beta) }
    }
}
