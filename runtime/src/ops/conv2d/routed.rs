//! The backward of Conv2d → ReLU → MaxPool2d(2, 2) from the pooling's output gradient, along
//! the routes the pooling takes. A 2 × 2 window passes its gradient to one pixel, its first
//! maximum, and the ReLU passes it on only where that maximum is positive: at least three
//! quarters of the convolution's output gradient dY are zeros. The dense backward
//! (`cpu::backward`) sums over all of dY; this one goes through the windows that pass a
//! gradient g, each from its one pixel:
//! - filter gradient: dW[co] += g · (the input patch under the pixel), db[co] += g;
//! - data gradient: dX (the patch under the pixel) += g · W[co];
//!
//! both 16 input channels at a time, in the channel-blocked layout of the forward
//! ((n, c/16, hp, wp, 16), `cpu::pad_input_blocked`). Sums of the same products in another
//! order: within rounding of the dense backward's.

use rayon::prelude::*;

use super::Conv2d;
use crate::ops::gemm::kernel::CHANNEL_BLOCK;

/// Input channels per vector: a block of the blocked layout.
const L: usize = CHANNEL_BLOCK;

/// 16 input channels' values at one pixel or tap.
type Lanes = [f32; L];

/// The largest kernel (kh·kw) of this path: its tap offsets are on the stack.
const MAX_TAPS: usize = 64;

/// Whether the backward of `op` → ReLU → MaxPool2d(2, 2) with its input gradient can go this
/// way: input channels in whole blocks of 16 (every lane of a vector used), an output with at
/// least one window.
pub(super) fn applies(op: &Conv2d) -> bool {
    op.groups == 1 && op.c_in % L == 0 && op.kernel[0] * op.kernel[1] <= MAX_TAPS && op.h_out >= 2 && op.w_out >= 2
}

/// The padded input's geometry, and each tap's offset from a window's corner in pixels.
struct Geo {
    /// Pixels of a padded plane.
    plane: usize,
    wp: usize,
    taps: usize,
    off: [usize; MAX_TAPS],
}

impl Geo {
    fn of(op: &Conv2d) -> Self {
        let (hp, wp) = (op.h_in + 2 * op.padding[0], op.w_in + 2 * op.padding[1]);
        let [kh, kw] = op.kernel;
        let mut off = [0; MAX_TAPS];
        for (t, o) in off[..kh * kw].iter_mut().enumerate() {
            *o = (t / kw) * op.dilation[0] * wp + (t % kw) * op.dilation[1];
        }
        Geo { plane: hp * wp, wp, taps: kh * kw, off }
    }
}

/// Floats of scratch [`backward`] needs: the blocked padded input (for the filter gradient),
/// the blocked weights and the filter gradient's sums (each the weights' size), per output
/// plane its routes (two floats a window), how many and the sum of their gradients, and one
/// blocked padded input gradient per thread.
pub(super) fn scratch_len(op: &Conv2d, n: usize, threads: usize) -> usize {
    let padded = op.c_in * Geo::of(op).plane;
    let planes = n * op.c_out;
    n * padded + 2 * op.weight_len() + planes * (2 * windows(op) + 2) + threads * padded
}

/// Windows of an output plane (PyTorch's floor mode leaves an odd last row or column out).
fn windows(op: &Conv2d) -> usize {
    (op.h_out / 2) * (op.w_out / 2)
}

/// A window that passes a gradient: g, and the corner of its pixel's patch in the padded input.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Route {
    g: f32,
    corner: u32,
}

/// Every output plane's routes, in window order: `routes[i·q..][..count[i]]` for plane i (image ·
/// c_out + channel), and `g_sum[i]` the sum of their gradients (for the bias gradient).
struct Routes<'a> {
    q: usize,
    routes: &'a [Route],
    count: &'a [u32],
    g_sum: &'a [f32],
}

impl Routes<'_> {
    fn of(&self, plane: usize) -> &[Route] {
        &self.routes[plane * self.q..][..self.count[plane] as usize]
    }
}

