//! Convolution on the CPU (groups > 1: `depthwise.rs`): indirect GEMMs over the whole batch (Dukhan, "The Indirect
//! Convolution Algorithm", 2019), vectorised over channels.
//!
//! Let K = c_in·kh·kw (the taps) and J = n·h_out·w_out (the output pixels of the batch). The
//! input is first copied into a zero-padded buffer `xp`; then a window tap of a pixel is one
//! load, `xp[pixel_base(j) + tap_offset(k)]`, with no bounds to check. So:
//! - forward:          Y[j, co] = Σ_k xp[base(j) + off(k)] · Wᵀ[k, co]      rows = pixels
//! - backward filter:  dWᵀ[k, co] = Σ_j xp[off(k) + base(j)] · dYᵀ[j, co]    rows = taps
//! - backward data:    stride 1: the "full" convolution of dY (padded by dilation·(k−1) −
//!                     padding) with W flipped and transposed, i.e. the forward again;
//!                     otherwise col2im of Wᵀ·dY, one image at a time.
//!
//! The indirect microkernel (`gemm::kernel::select_indirect_for_channels`) holds an MR × NR tile of
//! (rows × channels) in registers for a whole block of k; the last block is scattered into
//! the NCHW output through the epilogue (bias, ReLU), earlier blocks are kept in a channels-last
//! buffer. Nothing of im2col's size is ever materialised.
//!
//! With AVX-512 and input channels in whole blocks of 16, the forward (and so the stride-1 data
//! gradient) pads its input into a channel-blocked layout instead, (n, c/16, hp, wp, 16) as
//! ONNX Runtime's NCHWc: a tap's 16 channels are then one cache line, read by one kernel step
//! with constant offsets (`gemm::kernel::select_blocked_for_channels`).
//!
//! A ReLU fused after the convolution costs nothing extra either way: forward it is the
//! epilogue; backward, dY (the gradient of the ReLU's output) is masked by `y > 0` while it is
//! copied anyway (transposed for the filter gradient, padded for the data gradient).
//!
//! A ReLU and a 2 × 2 max pooling after it: the forward pools in the epilogue
//! ([`forward_relu_max_pool`]), and the backward starts from the pooling's gradient
//! ([`relu_max_pool_backward`]), where only the windows' maxima carry one (`routed.rs`).

use rayon::prelude::*;

use super::{Conv2d, depthwise, direct, routed, winograd};
use crate::ops::gemm::kernel::{CHANNEL_BLOCK, Indirect, MAX_INDIRECT_MR, MAX_INDIRECT_NR, select_blocked_for_channels, select_indirect_for_channels, select_indirect_for_windows, select_sliding, select_sliding_filter};
use crate::ops::gemm::{MatMut, MatRef, Parallelism, gemm};
use crate::ops::transpose::{copy_row, zero_row};

/// Pixels per block of the filter gradient: a B panel of block·NR floats (16 KB with 32 channels)
/// stays in L1 beside the input lines its pixels read. The CIFAR network's train step, 2 threads,
/// paired runs on the AVX-512 Xeon: 45.6 and 43.4 ms with 256, 41.7 and 41.8 with 128 (Model A's
/// and AlexNet's within their noise).
///
/// With AVX2, 256: its 16-channel panel is half as wide, and its 6 × 16 tile's pass in and out
/// of the partial sums costs more against its FMAs. On a Zen 1 EPYC, one process trying 128, 256
/// and 512 in turn (best of 15 each), Model A's second layer and the CIFAR network's second and
/// third took 2–4% less time with 256 than with 128, on one thread and on two (34.3 → 35.0,
/// 33.7 → 34.5, 34.8 → 35.6 GFLOP/s on one); 512 was within 1% of 256.
fn filter_block() -> usize {
    if crate::ops::isa::avx512() { 128 } else { 256 }
}

/// Bytes of partial sums (dWᵀ rows) the filter gradient carries from one block of pixels to the
/// next: the rows of taps are taken in chunks of at most this much, each chunk through all the
/// pixels, so that its partial sums stay in L2. AlexNet's 3 × 3 layers have 2.4–3.5 MB of them,
/// which went to memory and back on every block of pixels: AlexNet's 384 → 256 filter
/// gradient, one thread, 135–141 → 150–154 GFLOP/s (the 192 → 384 one 144–154 → 154–159).
/// The unit tests take chunks of 4 KiB, so that their small layers run through several.
#[cfg(not(test))]
const FILTER_CHUNK_BYTES: usize = 512 << 10;
#[cfg(test)]
const FILTER_CHUNK_BYTES: usize = 4 << 10;

/// Bytes of a group of images the filter gradient split by pixels pads and transposes at a
/// time, to sweep them from L2 (with the partial sums, within a 512 KB L2). The unit tests take
/// groups of 16 KiB: one image of their larger layers, several of the smaller.
#[cfg(not(test))]
const FILTER_GROUP_BYTES: usize = 256 << 10;
#[cfg(test)]
const FILTER_GROUP_BYTES: usize = 16 << 10;

/// Taps per block of the forward: as equal blocks of at most 144 (16 input channels of a 3 × 3
/// kernel), so that a block's B panel (18 KB with 32 channels) and the input lines its taps read
/// stay in a 48 KB L1 together. The microkernel alone on this Xeon, taps 324 floats apart (a
/// 16 × 16 plane padded): 135 GFLOP/s over 288 taps, 178 over 144. A second block costs a pass
/// through the tile's partial sums, 1 KB, against 144 × 16 FMAs. In the CIFAR network's forward
/// and train step that was 1–5% (paired runs; it was k whole up to 512 taps before).
///
/// With AVX2 the blocks are of at most 576 taps: the 6 × 16 tile holds fewer sums, so a block's
/// pass through them costs more against its FMAs, and its 16-channel B panel is half as wide.
/// On a Zen 1 EPYC (32 KB L1), one process trying 72, 96, 144, 200 and whole k in turn, best of
/// 15 each, Model A's second layer and the CIFAR network's second and third (k = 400, 288 and
/// 576) ran their forwards and data gradients fastest with k whole: 2–5% over 144 on one thread
/// in the machine's fast spells (31.4–33.6 → 31.9–34.6 GFLOP/s), up to 20% on two.
/// The unit tests take blocks of at most 48 taps there, so that their layers run through
/// several blocks too.
fn forward_block(k: usize) -> usize {
    let most = if crate::ops::isa::avx512() { 144 } else if cfg!(test) { 48 } else { 576 };
    k.div_ceil(k.div_ceil(most))
}
/// The forward's kernel: the channel-blocked one where the instruction set has it and the input
/// channels are whole blocks, else the indirect one; both have the same tile. Not for 1 × 1
/// kernels: the indirect one reads their input in place, uncopied (see [`padded_input`]), and
/// the blocked layout would need a copy again (not measured).
///
/// With `pool` (the epilogue pools 2 × 2), a kernel whose tiles are whole windows, four rows each
/// (`select_indirect_for_windows`); the same columns, so the same weight panels.
///
/// For up to 32 output channels, stride 1, rows whose width a tile divides, the
/// sliding-window kernel (`select_sliding`), not when pooling (its tiles are a row's outputs,
/// not windows). Model A's second layer's data gradient (32 → 16, 5 × 5, rows of 14), one
/// thread of a Xeon (family 6 model 167), the kernel alone 168–174 → 214 GFLOP/s.
pub(super) fn forward_kernel(op: &Conv2d, pool: bool) -> (Indirect, bool) {
    let in_blocks = op.c_in % CHANNEL_BLOCK == 0 && op.kernel != [1, 1];
    let sliding = (in_blocks && !pool && op.stride == [1, 1] && op.dilation == [1, 1]).then(|| select_sliding(op.c_out, op.w_out, op.kernel[1])).flatten();
    let blocked = sliding.or_else(|| in_blocks.then(|| select_blocked_for_channels(op.c_out)).flatten());
    match blocked {
        Some(kernel) => (kernel, true),
        None if pool => (select_indirect_for_windows(op.c_out), false),
        None => (select_indirect_for_channels(op.c_out), false),
    }
}

/// Taps per block of the forward: [`forward_block`], or for the channel-blocked kernel whole
/// groups of 16, at most 9 of them (144 taps); for a sliding one ([`Indirect::run`] > 1),
/// whole runs of groups, at most 10 groups (one run, if longer): a 16-channel B panel of them
/// is 10 KB.
fn forward_block_of(op: &Conv2d, ind: &Indirect, blocked: bool) -> usize {
    let k = op.patch_len();
    if blocked {
        let unit = CHANNEL_BLOCK * ind.run;
        let most = if ind.run > 1 { (10 / ind.run).max(1) } else { 144 / CHANNEL_BLOCK };
        let units = k / unit;
        unit * units.div_ceil(units.div_ceil(most))
    } else {
        forward_block(k)
    }
}

/// Output rows (pixels) per task of the forward: 96, or 192 where the weight panels are over
/// 1 MB. A task reads all of its panels' weights once per 8 rows of a tile times its tiles,
/// so weights that L2 cannot keep beside the task's input come from L3 once per task:
/// AlexNet's 3 × 3 data gradients (2.4–3.5 MB of flipped weights, batch 4: 676 rows), one
/// thread on a Xeon of family 6 model 167, the runs in turn: 160–169 → 168–175 GFLOP/s
/// (384 → 256), about 2% for the others.
fn rows_per_task(op: &Conv2d) -> usize {
    if panels_len(op) * size_of::<f32>() > 1 << 20 { MAX_ROWS_PER_TASK } else { 96 }
}

/// The most of [`rows_per_task`].
const MAX_ROWS_PER_TASK: usize = 192;

/// The geometry of a padded convolution input: channels and padded height and width.
#[derive(Clone, Copy)]
struct Padded {
    c: usize,
    hp: usize,
    wp: usize,
}

impl Padded {
    fn of(op: &Conv2d) -> Self {
        Padded { c: op.c_in, hp: op.h_in + 2 * op.padding[0], wp: op.w_in + 2 * op.padding[1] }
    }

    fn len(&self, n: usize) -> usize {
        n * self.c * self.hp * self.wp
    }
}

/// How the scratch of one call is used, in floats.
struct Layout {
    xp: usize,
    /// Forward: the weights laid out. Filter gradient: per panel and image, the sums of dY
    /// (the bias gradient's parts; unused without a bias).
    weights: usize,
    taps: usize,
    /// Filter gradient: dYᵀ.
    rows: usize,
    /// Filter gradient: pixel offsets.
    cols: usize,
    /// Per thread, the filter gradient's partial dWᵀ, or a forward task's channels-last
    /// partial sums (more than one block of taps only; see [`stash_len`]). The last part: a
    /// call takes all that is left of the scratch.
    partials: usize,
}

/// Each part of the scratch starts a 64-byte cache line (the scratch itself does): the kernels'
/// vector loads of weights and partial sums then never straddle two lines.
fn line(floats: usize) -> usize {
    floats.next_multiple_of(16)
}

impl Layout {
    fn total(&self) -> usize {
        line(self.xp) + line(self.weights) + line(self.taps) + line(self.rows) + line(self.cols) + self.partials
    }
}

