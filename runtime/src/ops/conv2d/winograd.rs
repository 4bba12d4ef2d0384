//! 3 × 3 and 5 × 5 convolutions of stride 1 by Winograd's minimal filtering F(2 × 2, r × r)
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), as cuDNN and
//! NNPACK have it: a 2 × 2 tile of outputs takes (r + 1)² multiplies where the direct way takes
//! 4r², 2.25 times fewer for 3 × 3 (16 against 36) and 2.8 times for 5 × 5 (36 against 100).
//!
//! Per tile of 2 × 2 outputs, its N × N input patch d (N = r + 1) and each r × r filter g are
//! transformed, V = Bᵀ·d·B and U = G·g·Gᵀ (both N × N), the products are summed over input
//! channels element by element, M[ξ] = Σ_ci U[ξ, co, ci]·V[ξ, ci] for each of the N² positions
//! ξ, and the tile's outputs are Y = Aᵀ·M·A. The sum over channels is N² GEMMs
//! (c_out × c_in)·(c_in × tiles) on the microkernel of `ops::gemm`, called directly: U is laid
//! out in its A panels once (`pack`), and the input transform writes V straight into B panels,
//! so nothing is packed per block (with k = c_in as short as 16, packing through the GEMM
//! driver cost as much as the transforms). Tiles are taken a block of images at a time, so that
//! a block's V and M stay in L2 between the transforms and the GEMMs; each thread takes whole
//! blocks.
//!
//! The same forward computes a data gradient of stride 1: the convolution of dY (masked by a
//! fused ReLU) with the filters flipped and transposed (`cpu::backward`).
//!
//! F(2, 3)'s coefficients are 0, ±1 and ±½, F(2, 5)'s up to 5 and down to 1/24 (its points are
//! 0, ±1, ±2 and ∞): the result differs from the direct sum by rounding only, more of it for
//! 5 × 5 (the unit tests hold both to 1e-5 of the sum in f64, and the parity tests to
//! PyTorch's values like every other path).

use std::array::from_fn;
use std::ops::{Add, Mul, Range, Sub};

use rayon::prelude::*;

use super::Conv2d;
use crate::ops::gemm::kernel::{self, Micro};

/// Outputs a row at most (96 tiles): wider planes are left to the indirect path, whose scratch
/// does not grow with the plane.
const MAX_WIDTH: usize = 192;

/// Whether `op` runs here: a 3 × 3 or 5 × 5 kernel of stride and dilation 1 without groups, with
/// enough channels on both sides for the GEMMs' k and rows (the first layer of a network, 1 or 3
/// channels in, is the direct path's): 16, or 32 with AVX-512. There the channel-blocked indirect
/// kernels take 16 channels as one vector, and with 16 on either side they beat this one: one
/// thread on a Xeon (family 6 model 167), Model A's second layer (16 → 32) took 110 against 157
/// GFLOP/s forward and 90 against 128 for its data gradient (`bench`'s layer table), while the
/// CIFAR network's and AlexNet's layers, 32 channels and more, ran 10–40% faster here.
pub(super) fn applies(op: &Conv2d) -> bool {
    let shape = op.groups == 1 && matches!(op.kernel, [3, 3] | [5, 5]) && op.stride == [1, 1] && op.dilation == [1, 1];
    let least = if crate::ops::isa::avx512() { 32 } else { 16 };
    shape && op.c_in >= least && op.c_out >= least && op.w_out <= MAX_WIDTH
}

/// One minimal filtering algorithm F(2, R) in one dimension, on N = R + 1 points: the 2-D
/// transforms are these along the rows, then down the columns. `T` is one float or a vector of
/// them (the tiles side by side).
trait Minimal<const R: usize, const N: usize> {
    /// G·g: a row of R taps to N.
    fn filter<T: Lane>(g: [T; R]) -> [T; N];
    /// Bᵀ·d: a row of N inputs to N.
    fn input<T: Lane>(d: [T; N]) -> [T; N];
    /// Aᵀ·m: a row of N products to its 2 outputs.
    fn output<T: Lane>(m: [T; N]) -> [T; 2];
    /// A·g, the transpose of [`Minimal::output`]: a row of 2 output gradients to N (the filter
    /// gradient's transform of dY).
    fn spread<T: Lane>(g: [T; 2]) -> [T; N];
    /// Gᵀ·m, the transpose of [`Minimal::filter`]: a row of N sums back to R taps.
    fn gather<T: Lane>(m: [T; N]) -> [T; R];
}

/// F(2, 3) on the points 0, 1, −1, ∞.
struct F23;

impl Minimal<3, 4> for F23 {
    /// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
    #[inline(always)]
    fn filter<T: Lane>([g0, g1, g2]: [T; 3]) -> [T; 4] {
        [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]
    }

    /// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]].
    #[inline(always)]
    fn input<T: Lane>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }

    /// Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]].
    #[inline(always)]
    fn output<T: Lane>([m0, m1, m2, m3]: [T; 4]) -> [T; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }

    #[inline(always)]
    fn spread<T: Lane>([g0, g1]: [T; 2]) -> [T; 4] {
        [g0, g0 + g1, g0 - g1, g1 * -1.0]
    }

    #[inline(always)]
    fn gather<T: Lane>([m0, m1, m2, m3]: [T; 4]) -> [T; 3] {
        let (sum, diff) = ((m1 + m2) * 0.5, (m1 - m2) * 0.5);
        [m0 + sum, diff, sum + m3]
    }
}

/// F(2, 5) on the points 0, 1, −1, 2, −2, ∞ (Toom–Cook; Bᵀ's rows scaled to integers, their
/// factors moved into G).
struct F25;

impl Minimal<5, 6> for F25 {
    /// G = [[¼, 0, 0, 0, 0], ⅙·[1, 1, 1, 1, 1], ⅙·[1, −1, 1, −1, 1],
    /// [1/24, 1/12, ⅙, ⅓, ⅔], [1/24, −1/12, ⅙, −⅓, ⅔], [0, 0, 0, 0, 1]].
    #[inline(always)]
    fn filter<T: Lane>([g0, g1, g2, g3, g4]: [T; 5]) -> [T; 6] {
        let (even, odd) = (g0 + g2 + g4, g1 + g3);
        let (even2, odd2) = (g0 * (1.0 / 24.0) + g2 * (1.0 / 6.0) + g4 * (2.0 / 3.0), g1 * (1.0 / 12.0) + g3 * (1.0 / 3.0));
        [g0 * 0.25, (even + odd) * (1.0 / 6.0), (even - odd) * (1.0 / 6.0), even2 + odd2, even2 - odd2, g4]
    }

    /// Bᵀ = [[4, 0, −5, 0, 1, 0], [0, 4, 4, −1, −1, 0], [0, −4, 4, 1, −1, 0],
    /// [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
    #[inline(always)]
    fn input<T: Lane>([d0, d1, d2, d3, d4, d5]: [T; 6]) -> [T; 6] {
        let (a, b) = (d1.mul_add(4.0, d3 * -1.0), d2.mul_add(4.0, d4 * -1.0));
        let (c, e) = ((d3 - d1) * 2.0, d4 - d2);
        [d0.mul_add(4.0, d2.mul_add(-5.0, d4)), a + b, b - a, c + e, e - c, d1.mul_add(4.0, d3.mul_add(-5.0, d5))]
    }

    /// Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 1]].
    #[inline(always)]
    fn output<T: Lane>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 2] {
        [m0 + m1 + m2 + m3 + m4, (m3 - m4).mul_add(2.0, m1 - m2 + m5)]
    }

    #[inline(always)]
    fn spread<T: Lane>([g0, g1]: [T; 2]) -> [T; 6] {
        [g0, g0 + g1, g0 - g1, g1.mul_add(2.0, g0), g1.mul_add(-2.0, g0), g1]
    }

    #[inline(always)]
    fn gather<T: Lane>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 5] {
        let (s1, d1, s3, d3) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [
            m0 * 0.25 + s1 * (1.0 / 6.0) + s3 * (1.0 / 24.0),
            d1 * (1.0 / 6.0) + d3 * (1.0 / 12.0),
            (s1 + s3) * (1.0 / 6.0),
            d1 * (1.0 / 6.0) + d3 * (1.0 / 3.0),
            s1 * (1.0 / 6.0) + s3 * (2.0 / 3.0) + m5,
        ]
    }
}

/// The arithmetic the transforms need, on one float or on [`Lanes`].
trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<f32, Output = Self> {
    /// self·c + b, rounded once (one FMA where the processor has it).
    fn mul_add(self, c: f32, b: Self) -> Self;
}

impl Lane for f32 {
    #[inline(always)]
    fn mul_add(self, c: f32, b: f32) -> f32 {
        f32::mul_add(self, c, b)
    }
}

