//! Microkernels: one MR × NR tile of C from a packed A panel and a packed B panel.
//!
//! `C[0..mr, 0..nr] = epilogue(Σ_p a[p][0..MR] ⊗ b[p][0..NR] + β·C)`, with the sum held in
//! registers for the whole k loop and C touched once at the end. The epilogue adds `bias[i]` to
//! row i and applies ReLU, when asked (the driver asks on the last block of k only).
//!
//! With AVX-512 the tile is 12 × 32: 24 accumulators, 2 B vectors and one broadcast of the 32
//! registers. With AVX2 it is 6 × 16: 12 accumulators, 2 B vectors and one broadcast, 15 of the
//! 16 AVX registers. A 4 × 24 tile (12 accumulators, 3 B vectors, one broadcast: all 16) wasted fewer
//! padded rows on some shapes, but LLVM spilled an accumulator to the stack in its k loop, and
//! it ran at half the speed (512³ GEMM on one thread: 8.4 ms against 4.2 ms for 6 × 16).

use crate::ops::isa::{Isa, isa};

/// `kern(kc, a, b, c, rs, mr, nr, beta, bias, relu)`: the tile at `c` has row stride `rs` and
/// unit column stride; `bias` is null or points at the bias of the tile's first row.
///
/// # Safety
/// `a` points to `kc·MR` floats, `b` to `kc·NR` floats; the `mr × nr` tile at `c` is valid for
/// reads (if `beta != 0`) and writes; `bias`, if not null, to `mr` floats.
pub type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, usize, usize, f32, *const f32, bool);

/// A microkernel and its tile shape.
#[derive(Clone, Copy)]
pub struct Micro {
    /// Rows of a tile.
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// The kernel.
    pub kernel: Kernel,
}

/// The microkernel for products of `rows` rows (A's), where their count is known: AVX-512's
/// 8 × 32 where `rows` is a multiple of 8 and its 12 × 32 would compute more than 1/16 more
/// rows than there are, rows no one reads (32 in 36, 64 in 72), else [`select`]'s. 8 × 32
/// holds 16 sums, not 24, and takes 10 loads for 16 FMAs, not 14 for 24. Winograd's forwards
/// on one thread of a Xeon (family 6 model 167), median GFLOP/s of the direct sum, 12 × 32
/// against 8 × 32 in turn: 32 → 64 on 16 × 16 at batch 128, 180–188 against 189–192, and its
/// data gradient (64 → 32) 165–171 against 172–177; 64 → 64 on 32 × 32, 180 against 184; but
/// 64 → 128 on 8 × 8, 233–234 against 223–227 (128 rows in 132).
pub fn select_for_rows(rows: usize) -> Micro {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if rows % 8 == 0 && rows.next_multiple_of(12) * 16 > rows * 17 => Micro { mr: 8, nr: 32, kernel: avx512_8x32 },
        _ => select(),
    }
}

/// The microkernel of the instruction set in use ([`crate::ops::isa`]).
pub fn select() -> Micro {
    select_for(isa())
}

/// The microkernel written for `isa`: AVX-512 12 × 32 (24 accumulators of the 32 registers),
/// AVX2 6 × 16 (12 of 16), or the portable 6 × 16.
pub fn select_for(isa: Isa) -> Micro {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Micro { mr: 12, nr: 32, kernel: avx512_12x32 },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Micro { mr: 6, nr: 16, kernel: avx2_6x16 },
        _ => Micro { mr: 6, nr: 16, kernel: generic::<6, 16> },
    }
}

/// The largest tile of any kernel, for sizing buffers.
pub const MAX_MR: usize = 12;
/// The widest tile of any kernel, for sizing buffers.
pub const MAX_NR: usize = 32;

/// Writes the first `mr × nr` entries of an accumulated tile to C through the epilogue.
///
/// # Safety
/// As for [`Kernel`].
#[inline(always)]
unsafe fn store_tile<const NR: usize>(acc: &[[f32; NR]], c: *mut f32, rs: usize, mr: usize, nr: usize, beta: f32, bias: *const f32, relu: bool) {
    for (i, row) in acc.iter().enumerate().take(mr) {
        // SAFETY: i < mr, so the bias (if any) and the row are inside the tile.
        let b = if bias.is_null() { 0.0 } else { unsafe { *bias.add(i) } };
        for (j, &v) in row.iter().enumerate().take(nr) {
            // SAFETY: (i, j) is inside the tile.
            unsafe {
                let p = c.add(i * rs + j);
                let mut v = if beta == 0.0 { v } else { v + beta * *p };
                v += b;
                *p = if relu { v.max(0.0) } else { v };
            }
        }
    }
}

/// Portable kernel; LLVM vectorises the inner loop with whatever the target has.
///
/// # Safety
/// As for [`Kernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn generic<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs: usize,
    mr: usize,
    nr: usize,
    beta: f32,
    bias: *const f32,
    relu: bool,
) {
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
    unsafe { store_tile(&acc, c, rs, mr, nr, beta, bias, relu) }
}