/// The forward's scratch: with `copies`, a padded input per thread (see [`Window`]) instead of
/// one for all.
fn forward_layout(op: &Conv2d, n: usize, copies: bool) -> Layout {
    let ind = forward_kernel(op, false).0;
    let k = op.patch_len();
    let co_pad = op.c_out.div_ceil(ind.nr) * ind.nr;
    Layout {
        xp: if copies { threads() * copy_len(op, n) } else { Padded::of(op).len(n) },
        weights: co_pad * k,
        // Past k for any tile height (the pooling forward's kernel has other rows).
        taps: k + MAX_INDIRECT_MR,
        rows: 0,
        cols: 0,
        // Whichever kernel runs (the pooling forward's may take longer blocks).
        partials: if [false, true].into_iter().any(|pool| {
            let (ind, blocked) = forward_kernel(op, pool);
            k > forward_block_of(op, &ind, blocked)
        }) {
            threads() * stash_len(op, co_pad)
        } else {
            0
        },
    }
}

/// Floats of one thread's partial sums in the forward: a task's rows (at most
/// [`rows_per_task`], rounded up to whole tiles) by `co_pad` channels. Per thread rather than
/// per pixel of the batch, the next block of taps finds them in L1 or L2: a buffer of the whole
/// output's size (8 MB for the CIFAR network's second layer at batch 128) went to memory and
/// back. The CIFAR network's second layer, one thread, paired runs in two rounds: forward
/// 106–119 → 122–150 GFLOP/s, data gradient 120–155 → 130–164.
fn stash_len(op: &Conv2d, co_pad: usize) -> usize {
    line((rows_per_task(op) + MAX_INDIRECT_MR) * co_pad)
}

/// The convolution whose forward is the data gradient of `op` (stride 1): over dY, padded by
/// dilation·(k − 1) − padding, from c_out channels to c_in.
pub(super) fn full_conv(op: &Conv2d) -> Conv2d {
    let pad = |a: usize| op.dilation[a] * (op.kernel[a] - 1) - op.padding[a];
    Conv2d::new(op.c_out, op.c_in, [op.h_out, op.w_out], op.kernel, [1, 1], [pad(0), pad(1)], op.dilation, 1, false)
}

/// Whether dX is computed as a convolution of dY (stride 1 and padding within the dilated
/// kernel), which writes dX directly, instead of through col2im.
fn uses_full_conv(op: &Conv2d) -> bool {
    (0..2).all(|a| op.stride[a] == 1 && op.padding[a] <= op.dilation[a] * (op.kernel[a] - 1))
}

/// Per chunk of images: one image's column buffer and its masked dY.
fn col2im_len(op: &Conv2d, n: usize) -> usize {
    if uses_full_conv(op) { 0 } else { n.min(threads()) * (op.patch_len() * op.out_pixels() + op.y_len()) }
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// Scratch floats the forward and backward of `op` need for a batch of `n`.
pub fn scratch_len(op: &Conv2d, n: usize) -> usize {
    if op.groups > 1 {
        return depthwise::scratch_len(op);
    }
    // The data gradient: Winograd's or, for batches with too few tiles (`enough_tiles`), the
    // indirect full convolution's; or col2im.
    let data = if uses_full_conv(op) { forward_layout(&full_conv(op), n, copies_pay(n)).total() } else { col2im_len(op, n) };
    let data = if uses_winograd_data(op) { data.max(winograd::scratch_len(&full_conv(op), threads())) } else { data };
    let direct = if direct::applies(op) { Padded::of(op).len(n) + direct::TAIL + direct::filter_scratch_len(op, threads()) } else { 0 };
    let winograd = if uses_winograd(op) { winograd::scratch_len(op, threads()) } else { 0 };
    let routed = if routed::applies(op) { routed::scratch_len(op, n, threads()) } else { 0 };
    forward_layout(op, n, copies_pay(n)).total().max(filter_scratch_len(op, n)).max(data).max(direct).max(winograd).max(routed)
}

/// Whether the forward of `op` is Winograd's (`winograd.rs`): its 3 × 3 and 5 × 5 convolutions
/// of stride 1 with enough channels (`winograd::applies`: more of them with AVX-512), where the
/// direct path does not take them. `STATICNET_NO_WINOGRAD=1` leaves them to the indirect path,
/// to compare the two (read once: the packed weights of a network must stay in the layout its
/// forward reads).
fn uses_winograd(op: &Conv2d) -> bool {
    !winograd_off() && !direct::applies(op) && winograd::applies(op)
}

/// Whether a forward of `n` samples of `op` is Winograd's: one sample is left to the indirect
/// path, whose weights are kept too (see [`packed_len`]). With one image the GEMMs are narrow
/// (the CIFAR network's third layer: 16 tiles in a panel of 32) and the transforms' rounding
/// and the threads' split weigh more: its forward of one took 0.138 against 0.124 ms on one
/// thread of a Xeon (family 6 model 167), 0.104 against 0.085 ms on two.
fn winograd_for(op: &Conv2d, n: usize) -> bool {
    uses_winograd(op) && n > 1
}

/// Whether a data gradient of `n` samples of `op` has tiles enough for Winograd to pay where
/// its transformed weights are not kept ([`data_packed`]): they are then computed on every
/// call, as long as a few hundred tiles' worth of its GEMMs. Transformed on one thread, they
/// made AlexNet's train step at batch 4 (196 and 784 tiles) 4–6% slower (a Xeon, AVX-512, 2
/// threads: 168 against 161–163 ms, Winograd's forward alone; 174–177 with its data
/// gradients); the CIFAR network's layers at batch 128 have 2048 and 8192. The unit tests'
/// small batches take it from 2 tiles on, so that it is tested.
fn enough_tiles(op: &Conv2d, n: usize) -> bool {
    let least = if cfg!(test) { 2 } else { 1024 };
    n * op.h_in.div_ceil(2) * op.w_in.div_ceil(2) >= least
}

/// The indirect path's part of `packed` (after Winograd's, where both are kept).
fn indirect_packed<'a>(op: &Conv2d, packed: Option<&'a [f32]>) -> Option<&'a [f32]> {
    packed.map(|p| if uses_winograd(op) { &p[winograd::weights_len(op)..] } else { p })
}

/// `STATICNET_NO_WINOGRAD=1`: no Winograd, forward or backward.
fn winograd_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("STATICNET_NO_WINOGRAD").is_some_and(|v| v != "0" && !v.is_empty()))
}

/// Whether the data gradient of `op` is Winograd's, for batches with tiles enough
/// ([`enough_tiles`]): the full convolution of dY (stride 1) with a 3 × 3 or 5 × 5 kernel and
/// enough channels (`winograd::applies`), whatever path the forward takes.
fn uses_winograd_data(op: &Conv2d) -> bool {
    !winograd_off() && uses_full_conv(op) && winograd::applies(&full_conv(op))
}

/// Whether the filter gradient of `op` is Winograd's (`winograd::filter_grad`): layers that
/// Winograd's forward takes where its GEMMs, c_in·c_out multiplies a tile and ξ, outweigh its
/// transforms, c_in + c_out a tile: for 3 × 3, a harmonic mean of the channels of 64 at least
/// (c_in·c_out ≥ 32·(c_in + c_out)), or an M small enough for blocks of each thread's own; for
/// 5 × 5, whose F(2 × 2, 5 × 5) saves more, 64 channels on each side. One thread of a Xeon (family 6 model 167, AVX-512), GFLOP/s of the
/// direct sum, median of `prof_layer`-style loops with dY the forward's output, Winograd's
/// against the indirect kernels' (two threads in brackets): the CIFAR network's 64 → 128 on
/// 8 × 8 at batch 128 (harmonic mean 85), 172 against 130 (335 against 255); 64 → 64 on
/// 32 × 32 at batch 16 (64), 160 against 135 (288 against 276); 128 → 128 on 16 × 16, 215
/// against 151; AlexNet's 3 × 3 layers at batch 4, 186–194 against 175–181, and its 64 → 192
/// (5 × 5) 230 against 188; but the CIFAR network's 32 → 64 on 16 × 16 (43), 120 against 131
/// (236 against 278) with the blocks shared by the threads. In blocks of each thread's own
/// (`winograd::filter_grad_per_worker_applies`: where M is small), it wins there too, so any
/// 3 × 3 layer that takes those does: 157 against 133–138 (305 against 273–282); 64 → 32 on
/// 16 × 16 at batch 64, 163 against 143 (301 against 276); 32 → 48 on 8 × 8, 159 against 104
/// (296 against 187); 32 → 32, the same (139 against 135). The unit tests take it from 32
/// channels on, so that it is tested.
fn uses_winograd_filter(op: &Conv2d) -> bool {
    let (ci, co) = (op.c_in, op.c_out);
    let enough = match op.kernel {
        _ if cfg!(test) => ci.min(co) >= 32,
        [3, 3] => ci * co >= 32 * (ci + co) || winograd::filter_grad_per_worker_applies(op),
        _ => ci.min(co) >= 64,
    };
    !winograd_off() && !direct::applies(op) && winograd::applies(op) && enough
}

/// `op`'s filters in PyTorch's layout, for Winograd's transform: W[co, ci] at (co·c_in + ci)·k.
fn filters_of<'a>(op: &Conv2d, w: &'a [f32]) -> winograd::Filters<'a> {
    let k = op.kernel[0] * op.kernel[1];
    winograd::Filters { w, co_stride: op.c_in * k, ci_stride: k, flipped: false }
}

/// The filters of the full convolution of dY whose forward is `op`'s data gradient (see
/// [`full_conv`]): its filter (ci, co) is W[co, ci] turned by 180°.
fn flipped_filters_of<'a>(op: &Conv2d, w: &'a [f32]) -> winograd::Filters<'a> {
    let k = op.kernel[0] * op.kernel[1];
    winograd::Filters { w, co_stride: k, ci_stride: op.c_in * k, flipped: true }
}

/// Floats of the weights laid out for the kernels (see [`pack`]): the forward's
/// (`forward_packed_len`), then the data gradient's (`data_packed_len`); a grouped
/// convolution reads PyTorch's layout.
pub fn packed_len(op: &Conv2d) -> usize {
    forward_packed_len(op) + data_packed_len(op)
}

/// Floats of the weights laid out for the forward: the direct path's groups of channels, or the
/// indirect path's panels, after Winograd's transformed weights where it applies (for batches
/// of more than one, `winograd_for`).
fn forward_packed_len(op: &Conv2d) -> usize {
    if op.groups > 1 {
        0
    } else if direct::applies(op) {
        direct::weights_len(op)
    } else if uses_winograd(op) {
        winograd::weights_len(op) + panels_len(op)
    } else {
        panels_len(op)
    }
}

/// Floats of the weights laid out for the data gradient, after the forward's: Winograd's
/// transformed weights of the full convolution where it takes the data gradient
/// ([`uses_winograd_data`]). Transforming them on every call cost more than the GEMMs saved for
/// small batches (see [`enough_tiles`]); laid out with the forward's, once per change of the
/// weights, they are read by every data gradient until the next.
pub(super) fn data_packed_len(op: &Conv2d) -> usize {
    if op.groups == 1 && uses_winograd_data(op) { winograd::weights_len(&full_conv(op)) } else { 0 }
}