/// Eight floats (or `L`), one per tile or channel: element-wise loops the compiler turns into
/// one vector op each (per eight).
#[derive(Clone, Copy)]
struct Lanes<const L: usize = 8>([f32; L]);

impl<const L: usize> Lanes<L> {
    /// The `L` floats of `src` from `at`.
    #[inline(always)]
    fn at(src: &[f32], at: usize) -> Lanes<L> {
        let mut v = [0.0; L];
        v.copy_from_slice(&src[at..at + L]);
        Lanes(v)
    }
}

impl<const L: usize> Lane for Lanes<L> {
    #[inline(always)]
    fn mul_add(self, c: f32, b: Lanes<L>) -> Lanes<L> {
        let mut r = self.0;
        for (r, b) in r.iter_mut().zip(b.0) {
            *r = r.mul_add(c, b);
        }
        Lanes(r)
    }
}

impl<const L: usize> Add for Lanes<L> {
    type Output = Lanes<L>;
    #[inline(always)]
    fn add(self, o: Lanes<L>) -> Lanes<L> {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r += o;
        }
        Lanes(r)
    }
}

impl<const L: usize> Sub for Lanes<L> {
    type Output = Lanes<L>;
    #[inline(always)]
    fn sub(self, o: Lanes<L>) -> Lanes<L> {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r -= o;
        }
        Lanes(r)
    }
}

impl<const L: usize> Mul<f32> for Lanes<L> {
    type Output = Lanes<L>;
    #[inline(always)]
    fn mul(self, c: f32) -> Lanes<L> {
        let mut r = self.0;
        for r in r.iter_mut() {
            *r *= c;
        }
        Lanes(r)
    }
}

/// dst[to[j] + x] = Bᵀ·(src[from[0] + x], …, src[from[N − 1] + x])[j] for x in 0..n rounded
/// up to 8, eight at a time as [`Lanes`]: the last eight read and write past `n` (see
/// [`transform_input`] for why that is safe). Offsets into one slice each, rather than arrays
/// of slices, and plain loops: `array::from_fn` and closures were not inlined here.
#[inline(always)]
fn input_lanes<const R: usize, const N: usize, W: Minimal<R, N>>(src: &[f32], from: [usize; N], dst: &mut [f32], to: [usize; N], n: usize) {
    // The reach checked once, not at every load and store: the checks (and `step_by`) were some
    // 12% of the CIFAR network's 64 → 32 and 128 → 64 data gradients on one thread of the Xeon.
    let end = n.next_multiple_of(8);
    assert!(from.iter().all(|&f| f + end <= src.len()) && to.iter().all(|&t| t + end <= dst.len()), "input_lanes: past a slice");
    let mut x = 0;
    while x < end {
        let mut d = [Lanes([0.0; 8]); N];
        for (d, &f) in d.iter_mut().zip(&from) {
            // SAFETY: f + x + 8 ≤ f + end ≤ src.len() (asserted).
            *d = Lanes(unsafe { src.as_ptr().add(f + x).cast::<[f32; 8]>().read_unaligned() });
        }
        for (v, &t) in W::input(d).iter().zip(&to) {
            // SAFETY: t + x + 8 ≤ t + end ≤ dst.len() (asserted).
            unsafe { dst.as_mut_ptr().add(t + x).cast::<[f32; 8]>().write_unaligned(v.0) };
        }
        x += 8;
    }
}

/// a[i] = x[2i] and b[i] = x[2i + 1] as far as a and b reach; with `mask`, each only where the
/// mask is positive, else 0. Eight inputs at a time as arrays, which the compiler turns into
/// shuffles: rows are 8 to 32 floats, too short for its loop vectoriser, and one element at a
/// time this was a quarter of the transforms' time.
#[inline(always)]
fn deinterleave(x: &[f32], mask: Option<&[f32]>, a: &mut [f32], b: &mut [f32]) {
    use crate::ops::transpose::keep_if_positive as keep;
    let take = |i: usize| mask.map_or(x[i], |m| keep(x[i], m[i]));
    let mut i = 0;
    while 2 * i + 8 <= x.len() && i + 4 <= a.len() && i + 4 <= b.len() {
        let mut p = [0.0f32; 8];
        p.copy_from_slice(&x[2 * i..2 * i + 8]);
        if let Some(m) = mask {
            for (p, &m) in p.iter_mut().zip(&m[2 * i..2 * i + 8]) {
                *p = keep(*p, m);
            }
        }
        let (a, b) = (&mut a[i..i + 4], &mut b[i..i + 4]);
        for l in 0..4 {
            (a[l], b[l]) = (p[2 * l], p[2 * l + 1]);
        }
        i += 4;
    }
    for i in i..x.len().div_ceil(2) {
        if let Some(a) = a.get_mut(i) {
            *a = take(2 * i);
        }
        if let Some(b) = b.get_mut(i).filter(|_| 2 * i + 1 < x.len()) {
            *b = take(2 * i + 1);
        }
    }
}

/// Floats past the input transform's buffers that [`input_lanes`] may read and write.
const SLACK: usize = 8;

/// Output channels rounded up to whole A panels of the microkernel.
fn rows_padded(op: &Conv2d, micro: &Micro) -> usize {
    op.c_out.next_multiple_of(micro.mr)
}

/// Positions of a transformed tile, (r + 1)².
fn positions(op: &Conv2d) -> usize {
    (op.kernel[0] + 1).pow(2)
}

/// Floats of the transformed weights U in the microkernel's A panels: per ξ, panels of MR output
/// channels, each c_in steps of MR (rows past c_out zero).
pub(super) fn weights_len(op: &Conv2d) -> usize {
    positions(op) * rows_padded(op, &micro_for(op)) * op.c_in
}

/// The forward's microkernel: its rows are the output channels, so that the 8-row one takes
/// 32 or 64 of them (`kernel::select_for_rows`).
fn micro_for(op: &Conv2d) -> Micro {
    kernel::select_for_rows(op.c_out)
}

/// The filters (co, ci) of a convolution as a layer keeps them: the R² taps of filter (co, ci)
/// at `w[co·co_stride + ci·ci_stride ..]`, in order, or turned by 180° with `flipped` (a data
/// gradient's filters: the layer's W transposed and flipped, read in place).
pub(super) struct Filters<'a> {
    pub w: &'a [f32],
    pub co_stride: usize,
    pub ci_stride: usize,
    pub flipped: bool,
}

/// U[ξ] = G·g·Gᵀ for each filter g (r × r) of `op`, at `ξ·rows·c_in + (co / MR)·MR·c_in +
/// ci·MR + co % MR`.
pub(super) fn pack(op: &Conv2d, f: &Filters, u: &mut [f32]) {
    match op.kernel[0] {
        3 => pack_with::<3, 4, F23>(op, f, u),
        _ => pack_with::<5, 6, F25>(op, f, u),
    }
}

/// [`pack`], an A panel (MR output channels) a task: a train step lays out its weights anew,
/// and the layout took a thread 2–3 ms of AlexNet's 384 → 256 layer while the other waited.
fn pack_with<const R: usize, const N: usize, W: Minimal<R, N>>(op: &Conv2d, f: &Filters, u: &mut [f32]) {
    let plane = rows_padded(op, &micro_for(op)) * op.c_in;
    let out = Planes { ptr: u[..N * N * plane].as_mut_ptr(), len: plane, channels: 1 };
    (0..op.c_out.div_ceil(micro_for(op).mr)).into_par_iter().for_each(|panel| {
        // SAFETY: each panel writes its own range of each of the N² planes.
        pack_panel::<R, N, W>(op, f, panel, |xi, start| unsafe { &mut out.plane(xi, 0)[start..] });
    });
}

/// Input channels a run of [`pack_panel`] takes.
const RUN: usize = 8;

