//! Convolutions with few taps per output (K = c_in·kh·kw up to 192: the first layer of an
//! MNIST network, K = 25, and the small layers of the course's exercises), directly along
//! output rows.
//!
//! The indirect GEMM (cpu.rs) spends a tile's setup, its transposed scatter into NCHW and its
//! epilogue on only K multiply-adds per output, and its 16- or 24-channel tiles are half empty
//! for 5, 10 or 20 channels; with K = 25 that overhead is most of the time.
//! Here, with stride 1, a run of 8 outputs of one row reads a run of 8 contiguous inputs per
//! tap, so outputs are vectorised along the row: a tile is 4 channels × 2 runs of 8 pixels (8
//! accumulators), and per tap costs 2 loads, 4 broadcasts of a weight and 8 FMAs. The runs of a
//! tile may lie on different rows, so rows of any width fill every tile. Results go straight
//! into the NCHW rows, bias and ReLU applied on the way.
//!
//! A row whose width is not a multiple of 8 ends with a run that overlaps the previous one
//! (28 = 0, 8, 16 and 20): the overlap is computed twice and written twice with equal values.
//! With AVX-512 and rows of at least 16, runs are 16 wide (28 = 0 and 12) and a tile is 4
//! channels × 4 runs (16 accumulators): the CIFAR network's first layer went from about 75 to
//! about 110 GFLOP/s on one core of this Xeon (its share of perf's samples of a one-thread
//! eval forward, batch 128).
//!
//! The filter gradient is the same loop turned around: per image, a tile of 4 channels × 3 taps
//! accumulates dY · x along the output rows in 12 vector sums, whose lanes are added at the end;
//! there dY is copied with rows padded by zeros to whole runs, so runs do not overlap. With
//! AVX-512 and rows of at least 16 those runs are 16 wide too: Model A's first layer, one
//! thread, 60–68 → 80 GFLOP/s (`STATICNET_ISA=avx2` against the default, alternating).

use rayon::prelude::*;

use super::Conv2d;

/// Taps at most, for the direct path. Measured with `cargo bench --bench kernels` on one
/// thread: up to K = 180 (net_seq.features.7) direct was faster, by up to 2× on 10- and
/// 20-channel layers; at K = 288 to 576 (cifar_cnn.conv2 and conv3, model_c.cnn2) equal or
/// slower, where rows of 8 leave a tile one run wide.
const MAX_TAPS: usize = 192;
/// Runs of 8 outputs per row at most.
const MAX_RUNS: usize = 64;
/// Channels per tile.
const CT: usize = 4;