/// An AVX2 + FMA kernel of `$mr` rows and `$nv` vectors of 8: per k step, `$nv` loads of B,
/// `$mr` broadcasts of A, `$mr · $nv` FMAs.
macro_rules! avx2_kernel {
    ($name:ident, $mr:literal, $nv:literal) => {
        /// # Safety
        /// As for [`Kernel`], and the processor must support AVX2 and FMA (checked by [`select`]).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, mr: usize, nr: usize, beta: f32, bias: *const f32, relu: bool) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NV: usize = $nv;
            const NR: usize = 8 * NV;
            // Fetch the C tile now, so that its cache misses overlap the k loop instead of
            // stalling the stores at the end (BLIS does the same).
            if beta != 0.0 {
                for i in 0..mr {
                    _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs + nr - 1) as *const i8);
                }
            }
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            for p in 0..kc {
                // SAFETY: p < kc, so these reads stay inside the panels.
                unsafe {
                    let mut bv = [_mm256_setzero_ps(); NV];
                    for (v, bv) in bv.iter_mut().enumerate() {
                        *bv = _mm256_loadu_ps(b.add(p * NR + 8 * v));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = _mm256_broadcast_ss(&*a.add(p * MR + i));
                        for (r, bv) in row.iter_mut().zip(&bv) {
                            *r = _mm256_fmadd_ps(ai, *bv, *r);
                        }
                    }
                }
            }
            if mr == MR && nr == NR {
                // A full tile: vector stores straight into C, through the epilogue.
                let zero = _mm256_setzero_ps();
                let betav = _mm256_set1_ps(beta);
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: the tile is MR × NR with row stride rs; the bias has MR entries.
                    unsafe {
                        let p = c.add(i * rs);
                        let bi = if bias.is_null() { zero } else { _mm256_set1_ps(*bias.add(i)) };
                        for (v, &x) in row.iter().enumerate() {
                            let mut x = x;
                            if beta != 0.0 {
                                x = _mm256_fmadd_ps(betav, _mm256_loadu_ps(p.add(8 * v)), x);
                            }
                            x = _mm256_add_ps(x, bi);
                            if relu {
                                x = _mm256_max_ps(x, zero);
                            }
                            _mm256_storeu_ps(p.add(8 * v), x);
                        }
                    }
                }
            } else {
                let mut tile = [[0.0f32; NR]; MR];
                for (t, row) in tile.iter_mut().zip(acc.iter()) {
                    for (v, &x) in row.iter().enumerate() {
                        // SAFETY: each row of `tile` holds NR = 8·NV floats.
                        unsafe { _mm256_storeu_ps(t.as_mut_ptr().add(8 * v), x) };
                    }
                }
                // SAFETY: forwarded from the caller.
                unsafe { store_tile(&tile, c, rs, mr, nr, beta, bias, relu) }
            }
        }
    };
}

avx2_kernel!(avx2_6x16, 6, 2);

/// An AVX-512 kernel of `$mr` rows and `$nv` vectors of 16: per k step, `$nv` loads of B,
/// `$mr` broadcasts of A (folded into the FMAs), `$mr · $nv` FMAs.
macro_rules! avx512_kernel {
    ($name:ident, $mr:literal, $nv:literal) => {
        /// # Safety
        /// As for [`Kernel`], and the processor must support AVX-512F (checked by [`select`]).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, mr: usize, nr: usize, beta: f32, bias: *const f32, relu: bool) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NV: usize = $nv;
            const NR: usize = 16 * NV;
            if beta != 0.0 {
                for i in 0..mr {
                    _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * rs + nr - 1) as *const i8);
                }
            }
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            for p in 0..kc {
                // SAFETY: p < kc, so these reads stay inside the panels.
                unsafe {
                    let mut bv = [_mm512_setzero_ps(); NV];
                    for (v, bv) in bv.iter_mut().enumerate() {
                        *bv = _mm512_loadu_ps(b.add(p * NR + 16 * v));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = _mm512_set1_ps(*a.add(p * MR + i));
                        for (r, bv) in row.iter_mut().zip(&bv) {
                            *r = _mm512_fmadd_ps(ai, *bv, *r);
                        }
                    }
                }
            }
            // The rows of the tile straight into C through the epilogue, each vector's stores
            // masked to the tile's first nr columns. (A partial tile went through a stack copy
            // for `store_tile`: LLVM then kept `acc` in memory, zeroed by a memset of 1.5 KB on
            // every call, 2.5–3.5% of the CIFAR network's forward at batch 128 in Winograd's
            // GEMMs.) The rows count to MR, not to the run-time mr, for the same reason.
            let zero = _mm512_setzero_ps();
            let betav = _mm512_set1_ps(beta);
            let masks: [__mmask16; NV] = std::array::from_fn(|v| (((1u32 << nr.saturating_sub(16 * v).min(16)) - 1) & 0xffff) as __mmask16);
            for (i, row) in acc.iter().enumerate() {
                if i >= mr {
                    continue;
                }
                // SAFETY: row i < mr of the tile has nr floats at stride rs, and the masks keep
                // the loads and stores to them (a vector past them has an empty mask, and its
                // address is only formed); the bias has mr entries.
                unsafe {
                    let p = c.add(i * rs);
                    let bi = if bias.is_null() { zero } else { _mm512_set1_ps(*bias.add(i)) };
                    for ((v, &x), &m) in row.iter().enumerate().zip(&masks) {
                        let mut x = x;
                        if beta != 0.0 {
                            x = _mm512_fmadd_ps(betav, _mm512_maskz_loadu_ps(m, p.wrapping_add(16 * v)), x);
                        }
                        x = _mm512_add_ps(x, bi);
                        if relu {
                            x = _mm512_max_ps(x, zero);
                        }
                        _mm512_mask_storeu_ps(p.wrapping_add(16 * v), m, x);
                    }
                }
            }
        }
    };
}

