//! The BLIS loop nest around the microkernel.
//!
//! ```text
//! LOOP 5  jc: columns of C and B in blocks of NC            (B block lives in L3)
//!  LOOP 4  pc: the k dimension in blocks of KC              pack B[pc.., jc..] into NR-wide panels
//!   LOOP 3  ic: rows of C and A in blocks of MC             pack A[ic.., pc..] into MR-tall panels (L2)
//!    LOOP 2  jr: one NR-wide panel of B                     (stays in L1)
//!     LOOP 1  ir: one MR-tall panel of A  → microkernel: C[ir.., jr..] (+)= A panel · B panel
//! ```
//!
//! With [`Parallelism::Rayon`], loop 3 and loop 2 together are split into tasks; every task
//! packs its own block of A into a thread-local buffer, and all share the packed B.

use std::cell::Cell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::kernel::{self, MR, NR};
use super::{MatMut, MatRef, Parallelism};

/// Depth of one packed block: KC·(MR + NR) floats of a microkernel call fit in L1.
const KC: usize = 256;
/// Rows of A packed at once: MC·KC floats (72 KiB) stay in L2.
const MC: usize = 72;
/// Columns of B packed at once: KC·NC floats (3 MiB) stay in L3.
const NC: usize = 3072;

thread_local! {
    static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `C = A·B + β·C` where A is m × k, B is k × n and C is m × n. With `beta == 0` C is only
/// written, never read (it may hold anything, NaN included).
///
/// Panics when a view is too short for its shape and strides: that is a bug in the caller,
/// never a consequence of user input.
pub fn gemm(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, beta: f32, c: MatMut, par: Parallelism) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(fits(c.data.len(), m, n, c.rs, c.cs), "gemm: C is too short for {m}x{n}");
    if k == 0 {
        scale(m, n, beta, c);
        return;
    }
    assert!(fits(a.data.len(), m, k, a.rs, a.cs), "gemm: A is too short for {m}x{k}");
    assert!(fits(b.data.len(), k, n, b.rs, b.cs), "gemm: B is too short for {k}x{n}");

    let kern = kernel::select();
    let c_tile = CPtr { ptr: c.data.as_mut_ptr(), rs: c.rs, cs: c.cs };
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let n_panels = nc.div_ceil(NR);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // β applies once; the later k-blocks add to what the first wrote.
            let beta = if pc == 0 { beta } else { 1.0 };
            with_buffer(&PACK_B, n_panels * NR * kc, |bp| {
                pack_b(bp, b, pc, kc, jc, nc, par);
                let bp: &[f32] = bp;
                let block = |ic: usize, panels: std::ops::Range<usize>| {
                    let mc = MC.min(m - ic);
                    with_buffer(&PACK_A, mc.div_ceil(MR) * MR * kc, |ap| {
                        pack_a(ap, a, ic, mc, pc, kc);
                        for jp in panels {
                            let j0 = jp * NR;
                            let nr = NR.min(nc - j0);
                            let b_panel = &bp[jp * NR * kc..(jp + 1) * NR * kc];
                            for ip in 0..mc.div_ceil(MR) {
                                let i0 = ip * MR;
                                let a_panel = &ap[ip * MR * kc..(ip + 1) * MR * kc];
                                // SAFETY: the panels hold kc·MR and kc·NR floats; the tile
                                // (ic+i0.., jc+j0..) of mr × nr lies inside C (checked by `fits`
                                // above), and no other task writes it.
                                unsafe {
                                    kern(
                                        kc,
                                        a_panel.as_ptr(),
                                        b_panel.as_ptr(),
                                        c_tile.at(ic + i0, jc + j0),
                                        c.rs,
                                        c.cs,
                                        MR.min(mc - i0),
                                        nr,
                                        beta,
                                    )
                                }
                            }
                        }
                    })
                };
                let m_blocks = m.div_ceil(MC);
                match par {
                    Parallelism::Sequential => (0..m_blocks).for_each(|ib| block(ib * MC, 0..n_panels)),
                    Parallelism::Rayon => {
                        // Enough tasks to keep every thread busy, but each at least a few panels.
                        let threads = rayon::current_num_threads();
                        let n_chunks = (4 * threads).div_ceil(m_blocks).clamp(1, n_panels.div_ceil(2).max(1));
                        let per_chunk = n_panels.div_ceil(n_chunks);
                        (0..m_blocks * n_chunks).into_par_iter().for_each(|t| {
                            let (ib, jchunk) = (t / n_chunks, t % n_chunks);
                            let start = (jchunk * per_chunk).min(n_panels);
                            block(ib * MC, start..(start + per_chunk).min(n_panels));
                        });
                    }
                }
            });
        }
    }
}