/// Lists the routes of every plane: the pooling's input `relu_y` (the ReLU's output), its output
/// `pool_y` and that output's gradient `pool_dy`.
#[allow(clippy::too_many_arguments)]
fn list_routes(op: &Conv2d, wp: usize, relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], routes: &mut [Route], count: &mut [u32], g_sum: &mut [f32]) {
    let (p, q) = (op.out_pixels(), windows(op));
    let (pw, w) = (op.w_out / 2, op.w_out);
    // A pixel's corner: (oy·s)·wp + ox·s, in u32 (and i32 with AVX-512) for every pixel.
    let corners = PixelCorner { rows: op.stride[0] * wp, cols: op.stride[1] };
    assert!((op.h_out * corners.rows + op.w_out * corners.cols) < 1 << 31, "{op:?}: a plane too large for the routes' corners");
    routes.par_chunks_mut(q).zip(count.par_iter_mut().zip(g_sum.par_iter_mut())).enumerate().for_each(|(i, (list, (count, g_sum)))| {
        let (relu_y, pool_y, pool_dy) = (&relu_y[i * p..][..p], &pool_y[i * q..][..q], &pool_dy[i * q..][..q]);
        let (mut k, mut sum) = (0, 0.0f32);
        for (py, (pool_y, pool_dy)) in pool_y.chunks_exact(pw).zip(pool_dy.chunks_exact(pw)).enumerate() {
            let (top, bottom) = (&relu_y[2 * py * w..][..2 * pw], &relu_y[(2 * py + 1) * w..][..2 * pw]);
            let (kept, row_sum) = row_routes(corners, py, top, bottom, pool_y, pool_dy, &mut list[k..]);
            k += kept;
            sum += row_sum;
        }
        // At most q < 2³¹ windows (asserted above through the corners).
        *count = k as u32;
        *g_sum = sum;
    });
}

/// Where output pixel (oy, ox)'s patch starts in a padded plane: oy · rows + ox · cols.
#[derive(Clone, Copy)]
struct PixelCorner {
    rows: usize,
    cols: usize,
}

/// The routes of one row of windows (pooled row `py`: the ReLU's output rows `top` and `bottom`
/// under it, the pooled row and its gradient) into `list`, in order; returns how many and the
/// sum of their gradients.
///
/// A window's route is its first pixel equal to the maximum (as `pool2d::cpu::max_backward`
/// picks it); a window whose maximum is not positive (a NaN included) passes nothing, as the
/// ReLU's backward masks it.
fn row_routes(corners: PixelCorner, py: usize, top: &[f32], bottom: &[f32], pool_y: &[f32], pool_dy: &[f32], list: &mut [Route]) -> (usize, f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx512() {
        // SAFETY: AVX-512 is present (checked above).
        return unsafe { row_routes_avx512(corners, py, top, bottom, pool_y, pool_dy, list) };
    }
    let (mut k, mut sum) = (0, 0.0f32);
    for (px, (&m, &g)) in pool_y.iter().zip(pool_dy).enumerate() {
        // Every window is written, only those kept counted, and the pixel found by arithmetic:
        // branches on the data would be mispredicted often.
        let [e0, e1, e2] = [top[2 * px] != m, top[2 * px + 1] != m, bottom[2 * px] != m].map(usize::from);
        let d = e0 * (1 + e1 * (1 + e2));
        let (oy, ox) = (2 * py + d / 2, 2 * px + d % 2);
        list[k] = Route { g, corner: (oy * corners.rows + ox * corners.cols) as u32 };
        let keep = m > 0.0;
        k += usize::from(keep);
        sum += if keep { g } else { 0.0 };
    }
    (k, sum)
}

