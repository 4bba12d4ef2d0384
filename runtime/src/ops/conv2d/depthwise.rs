//! Grouped convolutions (groups > 1) on the CPU, above all depthwise ones (groups = c_in =
//! c_out, MobileNet's): direct loops along output rows, not GEMMs.
//!
//! A depthwise channel is one input plane convolved with one kh × kw filter: 9 multiply-adds per
//! output for 3 × 3, far too few for a GEMM (its tiles would be one channel wide, its packing
//! would cost more than the arithmetic). Here each input plane is first copied into a zeroed,
//! padded plane, so that every tap of every output is inside it and no loop tests a border;
//! then an output plane is a sum of `kh·kw` shifted input planes scaled by a weight each, and
//! the loop over its outputs is contiguous on both sides, which LLVM vectorises (AVX2 and FMA
//! when the processor has them, through `target_feature` wrappers of the same code).
//!
//! Strides would make those reads strided. So the padded plane is kept as sh·sw phases: phase
//! (φy, φx) holds the rows φy, φy + sh, … and of them the columns φx, φx + sw, …, each phase
//! a plane of hq × wq. Tap (ky, kx) of output (oy, ox) reads padded element (oy·sh + ky·dh,
//! ox·sw + kx·dw), which is element (oy + ⌊ky·dh / sh⌋, ox + ⌊kx·dw / sw⌋) of phase
//! (ky·dh mod sh, kx·dw mod sw): contiguous in ox again, for any stride and dilation, with
//! output rows at the pitch wq. So every pass runs over a whole plane as one long row ("flat"):
//! output rows at the pitch wq, the wq − w_out columns between them computed and dropped (2 of
//! 18 for 16 × 16 with padding 1), one loop per plane instead of one per row of 8 or 16 outputs.
//!
//! The backward passes:
//! - data gradient: with stride 1, the forward of the transposed convolution (dY padded,
//!   filters flipped), a gather; otherwise each weight times dY (flat, zeros between its rows)
//!   is added into a zeroed padded plane (the adjoint of reading it), whose middle is then
//!   copied out into dX (written);
//! - filter gradient: per weight, the dot product of flat dY with the inputs it read, in
//!   several sets of partial sums (so that LLVM may vectorise a sum it must otherwise keep in
//!   order, and the FMAs do not wait on each other), added to dW (accumulated); the bias
//!   gradient sums dY per channel.
//!
//! Measured on one thread (AVX-512 machine, AVX2 code; `examples/bench.rs`), batch 128, 3 × 3,
//! no bias, forward / data gradient / filter gradient: 96 channels 16 × 16 stride 1 2.6 / 2.6 /
//! 3.4 ms (9.8 / 9.6 / 7.3 GB/s of input + output); stride 2 2.7 / 2.7 / 2.9 ms (5.7, 5.7,
//! 5.4 GB/s); 144 channels 8 × 8 1.8 / 1.8 / 2.3 ms (5.4, 5.3, 4.1 GB/s).
//!
//! A general grouped convolution (groups = 4, or a channel multiplier: c_out = k·c_in) runs the
//! same loops, each output plane summing over the c_in/groups input planes of its group.
//!
//! Work is split into one contiguous range of tasks per thread, each with its own part of the
//! scratch for its padded planes: forward and data gradient one task per (image, group), filter
//! gradient one per output channel, which owns its weights (no two threads add to one weight,
//! and the order of the sums does not depend on timing).

use rayon::prelude::*;

use super::Conv2d;
// Rows of 8 or 16 floats: copy_from_slice and fill would call memcpy and memset for each (a
// quarter of a 144-channel 8 × 8 forward went to those calls).
use crate::ops::transpose::{copy_row, zero_row};

/// Partial sums of a dot product: one AVX2 vector.
const LANES: usize = 8;

/// The sizes of a grouped convolution, and the layout of its padded planes.
#[derive(Clone, Copy)]
struct Geo {
    /// Input and output channels of one group.
    cin_g: usize,
    cout_g: usize,
    groups: usize,
    h_in: usize,
    w_in: usize,
    h_out: usize,
    w_out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    /// The rows of one phase: ⌈(h_in + 2·ph) / sh⌉.
    hq: usize,
    /// The width of one phase: ⌈(w_in + 2·pw) / sw⌉, also the pitch of output rows in it.
    wq: usize,
    /// Floats of one padded plane: sh·sw phases of hq × wq, then [`LANES`] zeros.
    plane: usize,
    /// Where tap (ky, kx) for output row 0 starts, for taps < [`TAPS_CACHED`]: computed once,
    /// as its divisions by the strides cost more than the 9 multiply-adds of a 3 × 3 depthwise
    /// plane's vector.
    tap_at: [usize; TAPS_CACHED],
}

/// Kernel sizes (kh·kw) whose tap offsets [`Geo`] keeps.
const TAPS_CACHED: usize = 64;

/// Strides along the width that [`pad`] and [`unpad`] copy phase by phase; a larger one
/// (rare: a stride wider than any kernel skips inputs) goes element by element.
const MAX_PHASES: usize = 8;

impl Geo {
    fn of(op: &Conv2d) -> Self {
        let wq = (op.w_in + 2 * op.padding[1]).div_ceil(op.stride[1]);
        let hq = (op.h_in + 2 * op.padding[0]).div_ceil(op.stride[0]);
        let mut g = Geo {
            cin_g: op.c_in / op.groups,
            cout_g: op.c_out / op.groups,
            groups: op.groups,
            h_in: op.h_in,
            w_in: op.w_in,
            h_out: op.h_out,
            w_out: op.w_out,
            kh: op.kernel[0],
            kw: op.kernel[1],
            sh: op.stride[0],
            sw: op.stride[1],
            ph: op.padding[0],
            pw: op.padding[1],
            dh: op.dilation[0],
            dw: op.dilation[1],
            hq,
            wq,
            // LANES more zeros at the end, so that a flat pass may run to a whole vector.
            plane: op.stride[0] * op.stride[1] * hq * wq + LANES,
            tap_at: [0; TAPS_CACHED],
        };
        for t in 0..g.taps().min(TAPS_CACHED) {
            g.tap_at[t] = g.row(t / g.kw * g.dh) + g.column(t % g.kw * g.dw);
        }
        g
    }