/// Whether the forward of `op` runs here: stride and dilation 1, few taps, rows of at least 8
/// outputs, and a processor with AVX2 and FMA.
pub(super) fn applies(op: &Conv2d) -> bool {
    let shape = op.stride == [1, 1] && op.dilation == [1, 1] && op.patch_len() <= MAX_TAPS && (8..=8 * MAX_RUNS).contains(&op.w_out);
    #[cfg(target_arch = "x86_64")]
    return shape && crate::ops::isa::avx2();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Scratch floats of [`forward`] beyond the padded input: the weights, in groups of `CT`
/// channels.
pub(super) fn weights_len(op: &Conv2d) -> usize {
    op.c_out.div_ceil(CT) * CT * op.patch_len()
}

/// Lays out the weights for [`forward`], `w(co, tap)`, into [`weights_len`] floats of `wt`:
/// wt[(g·K + tap)·CT + c] = w(g·CT + c, tap), so that one group's taps are contiguous.
pub(super) fn pack(op: &Conv2d, w: impl Fn(usize, usize) -> f32, wt: &mut [f32]) {
    let (k, co) = (op.patch_len(), op.c_out);
    for (i, v) in wt[..weights_len(op)].iter_mut().enumerate() {
        let (g, tap, c) = (i / (k * CT), (i / CT) % k, i % CT);
        let ch = g * CT + c;
        *v = if ch < co { w(ch, tap) } else { 0.0 };
    }
}

/// Whether [`forward`] can pool its output too (ReLU, then 2 × 2 max pooling of stride 2): an
/// even number of rows of an even width, so that every tile is whole pairs of rows and every
/// run starts on an even column; with AVX-512, rows of one or two runs of 16 (16 to 32).
pub(super) fn pools(op: &Conv2d) -> bool {
    applies(op) && (!wide(op) || op.w_out <= 32) && op.w_out % 2 == 0 && op.h_out % 2 == 0
}

/// y = conv(xp) + bias, then ReLU when `relu`, where `input` gives the zero-padded input xp
/// (cpu.rs's `pad_input`, once or per thread) of row width `wp` and plane height `hp`, and `wt`
/// the weights laid out by [`pack`].
/// With `pool` (where [`pools`] allows; `relu` too), y is the 2 × 2 max pooling of that, and
/// `relu_y`, when given, the ReLU's output.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(op: &Conv2d, n: usize, input: &super::cpu::Input, hp: usize, wp: usize, wt: &[f32], bias: Option<&[f32]>, relu: bool, pool: bool, y: &mut [f32], relu_y: Option<&mut [f32]>) {
    assert!(!pool || (pools(op) && relu), "direct convolution: no pooling for {op:?}");
    assert!(pool || relu_y.is_none(), "direct convolution: the ReLU's output is y itself without pooling");
    let (k, co) = (op.patch_len(), op.c_out);
    let mut offs = [0u32; MAX_TAPS];
    super::cpu::tap_offsets(op, &mut offs[..k]);
    // With AVX-512, runs of 16 outputs where a row holds one (twice the work per instruction).
    let wide = wide(op);
    let width = if wide { 16 } else { 8 };
    // The runs along a row; the last ends at the row's end.
    let mut starts = [0usize; MAX_RUNS];
    let per_row = op.w_out.div_ceil(width);
    for (r, s) in starts.iter_mut().enumerate().take(per_row) {
        *s = (r * width).min(op.w_out - width);
    }
    let runs = Runs { starts: &starts[..per_row], wp, w_out: op.w_out, count: per_row * op.h_out };
    let (offs, wt) = (&offs[..k], &wt[..weights_len(op)]);
    let (plane_in, plane_out) = (op.c_in * hp * wp, if pool { op.h_out * op.w_out / 4 } else { op.h_out * op.w_out });
    assert!(y.len() >= n * co * plane_out, "direct convolution: y too small");
    let plane_full = op.h_out * op.w_out;
    assert!(relu_y.as_ref().is_none_or(|r| r.len() >= n * co * plane_full), "direct convolution: relu_y too small");
    let keep = relu_y.map(|r| super::cpu::SendPtr(r.as_mut_ptr()));
    // A task per image; with fewer images than two tasks a thread (a forward of one), per image
    // and range of channel groups, so that every thread has work.
    let groups = co.div_ceil(CT);
    let parts = (2 * rayon::current_num_threads()).div_ceil(n).clamp(1, groups);
    let per = groups.div_ceil(parts);
    let out = super::cpu::SendPtr(y.as_mut_ptr());
    (0..n * parts).into_par_iter().for_each(|task| {
        let (img, part) = (task / parts, task % parts);
        let groups = (part * per).min(groups)..((part + 1) * per).min(groups);
        let (xp, slot) = (input.get(img..img + 1), input.slot(img));
        assert!(xp.len() >= (slot + 1) * plane_in, "direct convolution: input too small");
        let (x, y) = (xp[slot * plane_in..].as_ptr(), out.at(img * co * plane_out));
        let keep = keep.map(|k| k.at(img * co * plane_full));
        // SAFETY: applies() checked AVX2 and FMA, wide() AVX-512; every tap offset plus every
        // run (≤ w_out − width + width − 1 + kw − 1 < wp along a row, on rows < h_out + kh − 1 ≤
        // hp) stays inside this image's padded planes, and every run of every channel is inside
        // this image's y and relu_y (asserted sizes); tasks write disjoint channels.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            if wide {
                output_image_avx512(x, offs, &runs, wt, groups, co, bias, relu, pool, y, plane_out, keep)
            } else if pool {
                pooled_image(x, offs, &runs, wt, groups, co, bias, y, plane_out, keep)
            } else {
                output_image(x, offs, &runs, wt, groups, co, bias, relu, y, plane_out)
            }
        };
    });
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86-64");
}

/// Whether the forward takes runs of 16 outputs with AVX-512 (rows of at least 16).
fn wide(op: &Conv2d) -> bool {
    op.w_out >= 16 && crate::ops::isa::avx512()
}

/// The runs of 8 outputs of an image, row after row: run `i` of row `oy` starts at column
/// `starts[i]`.
struct Runs<'a> {
    starts: &'a [usize],
    wp: usize,
    w_out: usize,
    count: usize,
}

impl Runs<'_> {
    /// Where run (oy, i) starts in the padded input (from a window's corner) and in an output
    /// plane.
    #[inline(always)]
    fn at(&self, (oy, i): (usize, usize)) -> (usize, usize) {
        let s = self.starts[i];
        (oy * self.wp + s, oy * self.w_out + s)
    }

    /// The run after (oy, i): a cursor, as a division per run (to find its row) cost more than
    /// the 25 taps of an MNIST first layer take.
    #[inline(always)]
    fn next(&self, (oy, i): (usize, usize)) -> (usize, usize) {
        if i + 1 == self.starts.len() { (oy + 1, 0) } else { (oy, i + 1) }
    }
}

/// Runs per tile: with `CT` channels, 8 accumulators, as many as the FMA units' latency needs,
/// which leaves registers for the inputs and a weight (3 runs spilled an accumulator).
const XT: usize = 2;