/// [`row_routes`] sixteen windows at a time: their four pixels compared with the maxima in
/// vectors, the kept routes compressed into consecutive lanes and stored as (g, corner) pairs.
/// Model A's second layer, both gradients, one thread: 3.58–3.69 → 3.38–3.54 ms (its rows are
/// of 7 windows, so most lanes idle: perf puts this at 8% of the backward, the scalar loop at
/// 14%); the CIFAR network's second and third layers 2–7% faster.
///
/// # Safety
/// AVX-512F; every corner below 2³¹.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_routes_avx512(corners: PixelCorner, py: usize, top: &[f32], bottom: &[f32], pool_y: &[f32], pool_dy: &[f32], list: &mut [Route]) -> (usize, f32) {
    use std::arch::x86_64::*;
    let pw = pool_y.len();
    assert!(top.len() >= 2 * pw && bottom.len() >= 2 * pw && pool_dy.len() >= pw && list.len() >= pw);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let (even, odd) = (_mm512_add_epi32(lanes, lanes), _mm512_add_epi32(_mm512_add_epi32(lanes, lanes), _mm512_set1_epi32(1)));
    // The first 8 and the last 8 lanes of two vectors, interleaved: (g, corner) pairs.
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
    let (rows, cols) = (_mm512_set1_epi32(corners.rows as i32), _mm512_set1_epi32(corners.cols as i32));
    let (mut k, mut sum) = (0, 0.0f32);
    for px0 in (0..pw).step_by(16) {
        let n = (pw - px0).min(16);
        let valid: __mmask16 = if n == 16 { 0xffff } else { (1 << n) - 1 };
        // The pixels' halves: the first 2·min(n, 8) floats, then the rest.
        let (first, second): (__mmask16, __mmask16) = if n >= 8 { (0xffff, ((1u32 << (2 * (n - 8))) - 1) as u16) } else { (((1u32 << (2 * n)) - 1) as u16, 0) };
        // SAFETY: every load and store is masked to the windows px0 .. px0 + n and their
        // pixels, inside the slices (asserted above).
        unsafe {
            let pair = |row: &[f32]| {
                let (a, b) = (_mm512_maskz_loadu_ps(first, row.as_ptr().add(2 * px0)), _mm512_maskz_loadu_ps(second, row.as_ptr().add(2 * px0 + 16)));
                (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
            };
            let ((t0, t1), (b0, _)) = (pair(top), pair(bottom));
            let m = _mm512_maskz_loadu_ps(valid, pool_y.as_ptr().add(px0));
            let g = _mm512_maskz_loadu_ps(valid, pool_dy.as_ptr().add(px0));
            // d, the first pixel equal to the maximum: 3 unless a lower one is.
            let mut d = _mm512_set1_epi32(3);
            d = _mm512_mask_mov_epi32(d, _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(b0, m), _mm512_set1_epi32(2));
            d = _mm512_mask_mov_epi32(d, _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(t1, m), _mm512_set1_epi32(1));
            d = _mm512_mask_mov_epi32(d, _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(t0, m), _mm512_setzero_si512());
            let oy = _mm512_add_epi32(_mm512_set1_epi32(2 * py as i32), _mm512_srli_epi32::<1>(d));
            let px = _mm512_add_epi32(_mm512_set1_epi32(px0 as i32), lanes);
            let ox = _mm512_add_epi32(_mm512_add_epi32(px, px), _mm512_and_si512(d, _mm512_set1_epi32(1)));
            let corner = _mm512_add_epi32(_mm512_mullo_epi32(oy, rows), _mm512_mullo_epi32(ox, cols));
            let keep = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(valid, m, _mm512_setzero_ps());
            let kept = keep.count_ones() as usize;
            let (gs, cs) = (_mm512_maskz_compress_ps(keep, g), _mm512_castsi512_ps(_mm512_maskz_compress_epi32(keep, corner)));
            let at = list.as_mut_ptr().add(k).cast::<f32>();
            let pairs = |n: usize| -> __mmask16 { if n >= 8 { 0xffff } else { ((1u32 << (2 * n)) - 1) as u16 } };
            _mm512_mask_storeu_ps(at, pairs(kept), _mm512_permutex2var_ps(gs, low, cs));
            _mm512_mask_storeu_ps(at.add(16), pairs(kept.saturating_sub(8)), _mm512_permutex2var_ps(gs, high, cs));
            sum += _mm512_mask_reduce_add_ps(keep, g);
            k += kept;
        }
    }
    (k, sum)
}