    /// Where padded row `r` starts: in the phases of row phase r mod sh, at row r / sh.
    #[inline(always)]
    fn row(&self, r: usize) -> usize {
        (r % self.sh) * self.sw * self.hq * self.wq + r / self.sh * self.wq
    }

    /// Where padded column `c` lies from its row's start: in column phase c mod sw, at c / sw.
    #[inline(always)]
    fn column(&self, c: usize) -> usize {
        (c % self.sw) * self.hq * self.wq + c / self.sw
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    fn p_in(&self) -> usize {
        self.h_in * self.w_in
    }

    fn p_out(&self) -> usize {
        self.h_out * self.w_out
    }

    /// Where, in a padded plane, the inputs of tap (ky, kx) for output row `oy` start: the
    /// `w_out` floats from there are the inputs of the row's outputs, in order.
    #[inline(always)]
    fn tap(&self, oy: usize, ky: usize, kx: usize) -> usize {
        let t = ky * self.kw + kx;
        let at = if t < TAPS_CACHED { self.tap_at[t] } else { self.row(ky * self.dh) + self.column(kx * self.dw) };
        at + oy * self.wq
    }

    /// Where input element (iy, ix) lies in a padded plane.
    #[inline(always)]
    fn at(&self, iy: usize, ix: usize) -> usize {
        self.row(iy + self.ph) + self.column(ix + self.pw)
    }

    /// Where the padded rows of the input's rows start, in order: counted through the row
    /// phases rather than divided out per row (two divisions per row of 16 cost more than its
    /// copy).
    fn input_rows(&self) -> impl Iterator<Item = usize> + '_ {
        let (mut phase, mut at) = (self.ph % self.sh, self.ph / self.sh);
        (0..self.h_in).map(move |_| {
            let start = phase * self.sw * self.hq * self.wq + at * self.wq;
            (phase, at) = if phase + 1 == self.sh { (0, at + 1) } else { (phase + 1, at) };
            start
        })
    }

    /// The outputs of a flat plane: h_out rows at the pitch wq, the last cut at w_out (so
    /// that every tap stays inside the padded plane), rounded up to whole vectors (into the
    /// plane's trailing zeros): a scalar remainder of 9 taps cost as much as the vectors of a
    /// small plane.
    fn flat_len(&self) -> usize {
        ((self.h_out - 1) * self.wq + self.w_out).next_multiple_of(LANES)
    }

    /// An input row as it lies in the phases of its padded row: per phase, the first input
    /// column in it, where that column lies within the padded row, and how many columns follow
    /// (every sw-th). Computed once per plane, as its divisions cost more than the copy of a
    /// short row.
    fn phases(&self) -> ([(usize, usize, usize); MAX_PHASES], usize) {
        let mut out = [(0, 0, 0); MAX_PHASES];
        let mut len = 0;
        // (Wider strides are copied element by element: their phases are not needed.)
        for phase in 0..self.sw.min(MAX_PHASES) {
            let ix0 = (phase + self.sw - self.pw % self.sw) % self.sw;
            if ix0 < self.w_in {
                out[len] = (ix0, self.column(ix0 + self.pw), (self.w_in - ix0).div_ceil(self.sw));
                len += 1;
            }
        }
        (out, len)
    }

    /// Scratch floats of one thread: its group's padded planes, a flat output plane, a masked dY
    /// plane, and the partial sums of one output channel's weight gradient.
    fn worker_len(&self) -> usize {
        self.cin_g * self.plane + self.plane + self.p_out() + LANES * self.cin_g * self.taps()
    }
}

/// The convolution whose forward is the data gradient of `op`, when `op` has stride 1 and its
/// padding is within the dilated kernel: over dY padded by dilation·(k − 1) − padding, with the
/// filters flipped, from the c_out channels to the c_in (grouped alike). Then dX is a gather,
/// as fast as the forward, instead of the scatter of [`plane_data_grad`].
fn transposed(op: &Conv2d) -> Option<Conv2d> {
    let fits = (0..2).all(|a| op.stride[a] == 1 && op.padding[a] <= op.dilation[a] * (op.kernel[a] - 1));
    let pad = |a: usize| op.dilation[a] * (op.kernel[a] - 1) - op.padding[a];
    fits.then(|| Conv2d::new(op.c_out, op.c_in, [op.h_out, op.w_out], op.kernel, [1, 1], [pad(0), pad(1)], op.dilation, op.groups, false))
}