/// One image, every channel. Tiles take `XT` consecutive runs whatever their rows, so a row
/// of 14 (two runs) or 28 (four) fills every tile.
///
/// # Safety
/// AVX2 and FMA; `x[off + run's input start + 0..8]` readable for every tap offset and run;
/// `y[c·plane + run's output start + 0..8]` writable for every channel c < co and run.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_image(x: *const f32, offs: &[u32], runs: &Runs, wt: &[f32], groups: std::ops::Range<usize>, co: usize, bias: Option<&[f32]>, relu: bool, y: *mut f32, plane: usize) {
    let k = offs.len();
    for g in groups {
        let w = &wt[g * k * CT..(g + 1) * k * CT];
        let (mut run, mut left) = ((0, 0), runs.count);
        while left > 0 {
            let (x0, y0) = runs.at(run);
            run = runs.next(run);
            // SAFETY: forwarded from the caller.
            unsafe {
                if left >= XT {
                    let (x1, y1) = runs.at(run);
                    run = runs.next(run);
                    tile::<XT>(x, offs, [x0, x1], [y0, y1], w, g, co, bias, relu, y, plane);
                } else {
                    tile::<1>(x, offs, [x0], [y0], w, g, co, bias, relu, y, plane);
                }
            }
            left = left.saturating_sub(XT);
        }
    }
}

/// `CT` channels × `T` runs of 8 outputs, from input offsets `xs` and output offsets `ys`.
///
/// # Safety
/// As for [`output_image`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const T: usize>(x: *const f32, offs: &[u32], xs: [usize; T], ys: [usize; T], w: &[f32], g: usize, co: usize, bias: Option<&[f32]>, relu: bool, y: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    // SAFETY: forwarded from the caller.
    let acc = unsafe { tile_sums::<T>(x, offs, xs, w) };
    let zero = _mm256_setzero_ps();
    for (c, acc) in acc.iter().enumerate() {
        let ch = g * CT + c;
        if ch >= co {
            break;
        }
        let b = _mm256_set1_ps(bias.map_or(0.0, |b| b[ch]));
        for (&a, &s) in acc.iter().zip(&ys) {
            let mut v = _mm256_add_ps(a, b);
            if relu {
                v = _mm256_max_ps(v, zero);
            }
            // SAFETY: as the caller promises.
            unsafe { _mm256_storeu_ps(y.add(ch * plane + s), v) };
        }
    }
}

/// The sums of a tile of `CT` channels × `T` runs of 8 outputs, from input offsets `xs`.
///
/// # Safety
/// As for [`output_image`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_sums<const T: usize>(x: *const f32, offs: &[u32], xs: [usize; T], w: &[f32]) -> [[std::arch::x86_64::__m256; T]; CT] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); T]; CT];
    for (tap, &off) in offs.iter().enumerate() {
        // SAFETY: as the caller promises.
        unsafe {
            let base = x.add(off as usize);
            let xv: [__m256; T] = std::array::from_fn(|i| _mm256_loadu_ps(base.add(xs[i])));
            for (c, acc) in acc.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&w[tap * CT + c]);
                for (a, &v) in acc.iter_mut().zip(&xv) {
                    *a = _mm256_fmadd_ps(v, wv, *a);
                }
            }
        }
    }
    acc
}

/// [`output_image`] pooled (see [`pools`]): a tile is a run and the run under it, a row later,
/// whose sums after bias and ReLU give 4 pooled outputs of each channel: the larger of each pair
/// of rows, then of each pair of neighbours. `y` and `plane` are the pooled output's; `keep`,
/// when given, receives the ReLU's output, in planes of 4 · `plane`.
///
/// # Safety
/// As for [`output_image`], with `pools` true; `keep` holds `co` planes of 4 · `plane` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pooled_image(x: *const f32, offs: &[u32], runs: &Runs, wt: &[f32], groups: std::ops::Range<usize>, co: usize, bias: Option<&[f32]>, y: *mut f32, plane: usize, keep: Option<*mut f32>) {
    use std::arch::x86_64::*;
    let k = offs.len();
    let zero = _mm256_setzero_ps();
    let evens = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    let h = runs.count / runs.starts.len();
    for g in groups {
        let w = &wt[g * k * CT..(g + 1) * k * CT];
        for oy in (0..h).step_by(2) {
            for i in 0..runs.starts.len() {
                let ((x0, y0), (x1, y1)) = (runs.at((oy, i)), runs.at((oy + 1, i)));
                // Where the run's 4 pooled outputs start in a pooled plane.
                let pooled = oy / 2 * (runs.w_out / 2) + runs.starts[i] / 2;
                // SAFETY: forwarded from the caller.
                let acc = unsafe { tile_sums::<2>(x, offs, [x0, x1], w) };
                for (c, acc) in acc.iter().enumerate() {
                    let ch = g * CT + c;
                    if ch >= co {
                        break;
                    }
                    let b = _mm256_set1_ps(bias.map_or(0.0, |b| b[ch]));
                    let (v0, v1) = (_mm256_max_ps(_mm256_add_ps(acc[0], b), zero), _mm256_max_ps(_mm256_add_ps(acc[1], b), zero));
                    // SAFETY: as the caller promises, keep holds this image's unpooled output
                    // and y its pooled output.
                    unsafe {
                        if let Some(keep) = keep {
                            _mm256_storeu_ps(keep.add(ch * 4 * plane + y0), v0);
                            _mm256_storeu_ps(keep.add(ch * 4 * plane + y1), v1);
                        }
                        let m = _mm256_max_ps(v0, v1);
                        let m = _mm256_max_ps(m, _mm256_permute_ps::<0b1011_0001>(m));
                        _mm_storeu_ps(y.add(ch * plane + pooled), _mm256_castps256_ps128(_mm256_permutevar8x32_ps(m, evens)));
                    }
                }
            }
        }
    }
}