/// dx = the data gradient (written) and dwb += the filter gradient of `op` whose output went
/// through ReLU (output `relu_y`) and MaxPool2d(2, 2) (output `pool_y`, gradient `pool_dy`).
/// `x` (n, c_in, h, w) and `w` as in `cpu::backward`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(op: &Conv2d, n: usize, x: &[f32], w: &[f32], relu_y: &[f32], pool_y: &[f32], pool_dy: &[f32], dx: Option<&mut [f32]>, dwb: Option<&mut [f32]>, scratch: &mut [f32], threads: usize) {
    assert!(applies(op), "{op:?}: no routed backward");
    if n == 0 {
        return;
    }
    // Every output pixel's patch lies inside the padded input, so the kernels read and write
    // a route's patch (corner + tap offsets) unchecked.
    let fits = |a: usize| ([op.h_out, op.w_out][a] - 1) * op.stride[a] + op.kernel[a].saturating_sub(1) * op.dilation[a] < [op.h_in, op.w_in][a] + 2 * op.padding[a];
    assert!(fits(0) && fits(1), "{op:?}: an output pixel's window outside the padded input");
    let geo = Geo::of(op);
    let (padded, planes, q) = (op.c_in * geo.plane, n * op.c_out, windows(op));
    let (xp, rest) = scratch.split_at_mut(n * padded);
    let (wt, rest) = rest.split_at_mut(op.weight_len());
    let (sums, rest) = rest.split_at_mut(op.weight_len());
    let (routes, rest) = rest.split_at_mut(2 * planes * q);
    let (count, rest) = rest.split_at_mut(planes);
    let (g_sum, dxp) = rest.split_at_mut(planes);
    // As many images at a time in the data gradient as threads, or as the scratch has planes for
    // (it was sized for the pool's threads when allocated; a larger pool since runs fewer).
    let images_at_once = threads.min(dxp.len() / padded);
    assert!(images_at_once > 0, "{op:?}: scratch too small for the routed backward");
    // SAFETY: a Route is two 4-byte fields, f32 and u32, and any bits are valid for both; so is
    // a u32 for an f32's bits.
    let (routes, count) = unsafe {
        (std::slice::from_raw_parts_mut(routes.as_mut_ptr().cast::<Route>(), planes * q), std::slice::from_raw_parts_mut(count.as_mut_ptr().cast::<u32>(), planes))
    };
    list_routes(op, geo.wp, relu_y, pool_y, pool_dy, routes, count, g_sum);
    let routes = Routes { q, routes, count, g_sum };
    if let Some(dwb) = dwb {
        super::cpu::pad_input_blocked(op, n, x, None, xp);
        filter_grad(op, &geo, n, xp, &routes, dwb, sums, threads);
    }
    if let Some(dx) = dx {
        block_weights(op, geo.taps, w, wt);
        data_grad(op, &geo, n, wt, &routes, dx, &mut dxp[..images_at_once * padded], images_at_once);
    }
}

/// W (c_out, c_in, kh, kw) into blocks: wt[((co·c_in/16 + b)·taps + t)·16 + lane] = W[co, 16·b
/// + lane, t].
fn block_weights(op: &Conv2d, taps: usize, w: &[f32], wt: &mut [f32]) {
    for (src, dst) in w[..op.weight_len()].chunks_exact(L * taps).zip(wt.chunks_exact_mut(L * taps)) {
        crate::ops::transpose::masked_transpose(src, None, L, taps, taps, dst, L);
    }
}

