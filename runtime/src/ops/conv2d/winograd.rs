//! 3 × 3 convolutions of stride 1 by Winograd's minimal filtering F(2 × 2, 3 × 3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), as cuDNN and NNPACK have it:
//! 16 multiplies for a 2 × 2 tile of outputs where the direct way takes 36, so 2.25 times fewer.
//!
//! Per tile of 2 × 2 outputs, its 4 × 4 input patch d and each 3 × 3 filter g are transformed,
//! V = Bᵀ·d·B and U = G·g·Gᵀ (both 4 × 4), the products are summed over input channels element
//! by element, M[ξ] = Σ_ci U[ξ, co, ci]·V[ξ, ci] for each of the 16 positions ξ, and the tile's
//! outputs are Y = Aᵀ·M·A. The sum over channels is 16 GEMMs (c_out × c_in)·(c_in × tiles) on the
//! microkernel of `ops::gemm`, called directly: U is laid out in its A panels once (`pack`), and
//! the input transform writes V straight into B panels, so nothing is packed per block (with
//! k = c_in as short as 32, packing through the GEMM driver cost as much as the transforms).
//! Tiles are taken a block of images at a time, so that a block's V and M stay in L2 between
//! the transforms and the GEMMs; each thread takes whole blocks.
//!
//! The transforms' coefficients are 0, ±1 and ±½: the result differs from the direct sum by
//! rounding only, a few units in the last place of f32 for these sizes (the parity tests hold
//! it to PyTorch's values like every other path).

use std::ops::Range;

use rayon::prelude::*;

use super::Conv2d;
use crate::ops::gemm::kernel::{self, Micro};

/// Positions of a transformed tile (4 × 4).
const XI: usize = 16;

/// Most runs a row of tiles splits into in the B panels (of 16 or 32 tiles): at most
/// `cols / 16 + 2`, so rows of up to 96 tiles (outputs 192 wide; [`applies`] leaves wider ones
/// to the indirect path).
const MAX_RUNS: usize = 8;

/// Whether the forward of `op` runs here: a 3 × 3 kernel of stride and dilation 1 without groups,
/// with enough channels on both sides for the GEMMs' k and rows (the first layer of a network,
/// 3 channels in, is the direct path's).
pub(super) fn applies(op: &Conv2d) -> bool {
    let shape = op.groups == 1 && op.kernel == [3, 3] && op.stride == [1, 1] && op.dilation == [1, 1];
    shape && op.c_in >= 16 && op.c_out >= 16 && op.w_out.div_ceil(2) <= (MAX_RUNS - 2) * 16
}

/// Output channels rounded up to whole A panels of the microkernel.
fn rows_padded(op: &Conv2d, micro: &Micro) -> usize {
    op.c_out.next_multiple_of(micro.mr)
}

/// Floats of the transformed weights U in the microkernel's A panels: per ξ, panels of MR output
/// channels, each c_in steps of MR (rows past c_out zero).
pub(super) fn weights_len(op: &Conv2d) -> usize {
    XI * rows_padded(op, &kernel::select()) * op.c_in
}