/// Runs of 16 per tile of the AVX-512 forward: with `CT` channels, 16 accumulators.
const XT_WIDE: usize = 4;

/// [`output_image`] with AVX-512: runs of 16 outputs, `XT_WIDE` per tile (two rows of 32, or of
/// 28 as runs at 0 and 12). With `pool`, `y` and `plane` are the pooled output's (see [`pools`]:
/// a tile is then whole pairs of rows), and `keep`, when given, receives the unpooled output.
///
/// # Safety
/// AVX-512F and FMA; as for [`output_image`], with runs of 16; `keep` holds `co` planes of
/// 4 · `plane` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_image_avx512(x: *const f32, offs: &[u32], runs: &Runs, wt: &[f32], groups: std::ops::Range<usize>, co: usize, bias: Option<&[f32]>, relu: bool, pool: bool, y: *mut f32, plane: usize, keep: Option<*mut f32>) {
    let pool = pool.then_some((runs, keep));
    let k = offs.len();
    for g in groups {
        let w = &wt[g * k * CT..(g + 1) * k * CT];
        let (mut run, mut left) = ((0, 0), runs.count);
        while left > 0 {
            let t = left.min(XT_WIDE);
            let (mut xs, mut ys) = ([0; XT_WIDE], [0; XT_WIDE]);
            for i in 0..t {
                (xs[i], ys[i]) = runs.at(run);
                run = runs.next(run);
            }
            // SAFETY: forwarded from the caller.
            unsafe {
                match t {
                    4 => tile_avx512::<4>(x, offs, xs, ys, w, g, co, bias, relu, pool, y, plane),
                    3 => tile_avx512::<3>(x, offs, [xs[0], xs[1], xs[2]], [ys[0], ys[1], ys[2]], w, g, co, bias, relu, pool, y, plane),
                    2 => tile_avx512::<2>(x, offs, [xs[0], xs[1]], [ys[0], ys[1]], w, g, co, bias, relu, pool, y, plane),
                    _ => tile_avx512::<1>(x, offs, [xs[0]], [ys[0]], w, g, co, bias, relu, pool, y, plane),
                }
            }
            left -= t;
        }
    }
}

/// `CT` channels × `T` runs of 16 outputs (see [`tile`]).
///
/// # Safety
/// As for [`output_image_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const T: usize>(x: *const f32, offs: &[u32], xs: [usize; T], ys: [usize; T], w: &[f32], g: usize, co: usize, bias: Option<&[f32]>, relu: bool, pool: Option<(&Runs, Option<*mut f32>)>, y: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); T]; CT];
    for (&off, w) in offs.iter().zip(w.chunks_exact(CT)) {
        // SAFETY: as the caller promises.
        unsafe {
            let base = x.add(off as usize);
            let xv: [__m512; T] = std::array::from_fn(|i| _mm512_loadu_ps(base.add(xs[i])));
            for (acc, &w) in acc.iter_mut().zip(w) {
                let wv = _mm512_set1_ps(w);
                for (a, &v) in acc.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(v, wv, *a);
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    // Pooling: the lanes of each pair of neighbours' maximum, in order.
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    // Where a run's pooled outputs start in a pooled plane, once per tile rather than once per
    // channel (its division was a quarter of the first CIFAR layer's epilogue in perf).
    let pooled: [usize; T] = std::array::from_fn(|i| pool.map_or(0, |(runs, _)| (ys[i] / runs.w_out / 2) * (runs.w_out / 2) + ys[i] % runs.w_out / 2));
    for (c, acc) in acc.iter().enumerate() {
        let ch = g * CT + c;
        if ch >= co {
            break;
        }
        let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[ch]));
        let out = |a: __m512| {
            let v = _mm512_add_ps(a, b);
            if relu { _mm512_max_ps(v, zero) } else { v }
        };
        let Some((runs, keep)) = pool else {
            for (&a, &s) in acc.iter().zip(&ys) {
                // SAFETY: as the caller promises.
                unsafe { _mm512_storeu_ps(y.add(ch * plane + s), out(a)) };
            }
            continue;
        };
        // The ReLU's output itself, when kept, in planes of 4 × `plane` (unpooled: every pixel
        // is in one window).
        if let Some(keep) = keep {
            for (&a, &s) in acc.iter().zip(&ys) {
                // SAFETY: as the caller promises, keep holds this image's unpooled output.
                unsafe { _mm512_storeu_ps(keep.add(ch * 4 * plane + s), out(a)) };
            }
        }
        // A run and the one under it (a row later) give 8 pooled outputs: the larger of each
        // pair of rows, then of each pair of neighbours.
        let per_row = runs.starts.len();
        for i in (0..T).filter(|i| (i / per_row) % 2 == 0) {
            let v = _mm512_max_ps(out(acc[i]), out(acc[i + per_row]));
            let v = _mm512_max_ps(v, _mm512_permute_ps::<0b1011_0001>(v));
            let v = _mm512_castps512_ps256(_mm512_permutexvar_ps(evens, v));
            // SAFETY: as the caller promises, for the pooled output of rows oy and oy + 1.
            unsafe { _mm256_storeu_ps(y.add(ch * plane + pooled[i]), v) };
        }
    }
}