avx512_kernel!(avx512_12x32, 12, 2);
avx512_kernel!(avx512_8x32, 8, 2);

/// An indirect kernel: `tile_out = tile_in + Σ_p a(·, p) ⊗ b[p]` where the A operand is read
/// in place, `a(i, p) = x[rows[i] + cols[p]]`, instead of from a packed panel.
///
/// `kern(kc, x, rows, cols, b, tile_in, ld_in, tile_out, ld_out)`: `rows` holds MR offsets,
/// `cols` kc offsets; `tile_in` (null for zeros) and `tile_out` are MR × NR tiles of row strides
/// `ld_in` and `ld_out`.
///
/// A convolution is such a product twice over: forward, rows are output pixels (offsets of their
/// windows' corners in the padded input) and cols are taps (offsets of (ci, ky, kx) from a
/// corner); for the filter gradient, rows are taps and cols are pixels.
///
/// # Safety
/// Every `x[rows[i] + cols[p]]` is readable; `b` holds `kc·NR` floats; the tiles hold MR rows of
/// NR floats at stride `ld`.
pub type IndirectKernel = unsafe fn(usize, *const f32, *const u32, *const u32, *const f32, *const f32, usize, *mut f32, usize);

/// An indirect kernel and its tile shape.
#[derive(Clone, Copy)]
pub struct Indirect {
    /// Rows of a tile.
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// k steps a kernel call must take in whole runs of: groups of taps, a window's row, for
    /// the sliding kernels ([`select_sliding`]); pixels, an output row, for the sliding filter
    /// gradient's ([`select_sliding_filter`]); else 1.
    pub run: usize,
    /// The kernel.
    pub kernel: IndirectKernel,
}

/// The indirect microkernel written for `isa`: AVX-512 8 × 32 (16 accumulators; its 8 row
/// pointers and the loop's own stay in the 16 general registers), AVX2 6 × 16, or the portable
/// 6 × 16.
pub fn select_indirect_for(isa: Isa) -> Indirect {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Indirect { mr: 8, nr: 32, run: 1, kernel: avx512_indirect_8x32 },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Indirect { mr: 6, nr: 16, run: 1, kernel: avx2_indirect_6x16 },
        _ => Indirect { mr: 6, nr: 16, run: 1, kernel: generic_indirect::<6, 16> },
    }
}

/// The indirect microkernel for products with `channels` columns (a convolution's output
/// channels): with AVX-512, 8 × 16 when they fit one 16-float vector (a 32-wide tile would be
/// half padding), else 8 × 32.
pub fn select_indirect_for_channels(channels: usize) -> Indirect {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if channels <= 16 => Indirect { mr: 8, nr: 16, run: 1, kernel: avx512_indirect_8x16 },
        other => select_indirect_for(other),
    }
}

/// The indirect microkernel for a convolution's forward pooled 2 × 2 in its epilogue, whose
/// tiles must be whole windows, four rows each: AVX-512's 8 rows as
/// [`select_indirect_for_channels`] gives them; with AVX2 and portably, 4 × 16 instead of 6 × 16.
/// Same columns as [`select_indirect_for_channels`], so both read the same weight panels. With
/// AVX2, 4 × 16 has 8 accumulators, as many as two FMA units of latency 4 keep busy; alone on
/// a Zen 1 core it ran at 93% of 6 × 16's speed, where the pass it saves (the whole output
/// written, read back by the pooling) is more.
pub fn select_indirect_for_windows(channels: usize) -> Indirect {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => select_indirect_for_channels(channels),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Indirect { mr: 4, nr: 16, run: 1, kernel: avx2_indirect_4x16 },
        _ => Indirect { mr: 4, nr: 16, run: 1, kernel: generic_indirect::<4, 16> },
    }
}

