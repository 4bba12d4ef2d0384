//! The BLIS loop nest around the microkernel.
//!
//! ```text
//! LOOP 5  jc: columns of C and B in blocks of NC            (a packed B block lives in L3)
//!  LOOP 4  pc: the k dimension in blocks of KC              pack B[pc.., jc..] into NR-wide panels
//!   LOOP 3  ic: rows of C and A in blocks of MC             pack A[ic.., pc..] into MR-tall panels (L2)
//!    LOOP 2  jr: one NR-wide panel of B                     (stays in L1)
//!     LOOP 1  ir: one MR-tall panel of A  → microkernel: C[ir.., jr..] (+)= A panel · B panel
//! ```
//!
//! With [`Parallelism::Rayon`], the rows (in MC blocks) and columns (in runs of NR panels) of C
//! are split into tasks; every task packs what it reads into thread-local buffers, so tasks
//! share nothing but the read-only operands and never write the same tile.

use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::kernel::{self, MAX_MR, MAX_NR, Micro};
use crate::ops::aligned::AlignedVec;
use super::{MatMut, MatRef, Output, Panels, Parallelism, Strided, StridedOut};

/// Depth of one packed block: KC·(MR + NR) floats of a microkernel call stay in L1.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of both MRs): MC·KC floats (144 KiB) stay in L2.
const MC: usize = 144;
/// Columns of B packed at once (a multiple of both NRs): KC·NC floats (3 MiB) stay in L3.
const NC: usize = 3072;

thread_local! {
    static PACK_A: Cell<Option<AlignedVec<f32>>> = const { Cell::new(None) };
    static PACK_B: Cell<Option<AlignedVec<f32>>> = const { Cell::new(None) };
}

/// One matrix product `C = epilogue(A·B + β·C)` where A is m × k and B is k × n.
pub struct Gemm<'a> {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Where A's panels are packed from.
    pub a: &'a dyn Panels,
    /// Where B's panels are packed from.
    pub b: &'a dyn Panels,
    /// Where C's tiles are written.
    pub c: &'a dyn Output,
    /// 0: C is only written, never read (it may hold anything, NaN included); 1: added to.
    pub beta: f32,
    /// Added to row i of the result (a convolution's or linear layer's bias).
    pub bias: Option<&'a [f32]>,
    /// `max(0, ·)` on the result.
    pub relu: bool,
}

/// `C = A·B + β·C` on strided matrices.
///
/// Panics when a view is too short for its shape and strides: that is a bug in the caller,
/// never a consequence of user input.
pub fn gemm(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, beta: f32, c: MatMut, par: Parallelism) {
    if m > 0 && k > 0 {
        assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "gemm: A is too short for {m}x{k}");
    }
    if k > 0 && n > 0 {
        assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "gemm: B is too short for {k}x{n}");
    }
    let c = StridedOut::new(c, m, n);
    run(&Gemm { m, n, k, a: &Strided::a(a), b: &Strided::b(b), c: &c, beta, bias: None, relu: false }, par);
}

/// Runs a product, split over rayon's threads or not.
pub fn run(g: &Gemm, par: Parallelism) {
    run_with(g, par, kernel::select())
}

/// [`run`] with a given microkernel (the tests run every one the processor has).
pub fn run_with(g: &Gemm, par: Parallelism, micro: Micro) {
    if g.m == 0 || g.n == 0 {
        return;
    }
    if g.k == 0 {
        epilogue_only(g);
        return;
    }
    match par {
        Parallelism::Sequential => block(g, micro, 0..g.m, 0..g.n),
        Parallelism::Rayon => {
            // Enough tasks to keep every thread busy, each at least a few panels wide.
            let threads = rayon::current_num_threads();
            let m_blocks = g.m.div_ceil(MC);
            let n_panels = g.n.div_ceil(micro.nr);
            let n_chunks = (4 * threads).div_ceil(m_blocks).clamp(1, n_panels.div_ceil(2).max(1));
            let per_chunk = n_panels.div_ceil(n_chunks) * micro.nr;
            (0..m_blocks * n_chunks).into_par_iter().for_each(|t| {
                let (ib, jb) = (t / n_chunks, t % n_chunks);
                let rows = ib * MC..((ib + 1) * MC).min(g.m);
                let cols = (jb * per_chunk).min(g.n)..((jb + 1) * per_chunk).min(g.n);
                if !cols.is_empty() {
                    block(g, micro, rows, cols);
                }
            });
        }
    }
}