/// Whether the filter gradient can take its dY from a 2 × 2 max pooling after the ReLU (see
/// [`Dy::Pooled`]): an even output, every pixel in one window.
pub(super) fn pools_backward(op: &Conv2d) -> bool {
    applies(op) && op.w_out % 2 == 0 && op.h_out % 2 == 0
}

/// Where the filter gradient reads dY, the gradient of the convolution's output.
#[derive(Clone, Copy)]
pub(super) enum Dy<'a> {
    /// dY itself, masked by `relu_y > 0` when a ReLU is fused.
    Dense { dy: &'a [f32], relu_y: Option<&'a [f32]> },
    /// A fused ReLU's output `relu_y`, pooled by MaxPool2d(2, 2) into `pool_y`, and the gradient
    /// of that `pool_dy`: a pixel's dY is its window's gradient where it is the window's first
    /// maximum (PyTorch's choice) and that maximum is positive (else the ReLU stops it), and 0
    /// elsewhere.
    Pooled { relu_y: &'a [f32], pool_y: &'a [f32], pool_dy: &'a [f32] },
}

/// Taps per tile of the filter gradient.
const TT: usize = 3;

/// The filter gradient runs here for the same shapes as the forward.
fn filter_groups(op: &Conv2d) -> (usize, usize) {
    (op.c_out.div_ceil(CT), op.patch_len().div_ceil(TT))
}

/// Scratch floats of [`filter_grad`] beyond the padded input, for `threads` threads: per thread
/// one image's masked dY (channels padded to groups of `CT`), its partial sums, and its db.
pub(super) fn filter_scratch_len(op: &Conv2d, threads: usize) -> usize {
    let (cg, tg) = filter_groups(op);
    threads * (cg * CT * op.h_out * padded_row(op) + cg * tg * CT * TT * lanes(op) + op.c_out)
}

/// Outputs per run of the filter gradient: 16 where the forward's runs are 16 wide (AVX-512),
/// else 8.
fn lanes(op: &Conv2d) -> usize {
    if wide(op) { 16 } else { 8 }
}

/// A row of the filter gradient's dY copy: whole runs, zero past `w_out`.
fn padded_row(op: &Conv2d) -> usize {
    op.w_out.next_multiple_of(lanes(op))
}

/// Floats the padded input needs after its end for the filter gradient: its last row's last
/// run reads up to 15 past the row (multiplied by the zeros of dY's padded row).
pub(super) const TAIL: usize = 16;