/// The channel-blocked indirect kernel for products with `channels` columns, where the input
/// is laid out in blocks of [`CHANNEL_BLOCK`] channels (NCHW16c, as ONNX Runtime's MLAS and
/// oneDNN lay it out): AVX-512 only, else `None`.
///
/// Same signature as [`IndirectKernel`], but `kc` counts *groups* of 16 taps, `cols` holds one
/// offset per group, and tap `i` of a group is read at `+ i`: a group is one tap of 16
/// consecutive input channels, one cache line per pixel. The 16 taps of a group are unrolled with
/// constant offsets, so a group costs one offset load and MR additions instead of 16 and none.
/// On one core of this Xeon with the B panel in L1, 8 × 32: 199–211 GFLOP/s against the
/// indirect kernel's 187–196 (peak 240).
pub fn select_blocked_for_channels(channels: usize) -> Option<Indirect> {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if channels <= 16 => Some(Indirect { mr: 8, nr: 16, run: 1, kernel: avx512_blocked_8x16 }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(Indirect { mr: 8, nr: 32, run: 1, kernel: avx512_blocked_8x32 }),
        _ => None,
    }
}

/// Input channels per block of the channel-blocked layout: one AVX-512 vector, one cache line.
pub const CHANNEL_BLOCK: usize = 16;

/// The start of an AVX-512 indirect kernel: a pointer per row, `x + rows[i]`, and the MR × NV
/// accumulators, from `tile_in` (row stride `ld_in`) or zero. Inside `unsafe`, as the kernel's
/// caller promises.
macro_rules! avx512_tile_in {
    ($mr:expr, $nv:expr, $x:ident, $rows:ident, $tile_in:ident, $ld_in:ident) => {{
        let mut row = [$x; $mr];
        for (i, r) in row.iter_mut().enumerate() {
            *r = $x.add(*$rows.add(i) as usize);
        }
        (row, avx512_sums_in!($mr, $nv, $tile_in, $ld_in))
    }};
}

/// The MR × NV accumulators of an AVX-512 indirect kernel, from `tile_in` (row stride `ld_in`)
/// or zero.
macro_rules! avx512_sums_in {
    ($mr:expr, $nv:expr, $tile_in:ident, $ld_in:ident) => {{
        let mut acc = [[_mm512_setzero_ps(); $nv]; $mr];
        if !$tile_in.is_null() {
            for (i, a) in acc.iter_mut().enumerate() {
                for (v, a) in a.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps($tile_in.add(i * $ld_in + 16 * v));
                }
            }
        }
        acc
    }};
}

/// The end of an AVX-512 indirect kernel: the accumulators stored at `tile_out` (row stride
/// `ld_out`).
macro_rules! avx512_tile_out {
    ($acc:ident, $tile_out:ident, $ld_out:ident) => {
        for (i, a) in $acc.iter().enumerate() {
            for (v, &a) in a.iter().enumerate() {
                _mm512_storeu_ps($tile_out.add(i * $ld_out + 16 * v), a);
            }
        }
    };
}

/// The 16 channels of a group in [`avx512_blocked`]: per channel `ic`, NV vectors of B at
/// `b + ic·NR`, and each row's input at `at[i] + ic` broadcast into its accumulators.
macro_rules! blocked_channels {
    ($acc:ident, $at:ident, $b:ident, $nr:expr, $nv:expr; $($ic:literal)*) => {$(
        let mut bv = [_mm512_setzero_ps(); $nv];
        for (v, bv) in bv.iter_mut().enumerate() {
            *bv = _mm512_loadu_ps($b.add($ic * $nr + 16 * v));
        }
        for (p, acc) in $at.iter().zip($acc.iter_mut()) {
            let a = _mm512_set1_ps(*p.add($ic));
            for (acc, bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(a, *bv, *acc);
            }
        }
    )*};
}

/// An AVX-512 channel-blocked indirect kernel of `$mr` rows and `$nv` vectors of 16 (see
/// [`select_blocked_for_channels`]).
macro_rules! avx512_blocked {
    ($name:ident, $mr:literal, $nv:literal) => {
        /// # Safety
        /// As for [`IndirectKernel`] with `kc` groups of [`CHANNEL_BLOCK`] taps (`b` holds
        /// `16·kc·NR` floats, and every `x[rows[i] + cols[g] + 0..16]` is readable), and the
        /// processor must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, x: *const f32, rows: *const u32, cols: *const u32, b: *const f32, tile_in: *const f32, ld_in: usize, tile_out: *mut f32, ld_out: usize) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NV: usize = $nv;
            const NR: usize = 16 * NV;
            // SAFETY: as the caller promises.
            unsafe {
                let (row, mut acc) = avx512_tile_in!(MR, NV, x, rows, tile_in, ld_in);
                let mut b = b;
                for g in 0..kc {
                    let c = *cols.add(g) as usize;
                    let at: [*const f32; MR] = std::array::from_fn(|i| row[i].add(c));
                    // Written out 16 times (LLVM keeps a loop otherwise), so that every load
                    // has a constant offset from its row's pointer or from b.
                    blocked_channels!(acc, at, b, NR, NV; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
                    b = b.add(CHANNEL_BLOCK * NR);
                }
                avx512_tile_out!(acc, tile_out, ld_out);
            }
        }
    };
}