/// dwb += the filter gradient and bias gradient. The output channels are split between the
/// threads; each goes through the batch image by image (its padded input stays in L1), summing
/// into its channels' `sums` (blocked as the weights are), each channel's images in order.
#[allow(clippy::too_many_arguments)]
fn filter_grad(op: &Conv2d, geo: &Geo, n: usize, xp: &[f32], routes: &Routes, dwb: &mut [f32], sums: &mut [f32], threads: usize) {
    let per_co = op.c_in * geo.taps;
    let (dw, db) = dwb.split_at_mut(op.weight_len());
    let per_task = op.c_out.div_ceil(threads);
    let padded = op.c_in * geo.plane;
    dw.par_chunks_mut(per_task * per_co).zip(sums[..op.weight_len()].par_chunks_mut(per_task * per_co)).enumerate().for_each(|(task, (dw, sums))| {
        let co0 = task * per_task;
        sums.fill(0.0);
        for img in 0..n {
            let xp = &xp[img * padded..][..padded];
            for (c, sums) in sums.chunks_exact_mut(per_co).enumerate() {
                accumulate(op, geo, xp, routes.of(img * op.c_out + co0 + c), sums);
            }
        }
        for (dw, sums) in dw.chunks_exact_mut(per_co).zip(sums.chunks_exact(per_co)) {
            // sums[(b·taps + t)·16 + lane] is W[co, 16·b + lane, t]'s.
            for (b, block) in sums.chunks_exact(geo.taps * L).enumerate() {
                for lane in 0..L {
                    let row = &mut dw[(b * L + lane) * geo.taps..][..geo.taps];
                    for (t, v) in row.iter_mut().enumerate() {
                        *v += block[t * L + lane];
                    }
                }
            }
        }
    });
    if op.bias {
        // db[co] += Σ g over the routes, per channel in image order.
        for (co, db) in db.iter_mut().enumerate() {
            *db += (0..n).map(|img| routes.g_sum[img * op.c_out + co]).sum::<f32>();
        }
    }
}