/// The data gradient's part of `packed`, if it has one.
fn data_packed<'a>(op: &Conv2d, packed: Option<&'a [f32]>) -> Option<&'a [f32]> {
    let len = data_packed_len(op);
    packed.and_then(|p| p.get(forward_packed_len(op)..)).filter(|u| len > 0 && u.len() >= len)
}

/// Lays out the weights of `wb` (weight then bias) for the forward and the data gradient, into
/// [`packed_len`] floats: what they otherwise do in their scratch on every call.
pub fn pack(op: &Conv2d, wb: &[f32], packed: &mut [f32]) {
    let (w, k) = (&wb[..op.weight_len()], op.patch_len());
    let (packed, data) = packed[..packed_len(op)].split_at_mut(forward_packed_len(op));
    if op.groups > 1 {
    } else if direct::applies(op) {
        direct::pack(op, |co, tap| w[co * k + tap], packed);
    } else if uses_winograd(op) {
        let (u, panels) = packed.split_at_mut(winograd::weights_len(op));
        winograd::pack(op, &filters_of(op, w), u);
        pack_panels(op, w, false, panels);
    } else {
        pack_panels(op, w, false, packed);
    }
    if !data.is_empty() {
        winograd::pack(&full_conv(op), &flipped_filters_of(op, w), data);
    }
}

/// y = conv(x, w) + b, then ReLU when `relu`. `packed`: the weights as [`pack`] laid them
/// out, if kept; else they are laid out in `scratch`.
#[allow(clippy::too_many_arguments)]
pub fn forward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, y: &mut [f32], scratch: &mut [f32], relu: bool) {
    if op.groups > 1 {
        return depthwise::forward(op, n, x, wb, y, scratch, relu);
    }
    if direct::applies(op) {
        return direct_forward(op, n, x, wb, packed, relu, false, y, None, scratch);
    }
    let (w, b) = wb.split_at(op.weight_len());
    if winograd_for(op, n) {
        return winograd::forward(op, n, x, None, &filters_of(op, w), packed, op.bias.then_some(b), relu, false, y, scratch, threads());
    }
    let epilogue = if relu { Epilogue::Relu } else { Epilogue::Plain };
    indirect_forward(op, n, x, None, w, false, indirect_packed(op, packed), op.bias.then_some(b), epilogue, y, scratch);
}

/// The direct path's forward: the input padded into the scratch, the weights laid out there
/// unless `packed`; pooled too with `pool` (see `direct::pools`).
#[allow(clippy::too_many_arguments)]
fn direct_forward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, relu: bool, pool: bool, y: &mut [f32], relu_y: Option<&mut [f32]>, scratch: &mut [f32]) {
    let (w, b) = wb.split_at(op.weight_len());
    let (l, copies) = forward_layout_in(op, n, scratch.len());
    let [xp, weights, ..] = split(scratch, &l);
    let pad_all = |_: usize, xp: &mut [f32]| pad_here(op, n, x, None, false, xp);
    let xp = if copies {
        Input::PerThread(Window::new(xp, 1, n, Padded::of(op).len(1)), &pad_all)
    } else {
        pad_input(op, n, x, None, xp);
        Input::Shared(xp)
    };
    let pad = Padded::of(op);
    let wt = match packed {
        Some(packed) => packed,
        None => {
            direct::pack(op, |co, tap| w[co * op.patch_len() + tap], weights);
            weights
        }
    };
    direct::forward(op, n, &xp, pad.hp, pad.wp, wt, op.bias.then_some(b), relu, pool, y, relu_y);
}

/// Whether [`forward_relu_max_pool`] takes `op`: the direct path's shapes whose tiles are whole
/// pairs of rows (`direct::pools`), and the indirect kernels' convolutions (not the grouped
/// ones), whose pooling kernels' tiles hold whole 2 × 2 windows, four rows each
/// (`select_indirect_for_windows`). With `keep_relu` (the ReLU's output written too), only the
/// direct path's.
pub fn fuses_relu_max_pool(op: &Conv2d, keep_relu: bool) -> bool {
    op.groups == 1 && if direct::applies(op) { direct::pools(op) } else { !keep_relu && forward_kernel(op, true).0.mr % 4 == 0 }
}

/// y = max_pool2d(relu(conv(x, w) + b), 2, 2) in one pass (an eval forward's fusion; see
/// [`fuses_relu_max_pool`]): the output pixels are taken four at a time, the 2 × 2 window of
/// one pooled pixel, and each finished tile is pooled in the epilogue, so the convolution's
/// output is never written. Windows past an odd last row or column are not computed (PyTorch's
/// floor mode drops them). With `relu_y`, the ReLU's output is written there too (a training
/// forward: the pooling's pass over it, 3% of Model A's train step, is saved).
#[allow(clippy::too_many_arguments)]
pub fn forward_relu_max_pool(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, y: &mut [f32], relu_y: Option<&mut [f32]>, scratch: &mut [f32]) {
    assert!(fuses_relu_max_pool(op, relu_y.is_some()), "no fused forward for {op:?}");
    if direct::applies(op) {
        // Pooled in the direct kernel's epilogue: its tiles are whole pairs of rows.
        return direct_forward(op, n, x, wb, packed, true, true, y, relu_y, scratch);
    }
    let (w, b) = wb.split_at(op.weight_len());
    if winograd_for(op, n) {
        // Pooled as its 2 × 2 output tiles are finished: each tile is one window.
        return winograd::forward(op, n, x, None, &filters_of(op, w), packed, op.bias.then_some(b), true, true, y, scratch, threads());
    }
    indirect_forward(op, n, x, None, w, false, indirect_packed(op, packed), op.bias.then_some(b), Epilogue::ReluMaxPool, y, scratch);
}

/// Floats of Wᵀ in panels of NR channels, for the indirect forward.
fn panels_len(op: &Conv2d) -> usize {
    let nr = forward_kernel(op, false).0.nr;
    op.c_out.div_ceil(nr) * nr * op.patch_len()
}

/// The largest window whose flipped weights [`pack_panels`] transposes through a buffer on the
/// stack (7 × 7).
const FLIPPED_WINDOW: usize = 49;

/// Wᵀ in panels of NR channels: weights[(q·K + tap)·NR + lane] = weight of channel q·NR + lane
/// (zero past the last channel). The weight of channel co at a tap is `w[co·K + tap]`
/// (PyTorch's layout), or with `flipped` (`op` being [`full_conv`] of a layer whose weights `w`
/// are), that layer's W[tap's channel, co, kh−1−ky, kw−1−kx]: its data gradient's weights.
///
/// For the channel-blocked kernel the rows are in its order, (block, ky, kx, channel in the
/// block), instead of (channel, ky, kx).
fn pack_panels(op: &Conv2d, w: &[f32], flipped: bool, weights: &mut [f32]) {
    let (ind, blocked) = forward_kernel(op, false);
    let nr = ind.nr;
    let (k, co) = (op.patch_len(), op.c_out);
    let window = op.kernel[0] * op.kernel[1];
    // The panel row of tap (channel c, position pos in the window).
    let row_of = |c: usize, pos: usize| if blocked { ((c / CHANNEL_BLOCK) * window + pos) * CHANNEL_BLOCK + c % CHANNEL_BLOCK } else { c * window + pos };
    weights[..panels_len(op)].par_chunks_mut(k * nr).enumerate().for_each(|(q, panel)| {
        let (c0, lanes) = (q * nr, nr.min(co - q * nr));
        if flipped && window <= FLIPPED_WINDOW {
            // The layer's W[c, c0 .. c0 + lanes] is one run of lanes · window floats: it is
            // transposed at once (8 × 8 blocks in registers) into `rows`, whose row pos holds
            // the window's tap pos of every lane, and each row is then copied to its flipped
            // tap (the layer's channel c is this tap's).
            let mut rows = [0.0f32; FLIPPED_WINDOW * MAX_INDIRECT_NR];
            for c in 0..op.c_in {
                let src = &w[(c * co + c0) * window..][..lanes * window];
                // The run two channels on, 13.8 KB further for AlexNet's 384 -> 256 layer: too
                // far for the hardware's prefetcher (the transpose took 5% of that layer's data
                // gradient waiting for its loads, 2.7% with this).
                #[cfg(target_arch = "x86_64")]
                if let Some(next) = w.get(((c + 2) * co + c0) * window..).filter(|_| c + 2 < op.c_in) {
                    for line in next[..lanes * window].chunks(16) {
                        // SAFETY: SSE is part of x86-64; a prefetch reads nothing the program sees.
                        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
                    }
                }
                crate::ops::transpose::masked_transpose(src, None, lanes, window, window, &mut rows, nr);
                for pos in 0..window {
                    copy_row(&mut panel[row_of(c, pos) * nr..][..nr], &rows[(window - 1 - pos) * nr..][..nr], None);
                }
            }
        } else if flipped {
            // Larger windows, tap by tap.
            for c in 0..op.c_in {
                let src = &w[(c * co + c0) * window..][..lanes * window];
                for pos in 0..window {
                    let row = &mut panel[row_of(c, pos) * nr..][..nr];
                    for (v, lane) in row.iter_mut().zip(src.chunks_exact(window)) {
                        *v = lane[window - 1 - pos];
                    }
                    row[lanes..].fill(0.0);
                }
            }
        } else if !blocked {
            // PyTorch's layout: a panel is the transpose of NR rows of W (zeros past the last).
            crate::ops::transpose::masked_transpose(&w[c0 * k..(c0 + lanes) * k], None, lanes, k, k, panel, nr);
        } else {
            for c in 0..op.c_in {
                for pos in 0..window {
                    let row = &mut panel[row_of(c, pos) * nr..][..nr];
                    for (lane, v) in row[..lanes].iter_mut().enumerate() {
                        *v = w[(c0 + lane) * k + c * window + pos];
                    }
                    row[lanes..].fill(0.0);
                }
            }
        }
    });
}

/// dx = conv_backward_data(dy) (written), dwb += conv_backward_filter(x, dy) (accumulated).
/// With `relu_y`, dy is the gradient of a fused ReLU's output `relu_y`. `packed`: the weights
/// as [`pack`] laid them out from these `wb`, if kept.
#[allow(clippy::too_many_arguments)]
pub fn backward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], packed: Option<&[f32]>, dy: &[f32], relu_y: Option<&[f32]>, dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>, scratch: &mut [f32]) {
    if op.groups > 1 {
        return depthwise::backward(op, n, x, wb, dy, relu_y, dx, dwb, scratch);
    }
    if let Some(dwb) = dwb {
        filter_grad(op, n, x, dy, relu_y, dwb, scratch);
    }
    if let Some(dx) = dx {
        let w = &wb[..op.weight_len()];
        // Winograd's, with its weights kept, for more than one image (as its forward, see
        // `winograd_for`); else only where the tiles are enough to pay for transforming them.
        let u = data_packed(op, packed);
        if uses_winograd_data(op) && if u.is_some() { n > 1 } else { enough_tiles(op, n) } {
            winograd::forward(&full_conv(op), n, dy, relu_y, &flipped_filters_of(op, w), u, None, false, false, dx, scratch, threads());
        } else if uses_full_conv(op) {
            // W flipped and transposed: element (ci, (co, ky, kx)) = W[co, ci, kh−1−ky, kw−1−kx].
            indirect_forward(&full_conv(op), n, dy, relu_y, w, true, None, None, Epilogue::Plain, dx, scratch);
        } else {
            data_grad_col2im(op, n, w, dy, relu_y, dx, scratch);
        }
    }
}