avx512_blocked!(avx512_blocked_8x32, 8, 2);
avx512_blocked!(avx512_blocked_8x16, 8, 1);

/// The channel-blocked kernel for up to 32 output channels (one or two vectors), stride 1,
/// where a tile is `ur` consecutive outputs of one row (the row's width a multiple of `ur`)
/// and the groups come in runs of `kw`, a row of the window (see [`select_sliding`]), or
/// `None`. AVX-512 only, windows 3 or 5 wide.
///
/// [`select_blocked_for_channels`]'s 8 × 16 tile takes a broadcast of the input per FMA, and
/// one load of B per eight: more loads than the two a cycle, so it ran at 75% of the peak on
/// its own. Here each input of the row, broadcast once, meets the `kw` weight vectors of its
/// taps (held in registers for an input channel): a run of the window's row costs UR + KW − 1
/// broadcasts and KW·NV loads a channel for UR·KW·NV FMAs. The tile is the largest of 16, 14,
/// 12 or 8 outputs (8 or 7 for 32 channels: 16 sums) that divides the row.
pub fn select_sliding(channels: usize, w_out: usize, kw: usize) -> Option<Indirect> {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 && matches!(kw, 3 | 5) {
        let fits = |ur: usize| w_out % ur == 0;
        let (ur, nr, kernel): (usize, usize, IndirectKernel) = match (channels, kw) {
            (0..=16, 3) if fits(16) => (16, 16, avx512_sliding_16x16_3),
            (0..=16, 3) if fits(14) => (14, 16, avx512_sliding_14x16_3),
            (0..=16, 3) if fits(12) => (12, 16, avx512_sliding_12x16_3),
            (0..=16, 3) if fits(8) => (8, 16, avx512_sliding_8x16_3),
            (0..=16, 5) if fits(16) => (16, 16, avx512_sliding_16x16_5),
            (0..=16, 5) if fits(14) => (14, 16, avx512_sliding_14x16_5),
            (0..=16, 5) if fits(12) => (12, 16, avx512_sliding_12x16_5),
            (0..=16, 5) if fits(8) => (8, 16, avx512_sliding_8x16_5),
            (17..=32, 3) if fits(8) => (8, 32, avx512_sliding_8x32_3),
            (17..=32, 3) if fits(7) => (7, 32, avx512_sliding_7x32_3),
            (17..=32, 5) if fits(8) => (8, 32, avx512_sliding_8x32_5),
            (17..=32, 5) if fits(7) => (7, 32, avx512_sliding_7x32_5),
            _ => return None,
        };
        return Some(Indirect { mr: ur, nr, run: kw, kernel });
    }
    let _ = (channels, w_out, kw);
    None
}

/// One input channel `c` of a run in [`avx512_sliding`]: per input position `p` of the row
/// (written out: LLVM keeps a loop otherwise, and the sums in memory), its value broadcast and
/// multiplied into the sums of the outputs p − kx it reaches.
macro_rules! sliding_positions {
    ($acc:ident, $w:ident, $base:ident, $c:ident, $ur:expr, $kw:expr; $($p:literal)*) => {$(
        if $p < $ur + $kw - 1 {
            let v = _mm512_set1_ps(*$base.add($p * CHANNEL_BLOCK + $c));
            for kx in 0..$kw {
                if $p >= kx && $p - kx < $ur {
                    for (a, w) in $acc[$p - kx].iter_mut().zip(&$w[kx]) {
                        *a = _mm512_fmadd_ps(v, *w, *a);
                    }
                }
            }
        }
    )*};
}