/// U[ξ] = G·g·Gᵀ for each filter g = w[co, ci] (3 × 3, PyTorch's layout), at
/// `ξ·rows·c_in + (co / MR)·MR·c_in + ci·MR + co % MR`.
pub(super) fn pack(op: &Conv2d, w: &[f32], u: &mut [f32]) {
    let (co_n, ci_n, mr) = (op.c_out, op.c_in, kernel::select().mr);
    let plane = rows_padded(op, &kernel::select()) * ci_n;
    u[..XI * plane].fill(0.0);
    for co in 0..co_n {
        for ci in 0..ci_n {
            let g = &w[(co * ci_n + ci) * 9..][..9];
            // G·g (4 × 3), G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
            let mut gg = [[0.0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = g0;
                gg[1][c] = 0.5 * (g0 + g1 + g2);
                gg[2][c] = 0.5 * (g0 - g1 + g2);
                gg[3][c] = g2;
            }
            // (G·g)·Gᵀ (4 × 4).
            for (r, row) in gg.iter().enumerate() {
                let [a, b, c] = *row;
                let out = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (j, v) in out.into_iter().enumerate() {
                    u[(r * 4 + j) * plane + (co / mr) * mr * ci_n + ci * mr + co % mr] = v;
                }
            }
        }
    }
}

/// The tiling of one forward: tiles per image (rows × columns of 2 × 2 outputs), images per
/// block, and the floats one worker needs.
struct Tiling {
    rows: usize,
    cols: usize,
    images: usize,
}

impl Tiling {
    fn of(op: &Conv2d) -> Self {
        let (rows, cols) = (op.h_out.div_ceil(2), op.w_out.div_ceil(2));
        // A block's V (16 × c_in × tiles) and M (16 × c_out × tiles) in 384 KB of the 512 KB
        // (Zen 1) to 2 MB (Xeon) L2 a core has.
        let tiles = (96 * 1024 / (XI * (op.c_in + op.c_out))).max(1);
        Tiling { rows, cols, images: (tiles / (rows * cols)).max(1) }
    }

    fn tiles(&self) -> usize {
        self.images * self.rows * self.cols
    }

    /// Tiles of a block rounded up to whole B panels of the microkernel.
    fn tiles_padded(&self, micro: &Micro) -> usize {
        self.tiles().next_multiple_of(micro.nr)
    }

    /// Floats the input transform of one plane works in: its padded rows split into even and
    /// odd columns, and their row transforms (4).
    fn plane_len(&self) -> usize {
        6 * (2 * self.rows + 2) * (self.cols + 1)
    }

    /// A worker's floats: V (in B panels) and M of a block, and the transforms' own.
    fn worker_len(&self, op: &Conv2d) -> usize {
        XI * (op.c_in * self.tiles_padded(&kernel::select()) + op.c_out * self.tiles()) + self.plane_len().max(4 * self.tiles())
    }
}

/// Scratch floats of [`forward`] on `threads` threads: the transformed weights, then a block's
/// worth per thread.
pub(super) fn scratch_len(op: &Conv2d, threads: usize) -> usize {
    weights_len(op) + threads.max(1) * Tiling::of(op).worker_len(op)
}

/// y = conv(x, w) + b, then ReLU when `relu`; with `pool` (and `relu`), max-pooled 2 × 2 too
/// (PyTorch's floor mode: the windows of an odd last row or column are dropped), so that the
/// convolution's own output is never written. `u`: the weights as [`pack`] lays them out, or
/// None to transform them into the scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(op: &Conv2d, n: usize, x: &[f32], w: &[f32], u: Option<&[f32]>, b: Option<&[f32]>, relu: bool, pool: bool, y: &mut [f32], scratch: &mut [f32], threads: usize) {
    let (u_own, scratch) = scratch.split_at_mut(weights_len(op));
    let u = match u {
        Some(u) => u,
        None => {
            pack(op, w, u_own);
            u_own
        }
    };
    let t = Tiling::of(op);
    let plane = if pool { (op.h_out / 2) * (op.w_out / 2) } else { op.out_pixels() };
    let y = &mut y[..n * op.c_out * plane];
    let out = Planes { ptr: y.as_mut_ptr(), len: plane, channels: op.c_out };
    // Blocks of images, and where they are fewer than the threads (a small batch) the output
    // channels split too, in whole A panels: each part transforms the block's input again.
    let blocks = n.div_ceil(t.images);
    let mr = kernel::select().mr;
    let panels = op.c_out.div_ceil(mr);
    let parts = if blocks >= threads { 1 } else { (threads / blocks.max(1)).clamp(1, panels) };
    let tasks = blocks * parts;
    // As many workers as the scratch has room for (sized for the threads there were when it was
    // allocated), each taking its share of the tasks.
    let room = scratch.len() / t.worker_len(op);
    assert!(room > 0, "winograd: a scratch of {} floats holds no worker's {}", scratch.len(), t.worker_len(op));
    let workers = threads.clamp(1, tasks.max(1)).min(room);
    let per = tasks.div_ceil(workers);
    scratch.par_chunks_mut(t.worker_len(op)).take(workers).enumerate().for_each(|(worker, buf)| {
        for task in worker * per..((worker + 1) * per).min(tasks) {
            let (blk, part) = (task / parts, task % parts);
            let b0 = blk * t.images;
            let images = t.images.min(n - b0);
            let channels = (part * panels / parts * mr).min(op.c_out)..((part + 1) * panels / parts * mr).min(op.c_out);
            let x = &x[b0 * op.x_len()..(b0 + images) * op.x_len()];
            #[cfg(target_arch = "x86_64")]
            if crate::ops::isa::avx2() {
                // SAFETY: the processor has AVX2 and FMA.
                unsafe { block_avx2(op, &t, x, images, u, b, relu, pool, &out, b0, channels, buf) };
                continue;
            }
            block(op, &t, x, images, u, b, relu, pool, &out, b0, channels, buf);
        }
    });
}

/// The output planes (image, channel) of `len` floats each, written by the task that computes
/// them: tasks split the images and the channels, so no two write one plane.
struct Planes {
    ptr: *mut f32,
    len: usize,
    channels: usize,
}