/// Whether [`relu_max_pool_backward`] takes `op`: with no input gradient wanted (a network's
/// first layer), the direct path's shapes with an even output, so that every output pixel lies
/// in one 2 × 2 window; else input channels in whole blocks of 16 (`routed::applies`).
pub fn fuses_relu_max_pool_backward(op: &Conv2d, dx: bool) -> bool {
    fuses_direct_backward(op, dx) || routed::applies(op)
}

/// Whether [`relu_max_pool_backward`] of `op` is the direct path's filter gradient.
fn fuses_direct_backward(op: &Conv2d, dx: bool) -> bool {
    !dx && op.groups == 1 && direct::pools_backward(op)
}

/// The backward of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's output gradient
/// `pool_dy` (see [`fuses_relu_max_pool_backward`]): as `pool2d::cpu::max_backward` (input
/// `relu_y`, output `pool_y`) and then [`backward`] with `relu_y`, without the gradient of the
/// convolution's output ever written whole. dx written, dwb accumulated.
///
/// A network's first layer on the direct path: `filter_grad_relu_max_pool`. Else along the
/// pooling's routes (`routed.rs`): only the windows' maxima carry a gradient, so both
/// gradients are sums over a quarter of the pixels at most.
#[allow(clippy::too_many_arguments)]
pub fn relu_max_pool_backward(op: &Conv2d, n: usize, x: &[f32], wb: &[f32], relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>, scratch: &mut [f32]) {
    assert!(fuses_relu_max_pool_backward(op, dx.is_some()), "no fused backward for {op:?}");
    if fuses_direct_backward(op, dx.is_some()) {
        if let Some(dwb) = dwb {
            filter_grad_relu_max_pool(op, n, x, relu_y, pool_y, pool_dy, dwb, scratch);
        }
        return;
    }
    routed::backward(op, n, x, &wb[..op.weight_len()], relu_y, pool_y, pool_dy, dx, dwb, scratch, threads());
}

/// The filter gradient of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's output gradient:
/// dY is rebuilt image by image from `pool_dy`, `pool_y` and the ReLU's output `relu_y` (the
/// pooling's input) where the filter gradient copies it anyway, instead of being written whole
/// by the pooling's backward and read back (that pass was 7% of Model A's train step).
#[allow(clippy::too_many_arguments)]
fn filter_grad_relu_max_pool(op: &Conv2d, n: usize, x: &[f32], relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], dwb: &mut [f32], scratch: &mut [f32]) {
    assert!(fuses_relu_max_pool_backward(op, false), "no fused backward for {op:?}");
    direct_filter_grad(op, n, x, direct::Dy::Pooled { relu_y, pool_y, pool_dy }, dwb, scratch);
}

/// The direct path's filter gradient: the input padded into the scratch (with the tail its
/// last run reads, zeroed), the rest of the scratch the kernel's.
fn direct_filter_grad(op: &Conv2d, n: usize, x: &[f32], dy: direct::Dy, dwb: &mut [f32], scratch: &mut [f32]) {
    let pad = Padded::of(op);
    let (xp, rest) = scratch.split_at_mut(pad.len(n) + direct::TAIL);
    pad_input(op, n, x, None, xp);
    xp[pad.len(n)..].fill(0.0);
    direct::filter_grad(op, n, xp, pad.hp, pad.wp, dy, dwb, rest, threads());
}

/// The padded input of the indirect kernels: `x` itself when there is no padding and no mask
/// (1 × 1 convolutions, whose "padded" input is a plain copy: copying the whole batch, plane by
/// plane, before every forward and filter gradient took 14% of a MobileNetV2 train step), else
/// [`pad_input`] into `buf`.
fn padded_input<'a>(op: &Conv2d, n: usize, x: &'a [f32], mask: Option<&[f32]>, buf: &'a mut [f32]) -> &'a [f32] {
    if op.padding == [0, 0] && mask.is_none() {
        return &x[..n * op.x_len()];
    }
    pad_input(op, n, x, mask, buf);
    buf
}

/// Copies x (n, c, h, w) into the middle of a zeroed (n, c, hp, wp) buffer, masked by
/// `relu_y > 0` when given.
fn pad_input(op: &Conv2d, n: usize, x: &[f32], relu_y: Option<&[f32]>, xp: &mut [f32]) {
    let pad = Padded::of(op);
    let plane = op.h_in * op.w_in;
    xp.par_chunks_mut(pad.hp * pad.wp).zip(x[..n * op.x_len()].par_chunks(plane)).enumerate().for_each(|(i, (dst, src))| {
        pad_plane(op, src, relu_y.map(|y| &y[i * plane..(i + 1) * plane]), dst);
    });
}

/// One plane of [`pad_input`].
fn pad_plane(op: &Conv2d, src: &[f32], mask: Option<&[f32]>, dst: &mut [f32]) {
    let pad = Padded::of(op);
    let (ph, pw) = (op.padding[0], op.padding[1]);
    dst[..ph * pad.wp].fill(0.0);
    dst[(ph + op.h_in) * pad.wp..].fill(0.0);
    for (r, (d, s)) in dst[ph * pad.wp..(ph + op.h_in) * pad.wp].chunks_exact_mut(pad.wp).zip(src.chunks_exact(op.w_in)).enumerate() {
        // The whole row zeroed, then the data over its middle: both in L1, and cheaper than
        // calls to memset for the two edges of a few floats.
        zero_row(d);
        copy_row(&mut d[pw..pw + op.w_in], s, mask.map(|m| &m[r * op.w_in..]));
    }
}

/// The offset of each tap (ci, ky, kx) from a window's corner in the padded input, padded to a
/// whole number of rows of the kernel with copies of the first (their results are discarded).
pub(super) fn tap_offsets(op: &Conv2d, taps: &mut [u32]) {
    let pad = Padded::of(op);
    let [kh, kw] = op.kernel;
    // In (ci, ky, kx) order, counted rather than divided out of the tap index; the padding of a
    // last partial group repeats tap 0.
    let offsets = (0..op.c_in).flat_map(|ci| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| ((ci * pad.hp + ky * op.dilation[0]) * pad.wp + kx * op.dilation[1]) as u32)));
    let k = op.patch_len().min(taps.len());
    for (off, o) in taps[..k].iter_mut().zip(offsets) {
        *off = o;
    }
    let first = taps.first().copied().unwrap_or(0);
    taps[k..].fill(first);
}

/// [`tap_offsets`] for the channel-blocked layout: one offset per group of 16 taps (a block of
/// channels at one position of the window), in (block, ky, kx) order.
fn blocked_tap_offsets(op: &Conv2d, taps: &mut [u32]) {
    let pad = Padded::of(op);
    let [kh, kw] = op.kernel;
    let groups = (0..op.c_in / CHANNEL_BLOCK).flat_map(|cb| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (((cb * pad.hp + ky * op.dilation[0]) * pad.wp + kx * op.dilation[1]) * CHANNEL_BLOCK) as u32)));
    for (off, o) in taps.iter_mut().zip(groups) {
        *off = o;
    }
}

/// x (n, c, h, w) into a zeroed, padded, channel-blocked buffer (n, c/16, hp, wp, 16), masked by
/// `relu_y > 0` when given: per image and block of 16 channels, 8 × 8 blocks transposed in
/// registers.
pub(super) fn pad_input_blocked(op: &Conv2d, n: usize, x: &[f32], relu_y: Option<&[f32]>, xp: &mut [f32]) {
    let pad = Padded::of(op);
    let (plane, block) = (op.h_in * op.w_in, CHANNEL_BLOCK * pad.hp * pad.wp);
    xp[..n * op.c_in * pad.hp * pad.wp].par_chunks_mut(block).enumerate().for_each(|(i, dst)| {
        let at = i * CHANNEL_BLOCK * plane..(i + 1) * CHANNEL_BLOCK * plane;
        pad_block(op, &x[at.clone()], relu_y.map(|y| &y[at]), dst);
    });
}

/// One block of 16 channels of one image of [`pad_input_blocked`].
fn pad_block(op: &Conv2d, src: &[f32], mask: Option<&[f32]>, dst: &mut [f32]) {
    let pad = Padded::of(op);
    let plane = op.h_in * op.w_in;
    // The borders, row by row: the top and bottom padding rows whole, then the left and
    // right padding of each row in between.
    let row = pad.wp * CHANNEL_BLOCK;
    let (ph, pw) = (op.padding[0], op.padding[1]);
    dst[..ph * row].fill(0.0);
    dst[(ph + op.h_in) * row..].fill(0.0);
    for r in ph..ph + op.h_in {
        dst[r * row..(r * pad.wp + pw) * CHANNEL_BLOCK].fill(0.0);
        dst[(r * pad.wp + pw + op.w_in) * CHANNEL_BLOCK..(r + 1) * row].fill(0.0);
    }
    for y in 0..op.h_in {
        let at = ((y + ph) * pad.wp + pw) * CHANNEL_BLOCK;
        let mask = mask.map(|m| &m[y * op.w_in..]);
        crate::ops::transpose::masked_transpose(&src[y * op.w_in..], mask, CHANNEL_BLOCK, op.w_in, plane, &mut dst[at..at + op.w_in * CHANNEL_BLOCK], CHANNEL_BLOCK);
    }
}

/// Whether a forward of `n` images pads its input into a copy per thread (a [`Window`] of one
/// place holding the whole batch): with fewer images than threads.
fn copies_pay(n: usize) -> bool {
    n < threads()
}

/// The forward's layout of a scratch of `len` floats, and whether it has a padded input per
/// thread: where they pay, if the scratch holds them (it may have been sized for fewer threads),
/// and if the caller is a thread of the pool. (From outside, rayon runs a loop it does not
/// split on the calling thread, which has no copy of its own.)
fn forward_layout_in(op: &Conv2d, n: usize, len: usize) -> (Layout, bool) {
    let copies = copies_pay(n) && rayon::current_thread_index().is_some() && forward_layout(op, n, true).total() <= len;
    (forward_layout(op, n, copies), copies)
}

/// Floats of one thread's copy of the padded input of `n` images: a window of one place of
/// `n` images.
fn copy_len(op: &Conv2d, n: usize) -> usize {
    Window::len(1, n, Padded::of(op).len(1))
}