/// dW += Σ over the batch of dY ⊗ (the input windows), db += Σ dY, for the shapes of
/// [`applies`]; dY masked by `relu_y > 0` when given. `xp` is the padded input (of row width
/// `wp` and plane height `hp`); `scratch` holds [`filter_scratch_len`] floats. Like the
/// indirect path, each thread sums a fixed range of images and the partials are added in a
/// fixed order, so the result does not depend on timing.
#[allow(clippy::too_many_arguments)]
pub(super) fn filter_grad(op: &Conv2d, n: usize, xp: &[f32], hp: usize, wp: usize, dy: Dy, dwb: &mut [f32], scratch: &mut [f32], threads: usize) {
    let (k, co, p) = (op.patch_len(), op.c_out, op.out_pixels());
    let (cg, tg) = filter_groups(op);
    // Tap offsets in groups of TT, the last group padded with tap 0 (its sums are dropped).
    let mut offs = [0u32; MAX_TAPS.div_ceil(TT) * TT];
    super::cpu::tap_offsets(op, &mut offs[..tg * TT]);
    let (offs, row, lanes) = (&offs[..tg * TT], padded_row(op), lanes(op));
    let runs = row / lanes;
    let tile_len = CT * TT * lanes;
    let t_count = threads.min(n).max(1);
    let per = n.div_ceil(t_count);
    let dy_len = cg * CT * op.h_out * row;
    let part_len = dy_len + cg * tg * tile_len + co;
    let plane_in = op.c_in * hp * wp;
    scratch[..t_count * part_len].par_chunks_mut(part_len).enumerate().for_each(|(t, part)| {
        let (dyi, rest) = part.split_at_mut(dy_len);
        let (acc, db) = rest.split_at_mut(cg * tg * tile_len);
        acc.fill(0.0);
        db.fill(0.0);
        // Zero the padding (row tails, missing channels) once: the copies below never write it.
        dyi.fill(0.0);
        for img in (t * per).min(n)..((t + 1) * per).min(n) {
            let at = img * co * p;
            match dy {
                Dy::Dense { dy, relu_y } => {
                    for (i, (d, src)) in dyi.chunks_exact_mut(row).zip(dy[at..at + co * p].chunks_exact(op.w_out)).enumerate() {
                        crate::ops::transpose::copy_row(d, src, relu_y.map(|y| &y[at + i * op.w_out..]));
                    }
                }
                Dy::Pooled { relu_y, pool_y, pool_dy } => {
                    let (pooled, q) = (img * co * p / 4, p / 4);
                    unpool(op, &relu_y[at..at + co * p], &pool_y[pooled..pooled + co * q], &pool_dy[pooled..pooled + co * q], row, dyi);
                }
            }
            for (c, g) in db.iter_mut().enumerate() {
                *g += lane_sum(&dyi[c * op.h_out * row..(c + 1) * op.h_out * row]);
            }
            let x = &xp[img * plane_in..(img + 1) * plane_in + TAIL];
            for g in 0..cg {
                for (u, offs) in offs.chunks_exact(TT).enumerate() {
                    let acc = &mut acc[(g * tg + u) * tile_len..][..tile_len];
                    let dyg = dyi[g * CT * op.h_out * row..].as_ptr();
                    // SAFETY: applies() checked AVX2 and FMA, wide() AVX-512; every tap offset
                    // plus every row and run stays inside this image's padded planes or, for the
                    // last row, inside the TAIL floats after xp; the dY copy holds CT channels of
                    // padded rows from channel g·CT on.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        if lanes == 16 {
                            accumulate_avx512(x.as_ptr(), wp, offs, dyg, op.h_out, row, runs, acc)
                        } else {
                            accumulate(x.as_ptr(), wp, offs, dyg, op.h_out, row, runs, acc)
                        }
                    };
                }
            }
        }
    });
    let (dw, dbias) = dwb.split_at_mut(op.weight_len());
    for part in scratch[..t_count * part_len].chunks_exact(part_len) {
        let (acc, db) = part[dy_len..].split_at(cg * tg * tile_len);
        for g in 0..cg {
            for u in 0..tg {
                let tile = &acc[(g * tg + u) * tile_len..][..tile_len];
                for (i, lanes) in tile.chunks_exact(lanes).enumerate() {
                    let (ch, tap) = (g * CT + i / TT, u * TT + i % TT);
                    if ch < co && tap < k {
                        dw[ch * k + tap] += lanes.iter().sum::<f32>();
                    }
                }
            }
        }
        if op.bias {
            for (g, &v) in dbias.iter_mut().zip(db) {
                *g += v;
            }
        }
    }
}

/// Σ v in 32 interleaved partial sums, which the compiler keeps in four vector registers (a
/// plain `sum()` must add in order, one latency at a time; one register of 8 sums still waits
/// an addition's latency per 8 floats).
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 32];
    let chunks = v.chunks_exact(32);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `acc[c][t] += Σ over the image's output pixels of dY[c] · x[pixel + offs[t]]`, lane-wise
/// (the 8 lanes are summed at the end), for CT channels and TT taps. The runs of a row do not
/// overlap: past `w_out`, dY's padded row is zero and the x it meets (the next row's) adds 0.
///
/// # Safety
/// AVX2 and FMA; `x[offs[t] + oy·wp + 8·r + 0..8]` readable for every row, run and tap;
/// `dy[(c·h + oy)·row + 8·r + 0..8]` readable for c < CT; `acc` holds CT·TT·8 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate(x: *const f32, wp: usize, offs: &[u32], dy: *const f32, h: usize, row: usize, runs: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    let offs: [usize; TT] = std::array::from_fn(|t| offs[t] as usize);
    // SAFETY: as the caller promises.
    unsafe {
        let mut a: [[__m256; TT]; CT] = std::array::from_fn(|c| std::array::from_fn(|t| _mm256_loadu_ps(acc.as_ptr().add((c * TT + t) * 8))));
        for oy in 0..h {
            let xrow = x.add(oy * wp);
            let drow = dy.add(oy * row);
            for s in (0..runs * 8).step_by(8) {
                let xv: [__m256; TT] = std::array::from_fn(|t| _mm256_loadu_ps(xrow.add(offs[t] + s)));
                for (c, a) in a.iter_mut().enumerate() {
                    let d = _mm256_loadu_ps(drow.add(c * h * row + s));
                    for (a, &v) in a.iter_mut().zip(&xv) {
                        *a = _mm256_fmadd_ps(d, v, *a);
                    }
                }
            }
        }
        for (c, a) in a.iter().enumerate() {
            for (t, &v) in a.iter().enumerate() {
                _mm256_storeu_ps(acc.as_mut_ptr().add((c * TT + t) * 8), v);
            }
        }
    }
}