/// Loops 5 to 1 over `rows × cols` of C.
fn block(g: &Gemm, micro: Micro, rows: Range<usize>, cols: Range<usize>) {
    let (mr, nr) = (micro.mr, micro.nr);
    for jc in cols.clone().step_by(NC) {
        let nc = NC.min(cols.end - jc);
        let n_panels = nc.div_ceil(nr);
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            // β applies to the first block of k; the epilogue to the last.
            let beta = if pc == 0 { g.beta } else { 1.0 };
            let last = pc + kc == g.k;
            with_buffer(&PACK_B, KC * NC, |bp| {
                g.b.pack(&mut bp[..n_panels * nr * kc], nr, jc, nc, pc, kc);
                for ic in rows.clone().step_by(MC) {
                    let mc = MC.min(rows.end - ic);
                    with_buffer(&PACK_A, MC * KC, |ap| {
                        g.a.pack(&mut ap[..mc.div_ceil(mr) * mr * kc], mr, ic, mc, pc, kc);
                        for jp in 0..n_panels {
                            let j0 = jp * nr;
                            let b_panel = &bp[j0 * kc..(j0 + nr) * kc];
                            for ip in 0..mc.div_ceil(mr) {
                                let i0 = ip * mr;
                                let a_panel = &ap[i0 * kc..(i0 + mr) * kc];
                                tile(g, micro, kc, a_panel, b_panel, ic + i0, jc + j0, mr.min(mc - i0), nr.min(nc - j0), beta, last);
                            }
                        }
                    });
                }
            });
        }
    }
}

/// One microkernel call, straight into C when the tile lies in rows of unit stride, else through
/// a local tile scattered with the same epilogue.
#[allow(clippy::too_many_arguments)]
fn tile(g: &Gemm, micro: Micro, kc: usize, a: &[f32], b: &[f32], i0: usize, j0: usize, mr: usize, nr: usize, beta: f32, last: bool) {
    let bias = match (last, g.bias) {
        (true, Some(bias)) => &bias[i0..i0 + mr],
        _ => &[][..],
    };
    let relu = last && g.relu;
    match g.c.tile(i0, j0, nr) {
        Some((ptr, rs)) => {
            let bias_ptr = if bias.is_empty() { std::ptr::null() } else { bias.as_ptr() };
            // SAFETY: the panels hold kc·MR and kc·NR floats (the driver sized them); the
            // output map vouches for the mr × nr tile at `ptr`; only this task writes it.
            unsafe { (micro.kernel)(kc, a.as_ptr(), b.as_ptr(), ptr, rs, mr, nr, beta, bias_ptr, relu) }
        }
        None => {
            let mut local = [0.0f32; MAX_MR * MAX_NR];
            // SAFETY: as above; `local` holds MR rows of stride NR.
            unsafe { (micro.kernel)(kc, a.as_ptr(), b.as_ptr(), local.as_mut_ptr(), micro.nr, mr, nr, 0.0, std::ptr::null(), false) };
            for i in 0..mr {
                let b = bias.get(i).copied().unwrap_or(0.0);
                for j in 0..nr {
                    let p = g.c.at(i0 + i, j0 + j);
                    // SAFETY: the output map vouches for every (i, j) inside C; only this task
                    // writes this tile.
                    unsafe {
                        let mut v = local[i * micro.nr + j] + b;
                        if beta != 0.0 {
                            v += beta * *p;
                        }
                        *p = if relu { v.max(0.0) } else { v };
                    }
                }
            }
        }
    }
}

/// k = 0: C = epilogue(β·C).
fn epilogue_only(g: &Gemm) {
    for i in 0..g.m {
        let b = g.bias.map_or(0.0, |b| b[i]);
        for j in 0..g.n {
            let p = g.c.at(i, j);
            // SAFETY: the output map vouches for every (i, j) inside C.
            unsafe {
                let v = if g.beta == 0.0 { b } else { g.beta * *p + b };
                *p = if g.relu { v.max(0.0) } else { v };
            }
        }
    }
}

/// Runs `f` on this thread's buffer of `len` floats. It is allocated once at its largest size,
/// so a warmed-up thread never allocates; it is taken out of its slot while in use, so a nested
/// use on the same thread gets a fresh one instead of a panic.
/// Gives every thread of rayon's pool its packing buffers now: a thread that first joins a
/// product in a later training step would otherwise allocate them then.
pub(crate) fn reserve_packing_buffers() {
    rayon::broadcast(|_| {
        with_buffer(&PACK_A, MC * KC, |_| ());
        with_buffer(&PACK_B, KC * NC, |_| ());
    });
}

fn with_buffer<R>(key: &'static LocalKey<Cell<Option<AlignedVec<f32>>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // On a cache line: the microkernel's vector loads of the packed panels then never read two.
    let mut buf = key.take().filter(|b| b.len() >= len).unwrap_or_else(|| AlignedVec::new(len));
    let out = f(&mut buf[..len]);
    key.set(Some(buf));
    out
}