/// The padded input of a forward's tasks.
pub(super) enum Input<'a> {
    /// Padded once, before the tasks.
    Shared(&'a [f32]),
    /// Padded by each thread into its own [`Window`], by the function given (the first image
    /// of a place, and the place), when a task first needs them.
    PerThread(Window, &'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

impl Input<'_> {
    /// The input of a task of the pool that reads `images` (padded first if this thread has not
    /// yet padded them).
    pub(super) fn get(&self, images: std::ops::Range<usize>) -> &[f32] {
        match self {
            Input::Shared(xp) => xp,
            Input::PerThread(window, pad) => window.mine(images, pad),
        }
    }

    /// Where image `image` of the batch starts in [`Input::get`]'s input, in images.
    pub(super) fn slot(&self, image: usize) -> usize {
        match self {
            Input::Shared(_) => image,
            Input::PerThread(window, _) => window.slot(image),
        }
    }
}

/// Per thread of the pool, `places` places of `group` padded images each in the scratch (image
/// `i` in place `i / group % places`), and which group each place holds. Two uses:
///
/// - **A copy of the whole input per thread** (one place of the whole batch), with fewer images
///   than threads (a forward of one sample), whose tasks split every image between the threads,
///   so that every task reads the whole input. Padded once for all, in a parallel pass before
///   the tasks, each thread read half of it from the other's cache, and had written lines that
///   the other had read in the last call, which that cache had to give up first. That pass took
///   3.5–5.3 µs on two threads against 1.3–1.8 on one (the CIFAR network's second and third
///   layers on a Xeon of family 6 model 167); each thread padding the whole input for itself,
///   in its first task, takes the time of one.
/// - **A window of a thread's last images** (places of one image), for forwards of a batch
///   larger than a task, whose tasks each read one to three images (Model A's second layer: 96
///   rows of its 196 pixels an image). Padded for the whole batch before the tasks, the input
///   went to memory and came back (dY of Model A's second layer at batch 100, padded for its
///   data gradient: 4 MB); a thread's tasks take neighbouring rows, so it pads each image it
///   needs about once, into its L2. That data gradient on the same Xeon, the binaries in turn,
///   medians: 126–127 → 130–131 GFLOP/s on one thread, 237 → 245–246 on two; the layer's
///   forward the same within the noise.
#[derive(Clone, Copy)]
pub(super) struct Window {
    at: SendPtr,
    places: usize,
    group: usize,
    image_len: usize,
}

impl Window {
    /// Floats of one thread's window of `places` places of `group` images of `image_len` floats:
    /// the images, then one line of which group each place holds per 16 places.
    fn len(places: usize, group: usize, image_len: usize) -> usize {
        line(places * group * image_len) + line(places)
    }

    /// The windows in `scratch`, one per thread of the pool, every place marked empty.
    fn new(scratch: &mut [f32], places: usize, group: usize, image_len: usize) -> Window {
        let len = Window::len(places, group, image_len);
        assert!(scratch.len() >= threads() * len, "scratch for {} windows of {len} floats: {}", threads(), scratch.len());
        for window in scratch.chunks_exact_mut(len).take(threads()) {
            as_u32(&mut window[line(places * group * image_len)..]).fill(u32::MAX);
        }
        Window { at: SendPtr(scratch.as_mut_ptr()), places, group, image_len }
    }

    /// Where image `image` is in a window, in images.
    fn slot(&self, image: usize) -> usize {
        (image / self.group % self.places) * self.group + image % self.group
    }

    /// This thread's window, holding the groups of `wanted` (at most `places` of them) padded
    /// by `pad` (which must not call into rayon) where it did not yet.
    fn mine(&self, wanted: std::ops::Range<usize>, pad: &dyn Fn(usize, &mut [f32])) -> &[f32] {
        let t = rayon::current_thread_index().expect("called from the pool (`forward_layout_in`), tasks run on its threads");
        let groups = wanted.start / self.group..wanted.end.div_ceil(self.group);
        assert!(t < threads() && groups.len() <= self.places, "thread {t} of {}, images {wanted:?} in {} places of {}", threads(), self.places, self.group);
        let len = Window::len(self.places, self.group, self.image_len);
        // SAFETY: the scratch holds a window for every thread of the pool (`new`), and only
        // thread t touches window t. Its images are written only here, by `pad`, which cannot
        // let this thread run another task meanwhile; the task that asked reads them after.
        let window = unsafe { std::slice::from_raw_parts_mut(self.at.at(t * len), len) };
        let place_len = self.group * self.image_len;
        let (xp, held) = window.split_at_mut(line(self.places * place_len));
        let held = as_u32(held);
        for group in groups {
            let place = group % self.places;
            if held[place] != group as u32 {
                pad(group * self.group, &mut xp[place * place_len..][..place_len]);
                held[place] = group as u32;
            }
        }
        xp
    }
}

/// The input padded for the forward's kernels (channel-blocked or not, masked by `mask > 0`
/// when given) on the calling thread alone, into `xp`.
fn pad_here(op: &Conv2d, n: usize, x: &[f32], mask: Option<&[f32]>, blocked: bool, xp: &mut [f32]) {
    let pad = Padded::of(op);
    let (unit, plane) = (if blocked { CHANNEL_BLOCK } else { 1 }, op.h_in * op.w_in);
    let (src, dst) = (x[..n * op.x_len()].chunks(unit * plane), xp[..pad.len(n)].chunks_mut(unit * pad.hp * pad.wp));
    for (i, (src, dst)) in src.zip(dst).enumerate() {
        let mask = mask.map(|m| &m[i * unit * plane..(i + 1) * unit * plane]);
        if blocked { pad_block(op, src, mask, dst) } else { pad_plane(op, src, mask, dst) }
    }
}

/// The corner of output pixel j's window in the padded input.
fn pixel_base(op: &Conv2d, pad: Padded, j: usize) -> u32 {
    let p = op.out_pixels();
    let (img, pix) = (j / p, j % p);
    let (oy, ox) = (pix / op.w_out, pix % op.w_out);
    (((img * pad.c) * pad.hp + oy * op.stride[0]) * pad.wp + ox * op.stride[1]) as u32
}

/// Splits the scratch into its parts, the last of them all that is left.
fn split<'a>(scratch: &'a mut [f32], l: &Layout) -> [&'a mut [f32]; 6] {
    let part = |rest: &'a mut [f32], len: usize| {
        let (part, rest) = rest.split_at_mut(line(len));
        (&mut part[..len], rest)
    };
    let (xp, rest) = part(scratch, l.xp);
    let (weights, rest) = part(rest, l.weights);
    let (taps, rest) = part(rest, l.taps);
    let (rows, rest) = part(rest, l.rows);
    let (cols, rest) = part(rest, l.cols);
    [xp, weights, taps, rows, cols, rest]
}

/// Offsets are kept in the f32 scratch as u32 bit patterns: both are 4 bytes.
fn as_u32(v: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u32>(), v.len()) }
}

/// What the forward does with a finished tile, besides adding the bias.
#[derive(Clone, Copy, PartialEq)]
enum Epilogue {
    Plain,
    Relu,
    /// ReLU, then 2 × 2 max pooling of stride 2 (the tile's rows are whole windows).
    ReluMaxPool,
}