// SAFETY: tasks write disjoint planes (see `plane`).
unsafe impl Sync for Planes {}

impl Planes {
    /// # Safety
    /// Only one task takes the plane of (`image`, `channel`), which lies inside the output.
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, image: usize, channel: usize) -> &mut [f32] {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((image * self.channels + channel) * self.len), self.len) }
    }
}

/// [`block`] compiled for AVX2 and FMA: the transforms are loops over floats that the compiler
/// vectorises, 8 lanes wide here instead of SSE's 4.
///
/// # Safety
/// The processor has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_avx2(op: &Conv2d, t: &Tiling, x: &[f32], images: usize, u: &[f32], bias: Option<&[f32]>, relu: bool, pool: bool, y: &Planes, b0: usize, channels: Range<usize>, buf: &mut [f32]) {
    block(op, t, x, images, u, bias, relu, pool, y, b0, channels, buf)
}

/// One block of `images` images from image `b0` on, for output channels `channels` (whole A
/// panels): their inputs transformed into V, the 16 GEMMs into M, and the outputs of M
/// transformed into their planes of `y`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block(op: &Conv2d, t: &Tiling, x: &[f32], images: usize, u: &[f32], bias: Option<&[f32]>, relu: bool, pool: bool, y: &Planes, b0: usize, channels: Range<usize>, buf: &mut [f32]) {
    let micro = kernel::select();
    let (ci_n, co_n, mr, nr) = (op.c_in, op.c_out, micro.mr, micro.nr);
    let tiles = images * t.rows * t.cols;
    let tiles_padded = tiles.next_multiple_of(nr);
    let (v, rest) = buf.split_at_mut(XI * ci_n * tiles_padded);
    let (m, rest) = rest.split_at_mut(XI * co_n * tiles);
    if tiles < tiles_padded {
        // The lanes past the last tile in each ξ's last panel: read by the kernel, never written.
        for panel in v.chunks_exact_mut(nr * ci_n).skip(tiles / nr).step_by(tiles_padded / nr) {
            for lanes in panel.chunks_exact_mut(nr) {
                lanes[tiles % nr..].fill(0.0);
            }
        }
    }
    debug_assert!(nr.is_power_of_two());
    let panels = Panels { nr, ci: ci_n, xi_len: ci_n * tiles_padded };
    for img in 0..images {
        for ci in 0..ci_n {
            let plane = &x[(img * ci_n + ci) * op.h_in * op.w_in..][..op.h_in * op.w_in];
            transform_input(op, t, plane, v, &panels, ci, img * t.rows * t.cols, rest);
        }
    }
    let (rows, a_panel, b_panel) = (rows_padded(op, &micro), mr * ci_n, nr * ci_n);
    for xi in 0..XI {
        let ui = &u[xi * rows * ci_n..][..rows * ci_n];
        let vi = &v[xi * ci_n * tiles_padded..][..ci_n * tiles_padded];
        let mi = &mut m[xi * co_n * tiles..][..co_n * tiles];
        for (jp, b) in vi.chunks_exact(b_panel).enumerate() {
            let j0 = jp * nr;
            for (ip, a) in ui.chunks_exact(a_panel).enumerate().skip(channels.start / mr).take(channels.len().div_ceil(mr)) {
                let i0 = ip * mr;
                let (rows, cols) = (mr.min(co_n - i0), nr.min(tiles - j0));
                let c = &mut mi[i0 * tiles + j0..];
                assert!(c.len() > (rows - 1) * tiles + cols - 1);
                // SAFETY: an A panel of MR·c_in and a B panel of NR·c_in floats, and the rows × cols
                // tile of M at row stride `tiles` inside `c` (asserted).
                unsafe { (micro.kernel)(ci_n, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), tiles, rows, cols, 0.0, std::ptr::null(), false) };
            }
        }
    }
    transform_output(op, t, m, tiles, images, bias, relu, pool, y, b0, channels, rest);
}

/// Where V's elements go: per ξ (`xi_len` floats), B panels of `nr` tiles, each c_in steps of
/// `nr`.
struct Panels {
    nr: usize,
    ci: usize,
    xi_len: usize,
}

impl Panels {
    /// The runs of V[ξ, ci, tile .. tile + count] that are contiguous (within one panel): each
    /// as (its first float, its first tile − `tile`, its length).
    fn runs(&self, xi: usize, ci: usize, tile: usize, count: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut at = tile;
        std::iter::from_fn(move || {
            (at < tile + count).then(|| {
                // NR is a power of two (16 or 32): no division.
                let (panel, lane) = (at >> self.nr.trailing_zeros(), at & (self.nr - 1));
                let len = (self.nr - lane).min(tile + count - at);
                let run = (xi * self.xi_len + panel * self.nr * self.ci + ci * self.nr + lane, at - tile, len);
                at += len;
                run
            })
        })
    }
}