/// [`accumulate`] with AVX-512: runs of 16, `acc` holding CT·TT·16 floats. Model A's first
/// layer (rows of 28 padded to 32) then takes two runs per row instead of four, in vectors
/// twice as wide.
///
/// # Safety
/// AVX-512F; as [`accumulate`], with 16 floats for 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_avx512(x: *const f32, wp: usize, offs: &[u32], dy: *const f32, h: usize, row: usize, runs: usize, acc: &mut [f32]) {
    use std::arch::x86_64::*;
    let offs: [usize; TT] = std::array::from_fn(|t| offs[t] as usize);
    // SAFETY: as the caller promises.
    unsafe {
        let mut a: [[__m512; TT]; CT] = std::array::from_fn(|c| std::array::from_fn(|t| _mm512_loadu_ps(acc.as_ptr().add((c * TT + t) * 16))));
        for oy in 0..h {
            let xrow = x.add(oy * wp);
            let drow = dy.add(oy * row);
            for s in (0..runs * 16).step_by(16) {
                let xv: [__m512; TT] = std::array::from_fn(|t| _mm512_loadu_ps(xrow.add(offs[t] + s)));
                for (c, a) in a.iter_mut().enumerate() {
                    let d = _mm512_loadu_ps(drow.add(c * h * row + s));
                    for (a, &v) in a.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(d, v, *a);
                    }
                }
            }
        }
        for (c, a) in a.iter().enumerate() {
            for (t, &v) in a.iter().enumerate() {
                _mm512_storeu_ps(acc.as_mut_ptr().add((c * TT + t) * 16), v);
            }
        }
    }
}

/// One image's dY from its pooling (see [`Dy::Pooled`]), into rows of `row` floats of `dyi`
/// (channel after channel, `h_out` rows each; the floats past `w_out` are left as they are).
/// Only where [`pools_backward`] holds.
fn unpool(op: &Conv2d, relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], row: usize, dyi: &mut [f32]) {
    let (h, w) = (op.h_out, op.w_out);
    let (ph, pw) = (h / 2, w / 2);
    assert!(pools_backward(op) && relu_y.len() >= op.c_out * h * w && pool_y.len() >= op.c_out * ph * pw && pool_dy.len() >= op.c_out * ph * pw && dyi.len() >= op.c_out * h * row && row >= w);
    // SAFETY: applies() checked AVX2, wide() AVX-512; the sizes are asserted above.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        if wide(op) {
            unpool_avx512(op.c_out, h, w, relu_y, pool_y, pool_dy, row, dyi)
        } else {
            unpool_avx2(op.c_out, h, w, relu_y, pool_y, pool_dy, row, dyi)
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86-64");
}

/// The pairs of rows [`unpool`] takes, channel after channel: where the top and bottom rows
/// start in the ReLU's output (rows of `w`) and in the dY copy (rows of `row`), and where the
/// pair's windows start in the pooled planes.
fn row_pairs(c_out: usize, h: usize, w: usize, row: usize) -> impl Iterator<Item = ([usize; 2], [usize; 2], usize)> {
    let (ph, pw) = (h / 2, w / 2);
    (0..c_out).flat_map(move |c| (0..ph).map(move |i| ([(c * h + 2 * i) * w, (c * h + 2 * i + 1) * w], [(c * h + 2 * i) * row, (c * h + 2 * i + 1) * row], (c * ph + i) * pw)))
}

/// One window of [`unpool`]: PyTorch's first maximum, the top row then the bottom one, left to
/// right, receives the gradient where it is positive.
#[allow(clippy::too_many_arguments)]
fn unpool_window(relu_y: &[f32], top: usize, bottom: usize, m: f32, g: f32, dyi: &mut [f32], dtop: usize, dbottom: usize) {
    let first = if m > 0.0 { [top, top + 1, bottom, bottom + 1].iter().position(|&k| relu_y[k] == m) } else { None };
    for (d, o) in [dtop, dtop + 1, dbottom, dbottom + 1].into_iter().enumerate() {
        dyi[o] = if first == Some(d) { g } else { 0.0 };
    }
}