/// Y = conv(x ⊙ [x_mask > 0]) with weights `w` (read as [`pack_panels`] reads them, `flipped`
/// for a data gradient's, or already laid out in `packed`), then `+ bias[co]` and the epilogue,
/// into NCHW `y`.
#[allow(clippy::too_many_arguments)]
fn indirect_forward(
    op: &Conv2d,
    n: usize,
    x: &[f32],
    x_mask: Option<&[f32]>,
    w: &[f32],
    flipped: bool,
    packed: Option<&[f32]>,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let (l, copies) = forward_layout_in(op, n, scratch.len());
    let relu = epilogue == Epilogue::Relu;
    let pool = epilogue == Epilogue::ReluMaxPool;
    let (ind, blocked) = forward_kernel(op, pool);
    let (mr, nr) = (ind.mr, ind.nr);
    let (k, co) = (op.patch_len(), op.c_out);
    let co_pad = co.div_ceil(nr) * nr;
    // The pixels of a plane of the output: the convolution's, or the pooled ones (each the
    // window of 4 of the convolution's, computed as 4 consecutive rows).
    let pooled_w = op.w_out / 2;
    let p = if pool { (op.h_out / 2) * pooled_w } else { op.out_pixels() };
    let j_total = if pool { 4 * n * p } else { n * p };
    let [xp, weights, taps, _, _, partial] = split(scratch, &l);
    // The channel-blocked kernel's step is a group of 16 taps, one offset for all of them.
    let unit = if blocked { CHANNEL_BLOCK } else { 1 };
    // The images from `first` on that fill `xp`: the whole batch, or one of a window.
    let pad_images = |first: usize, xp: &mut [f32]| {
        let at = first * op.x_len();
        pad_here(op, (n - first).min(xp.len() / Padded::of(op).len(1)), &x[at..], x_mask.map(|m| &m[at..]), blocked, xp)
    };
    // Tasks of at most `rows_per_task` pixels, in whole tiles; with fewer of them than two a
    // thread (a forward of one), as many as a multiple of the threads, of equal size, and each
    // split over ranges of channel panels too, so that every thread has as much work. (The
    // CIFAR network's second layer, batch 1: three tasks of 96, 96 and 64 pixels, each in two
    // ranges, left one thread 288 pixels and the other 224.)
    let want = 2 * threads();
    let row_tasks = j_total.div_ceil(rows_per_task(op));
    let row_tasks = if row_tasks < want { row_tasks.next_multiple_of(threads()) } else { row_tasks };
    let rows_per_task = j_total.div_ceil(row_tasks).next_multiple_of(mr);
    // A task's rows span at most `window` images: a window of them per thread (see [`Window`])
    // where the threads' windows are at most half the batch, and the scratch's padded input
    // holds them. (AlexNet's batch of 4 on 2 threads, 3 images a window, padded some images
    // twice for no gain: its train step 180 against 182–184 ms, within the noise.)
    let rows_per_image = if pool { 4 * p } else { p }.max(1);
    let window = rows_per_task.saturating_sub(1) / rows_per_image + 2;
    let image_len = Padded::of(op).len(1);
    // A 1 × 1 convolution without padding or mask reads x itself (`padded_input`).
    let reads_x = !blocked && op.padding == [0, 0] && x_mask.is_none();
    let windowed = !copies && !reads_x && 2 * threads() * window <= n && rayon::current_thread_index().is_some() && threads() * Window::len(window, 1, image_len) <= xp.len();
    let xp = if copies && !reads_x {
        Input::PerThread(Window::new(xp, 1, n, image_len), &pad_images)
    } else if windowed {
        Input::PerThread(Window::new(xp, window, 1, image_len), &pad_images)
    } else if blocked {
        pad_input_blocked(op, n, x, x_mask, xp);
        Input::Shared(xp)
    } else {
        Input::Shared(padded_input(op, n, x, x_mask, xp))
    };
    let weights: &[f32] = match packed {
        Some(packed) => &packed[..panels_len(op)],
        None => {
            pack_panels(op, w, flipped, weights);
            weights
        }
    };
    let taps = as_u32(taps);
    if blocked {
        blocked_tap_offsets(op, taps);
    } else {
        tap_offsets(op, taps);
    }
    let taps = &*taps;
    let pad = Padded::of(op);
    let out = SendPtr(y.as_mut_ptr());
    let (part, partial_len) = (SendPtr(partial.as_mut_ptr()), partial.len());
    let (row_tasks, panels) = (j_total.div_ceil(rows_per_task), co_pad / nr);
    let parts = if row_tasks >= want { 1 } else { want.div_ceil(row_tasks).min(panels) };
    let per_part = panels.div_ceil(parts);
    let stash = stash_len(op, co_pad);
    (0..row_tasks * parts).into_par_iter().for_each(|task| {
        // This thread's partial sums. Rayon's halving keeps a thread on neighbouring tasks (one
        // atomic counter handing them out in turn made Model A's step 8% slower). A thread past
        // those the scratch was sized for (a larger pool than at allocation) takes all the taps
        // in one block, needing none: the same sums in the same order.
        let slot = rayon::current_thread_index().filter(|&t| (t + 1) * stash <= partial_len);
        let block = if slot.is_some() { forward_block_of(op, &ind, blocked) } else { k };
        let part = part.at(slot.unwrap_or(0) * stash);
        // Tasks in order of channel range, then rows: rayon's halving gives each thread whole
        // ranges of panels, so that it reads only their weights (a forward of one of the CIFAR
        // network's third layer: 295 KB of them, read whole by both threads when the halves
        // were ranges of rows; 44 → 42.5 µs).
        let (task, share) = (task % row_tasks, task / row_tasks);
        let panels = (share * per_part).min(panels)..((share + 1) * per_part).min(panels);
        let rows0 = task * rows_per_task;
        let rows_here = rows_per_task.min(j_total - rows0);
        let tiles = rows_here.div_ceil(mr);
        // Per tile row: its window corner in xp, and where its pixel starts in y.
        let mut bases = [0u32; MAX_ROWS_PER_TASK + MAX_INDIRECT_MR];
        let mut outs = [0usize; MAX_ROWS_PER_TASK + MAX_INDIRECT_MR];
        let corner = |img: usize, oy: usize, ox: usize| {
            // The same pixel in channel blocks: its 16 channels are 16 floats at 16× the offset
            // within a block of planes.
            let at = (oy * op.stride[0]) * pad.wp + ox * op.stride[1];
            let img = xp.slot(img);
            ((img * pad.c) * pad.hp * pad.wp + at * unit) as u32
        };
        if pool {
            // Four rows per pooled pixel (a task is whole tiles, and a tile of a fused forward
            // is a multiple of 4 rows: whole windows), each writing the pooled pixel's offset.
            for (i, window) in (rows0 / 4..(rows0 + rows_here) / 4).enumerate() {
                let (img, pix) = (window / p, window % p);
                let (py, px) = (pix / pooled_w, pix % pooled_w);
                for d in 0..4 {
                    bases[4 * i + d] = corner(img, 2 * py + d / 2, 2 * px + d % 2);
                    outs[4 * i + d] = img * co * p + pix;
                }
            }
        } else {
            // Pixel by pixel from the task's first, counted rather than divided out of j.
            let (mut img, mut pix) = (rows0 / p, rows0 % p);
            let (mut oy, mut ox) = (pix / op.w_out, pix % op.w_out);
            for r in 0..rows_here {
                bases[r] = corner(img, oy, ox);
                outs[r] = img * co * p + pix;
                (pix, ox) = (pix + 1, ox + 1);
                if ox == op.w_out {
                    (ox, oy) = (0, oy + 1);
                    if pix == p {
                        (img, pix, oy) = (img + 1, 0, 0);
                    }
                }
            }
        }
        // Rows past the task's end repeat its first pixel (their results are not written).
        for r in rows_here..tiles * mr {
            (bases[r], outs[r]) = (bases[0], outs[0]);
        }
        // The finished tile, before the epilogue scatters it (once per task: the kernel writes all
        // of it every time, and zeroing 576 bytes per tile showed as memset in perf).
        let mut local = [0.0f32; MAX_INDIRECT_MR * MAX_INDIRECT_NR];
        // The images of the task's rows (whole windows of four rows when pooled).
        let images = if pool { rows0 / 4 / p..((rows0 + rows_here) / 4 - 1) / p + 1 } else { rows0 / p..(rows0 + rows_here - 1) / p + 1 };
        let xp = xp.get(images);
        for kb in (0..k).step_by(block) {
            let kc = block.min(k - kb);
            let last = kb + kc == k;
            for q in panels.clone() {
                let b = &weights[(q * k + kb) * nr..];
                for t in 0..tiles {
                    let r0 = t * mr;
                    let stash = part.wrapping_add(r0 * co_pad + q * nr);
                    let tile_in = if kb == 0 { std::ptr::null() } else { stash as *const f32 };
                    let (tile_out, ld) = if last { (local.as_mut_ptr(), nr) } else { (stash, co_pad) };
                    // SAFETY: every tap offset plus every window corner lies inside xp (it is
                    // padded); b holds kc·NR floats of this panel; the stash rows belong to this
                    // task alone and are MR × NR inside `partial`.
                    unsafe { (ind.kernel)(kc / unit, xp.as_ptr(), bases[r0..].as_ptr(), taps[kb / unit..].as_ptr(), b.as_ptr(), tile_in, co_pad, tile_out, ld) };
                    if last {
                        let (outs, rows) = (&outs[r0..r0 + mr], rows_here.saturating_sub(r0).min(mr));
                        if pool {
                            scatter_pooled(&local[..mr * nr], nr, outs, rows, q * nr, co, p, bias, out);
                        } else {
                            scatter(&ind, &local, outs, rows, q * nr, co, p, bias, relu, out);
                        }
                    }
                }
            }
        }
    });
}

/// Writes a finished tile whose rows are 2 × 2 windows, four rows each, into the NCHW pooled
/// output: per window and channel, the largest of its four pixels after bias and ReLU (as
/// ReLU then max pooling give it: each pixel rectified first).
#[allow(clippy::too_many_arguments)]
fn scatter_pooled(tile: &[f32], nr: usize, outs: &[usize], rows: usize, c0: usize, co: usize, p: usize, bias: Option<&[f32]>, out: SendPtr) {
    #[cfg(target_arch = "x86_64")]
    if nr % 16 == 0 && p < 1 << 26 && crate::ops::isa::avx512() {
        // SAFETY: AVX-512 is present (checked above); as for this function.
        return unsafe { scatter_pooled_avx512(tile, nr, outs, rows, c0, co, p, bias, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if nr % 8 == 0 && rows <= 8 && crate::ops::isa::avx2() {
        // SAFETY: AVX2 is present (checked above); as for this function.
        return unsafe { scatter_pooled_avx2(tile, nr, outs, rows, c0, co, p, bias, out) };
    }
    let lanes = nr.min(co - c0);
    for (window, rows4) in tile.chunks_exact(4 * nr).take(rows / 4).enumerate() {
        let o = outs[4 * window];
        for lane in 0..lanes {
            let c = c0 + lane;
            let b = bias.map_or(0.0, |b| b[c]);
            let m = (0..4).map(|d| (rows4[d * nr + lane] + b).max(0.0)).fold(0.0f32, f32::max);
            // SAFETY: o is a pooled pixel of the output and c a channel, so the element is
            // inside y; no other task writes this window.
            unsafe { *out.at(o + c * p) = m };
        }
    }
}

/// [`scatter_pooled`] 16 channels at a time: a window's four rows added to the bias, rectified
/// and reduced in registers, then its 16 channels stored by one scatter, `p` floats apart (16
/// scalar stores from a stack copy took twice the instructions: 5% of the CIFAR network's
/// forward of one).
///
/// # Safety
/// AVX-512F; `tile` holds `rows` rows of `nr` floats (a multiple of 16); 16·p < 2³¹; the
/// windows' pooled pixels of channels c0 .. co are this tile's, inside y.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn scatter_pooled_avx512(tile: &[f32], nr: usize, outs: &[usize], rows: usize, c0: usize, co: usize, p: usize, bias: Option<&[f32]>, out: SendPtr) {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    // Lane l's offset from channel c0 + g: l·p (below 2³¹, as the caller promises).
    let apart = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(p as i32));
    for g in (0..nr).step_by(16).take_while(|&g| c0 + g < co) {
        let lanes: __mmask16 = if co - (c0 + g) >= 16 { 0xffff } else { (1 << (co - (c0 + g))) - 1 };
        // SAFETY: the bias has co floats; only the lanes below co - (c0 + g) are read.
        let b = bias.map_or(zero, |b| unsafe { _mm512_maskz_loadu_ps(lanes, b.as_ptr().add(c0 + g)) });
        for window in 0..rows / 4 {
            // SAFETY: rows 4·window .. 4·window + 4 of the tile have nr ≥ g + 16 floats.
            let row = |d: usize| unsafe { _mm512_max_ps(_mm512_add_ps(_mm512_loadu_ps(tile.as_ptr().add((4 * window + d) * nr + g)), b), zero) };
            let m = _mm512_max_ps(_mm512_max_ps(row(0), row(1)), _mm512_max_ps(row(2), row(3)));
            // SAFETY: as the caller promises; only the lanes of channels below co are written.
            unsafe { _mm512_mask_i32scatter_ps::<4>(out.at(outs[4 * window] + (c0 + g) * p).cast(), lanes, apart, m) };
        }
    }
}

/// [`scatter_pooled`] 8 channels at a time: a window's four rows added to the bias, rectified
/// and reduced in registers; then each channel's value (of each window) stored.
///
/// # Safety
/// AVX2; `tile` holds `rows` rows of `nr` floats (a multiple of 8), rows ≤ 8; the windows'
/// pooled pixels of channels c0 .. co are this tile's, inside y.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn scatter_pooled_avx2(tile: &[f32], nr: usize, outs: &[usize], rows: usize, c0: usize, co: usize, p: usize, bias: Option<&[f32]>, out: SendPtr) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    for g in (0..nr).step_by(8).take_while(|&g| c0 + g < co) {
        let lanes = 8.min(co - (c0 + g));
        let mut b = [0.0f32; 8];
        if let Some(bias) = bias {
            b[..lanes].copy_from_slice(&bias[c0 + g..c0 + g + lanes]);
        }
        // SAFETY: b holds 8 floats.
        let b = unsafe { _mm256_loadu_ps(b.as_ptr()) };
        for window in 0..rows / 4 {
            // SAFETY: rows 4·window .. 4·window + 4 of the tile have nr ≥ g + 8 floats.
            let row = |d: usize| unsafe { _mm256_max_ps(_mm256_add_ps(_mm256_loadu_ps(tile.as_ptr().add((4 * window + d) * nr + g)), b), zero) };
            let m = _mm256_max_ps(_mm256_max_ps(row(0), row(1)), _mm256_max_ps(row(2), row(3)));
            let mut v = [0.0f32; 8];
            // SAFETY: v holds 8 floats.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), m) };
            let o = outs[4 * window];
            for (l, &v) in v.iter().enumerate().take(lanes) {
                // SAFETY: as the caller promises.
                unsafe { *out.at(o + (c0 + g + l) * p) = v };
            }
        }
    }
}