/// V[ξ, ci, at + tile] = (Bᵀ·d·B)[ξ] for every tile of one input plane (channel `ci`), into B
/// panels. Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]].
///
/// The planes are small (8 × 8 to 32 × 32) and a row holds few tiles, so each step is one loop
/// over the whole padded plane, flat, rows `s` = cols + 1 floats apart, which vectorises: its
/// columns split into even and odd (a tile's four columns are then e[tx], o[tx], e[tx + 1],
/// o[tx + 1]), and the row transform d·B of every row; then Bᵀ·(d·B) down the columns from each
/// even row, written into the panels. `tmp`: [`Tiling::plane_len`] floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_input(op: &Conv2d, t: &Tiling, plane: &[f32], v: &mut [f32], panels: &Panels, ci: usize, at: usize, tmp: &mut [f32]) {
    let (ph, pw) = (op.padding[0], op.padding[1]);
    let (cols, s) = (t.cols, t.cols + 1);
    let len = (2 * t.rows + 2) * s;
    let (e, rest) = tmp.split_at_mut(len);
    let (o, rest) = rest.split_at_mut(len);
    let q = &mut rest[..4 * len];
    e.fill(0.0);
    o.fill(0.0);
    // Padded row R = iy + ph, column J = ix + pw: even J to e, odd J to o, at R·s + J / 2.
    for (iy, src) in plane.chunks_exact(op.w_in).take(op.h_in).enumerate() {
        let row = (iy + ph) * s;
        if row + s > len {
            break;
        }
        // x[ix] goes to column (ix + pw) / 2 of e when ix + pw is even, of o when odd.
        let (to_e, to_o) = if pw % 2 == 0 { (&mut *e, &mut *o) } else { (&mut *o, &mut *e) };
        let first = row + pw / 2;
        for (d, &x) in to_e[first..row + s].iter_mut().zip(src.iter().step_by(2)) {
            *d = x;
        }
        let first = row + (pw + 1) / 2;
        for (d, &x) in to_o[first..row + s].iter_mut().zip(src.iter().skip(1).step_by(2)) {
            *d = x;
        }
    }
    // d·B along every row: q[c][f] for the tile whose first column is at f.
    let f_len = len - 1;
    let (q0, rest) = q.split_at_mut(len);
    let (q1, rest) = rest.split_at_mut(len);
    let (q2, q3) = rest.split_at_mut(len);
    let (e0, e1, o0, o1) = (&e[..f_len], &e[1..=f_len], &o[..f_len], &o[1..=f_len]);
    for f in 0..f_len {
        q0[f] = e0[f] - e1[f];
        q1[f] = o0[f] + e1[f];
        q2[f] = e1[f] - o0[f];
        q3[f] = o0[f] - o1[f];
    }
    // Bᵀ·(d·B) down the columns, from the even rows (a row of tiles each), straight into the
    // panels: the runs of a row of tiles are the same for every ξ but for an offset.
    for ty in 0..t.rows {
        let mut runs = [(0usize, 0usize, 0usize); MAX_RUNS];
        let mut count = 0;
        for run in panels.runs(0, ci, at + ty * cols, cols) {
            runs[count] = run;
            count += 1;
        }
        let g = 2 * ty * s;
        for (j, qj) in [&*q0, &*q1, &*q2, &*q3].into_iter().enumerate() {
            let (r0, r1, r2, r3) = (&qj[g..g + cols], &qj[g + s..g + s + cols], &qj[g + 2 * s..g + 2 * s + cols], &qj[g + 3 * s..g + 3 * s + cols]);
            for &(first, tx0, n) in &runs[..count] {
                let (r0, r1, r2, r3) = (&r0[tx0..tx0 + n], &r1[tx0..tx0 + n], &r2[tx0..tx0 + n], &r3[tx0..tx0 + n]);
                for i in 0..4 {
                    let dst = &mut v[first + (4 * i + j) * panels.xi_len..][..n];
                    match i {
                        0 => (0..n).for_each(|x| dst[x] = r0[x] - r2[x]),
                        1 => (0..n).for_each(|x| dst[x] = r1[x] + r2[x]),
                        2 => (0..n).for_each(|x| dst[x] = r2[x] - r1[x]),
                        _ => (0..n).for_each(|x| dst[x] = r1[x] - r3[x]),
                    }
                }
            }
        }
    }
}