/// Whether `len` elements hold an r × c matrix with strides (rs, cs).
fn fits(len: usize, r: usize, c: usize, rs: usize, cs: usize) -> bool {
    (r - 1) * rs + (c - 1) * cs < len
}

fn scale(m: usize, n: usize, beta: f32, c: MatMut) {
    for i in 0..m {
        for j in 0..n {
            let v = &mut c.data[i * c.rs + j * c.cs];
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
    }
}

/// Runs `f` on a thread-local buffer of at least `len` floats. The buffer is taken out of its
/// slot while in use, so a nested use on the same thread gets a fresh one instead of a panic.
fn with_buffer<R>(key: &'static LocalKey<Cell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    key.set(buf);
    out
}

/// Packs B[pc..pc+kc, jc..jc+nc] as NR-wide panels, each stored k-major (`[p][j]`), zero-padded
/// on the right.
fn pack_b(bp: &mut [f32], b: MatRef, pc: usize, kc: usize, jc: usize, nc: usize, par: Parallelism) {
    let pack_panel = |(jp, panel): (usize, &mut [f32])| {
        let j0 = jc + jp * NR;
        let nr = NR.min(jc + nc - j0);
        for p in 0..kc {
            let row = &mut panel[p * NR..(p + 1) * NR];
            let base = (pc + p) * b.rs + j0 * b.cs;
            if b.cs == 1 {
                row[..nr].copy_from_slice(&b.data[base..base + nr]);
            } else {
                for (j, v) in row[..nr].iter_mut().enumerate() {
                    *v = b.data[base + j * b.cs];
                }
            }
            row[nr..].fill(0.0);
        }
    };
    let panels = bp.chunks_mut(NR * kc).enumerate();
    if par == Parallelism::Rayon && nc > 4 * NR {
        bp.par_chunks_mut(NR * kc).enumerate().for_each(pack_panel);
    } else {
        panels.for_each(pack_panel);
    }
}

/// Packs A[ic..ic+mc, pc..pc+kc] as MR-tall panels, each stored k-major (`[p][i]`),
/// zero-padded at the bottom.
fn pack_a(ap: &mut [f32], a: MatRef, ic: usize, mc: usize, pc: usize, kc: usize) {
    for (ip, panel) in ap.chunks_mut(MR * kc).enumerate() {
        let i0 = ic + ip * MR;
        let mr = MR.min(ic + mc - i0);
        if a.rs == 1 {
            // A is stored column-major here (a transposed operand): rows of a column are adjacent.
            for p in 0..kc {
                let base = i0 + (pc + p) * a.cs;
                panel[p * MR..p * MR + mr].copy_from_slice(&a.data[base..base + mr]);
                panel[p * MR + mr..(p + 1) * MR].fill(0.0);
            }
        } else {
            for i in 0..MR {
                if i < mr {
                    let base = (i0 + i) * a.rs + pc * a.cs;
                    for p in 0..kc {
                        panel[p * MR + i] = a.data[base + p * a.cs];
                    }
                } else {
                    for p in 0..kc {
                        panel[p * MR + i] = 0.0;
                    }
                }
            }
        }
    }
}

/// The output matrix as a raw pointer, so that tasks on several threads can write disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr {
    ptr: *mut f32,
    rs: usize,
    cs: usize,
}

// SAFETY: every task writes a tile no other task writes (see `gemm`).
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    fn at(self, i: usize, j: usize) -> *mut f32 {
        self.ptr.wrapping_add(i * self.rs + j * self.cs)
    }
}