/// An AVX-512 sliding-window kernel of `$ur` outputs of a row and `$nv` vectors of 16
/// channels, for windows `$kw` wide (see [`select_sliding`]).
macro_rules! avx512_sliding {
    ($name:ident, $ur:literal, $nv:literal, $kw:literal) => {
        /// # Safety
        /// As for [`IndirectKernel`] with `kc` groups of [`CHANNEL_BLOCK`] taps, in runs of
        /// KW whose offsets are a group's apart (`cols[g + kx] = cols[g] + 16·kx`), and rows
        /// of consecutive outputs (`rows[i] = rows[0] + 16·i`); and the processor must
        /// support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, x: *const f32, rows: *const u32, cols: *const u32, b: *const f32, tile_in: *const f32, ld_in: usize, tile_out: *mut f32, ld_out: usize) {
            use std::arch::x86_64::*;
            const UR: usize = $ur;
            const NV: usize = $nv;
            const KW: usize = $kw;
            const NR: usize = 16 * NV;
            // SAFETY: as the caller promises.
            unsafe {
                debug_assert!(kc % KW == 0 && *rows.add(UR - 1) == *rows + (CHANNEL_BLOCK * (UR - 1)) as u32, "sliding kernel: rows or runs out of line");
                let row0 = x.add(*rows as usize);
                let mut acc = avx512_sums_in!(UR, NV, tile_in, ld_in);
                let mut b = b;
                for run in 0..kc / KW {
                    let base = row0.add(*cols.add(run * KW) as usize);
                    for c in 0..CHANNEL_BLOCK {
                        let mut w = [[_mm512_setzero_ps(); NV]; KW];
                        for (kx, w) in w.iter_mut().enumerate() {
                            for (v, w) in w.iter_mut().enumerate() {
                                *w = _mm512_loadu_ps(b.add((kx * CHANNEL_BLOCK + c) * NR + 16 * v));
                            }
                        }
                        sliding_positions!(acc, w, base, c, UR, KW; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19);
                    }
                    b = b.add(KW * CHANNEL_BLOCK * NR);
                }
                avx512_tile_out!(acc, tile_out, ld_out);
            }
        }
    };
}

avx512_sliding!(avx512_sliding_16x16_3, 16, 1, 3);
avx512_sliding!(avx512_sliding_14x16_3, 14, 1, 3);
avx512_sliding!(avx512_sliding_12x16_3, 12, 1, 3);
avx512_sliding!(avx512_sliding_8x16_3, 8, 1, 3);
avx512_sliding!(avx512_sliding_16x16_5, 16, 1, 5);
avx512_sliding!(avx512_sliding_14x16_5, 14, 1, 5);
avx512_sliding!(avx512_sliding_12x16_5, 12, 1, 5);
avx512_sliding!(avx512_sliding_8x16_5, 8, 1, 5);
avx512_sliding!(avx512_sliding_8x32_3, 8, 2, 3);
avx512_sliding!(avx512_sliding_7x32_3, 7, 2, 3);
avx512_sliding!(avx512_sliding_8x32_5, 8, 2, 5);
avx512_sliding!(avx512_sliding_7x32_5, 7, 2, 5);

/// The filter gradient's sliding-window kernel for up to 32 output channels, stride 1, rows of
/// 8, 12, 14 or 16 outputs (the row whole), windows 3 or 5 wide, or `None`; AVX-512 only.
///
/// The filter gradient's indirect tile (rows: taps, columns: output channels, k: pixels)
/// broadcasts an input per tap and pixel. Here a tile is one row of the window (kw taps of an
/// input channel and a window row), k runs over whole output rows (`run` pixels each), and
/// each input of the row, broadcast once, meets the kw dY vectors of the outputs it reaches,
/// held in registers: a row costs UR + KW − 1 broadcasts and UR·NV loads for UR·KW·NV FMAs.
pub fn select_sliding_filter(channels: usize, w_out: usize, kw: usize) -> Option<Indirect> {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        let (nr, kernel): (usize, IndirectKernel) = match (channels, w_out, kw) {
            (0..=16, 16, 3) => (16, avx512_sliding_filter_16x16_3),
            (0..=16, 14, 3) => (16, avx512_sliding_filter_14x16_3),
            (0..=16, 12, 3) => (16, avx512_sliding_filter_12x16_3),
            (0..=16, 8, 3) => (16, avx512_sliding_filter_8x16_3),
            (0..=16, 16, 5) => (16, avx512_sliding_filter_16x16_5),
            (0..=16, 14, 5) => (16, avx512_sliding_filter_14x16_5),
            (0..=16, 12, 5) => (16, avx512_sliding_filter_12x16_5),
            (0..=16, 8, 5) => (16, avx512_sliding_filter_8x16_5),
            (17..=32, 16, 3) => (32, avx512_sliding_filter_16x32_3),
            (17..=32, 14, 3) => (32, avx512_sliding_filter_14x32_3),
            (17..=32, 12, 3) => (32, avx512_sliding_filter_12x32_3),
            (17..=32, 8, 3) => (32, avx512_sliding_filter_8x32_3),
            (17..=32, 16, 5) => (32, avx512_sliding_filter_16x32_5),
            (17..=32, 14, 5) => (32, avx512_sliding_filter_14x32_5),
            (17..=32, 12, 5) => (32, avx512_sliding_filter_12x32_5),
            (17..=32, 8, 5) => (32, avx512_sliding_filter_8x32_5),
            _ => return None,
        };
        return Some(Indirect { mr: kw, nr, run: w_out, kernel });
    }
    let _ = (channels, w_out, kw);
    None
}