/// One image's routes into a channel's sums: per route and block of 16 input channels, per tap,
/// sums += g · xp (the tap's 16 channels under the route's pixel).
fn accumulate(op: &Conv2d, geo: &Geo, xp: &[f32], routes: &[Route], sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx512() && op.dilation == [1, 1] {
        // SAFETY: AVX-512 is present (checked above); every route's patch lies in xp (see
        // `backward`), and sums holds whole blocks of the kernel's taps.
        match op.kernel {
            [3, 3] => return unsafe { accumulate_fixed::<3, 3>(geo, xp, routes, sums) },
            [5, 5] => return unsafe { accumulate_fixed::<5, 5>(geo, xp, routes, sums) },
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx2() && op.dilation == [1, 1] {
        // SAFETY: AVX2 and FMA are present (checked above); every route's patch lies in xp (see
        // `backward`), and sums holds whole blocks of the kernel's taps.
        match op.kernel[1] {
            3 => return unsafe { accumulate_rows_avx2::<3>(geo, op.kernel[0], xp, routes, sums) },
            5 => return unsafe { accumulate_rows_avx2::<5>(geo, op.kernel[0], xp, routes, sums) },
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx2() {
        // SAFETY: AVX2 and FMA are present (checked above).
        return unsafe { accumulate_avx2(geo, xp, routes, sums) };
    }
    let _ = op;
    accumulate_body::<false>(geo, xp, routes, sums)
}

/// [`accumulate`] with AVX2 for kernels KW wide, of dilation 1: row by row of the kernel, the
/// row's sums (KW vectors of 16, two registers each: 16 registers hold no more) through all the
/// routes.
///
/// # Safety
/// AVX2 and FMA; every route's patch (kh rows) lies inside each block of `xp`; sums holds whole
/// blocks of kh · KW taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_rows_avx2<const KW: usize>(geo: &Geo, kh: usize, xp: &[f32], routes: &[Route], sums: &mut [f32]) {
    use std::arch::x86_64::*;
    let row = geo.wp * L;
    for (b, sums) in sums.chunks_exact_mut(kh * KW * L).enumerate() {
        let x = xp[b * geo.plane * L..].as_ptr();
        for (ky, sums) in sums.chunks_exact_mut(KW * L).enumerate() {
            // SAFETY: sums holds KW vectors of 16; as the caller promises for xp.
            unsafe {
                let mut acc: [[__m256; 2]; KW] = std::array::from_fn(|kx| std::array::from_fn(|h| _mm256_loadu_ps(sums.as_ptr().add(kx * L + 8 * h))));
                for r in routes {
                    let g = _mm256_set1_ps(r.g);
                    let at = x.add(r.corner as usize * L + ky * row);
                    for (kx, acc) in acc.iter_mut().enumerate() {
                        for (h, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm256_fmadd_ps(g, _mm256_loadu_ps(at.add(kx * L + 8 * h)), *acc);
                        }
                    }
                }
                for (kx, acc) in acc.iter().enumerate() {
                    for (h, &acc) in acc.iter().enumerate() {
                        _mm256_storeu_ps(sums.as_mut_ptr().add(kx * L + 8 * h), acc);
                    }
                }
            }
        }
    }
}

/// [`accumulate`] for a KH × KW kernel of dilation 1: a block's sums in KH·KW registers through
/// all the routes (one load and one FMA per tap), its taps KW floats' pixels apart in a row.
///
/// # Safety
/// AVX-512F; every route's patch lies inside each block of `xp`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_fixed<const KH: usize, const KW: usize>(geo: &Geo, xp: &[f32], routes: &[Route], sums: &mut [f32]) {
    use std::arch::x86_64::*;
    let row = geo.wp * L;
    for (b, sums) in sums.chunks_exact_mut(KH * KW * L).enumerate() {
        let x = xp[b * geo.plane * L..].as_ptr();
        // SAFETY: sums holds KH·KW vectors; as the caller promises for xp.
        unsafe {
            let mut acc: [[__m512; KW]; KH] = std::array::from_fn(|ky| std::array::from_fn(|kx| _mm512_loadu_ps(sums.as_ptr().add((ky * KW + kx) * L))));
            for r in routes {
                let g = _mm512_set1_ps(r.g);
                let at = x.add(r.corner as usize * L);
                for (ky, acc) in acc.iter_mut().enumerate() {
                    for (kx, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(g, _mm512_loadu_ps(at.add(ky * row + kx * L)), *acc);
                    }
                }
            }
            for (ky, acc) in acc.iter().enumerate() {
                for (kx, &acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(sums.as_mut_ptr().add((ky * KW + kx) * L), acc);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_avx2(geo: &Geo, xp: &[f32], routes: &[Route], sums: &mut [f32]) {
    accumulate_body::<true>(geo, xp, routes, sums)
}

/// Tap by tap, each tap's sums in registers through the routes: 4 sets, taking the routes in
/// turn, so that an FMA does not wait for the one before.
#[inline(always)]
fn accumulate_body<const FMA: bool>(geo: &Geo, xp: &[f32], routes: &[Route], sums: &mut [f32]) {
    let blocks = sums.len() / (geo.taps * L);
    for b in 0..blocks {
        let x = &xp[b * geo.plane * L..];
        // SAFETY: corner + o is a pixel of the padded plane (see `backward`).
        let at = |r: &Route, o: usize| -> &Lanes { unsafe { &*x.as_ptr().add((r.corner as usize + o) * L).cast() } };
        for (&o, s) in geo.off[..geo.taps].iter().zip(sums[b * geo.taps * L..].chunks_exact_mut(L)) {
            let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; L], [0.0f32; L], [0.0f32; L], [0.0f32; L]);
            let mut quads = routes.chunks_exact(4);
            for q in &mut quads {
                madd_lanes::<FMA>(&mut a0, q[0].g, at(&q[0], o));
                madd_lanes::<FMA>(&mut a1, q[1].g, at(&q[1], o));
                madd_lanes::<FMA>(&mut a2, q[2].g, at(&q[2], o));
                madd_lanes::<FMA>(&mut a3, q[3].g, at(&q[3], o));
            }
            for r in quads.remainder() {
                madd_lanes::<FMA>(&mut a0, r.g, at(r, o));
            }
            let s: &mut Lanes = s.try_into().expect("16 floats");
            *s = std::array::from_fn(|l| s[l] + ((a0[l] + a1[l]) + (a2[l] + a3[l])));
        }
    }
}

/// acc[l] += g·x[l].
#[inline(always)]
fn madd_lanes<const FMA: bool>(acc: &mut Lanes, g: f32, x: &Lanes) {
    for l in 0..L {
        acc[l] = if FMA { g.mul_add(x[l], acc[l]) } else { g * x[l] + acc[l] };
    }
}

/// dx = the data gradient, written: the images split in `tasks` ranges, each image's gradient
/// summed in its task's blocked padded plane of `dxp`, then its middle copied out.
///
/// Channel by channel, each route's patch added, bound by the stores (Model A's second layer,
/// one thread: 1.7 cycles a vector). Tried and left: the routes of all channels ending at one
/// pixel summed in registers first, then added once (7.5 routes a pixel there): no faster, as
/// every route then streamed its channel's weights from L2 (51 KB of them), and slower on the
/// CIFAR network's layers (7.1 → 7.7 ms, 6.1 → 6.8 ms).
#[allow(clippy::too_many_arguments)]
fn data_grad(op: &Conv2d, geo: &Geo, n: usize, wt: &[f32], routes: &Routes, dx: &mut [f32], dxp: &mut [f32], tasks: usize) {
    let padded = op.c_in * geo.plane;
    let per_task = n.div_ceil(tasks);
    dx[..n * op.x_len()].par_chunks_mut(per_task * op.x_len()).zip(dxp.par_chunks_mut(padded)).enumerate().for_each(|(task, (dx, dxp))| {
        for (i, dx) in dx.chunks_exact_mut(op.x_len()).enumerate() {
            let img = task * per_task + i;
            dxp.fill(0.0);
            for (co, w) in wt[..op.weight_len()].chunks_exact(op.c_in * geo.taps).enumerate() {
                spread(op, geo, w, routes.of(img * op.c_out + co), dxp);
            }
            unblock(op, geo, dxp, dx);
        }
    });
}

/// One channel's routes into an image's blocked padded input gradient: per route and block of
/// 16 input channels, per tap, dxp (the tap's 16 channels under the route's pixel) += g · W.
fn spread(op: &Conv2d, geo: &Geo, w: &[f32], routes: &[Route], dxp: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx512() && op.dilation == [1, 1] {
        // SAFETY: AVX-512 is present (checked above); every route's patch lies in dxp (see
        // `backward`), and w holds whole blocks of the kernel's taps.
        match op.kernel {
            [3, 3] => return unsafe { spread_fixed::<3, 3>(geo, w, routes, dxp) },
            [5, 5] => return unsafe { spread_fixed::<5, 5>(geo, w, routes, dxp) },
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx2() && op.dilation == [1, 1] {
        // SAFETY: AVX2 and FMA are present (checked above); every route's patch lies in dxp
        // (see `backward`), and w holds whole blocks of the kernel's taps.
        match op.kernel[1] {
            3 => return unsafe { spread_rows_avx2::<3>(geo, op.kernel[0], w, routes, dxp) },
            5 => return unsafe { spread_rows_avx2::<5>(geo, op.kernel[0], w, routes, dxp) },
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx2() {
        // SAFETY: AVX2 and FMA are present (checked above).
        return unsafe { spread_avx2(geo, w, routes, dxp) };
    }
    let _ = op;
    spread_body::<false>(geo, w, routes, dxp)
}

/// [`spread`] with AVX2 for kernels KW wide, of dilation 1: row by row of the kernel, the row's
/// weights (KW vectors of 16, two registers each) through all the routes.
///
/// # Safety
/// AVX2 and FMA; every route's patch (kh rows) lies inside each block of `dxp`; w holds whole
/// blocks of kh · KW taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn spread_rows_avx2<const KW: usize>(geo: &Geo, kh: usize, w: &[f32], routes: &[Route], dxp: &mut [f32]) {
    use std::arch::x86_64::*;
    let row = geo.wp * L;
    for (b, w) in w.chunks_exact(kh * KW * L).enumerate() {
        let d = dxp[b * geo.plane * L..].as_mut_ptr();
        for (ky, w) in w.chunks_exact(KW * L).enumerate() {
            // SAFETY: w holds KW vectors of 16; as the caller promises for dxp.
            unsafe {
                let wv: [[__m256; 2]; KW] = std::array::from_fn(|kx| std::array::from_fn(|h| _mm256_loadu_ps(w.as_ptr().add(kx * L + 8 * h))));
                for r in routes {
                    let g = _mm256_set1_ps(r.g);
                    let at = d.add(r.corner as usize * L + ky * row);
                    for (kx, wv) in wv.iter().enumerate() {
                        for (h, &wv) in wv.iter().enumerate() {
                            let p = at.add(kx * L + 8 * h);
                            _mm256_storeu_ps(p, _mm256_fmadd_ps(g, wv, _mm256_loadu_ps(p)));
                        }
                    }
                }
            }
        }
    }
}

/// [`spread`] for a KH × KW kernel of dilation 1: a block's weights in KH·KW registers through
/// all the routes.
///
/// # Safety
/// AVX-512F; every route's patch lies inside each block of `dxp`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn spread_fixed<const KH: usize, const KW: usize>(geo: &Geo, w: &[f32], routes: &[Route], dxp: &mut [f32]) {
    use std::arch::x86_64::*;
    let row = geo.wp * L;
    for (b, w) in w.chunks_exact(KH * KW * L).enumerate() {
        let d = dxp[b * geo.plane * L..].as_mut_ptr();
        // SAFETY: w holds KH·KW vectors; as the caller promises for dxp.
        unsafe {
            let wv: [[__m512; KW]; KH] = std::array::from_fn(|ky| std::array::from_fn(|kx| _mm512_loadu_ps(w.as_ptr().add((ky * KW + kx) * L))));
            for r in routes {
                let g = _mm512_set1_ps(r.g);
                let at = d.add(r.corner as usize * L);
                for (ky, wv) in wv.iter().enumerate() {
                    for (kx, &wv) in wv.iter().enumerate() {
                        let p = at.add(ky * row + kx * L);
                        _mm512_storeu_ps(p, _mm512_fmadd_ps(g, wv, _mm512_loadu_ps(p)));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn spread_avx2(geo: &Geo, w: &[f32], routes: &[Route], dxp: &mut [f32]) {
    spread_body::<true>(geo, w, routes, dxp)
}

/// Tap by tap, the tap's weights in a register through the routes: the routes' pixels are in
/// distinct windows, so no two of a tap's updates touch the same floats.
#[inline(always)]
fn spread_body<const FMA: bool>(geo: &Geo, w: &[f32], routes: &[Route], dxp: &mut [f32]) {
    let blocks = w.len() / (geo.taps * L);
    for b in 0..blocks {
        let d = &mut dxp[b * geo.plane * L..];
        for (&o, w) in geo.off[..geo.taps].iter().zip(w[b * geo.taps * L..].chunks_exact(L)) {
            let w: &Lanes = w.try_into().expect("16 floats");
            for r in routes {
                // SAFETY: corner + o is a pixel of the padded plane (see `backward`).
                let d: &mut Lanes = unsafe { &mut *d.as_mut_ptr().add((r.corner as usize + o) * L).cast() };
                madd_lanes::<FMA>(d, r.g, w);
            }
        }
    }
}

/// One image's dx (c_in, h, w) = the middle of its blocked padded gradient.
fn unblock(op: &Conv2d, geo: &Geo, dxp: &[f32], dx: &mut [f32]) {
    let (ph, pw) = (op.padding[0], op.padding[1]);
    let plane = op.h_in * op.w_in;
    for (b, block) in dxp.chunks_exact(geo.plane * L).enumerate() {
        for iy in 0..op.h_in {
            let row = &block[((iy + ph) * geo.wp + pw) * L..][..op.w_in * L];
            for lane in 0..L {
                let out = &mut dx[(b * L + lane) * plane + iy * op.w_in..][..op.w_in];
                for (ix, v) in out.iter_mut().enumerate() {
                    *v = row[ix * L + lane];
                }
            }
        }
    }
}