/// The outputs of M (ξ, c_out, tiles): Y = Aᵀ·M·A per tile, Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],
/// plus the bias, ReLU and the 2 × 2 max pool as asked, into the NCHW `y` of the block's images.
/// One loop over all the block's tiles per channel (vectors), then their rows are stored.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_output(op: &Conv2d, t: &Tiling, m: &[f32], tiles: usize, images: usize, bias: Option<&[f32]>, relu: bool, pool: bool, y: &Planes, b0: usize, channels: Range<usize>, tmp: &mut [f32]) {
    let (ho, wo, co_n, cols) = (op.h_out, op.w_out, op.c_out, t.cols);
    let (hp, wp) = (ho / 2, wo / 2);
    let (o, _) = tmp.split_at_mut(4 * tiles);
    let (o0, o1) = o.split_at_mut(2 * tiles);
    let (y00, y01) = o0.split_at_mut(tiles);
    let (y10, y11) = o1.split_at_mut(tiles);
    for co in channels {
        let bias = bias.map_or(0.0, |b| b[co]);
        let ms: [&[f32]; XI] = std::array::from_fn(|xi| &m[(xi * co_n + co) * tiles..][..tiles]);
        let mut put = |tile: usize, out: &[&[f32]; 4]| {
            for (dst, src) in [&mut *y00, &mut *y01, &mut *y10, &mut *y11].into_iter().zip(out) {
                dst[tile..tile + src.len()].copy_from_slice(src);
            }
        };
        // Eight tiles at a time as arrays (vectors), then the rest one at a time.
        let mut tile = 0;
        while tile + 8 <= tiles {
            let out = tile_outputs::<8>(&ms, tile, bias, relu);
            put(tile, &[&out[0], &out[1], &out[2], &out[3]]);
            tile += 8;
        }
        for tile in tile..tiles {
            let out = tile_outputs::<1>(&ms, tile, bias, relu);
            put(tile, &[&out[0], &out[1], &out[2], &out[3]]);
        }
        for img in 0..images {
            // SAFETY: this task alone computes channel `co` of these images.
            let plane = unsafe { y.plane(b0 + img, co) };
            for ty in 0..t.rows {
                let first = (img * t.rows + ty) * cols;
                let (a0, a1, b0, b1) = (&y00[first..][..cols], &y01[first..][..cols], &y10[first..][..cols], &y11[first..][..cols]);
                if pool {
                    if ty < hp {
                        let dst = &mut plane[ty * wp..][..wp];
                        for (px, d) in dst.iter_mut().enumerate() {
                            *d = a0[px].max(a1[px]).max(b0[px].max(b1[px]));
                        }
                    }
                    continue;
                }
                for (i, (a, b)) in [(a0, a1), (b0, b1)].into_iter().enumerate() {
                    let oy = 2 * ty + i;
                    if oy >= ho {
                        break;
                    }
                    let dst = &mut plane[oy * wo..][..wo];
                    for (pair, (&a, &b)) in dst.chunks_mut(2).zip(a.iter().zip(b)) {
                        pair[0] = a;
                        if let Some(d) = pair.get_mut(1) {
                            *d = b;
                        }
                    }
                }
            }
        }
    }
}

/// Y = Aᵀ·M·A (+ bias, ReLU) of the `L` tiles from `tile` on: the four outputs of each tile,
/// (0, 0), (0, 1), (1, 0), (1, 1), as arrays over the tiles.
#[inline(always)]
fn tile_outputs<const L: usize>(ms: &[&[f32]; XI], tile: usize, bias: f32, relu: bool) -> [[f32; L]; 4] {
    let mut m = [[0.0f32; L]; XI];
    for (m, src) in m.iter_mut().zip(ms) {
        m.copy_from_slice(&src[tile..tile + L]);
    }
    let mut out = [[0.0f32; L]; 4];
    for l in 0..L {
        // M·A along each row r of the tile: (m0 + m1 + m2, m1 − m2 − m3); then Aᵀ· down.
        let row = |r: usize| (m[4 * r][l] + m[4 * r + 1][l] + m[4 * r + 2][l], m[4 * r + 1][l] - m[4 * r + 2][l] - m[4 * r + 3][l]);
        let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3));
        let y = [s0.0 + s1.0 + s2.0, s0.1 + s1.1 + s2.1, s1.0 - s2.0 - s3.0, s1.1 - s2.1 - s3.1];
        for (o, y) in out.iter_mut().zip(y) {
            o[l] = if relu { (y + bias).max(0.0) } else { y + bias };
        }
    }
    out
}