/// [`unpool`] four windows (8 pixels of a row pair) at a time, as [`unpool_avx512`] does with
/// vector masks for its bit masks; the last windows of a row one by one.
///
/// # Safety
/// AVX2; the sizes of [`unpool`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn unpool_avx2(c_out: usize, h: usize, w: usize, relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], row: usize, dyi: &mut [f32]) {
    use std::arch::x86_64::*;
    let widen = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    let zero = _mm256_setzero_ps();
    let odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    // Per window pair of lanes: the even lane where it matches, the odd one where it does and
    // the even one does not.
    let first = |m: __m256| _mm256_andnot_ps(_mm256_and_ps(_mm256_permute_ps::<0b1010_0000>(m), odd), m);
    let either = |m: __m256| _mm256_or_ps(m, _mm256_permute_ps::<0b1011_0001>(m));
    let pw = w / 2;
    let whole = pw / 4 * 4;
    for ([top, bottom], [dtop, dbottom], pooled) in row_pairs(c_out, h, w, row) {
        for j in (0..whole).step_by(4) {
            // SAFETY: windows j .. j + 4 are inside the pooled row, pixels 2j .. 2j + 8 inside
            // both rows of relu_y and of dyi (the caller's sizes).
            unsafe {
                let m = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(pool_y.as_ptr().add(pooled + j))), widen);
                let g = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(pool_dy.as_ptr().add(pooled + j))), widen);
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero);
                let t = _mm256_and_ps(positive, _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_loadu_ps(relu_y.as_ptr().add(top + 2 * j)), m));
                let b = _mm256_and_ps(positive, _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_loadu_ps(relu_y.as_ptr().add(bottom + 2 * j)), m));
                let b = _mm256_andnot_ps(either(t), b);
                _mm256_storeu_ps(dyi.as_mut_ptr().add(dtop + 2 * j), _mm256_and_ps(first(t), g));
                _mm256_storeu_ps(dyi.as_mut_ptr().add(dbottom + 2 * j), _mm256_and_ps(first(b), g));
            }
        }
        for j in whole..pw {
            unpool_window(relu_y, top + 2 * j, bottom + 2 * j, pool_y[pooled + j], pool_dy[pooled + j], dyi, dtop + 2 * j, dbottom + 2 * j);
        }
    }
}

/// [`unpool`] eight windows (16 pixels of a row pair) at a time: a pooled value and gradient
/// are widened to both pixels of their window's column, the rows compared with the maximum,
/// and the first match of each window kept by mask arithmetic (the odd lane only where its
/// even neighbour did not match; the bottom row only where the top did not).
///
/// # Safety
/// AVX-512F; the sizes of [`unpool`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn unpool_avx512(c_out: usize, h: usize, w: usize, relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], row: usize, dyi: &mut [f32]) {
    use std::arch::x86_64::*;
    const EVENS: u16 = 0x5555;
    let widen = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let zero = _mm512_setzero_ps();
    // Per window pair of lanes: the even lane where it matches, the odd one where it does and
    // the even one does not.
    let first = |m: u16| (m & EVENS) | (m & !EVENS & !((m & EVENS) << 1));
    let either = |m: u16| {
        let e = (m | (m >> 1)) & EVENS;
        e | (e << 1)
    };
    let pw = w / 2;
    for ([top, bottom], [dtop, dbottom], pooled) in row_pairs(c_out, h, w, row) {
        for j in (0..pw).step_by(8) {
            let windows = (pw - j).min(8);
            let (half, full) = (((1u32 << windows) - 1) as __mmask16, ((1u32 << (2 * windows)) - 1) as __mmask16);
            // SAFETY: window j + windows − 1 is inside the pooled row, pixels 2j .. 2j + 2·windows
            // inside both rows of relu_y and of dyi (the caller's sizes); masked lanes are not read
            // or written.
            unsafe {
                let m = _mm512_permutexvar_ps(widen, _mm512_maskz_loadu_ps(half, pool_y.as_ptr().add(pooled + j)));
                let g = _mm512_permutexvar_ps(widen, _mm512_maskz_loadu_ps(half, pool_dy.as_ptr().add(pooled + j)));
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero);
                let t = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(positive & full, _mm512_maskz_loadu_ps(full, relu_y.as_ptr().add(top + 2 * j)), m);
                let b = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(positive & full & !either(t), _mm512_maskz_loadu_ps(full, relu_y.as_ptr().add(bottom + 2 * j)), m);
                _mm512_mask_storeu_ps(dyi.as_mut_ptr().add(dtop + 2 * j), full, _mm512_maskz_mov_ps(first(t), g));
                _mm512_mask_storeu_ps(dyi.as_mut_ptr().add(dbottom + 2 * j), full, _mm512_maskz_mov_ps(first(b), g));
            }
        }
    }
}