/// Writes a finished (pixels × channels) tile into NCHW output through the epilogue.
#[allow(clippy::too_many_arguments)]
fn scatter(ind: &Indirect, tile: &[f32], outs: &[usize], rows: usize, c0: usize, co: usize, p: usize, bias: Option<&[f32]>, relu: bool, out: SendPtr) {
    // A whole tile of consecutive pixels of one image (all but the tiles that cross an image's
    // end): transposed in registers eight rows at a time, each channel's pixels written together.
    #[cfg(target_arch = "x86_64")]
    if rows == ind.mr && ind.nr % 8 == 0 && outs[rows - 1] - outs[0] == rows - 1 && crate::ops::isa::avx2() {
        for r0 in (0..rows).step_by(8) {
            // SAFETY: AVX2 is present (checked above); the tile holds rows × NR floats, and
            // pixels outs[0] .. outs[0] + rows of channels c0 .. co are this tile's, inside y.
            unsafe { scatter_avx2(&tile[r0 * ind.nr..], outs[0] + r0, (rows - r0).min(8), ind.nr, c0, co, p, bias, relu, out) };
        }
        return;
    }
    let lanes = ind.nr.min(co - c0);
    for lane in 0..lanes {
        let c = c0 + lane;
        let b = bias.map_or(0.0, |b| b[c]);
        for (i, &o) in outs.iter().enumerate().take(rows) {
            let mut v = tile[i * ind.nr + lane] + b;
            if relu {
                v = v.max(0.0);
            }
            // SAFETY: pixel i of this tile is a pixel of the output and c a channel, so the
            // element is inside y; no other task writes this pixel.
            unsafe { *out.at(o + c * p) = v };
        }
    }
}

/// [`scatter`] for `rows` ≤ 8 consecutive pixels from `first`: 8 channels at a time, the 8 × 8
/// block (rows past `rows` zero) transposed so that each channel's pixels are one vector, stored
/// whole or in pieces of 4, 2 and 1.
///
/// # Safety
/// AVX2; `tile` holds `rows · nr` floats; `out[first + c·p + 0..rows]` is writable, and written by
/// no other task, for c0 ≤ c < co.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn scatter_avx2(tile: &[f32], first: usize, rows: usize, nr: usize, c0: usize, co: usize, p: usize, bias: Option<&[f32]>, relu: bool, out: SendPtr) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    for g in (0..nr).step_by(8).take_while(|&g| c0 + g < co) {
        let block: [__m256; 8] = std::array::from_fn(|i| {
            // SAFETY: row i < rows of the tile has nr ≥ g + 8 floats.
            if i < rows { unsafe { _mm256_loadu_ps(tile.as_ptr().add(i * nr + g)) } } else { zero }
        });
        for (l, &v) in crate::ops::transpose::transpose8(block).iter().enumerate().take(co - (c0 + g)) {
            let c = c0 + g + l;
            let mut v = _mm256_add_ps(v, _mm256_set1_ps(bias.map_or(0.0, |b| b[c])));
            if relu {
                v = _mm256_max_ps(v, zero);
            }
            // SAFETY: as the caller promises; only the lanes below `rows` are written.
            unsafe {
                if rows == 8 { _mm256_storeu_ps(out.at(first + c * p), v) } else { crate::ops::transpose::store_first(out.at(first + c * p), rows, v) }
            };
        }
    }
}

/// dW += Σ over the batch of (X̂ · dYᵀ)ᵀ and db += Σ dY. Two ways ([`filter_by_channels`]):
/// - the pixels split in one range per thread, each thread padding and transposing its own
///   images a group at a time ([`filter_group`]) into its part of the scratch and summing them
///   into its own partial; the partials summed in a fixed order at the end (so the result does
///   not depend on timing);
/// - or the channel panels split between the threads, each through all the pixels, the input
///   padded and dY transposed for the whole batch first.
fn filter_grad(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dwb: &mut [f32], scratch: &mut [f32]) {
    if direct::applies(op) {
        return direct_filter_grad(op, n, x, direct::Dy::Dense { dy, relu_y }, dwb, scratch);
    }
    if uses_winograd_filter(op) {
        let (dw, db) = dwb.split_at_mut(op.weight_len());
        return winograd::filter_grad(op, n, x, dy, relu_y, dw, op.bias.then_some(db), scratch, threads());
    }
    let by_channels = filter_by_channels(op, n, scratch.len());
    let l = if by_channels { filter_layout_by_channels(op, n) } else { filter_layout_by_pixels(op, n, threads()) };
    let (ind, co_pad, k_pad) = filter_kernel(op);
    let (mr, nr) = (ind.mr, ind.nr);
    let (k, p, co) = (op.patch_len(), op.out_pixels(), op.c_out);
    let (j_total, panels, tiles) = (n * p, co_pad / nr, k_pad / mr);
    let [xp, sums, taps, dyt, cols, partials] = split(scratch, &l);
    let taps = as_u32(taps);
    tap_offsets(op, taps);
    let pad = Padded::of(op);
    let cols = as_u32(cols);
    cols.par_iter_mut().enumerate().for_each(|(j, c)| *c = pixel_base(op, pad, j));
    let taps = &*taps;
    let part_len = line(k_pad * co_pad);
    // Blocks of pixels in whole runs (output rows, for the sliding kernel).
    let block = (filter_block() / ind.run).max(1) * ind.run;
    let (dw, db) = dwb.split_at_mut(op.weight_len());
    // The tiles of dWᵀ rows `chunk` and channel panels `qs` over pixels `js` of `from` (`from.cols`
    // offsets its first pixel), into `part` (rows `ld` apart, the chunk's first tile at its start),
    // overwritten by the first block of pixels if `first`.
    let sweep = |chunk: std::ops::Range<usize>, qs: std::ops::Range<usize>, js: std::ops::Range<usize>, from: &Pixels, part: &mut [f32], ld: usize, first: bool| {
        assert!(qs.len() * nr <= ld && chunk.len() * mr * ld <= part.len(), "filter_grad: tiles past their part");
        for (pb, jb) in js.clone().step_by(block).enumerate() {
            let kc = block.min(js.end - jb);
            for q in qs.clone() {
                let b = &from.dyt[(q * from.len + jb) * nr..][..kc * nr];
                for tile in chunk.clone() {
                    let c = part[(tile - chunk.start) * mr * ld + (q - qs.start) * nr..].as_mut_ptr();
                    let tile_in = if first && pb == 0 { std::ptr::null() } else { c as *const f32 };
                    // SAFETY: as in the forward, every offset sum lies inside xp; b holds kc·NR
                    // floats; the tile is MR × NR inside this thread's part.
                    unsafe { (ind.kernel)(kc, from.xp.as_ptr(), taps[tile * mr..].as_ptr(), from.cols[jb..].as_ptr(), b.as_ptr(), tile_in, ld, c, ld) };
                }
            }
        }
    };
    // Tiles per chunk: the rows of taps are taken in chunks of partial sums of at most
    // FILTER_CHUNK_BYTES, each through all the pixels, so that they stay in L2.
    let per_chunk = |width: usize| (FILTER_CHUNK_BYTES / (mr * width * size_of::<f32>())).clamp(1, tiles);
    if by_channels {
        // Partial sums of more than one chunk (AlexNet's 3 × 3 layers: 2.4–3.5 MB), and panels
        // for every thread: each thread takes a range of panels through all the pixels, so its
        // sums are final, and adds each chunk of them into its own rows of dW while they are
        // in L2. Split by pixels, the threads' partials were summed and then added to dW, all
        // from memory (AlexNet's 384 → 256 filter gradient: 10% of its time in add_transposed).
        let xp = padded_input(op, n, x, None, xp);
        // dYᵀ in panels of NR channels: dyt[(q·J + j)·NR + lane] = dY[img, q·NR + lane, pixel].
        // With a bias, each chunk's column sums too, while it is in L1.
        dyt.par_chunks_mut(nr * p).zip(sums.par_chunks_mut(nr)).enumerate().for_each(|(chunk, (dst, sums))| {
            let (q, img) = (chunk / n, chunk % n);
            transpose_dy(op, dy, relu_y, img, q * nr..((q + 1) * nr).min(co), 0..p, dst, nr);
            if op.bias {
                sums.copy_from_slice(&column_sums(dst, nr)[..nr]);
            }
        });
        let from = Pixels { xp, dyt, len: j_total, cols };
        let t_count = threads().min(partials.len() / part_len).max(1);
        let per = panels.div_ceil(t_count);
        dw.par_chunks_mut(per * nr * k).zip(partials.par_chunks_mut(part_len)).enumerate().for_each(|(t, (dw, part))| {
            let qs = t * per..((t + 1) * per).min(panels);
            let width = qs.len() * nr;
            let per_chunk = per_chunk(width);
            for t0 in (0..tiles).step_by(per_chunk) {
                let chunk = t0..(t0 + per_chunk).min(tiles);
                sweep(chunk.clone(), qs.clone(), 0..j_total, &from, part, width, true);
                // The chunk's taps (those past k are padding) into their columns of dW.
                let rows = (chunk.end * mr).min(k) - t0 * mr;
                crate::ops::transpose::add_transposed(part, rows, dw.len() / k, width, &mut dw[t0 * mr..], k);
            }
        });
        // db: the chunks' sums, image after image (a fixed order, whatever the threads).
        if op.bias {
            for (c, g) in db.iter_mut().enumerate() {
                let (q, lane) = (c / nr, c % nr);
                *g += (0..n).map(|img| sums[(q * n + img) * nr + lane]).sum::<f32>();
            }
        }
        return;
    }
    // Split by pixels: per thread, its partial dWᵀ, its group of images padded, their dYᵀ, and
    // its sums of dY. As many threads as the scratch holds: fewer if it was sized for fewer.
    let (group, slot_len) = (filter_group(op, n), filter_slot_len(op, n));
    let (xp_len, dyt_len) = (filter_group_xp_len(op, group), line(co_pad * group * p));
    let t_count = threads().min(j_total.div_ceil(block)).min(partials.len() / slot_len).max(1);
    let per = j_total.div_ceil(t_count).next_multiple_of(ind.run);
    let cols = &*cols;
    partials[..t_count * slot_len].par_chunks_mut(slot_len).enumerate().for_each(|(t, slot)| {
        let js = (t * per).min(j_total)..((t + 1) * per).min(j_total);
        let (dwt, rest) = slot.split_at_mut(part_len);
        let (xp, rest) = rest.split_at_mut(xp_len);
        let (dyt, sums) = rest.split_at_mut(dyt_len);
        let per_chunk = per_chunk(co_pad);
        sums.fill(0.0);
        // The thread's pixels a group of images at a time: padded and transposed into L2 just
        // before they are swept (for the whole batch first, both went to memory and back: 14%
        // of the CIFAR network's second filter gradient).
        let mut j0 = js.start;
        while j0 < js.end {
            let img0 = j0 / p;
            let img1 = (img0 + group).min((js.end - 1) / p + 1);
            let j1 = js.end.min(img1 * p);
            let len = j1 - j0;
            let images = &x[img0 * op.x_len()..img1 * op.x_len()];
            let xp = padded_input(op, img1 - img0, images, None, xp);
            for q in 0..panels {
                for img in img0..img1 {
                    let pixels = j0.max(img * p) - img * p..j1.min((img + 1) * p) - img * p;
                    let dst = &mut dyt[(q * len + img * p + pixels.start - j0) * nr..][..pixels.len() * nr];
                    transpose_dy(op, dy, relu_y, img, q * nr..((q + 1) * nr).min(co), pixels, dst, nr);
                    if op.bias {
                        sums[q * nr..(q + 1) * nr].iter_mut().zip(column_sums(dst, nr)).for_each(|(s, c)| *s += c);
                    }
                }
            }
            let from = Pixels { xp, dyt, len, cols: &cols[j0 - img0 * p..] };
            for t0 in (0..tiles).step_by(per_chunk) {
                let chunk = t0..(t0 + per_chunk).min(tiles);
                sweep(chunk, 0..panels, 0..len, &from, &mut dwt[t0 * mr * co_pad..], co_pad, j0 == js.start);
            }
            j0 = j1;
        }
        if js.is_empty() {
            dwt[..k_pad * co_pad].fill(0.0);
        }
    });
    // The threads' partials summed into the first, in a fixed order; then dWᵀ added to dW.
    let (first, rest) = partials[..t_count * slot_len].split_at_mut(slot_len);
    for part in rest.chunks_exact(slot_len) {
        first[..part_len].par_chunks_mut(1 << 14).zip(part[..part_len].par_chunks(1 << 14)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
    }
    crate::ops::transpose::add_transposed(&first[..k_pad * co_pad], k, co, co_pad, dw, k);
    // db: the threads' sums in order.
    if op.bias {
        for (c, g) in db.iter_mut().enumerate() {
            *g += (0..t_count).map(|t| partials[(t + 1) * slot_len - co_pad + c]).sum::<f32>();
        }
    }
}

/// What [`filter_grad`]'s kernels read for a range of pixels: the padded input, dYᵀ in
/// panels of `len` pixels, and the pixels' window corners in `xp`.
struct Pixels<'a> {
    xp: &'a [f32],
    dyt: &'a [f32],
    len: usize,
    cols: &'a [u32],
}