/// One output row in [`avx512_sliding_filter`]: per input position `p` of the row (written
/// out, so that the sums and dY vectors stay in registers), dY of output p loaded (while
/// p < UR), the input broadcast, and multiplied with the dY vectors of the outputs p − kx it
/// reaches into tap kx's sums.
macro_rules! sliding_filter_positions {
    ($acc:ident, $dv:ident, $xrow:ident, $d:ident, $ur:expr, $kw:expr, $nv:expr, $nr:expr; $($p:literal)*) => {$(
        if $p < $ur + $kw - 1 {
            if $p < $ur {
                for (v, dv) in $dv[$p].iter_mut().enumerate() {
                    *dv = _mm512_loadu_ps($d.add($p * $nr + 16 * v));
                }
            }
            let x = _mm512_set1_ps(*$xrow.add($p));
            for kx in 0..$kw {
                if $p >= kx && $p - kx < $ur {
                    for (a, d) in $acc[kx].iter_mut().zip(&$dv[$p - kx]) {
                        *a = _mm512_fmadd_ps(x, *d, *a);
                    }
                }
            }
        }
    )*};
}

/// An AVX-512 sliding-window filter-gradient kernel for rows of `$ur` outputs, `$nv` vectors
/// of 16 output channels and windows `$kw` wide (see [`select_sliding_filter`]).
macro_rules! avx512_sliding_filter {
    ($name:ident, $ur:literal, $nv:literal, $kw:literal) => {
        /// # Safety
        /// As for [`IndirectKernel`] with `rows` KW consecutive taps (`rows[kx] = rows[0] +
        /// kx`) and `kc` pixels in whole rows of UR, consecutive within a row (`cols[r·UR + i] =
        /// cols[r·UR] + i`); and the processor must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, x: *const f32, rows: *const u32, cols: *const u32, b: *const f32, tile_in: *const f32, ld_in: usize, tile_out: *mut f32, ld_out: usize) {
            use std::arch::x86_64::*;
            const UR: usize = $ur;
            const NV: usize = $nv;
            const KW: usize = $kw;
            const NR: usize = 16 * NV;
            // SAFETY: as the caller promises.
            unsafe {
                debug_assert!(kc % UR == 0 && *rows.add(KW - 1) == *rows + (KW - 1) as u32 && (kc == 0 || *cols.add(UR - 1) == *cols + (UR - 1) as u32), "sliding filter kernel: taps or pixels out of line");
                let tap0 = x.add(*rows as usize);
                let mut acc = avx512_sums_in!(KW, NV, tile_in, ld_in);
                let mut dv = [[_mm512_setzero_ps(); NV]; UR];
                for r in 0..kc / UR {
                    let xrow = tap0.add(*cols.add(r * UR) as usize);
                    let d = b.add(r * UR * NR);
                    sliding_filter_positions!(acc, dv, xrow, d, UR, KW, NV, NR; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19);
                }
                avx512_tile_out!(acc, tile_out, ld_out);
            }
        }
    };
}

avx512_sliding_filter!(avx512_sliding_filter_16x16_3, 16, 1, 3);
avx512_sliding_filter!(avx512_sliding_filter_14x16_3, 14, 1, 3);
avx512_sliding_filter!(avx512_sliding_filter_12x16_3, 12, 1, 3);
avx512_sliding_filter!(avx512_sliding_filter_8x16_3, 8, 1, 3);
avx512_sliding_filter!(avx512_sliding_filter_16x16_5, 16, 1, 5);
avx512_sliding_filter!(avx512_sliding_filter_14x16_5, 14, 1, 5);
avx512_sliding_filter!(avx512_sliding_filter_12x16_5, 12, 1, 5);
avx512_sliding_filter!(avx512_sliding_filter_8x16_5, 8, 1, 5);
avx512_sliding_filter!(avx512_sliding_filter_16x32_3, 16, 2, 3);
avx512_sliding_filter!(avx512_sliding_filter_14x32_3, 14, 2, 3);
avx512_sliding_filter!(avx512_sliding_filter_12x32_3, 12, 2, 3);
avx512_sliding_filter!(avx512_sliding_filter_8x32_3, 8, 2, 3);
avx512_sliding_filter!(avx512_sliding_filter_16x32_5, 16, 2, 5);
avx512_sliding_filter!(avx512_sliding_filter_14x32_5, 14, 2, 5);
avx512_sliding_filter!(avx512_sliding_filter_12x32_5, 12, 2, 5);
avx512_sliding_filter!(avx512_sliding_filter_8x32_5, 8, 2, 5);

/// The tallest tile of any indirect kernel (a sliding one's row of 16).
pub const MAX_INDIRECT_MR: usize = 16;
/// The widest tile of any indirect kernel.
pub const MAX_INDIRECT_NR: usize = 32;