/// Scratch floats of one thread of the data gradient through [`transposed`]: its padded dY
/// planes and flat output, a masked dY plane, and one input channel's flipped filters.
fn transposed_worker_len(op: &Conv2d, t: &Geo) -> usize {
    t.cin_g * t.plane + t.plane + op.h_out * op.w_out + t.cin_g * t.taps()
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// Tasks per thread, for `tasks` tasks, with `worker_len` floats of `scratch` per thread: no
/// more threads than the scratch has room for (it was sized for the pool's threads, but a
/// larger pool must not leave tasks without a thread, which the zip with the scratch's chunks
/// would do silently).
fn per_worker(tasks: usize, scratch: &[f32], worker_len: usize) -> usize {
    let room = scratch.len() / worker_len.max(1);
    assert!(room > 0, "grouped Conv2d: scratch of {} floats, one thread needs {worker_len}", scratch.len());
    tasks.div_ceil(threads().min(room).min(tasks).max(1)).max(1)
}

/// Scratch floats of the forward and backward of a grouped `op`.
pub(super) fn scratch_len(op: &Conv2d) -> usize {
    let data = transposed(op).map_or(0, |t| transposed_worker_len(op, &Geo::of(&t)));
    (threads() * Geo::of(op).worker_len().max(data)).max(small::scratch_len(op))
}

/// Copies an input plane into the middle of a zeroed padded plane.
fn pad(g: &Geo, src: &[f32], dst: &mut [f32]) {
    zero_row(dst);
    let (phases, count) = g.phases();
    for ((iy, row), start) in src.chunks_exact(g.w_in).enumerate().zip(g.input_rows()) {
        if g.sw == 1 {
            copy_row(&mut dst[start + g.pw..][..g.w_in], row, None);
        } else if g.sw <= MAX_PHASES {
            // Phase by phase: every sw-th column, from the first that falls in it.
            for &(ix0, at, len) in &phases[..count] {
                for (j, d) in dst[start + at..][..len].iter_mut().enumerate() {
                    *d = row[ix0 + j * g.sw];
                }
            }
        } else {
            for (ix, &v) in row.iter().enumerate() {
                dst[g.at(iy, ix)] = v;
            }
        }
    }
}

/// The middle of a padded plane, copied out into an input-sized plane (the adjoint of [`pad`]).
fn unpad(g: &Geo, src: &[f32], dst: &mut [f32]) {
    let (phases, count) = g.phases();
    for ((iy, row), start) in dst.chunks_exact_mut(g.w_in).enumerate().zip(g.input_rows()) {
        if g.sw == 1 {
            copy_row(row, &src[start + g.pw..][..g.w_in], None);
        } else if g.sw <= MAX_PHASES {
            for &(ix0, at, len) in &phases[..count] {
                for (j, &v) in src[start + at..][..len].iter().enumerate() {
                    row[ix0 + j * g.sw] = v;
                }
            }
        } else {
            for (ix, v) in row.iter_mut().enumerate() {
                *v = src[g.at(iy, ix)];
            }
        }
    }
}

/// dY of the convolution: `dy` itself, or, under a fused ReLU of output `relu_y`, a copy in
/// `buf` that is zero where the ReLU's output is not positive.
fn masked<'a>(dy: &'a [f32], relu_y: Option<&[f32]>, buf: &'a mut [f32]) -> &'a [f32] {
    match relu_y {
        None => dy,
        Some(y) => {
            for ((b, &g), &y) in buf.iter_mut().zip(dy).zip(y) {
                *b = if y > 0.0 { g } else { 0.0 };
            }
            &buf[..dy.len()]
        }
    }
}

/// a·b + c, fused where the processor has FMA (the `target_feature` copies), else two
/// operations (a call to `fmaf` per element would be far slower).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// row[o] += Σ_t w[t]·src[t][o]: `T` taps in one pass over the row, which stays in registers.
#[inline(always)]
fn madd_rows<const T: usize, const FMA: bool>(row: &mut [f32], src: [&[f32]; T], w: [f32; T]) {
    let n = row.len();
    // Slices of exactly n floats, so that the loop below has no bounds checks to vectorise past.
    let src = src.map(|s| &s[..n]);
    for o in 0..n {
        let mut a = row[o];
        for t in 0..T {
            a = madd::<FMA>(w[t], src[t][o], a);
        }
        row[o] = a;
    }
}

/// acc[l] += Σ_i a[i·LANES + l]·b[i·LANES + l]: a dot product in [`LANES`] partial sums (for
/// short rows).
#[inline(always)]
fn dot_lanes<const FMA: bool>(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let b = &b[..a.len()];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (l, (&x, &y)) in ac.remainder().iter().zip(bc.remainder()).enumerate() {
        acc[l] = madd::<FMA>(x, y, acc[l]);
    }
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
}

/// [`dot_lanes`] for long rows (a flat plane): [`CHAINS`] sets of partial sums in turn (one set
/// would wait on each FMA's latency, 4 cycles, where the processor can start two per cycle),
/// added together at the end in a fixed order. Not for short rows: zeroing and adding the
/// sets made a stride-2 filter gradient (rows of 8) 1.5× slower.
#[inline(always)]
fn dot_chains<const FMA: bool>(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let b = &b[..a.len()];
    let mut sets = [[0.0f32; LANES]; CHAINS];
    let (ac, bc) = (a.chunks_exact(LANES * CHAINS), b.chunks_exact(LANES * CHAINS));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for (c, set) in sets.iter_mut().enumerate() {
            for l in 0..LANES {
                set[l] = madd::<FMA>(x[c * LANES + l], y[c * LANES + l], set[l]);
            }
        }
    }
    dot_lanes::<FMA>(acc, ar, br);
    for set in sets {
        for l in 0..LANES {
            acc[l] += set[l];
        }
    }
}

/// Independent sets of partial sums in [`dot_lanes`].
const CHAINS: usize = 4;

/// The processor's best variant of a plane kernel: `$body::<true>` compiled for AVX2 and FMA
/// where the processor has them, else `$body::<false>` compiled for the build target.
macro_rules! dispatch {
    ($name:ident, $avx2:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if crate::ops::isa::avx2() {
                // SAFETY: the processor has AVX2 and FMA (checked just above).
                return unsafe { $avx2($($arg),*) };
            }
            $body::<false>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx2($($arg: $ty),*) {
            $body::<true>($($arg),*)
        }
    };
}

dispatch!(plane_forward, plane_forward_avx2, plane_forward_body, (g: &Geo, xp: &[f32], w: &[f32], bias: f32, relu: bool, y: &mut [f32], ext: &mut [f32]));
dispatch!(plane_data_grad, plane_data_grad_avx2, plane_data_grad_body, (g: &Geo, dxp: &mut [f32], w: &[f32], dy: &[f32]));
dispatch!(plane_filter_grad, plane_filter_grad_avx2, plane_filter_grad_body, (g: &Geo, xp: &[f32], dy: &[f32], acc: &mut [f32]));