/// U[ξ] of the filters of A panel `panel` (output channels MR·panel onwards), into
/// `plane(ξ, start)` a run of input channels at a time: U's N² planes lie a multiple of
/// 32 KB apart for most layers, and writing filter by filter to all of them at once thrashed
/// one set of the caches (it took 43% of the data gradient of AlexNet's 192 → 384 layer at
/// batch 4, one thread). A panel's filters of one input channel are transposed at once, lane
/// r holding output channel MR·panel + r (zero past c_out), and transformed as vectors: filter
/// by filter, gathering taps 13.8 KB apart and with scalar arithmetic, AlexNet's 384 → 256
/// layer took 1 ms. Loops, not `array::from_fn`, whose closures were not inlined here.
fn pack_panel<'a, const R: usize, const N: usize, W: Minimal<R, N>>(op: &Conv2d, f: &Filters, panel: usize, plane: impl Fn(usize, usize) -> &'a mut [f32]) {
    const LANES: usize = 16;
    let (ci_n, mr) = (op.c_in, micro_for(op).mr);
    assert!(mr <= LANES && R * R <= 25, "winograd::pack: {mr} rows a panel");
    let co0 = panel * mr;
    let lanes = mr.min(op.c_out - co0);
    // A run of each of the N² (at most 36) positions, LANES floats a channel.
    let mut runs = [[0.0f32; RUN * LANES]; 36];
    let mut taps = [0.0f32; 25 * LANES];
    for ci0 in (0..ci_n).step_by(RUN) {
        let run = RUN.min(ci_n - ci0);
        for c in 0..run {
            let src = &f.w[co0 * f.co_stride + (ci0 + c) * f.ci_stride..];
            crate::ops::transpose::masked_transpose(src, None, lanes, R * R, f.co_stride, &mut taps, LANES);
            for half in 0..mr.div_ceil(8) {
                // Tap t of the eight filters of this half: row t of `taps` (its reverse flipped).
                let tap = |t: usize| {
                    let t = if f.flipped { R * R - 1 - t } else { t };
                    Lanes(taps[t * LANES + 8 * half..][..8].try_into().expect("8 lanes"))
                };
                // G·g column by column (gg[kx][i] is its element (i, kx)), then (G·g)·Gᵀ row
                // by row.
                let mut gg = [[Lanes([0.0; 8]); N]; R];
                for (kx, gg) in gg.iter_mut().enumerate() {
                    let mut col = [Lanes([0.0; 8]); R];
                    for (ky, c) in col.iter_mut().enumerate() {
                        *c = tap(ky * R + kx);
                    }
                    *gg = W::filter(col);
                }
                for i in 0..N {
                    let mut row = [Lanes([0.0; 8]); R];
                    for (kx, v) in row.iter_mut().enumerate() {
                        *v = gg[kx][i];
                    }
                    for (j, v) in W::filter(row).into_iter().enumerate() {
                        runs[i * N + j][c * LANES + 8 * half..][..8].copy_from_slice(&v.0);
                    }
                }
            }
        }
        for (xi, r) in runs[..N * N].iter().enumerate() {
            let dst = plane(xi, (panel * ci_n + ci0) * mr);
            for c in 0..run {
                crate::ops::transpose::copy_row(&mut dst[c * mr..][..mr], &r[c * LANES..][..mr], None);
            }
        }
    }
}

/// The tiling of one forward: tiles per image (rows × columns of 2 × 2 outputs), images per
/// block, and the points of the transforms.
struct Tiling {
    rows: usize,
    cols: usize,
    images: usize,
    n: usize,
}

impl Tiling {
    fn of(op: &Conv2d) -> Self {
        let (rows, cols, xi) = (op.h_out.div_ceil(2), op.w_out.div_ceil(2), positions(op));
        // A block's V (ξ × c_in × tiles) and M (ξ × c_out × tiles) in 768 KB, a little more
        // than the 512 KB L2 a core of Zen 1 has (2 MB on a Xeon): the GEMMs stream through
        // them one ξ at a time. In 384 KB, Model A's second layer took one image a block, 56
        // tiles in 64 lanes of B panels; in 768 KB, two take 112 in 112, and its forward on
        // one thread went from 16.0–16.5 to 13.8–14.0 ms (the CIFAR network's were the same).
        let tiles = (192 * 1024 / (xi * (op.c_in + op.c_out))).max(1);
        let mut t = Tiling { rows, cols, images: 1, n: op.kernel[0] + 1 };
        t.images = (tiles / t.per_image()).max(1);
        t
    }

    /// An image's tiles, rows × cols rounded up to 8: the input transform's last eight lanes of
    /// an image are whole (the GEMMs compute the few past it, which no output reads).
    fn per_image(&self) -> usize {
        (self.rows * self.cols).next_multiple_of(8)
    }

    fn tiles(&self) -> usize {
        self.images * self.per_image()
    }

    /// Tiles of a block rounded up to whole B panels of the microkernel.
    fn tiles_padded(&self, micro: &Micro) -> usize {
        self.tiles().next_multiple_of(micro.nr)
    }

    /// A padded plane as the input transform keeps it: its rows (2·rows + N − 2) split into
    /// even and odd columns, rows `stride` floats apart (a tile's N columns are then
    /// e[tx], o[tx], e[tx + 1], …, up to tx + N/2 − 1).
    fn stride(&self) -> usize {
        self.cols + self.n / 2 - 1
    }

    /// Rows and columns of the padded input the tiles read: 2·rows + N − 2 and 2·cols + N − 2.
    fn padded_rows(&self) -> usize {
        2 * self.rows + self.n - 2
    }

    fn padded_cols(&self) -> usize {
        2 * self.cols + self.n - 2
    }

    fn split_len(&self) -> usize {
        self.padded_rows() * self.stride()
    }

    /// The row transform of one of the N columns of the tiles, its rows split into even and
    /// odd, each half `cols` floats a row (rows + N/2 − 1 of them) and [`SLACK`] more.
    fn half_len(&self) -> usize {
        (self.rows + self.n / 2 - 1) * self.cols + SLACK
    }

    /// The even and odd columns of a padded plane and the [`SLACK`] after them: the first
    /// floats of [`Tiling::plane_len`], whose padding stays zero from plane to plane.
    fn padded_len(&self) -> usize {
        2 * self.split_len() + SLACK
    }

    /// Floats the input transform of one plane works in: the even and odd columns, and their
    /// row transforms (N columns of two halves).
    fn plane_len(&self) -> usize {
        self.padded_len() + 2 * self.n * self.half_len()
    }

    /// A worker's floats: V (in B panels) and M of a block, and the transforms' own.
    fn worker_len(&self, op: &Conv2d) -> usize {
        let xi = self.n * self.n;
        xi * (op.c_in * self.tiles_padded(&micro_for(op)) + op.c_out * self.tiles()) + self.plane_len().max(4 * self.tiles())
    }
}

/// Scratch floats of [`forward`] on `threads` threads: the transformed weights, then a block's
/// worth per thread.
pub(super) fn scratch_len(op: &Conv2d, threads: usize) -> usize {
    weights_len(op) + threads.max(1) * Tiling::of(op).worker_len(op)
}

/// y = conv(x, w) + b, then ReLU when `relu`; with `pool` (and `relu`), max-pooled 2 × 2 too
/// (PyTorch's floor mode: the windows of an odd last row or column are dropped), so that the
/// convolution's own output is never written. `mask`: x taken only where it is positive (the
/// output of a fused ReLU, when x is its gradient). `u`: the weights as [`pack`] lays them out,
/// or None to transform `w` into the scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(op: &Conv2d, n: usize, x: &[f32], mask: Option<&[f32]>, w: &Filters, u: Option<&[f32]>, b: Option<&[f32]>, relu: bool, pool: bool, y: &mut [f32], scratch: &mut [f32], threads: usize) {
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
    let mr = micro_for(op).mr;
    let panels = op.c_out.div_ceil(mr);
    let parts = if blocks >= threads { 1 } else { (threads / blocks.max(1)).clamp(1, panels) };
    let tasks = blocks * parts;
    // As many workers as the scratch has room for (sized for the threads there were when it was
    // allocated), each taking its share of the tasks.
    on_workers(scratch, t.worker_len(op), threads, tasks, true, |task, buf| {
        let (blk, part) = (task / parts, task % parts);
        let b0 = blk * t.images;
        let images = t.images.min(n - b0);
        let channels = (part * panels / parts * mr).min(op.c_out)..((part + 1) * panels / parts * mr).min(op.c_out);
        let range = b0 * op.x_len()..(b0 + images) * op.x_len();
        let block = Block { op, t: &t, x: &x[range.clone()], mask: mask.map(|m| &m[range]), images, u, bias: b, relu, pool, y: &out, b0, channels };
        match op.kernel[0] {
            3 => block.run::<3, 4, F23>(buf),
            _ => block.run::<5, 6, F25>(buf),
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
    /// Where float `offset` of the output is, for a task that writes only its own part of a
    /// plane.
    ///
    /// # Safety
    /// `offset` lies inside the output.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's.
        unsafe { self.ptr.add(offset) }
    }

    /// The plane of (`image`, `channel`) to read.
    ///
    /// # Safety
    /// No task writes it meanwhile, and it lies inside the output.
    unsafe fn read(&self, image: usize, channel: usize) -> &[f32] {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts(self.ptr.add((image * self.channels + channel) * self.len), self.len) }
    }

    /// # Safety
    /// Only one task takes the plane of (`image`, `channel`), which lies inside the output.
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, image: usize, channel: usize) -> &mut [f32] {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((image * self.channels + channel) * self.len), self.len) }
    }
}

/// One task: `images` images from image `b0` on, for output channels `channels` (whole A
/// panels).
struct Block<'a> {
    op: &'a Conv2d,
    t: &'a Tiling,
    x: &'a [f32],
    mask: Option<&'a [f32]>,
    images: usize,
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
    pool: bool,
    y: &'a Planes,
    b0: usize,
    channels: Range<usize>,
}