/// dYᵀ of image `img`'s `channels` (at most NR) and `pixels` into `dst`, a row of `nr` per
/// pixel (lanes past the channels zeroed), masked by `relu_y > 0` when given.
#[allow(clippy::too_many_arguments)]
fn transpose_dy(op: &Conv2d, dy: &[f32], relu_y: Option<&[f32]>, img: usize, channels: std::ops::Range<usize>, pixels: std::ops::Range<usize>, dst: &mut [f32], nr: usize) {
    let p = op.out_pixels();
    let at = (img * op.c_out + channels.start) * p + pixels.start;
    let end = (img * op.c_out + channels.end - 1) * p + pixels.end;
    let mask = relu_y.map(|y| &y[at..end]);
    crate::ops::transpose::masked_transpose(&dy[at..end], mask, channels.len(), pixels.len(), p, dst, nr);
}

/// Whether [`filter_grad`] splits the channel panels between the threads rather than the
/// pixels: where the partial sums outgrow a chunk (`FILTER_CHUNK_BYTES`), as a partial per
/// thread would go to memory, and there are panels for every thread (two at least, so that
/// a scratch sized for one thread is split by pixels on any number of them, into one partial:
/// the same sums), and the scratch (of `len` floats) holds the whole batch padded and
/// transposed.
fn filter_by_channels(op: &Conv2d, n: usize, len: usize) -> bool {
    let (ind, co_pad, k_pad) = filter_kernel(op);
    let panels = co_pad / ind.nr;
    panels >= threads().max(2) && k_pad * co_pad * size_of::<f32>() > FILTER_CHUNK_BYTES && len >= filter_layout_by_channels(op, n).total()
}

/// The kernel [`filter_grad`] runs `op`'s filter gradient with: `None` where the direct path
/// or Winograd's takes it (for the tests' account of which kernels they reach).
#[cfg(test)]
pub(super) fn filter_grad_kernel(op: &Conv2d) -> Option<Indirect> {
    (!direct::applies(op) && !uses_winograd_filter(op)).then(|| filter_kernel(op).0)
}

/// The filter gradient's kernel, and the output channels and taps rounded up to its whole
/// panels (NR) and tiles (MR).
///
/// With AVX-512, 32 output channels or fewer and rows of 8 to 16 (stride 1), the sliding-window
/// kernel (`select_sliding_filter`): its tile is a window's row of taps, and its k whole output
/// rows.
fn filter_kernel(op: &Conv2d) -> (Indirect, usize, usize) {
    let sliding = (op.stride == [1, 1] && op.dilation == [1, 1]).then(|| select_sliding_filter(op.c_out, op.w_out, op.kernel[1])).flatten();
    let ind = sliding.unwrap_or_else(|| select_indirect_for_channels(op.c_out));
    (ind, op.c_out.div_ceil(ind.nr) * ind.nr, op.patch_len().div_ceil(ind.mr) * ind.mr)
}

/// Images per group of the filter gradient split by pixels: as many as keep a group's padded
/// input and dYᵀ within `FILTER_GROUP_BYTES` (at least one).
fn filter_group(op: &Conv2d, n: usize) -> usize {
    let (_, co_pad, _) = filter_kernel(op);
    let image = Padded::of(op).len(1) + co_pad * op.out_pixels();
    (FILTER_GROUP_BYTES / (image * size_of::<f32>())).clamp(1, n.max(1))
}

/// Scratch floats of the filter gradient: the larger of its two ways' where it may split by
/// channels (the way is chosen by what the scratch holds).
fn filter_scratch_len(op: &Conv2d, n: usize) -> usize {
    if uses_winograd_filter(op) {
        return winograd::filter_scratch_len(op, n, threads());
    }
    let by_pixels = filter_layout_by_pixels(op, n, threads()).total();
    if filter_by_channels(op, n, usize::MAX) { by_pixels.max(filter_layout_by_channels(op, n).total()) } else { by_pixels }
}

/// The scratch of the filter gradient split by channel panels: the whole batch padded and
/// dYᵀ, and each thread's partial sums.
fn filter_layout_by_channels(op: &Conv2d, n: usize) -> Layout {
    let ((_, co_pad, k_pad), j) = (filter_kernel(op), n * op.out_pixels());
    Layout {
        xp: Padded::of(op).len(n),
        weights: n * co_pad,
        taps: k_pad,
        rows: co_pad * j,
        cols: j,
        partials: threads() * line(k_pad * co_pad),
    }
}

/// The scratch of the filter gradient split by pixels on `threads`: a slot per thread
/// ([`filter_slot_len`]) after the offsets.
fn filter_layout_by_pixels(op: &Conv2d, n: usize, threads: usize) -> Layout {
    let (_, _, k_pad) = filter_kernel(op);
    Layout { xp: 0, weights: 0, taps: k_pad, rows: 0, cols: filter_group(op, n) * op.out_pixels(), partials: threads * filter_slot_len(op, n) }
}

/// Floats of one thread's slot of the filter gradient split by pixels: its partial sums, a
/// group of images ([`filter_group`]) padded and their dYᵀ, and its sums of dY (the last
/// `co_pad`). Only the slots depend on the threads, so that a scratch sized for fewer has the
/// same offsets.
fn filter_slot_len(op: &Conv2d, n: usize) -> usize {
    let ((_, co_pad, k_pad), group, p) = (filter_kernel(op), filter_group(op, n), op.out_pixels());
    line(k_pad * co_pad) + filter_group_xp_len(op, group) + line(co_pad * group * p) + co_pad
}

/// Floats of a group of `group` images padded, in a slot of the filter gradient: none where
/// the input is read as it is (no padding: `padded_input`).
fn filter_group_xp_len(op: &Conv2d, group: usize) -> usize {
    if op.padding == [0, 0] { 0 } else { line(group * Padded::of(op).len(1)) }
}

/// The sums of the `nr` columns of a row-major matrix of `nr` columns, its rows added
/// alternately into two sets of sums, so that two additions are in flight per lane instead of
/// one waiting on the other.
fn column_sums(m: &[f32], nr: usize) -> [f32; MAX_INDIRECT_NR] {
    let (mut sums, mut odd) = ([0.0f32; MAX_INDIRECT_NR], [0.0f32; MAX_INDIRECT_NR]);
    let pairs = m.chunks_exact(2 * nr);
    for row in pairs.remainder().chunks_exact(nr) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    for pair in pairs {
        let (a, b) = pair.split_at(nr);
        for ((s, o), (&x, &y)) in sums.iter_mut().zip(odd.iter_mut()).zip(a.iter().zip(b)) {
            *s += x;
            *o += y;
        }
    }
    for (s, o) in sums.iter_mut().zip(odd) {
        *s += o;
    }
    sums
}

/// dX for strided convolutions: per image, dcol = Wᵀ · dY, then col2im scatters it.
fn data_grad_col2im(op: &Conv2d, n: usize, w: &[f32], dy: &[f32], relu_y: Option<&[f32]>, dx: &mut [f32], scratch: &mut [f32]) {
    let chunks = n.min(threads()).max(1);
    let per = n.div_ceil(chunks);
    let (k, p) = (op.patch_len(), op.out_pixels());
    dx[..n * op.x_len()].par_chunks_mut(per * op.x_len()).zip(scratch.par_chunks_mut(k * p + op.y_len())).enumerate().for_each(|(ci, (dx, part))| {
        let (col, dy_img) = part.split_at_mut(k * p);
        for (i, dx) in dx.chunks_exact_mut(op.x_len()).enumerate() {
            let img = ci * per + i;
            let at = img * op.y_len();
            // dY of the convolution from dY of a fused ReLU: zero where its output is not positive.
            copy_row(dy_img, &dy[at..at + op.y_len()], relu_y.map(|y| &y[at..]));
            gemm(k, p, op.c_out, MatRef::transposed(w, k), MatRef::rows(dy_img, p), 0.0, MatMut::rows(col, p), Parallelism::Sequential);
            dx.fill(0.0);
            col2im(op, col, dx);
        }
    });
}

/// The output columns `ox` whose input column `ox·stride + offset − pad` lies inside the image,
/// for a kernel tap at `offset = k·dilation`.
fn valid_range(out: usize, len: usize, stride: usize, pad: usize, offset: usize) -> std::ops::Range<usize> {
    let lo = if pad > offset { (pad - offset).div_ceil(stride) } else { 0 };
    let hi = if len + pad > offset { ((len - 1 + pad - offset) / stride + 1).min(out) } else { 0 };
    lo.min(hi)..hi
}

/// dx[ci][iy][ix] += col[tap][oy·w_out + ox]: the adjoint of im2col, one image.
fn col2im(op: &Conv2d, col: &[f32], dx: &mut [f32]) {
    let [kh, kw] = op.kernel;
    let [sh, sw] = op.stride;
    let p = op.out_pixels();
    let mut rows = col.chunks_exact(p);
    for plane in dx.chunks_exact_mut(op.h_in * op.w_in) {
        for ky in 0..kh {
            let ys = valid_range(op.h_out, op.h_in, sh, op.padding[0], ky * op.dilation[0]);
            for kx in 0..kw {
                let xs = valid_range(op.w_out, op.w_in, sw, op.padding[1], kx * op.dilation[1]);
                let row = rows.next().expect("col has K rows");
                for oy in ys.clone() {
                    let iy = oy * sh + ky * op.dilation[0] - op.padding[0];
                    let dst = &mut plane[iy * op.w_in..(iy + 1) * op.w_in];
                    let src = &row[oy * op.w_out..(oy + 1) * op.w_out];
                    let ix0 = xs.start * sw + kx * op.dilation[1] - op.padding[1];
                    for (i, &v) in src[xs.clone()].iter().enumerate() {
                        dst[ix0 + i * sw] += v;
                    }
                }
            }
        }
    }
}

/// The output as a raw pointer, so that tasks on several threads can write disjoint pixels.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);

// SAFETY: every task writes only its own pixels (see `indirect_forward`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The element `i` places further (a method, so closures capture the whole wrapper).
    pub(super) fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}