/// One output plane `y` (written): bias + Σ over the group's padded input planes `xp` of their
/// convolution with this channel's filters `w` (cin_g × kh × kw), then ReLU when `relu`. `ext`:
/// a padded plane of scratch.
#[inline(always)]
fn plane_forward_body<const FMA: bool>(g: &Geo, xp: &[f32], w: &[f32], bias: f32, relu: bool, y: &mut [f32], ext: &mut [f32]) {
    let taps = g.taps();
    let ext = &mut ext[..g.flat_len()];
    ext.fill(bias);
    for ci in 0..g.cin_g {
        taps_pass::<FMA>(g, ext, &xp[ci * g.plane..][..g.plane], &w[ci * taps..][..taps], 0);
    }
    for (oy, row) in y.chunks_exact_mut(g.w_out).enumerate() {
        let src = &ext[oy * g.wq..][..g.w_out];
        if relu {
            for (v, &s) in row.iter_mut().zip(src) {
                *v = s.max(0.0);
            }
        } else {
            copy_row(row, src, None);
        }
    }
}

/// out[o] += Σ over the taps of w[tap]·x[tap's start for output row `oy` + o]: for 3 × 3
/// (MobileNet's) all 9 taps in one pass over `out`; otherwise a pass per kernel row (of 3 or 5
/// taps in one), or per tap.
#[inline(always)]
fn taps_pass<const FMA: bool>(g: &Geo, out: &mut [f32], x: &[f32], w: &[f32], oy: usize) {
    if g.kh == 3 && g.kw == 3 {
        let src: [&[f32]; 9] = std::array::from_fn(|t| &x[g.tap(oy, t / 3, t % 3)..]);
        return madd_rows::<9, FMA>(out, src, std::array::from_fn(|t| w[t]));
    }
    for ky in 0..g.kh {
        let w = &w[ky * g.kw..][..g.kw];
        match g.kw {
            3 => madd_rows::<3, FMA>(out, std::array::from_fn(|kx| &x[g.tap(oy, ky, kx)..]), std::array::from_fn(|kx| w[kx])),
            5 => madd_rows::<5, FMA>(out, std::array::from_fn(|kx| &x[g.tap(oy, ky, kx)..]), std::array::from_fn(|kx| w[kx])),
            _ => {
                for (kx, &w) in w.iter().enumerate() {
                    madd_rows::<1, FMA>(out, [&x[g.tap(oy, ky, kx)..]], [w]);
                }
            }
        }
    }
}

/// dxp (one padded input plane) += the adjoint of reading it with filter `w` (kh × kw), for
/// one output plane's gradient `dy`, flat ([`flat_dy`]): one pass per tap over the plane, the
/// zeros between its rows adding nothing.
#[inline(always)]
fn plane_data_grad_body<const FMA: bool>(g: &Geo, dxp: &mut [f32], w: &[f32], dy: &[f32]) {
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let wv = w[ky * g.kw + kx];
            let dst = &mut dxp[g.tap(0, ky, kx)..][..dy.len()];
            for (t, &v) in dst.iter_mut().zip(dy) {
                *t = madd::<FMA>(wv, v, *t);
            }
        }
    }
}

/// acc[tap·LANES + l] += the partial sums of Σ dy · (the inputs tap read), for one padded input
/// plane `xp` and one output plane's gradient `dy`.
///
/// `dy` is flat ([`flat_dy`]): one dot product per tap.
#[inline(always)]
fn plane_filter_grad_body<const FMA: bool>(g: &Geo, xp: &[f32], dy: &[f32], acc: &mut [f32]) {
    // Tap by tap over the whole plane, so that a tap's partial sums stay in a register (dY's
    // plane, read once per tap, stays in L1).
    for (tap, acc) in acc.chunks_exact_mut(LANES).enumerate().take(g.taps()) {
        let mut lanes: [f32; LANES] = acc.try_into().expect("LANES floats");
        let (ky, kx) = (tap / g.kw, tap % g.kw);
        dot_chains::<FMA>(&mut lanes, dy, &xp[g.tap(0, ky, kx)..][..dy.len()]);
        acc.copy_from_slice(&lanes);
    }
}

/// dY's plane laid out as a flat output plane ([`Geo::flat_len`] floats of `ext`): its rows at
/// the padded pitch, zeros between them (so the columns a flat pass computes and drops add
/// nothing to a weight's gradient).
fn flat_dy<'a>(g: &Geo, dy: &[f32], ext: &'a mut [f32]) -> &'a [f32] {
    let ext = &mut ext[..g.flat_len()];
    zero_row(ext);
    for (oy, row) in dy.chunks_exact(g.w_out).enumerate() {
        copy_row(&mut ext[oy * g.wq..][..g.w_out], row, None);
    }
    ext
}

/// y = conv(x, w) + b, then ReLU when `relu`, for `groups > 1`.
pub(super) fn forward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], y: &mut [f32], scratch: &mut [f32], relu: bool) {
    if small::applies(op) {
        return small::forward(op, n, x, wb, y, scratch, relu);
    }
    let g = Geo::of(op);
    let (w, b) = wb.split_at(op.weight_len());
    let (x_task, y_task, w_task) = (g.cin_g * g.p_in(), g.cout_g * g.p_out(), g.cout_g * op.patch_len());
    // Task t = (image, group) = t / groups, t % groups reads x[t·x_task..] and writes
    // y[t·y_task..]: a group's channels are consecutive in both.
    let per = per_worker(n * g.groups, scratch, g.worker_len());
    y[..n * op.y_len()].par_chunks_mut(per * y_task).zip(scratch.par_chunks_mut(g.worker_len())).enumerate().for_each(|(worker, (ys, buf))| {
        let (planes, rest) = buf.split_at_mut(g.cin_g * g.plane);
        let ext = &mut rest[..g.plane];
        for (i, yt) in ys.chunks_exact_mut(y_task).enumerate() {
            let t = worker * per + i;
            let group = t % g.groups;
            for (src, dst) in x[t * x_task..][..x_task].chunks_exact(g.p_in()).zip(planes.chunks_exact_mut(g.plane)) {
                pad(&g, src, dst);
            }
            let w = &w[group * w_task..][..w_task];
            for (co, (yp, w)) in yt.chunks_exact_mut(g.p_out()).zip(w.chunks_exact(op.patch_len())).enumerate() {
                let bias = if op.bias { b[group * g.cout_g + co] } else { 0.0 };
                plane_forward(&g, planes, w, bias, relu, yp, ext);
            }
        }
    });
}