impl Block<'_> {
    /// [`Block::compute`], compiled for AVX2 and FMA where the processor has them: the
    /// transforms are vectors of 8 lanes there instead of SSE's 4 (with SSE they took twice as
    /// long).
    fn run<const R: usize, const N: usize, W: Minimal<R, N>>(&self, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::ops::isa::avx2() {
            // SAFETY: the processor has AVX2 and FMA.
            return unsafe { self.compute_avx2::<R, N, W>(buf) };
        }
        self.compute::<R, N, W>(buf)
    }

    /// # Safety
    /// The processor has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn compute_avx2<const R: usize, const N: usize, W: Minimal<R, N>>(&self, buf: &mut [f32]) {
        self.compute::<R, N, W>(buf)
    }

    /// The block's inputs transformed into V, the N² GEMMs into M, and the outputs of M
    /// transformed into their planes of `y`.
    #[inline(always)]
    fn compute<const R: usize, const N: usize, W: Minimal<R, N>>(&self, buf: &mut [f32]) {
        let (op, t) = (self.op, self.t);
        let micro = micro_for(op);
        let (ci_n, co_n, mr, nr, xi_n) = (op.c_in, op.c_out, micro.mr, micro.nr, N * N);
        let tiles = self.images * t.per_image();
        let tiles_padded = tiles.next_multiple_of(nr);
        let xi_len = ci_n * tiles_padded;
        let (v, rest) = buf.split_at_mut(xi_n * xi_len);
        let (m, rest) = rest.split_at_mut(xi_n * co_n * tiles);
        if tiles < tiles_padded {
            // The lanes past the last tile in each ξ's last panel: read by the kernel, never written.
            for vi in v.chunks_exact_mut(xi_len) {
                for lanes in vi[tiles / nr * nr * ci_n..][..nr * ci_n].chunks_exact_mut(nr) {
                    lanes[tiles % nr..].fill(0.0);
                }
            }
        }
        debug_assert!(nr.is_power_of_two());
        let panels = Panels { nr, ci: ci_n, xi_len };
        let plane_len = op.h_in * op.w_in;
        // The padded planes' zeros, once for the block: every plane writes the same places of
        // them (a fill per plane was 5% of the CIFAR network's forward).
        rest[..t.padded_len()].fill(0.0);
        for img in 0..self.images {
            for ci in 0..ci_n {
                let at = (img * ci_n + ci) * plane_len;
                let (plane, mask) = (&self.x[at..][..plane_len], self.mask.map(|m| &m[at..][..plane_len]));
                transform_input::<R, N, W>(op, t, plane, mask, v, &panels, ci, img * t.per_image(), rest);
            }
        }
        let (rows, a_panel, b_panel) = (rows_padded(op, &micro), mr * ci_n, nr * ci_n);
        for xi in 0..xi_n {
            let ui = &self.u[xi * rows * ci_n..][..rows * ci_n];
            let vi = &v[xi * xi_len..][..ci_n * tiles_padded];
            let mi = &mut m[xi * co_n * tiles..][..co_n * tiles];
            for (jp, b) in vi.chunks_exact(b_panel).enumerate() {
                let j0 = jp * nr;
                for (ip, a) in ui.chunks_exact(a_panel).enumerate().skip(self.channels.start / mr).take(self.channels.len().div_ceil(mr)) {
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
        self.transform_output::<R, N, W>(m, tiles, rest);
    }

    /// The outputs of M (ξ, c_out, tiles): Y = Aᵀ·M·A per tile, plus the bias, ReLU and the
    /// 2 × 2 max pool as asked, into the NCHW planes of the block's images. One loop over all the
    /// block's tiles per channel (vectors), then their rows are stored.
    #[inline(always)]
    fn transform_output<const R: usize, const N: usize, W: Minimal<R, N>>(&self, m: &[f32], tiles: usize, tmp: &mut [f32]) {
        let (op, t) = (self.op, self.t);
        let (ho, wo, co_n, cols) = (op.h_out, op.w_out, op.c_out, t.cols);
        let (hp, wp) = (ho / 2, wo / 2);
        let mut quarters = tmp[..4 * tiles].chunks_exact_mut(tiles);
        let mut ys: [&mut [f32]; 4] = from_fn(|_| quarters.next().expect("four quarters"));
        for co in self.channels.clone() {
            let bias = self.bias.map_or(0.0, |b| b[co]);
            // The channel's products M[ξ = (i, j)] over the block's tiles.
            let mut ms = [[&m[..0]; N]; N];
            for (i, ms) in ms.iter_mut().enumerate() {
                for (j, ms) in ms.iter_mut().enumerate() {
                    *ms = &m[((i * N + j) * co_n + co) * tiles..][..tiles];
                }
            }
            let finish = |y: f32| if self.relu { (y + bias).max(0.0) } else { y + bias };
            let mut tile = 0;
            while tile + 8 <= tiles {
                let mut mm = [[Lanes([0.0; 8]); N]; N];
                for (mm, ms) in mm.iter_mut().zip(&ms) {
                    for (mm, src) in mm.iter_mut().zip(ms) {
                        mm.0.copy_from_slice(&src[tile..tile + 8]);
                    }
                }
                let out = tile_outputs::<R, N, W, Lanes>(mm);
                if self.pool {
                    // A tile is a pooling window: its maximum, into the first quarter.
                    let [a, b, c, d] = out;
                    for (l, dst) in ys[0][tile..tile + 8].iter_mut().enumerate() {
                        *dst = finish(a.0[l]).max(finish(b.0[l])).max(finish(c.0[l]).max(finish(d.0[l])));
                    }
                } else {
                    for (dst, o) in ys.iter_mut().zip(out) {
                        for (d, o) in dst[tile..tile + 8].iter_mut().zip(o.0) {
                            *d = finish(o);
                        }
                    }
                }
                tile += 8;
            }
            for tile in tile..tiles {
                let mut mm = [[0.0; N]; N];
                for (mm, ms) in mm.iter_mut().zip(&ms) {
                    for (mm, src) in mm.iter_mut().zip(ms) {
                        *mm = src[tile];
                    }
                }
                let mut out = tile_outputs::<R, N, W, f32>(mm);
                for o in out.iter_mut() {
                    *o = finish(*o);
                }
                if self.pool {
                    ys[0][tile] = out[0].max(out[1]).max(out[2].max(out[3]));
                } else {
                    for (dst, o) in ys.iter_mut().zip(out) {
                        dst[tile] = o;
                    }
                }
            }
            let [y00, y01, y10, y11] = [&*ys[0], &*ys[1], &*ys[2], &*ys[3]];
            for img in 0..self.images {
                // SAFETY: this task alone computes channel `co` of these images.
                let plane = unsafe { self.y.plane(self.b0 + img, co) };
                for ty in 0..t.rows {
                    let first = img * t.per_image() + ty * cols;
                    if self.pool {
                        // The maxima of the row's whole windows (an odd last column's tile is
                        // half a window, dropped). Rows of 4 to 8 floats: moved inline, where
                        // `copy_from_slice` called memcpy for each (2% of the CIFAR network's
                        // forward at batch 128).
                        if ty < hp {
                            crate::ops::transpose::copy_row(&mut plane[ty * wp..][..wp], &y00[first..][..wp], None);
                        }
                        continue;
                    }
                    for (i, (a, b)) in [(y00, y01), (y10, y11)].into_iter().enumerate() {
                        let oy = 2 * ty + i;
                        if oy >= ho {
                            break;
                        }
                        // The row's outputs interleave a and b: 16 at a time (eight tiles) while
                        // they fit in the plane and the tiles in the arrays, the last of them
                        // into the rows after this one, written after it; then one by one
                        // (a loop of pairs was a fifth of the transform's time).
                        let (row, a, b) = (&mut plane[oy * wo..], &a[first..], &b[first..]);
                        let mut tx = 0;
                        while tx < cols && 2 * tx + 16 <= row.len() && tx + 8 <= a.len() {
                            let mut pairs = [0.0f32; 16];
                            for (l, (&a, &b)) in a[tx..tx + 8].iter().zip(&b[tx..tx + 8]).enumerate() {
                                (pairs[2 * l], pairs[2 * l + 1]) = (a, b);
                            }
                            row[2 * tx..2 * tx + 16].copy_from_slice(&pairs);
                            tx += 8;
                        }
                        for tx in tx..cols {
                            row[2 * tx] = a[tx];
                            if 2 * tx + 1 < wo {
                                row[2 * tx + 1] = b[tx];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Y = Aᵀ·M·A of a tile (or of eight side by side): its outputs (0, 0), (0, 1), (1, 0), (1, 1).
#[inline(always)]
fn tile_outputs<const R: usize, const N: usize, W: Minimal<R, N>, T: Lane>(m: [[T; N]; N]) -> [T; 4] {
    // M·A along each row i: its two columns; then Aᵀ· down each of them.
    let (mut left, mut right) = (m[0], m[0]);
    for i in 0..N {
        [left[i], right[i]] = W::output(m[i]);
    }
    let [y00, y10] = W::output(left);
    let [y01, y11] = W::output(right);
    [y00, y01, y10, y11]
}

/// Where V's elements go: per ξ (`xi_len` floats), B panels of `nr` tiles, each c_in steps of
/// `nr`.
struct Panels {
    nr: usize,
    ci: usize,
    xi_len: usize,
}

impl Panels {
    /// Where V[0, ci, tile] is.
    fn at(&self, ci: usize, tile: usize) -> usize {
        // NR is a power of two (16 or 32): no division.
        let (panel, lane) = (tile >> self.nr.trailing_zeros(), tile & (self.nr - 1));
        panel * self.nr * self.ci + ci * self.nr + lane
    }
}

/// V[ξ, ci, at + tile] = (Bᵀ·d·B)[ξ] for every tile of one input plane (channel `ci`), into B
/// panels; with `mask`, d is the plane where the mask is positive, else 0.
///
/// The planes are small (8 × 8 to 32 × 32) and a row holds few tiles (4 to 16), so the steps
/// are loops over whole planes, flat, eight lanes at a time:
/// - the padded plane, its columns split into even and odd (see [`Tiling::stride`]);
/// - the row transform d·B of each row, N columns q[j] for the tiles of that row, its rows
///   split into even and odd: tile (ty, tx)'s row k is then row ty + k/2 of half k % 2, and
///   with `cols` floats a row, the tiles' rows k are one run over the whole plane;
/// - Bᵀ·(d·B) down those runs, written into the panels: an image's tiles begin at a multiple
///   of 8 (`at`, see [`Tiling::per_image`]) so that eight lanes never cross a panel.
///
/// The last eight lanes of a run reach past its end: into the next row of its half, which is
/// written later (rows go in order), or into the [`SLACK`] after it; and in V, into the tiles
/// past the image's, which no output reads. `tmp`: [`Tiling::plane_len`] floats, the first
/// [`Tiling::padded_len`] of them zero wherever a plane is not written (the caller zeroes them
/// once per block: every plane writes the same places).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_input<const R: usize, const N: usize, W: Minimal<R, N>>(op: &Conv2d, t: &Tiling, plane: &[f32], mask: Option<&[f32]>, v: &mut [f32], panels: &Panels, ci: usize, at: usize, tmp: &mut [f32]) {
    let (ph, pw) = (op.padding[0], op.padding[1]);
    let (rows, cols, s, len, half) = (t.rows, t.cols, t.stride(), t.split_len(), t.half_len());
    let (eo, rest) = tmp.split_at_mut(t.padded_len());
    let q = &mut rest[..2 * N * half];
    let (e, o) = eo[..2 * len].split_at_mut(len);
    // Padded row R = iy + ph, column J = ix + pw: even J to e, odd J to o, at R·s + J / 2.
    for (iy, src) in plane.chunks_exact(op.w_in).take(op.h_in).enumerate() {
        let row = (iy + ph) * s;
        if row + s > len {
            break;
        }
        let mask = mask.map(|m| &m[iy * op.w_in..][..op.w_in]);
        // x[ix] goes to column (ix + pw) / 2 of e when ix + pw is even, of o when odd.
        let (to_e, to_o) = if pw % 2 == 0 { (&mut *e, &mut *o) } else { (&mut *o, &mut *e) };
        deinterleave(src, mask, &mut to_e[row + pw / 2..row + s], &mut to_o[row + (pw + 1) / 2..row + s]);
    }
    // d·B along every padded row r: q[j] of its tiles, column k of tile tx being e (k even) or
    // o (k odd) at r·s + tx + k / 2.
    let (mut from, mut to) = ([0; N], [0; N]);
    for r in 0..t.padded_rows() {
        for k in 0..N {
            (from[k], to[k]) = ((k % 2) * len + r * s + k / 2, (2 * k + r % 2) * half + r / 2 * cols);
        }
        input_lanes::<R, N, W>(eo, from, q, to, cols);
    }
    // Bᵀ·(d·B) down the columns: for each j, the tiles' rows k of q[j] into V[(i, j)].
    let first = panels.at(ci, at);
    for j in 0..N {
        for k in 0..N {
            (from[k], to[k]) = ((2 * j + k % 2) * half + k / 2 * cols, first + (N * k + j) * panels.xi_len);
        }
        for x in (0..rows * cols).step_by(8) {
            // Eight tiles, in one panel (`at` and the panels' NR are multiples of 8).
            let lane = panels.at(ci, at + x) - first;
            let to = to.map(|t| t + lane);
            input_lanes::<R, N, W>(&q[x..], from, v, to, 8);
        }
    }
}

/// The filter gradient by the same transforms (Lavin and Gray's, as NNPACK has it): the
/// forward's output tile is linear in the filter, Y = Aᵀ·[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A, so
/// dg = Gᵀ·[(A·dY·Aᵀ) ⊙ (Bᵀ·d·B)]·G summed over the tiles. Per ξ, the sum over tiles is a GEMM
/// M[ξ] (c_out × c_in) += D[ξ] (c_out × tiles) · V[ξ]ᵀ (tiles × c_in), with D = A·dY·Aᵀ and V
/// the forward's input transform, 16 multiplies a tile for 3 × 3 where the direct sum takes 36.
/// The transforms vectorise over channels: an image's x and dY are transposed into lanes first,
/// then each tile's transform goes straight into the microkernel's panels, channels as lanes.
/// The tiles' sum is the GEMMs' k.
///
/// Blocks of images bound V and D; M takes every block's sum (the first block overwrites it),
/// then Gᵀ·M·G is added to dW. Where M is large, the blocks are shared ([`Grad::of`]): every
/// worker transforms a part of each and multiplies a part, so no thread shares a sum with
/// another and the result does not depend on the threads. Where M is small, each worker takes
/// blocks of its own images into its own M ([`Grad::private`], [`Grad::per_worker`]), and the
/// Ms are added in the workers' order. The bias gradient is summed from the same
/// transposed dY as D.
struct Grad {
    t: Tiling,
    /// Images a block, tiles a block (images · tiles per image), output channels rounded up to
    /// A panels and input channels to B panels.
    images: usize,
    tiles: usize,
    co_pad: usize,
    ci_pad: usize,
}

impl Grad {
    /// Shared blocks: D and V of a block in 16 MB, all of AlexNet's batch of 4 at once (9 MB for
    /// its 384 → 256 layer), so that M (6 MB there) is written once.
    fn of(op: &Conv2d, n: usize) -> Self {
        Self::with_block(op, n, 16 << 20)
    }

    /// A worker's own blocks ([`Grad::per_worker`]): D and V of a block in 1 MB, to stay in L2
    /// from the transforms to the GEMMs.
    fn private(op: &Conv2d, n: usize) -> Self {
        Self::with_block(op, n, 1 << 20)
    }

    /// Blocks of as many images as D and V of `bytes` hold (one at least). The unit tests'
    /// small layers take two images a block, so that M's sum over blocks is tested, and a last
    /// block of one.
    fn with_block(op: &Conv2d, n: usize, bytes: usize) -> Self {
        let micro = kernel::select();
        let t = Tiling::of(op);
        let (co_pad, ci_pad) = (op.c_out.next_multiple_of(micro.mr), op.c_in.next_multiple_of(micro.nr));
        let per_image = t.n * t.n * (co_pad + ci_pad) * t.per_image() * size_of::<f32>();
        let images = if cfg!(test) { 2 } else { (bytes / per_image).max(1) }.min(n.max(1));
        let tiles = images * t.per_image();
        Grad { t, images, tiles, co_pad, ci_pad }
    }

    /// Whether each worker takes whole blocks of its own images, into its own M, the workers'
    /// Ms summed in their order at the end ([`filter_grad_per_worker`]): where M is small
    /// enough ([`PER_WORKER_M_BYTES`]) that a worker's M, D and V stay in its L2. Shared
    /// blocks, transformed and multiplied by all the workers together, went through memory
    /// from the transforms to the GEMMs (the CIFAR network's 32 → 64 at batch 128: D and V
    /// are 54 MB, M 147 KB).
    fn per_worker(op: &Conv2d) -> bool {
        let micro = kernel::select();
        let m = positions(op) * op.c_out.next_multiple_of(micro.mr) * op.c_in.next_multiple_of(micro.nr);
        m * size_of::<f32>() <= PER_WORKER_M_BYTES
    }

    fn xi(&self) -> usize {
        self.t.n * self.t.n
    }

    /// A worker's floats: an image's input channels of a B panel, or its output gradients of an
    /// A panel, padded and transposed into lanes; or one output channel's dW, tap-major and then
    /// transposed.
    fn worker_len(&self, op: &Conv2d) -> usize {
        let micro = kernel::select();
        let t = &self.t;
        let x = t.padded_rows() * t.padded_cols() * micro.nr.next_multiple_of(8);
        let dy = 4 * t.rows * t.cols * micro.mr.next_multiple_of(8);
        x.max(dy).max(op.kernel[0] * op.kernel[0] * (self.ci_pad + op.c_in))
    }

    /// M, then D and V of a block in the microkernel's panels.
    fn lens(&self) -> [usize; 3] {
        let micro = kernel::select();
        let (a_panels, b_panels) = (self.co_pad / micro.mr, self.ci_pad / micro.nr);
        let xi = self.xi();
        [xi * self.co_pad * self.ci_pad, xi * (self.co_pad * self.tiles + a_panels * PANEL_SKEW), xi * (self.ci_pad * self.tiles + b_panels * PANEL_SKEW)]
    }
}

/// The largest M that [`Grad::per_worker`] takes: one per worker, added up at the end. One
/// thread of a Xeon (family 6 model 167, AVX-512), GFLOP/s of the direct sum, median of
/// `prof_layer`-style loops with dY the forward's output, shared blocks against a worker's own
/// (two threads in brackets): the CIFAR network's 32 → 64 on 16 × 16 at batch 128 (M 147 KB),
/// 150 against 157 (249 against 305); 64 → 64 on 32 × 32 at batch 16 (295 KB), 173 against
/// 181 (300 against 348); but 128 → 128 on 16 × 16 at batch 16 (1.1 MB, one image a block),
/// 224 against 227 (453 against 415). The unit tests take it up to 80 KB: their 32 → 32 layer
/// takes it, their 32 → 40 and 5 × 5 layers the shared blocks.
#[cfg(not(test))]
const PER_WORKER_M_BYTES: usize = 512 << 10;
#[cfg(test)]
const PER_WORKER_M_BYTES: usize = 80 << 10;

/// Whether the filter gradient of `op` runs in blocks of each worker's own ([`Grad::per_worker`]).
pub(super) fn filter_grad_per_worker_applies(op: &Conv2d) -> bool {
    Grad::per_worker(op)
}

/// Scratch floats of [`filter_grad`] for a batch of `n` on `threads` threads.
pub(super) fn filter_scratch_len(op: &Conv2d, n: usize, threads: usize) -> usize {
    if Grad::per_worker(op) {
        return threads.max(1) * private_len(op, n);
    }
    let g = Grad::of(op, n);
    g.lens().iter().sum::<usize>() + threads.max(1) * g.worker_len(op)
}

/// A worker's floats in [`filter_grad_per_worker`]: its M, D and V, its own bias sums, and its
/// transforms' buffer, rounded up to whole cache lines (so that every worker's panels start on
/// one, as the first's do).
fn private_len(op: &Conv2d, n: usize) -> usize {
    let g = Grad::private(op, n);
    (g.lens().iter().sum::<usize>() + op.c_out.next_multiple_of(16) + g.worker_len(op)).next_multiple_of(16)
}

/// dW += the filter gradient of `op` over `n` images, db += Σ dY (when `db`), with dY taken
/// only where `mask` is positive (the output of a fused ReLU) when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn filter_grad(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], mask: Option<&[f32]>, dw: &mut [f32], db: Option<&mut [f32]>, scratch: &mut [f32], threads: usize) {
    match op.kernel[0] {
        3 => filter_grad_with::<3, 4, F23>(op, n, x, dy, mask, dw, db, scratch, threads),
        _ => filter_grad_with::<5, 6, F25>(op, n, x, dy, mask, dw, db, scratch, threads),
    }
}

/// Runs `task(i, buf)` for i in 0..tasks on the workers the scratch `bufs` has room for (at most
/// `threads`), each with its own `len` floats: a run of neighbouring tasks each if
/// `contiguous`, else the next task when done with one.
fn on_workers(bufs: &mut [f32], len: usize, threads: usize, tasks: usize, contiguous: bool, task: impl Fn(usize, &mut [f32]) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = threads.clamp(1, tasks.max(1)).min(bufs.len() / len);
    assert!(workers > 0, "winograd: a scratch of {} floats holds no worker's {len}", bufs.len());
    let next = AtomicUsize::new(0);
    bufs.par_chunks_mut(len).take(workers).enumerate().for_each(|(w, buf)| {
        if contiguous {
            return (w * tasks / workers..(w + 1) * tasks / workers).for_each(|i| task(i, buf));
        }
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            task(i, buf);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn filter_grad_with<const R: usize, const N: usize, W: Minimal<R, N>>(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], mask: Option<&[f32]>, dw: &mut [f32], db: Option<&mut [f32]>, scratch: &mut [f32], threads: usize) {
    if Grad::per_worker(op) {
        return filter_grad_per_worker::<R, N, W>(op, n, x, dy, mask, dw, db, scratch, threads);
    }
    let g = Grad::of(op, n);
    let micro = kernel::select();
    let [m_len, d_len, v_len] = g.lens();
    let (m, rest) = scratch.split_at_mut(m_len);
    let (d, rest) = rest.split_at_mut(d_len);
    let (v, bufs) = rest.split_at_mut(v_len);
    let (co_panels, ci_panels) = (g.co_pad / micro.mr, g.ci_pad / micro.nr);
    let mut task = GradTask::new(op, &g, (x, dy, mask), [m.as_mut_ptr(), d.as_mut_ptr(), v.as_mut_ptr(), dw.as_mut_ptr()], db.map(|db| db.as_mut_ptr()));
    let worker_len = g.worker_len(op);
    for b0 in (0..n).step_by(g.images) {
        (task.b0, task.images, task.first) = (b0, g.images.min(n - b0), b0 == 0);
        let k = task.k();
        (task.da.len, task.vb.len) = (micro.mr * k + PANEL_SKEW, micro.nr * k + PANEL_SKEW);
        let task = &task;
        // The transforms take the next task when done with one (a B panel's and an A panel's
        // differ in cost); the GEMMs and the output, all alike, take runs of neighbours: a
        // thread then reads an A panel of ξ for all its B panels, where taking the next task
        // had both threads read all of them (two threads ran AlexNet's GEMMs 1.7 times as fast
        // as one; 1.95 times now).
        on_workers(bufs, worker_len, threads, ci_panels + co_panels, false, |i, buf| task.run::<R, N, W>(Phase::Transform, i, buf));
        on_workers(bufs, worker_len, threads, N * N * ci_panels, true, |i, buf| task.run::<R, N, W>(Phase::Gemm, i, buf));
    }
    on_workers(bufs, worker_len, threads, op.c_out, true, |co, buf| task.run::<R, N, W>(Phase::Output, co, buf));
}

/// [`filter_grad_with`] where each worker takes a run of the images, in blocks of its own
/// ([`Grad::per_worker`]): it transforms a block and multiplies it into its own M (and sums
/// its own db), then the workers' Ms are added in their order and the output transformed as
/// there. The sums' order depends on the number of workers (as the indirect path's partials
/// do), not on how the threads take the work.
#[allow(clippy::too_many_arguments)]
fn filter_grad_per_worker<const R: usize, const N: usize, W: Minimal<R, N>>(op: &Conv2d, n: usize, x: &[f32], dy: &[f32], mask: Option<&[f32]>, dw: &mut [f32], db: Option<&mut [f32]>, scratch: &mut [f32], threads: usize) {
    let g = Grad::private(op, n);
    let micro = kernel::select();
    let [m_len, d_len, v_len] = g.lens();
    let (co_panels, ci_panels) = (g.co_pad / micro.mr, g.ci_pad / micro.nr);
    let (len, db_len, worker_len) = (private_len(op, n), op.c_out.next_multiple_of(16), g.worker_len(op));
    let workers = threads.clamp(1, n.max(1)).min(scratch.len() / len);
    assert!(workers > 0, "winograd: a scratch of {} floats holds no worker's {len}", scratch.len());
    let task_for = |m: &mut [f32], d: &mut [f32], v: &mut [f32], dw: *mut f32, db: Option<&mut [f32]>| GradTask::new(op, &g, (x, dy, mask), [m.as_mut_ptr(), d.as_mut_ptr(), v.as_mut_ptr(), dw], db.map(|db| db.as_mut_ptr()));
    let bias = db.is_some();
    scratch[..workers * len].par_chunks_mut(len).enumerate().for_each(|(w, mine)| {
        let (m, rest) = mine.split_at_mut(m_len);
        let (d, rest) = rest.split_at_mut(d_len);
        let (v, rest) = rest.split_at_mut(v_len);
        let (sums, buf) = rest.split_at_mut(db_len);
        sums.fill(0.0);
        let images = w * n / workers..(w + 1) * n / workers;
        if images.is_empty() {
            m.fill(0.0);
            return;
        }
        let mut task = task_for(m, d, v, std::ptr::null_mut(), bias.then_some(sums));
        for b0 in images.clone().step_by(g.images) {
            (task.b0, task.images, task.first) = (b0, g.images.min(images.end - b0), b0 == images.start);
            let k = task.k();
            (task.da.len, task.vb.len) = (micro.mr * k + PANEL_SKEW, micro.nr * k + PANEL_SKEW);
            for i in 0..ci_panels + co_panels {
                task.run::<R, N, W>(Phase::Transform, i, &mut buf[..worker_len]);
            }
            for i in 0..N * N * ci_panels {
                task.run::<R, N, W>(Phase::Gemm, i, &mut buf[..worker_len]);
            }
        }
    });
    // The workers' Ms (and bias sums) added into the first's, in their order.
    let (first, rest) = scratch[..workers * len].split_at_mut(len);
    for other in rest.chunks_exact(len) {
        first[..m_len].par_chunks_mut(1 << 12).zip(other[..m_len].par_chunks(1 << 12)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
    }
    if let Some(db) = db {
        let sums = |w: usize| &scratch[w * len + m_len + d_len + v_len..][..op.c_out];
        for (c, g) in db.iter_mut().enumerate() {
            *g += (0..workers).map(|w| sums(w)[c]).sum::<f32>();
        }
    }
    let (m, rest) = scratch.split_at_mut(m_len);
    // The workers' regions past the first's M, free now, as the output's buffers.
    let bufs = &mut rest[..workers * len - m_len];
    let task = &task_for(m, &mut [], &mut [], dw.as_mut_ptr(), None);
    on_workers(bufs, worker_len, threads, op.c_out, true, |co, buf| task.run::<R, N, W>(Phase::Output, co, buf));
}

/// Zeroes `lanes` of panel `panel` of each of the `xi` planes: a last panel's lanes past its
/// channels (past their last group of eight), which the GEMMs read and no output keeps.
#[inline(always)]
fn zero_dead_lanes(panels: &Planes, panel: usize, xi: usize, lanes: Range<usize>) {
    if lanes.is_empty() {
        return;
    }
    for xi in 0..xi {
        // SAFETY: the caller's task alone writes this panel.
        let row = unsafe { panels.plane(xi, panel) };
        row[lanes.clone()].fill(0.0);
    }
}

/// Floats between one panel of D or V and the next past its k steps. A transform task stores
/// each tile into the N² panels of its channels, one per ξ, and panels a multiple of 4 KB apart
/// put all N² streams into one set of a 12-way L1: a 32-wide B panel whenever k is a multiple
/// of 32 tiles, as the CIFAR network's 32 → 64 layer's 2496 (16 MB blocks). A cache line more
/// a panel spreads them over N² sets. One thread of the Xeon, median GFLOP/s of the direct sum
/// without the skew and with it: that layer 107–110 → 115–121, 64 → 64 on 32 × 32 at batch 16
/// 135–138 → 173–175, AlexNet's 64 → 192 (5 × 5) 207–209 → 240.
const PANEL_SKEW: usize = 16;

/// What a task of [`GradTask`] does.
#[derive(Clone, Copy)]
enum Phase {
    /// B panel i's V, or (past the B panels) A panel i − B panels' D, of a block.
    Transform,
    /// The GEMMs of ξ = i / B panels into the columns of B panel i % B panels, for a block.
    Gemm,
    /// dW of output channel i from M, after the last block.
    Output,
}

/// The filter gradient's shared state: the inputs, the block of images, and where its tasks
/// write (each task its own part, see the `Phase`s).
struct GradTask<'a> {
    op: &'a Conv2d,
    g: &'a Grad,
    micro: Micro,
    x: &'a [f32],
    dy: &'a [f32],
    mask: Option<&'a [f32]>,
    b0: usize,
    images: usize,
    /// Whether the block is the first into M (which it overwrites).
    first: bool,
    /// M[co][ξ], input channels ci_pad a row: a task per output channel reads one run.
    m: Planes,
    /// D and V of the block in A and B panels of k steps, per ξ.
    da: Planes,
    vb: Planes,
    /// A row of dW (c_in·R²) per output channel, and db.
    dw: Planes,
    db: Option<Planes>,
}

// SAFETY: tasks write disjoint parts of the planes (see `Phase`).
unsafe impl Sync for GradTask<'_> {}

impl<'a> GradTask<'a> {
    /// The state of `op`'s filter gradient over `g`'s blocks of (x, dY, mask): M, D and V at the
    /// first three pointers (D's and V's panel lengths set per block), dW at the fourth, db at
    /// `db`.
    fn new(op: &'a Conv2d, g: &'a Grad, (x, dy, mask): (&'a [f32], &'a [f32], Option<&'a [f32]>), [m, d, v, dw]: [*mut f32; 4], db: Option<*mut f32>) -> Self {
        let micro = kernel::select();
        let (taps, xi) = (op.kernel[0] * op.kernel[1], g.xi());
        GradTask {
            op,
            g,
            micro,
            x,
            dy,
            mask,
            b0: 0,
            images: 0,
            first: true,
            m: Planes { ptr: m, len: g.ci_pad, channels: xi },
            da: Planes { ptr: d, len: 0, channels: g.co_pad / micro.mr },
            vb: Planes { ptr: v, len: 0, channels: g.ci_pad / micro.nr },
            dw: Planes { ptr: dw, len: op.c_in * taps, channels: 1 },
            db: db.map(|db| Planes { ptr: db, len: 1, channels: 1 }),
        }
    }

    /// The GEMMs' k: the block's tiles, without the lanes past each image's (AlexNet's 13 × 13
    /// planes have 49 tiles in 56 lanes).
    fn k(&self) -> usize {
        self.images * self.g.t.rows * self.g.t.cols
    }

    /// [`GradTask::task`], compiled for AVX2 and FMA where the processor has them, as the
    /// forward's transforms are.
    fn run<const R: usize, const N: usize, W: Minimal<R, N>>(&self, phase: Phase, i: usize, buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::ops::isa::avx2() {
            // SAFETY: the processor has AVX2 and FMA.
            return unsafe { self.run_avx2::<R, N, W>(phase, i, buf) };
        }
        self.task::<R, N, W>(phase, i, buf)
    }

    /// # Safety
    /// The processor has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<const R: usize, const N: usize, W: Minimal<R, N>>(&self, phase: Phase, i: usize, buf: &mut [f32]) {
        self.task::<R, N, W>(phase, i, buf)
    }

    #[inline(always)]
    fn task<const R: usize, const N: usize, W: Minimal<R, N>>(&self, phase: Phase, i: usize, buf: &mut [f32]) {
        let ci_panels = self.vb.channels;
        match phase {
            Phase::Transform if i < ci_panels => self.transform_x::<R, N, W>(i, buf),
            // The A panel's rows as one group of lanes: 12 with AVX-512, else 6 (`kernel::select`).
            Phase::Transform if self.micro.mr == 12 => self.transform_dy::<R, N, W, 16, 12>(i - ci_panels, buf),
            Phase::Transform => self.transform_dy::<R, N, W, 8, 6>(i - ci_panels, buf),
            Phase::Gemm => self.gemm(i / ci_panels, i % ci_panels),
            Phase::Output => self.output::<R, N, W>(i, buf),
        }
    }

    /// V of B panel q: per image, the panel's input channels transposed into lanes (a padded
    /// plane of NR-channel pixels), then each tile's N × N window transformed eight channels at
    /// a time, straight into the panel's row of each ξ. Transforming tiles as lanes and then
    /// transposing V, N²/4 floats a pixel, had both threads' time go to moving V through memory
    /// (more than half of the CIFAR network's 64 → 128 filter gradient).
    #[inline(always)]
    fn transform_x<const R: usize, const N: usize, W: Minimal<R, N>>(&self, q: usize, buf: &mut [f32]) {
        let (op, t, nr) = (self.op, &self.g.t, self.micro.nr);
        let chans = q * nr..((q + 1) * nr).min(op.c_in);
        let (hq, wq, ld) = (t.padded_rows(), t.padded_cols(), nr.next_multiple_of(8));
        let xt = &mut buf[..hq * wq * ld];
        let plane = op.h_in * op.w_in;
        let (ph, pw) = (op.padding[0], op.padding[1]);
        // Input columns inside the tiles' reach (a last odd column of the plane may lie past it).
        let cols = op.w_in.min(wq.saturating_sub(pw));
        // The padding's zeros once: every image writes the same places of xt.
        xt.fill(0.0);
        for img in 0..self.images {
            let x = &self.x[((self.b0 + img) * op.c_in + chans.start) * plane..];
            for iy in 0..op.h_in.min(hq.saturating_sub(ph)) {
                crate::ops::transpose::masked_transpose(&x[iy * op.w_in..], None, chans.len(), cols, plane, &mut xt[((iy + ph) * wq + pw) * ld..], ld);
            }
            // The next image's planes, prefetched into L2 a few lines a tile: read from memory
            // by the transposes as they come, they were a quarter of the CIFAR network's
            // 32 → 64 filter gradient, and half that prefetched.
            let next_at = ((self.b0 + img + 1) * op.c_in + chans.start) * plane;
            let next = if next_at < self.x.len() { &self.x[next_at..][..chans.len() * plane] } else { &[][..] };
            let mut ahead = crate::ops::prefetch::Ahead::new([next], t.rows * t.cols);
            for (tile, (ty, tx)) in (0..t.rows).flat_map(|ty| (0..t.cols).map(move |tx| (ty, tx))).enumerate() {
                ahead.step();
                let k = img * t.rows * t.cols + tile;
                zero_dead_lanes(&self.vb, q, N * N, k * nr + chans.len().next_multiple_of(8)..(k + 1) * nr);
                for lane in (0..chans.len()).step_by(8) {
                    // d·B along the rows, then Bᵀ· down each column j. Loops, not `from_fn`:
                    // its closures are not compiled for AVX2, so not inlined here.
                    let mut rows = [[Lanes([0.0; 8]); N]; N];
                    for (i, row) in rows.iter_mut().enumerate() {
                        let mut d = [Lanes([0.0; 8]); N];
                        for (j, d) in d.iter_mut().enumerate() {
                            *d = Lanes::at(xt, ((2 * ty + i) * wq + 2 * tx + j) * ld + lane);
                        }
                        *row = W::input(d);
                    }
                    for j in 0..N {
                        let mut column = [Lanes([0.0; 8]); N];
                        for (c, row) in column.iter_mut().zip(&rows) {
                            *c = row[j];
                        }
                        for (i, v) in W::input(column).into_iter().enumerate() {
                            // SAFETY: this task alone writes B panel q of each ξ.
                            let row = unsafe { self.vb.plane(i * N + j, q) };
                            // NR is a multiple of 8: the lanes lie inside the panel's row k.
                            row[k * nr + lane..][..8].copy_from_slice(&v.0);
                        }
                    }
                }
            }
        }
    }

    /// D of A panel p: per image, the panel's output channels of dY transposed into lanes
    /// (masked; zero past the plane and past the channels), then each tile's 2 × 2 spread by
    /// A·dY·Aᵀ, the panel's MR channels as one [`Lanes`] of L (16 for AVX-512's 12), straight
    /// into the panel's row of each ξ as MR floats (in groups of eight, the 12-wide panel took
    /// four one-float stores a ξ for its last four channels). The bias gradient is summed on
    /// the way.
    #[inline(always)]
    fn transform_dy<const R: usize, const N: usize, W: Minimal<R, N>, const L: usize, const MR: usize>(&self, p: usize, buf: &mut [f32]) {
        let (op, t, mr) = (self.op, &self.g.t, self.micro.mr);
        assert_eq!(mr, MR, "winograd: an A panel of {mr} rows transformed as {MR}");
        let chans = p * mr..((p + 1) * mr).min(op.c_out);
        let (hd, wd) = (2 * t.rows, 2 * t.cols);
        let dyt = &mut buf[..hd * wd * L];
        let po = op.out_pixels();
        let mut sums = Lanes([0.0; L]);
        // Zero past the plane once: every image writes the same places of dyt.
        if (hd, wd) != (op.h_out, op.w_out) {
            dyt.fill(0.0);
        }
        for img in 0..self.images {
            let at = ((self.b0 + img) * op.c_out + chans.start) * po;
            for oy in 0..op.h_out {
                let row = at + oy * op.w_out;
                crate::ops::transpose::masked_transpose(&self.dy[row..], self.mask.map(|m| &m[row..]), chans.len(), op.w_out, po, &mut dyt[oy * wd * L..], L);
            }
            if self.db.is_some() {
                // Pixels in pairs into two sums, so that an add need not wait for the last.
                let mut odd = Lanes([0.0; L]);
                for pixel in (0..hd * wd).step_by(2) {
                    sums = sums + Lanes::at(dyt, pixel * L);
                    odd = odd + Lanes::at(dyt, (pixel + 1) * L);
                }
                sums = sums + odd;
            }
            let at = |y: usize, x: usize| Lanes::<L>::at(dyt, (y * wd + x) * L);
            // The next image's dY (and mask) prefetched, as x is in `transform_x`.
            let next_at = ((self.b0 + img + 1) * op.c_out + chans.start) * po;
            let (next, next_mask) = if next_at < self.dy.len() {
                (&self.dy[next_at..][..chans.len() * po], self.mask.map_or(&[][..], |m| &m[next_at..][..chans.len() * po]))
            } else {
                (&[][..], &[][..])
            };
            let mut ahead = crate::ops::prefetch::Ahead::new([next, next_mask], t.rows * t.cols);
            for (tile, (ty, tx)) in (0..t.rows).flat_map(|ty| (0..t.cols).map(move |tx| (ty, tx))).enumerate() {
                ahead.step();
                let k = img * t.rows * t.cols + tile;
                // Along each of the tile's two rows, then down each of the N columns.
                let h0 = W::spread([at(2 * ty, 2 * tx), at(2 * ty, 2 * tx + 1)]);
                let h1 = W::spread([at(2 * ty + 1, 2 * tx), at(2 * ty + 1, 2 * tx + 1)]);
                for j in 0..N {
                    for (i, v) in W::spread([h0[j], h1[j]]).into_iter().enumerate() {
                        // SAFETY: this task alone writes A panel p of each ξ.
                        let row = unsafe { self.da.plane(i * N + j, p) };
                        row[k * MR..(k + 1) * MR].copy_from_slice(&v.0[..MR]);
                    }
                }
            }
        }
        if let Some(db) = &self.db {
            for (c, co) in chans.enumerate() {
                // SAFETY: this task alone takes channel co.
                unsafe { db.plane(co, 0)[0] += sums.0[c] };
            }
        }
    }

    /// M[·][ξ], the columns of B panel q, += D[ξ]·Vᵀ[ξ] (overwritten by the first block): the B
    /// panel stays in L1 while the A panels stream from L2.
    #[inline(always)]
    fn gemm(&self, xi: usize, q: usize) {
        let (op, micro, g) = (self.op, &self.micro, self.g);
        let (mr, nr, xi_n) = (micro.mr, micro.nr, self.m.channels);
        let beta = if self.first { 0.0 } else { 1.0 };
        // SAFETY (both): only read here, written by the transforms.
        let b = unsafe { self.vb.read(xi, q) };
        for p in 0..self.da.channels {
            let a = unsafe { self.da.read(xi, p) };
            let (rows, cols) = (mr.min(op.c_out - p * mr), nr.min(op.c_in - q * nr));
            // SAFETY: A and B panels of k steps; the rows × cols tile of M at (p·MR, ξ, q·NR),
            // rows ξ_n·ci_pad apart, is this task's alone and inside M.
            unsafe { (micro.kernel)(self.k(), a.as_ptr(), b.as_ptr(), self.m.at((p * mr * xi_n + xi) * g.ci_pad + q * nr), xi_n * g.ci_pad, rows, cols, beta, std::ptr::null(), false) };
        }
    }

    /// dW[co] += Gᵀ·M·G, eight input channels at a time, then transposed into PyTorch's
    /// layout: `add_transposed` splits its rows between the threads, and called once per
    /// output channel that cost more than it did.
    #[inline(always)]
    fn output<const R: usize, const N: usize, W: Minimal<R, N>>(&self, co: usize, buf: &mut [f32]) {
        let (ci_n, ci_pad) = (self.op.c_in, self.g.ci_pad);
        let (taps, rows) = buf.split_at_mut(R * R * ci_pad);
        for ci0 in (0..ci_n).step_by(8) {
            let mut mm = [[Lanes([0.0; 8]); N]; N];
            for (i, mm) in mm.iter_mut().enumerate() {
                for (j, mm) in mm.iter_mut().enumerate() {
                    // SAFETY: M is only read after the GEMMs.
                    mm.0.copy_from_slice(&unsafe { self.m.read(co, i * N + j) }[ci0..][..8]);
                }
            }
            // Along each row i (its R taps), then down each tap column.
            let rows: [[Lanes; R]; N] = from_fn(|i| W::gather(mm[i]));
            for kx in 0..R {
                for (ky, v) in W::gather(from_fn(|i| rows[i][kx])).into_iter().enumerate() {
                    taps[(ky * R + kx) * ci_pad + ci0..][..8].copy_from_slice(&v.0);
                }
            }
        }
        let rows = &mut rows[..ci_n * R * R];
        crate::ops::transpose::masked_transpose(taps, None, R * R, ci_n, ci_pad, rows, R * R);
        // SAFETY: this task alone takes output channel co.
        for (w, &g) in unsafe { self.dw.plane(co, 0) }.iter_mut().zip(&*rows) {
            *w += g;
        }
    }
}