/// # Safety
/// As for [`IndirectKernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn generic_indirect<const MR: usize, const NR: usize>(
    kc: usize,
    x: *const f32,
    rows: *const u32,
    cols: *const u32,
    b: *const f32,
    tile_in: *const f32,
    ld_in: usize,
    tile_out: *mut f32,
    ld_out: usize,
) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: as the caller promises.
    unsafe {
        if !tile_in.is_null() {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = *tile_in.add(i * ld_in + j);
                }
            }
        }
        for p in 0..kc {
            let c = *cols.add(p) as usize;
            for (i, row) in acc.iter_mut().enumerate() {
                let a = *x.add(*rows.add(i) as usize + c);
                for (j, v) in row.iter_mut().enumerate() {
                    *v += a * *b.add(p * NR + j);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                *tile_out.add(i * ld_out + j) = v;
            }
        }
    }
}

/// An AVX2 + FMA indirect kernel of `$mr` rows and `$nv` vectors of 8.
macro_rules! avx2_indirect {
    ($name:ident, $mr:literal, $nv:literal) => {
        /// # Safety
        /// As for [`IndirectKernel`], and the processor must support AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, x: *const f32, rows: *const u32, cols: *const u32, b: *const f32, tile_in: *const f32, ld_in: usize, tile_out: *mut f32, ld_out: usize) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NV: usize = $nv;
            const NR: usize = 8 * NV;
            // SAFETY: as the caller promises.
            unsafe {
                // One pointer per row, so each broadcast is a single addressing mode [row + col].
                let mut row = [x; MR];
                for (i, r) in row.iter_mut().enumerate() {
                    *r = x.add(*rows.add(i) as usize);
                }
                let mut acc = [[_mm256_setzero_ps(); NV]; MR];
                if !tile_in.is_null() {
                    for (i, a) in acc.iter_mut().enumerate() {
                        for (v, a) in a.iter_mut().enumerate() {
                            *a = _mm256_loadu_ps(tile_in.add(i * ld_in + 8 * v));
                        }
                    }
                }
                for p in 0..kc {
                    let c = *cols.add(p) as usize;
                    let mut bv = [_mm256_setzero_ps(); NV];
                    for (v, bv) in bv.iter_mut().enumerate() {
                        *bv = _mm256_loadu_ps(b.add(p * NR + 8 * v));
                    }
                    for (r, acc) in row.iter().zip(acc.iter_mut()) {
                        let a = _mm256_broadcast_ss(&*r.add(c));
                        for (acc, bv) in acc.iter_mut().zip(&bv) {
                            *acc = _mm256_fmadd_ps(a, *bv, *acc);
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    for (v, &a) in a.iter().enumerate() {
                        _mm256_storeu_ps(tile_out.add(i * ld_out + 8 * v), a);
                    }
                }
            }
        }
    };
}

avx2_indirect!(avx2_indirect_6x16, 6, 2);
avx2_indirect!(avx2_indirect_4x16, 4, 2);

/// An AVX-512 indirect kernel of `$mr` rows and `$nv` vectors of 16.
macro_rules! avx512_indirect {
    ($name:ident, $mr:literal, $nv:literal) => {
        /// # Safety
        /// As for [`IndirectKernel`], and the processor must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(kc: usize, x: *const f32, rows: *const u32, cols: *const u32, b: *const f32, tile_in: *const f32, ld_in: usize, tile_out: *mut f32, ld_out: usize) {
            use std::arch::x86_64::*;
            const MR: usize = $mr;
            const NV: usize = $nv;
            const NR: usize = 16 * NV;
            // SAFETY: as the caller promises.
            unsafe {
                let (row, mut acc) = avx512_tile_in!(MR, NV, x, rows, tile_in, ld_in);
                macro_rules! step {
                    ($p:expr) => {{
                        let p = $p;
                        let c = *cols.add(p) as usize;
                        let mut bv = [_mm512_setzero_ps(); NV];
                        for (v, bv) in bv.iter_mut().enumerate() {
                            *bv = _mm512_loadu_ps(b.add(p * NR + 16 * v));
                        }
                        for (r, acc) in row.iter().zip(acc.iter_mut()) {
                            let a = _mm512_set1_ps(*r.add(c));
                            for (acc, bv) in acc.iter_mut().zip(&bv) {
                                *acc = _mm512_fmadd_ps(a, *bv, *acc);
                            }
                        }
                    }};
                }
                let mut p = 0;
                while p + 4 <= kc {
                    step!(p);
                    step!(p + 1);
                    step!(p + 2);
                    step!(p + 3);
                    p += 4;
                }
                while p < kc {
                    step!(p);
                    p += 1;
                }
                avx512_tile_out!(acc, tile_out, ld_out);
            }
        }
    };
}

avx512_indirect!(avx512_indirect_8x32, 8, 2);
avx512_indirect!(avx512_indirect_8x16, 8, 1);