/// dx = conv_backward_data(dy) (written), dwb += conv_backward_filter(x, dy) (accumulated), for
/// `groups > 1`. With `relu_y`, dy is the gradient of a fused ReLU's output `relu_y`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>, scratch: &mut [f32]) {
    let g = Geo::of(op);
    if let Some(dwb) = dwb {
        filter_grad(op, &g, n, x, dy, relu_y, dwb, scratch);
    }
    if let Some(dx) = dx {
        data_grad(op, &g, n, &wb[..op.weight_len()], dy, relu_y, dx, scratch);
    }
}

#[allow(clippy::too_many_arguments)]
fn data_grad(op: &Conv2d, g: &Geo, n: usize, w: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dx: &mut [f32], scratch: &mut [f32]) {
    if small::applies(op) {
        return small::data_grad(op, n, w, dy, relu_y, dx, scratch);
    }
    let (x_task, y_task, w_task) = (g.cin_g * g.p_in(), g.cout_g * g.p_out(), g.cout_g * op.patch_len());
    if let Some(t) = transposed(op) {
        // The forward of the transposed convolution: per (image, group), its cout_g dY planes
        // padded, then each input channel's plane gathered from them through flipped filters.
        let tg = Geo::of(&t);
        let per = per_worker(n * g.groups, scratch, transposed_worker_len(op, &tg));
        let (k, taps) = (op.patch_len(), g.taps());
        dx[..n * op.x_len()].par_chunks_mut(per * x_task).zip(scratch.par_chunks_mut(transposed_worker_len(op, &tg))).enumerate().for_each(|(worker, (dxs, buf))| {
            let (planes, rest) = buf.split_at_mut(tg.cin_g * tg.plane);
            let (ext, rest) = rest.split_at_mut(tg.plane);
            let (dy_buf, rest) = rest.split_at_mut(g.p_out());
            let flipped = &mut rest[..g.cout_g * taps];
            for (i, dxt) in dxs.chunks_exact_mut(x_task).enumerate() {
                let t = worker * per + i;
                let group = t % g.groups;
                for (co, plane) in planes.chunks_exact_mut(tg.plane).enumerate() {
                    let at = t * y_task + co * g.p_out();
                    let d = masked(&dy[at..][..g.p_out()], relu_y.map(|y| &y[at..][..g.p_out()]), dy_buf);
                    pad(&tg, d, plane);
                }
                let w = &w[group * w_task..][..w_task];
                for (ci, dxp) in dxt.chunks_exact_mut(g.p_in()).enumerate() {
                    // flipped[co][tap] = w[co][ci][taps − 1 − tap]: the kernel turned by 180°.
                    for (co, f) in flipped.chunks_exact_mut(taps).enumerate() {
                        for (v, &wv) in f.iter_mut().zip(w[co * k + ci * taps..][..taps].iter().rev()) {
                            *v = wv;
                        }
                    }
                    plane_forward(&tg, planes, flipped, 0.0, false, dxp, ext);
                }
            }
        });
        return;
    }
    let per = per_worker(n * g.groups, scratch, g.worker_len());
    dx[..n * op.x_len()].par_chunks_mut(per * x_task).zip(scratch.par_chunks_mut(g.worker_len())).enumerate().for_each(|(worker, (dxs, buf))| {
        let (planes, rest) = buf.split_at_mut(g.cin_g * g.plane);
        let (ext, rest) = rest.split_at_mut(g.plane);
        let dy_buf = &mut rest[..g.p_out()];
        for (i, dxt) in dxs.chunks_exact_mut(x_task).enumerate() {
            let t = worker * per + i;
            let group = t % g.groups;
            planes.fill(0.0);
            let w = &w[group * w_task..][..w_task];
            for co in 0..g.cout_g {
                let at = t * y_task + co * g.p_out();
                let d = masked(&dy[at..][..g.p_out()], relu_y.map(|y| &y[at..][..g.p_out()]), dy_buf);
                let d = flat_dy(g, d, ext);
                for (dxp, w) in planes.chunks_exact_mut(g.plane).zip(w[co * op.patch_len()..][..op.patch_len()].chunks_exact(g.taps())) {
                    plane_data_grad(g, dxp, w, d);
                }
            }
            for (src, dst) in planes.chunks_exact(g.plane).zip(dxt.chunks_exact_mut(g.p_in())) {
                unpad(g, src, dst);
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn filter_grad(op: &Conv2d, g: &Geo, n: usize, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dwb: &mut [f32], scratch: &mut [f32]) {
    let (dw, db) = dwb.split_at_mut(op.weight_len());
    if small::applies(op) {
        small::filter_grad(op, n, x, dy, relu_y, dw);
    } else {
        padded_filter_grad(op, g, n, x, dy, relu_y, dw, scratch);
    }
    if op.bias {
        // db[co] += Σ over the batch and the pixels of (masked) dY.
        let p = g.p_out();
        db.par_iter_mut().enumerate().for_each(|(co, db)| {
            let mut lanes = [0.0f32; LANES];
            for img in 0..n {
                let at = (img * op.c_out + co) * p;
                let (d, y) = (&dy[at..][..p], relu_y.map(|y| &y[at..][..p]));
                for (i, &v) in d.iter().enumerate() {
                    let keep = y.is_none_or(|y| y[i] > 0.0);
                    lanes[i % LANES] += if keep { v } else { 0.0 };
                }
            }
            *db += lanes.iter().sum::<f32>();
        });
    }
}

/// dw += the filter gradient through padded planes (accumulated).
#[allow(clippy::too_many_arguments)]
fn padded_filter_grad(op: &Conv2d, g: &Geo, n: usize, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dw: &mut [f32], scratch: &mut [f32]) {
    let k = op.patch_len();
    // One task per output channel, which owns its k weights.
    let per = per_worker(op.c_out, scratch, g.worker_len());
    dw.par_chunks_mut(per * k).zip(scratch.par_chunks_mut(g.worker_len())).enumerate().for_each(|(worker, (dws, buf))| {
        let (xp, rest) = buf.split_at_mut(g.plane);
        let (ext, rest) = rest.split_at_mut(g.plane);
        let (dy_buf, acc) = rest.split_at_mut(g.p_out());
        let acc = &mut acc[..LANES * k];
        for (i, dw) in dws.chunks_exact_mut(k).enumerate() {
            let co = worker * per + i;
            let group = co / g.cout_g;
            acc.fill(0.0);
            for img in 0..n {
                let at = (img * op.c_out + co) * g.p_out();
                let d = masked(&dy[at..][..g.p_out()], relu_y.map(|y| &y[at..][..g.p_out()]), dy_buf);
                let d = flat_dy(g, d, ext);
                for (ci, acc) in acc.chunks_exact_mut(LANES * g.taps()).enumerate() {
                    let c = group * g.cin_g + ci;
                    pad(g, &x[(img * op.c_in + c) * g.p_in()..][..g.p_in()], xp);
                    plane_filter_grad(g, xp, d, acc);
                }
            }
            for (w, lanes) in dw.iter_mut().zip(acc.chunks_exact(LANES)) {
                *w += lanes.iter().sum::<f32>();
            }
        }
    });
}

/// Depthwise convolutions with small output planes (at most `SMALL_PLANE` = 64 pixels, of
/// inputs of at most 16 × 16: MobileNetV2's 8 × 8 down to 1 × 1 on 32 × 32 images), eight
/// channels at a time.
///
/// For such planes the padded-plane path above is mostly overhead: a 2 × 2 plane is copied into
/// a zeroed 4 × 4 one (plus a vector of zeros) and a flat pass computes a whole vector for 4
/// outputs, per channel, 128 × 576 times per layer; a 1 × 1 plane with padding 1 computes 9
/// taps of which 8 read zeros. Here the eight planes of channels c0..c0 + 8 of an image are
/// transposed into pixel-major order (one vector of eight channels per pixel), and each output
/// pixel is the sum, over only the taps that land inside the input (a list computed once per
/// call, so no padding, no border tests and no reads of zeros), of a vector of eight
/// channels' weights times a vector of eight channels' inputs. For 1 × 1 planes that list is the
/// centre tap alone. Measured, batch 128, 2 threads: see the commit that added it.
pub(super) mod small {
    use rayon::prelude::*;

    use super::{Conv2d, LANES};

    /// Output planes of at most this many pixels, of input planes of at most [`SMALL_IN`],
    /// go through this path. Measured (96 channels, batch 128): 16 × 16 → 8 × 8 (stride 2)
    /// forward 2.9 → 1.6–1.9 ms, filter gradient 3.1 → 1.6–1.9 ms on one thread; but 16 × 16
    /// with stride 1 slower, 3.5–4.3 → 4.6–6.0 ms (256 outputs of 9 listed taps each, against
    /// the padded path's 9 vectors per 8 outputs).
    pub(super) const SMALL_PLANE: usize = 64;

    /// The largest input plane of this path (the stack buffers' size).
    const SMALL_IN: usize = 256;

    /// The largest kernel (kh·kw) of this path: the filter gradient's partial sums are on the
    /// stack.
    const MAX_TAPS: usize = 64;

    /// Eight channels' values of one pixel.
    type Lanes = [f32; LANES];

    /// The taps of a small depthwise convolution that land inside the input, three ways.
    pub(super) struct Taps {
        /// Channels.
        c: usize,
        p_in: usize,
        p_out: usize,
        taps: usize,
        /// Per output pixel o, `fwd[fwd_at[o]..fwd_at[o + 1]]`: (input pixel, tap) it reads.
        fwd: Vec<(u32, u32)>,
        fwd_at: Vec<usize>,
        /// Per input pixel i: (output pixel, tap) that read it, for the data gradient (a
        /// gather again, not a scatter).
        bwd: Vec<(u32, u32)>,
        bwd_at: Vec<usize>,
        /// Per tap: (output pixel, input pixel), for the filter gradient (a tap's partial sums
        /// stay in a register).
        per_tap: Vec<(u32, u32)>,
        per_tap_at: Vec<usize>,
    }

    /// Whether `op` takes this path.
    pub(super) fn applies(op: &Conv2d) -> bool {
        #[cfg(test)]
        if NO_SMALL.with(|c| c.get()) {
            return false;
        }
        op.is_depthwise() && op.h_in * op.w_in <= SMALL_IN && op.h_out * op.w_out <= SMALL_PLANE && op.kernel[0] * op.kernel[1] <= MAX_TAPS
    }

    #[cfg(test)]
    thread_local! {
        /// Set by tests to run the padded-plane path on shapes this one would take (checked in
        /// the calling thread, so tests running alongside are not affected).
        pub(in crate::ops::conv2d) static NO_SMALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Groups (a CSR list) of `(key, a, b)` entries by key.
    fn by_key(keys: usize, entries: &[(usize, u32, u32)]) -> (Vec<(u32, u32)>, Vec<usize>) {
        let mut at = vec![0usize; keys + 1];
        for &(k, _, _) in entries {
            at[k + 1] += 1;
        }
        for k in 0..keys {
            at[k + 1] += at[k];
        }
        let mut fill = at.clone();
        let mut out = vec![(0, 0); entries.len()];
        for &(k, a, b) in entries {
            out[fill[k]] = (a, b);
            fill[k] += 1;
        }
        (out, at)
    }

    /// The taps of `op`, computed on its first use and kept for the program's life (one small
    /// list per convolution shape), so that a step allocates nothing.
    fn taps(op: &Conv2d) -> &'static Taps {
        static CACHE: std::sync::Mutex<Vec<(Conv2d, &'static Taps)>> = std::sync::Mutex::new(Vec::new());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, t)) = cache.iter().find(|(o, _)| o == op) {
            return t;
        }
        let t: &'static Taps = Box::leak(Box::new(Taps::of(op)));
        cache.push((*op, t));
        t
    }

    impl Taps {
        fn of(op: &Conv2d) -> Self {
            let (kh, kw) = (op.kernel[0], op.kernel[1]);
            // (output, input, tap) for every tap that lands inside the input.
            type Hit = (usize, usize, usize);
            let mut hits: Vec<Hit> = Vec::new();
            for oy in 0..op.h_out {
                for ox in 0..op.w_out {
                    for ky in 0..kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]).wrapping_sub(op.padding[0]);
                        if iy >= op.h_in {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]).wrapping_sub(op.padding[1]);
                            if ix < op.w_in {
                                hits.push((oy * op.w_out + ox, iy * op.w_in + ix, ky * kw + kx));
                            }
                        }
                    }
                }
            }
            let list = |f: fn(&Hit) -> (usize, u32, u32), keys| by_key(keys, &hits.iter().map(f).collect::<Vec<_>>());
            let (p_in, p_out, taps) = (op.h_in * op.w_in, op.h_out * op.w_out, kh * kw);
            let (fwd, fwd_at) = list(|&(o, i, t)| (o, i as u32, t as u32), p_out);
            let (bwd, bwd_at) = list(|&(o, i, t)| (i, o as u32, t as u32), p_in);
            let (per_tap, per_tap_at) = list(|&(o, i, t)| (t, o as u32, i as u32), taps);
            Taps { c: op.c_out, p_in, p_out, taps, fwd, fwd_at, bwd, bwd_at, per_tap, per_tap_at }
        }
    }

    /// Scratch floats: the blocked weights and biases ([`blocked`]).
    pub(super) fn scratch_len(op: &Conv2d) -> usize {
        if !applies(op) {
            return 0;
        }
        op.c_out.div_ceil(LANES) * (op.kernel[0] * op.kernel[1] + 1) * LANES
    }

    /// The weights of each block of eight channels, tap-major, `[block · taps + tap][lane]`,
    /// then the biases `[block][lane]` (zeros past the last channel and without a bias), laid
    /// out in the scratch.
    fn blocked<'a>(op: &Conv2d, w: &[f32], b: Option<&[f32]>, taps: usize, scratch: &'a mut [f32]) -> (&'a [Lanes], &'a [Lanes]) {
        let blocks = op.c_out.div_ceil(LANES);
        let (out, _) = scratch[..scratch_len(op)].as_chunks_mut::<LANES>();
        out.fill([0.0; LANES]);
        let (wt, bt) = out.split_at_mut(blocks * taps);
        for (c, w) in w.chunks_exact(taps).enumerate() {
            for (t, &v) in w.iter().enumerate() {
                wt[c / LANES * taps + t][c % LANES] = v;
            }
        }
        if let Some(b) = b {
            for (c, &v) in b[..op.c_out].iter().enumerate() {
                bt[c / LANES][c % LANES] = v;
            }
        }
        (wt, bt)
    }

    /// planes[i][l] = src[l·p + i] for the `lanes` planes of p pixels in `src` (others left as
    /// they were: their results are never written out); under `mask`, zero where it is not
    /// positive (a fused ReLU's output).
    #[inline(always)]
    fn gather(planes: &mut [Lanes], src: &[f32], mask: Option<&[f32]>, p: usize, lanes: usize) {
        for l in 0..lanes {
            let s = &src[l * p..][..p];
            match mask {
                None => s.iter().zip(&mut planes[..p]).for_each(|(&v, d)| d[l] = v),
                Some(m) => s.iter().zip(&m[l * p..][..p]).zip(&mut planes[..p]).for_each(|((&v, &m), d)| d[l] = if m > 0.0 { v } else { 0.0 }),
            }
        }
    }

    /// dst[l·p + i] = planes[i][l] (the inverse of [`gather`]), ReLU'd when `relu`.
    #[inline(always)]
    fn scatter(dst: &mut [f32], planes: &[Lanes], p: usize, lanes: usize, relu: bool) {
        for l in 0..lanes {
            let d = &mut dst[l * p..][..p];
            for (d, s) in d.iter_mut().zip(&planes[..p]) {
                *d = if relu { s[l].max(0.0) } else { s[l] };
            }
        }
    }

    /// acc[l] += a[l]·b[l].
    #[inline(always)]
    fn madd_lanes<const FMA: bool>(acc: &mut Lanes, a: &Lanes, b: &Lanes) {
        for l in 0..LANES {
            acc[l] = super::madd::<FMA>(a[l], b[l], acc[l]);
        }
    }

    dispatch!(image_forward, image_forward_avx2, image_forward_body, (s: &Taps, x: &[f32], wt: &[Lanes], bt: &[Lanes], relu: bool, y: &mut [f32]));
    dispatch!(image_data_grad, image_data_grad_avx2, image_data_grad_body, (s: &Taps, dy: &[f32], relu_y: Option<&[f32]>, wt: &[Lanes], dx: &mut [f32]));
    dispatch!(block_filter_grad, block_filter_grad_avx2, block_filter_grad_body, (s: &Taps, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, c0: usize, lanes: usize, acc: &mut [Lanes]));

    /// One image's output planes `y` (all channels), from its input planes `x`; `wt`, `bt`: the
    /// blocked weights and biases.
    #[inline(always)]
    fn image_forward_body<const FMA: bool>(s: &Taps, x: &[f32], wt: &[Lanes], bt: &[Lanes], relu: bool, y: &mut [f32]) {
        let c = x.len() / s.p_in;
        let mut xt = [[0.0f32; LANES]; SMALL_IN];
        let mut yt = [[0.0f32; LANES]; SMALL_PLANE];
        for (b, (w, &bias)) in wt.chunks_exact(s.taps).zip(bt).enumerate() {
            let (c0, lanes) = (b * LANES, LANES.min(c - b * LANES));
            gather(&mut xt, &x[c0 * s.p_in..], None, s.p_in, lanes);
            for (o, yo) in yt[..s.p_out].iter_mut().enumerate() {
                let mut a = bias;
                for &(i, t) in &s.fwd[s.fwd_at[o]..s.fwd_at[o + 1]] {
                    madd_lanes::<FMA>(&mut a, &w[t as usize], &xt[i as usize]);
                }
                *yo = a;
            }
            scatter(&mut y[c0 * s.p_out..], &yt, s.p_out, lanes, relu);
        }
    }

    /// One image's input gradient `dx` (written), from its output gradient `dy` (masked by
    /// `relu_y` where given): per input pixel, a gather over the outputs that read it.
    #[inline(always)]
    fn image_data_grad_body<const FMA: bool>(s: &Taps, dy: &[f32], relu_y: Option<&[f32]>, wt: &[Lanes], dx: &mut [f32]) {
        let c = dy.len() / s.p_out;
        let mut dyt = [[0.0f32; LANES]; SMALL_PLANE];
        let mut dxt = [[0.0f32; LANES]; SMALL_IN];
        for (b, w) in wt.chunks_exact(s.taps).enumerate() {
            let (c0, lanes) = (b * LANES, LANES.min(c - b * LANES));
            gather(&mut dyt, &dy[c0 * s.p_out..], relu_y.map(|y| &y[c0 * s.p_out..]), s.p_out, lanes);
            for (i, di) in dxt[..s.p_in].iter_mut().enumerate() {
                let mut a = [0.0; LANES];
                for &(o, t) in &s.bwd[s.bwd_at[i]..s.bwd_at[i + 1]] {
                    madd_lanes::<FMA>(&mut a, &w[t as usize], &dyt[o as usize]);
                }
                *di = a;
            }
            scatter(&mut dx[c0 * s.p_in..], &dxt, s.p_in, lanes, false);
        }
    }

    /// acc[tap][l] += Σ over the images of Σ dY · (the inputs tap read), for channels
    /// c0..c0 + lanes; `x` and `dy` the whole batch.
    #[inline(always)]
    fn block_filter_grad_body<const FMA: bool>(s: &Taps, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, c0: usize, lanes: usize, acc: &mut [Lanes]) {
        let c = s.c;
        let n = x.len() / (c * s.p_in);
        let mut xt = [[0.0f32; LANES]; SMALL_IN];
        let mut dyt = [[0.0f32; LANES]; SMALL_PLANE];
        for img in 0..n {
            let at = (img * c + c0) * s.p_out;
            gather(&mut xt, &x[(img * c + c0) * s.p_in..], None, s.p_in, lanes);
            gather(&mut dyt, &dy[at..], relu_y.map(|y| &y[at..]), s.p_out, lanes);
            for (t, acc) in acc.iter_mut().enumerate() {
                let mut a = *acc;
                for &(o, i) in &s.per_tap[s.per_tap_at[t]..s.per_tap_at[t + 1]] {
                    madd_lanes::<FMA>(&mut a, &dyt[o as usize], &xt[i as usize]);
                }
                *acc = a;
            }
        }
    }

    /// Images per task: a few tasks per thread, not one per image (each task costs more than a
    /// small image's work).
    fn images_per_task(n: usize) -> usize {
        n.div_ceil(4 * rayon::current_num_threads()).max(1)
    }

    /// y = conv(x, w) + b, then ReLU when `relu`.
    pub(super) fn forward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], y: &mut [f32], scratch: &mut [f32], relu: bool) {
        let s = taps(op);
        let (w, b) = wb.split_at(op.weight_len());
        let (wt, bt) = blocked(op, w, op.bias.then_some(b), s.taps, scratch);
        let per = images_per_task(n);
        y[..n * op.y_len()].par_chunks_mut(per * op.y_len()).zip(x[..n * op.x_len()].par_chunks(per * op.x_len())).for_each(|(ys, xs)| {
            for (y, x) in ys.chunks_exact_mut(op.y_len()).zip(xs.chunks_exact(op.x_len())) {
                image_forward(s, x, wt, bt, relu, y);
            }
        });
    }

    /// dx = conv_backward_data(dy) (written).
    pub(super) fn data_grad(op: &Conv2d, n: usize, w: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dx: &mut [f32], scratch: &mut [f32]) {
        let s = taps(op);
        let (wt, _) = blocked(op, w, None, s.taps, scratch);
        let per = images_per_task(n);
        let dy = &dy[..n * op.y_len()];
        dx[..n * op.x_len()].par_chunks_mut(per * op.x_len()).enumerate().for_each(|(task, dxs)| {
            for (j, dx) in dxs.chunks_exact_mut(op.x_len()).enumerate() {
                let at = (task * per + j) * op.y_len();
                image_data_grad(s, &dy[at..][..op.y_len()], relu_y.map(|y| &y[at..][..op.y_len()]), wt, dx);
            }
        });
    }

    /// dw += conv_backward_filter(x, dy) (accumulated): one task per block of eight channels,
    /// which owns their weights (sums in a fixed order, whatever the threads).
    pub(super) fn filter_grad(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dw: &mut [f32]) {
        let s = taps(op);
        let (x, dy) = (&x[..n * op.x_len()], &dy[..n * op.y_len()]);
        dw[..op.weight_len()].par_chunks_mut(LANES * s.taps).enumerate().for_each(|(b, dw)| {
            let (c0, lanes) = (b * LANES, LANES.min(op.c_out - b * LANES));
            // On the stack: a task allocates nothing ([`MAX_TAPS`] bounds the kernel).
            let mut acc = [[0.0f32; LANES]; MAX_TAPS];
            let acc = &mut acc[..s.taps];
            block_filter_grad(s, x, dy, relu_y, c0, lanes, acc);
            for (l, dw) in dw.chunks_exact_mut(s.taps).enumerate() {
                for (t, w) in dw.iter_mut().enumerate() {
                    *w += acc[t][l];
                }
            }
        });
    }
}
